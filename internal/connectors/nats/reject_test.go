package nats

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	_ "github.com/kilnai/kiln/internal/connectors/file"
	"github.com/kilnai/kiln/internal/pipeline"
)

// readNDJSON returns the objects of an NDJSON file (none when it is
// missing).
func readNDJSON(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%s: %q: %v", path, l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestEngineDeadLettersUndecodable runs the nats source through the
// engine: messages that cannot be decoded, or whose records do not fit
// the schema, go to the on_error sink with their subject and stream
// sequence and are acknowledged (the next run reads nothing); under
// policy stop the run fails naming the message, which is nak'ed and
// dead-lettered by a later run.
func TestEngineDeadLettersUndecodable(t *testing.T) {
	url := natsURL(t)
	js, stream := testStream(t, url)
	subject := stream + ".in"
	publish(t, js, subject, `{"id": 1}`, `not json`, `{"id": "two"}`, `[{"id": 3}, {"id": "x"}]`, `{"id": 4}`)
	dir := t.TempDir()
	out, dead := filepath.Join(dir, "out.ndjson"), filepath.Join(dir, "dead.ndjson")
	spec := func(onError string) *pipeline.Plan {
		t.Helper()
		src := fmt.Sprintf(`name: nats-rejects
source:
  nats: {url: %q, stream: %s, durable: rejects, stop_when_idle: true, max_wait: 200ms, batch_size: 2, schema: [{name: id, type: int64}]}
sinks:
  - file: {path: %q}
%s
`, url, stream, out, onError)
		plan, err := pipeline.Parse("nats-rejects.yaml", []byte(src), noVars)
		if err != nil {
			t.Fatal(err)
		}
		return plan
	}
	eng := &pipeline.Engine{DataDir: t.TempDir()}
	ctx := context.Background()

	rec, err := eng.Run(ctx, spec(fmt.Sprintf("on_error: {file: {path: %q}}", dead)), pipeline.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []float64
	for _, r := range readNDJSON(t, out) {
		ids = append(ids, r["id"].(float64))
	}
	if !slices.Equal(ids, []float64{1, 4}) {
		t.Errorf("delivered ids %v, want [1 4]", ids)
	}
	var got []string
	for _, d := range readNDJSON(t, dead) {
		if d["_stage"] != "source" || d["_input"] != subject || d["_line"] != nil {
			t.Errorf("dead letter %v", d)
		}
		got = append(got, fmt.Sprintf("#%v %v | %v", d["_index"], d["_record"], d["_error"]))
	}
	want := []string{
		"#2 not json | invalid JSON: invalid character 'o' in literal null (expecting 'u')",
		`#3 {"id": "two"} | column "id": "two" is not an integer`,
		`#4 [{"id": 3}, {"id": "x"}] | record 1, column "id": "x" is not an integer`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("dead letters\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if s := rec.Stages[0]; s.RowsOut != 2 || s.RowsRejected != 3 || rec.RowsIn != 5 {
		t.Errorf("source stage %+v, run rows in %d", s, rec.RowsIn)
	}
	// Everything, the dead-lettered messages included, was acknowledged.
	if rec, err := eng.Run(ctx, spec(fmt.Sprintf("on_error: {file: {path: %q}}", dead)), pipeline.RunOptions{}); err != nil || rec.RowsIn != 0 {
		t.Fatalf("second run read %d rows (err %v), want 0", rec.RowsIn, err)
	}

	publish(t, js, subject, `{oops}`)
	_, err = eng.Run(ctx, spec("on_error: {policy: stop}"), pipeline.RunOptions{})
	wantErr := fmt.Sprintf("source rejected a record (on_error policy stop): %s#6: invalid JSON", subject)
	if err == nil || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("policy stop: err = %v, want %q", err, wantErr)
	}
	// Nak'ed, not lost: the next run with a dead-letter sink gets it.
	rec, err = eng.Run(ctx, spec(fmt.Sprintf("on_error: {file: {path: %q}}", dead)), pipeline.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := readNDJSON(t, dead); len(d) != 1 || d[0]["_record"] != "{oops}" || d[0]["_index"] != float64(6) || rec.Stages[0].RowsRejected != 1 {
		t.Fatalf("after the stopped run: dead letters %v, source stage %+v", d, rec.Stages[0])
	}
}
