// Package e2e holds black-box tests of the built kiln binary: each test
// starts it on random loopback ports and drives it over HTTP and the CLI.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var kilnBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kiln-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kilnBin = filepath.Join(dir, "kiln")
	build := exec.Command("go", "build", "-o", kilnBin, "./cmd/kiln")
	build.Dir = repoRoot()
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building kiln:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// ortAvailable reports whether ONNX Runtime can be found; tests that need
// it skip without it unless KILN_REQUIRE_SERVICES=1.
func requireORT(t *testing.T) {
	t.Helper()
	lib := os.Getenv("KILN_ORT_LIB")
	if lib == "" {
		lib = filepath.Join(repoRoot(), "third_party", "onnxruntime", "libonnxruntime.so.1")
	}
	if _, err := os.Stat(lib); err != nil {
		if os.Getenv("KILN_REQUIRE_SERVICES") == "1" {
			t.Fatalf("ONNX Runtime library missing (%s): run scripts/fetch-ort.sh", lib)
		}
		t.Skipf("ONNX Runtime library missing (%s): run scripts/fetch-ort.sh", lib)
	}
}

// server is a running kiln serve.
type server struct {
	url  string
	cmd  *exec.Cmd
	logs *logBuffer
}

type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startServer runs `kiln serve` on a random port with extra args and
// waits until it is ready (or, with wantReady false, until it is live).
func startServer(t *testing.T, wantReady bool, args ...string) *server {
	t.Helper()
	all := append([]string{"serve", "--http", "127.0.0.1:0", "--grpc", "", "--log-format", "json", "--drain-delay", "0s", "--data-dir", t.TempDir()}, args...)
	cmd := exec.Command(kilnBin, all...)
	cmd.Dir = repoRoot()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, logs: logs}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Bytes()
			logs.Write(append(append([]byte{}, line...), '\n'))
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if !sent && json.Unmarshal(line, &rec) == nil && rec.Msg == "HTTP API listening" {
				addr <- rec.Addr
				sent = true
			}
		}
	}()
	select {
	case a := <-addr:
		s.url = "http://" + a
	case <-time.After(60 * time.Second):
		t.Fatalf("kiln did not start listening; log:\n%s", logs.String())
	}
	deadline := time.Now().Add(60 * time.Second)
	path := "/v2/health/live"
	if wantReady {
		path = "/v2/health/ready"
	}
	for {
		resp, err := http.Get(s.url + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("kiln not ready at %s; log:\n%s", s.url, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type result struct {
	code   int
	header http.Header
	body   []byte
}

func (r result) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("response is not JSON (%v): %q", err, r.body)
	}
}

func (r result) errorMessage(t *testing.T) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	r.json(t, &e)
	if e.Error == "" {
		t.Fatalf("error response without a message: %s", r.body)
	}
	return e.Error
}

func (s *server) do(t *testing.T, method, path string, hdr map[string]string, body []byte) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return result{code: resp.StatusCode, header: resp.Header, body: data}
}

func (s *server) get(t *testing.T, path string) result { return s.do(t, "GET", path, nil, nil) }
func (s *server) post(t *testing.T, path, body string) result {
	return s.do(t, "POST", path, nil, []byte(body))
}

// runCLI runs the kiln binary with args and returns stdout, stderr and the exit code.
func runCLI(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(kilnBin, args...)
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func contains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Fatalf("%s %q does not mention %q", what, s, sub)
		}
	}
}
