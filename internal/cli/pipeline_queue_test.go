package cli

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/kilnai/kiln/internal/pipeline"
)

// TestPipelineRunQueue: `kiln pipeline run --distributed` submits to the
// queue of --queue, by default $KILN_QUEUE.
func TestPipelineRunQueue(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(spec, []byte("name: q\nsource: {cli_rows: {rows: 2}}\nsinks: [cli_sink: {}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var got DistributedOptions
	prev := DistributedRun
	t.Cleanup(func() { DistributedRun = prev })
	DistributedRun = func(_ context.Context, _ *pipeline.Plan, _ *pipeline.Engine, o DistributedOptions) (*pipeline.RunRecord, error) {
		got = o
		return nil, errors.New("submitted")
	}
	cases := []struct {
		name, env string
		args      []string
		want      string
	}{
		{"flag", "", []string{"--queue", "nightly"}, "nightly"},
		{"environment", "fromenv", nil, "fromenv"},
		{"flag over environment", "fromenv", []string{"--queue", "nightly"}, "nightly"},
		{"neither: the default queue", "", nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("KILN_QUEUE", c.env)
			got = DistributedOptions{}
			args := append([]string{"pipeline", "run", spec, "--distributed", "--nats", "nats://example:4222", "--data-dir", filepath.Join(dir, "data")}, c.args...)
			_, errOut, code := runMain(args...)
			if code == 0 || got.Queue != c.want || got.NATSURL != "nats://example:4222" {
				t.Errorf("exit %d, options %+v (stderr %q); want queue %q", code, got, errOut, c.want)
			}
		})
	}
}
