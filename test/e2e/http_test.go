package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// irisRow is a real row of the iris test split (a virginica).
const irisRow = `[6.3, 3.4, 5.6, 2.4]`

func irisRequest(extra string) string {
	return `{` + extra + `"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":` + irisRow + `}]}`
}

type inferResponse struct {
	ModelName    string `json:"model_name"`
	ModelVersion string `json:"model_version"`
	ID           string `json:"id"`
	Outputs      []struct {
		Name       string          `json:"name"`
		DataType   string          `json:"datatype"`
		Shape      []int64         `json:"shape"`
		Data       json.RawMessage `json:"data"`
		Parameters map[string]any  `json:"parameters"`
	} `json:"outputs"`
}

func TestDemoServer(t *testing.T) {
	requireORT(t)
	s := startServer(t, true, "--model-repository", "models")

	t.Run("health", func(t *testing.T) {
		for _, p := range []string{"/v2/health/live", "/v2/health/ready"} {
			r := s.get(t, p)
			if r.code != 200 {
				t.Fatalf("%s: %d %s", p, r.code, r.body)
			}
			var body map[string]bool
			r.json(t, &body)
			if len(body) != 1 || !(body["live"] || body["ready"]) {
				t.Fatalf("%s body %s", p, r.body)
			}
		}
	})

	t.Run("server metadata", func(t *testing.T) {
		var md struct {
			Name       string   `json:"name"`
			Version    string   `json:"version"`
			Extensions []string `json:"extensions"`
		}
		s.get(t, "/v2").json(t, &md)
		if md.Name != "kiln" || md.Version == "" {
			t.Fatalf("metadata %+v", md)
		}
		contains(t, "extensions", strings.Join(md.Extensions, ","), "binary_tensor_data", "model_repository", "model_configuration", "statistics")
	})

	t.Run("model metadata", func(t *testing.T) {
		for _, p := range []string{"/v2/models/iris", "/v2/models/iris/versions/1"} {
			var md struct {
				Name     string   `json:"name"`
				Versions []string `json:"versions"`
				Platform string   `json:"platform"`
				Inputs   []struct {
					Name, Datatype string
					Shape          []int64
				} `json:"inputs"`
				Outputs []struct {
					Name, Datatype string
					Shape          []int64
				} `json:"outputs"`
			}
			r := s.get(t, p)
			if r.code != 200 {
				t.Fatalf("%s: %d %s", p, r.code, r.body)
			}
			r.json(t, &md)
			if md.Name != "iris" || len(md.Versions) != 1 || md.Versions[0] != "1" || md.Platform != "onnxruntime_onnx" {
				t.Fatalf("%s: %+v", p, md)
			}
			if len(md.Inputs) != 1 || md.Inputs[0].Name != "input" || md.Inputs[0].Datatype != "FP32" || fmt.Sprint(md.Inputs[0].Shape) != "[-1 4]" {
				t.Fatalf("%s inputs %+v", p, md.Inputs)
			}
			if len(md.Outputs) != 2 {
				t.Fatalf("%s outputs %+v", p, md.Outputs)
			}
		}
	})

	t.Run("model ready", func(t *testing.T) {
		for _, p := range []string{"/v2/models/iris/ready", "/v2/models/digits/versions/1/ready"} {
			r := s.get(t, p)
			var body struct {
				Name  string `json:"name"`
				Ready bool   `json:"ready"`
			}
			r.json(t, &body)
			if r.code != 200 || !body.Ready || body.Name == "" {
				t.Fatalf("%s: %d %s", p, r.code, r.body)
			}
		}
		if r := s.get(t, "/v2/models/nope/ready"); r.code != 404 {
			t.Fatalf("unknown model ready: %d", r.code)
		}
	})

	t.Run("infer json", func(t *testing.T) {
		r := s.post(t, "/v2/models/iris/infer", irisRequest(`"id":"req-42",`))
		if r.code != 200 {
			t.Fatalf("%d %s", r.code, r.body)
		}
		var resp inferResponse
		r.json(t, &resp)
		if resp.ID != "req-42" || resp.ModelName != "iris" || resp.ModelVersion != "1" || len(resp.Outputs) != 2 {
			t.Fatalf("response %s", r.body)
		}
		var label []int64
		var probs []float64
		for _, o := range resp.Outputs {
			switch o.Name {
			case "label":
				_ = json.Unmarshal(o.Data, &label)
			case "probabilities":
				_ = json.Unmarshal(o.Data, &probs)
				if fmt.Sprint(o.Shape) != "[1 3]" || o.DataType != "FP32" {
					t.Fatalf("probabilities %+v", o)
				}
			}
		}
		if len(label) != 1 || label[0] != 2 || len(probs) != 3 || probs[2] < 0.5 {
			t.Fatalf("iris virginica row: label %v probabilities %v", label, probs)
		}
		sum := probs[0] + probs[1] + probs[2]
		if math.Abs(sum-1) > 1e-5 {
			t.Fatalf("probabilities sum to %v", sum)
		}
	})

	t.Run("generated id", func(t *testing.T) {
		var a, b inferResponse
		s.post(t, "/v2/models/iris/infer", irisRequest("")).json(t, &a)
		s.post(t, "/v2/models/iris/infer", irisRequest("")).json(t, &b)
		if a.ID == "" || a.ID == b.ID {
			t.Fatalf("generated ids %q %q", a.ID, b.ID)
		}
	})

	t.Run("nested and flat data agree", func(t *testing.T) {
		flat := s.post(t, "/v2/models/iris/infer", `{"id":"x","inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[6.3,3.4,5.6,2.4,5.1,3.5,1.4,0.2]}]}`)
		nested := s.post(t, "/v2/models/iris/infer", `{"id":"x","inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[[6.3,3.4,5.6,2.4],[5.1,3.5,1.4,0.2]]}]}`)
		if flat.code != 200 || !bytes.Equal(flat.body, nested.body) {
			t.Fatalf("flat %d %s\nnested %d %s", flat.code, flat.body, nested.code, nested.body)
		}
	})

	t.Run("binary extension equals json", func(t *testing.T) {
		vals := []float32{6.3, 3.4, 5.6, 2.4}
		raw := make([]byte, 16)
		for i, v := range vals {
			binary.LittleEndian.PutUint32(raw[i*4:], math.Float32bits(v))
		}
		head := `{"id":"b","inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}],` +
			`"outputs":[{"name":"probabilities","parameters":{"binary_data":true}},{"name":"label"}]}`
		r := s.do(t, "POST", "/v2/models/iris/infer", map[string]string{
			"Inference-Header-Content-Length": strconv.Itoa(len(head)),
			"Content-Type":                    "application/octet-stream",
		}, append([]byte(head), raw...))
		if r.code != 200 {
			t.Fatalf("%d %s", r.code, r.body)
		}
		hl, err := strconv.Atoi(r.header.Get("Inference-Header-Content-Length"))
		if err != nil || hl > len(r.body) {
			t.Fatalf("response header length %q", r.header.Get("Inference-Header-Content-Length"))
		}
		var resp inferResponse
		if err := json.Unmarshal(r.body[:hl], &resp); err != nil {
			t.Fatal(err)
		}
		bin := r.body[hl:]
		if len(resp.Outputs) != 2 || resp.Outputs[0].Name != "probabilities" || len(bin) != 12 {
			t.Fatalf("binary response %s + %d bytes", r.body[:hl], len(bin))
		}
		if size, _ := resp.Outputs[0].Parameters["binary_data_size"].(float64); size != 12 {
			t.Fatalf("binary_data_size %v", resp.Outputs[0].Parameters)
		}
		// The JSON form of the same request gives the same float32 values.
		var jresp inferResponse
		s.post(t, "/v2/models/iris/infer", irisRequest("")).json(t, &jresp)
		var probs []float32
		for _, o := range jresp.Outputs {
			if o.Name == "probabilities" {
				_ = json.Unmarshal(o.Data, &probs)
			}
		}
		for i := range probs {
			got := math.Float32frombits(binary.LittleEndian.Uint32(bin[i*4:]))
			if got != probs[i] {
				t.Fatalf("binary output %d = %v, JSON %v", i, got, probs[i])
			}
		}
	})

	t.Run("raw binary body", func(t *testing.T) {
		raw := make([]byte, 16)
		for i, v := range []float32{6.3, 3.4, 5.6, 2.4} {
			binary.LittleEndian.PutUint32(raw[i*4:], math.Float32bits(v))
		}
		r := s.do(t, "POST", "/v2/models/iris/infer", map[string]string{"Inference-Header-Content-Length": "0"}, raw)
		if r.code != 200 {
			t.Fatalf("%d %s", r.code, r.body)
		}
		hl, _ := strconv.Atoi(r.header.Get("Inference-Header-Content-Length"))
		var resp inferResponse
		if err := json.Unmarshal(r.body[:hl], &resp); err != nil {
			t.Fatalf("%v: %q", err, r.body)
		}
		// probabilities (3 × FP32) + label (1 × INT64), all binary
		if len(r.body)-hl != 12+8 {
			t.Fatalf("raw response has %d binary bytes", len(r.body)-hl)
		}
		var label int64
		for i, o := range resp.Outputs {
			if o.Name == "label" {
				off := hl
				if i == 1 {
					off += 12
				}
				label = int64(binary.LittleEndian.Uint64(r.body[off:]))
			}
		}
		if label != 2 {
			t.Fatalf("raw request label %d", label)
		}
	})

	t.Run("gzip body", func(t *testing.T) {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write([]byte(irisRequest("")))
		zw.Close()
		r := s.do(t, "POST", "/v2/models/iris/infer", map[string]string{"Content-Encoding": "gzip"}, buf.Bytes())
		if r.code != 200 {
			t.Fatalf("%d %s", r.code, r.body)
		}
	})

	t.Run("digits batch", func(t *testing.T) {
		ex, err := os.ReadFile(filepath.Join(repoRoot(), "models", "digits", "example.json"))
		if err != nil {
			t.Fatal(err)
		}
		r := s.do(t, "POST", "/v2/models/digits/versions/1/infer", nil, ex)
		if r.code != 200 {
			t.Fatalf("%d %s", r.code, r.body)
		}
		contains(t, "digits response", string(r.body), `"label"`, `"probabilities"`)
	})

	t.Run("config", func(t *testing.T) {
		var cfg struct {
			Name         string `json:"name"`
			MaxBatchSize int    `json:"max_batch_size"`
			Input        []struct {
				Name     string  `json:"name"`
				DataType string  `json:"data_type"`
				Dims     []int64 `json:"dims"`
			} `json:"input"`
			DynamicBatching map[string]any `json:"dynamic_batching"`
		}
		s.get(t, "/v2/models/iris/config").json(t, &cfg)
		if cfg.Name != "iris" || cfg.MaxBatchSize != 64 || len(cfg.Input) != 1 || cfg.Input[0].DataType != "TYPE_FP32" || fmt.Sprint(cfg.Input[0].Dims) != "[4]" {
			t.Fatalf("config %+v", cfg)
		}
		if cfg.DynamicBatching["max_queue_delay_microseconds"] != float64(1000) {
			t.Fatalf("dynamic_batching %v", cfg.DynamicBatching)
		}
	})

	t.Run("stats", func(t *testing.T) {
		var st struct {
			ModelStats []struct {
				Name           string `json:"name"`
				Version        string `json:"version"`
				InferenceCount uint64 `json:"inference_count"`
				ExecutionCount uint64 `json:"execution_count"`
				InferenceStats map[string]struct {
					Count uint64 `json:"count"`
					NS    uint64 `json:"ns"`
				} `json:"inference_stats"`
			} `json:"model_stats"`
		}
		s.get(t, "/v2/models/iris/versions/1/stats").json(t, &st)
		if len(st.ModelStats) != 1 || st.ModelStats[0].InferenceCount == 0 || st.ModelStats[0].InferenceStats["success"].Count == 0 ||
			st.ModelStats[0].InferenceStats["compute_infer"].NS == 0 {
			t.Fatalf("stats %+v", st)
		}
		var all struct {
			ModelStats []json.RawMessage `json:"model_stats"`
		}
		s.get(t, "/v2/models/stats").json(t, &all)
		if len(all.ModelStats) != 2 {
			t.Fatalf("all stats: %d models", len(all.ModelStats))
		}
	})

	t.Run("metrics", func(t *testing.T) {
		r := s.get(t, "/metrics")
		if r.code != 200 {
			t.Fatal(r.code)
		}
		contains(t, "metrics", string(r.body),
			`kiln_inference_requests_total{model="iris",version="1"}`,
			`kiln_inference_request_duration_seconds_bucket{model="iris",version="1",le=`,
			`kiln_http_requests_total{code="200",route="infer"}`,
			`kiln_model_state{model="digits",state="READY",version="1"} 1`)
	})

	t.Run("repository", func(t *testing.T) {
		var idx []struct{ Name, Version, State, Reason string }
		s.post(t, "/v2/repository/index", "").json(t, &idx)
		if len(idx) != 2 || idx[0].Name != "digits" || idx[0].State != "READY" || idx[1].Name != "iris" {
			t.Fatalf("index %+v", idx)
		}
		if r := s.post(t, "/v2/repository/models/iris/unload", "{}"); r.code != 200 {
			t.Fatalf("unload %d %s", r.code, r.body)
		}
		if r := s.post(t, "/v2/models/iris/infer", irisRequest("")); r.code != 503 {
			t.Fatalf("infer after unload: %d %s", r.code, r.body)
		}
		if r := s.get(t, "/v2/models/iris/ready"); r.code != 503 {
			t.Fatalf("ready after unload: %d %s", r.code, r.body)
		}
		var ready []struct{ Name string }
		s.post(t, "/v2/repository/index", `{"ready":true}`).json(t, &ready)
		if len(ready) != 1 || ready[0].Name != "digits" {
			t.Fatalf("ready index %+v", ready)
		}
		if r := s.post(t, "/v2/repository/models/iris/load", ""); r.code != 200 {
			t.Fatalf("load %d %s", r.code, r.body)
		}
		if r := s.post(t, "/v2/models/iris/infer", irisRequest("")); r.code != 200 {
			t.Fatalf("infer after load: %d %s", r.code, r.body)
		}
		if r := s.post(t, "/v2/repository/models/nope/load", ""); r.code != 404 {
			t.Fatalf("load unknown: %d %s", r.code, r.body)
		}
		if r := s.post(t, "/v2/repository/models/iris/load", `{"parameters":{"config":"{}"}}`); r.code != 400 {
			t.Fatalf("load with override: %d %s", r.code, r.body)
		}
	})

	t.Run("cli", func(t *testing.T) {
		env := []string{"KILN_URL=" + s.url}
		out, errOut, code := runCLI(t, env, "infer", "iris", "--input", "models/iris/example.json")
		if code != 0 {
			t.Fatalf("infer: %d %s", code, errOut)
		}
		contains(t, "kiln infer", out, "model iris version 1", "label INT64[1] = [2]")
		out, errOut, code = runCLI(t, env, "models", "list")
		if code != 0 {
			t.Fatalf("models list: %d %s", code, errOut)
		}
		contains(t, "kiln models list", out, "NAME", "digits", "iris", "READY")
		if _, errOut, code = runCLI(t, env, "models", "unload", "digits"); code != 0 {
			t.Fatalf("unload: %s", errOut)
		}
		if _, errOut, code = runCLI(t, env, "models", "load", "digits"); code != 0 {
			t.Fatalf("load: %s", errOut)
		}
		_, errOut, code = runCLI(t, env, "infer", "nope", "--input", "models/iris/example.json")
		if code == 0 {
			t.Fatal("infer of an unknown model exited 0")
		}
		contains(t, "kiln infer error", errOut, "nope", "404")
		// A .npy input.
		npy := filepath.Join(t.TempDir(), "x.npy")
		if err := os.WriteFile(npy, npyFP32([]int64{1, 4}, []float32{6.3, 3.4, 5.6, 2.4}), 0o644); err != nil {
			t.Fatal(err)
		}
		out, errOut, code = runCLI(t, env, "infer", "iris", "-i", npy)
		if code != 0 {
			t.Fatalf("infer npy: %d %s", code, errOut)
		}
		contains(t, "kiln infer npy", out, "label INT64[1] = [2]")
	})
}

func npyFP32(shape []int64, vals []float32) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.FormatInt(d, 10)
	}
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s,), }", strings.Join(dims, ", "))
	for (10+len(header)+1)%64 != 0 {
		header += " "
	}
	header += "\n"
	b := []byte("\x93NUMPY\x01\x00")
	b = binary.LittleEndian.AppendUint16(b, uint16(len(header)))
	b = append(b, header...)
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}
