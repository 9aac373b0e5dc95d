package tensor

import (
	"bytes"
	"testing"

	"github.com/valyala/fastjson"
)

// FuzzDecodeJSON decodes arbitrary JSON for a fuzzed datatype and shape.
// It must never panic, and whatever it accepts must be valid storage that
// AppendJSON writes back to the same bytes.
func FuzzDecodeJSON(f *testing.F) {
	seeds := []struct {
		js         string
		dt         uint8
		rank, a, b uint8
	}{
		{`[1,2,3,4]`, uint8(FP32), 2, 2, 2},
		{`[[1,2],[3,4]]`, uint8(Int64), 2, 2, 2},
		{`[[true,false]]`, uint8(Bool), 2, 1, 2},
		{`["a","\u00e9"]`, uint8(Bytes), 1, 2, 0},
		{`[["NaN","-Infinity"]]`, uint8(FP16), 2, 1, 2},
		{`7`, uint8(Uint8), 0, 0, 0},
		{`[65504,-0]`, uint8(BF16), 1, 2, 0},
		{`[-128,127]`, uint8(Int8), 1, 2, 0},
		{`[[[1]],[[2]]]`, uint8(FP64), 2, 2, 1},
	}
	for _, s := range seeds {
		f.Add(s.js, s.dt, s.rank, s.a, s.b)
	}
	f.Fuzz(func(t *testing.T, js string, dtb, rank, a, b uint8) {
		v, err := fastjson.Parse(js)
		if err != nil {
			return
		}
		dt := DataType(dtb % uint8(len(dtypeNames)+1))
		shape := Shape{int64(a % 9), int64(b % 9)}[:rank%3]
		data, err := DecodeJSON(dt, shape, v, 64)
		if err != nil {
			return
		}
		tn := Tensor{Name: "f", DataType: dt, Shape: shape, Data: data}
		if err := tn.Validate(64); err != nil {
			t.Fatalf("DecodeJSON(%s) produced invalid storage: %v", js, err)
		}
		out, err := AppendJSON(nil, &tn)
		if err != nil {
			t.Fatalf("AppendJSON of decoded %s: %v", js, err)
		}
		v2, err := fastjson.ParseBytes(out)
		if err != nil {
			t.Fatalf("AppendJSON wrote invalid JSON %s: %v", out, err)
		}
		again, err := DecodeJSON(dt, shape, v2, 64)
		if err != nil {
			t.Fatalf("decoding our own output %s: %v", out, err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("round trip of %s changed % x to % x", js, data, again)
		}
	})
}

// FuzzBinaryBytes feeds arbitrary bytes to the BYTES walkers. Nothing may
// panic; valid data must split and concatenate back to itself.
func FuzzBinaryBytes(f *testing.F) {
	f.Add(bytesData("a", "bc", ""), uint8(1), uint8(2))
	f.Add([]byte{1, 0, 0}, uint8(0), uint8(0))
	f.Add([]byte{255, 255, 255, 255, 1}, uint8(3), uint8(1))
	f.Add(bytesData("xyz", "", "", "w"), uint8(2), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, a, b uint8) {
		// Arbitrary shapes over arbitrary data: errors are fine, panics not.
		odd := Tensor{Name: "o", DataType: Bytes, Shape: Shape{int64(a % 5), int64(b % 5)}, Data: data}
		if parts, err := Split(&odd, []int64{int64(a%5) / 2, int64(a%5) - int64(a%5)/2}); err == nil {
			joined, err := Concat([]*Tensor{&parts[0], &parts[1]})
			if err != nil || !bytes.Equal(joined.Data, data) {
				t.Fatalf("split/concat of valid data: %v", err)
			}
		}
		_, _ = AppendJSON(nil, &odd)

		n, err := CountBytesElements(data)
		if err != nil {
			return
		}
		tn := Tensor{Name: "b", DataType: Bytes, Shape: Shape{n}, Data: data}
		if err := tn.Validate(-1); err != nil && n <= DefaultMaxElements {
			t.Fatalf("Validate rejects what CountBytesElements accepts: %v", err)
		}
		first := n * int64(a) / 255
		second := (n - first) * int64(b) / 255
		rows := []int64{first, second, n - first - second}
		parts, err := Split(&tn, rows)
		if err != nil {
			t.Fatalf("Split(%v) of %d elements: %v", rows, n, err)
		}
		ptrs := make([]*Tensor, len(parts))
		for i := range parts {
			if parts[i].Shape[0] != rows[i] {
				t.Fatalf("part %d has shape %v, want %d rows", i, parts[i].Shape, rows[i])
			}
			ptrs[i] = &parts[i]
		}
		joined, err := Concat(ptrs)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(joined.Data, data) || joined.Shape[0] != n {
			t.Fatalf("concat of split parts differs: %v % x", joined.Shape, joined.Data)
		}
		if js, err := AppendJSON(nil, &tn); err == nil {
			v, err := fastjson.ParseBytes(js)
			if err != nil {
				t.Fatalf("AppendJSON wrote invalid JSON %q: %v", js, err)
			}
			back, err := DecodeJSON(Bytes, tn.Shape, v, 0)
			if err != nil || !bytes.Equal(back, data) {
				t.Fatalf("JSON round trip of BYTES: %v, % x", err, back)
			}
		}
	})
}
