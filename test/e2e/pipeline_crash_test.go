package e2e

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestPipelineCrashRerun kills `kiln pipeline run` with SIGKILL in the
// middle of a run that writes a CSV file (atomic: temporary name, renamed
// at the end) and upserts into PostgreSQL, then runs it again: the file
// and the table hold every input row exactly once.
func TestPipelineCrashRerun(t *testing.T) {
	dsn, db := pgSchema(t)
	const rows = 300_000
	work := t.TempDir()
	in := filepath.Join(work, "in.csv")
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintln(w, "id,name,score")
	for i := range rows {
		fmt.Fprintf(w, "%d,name-%d,%d.5\n", i, i%977, i%1000)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out := filepath.Join(work, "out", "scores.csv")
	spec := filepath.Join(work, "crash.yaml")
	if err := os.WriteFile(spec, []byte(fmt.Sprintf(`name: crash
source:
  file: {path: %q, format: csv}
transforms:
  - derive: {double: "score * 2"}
sinks:
  - file: {path: %q, format: csv}
  - postgres: {url: "${DATABASE_URL}", table: crash_scores, upsert_key: [id]}
settings: {batch_size: 2000, parallelism: 2, max_in_flight: 4}
`, in, out)), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "DATABASE_URL="+dsn)
	data := filepath.Join(work, "data")

	// First run: killed once rows are flowing.
	cmd := exec.Command(kilnBin, "pipeline", "run", spec, "--data-dir", data, "--progress", "log", "--progress-every", "20ms", "--log-level", "info")
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	killed := false
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := sc.Text()
		log.WriteString(line + "\n")
		if strings.Contains(line, "pipeline run ended") {
			break
		}
		if !strings.Contains(line, "pipeline progress") {
			continue
		}
		var p struct {
			Rows int64 `json:"rows"`
		}
		if json.Unmarshal([]byte(line), &p) == nil && p.Rows > 0 && p.Rows < rows {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	_ = cmd.Wait()
	if !killed {
		t.Fatalf("the run ended before it could be killed mid-way; log:\n%s", log.String())
	}
	// The file sink is atomic: nothing at the final name after the crash.
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output file exists after a crash (%v): it must appear only complete", err)
	}

	// Second run: completes.
	stdout, errOut, code := runIn(t, work, []string{"DATABASE_URL=" + dsn}, "pipeline", "run", spec, "--data-dir", data, "--progress", "log")
	if code != 0 {
		t.Fatalf("re-run: exit %d\n%s%s", code, stdout, errOut)
	}

	// Every row exactly once in the file...
	of, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer of.Close()
	r := csv.NewReader(bufio.NewReaderSize(of, 1<<20))
	header, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	idCol := -1
	for i, h := range header {
		if h == "id" {
			idCol = i
		}
	}
	if idCol < 0 {
		t.Fatalf("no id column in %v", header)
	}
	seen := make([]bool, rows)
	n := 0
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		id, err := strconv.Atoi(rec[idCol])
		if err != nil || id < 0 || id >= rows {
			t.Fatalf("bad id %q", rec[idCol])
		}
		if seen[id] {
			t.Fatalf("id %d twice in the file", id)
		}
		seen[id] = true
		n++
	}
	if n != rows {
		t.Errorf("file has %d rows, want %d", n, rows)
	}
	// ... and in the table.
	var count, distinct int
	var sum float64
	if err := db.QueryRow(`SELECT count(*), count(DISTINCT id), coalesce(sum(double), 0) FROM crash_scores`).Scan(&count, &distinct, &sum); err != nil {
		t.Fatal(err)
	}
	if count != rows || distinct != rows {
		t.Errorf("table has %d rows (%d distinct ids), want %d", count, distinct, rows)
	}
	var want float64
	for i := range rows {
		want += float64(i%1000) + 0.5
	}
	if want *= 2; sum != want {
		t.Errorf("sum(double) = %v, want %v", sum, want)
	}
}
