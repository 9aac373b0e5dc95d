package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/kilnai/kiln/internal/pipeline"
)

// Test components: cli_rows emits n rows of x; cli_sink refuses x = fail.
type cliRowsConfig struct {
	Rows int `yaml:"rows" doc:"rows"`
}
type cliRows struct{ n int }

func (s cliRows) Read(ctx context.Context, emit pipeline.EmitFunc) error {
	b := array.NewInt64Builder(memory.DefaultAllocator)
	defer b.Release()
	for i := range s.n {
		b.Append(int64(i))
	}
	col := b.NewArray()
	defer col.Release()
	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil)
	return emit(ctx, array.NewRecordBatch(schema, []arrow.Array{col}, int64(s.n)), nil)
}
func (cliRows) Close() error { return nil }

type cliSinkConfig struct {
	Fail bool `yaml:"fail" doc:"fail every write"`
}
type cliSink struct{ fail bool }

func (s cliSink) Write(context.Context, pipeline.Batch) ([]pipeline.RowError, error) {
	if s.fail {
		return nil, os.ErrPermission
	}
	return nil, nil
}
func (cliSink) Close(context.Context, error) error { return nil }

func init() {
	pipeline.RegisterSource(pipeline.SourceSpec{
		Spec: pipeline.Spec{Name: "cli_rows", Summary: "test rows", Config: func() any { return &cliRowsConfig{Rows: 3} }},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Source, error) {
			return cliRows{n: cfg.(*cliRowsConfig).Rows}, nil
		},
	})
	pipeline.RegisterSink(pipeline.SinkSpec{
		Spec: pipeline.Spec{Name: "cli_sink", Summary: "test sink", Config: func() any { return &cliSinkConfig{} }},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Sink, error) {
			return cliSink{fail: cfg.(*cliSinkConfig).Fail}, nil
		},
	})
}

func runMain(args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestPipelineCommands(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "name: g\nsource: {cli_rows: {rows: \"${N}\"}}\nsinks: [cli_sink: {}]\n")
	goodInt := write("good2.yaml", "name: g\nsource: {cli_rows: {rows: 4}}\nsinks: [cli_sink: {}]\n")
	bad := write("bad.yaml", "source: {cli_rowz: {}}\nsinks: [cli_sink: {}]\n")
	failing := write("fail.yaml", "name: f\nsource: {cli_rows: {}}\nsinks: [cli_sink: {fail: true}]\n")
	data := filepath.Join(dir, "data")

	tests := []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"validate ok", []string{"pipeline", "validate", goodInt}, 0, "good2.yaml: ok (pipeline g: cli_rows → 0 transforms → cli_sink)", ""},
		{"validate bad", []string{"pipeline", "validate", goodInt, bad}, 1, "", "bad.yaml:1:10: unknown source \"cli_rowz\" (did you mean \"cli_rows\"?)"},
		{"validate missing var", []string{"pipeline", "validate", good}, 1, "", "environment variable N is not set"},
		{"validate missing file", []string{"pipeline", "validate", filepath.Join(dir, "nope.yaml")}, 1, "", "no such file"},
		{"bad --set", []string{"pipeline", "validate", "--set", "N", good}, 2, "", "want NAME=VALUE"},
		{"run", []string{"pipeline", "run", goodInt, "--data-dir", data, "--progress", "log"}, 0, "succeeded", ""},
		{"run json", []string{"pipeline", "run", goodInt, "--data-dir", data, "--progress", "log", "--json"}, 0, `"status": "succeeded"`, ""},
		{"run fails", []string{"pipeline", "run", failing, "--data-dir", data, "--progress", "log"}, 1, "error: sinks[0].cli_sink: permission denied", "permission denied"},
		{"run bad spec", []string{"pipeline", "run", bad, "--data-dir", data}, 1, "", "bad.yaml:1:10"},
		{"run bad progress", []string{"pipeline", "run", goodInt, "--data-dir", data, "--progress", "fancy"}, 2, "", "want auto, bar or log"},
		{"distributed not built", []string{"pipeline", "run", goodInt, "--data-dir", data, "--distributed"}, 2, "", "not built into this binary"},
		{"components", []string{"pipeline", "components", "cli_rows"}, 0, "source cli_rows — test rows", ""},
		{"components markdown", []string{"pipeline", "components", "--markdown"}, 0, "### source cli_rows", ""},
		{"components unknown", []string{"pipeline", "components", "nope"}, 1, "", "no component named"},
		{"runs", []string{"pipeline", "runs", "--data-dir", data}, 0, "failed", ""},
		{"runs show unknown", []string{"pipeline", "runs", "show", "nope", "--data-dir", data}, 1, "", "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "distributed not built" && DistributedRun != nil {
				t.Skip("distributed runs are built in")
			}
			out, errOut, code := runMain(tt.args...)
			if code != tt.code || !strings.Contains(out, tt.out) || !strings.Contains(errOut, tt.err) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out, errOut, tt.code, tt.out, tt.err)
			}
		})
	}
	t.Run("set variable and show", func(t *testing.T) {
		out, errOut, code := runMain("pipeline", "run", good, "--set", "N=5", "--data-dir", data, "--progress", "log")
		if code != 0 || !strings.Contains(out, "5 rows in") {
			t.Fatalf("%d %s %s", code, out, errOut)
		}
		out, _, code = runMain("pipeline", "runs", "--json", "--limit", "1", "--data-dir", data)
		var runs []pipeline.RunRecord
		if code != 0 || json.Unmarshal([]byte(out), &runs) != nil || len(runs) != 1 || runs[0].RowsIn != 5 {
			t.Fatalf("runs --json: %d %s", code, out)
		}
		out, _, code = runMain("pipeline", "runs", "show", runs[0].ID, "--data-dir", data)
		if code != 0 || !strings.Contains(out, "run "+runs[0].ID) || !strings.Contains(out, "source (cli_rows)") {
			t.Errorf("show: %d %s", code, out)
		}
	})
}
