package e2e

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kilnai/kiln/internal/tensor"
)

// refModel is the reference file the ONNX test-model generator writes next
// to each model: its example inputs and numpy's outputs.
type refModel struct {
	Name    string `json:"name"`
	Example struct {
		Inputs  []refTensor `json:"inputs"`
		Outputs []refTensor `json:"outputs"`
	} `json:"example"`
}

type refTensor struct {
	Name     string          `json:"name"`
	DataType string          `json:"datatype"`
	Shape    []int64         `json:"shape"`
	Data     json.RawMessage `json:"data"`
	Raw      string          `json:"raw"`
}

// TestONNXModelsOverHTTP serves every ONNX test model (FP32, FP64, FP16,
// BF16, INT32, INT64, BOOL, UINT8, BYTES, multi-input/multi-output, 0-d,
// no inputs) and checks that JSON and binary requests give identical
// outputs equal to the generator's numpy reference.
func TestONNXModelsOverHTTP(t *testing.T) {
	requireORT(t)
	src := filepath.Join(repoRoot(), "internal", "inference", "onnx", "testdata")
	refs, err := filepath.Glob(filepath.Join(src, "*.json"))
	if err != nil || len(refs) < 10 {
		t.Fatalf("test models: %v (%d found)", err, len(refs))
	}
	repo := t.TempDir()
	var models []refModel
	for _, ref := range refs {
		var m refModel
		data, err := os.ReadFile(ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		onnx, err := os.ReadFile(strings.TrimSuffix(ref, ".json") + ".onnx")
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(repo, m.Name, "1")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "model.onnx"), onnx, 0o644); err != nil {
			t.Fatal(err)
		}
		models = append(models, m)
	}
	s := startServer(t, true, "--model-repository", repo)
	seen := map[string]bool{}
	for _, m := range models {
		t.Run(m.Name, func(t *testing.T) {
			var jsonIns, binIns []string
			var raw []byte
			for _, in := range m.Example.Inputs {
				seen[in.DataType] = true
				shape, _ := json.Marshal(in.Shape)
				jsonIns = append(jsonIns, fmt.Sprintf(`{"name":%q,"datatype":%q,"shape":%s,"data":%s}`, in.Name, in.DataType, shape, in.Data))
				b, err := base64.StdEncoding.DecodeString(in.Raw)
				if err != nil {
					t.Fatal(err)
				}
				binIns = append(binIns, fmt.Sprintf(`{"name":%q,"datatype":%q,"shape":%s,"parameters":{"binary_data_size":%d}}`, in.Name, in.DataType, shape, len(b)))
				raw = append(raw, b...)
			}
			jr := s.post(t, "/v2/models/"+m.Name+"/infer", `{"id":"same","inputs":[`+strings.Join(jsonIns, ",")+`],"parameters":{"binary_data_output":true}}`)
			if jr.code != 200 {
				t.Fatalf("JSON request: %d %s", jr.code, jr.body)
			}
			head := `{"id":"same","inputs":[` + strings.Join(binIns, ",") + `],"parameters":{"binary_data_output":true}}`
			br := s.do(t, "POST", "/v2/models/"+m.Name+"/infer", map[string]string{"Inference-Header-Content-Length": strconv.Itoa(len(head))}, append([]byte(head), raw...))
			if br.code != 200 {
				t.Fatalf("binary request: %d %s", br.code, br.body)
			}
			if string(jr.body) != string(br.body) {
				t.Fatalf("JSON and binary requests differ:\n%q\n%q", jr.body, br.body)
			}
			got := splitBinary(t, jr)
			for _, want := range m.Example.Outputs {
				seen[want.DataType] = true
				g, ok := got[want.Name]
				if !ok {
					t.Fatalf("no output %q", want.Name)
				}
				w, _ := base64.StdEncoding.DecodeString(want.Raw)
				if err := closeEnough(want.DataType, g, w); err != nil {
					t.Fatalf("output %q: %v", want.Name, err)
				}
			}
		})
	}
	for _, dt := range []string{"FP32", "FP64", "INT32", "INT64", "BOOL", "UINT8", "FP16", "BYTES"} {
		if !seen[dt] {
			t.Errorf("no test model covers %s", dt)
		}
	}
}

// splitBinary maps output names to their binary chunks.
func splitBinary(t *testing.T, r result) map[string][]byte {
	t.Helper()
	n, err := strconv.Atoi(r.header.Get("Inference-Header-Content-Length"))
	if err != nil || n > len(r.body) {
		t.Fatalf("header length %q", r.header.Get("Inference-Header-Content-Length"))
	}
	var head struct {
		Outputs []struct {
			Name       string `json:"name"`
			Parameters struct {
				Size int `json:"binary_data_size"`
			} `json:"parameters"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(r.body[:n], &head); err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	rest := r.body[n:]
	for _, o := range head.Outputs {
		out[o.Name], rest = rest[:o.Parameters.Size], rest[o.Parameters.Size:]
	}
	return out
}

// closeEnough compares element bytes: exactly for integers, BOOL and BYTES,
// within 1e-5 (relative to max(|want|, 1)) for floating point.
func closeEnough(dt string, got, want []byte) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d bytes, want %d", len(got), len(want))
	}
	var f func(b []byte, i int) float64
	size := 0
	switch dt {
	case "FP32":
		size, f = 4, func(b []byte, i int) float64 { return float64(math.Float32frombits(binary.LittleEndian.Uint32(b[i:]))) }
	case "FP64":
		size, f = 8, func(b []byte, i int) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b[i:])) }
	case "FP16":
		size, f = 2, func(b []byte, i int) float64 {
			return float64(tensor.Float16ToFloat32(binary.LittleEndian.Uint16(b[i:])))
		}
	case "BF16":
		size, f = 2, func(b []byte, i int) float64 {
			return float64(tensor.BFloat16ToFloat32(binary.LittleEndian.Uint16(b[i:])))
		}
	default:
		if string(got) != string(want) {
			return fmt.Errorf("got %x, want %x", got, want)
		}
		return nil
	}
	for i := 0; i+size <= len(got); i += size {
		g, w := f(got, i), f(want, i)
		if math.Abs(g-w) > 1e-5*math.Max(math.Abs(w), 1) && !(math.IsNaN(g) && math.IsNaN(w)) {
			return fmt.Errorf("element %d: got %v, want %v", i/size, g, w)
		}
	}
	return nil
}
