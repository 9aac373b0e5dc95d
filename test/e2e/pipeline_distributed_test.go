package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsForE2E returns $KILN_TEST_NATS or skips (fails under
// KILN_REQUIRE_SERVICES=1).
func natsForE2E(t *testing.T) string {
	t.Helper()
	u := os.Getenv("KILN_TEST_NATS")
	if u == "" {
		if os.Getenv("KILN_REQUIRE_SERVICES") == "1" {
			t.Fatal("KILN_TEST_NATS is not set and KILN_REQUIRE_SERVICES=1")
		}
		t.Skip("KILN_TEST_NATS is not set")
	}
	return u
}

// worker is a running `kiln worker`.
type worker struct {
	cmd  *exec.Cmd
	logs *logBuffer
}

func startWorker(t *testing.T, dir string, env []string, args ...string) *worker {
	t.Helper()
	cmd := exec.Command(kilnBin, append([]string{"worker", "--log-level", "info"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	w := &worker{cmd: cmd, logs: &logBuffer{}}
	cmd.Stdout, cmd.Stderr = w.logs, w.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}
	})
	w.waitFor(t, `"msg":"worker ready"`, 60*time.Second)
	return w
}

// waitFor waits until the worker's log has a line containing s and
// returns it.
func (w *worker) waitFor(t *testing.T, s string, limit time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(w.logs.String(), "\n") {
			if strings.Contains(line, s) {
				return line
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("worker log has no %s after %s:\n%s", s, limit, w.logs.String())
	return ""
}

// TestDistributedWorkerKilled: several input files become tasks; the
// first worker is killed (SIGKILL) while it runs a task; the task is
// redelivered to a second worker after the ack wait, the run completes,
// and the per-task outputs hold every input row exactly once.
func TestDistributedWorkerKilled(t *testing.T) {
	natsURL := natsForE2E(t)
	dir := t.TempDir()
	const files, rowsPerFile = 4, 200000
	if err := os.MkdirAll(filepath.Join(dir, "in"), 0o755); err != nil {
		t.Fatal(err)
	}
	for f := range files {
		var sb strings.Builder
		sb.WriteString("id,grp,val,note\n")
		for i := range rowsPerFile {
			id := f*rowsPerFile + i
			fmt.Fprintf(&sb, "%d,g%d,%d.%d,row number %d of file %d\n", id, id%7, id%1000, id%10, i, f)
		}
		if err := os.WriteFile(filepath.Join(dir, "in", fmt.Sprintf("part-%d.csv", f)), []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	spec := `name: e2e-distributed
source:
  file: {path: "in/part-*.csv"}
transforms:
  - derive: {val2: "val * 2", tag: 'grp + "-" + note'}
sinks:
  - file: {path: "out/part-{task}.csv", format: csv}
`
	if err := os.WriteFile(filepath.Join(dir, "spec.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	var rb [5]byte
	_, _ = rand.Read(rb[:])
	queue := "e2e" + hex.EncodeToString(rb[:])
	env := []string{"KILN_QUEUE=" + queue, "KILN_NATS=" + natsURL}
	t.Cleanup(func() { deleteQueue(natsURL, queue) })

	// Worker a creates the queue with a short ack wait and takes the
	// first task.
	a := startWorker(t, dir, env, "--name", "a", "--ack-wait", "2s", "--data-dir", filepath.Join(dir, "a"))

	sub := exec.Command(kilnBin, "pipeline", "run", "--distributed", "spec.yaml", "--data-dir", filepath.Join(dir, "submitter"), "--progress", "log")
	sub.Dir = dir
	sub.Env = append(os.Environ(), env...)
	out := &logBuffer{}
	sub.Stdout, sub.Stderr = out, out
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	subDone := make(chan error, 1)
	go func() { subDone <- sub.Wait() }()
	t.Cleanup(func() {
		if sub.ProcessState == nil {
			_ = sub.Process.Kill()
			<-subDone
		}
	})

	line := a.waitFor(t, `"msg":"task started"`, 60*time.Second)
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
	var started struct {
		Task string `json:"task"`
	}
	if err := json.Unmarshal([]byte(line), &started); err != nil || started.Task == "" {
		t.Fatalf("task started line %q: %v", line, err)
	}
	if strings.Contains(a.logs.String(), `"msg":"task done"`) {
		t.Fatalf("worker a finished a task before it was killed; the input is too small to test redelivery:\n%s", a.logs.String())
	}

	// Worker b gets the rest and, after the ack wait, a's task.
	b := startWorker(t, dir, env, "--name", "b", "--data-dir", filepath.Join(dir, "b"))
	select {
	case err := <-subDone:
		if err != nil {
			t.Fatalf("distributed run: %v\n%s\nworker b:\n%s", err, out.String(), b.logs.String())
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("distributed run did not finish:\n%s\nworker b:\n%s", out.String(), b.logs.String())
	}
	o := out.String()
	if !strings.Contains(o, " succeeded in ") {
		t.Fatalf("run summary:\n%s", o)
	}
	redelivered := regexp.MustCompile(`task ` + regexp.QuoteMeta(started.Task) + ` done by b \(attempt (\d+)`).FindStringSubmatch(o)
	if redelivered == nil {
		t.Fatalf("task %s (killed on a) not reported done by b:\n%s", started.Task, o)
	}
	if n, _ := strconv.Atoi(redelivered[1]); n < 2 {
		t.Errorf("task %s done on attempt %d, want a redelivery (>= 2)", started.Task, n)
	}
	if got := strings.Count(o, " done by "); got != files {
		t.Errorf("%d task completions reported, want %d:\n%s", got, files, o)
	}

	// The submitter recorded the run as a whole.
	runsOut, runsErr, code := runCLI(t, nil, "pipeline", "runs", "--json", "--data-dir", filepath.Join(dir, "submitter"))
	if code != 0 {
		t.Fatalf("pipeline runs: exit %d: %s", code, runsErr)
	}
	var runs []struct {
		Status string `json:"status"`
		RowsIn int64  `json:"rows_in"`
	}
	if err := json.Unmarshal([]byte(runsOut), &runs); err != nil || len(runs) != 1 || runs[0].Status != "succeeded" || runs[0].RowsIn != files*rowsPerFile {
		t.Fatalf("recorded runs %s (%v)", runsOut, err)
	}

	// Every input row exactly once across the per-task outputs.
	outs, err := filepath.Glob(filepath.Join(dir, "out", "part-*.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != files {
		t.Fatalf("outputs %v, want %d files", outs, files)
	}
	seen := make([]bool, files*rowsPerFile)
	total := 0
	for _, p := range outs {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		header := true
		for sc.Scan() {
			if header {
				header = false
				if !strings.HasPrefix(sc.Text(), "id,") {
					t.Fatalf("%s: header %q", p, sc.Text())
				}
				continue
			}
			idText, _, _ := strings.Cut(sc.Text(), ",")
			id, err := strconv.Atoi(idText)
			if err != nil || id < 0 || id >= len(seen) {
				t.Fatalf("%s: bad row %q", p, sc.Text())
			}
			if seen[id] {
				t.Fatalf("row %d written twice", id)
			}
			seen[id] = true
			total++
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if total != files*rowsPerFile {
		t.Fatalf("%d rows in the outputs, want %d", total, files*rowsPerFile)
	}
}

// deleteQueue removes a test queue's streams.
func deleteQueue(url, queue string) {
	nc, err := nats.Connect(url)
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range []string{"_TASKS", "_RESULTS"} {
		_ = js.DeleteStream(ctx, strings.ToUpper(queue)+s)
	}
}
