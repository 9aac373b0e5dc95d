package tensor

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

// le returns the little-endian storage of vals (a copy).
func le[T Element](vals ...T) []byte { return append([]byte{}, AsBytes(vals)...) }

// bytesData encodes strings in BYTES storage form.
func bytesData(ss ...string) []byte {
	b := []byte{}
	for _, s := range ss {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

func mustParse(t testing.TB, s string) *fastjson.Value {
	t.Helper()
	v, err := fastjson.Parse(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return v
}

func TestDecodeJSON(t *testing.T) {
	negZero32 := math.Float32frombits(1 << 31)
	tests := []struct {
		name  string
		dt    DataType
		shape Shape
		max   int64
		json  string
		want  []byte
		err   error  // sentinel the error must wrap; nil means success
		msg   string // substring of the error message
	}{
		{name: "flat fp32", dt: FP32, shape: Shape{2, 2}, json: `[1,2.5,-3,4e2]`, want: le[float32](1, 2.5, -3, 400)},
		{name: "nested fp32", dt: FP32, shape: Shape{2, 2}, json: `[[1,2.5],[-3,4e2]]`, want: le[float32](1, 2.5, -3, 400)},
		{name: "nested rank 3", dt: Int32, shape: Shape{2, 1, 2}, json: `[[[1,2]],[[3,4]]]`, want: le[int32](1, 2, 3, 4)},
		{name: "rank 3 flat", dt: Int32, shape: Shape{2, 1, 2}, json: `[1,2,3,4]`, want: le[int32](1, 2, 3, 4)},
		{name: "scalar shape", dt: Int32, shape: Shape{}, json: `7`, want: le[int32](7)},
		{name: "scalar in array for scalar shape", dt: Int32, shape: Shape{}, json: `[7]`, want: le[int32](7)},
		{name: "bare scalar one element", dt: Bool, shape: Shape{1, 1}, json: `true`, want: []byte{1}},
		{name: "empty", dt: FP32, shape: Shape{0}, json: `[]`, want: []byte{}},
		{name: "empty inner dim nested", dt: FP32, shape: Shape{2, 0}, json: `[[],[]]`, want: []byte{}},
		{name: "empty outer dim", dt: FP32, shape: Shape{0, 3}, json: `[]`, want: []byte{}},
		{name: "bools", dt: Bool, shape: Shape{4}, json: `[true,false,0,1]`, want: []byte{1, 0, 0, 1}},
		{name: "bool 2", dt: Bool, shape: Shape{1}, json: `[2]`, err: ErrInvalid, msg: "element 0: expected a boolean (or 0 or 1), got 2"},
		{name: "bool string", dt: Bool, shape: Shape{1}, json: `["true"]`, err: ErrInvalid, msg: "expected a boolean, got a string"},
		{name: "int8 range", dt: Int8, shape: Shape{3}, json: `[-128,0,127]`, want: le[int8](-128, 0, 127)},
		{name: "int8 too big", dt: Int8, shape: Shape{2}, json: `[1,128]`, err: ErrInvalid, msg: "element 1: 128 is out of range for INT8"},
		{name: "int8 too small", dt: Int8, shape: Shape{1}, json: `[-129]`, err: ErrInvalid, msg: "out of range for INT8"},
		{name: "uint8 negative", dt: Uint8, shape: Shape{1}, json: `[-1]`, err: ErrInvalid, msg: "-1 is out of range for UINT8"},
		{name: "uint8 negative zero", dt: Uint8, shape: Shape{1}, json: `[-0]`, want: []byte{0}},
		{name: "uint16", dt: Uint16, shape: Shape{2}, json: `[0,65535]`, want: le[uint16](0, 65535)},
		{name: "uint16 too big", dt: Uint16, shape: Shape{1}, json: `[65536]`, err: ErrInvalid, msg: "out of range for UINT16"},
		{name: "int16", dt: Int16, shape: Shape{2}, json: `[-32768,32767]`, want: le[int16](-32768, 32767)},
		{name: "uint32 max", dt: Uint32, shape: Shape{1}, json: `[4294967295]`, want: le[uint32](math.MaxUint32)},
		{name: "uint32 too big", dt: Uint32, shape: Shape{1}, json: `[4294967296]`, err: ErrInvalid, msg: "out of range"},
		{name: "int32 min", dt: Int32, shape: Shape{1}, json: `[-2147483648]`, want: le[int32](math.MinInt32)},
		{name: "uint64 max", dt: Uint64, shape: Shape{1}, json: `[18446744073709551615]`, want: le[uint64](math.MaxUint64)},
		{name: "uint64 overflow", dt: Uint64, shape: Shape{1}, json: `[18446744073709551616]`, err: ErrInvalid, msg: "out of range"},
		{name: "int64 extremes", dt: Int64, shape: Shape{2}, json: `[-9223372036854775808,9223372036854775807]`, want: le[int64](math.MinInt64, math.MaxInt64)},
		{name: "int64 overflow", dt: Int64, shape: Shape{1}, json: `[9223372036854775808]`, err: ErrInvalid, msg: "out of range for INT64"},
		{name: "int fraction", dt: Int32, shape: Shape{1}, json: `[1.5]`, err: ErrInvalid, msg: "1.5 is not an integer"},
		{name: "int written as float", dt: Int32, shape: Shape{1}, json: `[1.0]`, err: ErrInvalid, msg: "not an integer"},
		{name: "int exponent", dt: Int64, shape: Shape{1}, json: `[1e3]`, err: ErrInvalid, msg: "not an integer"},
		{name: "int leading zero", dt: Int64, shape: Shape{1}, json: `[01]`, err: ErrInvalid, msg: "malformed number"},
		{name: "int string", dt: Int64, shape: Shape{1}, json: `["1"]`, err: ErrInvalid, msg: "expected an integer, got a string"},
		{name: "int null", dt: Int64, shape: Shape{2}, json: `[1,null]`, err: ErrInvalid, msg: "element 1: expected an integer, got a null"},
		{name: "fp32 rounding", dt: FP32, shape: Shape{2}, json: `[0.1,16777217]`, want: le[float32](0.1, 16777216)},
		{name: "fp32 negative zero", dt: FP32, shape: Shape{1}, json: `[-0]`, want: le(negZero32)},
		{name: "fp32 overflow", dt: FP32, shape: Shape{1}, json: `[1e39]`, err: ErrInvalid, msg: "out of range for a 32-bit float"},
		{name: "fp64 overflow", dt: FP64, shape: Shape{1}, json: `[1e309]`, err: ErrInvalid, msg: "out of range"},
		{name: "fp64 non-finite strings", dt: FP64, shape: Shape{5}, json: `["NaN","Infinity","-Infinity","inf","-Inf"]`,
			want: le(math.NaN(), math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1))},
		{name: "fp32 other string", dt: FP32, shape: Shape{1}, json: `["1.5"]`, err: ErrInvalid, msg: `got the string "1.5"`},
		{name: "fp32 bare NaN token", dt: FP32, shape: Shape{1}, json: `[NaN]`, err: ErrInvalid, msg: `malformed number "NaN"`},
		{name: "fp32 lenient fastjson number", dt: FP32, shape: Shape{1}, json: `[1-2]`, err: ErrInvalid, msg: "malformed number"},
		{name: "fp32 boolean", dt: FP32, shape: Shape{1}, json: `[true]`, err: ErrInvalid, msg: "expected a number, got a boolean"},
		{name: "fp16", dt: FP16, shape: Shape{5}, json: `[1,0.5,65504,-2,"NaN"]`, want: le[uint16](0x3c00, 0x3800, 0x7bff, 0xc000, 0x7e00)},
		{name: "fp16 subnormal", dt: FP16, shape: Shape{1}, json: `[5.960464477539063e-8]`, want: le[uint16](1)},
		{name: "fp16 overflow", dt: FP16, shape: Shape{1}, json: `[65520]`, err: ErrInvalid, msg: "out of range for FP16"},
		{name: "fp16 just below overflow", dt: FP16, shape: Shape{1}, json: `[65519.99]`, want: le[uint16](0x7bff)},
		{name: "fp16 infinity", dt: FP16, shape: Shape{1}, json: `["-Infinity"]`, want: le[uint16](0xfc00)},
		{name: "bf16", dt: BF16, shape: Shape{3}, json: `[1,-0.5,3.140625]`, want: le[uint16](0x3f80, 0xbf00, 0x4049)},
		{name: "bf16 overflow", dt: BF16, shape: Shape{1}, json: `[3.4e38]`, err: ErrInvalid, msg: "out of range for BF16"},
		{name: "bytes", dt: Bytes, shape: Shape{3}, json: `["a","h\u00e9llo",""]`, want: bytesData("a", "héllo", "")},
		{name: "bytes nested", dt: Bytes, shape: Shape{1, 2}, json: `[["x","yz"]]`, want: bytesData("x", "yz")},
		{name: "bytes scalar", dt: Bytes, shape: Shape{1}, json: `"solo"`, want: bytesData("solo")},
		{name: "bytes number", dt: Bytes, shape: Shape{2}, json: `["a",1]`, err: ErrInvalid, msg: "element 1: expected a string, got a number"},
		{name: "bytes invalid utf8", dt: Bytes, shape: Shape{1}, json: "[\"\xff\"]", err: ErrInvalid, msg: "not valid UTF-8"},
		{name: "ragged", dt: FP32, shape: Shape{2, 4}, json: `[[1,2,3,4],[5,6,7]]`, err: ErrInvalid, msg: "expected 4 elements at dimension 1, got 3"},
		{name: "wrong outer count nested", dt: FP32, shape: Shape{3, 1}, json: `[[1],[2]]`, err: ErrInvalid, msg: "expected 3 elements at dimension 0, got 2"},
		{name: "nested too deep", dt: FP32, shape: Shape{1, 1}, json: `[[[1]]]`, err: ErrInvalid, msg: "nested deeper than shape [1,1]"},
		{name: "mixed nesting", dt: FP32, shape: Shape{2, 2}, json: `[[1,2],3]`, err: ErrInvalid, msg: "expected an array at dimension 1, got a number"},
		{name: "nested for rank 1", dt: FP32, shape: Shape{1}, json: `[[1]]`, err: ErrInvalid, msg: "element 0 is an array"},
		{name: "array later in flat data", dt: FP32, shape: Shape{2, 1}, json: `[1,[2]]`, err: ErrInvalid, msg: "element 1 is an array"},
		{name: "flat count", dt: FP32, shape: Shape{2, 2}, json: `[1,2,3]`, err: ErrInvalid, msg: "expected 4 elements, got 3"},
		{name: "scalar for many", dt: FP32, shape: Shape{2}, json: `1`, err: ErrInvalid, msg: "needs a shape with one element"},
		{name: "object", dt: FP32, shape: Shape{1}, json: `{"a":1}`, err: ErrInvalid, msg: "data must be an array, got an object"},
		{name: "null", dt: FP32, shape: Shape{1}, json: `null`, err: ErrInvalid, msg: "got a null"},
		{name: "negative dim", dt: FP32, shape: Shape{2, -1}, json: `[1]`, err: ErrInvalid, msg: "negative"},
		{name: "huge shape", dt: FP32, shape: Shape{1 << 40}, json: `[1]`, err: ErrTooLarge},
		{name: "over max", dt: FP32, shape: Shape{10}, max: 5, json: `[1,2,3,4,5,6,7,8,9,10]`, err: ErrTooLarge},
		{name: "invalid datatype", dt: Invalid, shape: Shape{1}, json: `[1]`, err: ErrInvalid, msg: "invalid datatype"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeJSON(tc.dt, tc.shape, mustParse(t, tc.json), tc.max)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("err = %q, want it to contain %q", err, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("got % x, want % x", got, tc.want)
			}
		})
	}
}

func TestDecodeJSONNilValue(t *testing.T) {
	if _, err := DecodeJSON(FP32, Shape{1}, nil, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
}

func TestAppendJSON(t *testing.T) {
	tests := []struct {
		name string
		t    Tensor
		want string
		msg  string // expected error substring
	}{
		{name: "fp32", t: Tensor{DataType: FP32, Shape: Shape{11}, Data: le[float32](1, 0.1, -2.5, 1e-7, 1e21, math.MaxFloat32, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), math.Float32frombits(1<<31), 123456.79)},
			want: `[1,0.1,-2.5,1e-7,1e+21,3.4028235e+38,"NaN","Infinity","-Infinity",-0,123456.79]`},
		{name: "fp64", t: Tensor{DataType: FP64, Shape: Shape{3}, Data: le(0.1, 1e-300, 5e-324)}, want: `[0.1,1e-300,5e-324]`},
		{name: "fp16", t: Tensor{DataType: FP16, Shape: Shape{4}, Data: le[uint16](0x3c00, 0x3555, 0x0001, 0x7c00)}, want: `[1,0.33325195,5.9604645e-8,"Infinity"]`},
		{name: "bf16", t: Tensor{DataType: BF16, Shape: Shape{2}, Data: le[uint16](0x3f80, 0x4049)}, want: `[1,3.140625]`},
		{name: "bool", t: Tensor{DataType: Bool, Shape: Shape{3}, Data: []byte{1, 0, 2}}, want: `[true,false,true]`},
		{name: "ints", t: Tensor{DataType: Int8, Shape: Shape{2}, Data: le[int8](-128, 127)}, want: `[-128,127]`},
		{name: "uint8", t: Tensor{DataType: Uint8, Shape: Shape{2}, Data: []byte{0, 255}}, want: `[0,255]`},
		{name: "int16", t: Tensor{DataType: Int16, Shape: Shape{1}, Data: le[int16](-32768)}, want: `[-32768]`},
		{name: "uint16", t: Tensor{DataType: Uint16, Shape: Shape{1}, Data: le[uint16](65535)}, want: `[65535]`},
		{name: "int32", t: Tensor{DataType: Int32, Shape: Shape{1}, Data: le[int32](-7)}, want: `[-7]`},
		{name: "uint32", t: Tensor{DataType: Uint32, Shape: Shape{1}, Data: le[uint32](math.MaxUint32)}, want: `[4294967295]`},
		{name: "int64", t: Tensor{DataType: Int64, Shape: Shape{2}, Data: le[int64](math.MinInt64, 3)}, want: `[-9223372036854775808,3]`},
		{name: "uint64", t: Tensor{DataType: Uint64, Shape: Shape{1}, Data: le[uint64](math.MaxUint64)}, want: `[18446744073709551615]`},
		{name: "empty", t: Tensor{DataType: FP32, Shape: Shape{0, 4}, Data: nil}, want: `[]`},
		{name: "bytes", t: Tensor{DataType: Bytes, Shape: Shape{3}, Data: bytesData("a", "q\"\n\\", "é")}, want: `["a","q\"\n\\","é"]`},
		{name: "bytes not utf8", t: Tensor{Name: "img", DataType: Bytes, Shape: Shape{2}, Data: bytesData("ok", "\xff\xd8")}, msg: "BYTES element 1 is not valid UTF-8; request it as binary output"},
		{name: "short data", t: Tensor{Name: "x", DataType: FP32, Shape: Shape{2}, Data: le[float32](1)}, msg: "has 4 data bytes"},
		{name: "bad bytes prefix", t: Tensor{Name: "x", DataType: Bytes, Shape: Shape{1}, Data: []byte{9, 0, 0, 0, 'a'}}, msg: "exceeds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("xx")
			got, err := AppendJSON(prefix, &tc.t)
			if tc.msg != "" {
				if err == nil || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.msg)
				}
				if string(got) != "xx" {
					t.Fatalf("dst changed on error: %q", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "xx"+tc.want {
				t.Fatalf("got  %s\nwant xx%s", got, tc.want)
			}
		})
	}
}

// randomTensor returns a tensor of dt and shape with random contents that
// JSON can carry (valid UTF-8 for BYTES, 0/1 for BOOL).
func randomTensor(r *rand.Rand, dt DataType, shape Shape) Tensor {
	n, _ := shape.Elements(0)
	t := Tensor{Name: "t", DataType: dt, Shape: shape}
	switch dt {
	case Bytes:
		var ss []string
		for range n {
			s := make([]rune, r.IntN(6))
			for j := range s {
				s[j] = rune(r.IntN(0x3000))
				if s[j] >= 0xd800 && s[j] < 0xe000 { // surrogates are not valid UTF-8
					s[j] = 'x'
				}
			}
			ss = append(ss, string(s))
		}
		t.Data = bytesData(ss...)
	case Bool:
		t.Data = make([]byte, n)
		for i := range t.Data {
			t.Data[i] = byte(r.IntN(2))
		}
	default:
		t.Data = make([]byte, int(n)*dt.Size())
		for i := range t.Data {
			t.Data[i] = byte(r.Uint32())
		}
		// NaN payloads do not survive JSON; make NaNs canonical.
		switch dt {
		case FP32:
			f := View[float32](t.Data)
			for i := range f {
				if f[i] != f[i] {
					f[i] = float32(math.NaN())
				}
			}
		case FP64:
			f := View[float64](t.Data)
			for i := range f {
				if f[i] != f[i] {
					f[i] = math.NaN()
				}
			}
		case FP16:
			h := View[uint16](t.Data)
			for i := range h {
				if h[i]&0x7c00 == 0x7c00 && h[i]&0x3ff != 0 {
					h[i] = 0x7e00
				}
			}
		case BF16:
			h := View[uint16](t.Data)
			for i := range h {
				if h[i]&0x7f80 == 0x7f80 && h[i]&0x7f != 0 {
					h[i] = 0x7fc0
				}
			}
		}
	}
	return t
}

// nest rewrites a flat JSON array of scalars as arrays nested in shape.
func nest(t *testing.T, flat string, shape Shape) string {
	v := mustParse(t, flat)
	elems, _ := v.Array()
	var b strings.Builder
	var rec func(dim int)
	i := 0
	rec = func(dim int) {
		if dim == len(shape) {
			b.WriteString(elems[i].String())
			i++
			return
		}
		b.WriteByte('[')
		for j := int64(0); j < shape[dim]; j++ {
			if j > 0 {
				b.WriteByte(',')
			}
			rec(dim + 1)
		}
		b.WriteByte(']')
	}
	rec(0)
	return b.String()
}

func TestJSONRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	shapes := []Shape{{5}, {3, 4}, {2, 1, 3}, {2, 0}}
	for _, dt := range AllDataTypes {
		for _, shape := range shapes {
			t.Run(dt.String()+shape.String(), func(t *testing.T) {
				in := randomTensor(r, dt, shape)
				js, err := AppendJSON(nil, &in)
				if err != nil {
					t.Fatal(err)
				}
				forms := []string{string(js)}
				if len(shape) > 1 {
					forms = append(forms, nest(t, string(js), shape))
				}
				for _, form := range forms {
					got, err := DecodeJSON(dt, shape, mustParse(t, form), 0)
					if err != nil {
						t.Fatalf("decode %s: %v", form, err)
					}
					if !bytes.Equal(got, in.Data) {
						t.Fatalf("round trip of %s changed data:\n got % x\nwant % x", form, got, in.Data)
					}
				}
			})
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", `""`},
		{"plain", `"plain"`},
		{`q"b\`, `"q\"b\\"`},
		{"\n\r\t\x01\x1f", `"\n\r\t\u0001\u001f"`},
		{"héllo ✓ \u2028", "\"héllo ✓ \u2028\""},
		{"bad\xffbyte", `"bad\ufffdbyte"`},
		{"\xe2\x82", `"\ufffd\ufffd"`},
	}
	for _, tc := range tests {
		t.Run(strconv.Quote(tc.in), func(t *testing.T) {
			got := string(AppendJSONString(nil, tc.in))
			if got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			var back string
			if err := json.Unmarshal([]byte(got), &back); err != nil {
				t.Fatalf("output is not JSON: %v", err)
			}
			if want := strings.ToValidUTF8(tc.in, "\ufffd"); tc.in == want && back != tc.in {
				t.Fatalf("decoded %q, want %q", back, tc.in)
			}
		})
	}
}

func TestParseJSONInt(t *testing.T) {
	tests := []struct {
		in   string
		neg  bool
		mag  uint64
		fail bool
	}{
		{in: "0", mag: 0},
		{in: "-0", neg: true, mag: 0},
		{in: "42", mag: 42},
		{in: "-9223372036854775808", neg: true, mag: 1 << 63},
		{in: "18446744073709551615", mag: math.MaxUint64},
		{in: "18446744073709551616", fail: true},
		{in: "99999999999999999999", fail: true},
		{in: "1.0", fail: true},
		{in: "1e2", fail: true},
		{in: "01", fail: true},
		{in: "+1", fail: true},
		{in: "-", fail: true},
		{in: "", fail: true},
		{in: "1-", fail: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			neg, mag, err := ParseJSONInt([]byte(tc.in))
			if tc.fail {
				if err == nil {
					t.Fatalf("ParseJSONInt(%q) = %v, %d; want an error", tc.in, neg, mag)
				}
				return
			}
			if err != nil || neg != tc.neg || mag != tc.mag {
				t.Fatalf("ParseJSONInt(%q) = %v, %d, %v; want %v, %d", tc.in, neg, mag, err, tc.neg, tc.mag)
			}
		})
	}
}

func TestScanJSONNumber(t *testing.T) {
	tests := []struct {
		in             string
		valid, integer bool
	}{
		{"0", true, true}, {"-12", true, true}, {"1.5", true, false}, {"-0.0e+10", true, false},
		{"1E5", true, false}, {"1e", false, false}, {"1.", false, false}, {".5", false, false},
		{"00", false, false}, {"+1", false, false}, {"NaN", false, false}, {"-Inf", false, false},
		{"1.5.5", false, false}, {"--1", false, false}, {"1e+", false, false}, {"", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			valid, integer := ScanJSONNumber([]byte(tc.in))
			if valid != tc.valid || integer != tc.integer {
				t.Fatalf("ScanJSONNumber(%q) = %v, %v; want %v, %v", tc.in, valid, integer, tc.valid, tc.integer)
			}
			if _, err := strconv.ParseFloat(tc.in, 64); valid && err != nil {
				t.Fatalf("accepted %q, which strconv rejects: %v", tc.in, err)
			}
		})
	}
}
