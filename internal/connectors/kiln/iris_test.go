package kiln

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/kilnai/kiln/internal/inference/onnx"
	"github.com/kilnai/kiln/internal/pipeline"
	"github.com/kilnai/kiln/internal/serving"
	"github.com/kilnai/kiln/internal/tensor"
)

// irisManager serves the demo iris model (models/iris) on ONNX Runtime;
// the test is skipped without the library unless KILN_REQUIRE_SERVICES=1.
func irisManager(t *testing.T) *serving.Manager {
	t.Helper()
	if _, err := onnx.LibraryPath(""); err != nil {
		if os.Getenv("KILN_REQUIRE_SERVICES") == "1" {
			t.Fatalf("KILN_REQUIRE_SERVICES=1 but: %v", err)
		}
		t.Skipf("ONNX Runtime not available: %v", err)
	}
	root := filepath.Join("..", "..", "..", "models", "iris")
	cfg, err := os.ReadFile(filepath.Join(root, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	model, err := os.ReadFile(filepath.Join(root, "1", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	return newManager(t, map[string]string{"iris/config.yaml": string(cfg), "iris/1/model.onnx": string(model)}, onnx.New(onnx.Options{}))
}

// irisRows are measurements (cm) of a few flowers of each species.
var irisRows = [][4]float64{
	{5.1, 3.5, 1.4, 0.2}, {4.9, 3.0, 1.4, 0.2}, {7.0, 3.2, 4.7, 1.4}, {6.4, 3.2, 4.5, 1.5},
	{6.3, 3.3, 6.0, 2.5}, {5.8, 2.7, 5.1, 1.9}, {6.3, 3.4, 5.6, 2.4}, {5.0, 3.6, 1.4, 0.2},
	{5.5, 2.3, 4.0, 1.3}, {6.5, 3.0, 5.8, 2.2},
}

func irisBatch(t *testing.T, copies int) pipeline.Batch {
	mem := memory.DefaultAllocator
	names := []string{"sepal_length", "sepal_width", "petal_length", "petal_width"}
	var fields []arrow.Field
	var cols []arrow.Array
	for j, name := range names {
		b := array.NewFloat64Builder(mem)
		for range copies {
			for _, r := range irisRows {
				b.Append(r[j])
			}
		}
		cols = append(cols, b.NewArray())
		b.Release()
		fields = append(fields, arrow.Field{Name: name, Type: arrow.PrimitiveTypes.Float64})
	}
	rec := array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, int64(copies*len(irisRows)))
	releaseAll(cols)
	t.Cleanup(rec.Release)
	return rec
}

const irisMapping = `{model: iris, inputs: {input: [sepal_length, sepal_width, petal_length, petal_width]}, outputs: {probabilities: [p0, p1, p2], label: label}, argmax: {probabilities: best}, batch_size: 16}`

// TestPredictIris checks predict's answers against single-row requests
// to the same model (what /v2/models/iris/infer does), in-process and
// over gRPC.
func TestPredictIris(t *testing.T) {
	mgr := irisManager(t)
	addr := serveGRPC(t, mgr)
	for _, mode := range []string{"in-process", "remote"} {
		t.Run(mode, func(t *testing.T) {
			body, env := irisMapping, pipeline.Env{Models: mgr}
			if mode == "remote" {
				body, env = strings.Replace(body, "model: iris,", "model: iris, remote: \""+addr+"\",", 1), pipeline.Env{}
			}
			tr, err := buildPredict(t, body, env)
			if err != nil {
				t.Fatal(err)
			}
			in := irisBatch(t, 7) // 70 rows: several calls
			out, rej, err := tr.Apply(context.Background(), in)
			if err != nil || len(rej) > 0 {
				t.Fatalf("err %v, rejected %v", err, rej)
			}
			defer out.Release()
			p := []*array.Float32{column(t, out, "p0").(*array.Float32), column(t, out, "p1").(*array.Float32), column(t, out, "p2").(*array.Float32)}
			label := column(t, out, "label").(*array.Int64)
			best := column(t, out, "best").(*array.Int64)
			for r := range int(out.NumRows()) {
				row := irisRows[r%len(irisRows)]
				x := []float32{float32(row[0]), float32(row[1]), float32(row[2]), float32(row[3])}
				resp, err := mgr.Infer(context.Background(), "iris", "", &serving.Request{Inputs: []tensor.Tensor{{Name: "input", DataType: tensor.FP32, Shape: tensor.Shape{1, 4}, Data: bytesOf(x)}}})
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range resp.Outputs {
					switch o.Name {
					case "probabilities":
						want := tensor.View[float32](o.Data)
						for j := range 3 {
							if math.Abs(float64(p[j].Value(r)-want[j])) > 1e-6 {
								t.Fatalf("row %d: p%d = %v, single request gives %v", r, j, p[j].Value(r), want[j])
							}
						}
					case "label":
						want := tensor.View[int64](o.Data)[0]
						if label.Value(r) != want || best.Value(r) != want {
							t.Fatalf("row %d: label %d, argmax %d; single request gives %d", r, label.Value(r), best.Value(r), want)
						}
					}
				}
			}
		})
	}
}
