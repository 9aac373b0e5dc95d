package transform

import (
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// TestKeepRowsTypes selects rows of every column layout (fixed width of
// each size, booleans, 32- and 64-bit offsets, nested) from a sliced
// batch (non-zero offsets) with nulls.
func TestKeepRowsTypes(t *testing.T) {
	mem := memory.DefaultAllocator
	types := []arrow.DataType{
		arrow.PrimitiveTypes.Int8, arrow.PrimitiveTypes.Int16, arrow.PrimitiveTypes.Int32, arrow.PrimitiveTypes.Int64,
		arrow.PrimitiveTypes.Float32, arrow.PrimitiveTypes.Float64, arrow.FixedWidthTypes.Boolean,
		arrow.BinaryTypes.String, arrow.BinaryTypes.LargeString, arrow.BinaryTypes.Binary,
		&arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, arrow.FixedWidthTypes.Date32,
		&arrow.Decimal128Type{Precision: 10, Scale: 2}, arrow.ListOf(arrow.PrimitiveTypes.Int64),
	}
	const rows = 12
	var fields []arrow.Field
	var cols []arrow.Array
	for i, dt := range types {
		b := array.NewBuilder(mem, dt)
		for r := range rows {
			if r%4 == 1 {
				b.AppendNull()
				continue
			}
			v := r * (i + 1)
			var s string
			switch dt.ID() {
			case arrow.BOOL:
				s = map[bool]string{true: "true", false: "false"}[v%3 == 0]
			case arrow.TIMESTAMP:
				s = "2024-01-02T03:04:05Z"
			case arrow.DATE32:
				s = "2024-01-02"
			case arrow.LIST:
				lb := b.(*array.ListBuilder)
				lb.Append(true)
				lb.ValueBuilder().(*array.Int64Builder).AppendValues([]int64{int64(v), int64(r)}, nil)
				continue
			case arrow.BINARY:
				b.(*array.BinaryBuilder).Append([]byte{byte(v), byte(r)})
				continue
			default:
				s = itoa(v)
			}
			if err := b.AppendValueFromString(s); err != nil {
				t.Fatalf("%s: %v", dt, err)
			}
		}
		cols = append(cols, b.NewArray())
		b.Release()
		fields = append(fields, arrow.Field{Name: dt.String(), Type: dt, Nullable: true})
	}
	full := array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, rows)
	releaseAll(cols)
	defer full.Release()
	in := full.NewSlice(3, rows) // offsets 3
	defer in.Release()
	keep := make([]bool, in.NumRows())
	n := 0
	for i := range keep {
		if i%3 != 0 {
			keep[i] = true
			n++
		}
	}
	out, err := keepRows(in, keep, n)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	if int(out.NumRows()) != n {
		t.Fatalf("%d rows, want %d", out.NumRows(), n)
	}
	for ci := range types {
		j := 0
		for i := range keep {
			if !keep[i] {
				continue
			}
			want, got := in.Column(ci).ValueStr(i), out.Column(ci).ValueStr(j)
			if want != got || in.Column(ci).IsNull(i) != out.Column(ci).IsNull(j) {
				t.Errorf("%s row %d: got %q, want %q", types[ci], i, got, want)
			}
			j++
		}
	}
	all := make([]bool, in.NumRows())
	for i := range all {
		all[i] = true
	}
	if same, _ := keepRows(in, all, len(all)); same != in {
		t.Error("keeping every row must return the input itself")
	}
	if none, _ := keepRows(in, make([]bool, len(all)), 0); none != nil {
		t.Error("keeping no row must return nil")
	}
}

func itoa(v int) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for v > 0 {
		b = append([]byte{byte('0' + v%10)}, b...)
		v /= 10
	}
	return string(b)
}
