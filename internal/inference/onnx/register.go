package onnx

import (
	"strconv"

	"github.com/kilnai/kiln/internal/inference"
)

// Registered as a built-in backend: the server passes its resolved
// ort_lib setting and tensor element limit.
func init() {
	inference.RegisterBackend(Name, func(o inference.BackendOptions) (inference.Backend, error) {
		maxElems, _ := strconv.ParseInt(o.Settings["max_elements"], 10, 64)
		return New(Options{LibraryPath: o.Settings["ort_lib"], MaxElements: maxElems}), nil
	})
}
