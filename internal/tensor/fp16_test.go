package tensor

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"sort"
	"strings"
	"testing"
)

// half describes a 16-bit float format for the reference rounding below.
type half struct {
	name    string
	toF32   func(uint16) float32
	fromF32 func(float32) uint16
	from64  func(float64) uint16
	expMask uint16 // exponent bits
	fracMax uint16 // fraction bits
}

var halves = []half{
	{"FP16", Float16ToFloat32, Float16Bits, float16BitsFrom64, 0x7c00, 0x03ff},
	{"BF16", BFloat16ToFloat32, BFloat16Bits, bfloat16BitsFrom64, 0x7f80, 0x007f},
}

func (h half) isNaN(b uint16) bool { return b&h.expMask == h.expMask && b&h.fracMax != 0 }

// finite returns every non-negative finite value of the format with its
// bits, in increasing order.
func (h half) finite() ([]float64, []uint16) {
	var vals []float64
	var bits []uint16
	for b := uint16(0); b < h.expMask; b++ {
		vals = append(vals, float64(h.toF32(b)))
		bits = append(bits, b)
	}
	return vals, bits
}

// reference rounds x to the format by search over its values: nearest,
// ties to the even bit pattern, overflow to Inf past max + ulp/2.
func (h half) reference(x float64, vals []float64, bits []uint16) uint16 {
	sign := uint16(0)
	if math.Signbit(x) {
		sign = 0x8000
		x = -x
	}
	if math.IsInf(x, 0) {
		return sign | h.expMask
	}
	n := len(vals)
	maxv := vals[n-1]
	ulp := maxv - vals[n-2]
	if x >= maxv+ulp/2 {
		return sign | h.expMask
	}
	i := sort.SearchFloat64s(vals, x)
	if i == n {
		return sign | bits[n-1]
	}
	if vals[i] == x || i == 0 {
		return sign | bits[i]
	}
	lo, hi := x-vals[i-1], vals[i]-x
	switch {
	case lo < hi:
		return sign | bits[i-1]
	case hi < lo:
		return sign | bits[i]
	case bits[i-1]&1 == 0:
		return sign | bits[i-1]
	default:
		return sign | bits[i]
	}
}

func TestHalfExhaustiveRoundTrip(t *testing.T) {
	for _, h := range halves {
		t.Run(h.name, func(t *testing.T) {
			for i := range 1 << 16 {
				b := uint16(i)
				f := h.toF32(b)
				back := h.fromF32(f)
				if h.isNaN(b) {
					if f == f || !h.isNaN(back) || back&0x8000 != b&0x8000 {
						t.Fatalf("NaN %#04x -> %v -> %#04x", b, f, back)
					}
					continue
				}
				if back != b {
					t.Fatalf("%#04x -> %v -> %#04x", b, f, back)
				}
				if back64 := h.from64(float64(f)); back64 != b {
					t.Fatalf("from64: %#04x -> %v -> %#04x", b, f, back64)
				}
			}
		})
	}
}

func TestHalfRounding(t *testing.T) {
	for _, h := range halves {
		t.Run(h.name, func(t *testing.T) {
			vals, bits := h.finite()
			check := func(x float32) {
				t.Helper()
				want := h.reference(float64(x), vals, bits)
				if got := h.fromF32(x); got != want {
					t.Fatalf("%s(%v = %#08x) = %#04x, want %#04x", h.name, x, math.Float32bits(x), got, want)
				}
				if got := h.from64(float64(x)); got != want {
					t.Fatalf("from64(%v) = %#04x, want %#04x", x, got, want)
				}
			}
			// Every midpoint between neighbours and the floats around it.
			for i := 1; i < len(vals); i++ {
				mid := float32((vals[i-1] + vals[i]) / 2)
				for _, x := range []float32{mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, math.MaxFloat32)} {
					check(x)
					check(-x)
				}
			}
			// A spread of float32 bit patterns (NaNs excluded).
			for b := uint64(0); b < 1<<32; b += 65521 {
				if x := math.Float32frombits(uint32(b)); x == x {
					check(x)
				}
			}
			for _, x := range []float32{0, float32(math.Inf(1)), math.MaxFloat32, math.SmallestNonzeroFloat32} {
				check(x)
				check(-x)
			}
		})
	}
}

