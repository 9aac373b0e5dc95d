package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPipelineRejectsBadInputLines runs `kiln pipeline run` on a CSV file
// with malformed lines: with an on_error sink they are dead-lettered with
// file, line and reason while every good row reaches the output, and the
// run record (`kiln pipeline runs show`) counts them for the source; with
// on_error policy stop the run fails naming file:line.
func TestPipelineRejectsBadInputLines(t *testing.T) {
	work := t.TempDir()
	in := filepath.Join(work, "orders.csv")
	var b strings.Builder
	b.WriteString("id,amount,placed_at\n")
	bad := map[int]string{} // line → the dead letter's reason
	line := 1
	for i := range 1000 {
		line++
		switch i {
		case 17:
			b.WriteString("17,12.5\n")
			bad[line] = "2 fields, want 3"
		case 400:
			b.WriteString("abc,1.0,2026-01-02T03:04:05Z\n")
			bad[line] = `column "id": "abc" is not an int64`
		case 901:
			b.WriteString("901,2.0,yesterday\n")
			bad[line] = `column "placed_at": "yesterday" is not a timestamp`
		default:
			fmt.Fprintf(&b, "%d,%d.25,2026-01-02T03:04:05Z\n", i, i)
		}
	}
	if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, dead := filepath.Join(work, "out.csv"), filepath.Join(work, "rejected.ndjson")
	writeSpec := func(name, onError string) string {
		p := filepath.Join(work, name+".yaml")
		spec := fmt.Sprintf(`name: %s
source:
  file: {path: %q, schema: [{name: id, type: int64}, {name: amount, type: float64}, {name: placed_at, type: timestamp}]}
sinks:
  - file: {path: %q}
%s
`, name, in, out, onError)
		if err := os.WriteFile(p, []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	data := filepath.Join(work, "data")

	spec := writeSpec("dead-letters", fmt.Sprintf("on_error: {file: {path: %q}}", dead))
	stdout, stderr, code := runIn(t, work, nil, "pipeline", "run", spec, "--data-dir", data, "--progress", "log", "--json")
	if code != 0 {
		t.Fatalf("run: exit %d\n%s%s", code, stdout, stderr)
	}
	var rec struct {
		ID           string `json:"id"`
		Status       string `json:"status"`
		RowsIn       int64  `json:"rows_in"`
		RowsOut      int64  `json:"rows_out"`
		RowsRejected int64  `json:"rows_rejected"`
	}
	if err := json.Unmarshal([]byte(stdout), &rec); err != nil {
		t.Fatalf("run record: %v\n%s", err, stdout)
	}
	if rec.Status != "succeeded" || rec.RowsIn != 1000 || rec.RowsOut != 997 || rec.RowsRejected != 3 {
		t.Errorf("run record %+v, want 1000 in, 997 out, 3 rejected", rec)
	}
	written, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(written), "\n"); n != 998 { // header + 997 rows
		t.Errorf("output has %d lines, want 998", n)
	}
	letters, err := os.ReadFile(dead)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(letters)), "\n") {
		var d struct {
			Record string `json:"_record"`
			Input  string `json:"_input"`
			Line   int    `json:"_line"`
			Error  string `json:"_error"`
			Stage  string `json:"_stage"`
		}
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("dead letter %q: %v", l, err)
		}
		if d.Input != in || d.Stage != "source" || !strings.HasPrefix(b.String()[strings.Index(b.String(), d.Record):], d.Record+"\n") {
			t.Errorf("dead letter %+v", d)
		}
		got[d.Line] = d.Error
	}
	if len(got) != len(bad) {
		t.Errorf("dead letters at lines %v, want %v", got, bad)
	}
	for l, reason := range bad {
		if !strings.HasPrefix(got[l], reason) {
			t.Errorf("line %d: dead letter %q, want %q", l, got[l], reason)
		}
	}

	// The run record shows the source's rejected rows.
	show, stderr, code := runIn(t, work, nil, "pipeline", "runs", "show", rec.ID, "--data-dir", data)
	if code != 0 {
		t.Fatalf("runs show: exit %d\n%s%s", code, show, stderr)
	}
	if !regexp.MustCompile(`source \(file\)\s+-\s+997\s+3\s`).MatchString(show) {
		t.Errorf("runs show does not count the source's rejected rows:\n%s", show)
	}

	// Policy stop: the run fails at the first bad line, naming it.
	spec = writeSpec("stop", "on_error: {policy: stop}")
	stdout, stderr, code = runIn(t, work, nil, "pipeline", "run", spec, "--data-dir", data, "--progress", "log")
	if want := fmt.Sprintf("%s:19: 2 fields, want 3", in); code == 0 || !strings.Contains(stderr+stdout, want) {
		t.Fatalf("policy stop: exit %d, want the error to name %q\n%s%s", code, want, stdout, stderr)
	}
}
