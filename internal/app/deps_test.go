package app_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyDirection enforces the layering of DESIGN.md §1: the core
// packages import no HTTP and no implementation package.
func TestDependencyDirection(t *testing.T) {
	const mod = "github.com/kilnai/kiln/"
	forbidden := map[string][]string{
		"internal/tensor":    {"net/http", mod + "internal/inference", mod + "internal/serving", mod + "internal/httpapi", mod + "internal/grpcapi"},
		"internal/inference": {"net/http", mod + "internal/inference/onnx", mod + "internal/serving", mod + "internal/httpapi", mod + "internal/grpcapi"},
		"internal/batching":  {"net/http", mod + "internal/tensor", mod + "internal/inference", mod + "internal/serving"},
		"internal/serving":   {mod + "internal/httpapi", mod + "internal/grpcapi", mod + "internal/inference/onnx", mod + "internal/app", mod + "internal/cli"},
		"internal/catalog":   {mod + "internal/serving", mod + "internal/httpapi"},
		"internal/config":    {mod + "internal/serving"},
		"internal/httpapi":   {mod + "internal/app", mod + "internal/cli", mod + "internal/inference/onnx"},
		"internal/grpcapi":   {mod + "internal/app", mod + "internal/cli", mod + "internal/httpapi", mod + "internal/inference/onnx"},
	}
	for pkg, bad := range forbidden {
		t.Run(pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", mod+pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list: %v\n%s", err, out)
			}
			deps := map[string]bool{}
			for _, d := range strings.Fields(string(out)) {
				deps[d] = true
			}
			for _, b := range bad {
				if deps[b] {
					t.Errorf("%s depends on %s", pkg, b)
				}
			}
		})
	}
}