func TestFrom64SingleRounding(t *testing.T) {
	tests := []struct {
		name string
		conv func(float64) uint16
		in   float64
		want uint16
	}{
		// Just above the midpoint between 1 and the next FP16: rounding to
		// float32 first would land exactly on the midpoint and round down.
		{"fp16 above midpoint", float16BitsFrom64, 1 + 0x1p-11 + 0x1p-40, 0x3c01},
		{"fp16 midpoint", float16BitsFrom64, 1 + 0x1p-11, 0x3c00},
		{"fp16 below midpoint", float16BitsFrom64, 1 + 0x1p-11 - 0x1p-40, 0x3c00},
		{"fp16 huge", float16BitsFrom64, 1e300, 0x7c00},
		{"fp16 tiny", float16BitsFrom64, -1e-300, 0x8000},
		{"fp16 NaN", float16BitsFrom64, math.NaN(), 0x7e00},
		{"bf16 above midpoint", bfloat16BitsFrom64, 1 + 0x1p-8 + 0x1p-40, 0x3f81},
		{"bf16 midpoint", bfloat16BitsFrom64, 1 + 0x1p-8, 0x3f80},
		{"bf16 odd midpoint", bfloat16BitsFrom64, 1 + 0x1p-7 + 0x1p-8, 0x3f82},
		{"bf16 huge", bfloat16BitsFrom64, -1e300, 0xff80},
		{"bf16 between float32 max and overflow", bfloat16BitsFrom64, math.MaxFloat32 * 1.0000001, 0x7f80},
		{"bf16 NaN", bfloat16BitsFrom64, math.NaN(), 0x7fc0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.conv(tc.in); got != tc.want {
				t.Fatalf("got %#04x, want %#04x", got, tc.want)
			}
		})
	}
}

