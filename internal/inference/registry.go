package inference

import (
	"fmt"
	"log/slog"
	"sort"
	"sync"
)

// BackendOptions are what a backend factory receives. Settings holds
// backend-specific server settings (e.g. "ort_lib" for ONNX Runtime).
type BackendOptions struct {
	Logger   *slog.Logger
	Settings map[string]string
}

// BackendFactory builds a Backend. It must not fail because an optional
// runtime library is missing: Load reports that per model instead.
type BackendFactory func(BackendOptions) (Backend, error)

var (
	regMu     sync.Mutex
	factories = map[string]BackendFactory{}
)

// RegisterBackend makes a backend available under name. Implementations
// call it from init; the kiln binary chooses them with blank imports.
func RegisterBackend(name string, f BackendFactory) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := factories[name]; dup {
		panic("inference: backend registered twice: " + name)
	}
	factories[name] = f
}

// RegisteredBackends lists the registered backend names, sorted.
func RegisteredBackends() []string {
	regMu.Lock()
	defer regMu.Unlock()
	names := make([]string, 0, len(factories))
	for n := range factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// NewBackend builds a registered backend.
func NewBackend(name string, opts BackendOptions) (Backend, error) {
	regMu.Lock()
	f := factories[name]
	regMu.Unlock()
	if f == nil {
		return nil, fmt.Errorf("%w: backend %q is not built in", ErrUnsupported, name)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return f(opts)
}
