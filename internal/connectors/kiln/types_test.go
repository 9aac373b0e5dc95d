package kiln

import (
	"context"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/kilnai/kiln/internal/inference/inferencetest"
	"github.com/kilnai/kiln/internal/pipeline"
)

const typesSpec = `{"inputs": [{"name": "s", "datatype": "BYTES", "shape": [-1]}, {"name": "f", "datatype": "FP64", "shape": [-1, 3]}, {"name": "b", "datatype": "BOOL", "shape": [-1, 1]}, {"name": "u", "datatype": "UINT8", "shape": [-1]}],
 "outputs": [{"name": "s2", "datatype": "BYTES", "shape": [-1], "from": "s"}, {"name": "f2", "datatype": "FP64", "shape": [-1, 3], "from": "f"}, {"name": "b2", "datatype": "BOOL", "shape": [-1, 1], "from": "b"}, {"name": "u2", "datatype": "UINT8", "shape": [-1], "from": "u"}]}`

// TestPredictTypes maps string, float, bool and integer columns of other
// widths to BYTES, FP64, BOOL and UINT8 tensors, and outputs to a string
// column, a fixed-size list column and single columns.
func TestPredictTypes(t *testing.T) {
	mgr := newManager(t, map[string]string{"t/config.yaml": "backend: fake\nmax_batch_size: 4\n", "t/1/model.fake.json": typesSpec}, inferencetest.NewFake())
	tr, err := buildPredict(t, `{model: t, inputs: {s: name, f: [x, y, n], b: flag, u: n}, outputs: {s2: echo, f2: fs, b2: flag2, u2: small}}`, pipeline.Env{Models: mgr})
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.DefaultAllocator
	sb, xb, yb, nb, bb := array.NewStringBuilder(mem), array.NewFloat32Builder(mem), array.NewFloat64Builder(mem), array.NewInt16Builder(mem), array.NewBooleanBuilder(mem)
	const rows = 10
	for i := range rows {
		sb.Append(string(rune('a' + i)))
		xb.Append(float32(i) / 2)
		yb.Append(float64(-i))
		nb.Append(int16(i * 10))
		bb.Append(i%2 == 0)
	}
	cols := []arrow.Array{sb.NewArray(), xb.NewArray(), yb.NewArray(), nb.NewArray(), bb.NewArray()}
	for _, b := range []array.Builder{sb, xb, yb, nb, bb} {
		b.Release()
	}
	schema := arrow.NewSchema([]arrow.Field{{Name: "name", Type: arrow.BinaryTypes.String}, {Name: "x", Type: arrow.PrimitiveTypes.Float32}, {Name: "y", Type: arrow.PrimitiveTypes.Float64}, {Name: "n", Type: arrow.PrimitiveTypes.Int16}, {Name: "flag", Type: arrow.FixedWidthTypes.Boolean}}, nil)
	in := array.NewRecordBatch(schema, cols, rows)
	releaseAll(cols)
	defer in.Release()
	out, rej, err := tr.Apply(context.Background(), in)
	if err != nil || len(rej) > 0 {
		t.Fatalf("err %v, rejected %v", err, rej)
	}
	defer out.Release()
	echo := column(t, out, "echo").(*array.String)
	fs := column(t, out, "fs").(*array.FixedSizeList)
	fv := fs.ListValues().(*array.Float64)
	flag2 := column(t, out, "flag2").(*array.Boolean)
	small := column(t, out, "small").(*array.Uint8)
	for i := range rows {
		if echo.Value(i) != string(rune('a'+i)) || flag2.Value(i) != (i%2 == 0) {
			t.Fatalf("row %d: echo %q, flag %v", i, echo.Value(i), flag2.Value(i))
		}
		want := []float64{float64(i)/2*2 + 1, float64(-i)*2 + 1, float64(i*10)*2 + 1}
		for j, w := range want {
			if got := fv.Value(i*3 + j); got != w {
				t.Fatalf("row %d: fs[%d] = %v, want %v", i, j, got, w)
			}
		}
		if small.Value(i) != uint8(i*10*2+1) {
			t.Fatalf("row %d: small %d", i, small.Value(i))
		}
	}
}
