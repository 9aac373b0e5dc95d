package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fastjson"

	"github.com/kilnai/kiln/internal/catalog"
	"github.com/kilnai/kiln/internal/httpapi"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/inference/inferencetest"
	"github.com/kilnai/kiln/internal/serving"
	"github.com/kilnai/kiln/internal/tensor"
)

// sample returns a 2x3 tensor of dt with distinct values.
func sample(dt tensor.DataType) tensor.Tensor {
	t := tensor.Tensor{Name: "x_" + dt.String(), DataType: dt, Shape: tensor.Shape{2, 3}}
	for i := 0; i < 6; i++ {
		switch dt {
		case tensor.Bool:
			t.Data = append(t.Data, byte(i%2))
		case tensor.Bytes:
			s := []string{"a", "bé", "", "日本", "x y", "\"q\""}[i]
			t.Data = append(t.Data, byte(len(s)), 0, 0, 0)
			t.Data = append(t.Data, s...)
		case tensor.FP16:
			h := tensor.Float16Bits(float32(i) - 2.5)
			t.Data = append(t.Data, byte(h), byte(h>>8))
		case tensor.BF16:
			h := tensor.BFloat16Bits(float32(i) * 1.5)
			t.Data = append(t.Data, byte(h), byte(h>>8))
		case tensor.FP32:
			t.Data = append(t.Data, tensor.AsBytes([]float32{float32(i) * 0.1})...)
		case tensor.FP64:
			t.Data = append(t.Data, tensor.AsBytes([]float64{float64(i) / 3})...)
		default:
			b := make([]byte, dt.Size())
			b[0] = byte(i + 1)
			t.Data = append(t.Data, b...)
		}
	}
	return t
}

// allTypesServer serves a fake model with one input/output pair per datatype.
func allTypesServer(t *testing.T) *httptest.Server {
	t.Helper()
	var ins, outs []string
	for _, dt := range tensor.AllDataTypes {
		ins = append(ins, fmt.Sprintf(`{"name":"x_%s","datatype":"%s","shape":[-1,3]}`, dt, dt))
		outs = append(outs, fmt.Sprintf(`{"name":"y_%s","datatype":"%s","shape":[-1,3],"from":"x_%s"}`, dt, dt, dt))
	}
	spec := `{"inputs":[` + strings.Join(ins, ",") + `],"outputs":[` + strings.Join(outs, ",") + `]}`
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "all", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "all", "1", "model.fake.json"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	mgr := serving.New(serving.Options{Catalog: catalog.NewRepository(dir), Backends: []inference.Backend{inferencetest.NewFake()}, Registerer: reg})
	if err := mgr.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	api := httpapi.New(httpapi.Options{Manager: mgr, Gatherer: reg, Registerer: reg, ServerVersion: "test"})
	api.SetStarted()
	srv := httptest.NewServer(api)
	t.Cleanup(func() {
		srv.Close()
		_ = mgr.Close(context.Background())
	})
	return srv
}

type response struct {
	header http.Header
	json   []byte
	binary []byte
	code   int
}

func post(t *testing.T, url string, hdr map[string]string, body []byte) response {
	t.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := response{header: resp.Header, code: resp.StatusCode, json: b}
	if h := resp.Header.Get("Inference-Header-Content-Length"); h != "" {
		n, err := strconv.Atoi(h)
		if err != nil || n > len(b) {
			t.Fatalf("bad response header length %q", h)
		}
		r.json, r.binary = b[:n], b[n:]
	}
	return r
}

// outputsOf decodes a response's outputs into tensors (JSON data or binary chunks).
func outputsOf(t *testing.T, r response) map[string]tensor.Tensor {
	t.Helper()
	v, err := fastjson.ParseBytes(r.json)
	if err != nil {
		t.Fatalf("response JSON: %v: %s", err, r.json)
	}
	out := map[string]tensor.Tensor{}
	bin := r.binary
	for _, o := range v.GetArray("outputs") {
		dt, err := tensor.ParseDataType(string(o.GetStringBytes("datatype")))
		if err != nil {
			t.Fatal(err)
		}
		var shape tensor.Shape
		for _, d := range o.GetArray("shape") {
			shape = append(shape, d.GetInt64())
		}
		ts := tensor.Tensor{Name: string(o.GetStringBytes("name")), DataType: dt, Shape: shape}
		if size := o.GetInt("parameters", "binary_data_size"); o.Exists("parameters", "binary_data_size") {
			ts.Data, bin = bin[:size], bin[size:]
		} else {
			ts.Data, err = tensor.DecodeJSON(dt, shape, o.Get("data"), 0)
			if err != nil {
				t.Fatalf("output %s: %v", ts.Name, err)
			}
		}
		out[ts.Name] = ts
	}
	if len(bin) != 0 {
		t.Fatalf("%d unclaimed binary bytes", len(bin))
	}
	return out
}

