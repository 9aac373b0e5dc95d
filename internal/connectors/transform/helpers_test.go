package transform

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/kilnai/kiln/internal/pipeline"
)

// col is a test column: values (nil = null) of one Go type, which picks
// the Arrow type: int64, int32, float64, float32, string, bool.
type col struct {
	name string
	vals []any
}

func c(name string, vals ...any) col { return col{name, vals} }

// mkBatch builds a batch from columns; the type of a column comes from
// its first non-nil value (typ overrides it when set as "name:type").
func mkBatch(t testing.TB, cols ...col) pipeline.Batch {
	t.Helper()
	mem := memory.DefaultAllocator
	var fields []arrow.Field
	var arrs []arrow.Array
	n := -1
	for _, cl := range cols {
		if n >= 0 && len(cl.vals) != n {
			t.Fatalf("column %s has %d values, want %d", cl.name, len(cl.vals), n)
		}
		n = len(cl.vals)
		var dt arrow.DataType = arrow.BinaryTypes.String
		for _, v := range cl.vals {
			if v == nil {
				continue
			}
			switch v.(type) {
			case int:
				dt = arrow.PrimitiveTypes.Int64
			case int32:
				dt = arrow.PrimitiveTypes.Int32
			case uint8:
				dt = arrow.PrimitiveTypes.Uint8
			case float64:
				dt = arrow.PrimitiveTypes.Float64
			case float32:
				dt = arrow.PrimitiveTypes.Float32
			case bool:
				dt = arrow.FixedWidthTypes.Boolean
			case string:
				dt = arrow.BinaryTypes.String
			case time.Time:
				dt = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
			default:
				t.Fatalf("unsupported test value %T", v)
			}
			break
		}
		b := array.NewBuilder(mem, dt)
		for _, v := range cl.vals {
			if v == nil {
				b.AppendNull()
				continue
			}
			switch bb := b.(type) {
			case *array.Int64Builder:
				bb.Append(int64(v.(int)))
			case *array.Int32Builder:
				bb.Append(v.(int32))
			case *array.Uint8Builder:
				bb.Append(v.(uint8))
			case *array.Float64Builder:
				bb.Append(v.(float64))
			case *array.Float32Builder:
				bb.Append(v.(float32))
			case *array.BooleanBuilder:
				bb.Append(v.(bool))
			case *array.StringBuilder:
				bb.Append(v.(string))
			case *array.TimestampBuilder:
				bb.Append(arrow.Timestamp(v.(time.Time).UnixMicro()))
			}
		}
		arrs = append(arrs, b.NewArray())
		b.Release()
		fields = append(fields, arrow.Field{Name: cl.name, Type: dt, Nullable: true})
	}
	rec := array.NewRecordBatch(arrow.NewSchema(fields, nil), arrs, int64(max(n, 0)))
	for _, a := range arrs {
		a.Release()
	}
	t.Cleanup(rec.Release)
	return rec
}

// values reads a column back as Go values: int64, float64, bool, string,
// int8, or nil for null.
func values(t testing.TB, b pipeline.Batch, name string) []any {
	t.Helper()
	if b == nil {
		return nil
	}
	idx := b.Schema().FieldIndices(name)
	if len(idx) == 0 {
		t.Fatalf("no column %q in %s", name, b.Schema())
	}
	a := b.Column(idx[0])
	out := make([]any, a.Len())
	for i := range out {
		if a.IsNull(i) {
			continue
		}
		switch x := a.(type) {
		case *array.Int64:
			out[i] = x.Value(i)
		case *array.Int8:
			out[i] = x.Value(i)
		case *array.Float64:
			out[i] = x.Value(i)
		case *array.Boolean:
			out[i] = x.Value(i)
		case *array.String:
			out[i] = x.Value(i)
		default:
			out[i] = a.ValueStr(i)
		}
	}
	return out
}

func names(b pipeline.Batch) []string {
	var out []string
	for _, f := range b.Schema().Fields() {
		out = append(out, f.Name)
	}
	return out
}

// build decodes a YAML body as the engine does and builds the transform.
func build(t testing.TB, name, body string) pipeline.Transform {
	t.Helper()
	tr, err := tryBuild(name, body)
	if err != nil {
		t.Fatalf("%s %s: %v", name, body, err)
	}
	return tr
}

func tryBuild(name, body string) (pipeline.Transform, error) {
	cfg, err := pipeline.DecodeComponent(pipeline.KindTransform, name, []byte(body), func(n string) (string, bool) {
		if n == "PII_SALT" {
			return "test-salt-0123456789", true
		}
		return "", false
	})
	if err != nil {
		return nil, err
	}
	spec, ok := pipeline.LookupTransform(name)
	if !ok {
		return nil, fmt.Errorf("no transform %s", name)
	}
	return spec.Build(context.Background(), cfg, pipeline.Env{})
}

// apply runs a transform and releases its output at cleanup.
func apply(t testing.TB, tr pipeline.Transform, in pipeline.Batch) (pipeline.Batch, []pipeline.RowError) {
	t.Helper()
	out, rej, err := tr.Apply(context.Background(), in)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if out != nil && out != in {
		t.Cleanup(out.Release)
	}
	return out, rej
}

// fit runs a Fitter's fitting pass over batches.
func fit(t testing.TB, tr pipeline.Transform, bs ...pipeline.Batch) {
	t.Helper()
	f, ok := tr.(pipeline.Fitter)
	if !ok {
		t.Fatalf("%T is not a Fitter", tr)
	}
	for _, b := range bs {
		if err := f.Fit(context.Background(), b); err != nil {
			t.Fatalf("fit: %v", err)
		}
	}
	if err := f.FitDone(context.Background()); err != nil {
		t.Fatalf("fit done: %v", err)
	}
}

func eq(t testing.TB, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func rowsOf(rej []pipeline.RowError) []int {
	var out []int
	for _, r := range rej {
		out = append(out, r.Row)
	}
	return out
}
