package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDebugProfiles: --debug-addr serves Go's runtime profiles on a
// listener of its own; the API port does not serve them.
func TestDebugProfiles(t *testing.T) {
	s := startServer(t, false, "--debug-addr", "127.0.0.1:0")
	var addr string
	deadline := time.Now().Add(30 * time.Second)
	for addr == "" {
		for _, line := range strings.Split(s.logs.String(), "\n") {
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "runtime profiles listening" {
				addr = rec.Addr
			}
		}
		if addr == "" {
			if time.Now().After(deadline) {
				t.Fatalf("no debug listener logged:\n%s", s.logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, tc := range []struct {
		url  string
		code int
		want string
	}{
		{"http://" + addr + "goroutine?debug=1", 200, "goroutine profile:"},
		{"http://" + addr, 200, "allocs"},
		{s.url + "/debug/pprof/goroutine?debug=1", 404, ""},
	} {
		resp, err := http.Get(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.want) {
			t.Errorf("GET %s: %d %.200s, want %d with %q", tc.url, resp.StatusCode, body, tc.code, tc.want)
		}
	}
	if _, stderr, code := runCLI(t, nil, "serve", "--debug-addr", "0.0.0.0:0", "--http", "127.0.0.1:0"); code == 0 || !strings.Contains(stderr, "--insecure") {
		t.Errorf("non-loopback debug address accepted without --insecure: exit %d, %s", code, stderr)
	}
}