// TestEveryDataTypeJSONAndBinary: every OIP datatype goes through the HTTP
// API as JSON and as binary data, and both give the same outputs, which
// are what the model computed.
func TestEveryDataTypeJSONAndBinary(t *testing.T) {
	srv := allTypesServer(t)
	var jsonInputs, binInputs []string
	var raw []byte
	want := map[string]tensor.Tensor{}
	for _, dt := range tensor.AllDataTypes {
		in := sample(dt)
		data, err := tensor.AppendJSON(nil, &in)
		if err != nil {
			t.Fatal(err)
		}
		jsonInputs = append(jsonInputs, fmt.Sprintf(`{"name":%q,"datatype":"%s","shape":[2,3],"data":%s}`, in.Name, dt, data))
		binInputs = append(binInputs, fmt.Sprintf(`{"name":%q,"datatype":"%s","shape":[2,3],"parameters":{"binary_data_size":%d}}`, in.Name, dt, len(in.Data)))
		raw = append(raw, in.Data...)
		w := inferencetest.Expected(in, 1)
		w.Name = "y_" + dt.String()
		want[w.Name] = w
	}
	jr := post(t, srv.URL+"/v2/models/all/infer", nil, []byte(`{"id":"j","inputs":[`+strings.Join(jsonInputs, ",")+`]}`))
	if jr.code != 200 {
		t.Fatalf("json: %d %s", jr.code, jr.json)
	}
	head := `{"id":"j","inputs":[` + strings.Join(binInputs, ",") + `],"parameters":{"binary_data_output":true}}`
	br := post(t, srv.URL+"/v2/models/all/infer", map[string]string{"Inference-Header-Content-Length": strconv.Itoa(len(head))}, append([]byte(head), raw...))
	if br.code != 200 {
		t.Fatalf("binary: %d %s", br.code, br.json)
	}
	if len(br.binary) == 0 {
		t.Fatal("binary_data_output gave no binary outputs")
	}
	jouts, bouts := outputsOf(t, jr), outputsOf(t, br)
	for name, w := range want {
		t.Run(name, func(t *testing.T) {
			for kind, got := range map[string]tensor.Tensor{"json": jouts[name], "binary": bouts[name]} {
				if err := inferencetest.CompareTensor(got, w, 0); err != nil {
					t.Fatalf("%s: %v", kind, err)
				}
			}
		})
	}
}

func TestHealthAndDraining(t *testing.T) {
	dir := t.TempDir()
	mgr := serving.New(serving.Options{Catalog: catalog.NewRepository(dir)})
	api := httpapi.New(httpapi.Options{Manager: mgr})
	get := func(path string) (int, map[string]any) {
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		var body map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		return rec.Code, body
	}
	tests := []struct {
		name      string
		step      func()
		wantReady int
	}{
		{"starting", func() {}, 503},
		{"started", api.SetStarted, 200},
		{"draining", api.SetDraining, 503},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.step()
			code, body := get("/v2/health/ready")
			if code != tc.wantReady || body["ready"] != (tc.wantReady == 200) {
				t.Fatalf("ready: %d %v", code, body)
			}
			if code, body := get("/v2/health/live"); code != 200 || body["live"] != true {
				t.Fatalf("live: %d %v", code, body)
			}
		})
	}
}

func TestFP32JSONRoundTripsExactly(t *testing.T) {
	// Values that need all 9 significant digits must come back bit-exact.
	srv := allTypesServer(t)
	vals := []float32{0.1, 1.0 / 3, 16777217, -1.17549435e-38, 3.4028235e38, 1e-45}
	in := tensor.Tensor{Name: "x_FP32", DataType: tensor.FP32, Shape: tensor.Shape{2, 3}, Data: tensor.AsBytes(vals)}
	data, _ := tensor.AppendJSON(nil, &in)
	var others []string
	for _, dt := range tensor.AllDataTypes {
		if dt == tensor.FP32 {
			continue
		}
		s := sample(dt)
		d, _ := tensor.AppendJSON(nil, &s)
		others = append(others, fmt.Sprintf(`{"name":%q,"datatype":"%s","shape":[2,3],"data":%s}`, s.Name, dt, d))
	}
	body := `{"inputs":[{"name":"x_FP32","datatype":"FP32","shape":[2,3],"data":` + string(data) + `},` + strings.Join(others, ",") + `],"outputs":[{"name":"y_FP32"}]}`
	r := post(t, srv.URL+"/v2/models/all/infer", nil, []byte(body))
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.json)
	}
	got := outputsOf(t, r)["y_FP32"]
	w := inferencetest.Expected(in, 1)
	gv, wv := tensor.View[float32](got.Data), tensor.View[float32](w.Data)
	for i := range wv {
		if math.Float32bits(gv[i]) != math.Float32bits(wv[i]) {
			t.Fatalf("element %d: got %v want %v", i, gv[i], wv[i])
		}
	}
}
