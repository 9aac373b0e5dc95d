package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// benchFake answers OIP metadata and JSON inference for a model "m" with
// input x FP32 [-1, 2] and output y FP32 [-1, 1] (always one row).
func benchFake(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/models/m":
			io.WriteString(w, `{"name":"m","inputs":[{"name":"x","datatype":"FP32","shape":[-1,2]}],"outputs":[{"name":"y","datatype":"FP32","shape":[-1,1]}]}`)
		case "/v2/models/m/infer":
			io.Copy(io.Discard, r.Body)
			n.Add(1)
			io.WriteString(w, `{"model_name":"m","outputs":[{"name":"y","datatype":"FP32","shape":[1,1],"data":[0.5]}]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestBenchCommand(t *testing.T) {
	srv, n := benchFake(t)
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"csv sweep", []string{"--concurrency", "1,2", "--format", "csv"}, 0, []string{"protocol,model,batch", "http-json,m,1,concurrency,1,", "http-json,m,1,concurrency,2,"}},
		{"table", nil, 0, []string{"req/s", "c=1"}},
		{"open loop json", []string{"--rate", "50", "--format", "json"}, 0, []string{`"mode": "rate"`, `"target_rate": 50`}},
		{"bad protocol", []string{"--protocol", "smtp"}, 2, nil},
		{"rate and concurrency", []string{"--rate", "5", "--concurrency", "2"}, 2, nil},
		{"bad format", []string{"--format", "xml"}, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append([]string{"bench", "--url", srv.URL, "--model", "m", "--warmup", "0s", "--duration", "60ms", "--min-requests", "3"}, tt.args...)
			code := Main(context.Background(), args, &out, &errOut)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.code, errOut.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
	if n.Load() == 0 {
		t.Error("the server saw no inference request")
	}
}
