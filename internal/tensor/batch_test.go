package tensor

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestConcatSplitRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		parts []Tensor
	}{
		{name: "fp32 rows", parts: []Tensor{
			{Name: "x", DataType: FP32, Shape: Shape{2, 3}, Data: le[float32](1, 2, 3, 4, 5, 6)},
			{Name: "x", DataType: FP32, Shape: Shape{1, 3}, Data: le[float32](7, 8, 9)},
			{Name: "x", DataType: FP32, Shape: Shape{0, 3}, Data: nil},
			{Name: "x", DataType: FP32, Shape: Shape{1, 3}, Data: le[float32](10, 11, 12)},
		}},
		{name: "int8 rank 1", parts: []Tensor{
			{Name: "y", DataType: Int8, Shape: Shape{1}, Data: le[int8](-1)},
			{Name: "y", DataType: Int8, Shape: Shape{3}, Data: le[int8](1, 2, 3)},
		}},
		{name: "bytes", parts: []Tensor{
			{Name: "s", DataType: Bytes, Shape: Shape{2, 2}, Data: bytesData("a", "", "ccc", "dd")},
			{Name: "s", DataType: Bytes, Shape: Shape{1, 2}, Data: bytesData("eeeee", "f")},
			{Name: "s", DataType: Bytes, Shape: Shape{0, 2}, Data: nil},
		}},
		{name: "empty inner dim", parts: []Tensor{
			{Name: "z", DataType: Bool, Shape: Shape{2, 0}, Data: nil},
			{Name: "z", DataType: Bool, Shape: Shape{3, 0}, Data: nil},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ptrs := make([]*Tensor, len(tc.parts))
			var rows []int64
			var want []byte
			for i := range tc.parts {
				ptrs[i] = &tc.parts[i]
				rows = append(rows, tc.parts[i].Shape[0])
				want = append(want, tc.parts[i].Data...)
			}
			all, err := Concat(ptrs)
			if err != nil {
				t.Fatal(err)
			}
			if err := all.Validate(0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(all.Data, want) {
				t.Fatalf("concat data % x, want % x", all.Data, want)
			}
			split, err := Split(&all, rows)
			if err != nil {
				t.Fatal(err)
			}
			if len(split) != len(tc.parts) {
				t.Fatalf("split into %d parts, want %d", len(split), len(tc.parts))
			}
			for i, p := range split {
				w := tc.parts[i]
				if p.Name != w.Name || p.DataType != w.DataType || !p.Shape.Equal(w.Shape) || !bytes.Equal(p.Data, w.Data) {
					t.Fatalf("part %d = %q %s %v % x, want %q %s %v % x", i, p.Name, p.DataType, p.Shape, p.Data, w.Name, w.DataType, w.Shape, w.Data)
				}
			}
		})
	}
}

func TestConcatSingleSharesData(t *testing.T) {
	in := Tensor{Name: "x", DataType: FP32, Shape: Shape{1, 2}, Data: le[float32](1, 2)}
	out, err := Concat([]*Tensor{&in})
	if err != nil {
		t.Fatal(err)
	}
	if &out.Data[0] != &in.Data[0] {
		t.Fatal("single-tensor concat copied the data")
	}
	out.Shape[0] = 5
	if in.Shape[0] != 1 {
		t.Fatal("concat result shares the input shape")
	}
}

func TestSplitPartsAreCapped(t *testing.T) {
	in := Tensor{Name: "x", DataType: Int32, Shape: Shape{2}, Data: le[int32](1, 2)}
	parts, err := Split(&in, []int64{1, 1})
	if err != nil {
		t.Fatal(err)
	}
	_ = append(parts[0].Data, 0xff, 0xff, 0xff, 0xff)
	if !bytes.Equal(parts[1].Data, le[int32](2)) {
		t.Fatal("appending to part 0 overwrote part 1")
	}
}

