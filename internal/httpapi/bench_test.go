package httpapi_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kilnai/kiln/internal/catalog"
	"github.com/kilnai/kiln/internal/httpapi"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/inference/inferencetest"
	"github.com/kilnai/kiln/internal/serving"
)

// BenchmarkInferHandler measures Kiln's own per-request cost on the HTTP
// path (decode, validate, schedule, encode, metrics) with a backend that
// does almost nothing: an MLP-shaped request of 64 FP32 values.
func BenchmarkInferHandler(b *testing.B) {
	dir := b.TempDir()
	spec := `{"inputs":[{"name":"input","datatype":"FP32","shape":[-1,64]}],"outputs":[{"name":"output","datatype":"FP32","shape":[-1,64],"from":"input"}]}`
	os.MkdirAll(filepath.Join(dir, "mlp", "1"), 0o755)
	os.WriteFile(filepath.Join(dir, "mlp", "1", "model.fake.json"), []byte(spec), 0o644)
	reg := prometheus.NewRegistry()
	mgr := serving.New(serving.Options{Catalog: catalog.NewRepository(dir), Backends: []inference.Backend{inferencetest.NewFake()}, Registerer: reg})
	if err := mgr.LoadAll(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer mgr.Close(context.Background())
	api := httpapi.New(httpapi.Options{Manager: mgr, Gatherer: reg, Registerer: reg})
	vals := make([]string, 64)
	raw := make([]byte, 256)
	for i := range vals {
		vals[i] = strconv.FormatFloat(float64(i)*0.37, 'g', -1, 32)
	}
	jsonBody := []byte(`{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[` + strings.Join(vals, ",") + `]}]}`)
	head := `{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","parameters":{"binary_data_size":256}}],"parameters":{"binary_data_output":true}}`
	binBody := append([]byte(head), raw...)
	cases := []struct {
		name string
		body []byte
		hdr  map[string]string
	}{
		{"json", jsonBody, nil},
		{"binary", binBody, map[string]string{"Inference-Header-Content-Length": strconv.Itoa(len(head))}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/v2/models/mlp/infer", bytes.NewReader(c.body))
				for k, v := range c.hdr {
					req.Header.Set(k, v)
				}
				rec := httptest.NewRecorder()
				api.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
