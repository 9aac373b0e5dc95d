package pipeline

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the engine independent of what builds on it: the
// connectors, the APIs, the command line and the model server.
func TestDependencies(t *testing.T) {
	const mod = "github.com/kilnai/kiln/"
	out, err := exec.Command("go", "list", "-deps", mod+"internal/pipeline").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, d := range strings.Fields(string(out)) {
		for _, bad := range []string{"internal/connectors/", "internal/httpapi", "internal/grpcapi", "internal/cli", "internal/app", "internal/serving", "net/http"} {
			if strings.HasPrefix(d, mod+bad) || d == bad {
				t.Errorf("internal/pipeline depends on %s", d)
			}
		}
	}
}
