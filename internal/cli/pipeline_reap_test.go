package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/internal/pipeline"
	"github.com/kilnai/kiln/internal/pipeline/runstore"
)

// TestPipelineRunsReaped: a run left "running" by a process of this host
// that no longer exists (kill -9) shows as failed in `kiln pipeline runs`
// and `runs show`.
func TestPipelineRunsReaped(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	self := pipeline.CurrentOwner()
	if self.Host == "" {
		t.Skip("no host name")
	}
	ctx := context.Background()
	store, err := runstore.Open(ctx, runstore.DefaultDSN(data))
	if err != nil {
		t.Fatal(err)
	}
	boot, _, _ := strings.Cut(self.Start, "/")
	dead := &pipeline.RunOwner{Host: self.Host, PID: 1<<22 + 777, PIDNamespace: self.PIDNamespace}
	if self.Start != "" {
		dead.Start = boot + "/777"
	}
	for _, id := range []string{"killed", "killed2"} {
		r := &pipeline.RunRecord{ID: id, Pipeline: "p", SpecDigest: "d", Status: pipeline.StatusRunning, Started: time.Now().UTC(), Owner: dead}
		if err := store.CreateRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	store.Close()

	out, errOut, code := runMain("pipeline", "runs", "show", "killed", "--data-dir", data)
	if code != 0 || !strings.Contains(out, "status failed") || !strings.Contains(out, "process exited without finishing the run") {
		t.Errorf("show: exit %d, %q %q", code, out, errOut)
	}
	out, errOut, code = runMain("pipeline", "runs", "--data-dir", data)
	if code != 0 || strings.Contains(out, "running") || strings.Count(out, "failed") != 2 {
		t.Errorf("runs: exit %d, %q %q", code, out, errOut)
	}
}