func TestConcatErrors(t *testing.T) {
	x := func(dt DataType, shape Shape, data []byte) *Tensor {
		return &Tensor{Name: "x", DataType: dt, Shape: shape, Data: data}
	}
	tests := []struct {
		name string
		ts   []*Tensor
		msg  string
	}{
		{name: "none", ts: nil, msg: "nothing to concatenate"},
		{name: "scalar", ts: []*Tensor{x(FP32, Shape{}, le[float32](1))}, msg: "no batch dimension"},
		{name: "name", ts: []*Tensor{x(FP32, Shape{1}, le[float32](1)), {Name: "y", DataType: FP32, Shape: Shape{1}, Data: le[float32](1)}}, msg: `tensor 1 ("y" FP32)`},
		{name: "dtype", ts: []*Tensor{x(FP32, Shape{1}, le[float32](1)), x(Int32, Shape{1}, le[int32](1))}, msg: "INT32"},
		{name: "inner dims", ts: []*Tensor{x(FP32, Shape{1, 2}, le[float32](1, 2)), x(FP32, Shape{1, 1}, le[float32](1))}, msg: "does not match [1,2] beyond dimension 0"},
		{name: "rank", ts: []*Tensor{x(FP32, Shape{1, 1}, le[float32](1)), x(FP32, Shape{1}, le[float32](1))}, msg: "does not match"},
		{name: "bad data", ts: []*Tensor{x(FP32, Shape{1}, le[float32](1)), x(FP32, Shape{2}, le[float32](1))}, msg: "data bytes"},
		{name: "bad bytes", ts: []*Tensor{x(Bytes, Shape{1}, bytesData("a")), x(Bytes, Shape{1}, []byte{5, 0, 0, 0})}, msg: "exceeds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Concat(tc.ts)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.msg)
			}
		})
	}
}

func TestSplitErrors(t *testing.T) {
	fp := Tensor{Name: "x", DataType: FP32, Shape: Shape{3}, Data: le[float32](1, 2, 3)}
	tests := []struct {
		name string
		t    Tensor
		rows []int64
		msg  string
	}{
		{name: "short", t: fp, rows: []int64{1, 1}, msg: "parts hold 2 rows, it has 3"},
		{name: "long", t: fp, rows: []int64{2, 2}, msg: "parts need more than its 3 rows"},
		{name: "negative", t: fp, rows: []int64{-1, 4}, msg: "part 0 has negative rows (-1)"},
		{name: "negative later", t: fp, rows: []int64{1, -1, 3}, msg: "negative rows"},
		{name: "no rows", t: fp, rows: nil, msg: "parts hold 0 rows"},
		{name: "scalar", t: Tensor{Name: "x", DataType: FP32, Shape: Shape{}, Data: le[float32](1)}, rows: []int64{1}, msg: "no batch dimension"},
		{name: "bad data", t: Tensor{Name: "x", DataType: FP32, Shape: Shape{2}, Data: le[float32](1)}, rows: []int64{1, 1}, msg: "data bytes"},
		{name: "bad bytes", t: Tensor{Name: "x", DataType: Bytes, Shape: Shape{2}, Data: bytesData("a")}, rows: []int64{1, 1}, msg: "has 1 BYTES elements"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Split(&tc.t, tc.rows)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.msg)
			}
		})
	}
}

// TestHugeShapeByteSize guards against n*size wrapping around: 2^62 FP64
// elements would need 2^65 bytes, which wraps to 0 in int64.
func TestHugeShapeByteSize(t *testing.T) {
	huge := Tensor{Name: "h", DataType: FP64, Shape: Shape{1 << 62}}
	if err := huge.Validate(math.MaxInt64); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Validate = %v, want ErrTooLarge", err)
	}
	if _, err := ByteSize(FP64, huge.Shape, math.MaxInt64); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ByteSize err = %v, want ErrTooLarge", err)
	}
	if _, err := Split(&huge, []int64{1 << 62}); err == nil {
		t.Fatal("Split accepted a tensor without data")
	}
}
