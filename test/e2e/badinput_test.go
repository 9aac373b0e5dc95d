package e2e

import (
	"strconv"
	"strings"
	"testing"
)

// TestBadInput: every malformed request gets a 4xx whose message names the
// problem, and the server keeps serving.
func TestBadInput(t *testing.T) {
	requireORT(t)
	s := startServer(t, true, "--model-repository", "models", "--max-request-size", "64KiB", "--max-tensor-elements", "100000")
	bin := func(headerLen string, body string) func() result {
		return func() result {
			return s.do(t, "POST", "/v2/models/iris/infer", map[string]string{"Inference-Header-Content-Length": headerLen}, []byte(body))
		}
	}
	binReq := func(head, tail string) func() result { return bin(strconv.Itoa(len(head)), head+tail) }
	post := func(path, body string) func() result { return func() result { return s.post(t, path, body) } }
	binHead := `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}`
	tests := []struct {
		name     string
		send     func() result
		code     int
		mentions []string
	}{
		{"malformed json", post("/v2/models/iris/infer", `{"inputs":[`), 400, []string{"JSON"}},
		{"not an object", post("/v2/models/iris/infer", `[1,2]`), 400, nil},
		{"empty body", post("/v2/models/iris/infer", ``), 400, nil},
		{"no inputs", post("/v2/models/iris/infer", `{"inputs":[]}`), 400, []string{"input"}},
		{"unknown model", post("/v2/models/nope/infer", irisRequest("")), 404, []string{"nope"}},
		{"unknown version", post("/v2/models/iris/versions/7/infer", irisRequest("")), 404, []string{"7"}},
		{"bad version", post("/v2/models/iris/versions/x1/infer", irisRequest("")), 404, []string{"x1"}},
		{"wrong input name", post("/v2/models/iris/infer", `{"inputs":[{"name":"pixels","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`), 400, []string{"pixels"}},
		{"wrong datatype", post("/v2/models/iris/infer", `{"inputs":[{"name":"input","shape":[1,4],"datatype":"INT32","data":[1,2,3,4]}]}`), 400, []string{"INT32", "FP32"}},
		{"unknown datatype", post("/v2/models/iris/infer", `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FLOAT","data":[1,2,3,4]}]}`), 400, []string{"FLOAT"}},
		{"wrong shape", post("/v2/models/iris/infer", `{"inputs":[{"name":"input","shape":[1,5],"datatype":"FP32","data":[1,2,3,4,5]}]}`), 400, []string{"shape"}},
		{"shape data mismatch", post("/v2/models/iris/infer", `{"inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[1,2,3,4]}]}`), 400, []string{"input"}},
		{"ragged nested data", post("/v2/models/iris/infer", `{"inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[[1,2,3,4],[1,2,3]]}]}`), 400, []string{"input"}},
		{"string in FP32", post("/v2/models/iris/infer", `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,"x",4]}]}`), 400, []string{"input"}},
		{"negative dim", post("/v2/models/iris/infer", `{"inputs":[{"name":"input","shape":[-1,4],"datatype":"FP32","data":[1,2,3,4]}]}`), 400, []string{"negative"}},
		{"huge dims", post("/v2/models/iris/infer", `{"inputs":[{"name":"input","shape":[4294967296,4294967296],"datatype":"FP32","data":[1]}]}`), 400, []string{"input"}},
		{"over element limit", post("/v2/models/iris/infer", `{"inputs":[{"name":"input","shape":[100000,4],"datatype":"FP32","data":[1]}]}`), 400, []string{"limit"}},
		{"batch above max", post("/v2/models/iris/infer", `{"inputs":[{"name":"input","shape":[65,4],"datatype":"FP32","data":[`+strings.Repeat("1,", 259)+`1]}]}`), 400, []string{"65"}},
		{"unknown output", post("/v2/models/iris/infer", `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"score"}]}`), 400, []string{"score"}},
		{"non-utf8 BYTES", post("/v2/models/iris/infer", "{\"inputs\":[{\"name\":\"input\",\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[\"\xff\xfe\"]}]}"), 400, []string{"UTF-8"}},
		{"header length past body", bin("9999", binHead+"0123456789abcdef"), 400, []string{"Inference-Header-Content-Length"}},
		{"header length not a number", bin("ten", binHead+"0123456789abcdef"), 400, []string{"Inference-Header-Content-Length"}},
		{"binary size lies high", binReq(`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":99}}]}`, "0123456789abcdef"), 400, []string{"binary_data_size"}},
		{"binary size vs shape", binReq(`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":8}}]}`, "01234567"), 400, []string{"input"}},
		{"trailing bytes", binReq(binHead, "0123456789abcdefEXTRA"), 400, []string{"bytes"}},
		{"raw body wrong size", bin("0", "0123456789"), 400, []string{"raw body", "FP32"}},
		{"body over limit", post("/v2/models/iris/infer", `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"id":"`+strings.Repeat("x", 70000)+`"}`), 413, []string{"limit"}},
		{"bad content encoding", func() result {
			return s.do(t, "POST", "/v2/models/iris/infer", map[string]string{"Content-Encoding": "br"}, []byte(irisRequest("")))
		}, 400, []string{"br"}},
		{"corrupt gzip", func() result {
			return s.do(t, "POST", "/v2/models/iris/infer", map[string]string{"Content-Encoding": "gzip"}, []byte("not gzip"))
		}, 400, []string{"gzip"}},
		{"unknown route", post("/v2/nothing", ""), 404, []string{"/v2/nothing"}},
		{"bad index body", post("/v2/repository/index", `{"ready":"yes"}`), 400, nil},
		{"unknown model metadata", func() result { return s.get(t, "/v2/models/nope") }, 404, []string{"nope"}},
		{"unknown model config", func() result { return s.get(t, "/v2/models/nope/config") }, 404, []string{"nope"}},
		{"unknown model stats", func() result { return s.get(t, "/v2/models/nope/stats") }, 404, []string{"nope"}},
		{"unload unknown", post("/v2/repository/models/nope/unload", ""), 404, []string{"nope"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.send()
			if r.code != tc.code {
				t.Fatalf("status %d, want %d: %s", r.code, tc.code, r.body)
			}
			msg := r.errorMessage(t)
			for _, m := range tc.mentions {
				if !strings.Contains(msg, m) {
					t.Fatalf("message %q does not mention %q", msg, m)
				}
			}
		})
	}
	// After all of that the server still answers.
	if r := s.post(t, "/v2/models/iris/infer", irisRequest("")); r.code != 200 {
		t.Fatalf("server unhealthy after bad input: %d %s", r.code, r.body)
	}
}