func TestConvert(t *testing.T) {
	nan32 := float32(math.NaN())
	tests := []struct {
		name string
		in   Tensor
		to   DataType
		want []byte
		msg  string // expected error substring
	}{
		{name: "int32 to int64", in: Tensor{DataType: Int32, Shape: Shape{3}, Data: le[int32](1, -2, math.MaxInt32)}, to: Int64, want: le[int64](1, -2, math.MaxInt32)},
		{name: "int32 to fp32", in: Tensor{DataType: Int32, Shape: Shape{2}, Data: le[int32](16777217, -3)}, to: FP32, want: le[float32](16777216, -3)},
		{name: "int64 to fp64", in: Tensor{DataType: Int64, Shape: Shape{1}, Data: le[int64](-5)}, to: FP64, want: le[float64](-5)},
		{name: "uint64 max to fp32", in: Tensor{DataType: Uint64, Shape: Shape{1}, Data: le[uint64](math.MaxUint64)}, to: FP32, want: le[float32](1 << 64)},
		{name: "uint8 to int8", in: Tensor{DataType: Uint8, Shape: Shape{2}, Data: []byte{0, 127}}, to: Int8, want: le[int8](0, 127)},
		{name: "uint8 to int8 overflow", in: Tensor{DataType: Uint8, Shape: Shape{2}, Data: []byte{0, 128}}, to: Int8, msg: "element 1 (128) is not representable as int8"},
		{name: "int8 negative to uint8", in: Tensor{DataType: Int8, Shape: Shape{1}, Data: le[int8](-1)}, to: Uint8, msg: "not representable"},
		{name: "int64 to uint8 overflow", in: Tensor{DataType: Int64, Shape: Shape{1}, Data: le[int64](300)}, to: Uint8, msg: "not representable"},
		{name: "uint64 to int64 overflow", in: Tensor{DataType: Uint64, Shape: Shape{1}, Data: le[uint64](1 << 63)}, to: Int64, msg: "not representable"},
		{name: "int64 min to int32", in: Tensor{DataType: Int64, Shape: Shape{1}, Data: le[int64](math.MinInt64)}, to: Int32, msg: "not representable"},
		{name: "fp32 whole to int32", in: Tensor{DataType: FP32, Shape: Shape{2}, Data: le[float32](3, -2147483648)}, to: Int32, want: le[int32](3, math.MinInt32)},
		{name: "fp32 fraction to int32", in: Tensor{DataType: FP32, Shape: Shape{2}, Data: le[float32](3, 1.5)}, to: Int32, msg: "element 1 (1.5)"},
		{name: "fp32 2^31 to int32", in: Tensor{DataType: FP32, Shape: Shape{1}, Data: le[float32](2147483648)}, to: Int32, msg: "not representable"},
		{name: "fp32 NaN to int64", in: Tensor{DataType: FP32, Shape: Shape{1}, Data: le(nan32)}, to: Int64, msg: "not representable"},
		{name: "fp64 huge to uint64", in: Tensor{DataType: FP64, Shape: Shape{1}, Data: le(1e20)}, to: Uint64, msg: "not representable"},
		{name: "fp64 2^63 to uint64", in: Tensor{DataType: FP64, Shape: Shape{1}, Data: le(0x1p63)}, to: Uint64, want: le[uint64](1 << 63)},
		{name: "fp64 negative to uint64", in: Tensor{DataType: FP64, Shape: Shape{1}, Data: le(-1.0)}, to: Uint64, msg: "not representable"},
		{name: "fp64 to fp32 overflow", in: Tensor{DataType: FP64, Shape: Shape{2}, Data: le(1e300, 0.1)}, to: FP32, want: le(float32(math.Inf(1)), float32(0.1))},
		{name: "fp32 to fp16", in: Tensor{DataType: FP32, Shape: Shape{4}, Data: le[float32](1, 65520, -0.5, 1+0x1p-11)}, to: FP16, want: le[uint16](0x3c00, 0x7c00, 0xb800, 0x3c00)},
		{name: "fp64 to fp16 single rounding", in: Tensor{DataType: FP64, Shape: Shape{1}, Data: le(1 + 0x1p-11 + 0x1p-40)}, to: FP16, want: le[uint16](0x3c01)},
		{name: "int32 to bf16", in: Tensor{DataType: Int32, Shape: Shape{2}, Data: le[int32](257, 259)}, to: BF16, want: le[uint16](0x4380, 0x4382)},
		{name: "fp16 to fp32", in: Tensor{DataType: FP16, Shape: Shape{4}, Data: le[uint16](0x3c00, 0x7bff, 0x0001, 0xfc00)}, to: FP32, want: le[float32](1, 65504, 0x1p-24, float32(math.Inf(-1)))},
		{name: "fp16 to int16", in: Tensor{DataType: FP16, Shape: Shape{1}, Data: le[uint16](0xc000)}, to: Int16, want: le[int16](-2)},
		{name: "fp16 to bf16", in: Tensor{DataType: FP16, Shape: Shape{2}, Data: le[uint16](0x3c00, 0x3c01)}, to: BF16, want: le[uint16](0x3f80, 0x3f80)},
		{name: "bf16 to fp16", in: Tensor{DataType: BF16, Shape: Shape{2}, Data: le[uint16](0x3f80, 0x4780)}, to: FP16, want: le[uint16](0x3c00, 0x7c00)},
		{name: "bf16 to fp64", in: Tensor{DataType: BF16, Shape: Shape{1}, Data: le[uint16](0x4049)}, to: FP64, want: le(3.140625)},
		{name: "bool to int32", in: Tensor{DataType: Bool, Shape: Shape{3}, Data: []byte{0, 1, 2}}, to: Int32, want: le[int32](0, 1, 1)},
		{name: "fp32 to bool", in: Tensor{DataType: FP32, Shape: Shape{4}, Data: le(0, float32(math.Copysign(0, -1)), 2, nan32)}, to: Bool, want: []byte{0, 0, 1, 1}},
		{name: "int64 to bool", in: Tensor{DataType: Int64, Shape: Shape{2}, Data: le[int64](0, -7)}, to: Bool, want: []byte{0, 1}},
		{name: "bytes to fp32", in: Tensor{DataType: Bytes, Shape: Shape{1}, Data: bytesData("1")}, to: FP32, msg: "cannot convert"},
		{name: "fp32 to bytes", in: Tensor{DataType: FP32, Shape: Shape{1}, Data: le[float32](1)}, to: Bytes, msg: "cannot convert"},
		{name: "invalid target", in: Tensor{DataType: FP32, Shape: Shape{1}, Data: le[float32](1)}, to: Invalid, msg: "invalid datatype"},
		{name: "invalid source data", in: Tensor{DataType: FP32, Shape: Shape{2}, Data: le[float32](1)}, to: FP64, msg: "data bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Name = "x"
			got, err := Convert(&tc.in, tc.to)
			if tc.msg != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.DataType != tc.to || got.Name != "x" || !got.Shape.Equal(tc.in.Shape) {
				t.Fatalf("got %s %q %v", got.DataType, got.Name, got.Shape)
			}
			if !bytes.Equal(got.Data, tc.want) {
				t.Fatalf("data % x, want % x", got.Data, tc.want)
			}
			if err := got.Validate(0); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestConvertSameTypeSharesData(t *testing.T) {
	in := Tensor{Name: "x", DataType: FP32, Shape: Shape{2}, Data: le[float32](1, 2)}
	got, err := Convert(&in, FP32)
	if err != nil {
		t.Fatal(err)
	}
	if &got.Data[0] != &in.Data[0] {
		t.Fatal("same-type conversion copied the data")
	}
	got.Shape[0] = 9
	if in.Shape[0] != 2 {
		t.Fatal("result shares the input's shape")
	}
}

// TestConvertAllPairs converts small integers, which every numeric type
// holds exactly, between every pair of numeric types.
func TestConvertAllPairs(t *testing.T) {
	values := []float64{0, 1, 2, 100, 127}
	numeric := slices.DeleteFunc(slices.Clone(AllDataTypes), func(d DataType) bool { return d == Bytes || d == Bool })
	for _, from := range numeric {
		src, err := Convert(&Tensor{Name: "v", DataType: FP64, Shape: Shape{5}, Data: le(values...)}, from)
		if err != nil {
			t.Fatal(err)
		}
		for _, to := range numeric {
			t.Run(from.String()+"->"+to.String(), func(t *testing.T) {
				got, err := Convert(&src, to)
				if err != nil {
					t.Fatal(err)
				}
				back, err := Convert(&got, FP64)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(back.Data, le(values...)) {
					t.Fatalf("got %v, want %v", View[float64](back.Data), values)
				}
			})
		}
	}
}
