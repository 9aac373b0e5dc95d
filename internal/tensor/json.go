package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"
)

// JSON conventions shared by DecodeJSON and AppendJSON:
//
//   - Non-finite floating-point values travel as the JSON strings "NaN",
//     "Infinity" and "-Infinity" (JSON has no literal for them).
//     DecodeJSON also accepts "Inf", "+Inf", "+Infinity" and any letter
//     case. Bare NaN/Infinity tokens are not JSON and are rejected.
//   - BOOL elements are true/false; DecodeJSON also accepts 0 and 1.
//   - BYTES elements are JSON strings and must be valid UTF-8; binary
//     content needs the binary tensor extension.
//   - FP16 and BF16 are carried as ordinary JSON numbers.

// DecodeJSON decodes the "data" member of an OIP tensor into Kiln's storage
// form for dt and shape. v may be a flat array holding every element in
// row-major order, arrays nested in exactly the tensor's shape, or (when
// the shape has one element) a bare scalar.
//
// The shape is validated against max elements (see Shape.Elements) and the
// JSON structure is checked against it before any buffer is sized, so a
// small request cannot make DecodeJSON allocate a large one. Errors wrap
// ErrInvalid or ErrTooLarge and name the offending element.
func DecodeJSON(dt DataType, shape Shape, v *fastjson.Value, max int64) ([]byte, error) {
	if !dt.Valid() {
		return nil, fmt.Errorf("%w: invalid datatype", ErrInvalid)
	}
	n, err := shape.Elements(max)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, fmt.Errorf("%w: no data", ErrInvalid)
	}
	d := jsonDecoder{dt: dt, shape: shape}
	switch v.Type() {
	case fastjson.TypeArray:
		arr, _ := v.Array()
		if len(arr) > 0 && arr[0].Type() == fastjson.TypeArray && len(shape) >= 2 {
			if err := d.checkNested(arr, 0); err != nil {
				return nil, err
			}
			d.nested = true
		} else if err := d.checkFlat(arr, n); err != nil {
			return nil, err
		}
		d.root = arr
	case fastjson.TypeObject, fastjson.TypeNull:
		return nil, fmt.Errorf("%w: data must be an array, got %s", ErrInvalid, jsonKind(v))
	default:
		if n != 1 {
			return nil, fmt.Errorf("%w: a scalar data value needs a shape with one element, shape %v has %d", ErrInvalid, shape, n)
		}
		d.scalar = v
	}
	if dt == Bytes {
		return d.decodeBytes()
	}
	d.out = make([]byte, int(n)*dt.Size())
	if err := d.walk(); err != nil {
		return nil, err
	}
	return d.out, nil
}

// jsonDecoder carries the state of one DecodeJSON call.
type jsonDecoder struct {
	dt     DataType
	shape  Shape
	root   []*fastjson.Value
	scalar *fastjson.Value
	nested bool
	out    []byte
	// BYTES: sizing marks the first of two passes, in which size
	// accumulates the storage size.
	sizing bool
	size   int
	num    []byte // scratch for number literals (fastjson's MarshalTo makes its argument escape)
}

// number returns the literal text of a JSON number value, valid until the
// next call.
func (d *jsonDecoder) number(v *fastjson.Value) []byte {
	if d.num == nil {
		d.num = make([]byte, 0, 32)
	}
	d.num = v.MarshalTo(d.num[:0])
	return d.num
}

func (d *jsonDecoder) checkFlat(arr []*fastjson.Value, n int64) error {
	for i, e := range arr {
		if e.Type() == fastjson.TypeArray {
			return fmt.Errorf("%w: element %d is an array; data must be a flat array or nested exactly in shape %v", ErrInvalid, i, d.shape)
		}
	}
	if int64(len(arr)) != n {
		return fmt.Errorf("%w: expected %d elements, got %d", ErrInvalid, n, len(arr))
	}
	return nil
}

// checkNested verifies that arr, found at dimension dim, is rectangular and
// matches the shape from that dimension on.
func (d *jsonDecoder) checkNested(arr []*fastjson.Value, dim int) error {
	if int64(len(arr)) != d.shape[dim] {
		return fmt.Errorf("%w: expected %d elements at dimension %d, got %d", ErrInvalid, d.shape[dim], dim, len(arr))
	}
	last := dim == len(d.shape)-1
	for _, e := range arr {
		isArr := e.Type() == fastjson.TypeArray
		switch {
		case last && isArr:
			return fmt.Errorf("%w: data is nested deeper than shape %v", ErrInvalid, d.shape)
		case !last && !isArr:
			return fmt.Errorf("%w: expected an array at dimension %d, got %s", ErrInvalid, dim+1, jsonKind(e))
		case !last:
			sub, _ := e.Array()
			if err := d.checkNested(sub, dim+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// walk visits the checked data row by row in row-major order.
func (d *jsonDecoder) walk() error {
	if d.scalar != nil {
		one := [1]*fastjson.Value{d.scalar}
		return d.row(one[:], 0)
	}
	if !d.nested {
		return d.row(d.root, 0)
	}
	_, err := d.walkNested(d.root, 0, 0)
	return err
}

func (d *jsonDecoder) walkNested(arr []*fastjson.Value, dim, off int) (int, error) {
	if dim == len(d.shape)-1 {
		return off + len(arr), d.row(arr, off)
	}
	for _, e := range arr {
		sub, _ := e.Array()
		var err error
		if off, err = d.walkNested(sub, dim+1, off); err != nil {
			return off, err
		}
	}
	return off, nil
}

// row decodes consecutive elements starting at flat index off.
func (d *jsonDecoder) row(vs []*fastjson.Value, off int) error {
	out := d.out
	switch d.dt {
	case Bool:
		for i, v := range vs {
			b, err := d.bool(v)
			if err != nil {
				return elemErr(off+i, err)
			}
			out[off+i] = b
		}
	case Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64:
		size := d.dt.Size()
		for i, v := range vs {
			u, err := d.int(v, d.dt)
			if err != nil {
				return elemErr(off+i, err)
			}
			p := out[(off+i)*size:]
			switch size {
			case 1:
				p[0] = byte(u)
			case 2:
				binary.LittleEndian.PutUint16(p, uint16(u))
			case 4:
				binary.LittleEndian.PutUint32(p, uint32(u))
			default:
				binary.LittleEndian.PutUint64(p, u)
			}
		}
	case FP32:
		for i, v := range vs {
			f, err := d.float(v, 32)
			if err != nil {
				return elemErr(off+i, err)
			}
			binary.LittleEndian.PutUint32(out[(off+i)*4:], math.Float32bits(float32(f)))
		}
	case FP64:
		for i, v := range vs {
			f, err := d.float(v, 64)
			if err != nil {
				return elemErr(off+i, err)
			}
			binary.LittleEndian.PutUint64(out[(off+i)*8:], math.Float64bits(f))
		}
	case FP16, BF16:
		conv, limit := float16BitsFrom64, 65520.0 // FP16 max + half an ulp
		if d.dt == BF16 {
			conv, limit = bfloat16BitsFrom64, 0x1.ffp127 // BF16 max + half an ulp
		}
		for i, v := range vs {
			f, err := d.float(v, 64)
			if err != nil {
				return elemErr(off+i, err)
			}
			if !math.IsInf(f, 0) && math.Abs(f) >= limit {
				return elemErr(off+i, fmt.Errorf("%v is out of range for %s", f, d.dt))
			}
			binary.LittleEndian.PutUint16(out[(off+i)*2:], conv(f))
		}
	case Bytes:
		for i, v := range vs {
			if d.sizing {
				s, err := jsonString(v)
				if err != nil {
					return elemErr(off+i, err)
				}
				d.size += 4 + len(s)
				continue
			}
			s, _ := v.StringBytes() // validated by the sizing pass
			out = binary.LittleEndian.AppendUint32(out, uint32(len(s)))
			out = append(out, s...)
		}
		d.out = out
	}
	return nil
}

// decodeBytes runs two passes: the first validates every string and sizes
// the storage, the second fills it.
func (d *jsonDecoder) decodeBytes() ([]byte, error) {
	d.sizing = true
	if err := d.walk(); err != nil {
		return nil, err
	}
	d.sizing = false
	d.out = make([]byte, 0, d.size)
	if err := d.walk(); err != nil {
		return nil, err
	}
	return d.out, nil
}

func elemErr(i int, err error) error {
	return fmt.Errorf("%w: element %d: %w", ErrInvalid, i, err)
}

func jsonKind(v *fastjson.Value) string {
	switch t := v.Type(); t {
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return "a boolean"
	case fastjson.TypeObject, fastjson.TypeArray:
		return "an " + t.String()
	default:
		return "a " + t.String()
	}
}

func (d *jsonDecoder) bool(v *fastjson.Value) (byte, error) {
	switch v.Type() {
	case fastjson.TypeTrue:
		return 1, nil
	case fastjson.TypeFalse:
		return 0, nil
	case fastjson.TypeNumber:
		switch raw := d.number(v); string(raw) {
		case "0":
			return 0, nil
		case "1":
			return 1, nil
		default:
			return 0, fmt.Errorf("expected a boolean (or 0 or 1), got %s", string(raw))
		}
	}
	return 0, fmt.Errorf("expected a boolean, got %s", jsonKind(v))
}

// int parses an integer element for the integer type dt and returns
// its two's-complement bits.
func (d *jsonDecoder) int(v *fastjson.Value, dt DataType) (uint64, error) {
	if v.Type() != fastjson.TypeNumber {
		return 0, fmt.Errorf("expected an integer, got %s", jsonKind(v))
	}
	raw := d.number(v)
	neg, mag, err := ParseJSONInt(raw)
	if err != nil {
		return 0, err
	}
	bits := uint(dt.Size() * 8)
	signed := dt >= Int8 && dt <= Int64
	switch {
	case !signed && neg && mag != 0,
		!signed && bits < 64 && mag >= 1<<bits,
		signed && !neg && mag >= 1<<(bits-1),
		signed && neg && mag > 1<<(bits-1):
		return 0, fmt.Errorf("%s is out of range for %s", string(raw), dt)
	}
	if neg {
		return -mag, nil
	}
	return mag, nil
}

// ParseJSONInt parses raw as a JSON integer literal (an optional minus,
// then digits without leading zeros; no fraction or exponent) and returns
// its sign and magnitude. It fails for other numbers and for magnitudes
// beyond uint64.
func ParseJSONInt(raw []byte) (neg bool, mag uint64, err error) {
	valid, integer := ScanJSONNumber(raw)
	if !valid {
		return false, 0, fmt.Errorf("malformed number %q", string(raw))
	}
	if !integer {
		return false, 0, fmt.Errorf("%s is not an integer", string(raw))
	}
	s := raw
	if s[0] == '-' {
		neg, s = true, s[1:]
	}
	for _, c := range s {
		d := uint64(c - '0')
		if mag > (math.MaxUint64-d)/10 {
			return false, 0, fmt.Errorf("%s is out of range", string(raw))
		}
		mag = mag*10 + d
	}
	return neg, mag, nil
}

// ScanJSONNumber reports whether s is a number as RFC 8259 defines it
// (fastjson is more lenient) and whether it is an integer literal.
func ScanJSONNumber(s []byte) (valid, integer bool) {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false, false
	}
	integer = true
	if i < len(s) && s[i] == '.' {
		integer = false
		i++
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == j {
			return false, false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		integer = false
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == j {
			return false, false
		}
	}
	valid = i == len(s)
	return valid, valid && integer
}

// float parses a floating-point element, rounding once to bitSize.
func (d *jsonDecoder) float(v *fastjson.Value, bitSize int) (float64, error) {
	switch v.Type() {
	case fastjson.TypeNumber:
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		if f, ok := nonFinite(s); ok {
			return f, nil
		}
		return 0, fmt.Errorf(`expected a number, got the string %q (only "NaN", "Infinity" and "-Infinity" are allowed)`, s)
	default:
		return 0, fmt.Errorf("expected a number, got %s", jsonKind(v))
	}
	raw := d.number(v)
	if valid, _ := ScanJSONNumber(raw); !valid {
		return 0, fmt.Errorf(`malformed number %q (write non-finite values as the strings "NaN", "Infinity", "-Infinity")`, string(raw))
	}
	f, err := strconv.ParseFloat(string(raw), bitSize)
	if err != nil {
		return 0, fmt.Errorf("%s is out of range for a %d-bit float", string(raw), bitSize)
	}
	return f, nil
}

func nonFinite(s []byte) (float64, bool) {
	sign := 1
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		if s[0] == '-' {
			sign = -1
		}
		s = s[1:]
		if strings.EqualFold(string(s), "nan") {
			return 0, false
		}
	}
	switch {
	case strings.EqualFold(string(s), "nan"):
		return math.NaN(), true
	case strings.EqualFold(string(s), "inf"), strings.EqualFold(string(s), "infinity"):
		return math.Inf(sign), true
	}
	return 0, false
}

func jsonString(v *fastjson.Value) ([]byte, error) {
	if v.Type() != fastjson.TypeString {
		return nil, fmt.Errorf("expected a string, got %s", jsonKind(v))
	}
	s, _ := v.StringBytes()
	if !utf8.Valid(s) {
		return nil, fmt.Errorf("string is not valid UTF-8 (send binary content with the binary tensor extension)")
	}
	if uint64(len(s)) > math.MaxUint32 {
		return nil, fmt.Errorf("string of %d bytes exceeds the BYTES element limit", len(s))
	}
	return s, nil
}

// AppendJSON appends t's elements to dst as one flat JSON array in
// row-major order, without reflection. Floats are printed in the shortest
// form that reads back to the same value at the tensor's precision (FP16
// and BF16 via float32); NaN and ±Inf become the strings "NaN",
// "Infinity" and "-Infinity", which DecodeJSON accepts. BYTES elements
// become JSON strings; an element that is not valid UTF-8 is an error, as
// such a tensor can only be returned in binary form. On error dst is
// returned unchanged in length.
func AppendJSON(dst []byte, t *Tensor) ([]byte, error) {
	if err := t.Validate(math.MaxInt64); err != nil {
		return dst, err
	}
	start := len(dst)
	b := append(dst, '[')
	data := t.Data
	switch t.DataType {
	case Bool:
		for i, x := range data {
			b = comma(b, i)
			b = strconv.AppendBool(b, x != 0)
		}
	case Uint8:
		for i, x := range data {
			b = comma(b, i)
			b = strconv.AppendUint(b, uint64(x), 10)
		}
	case Int8:
		for i, x := range data {
			b = comma(b, i)
			b = strconv.AppendInt(b, int64(int8(x)), 10)
		}
	case Uint16, Int16, FP16, BF16:
		for i := 0; i < len(data); i += 2 {
			b = comma(b, i)
			u := binary.LittleEndian.Uint16(data[i:])
			switch t.DataType {
			case Uint16:
				b = strconv.AppendUint(b, uint64(u), 10)
			case Int16:
				b = strconv.AppendInt(b, int64(int16(u)), 10)
			case FP16:
				b = appendFloat(b, float64(Float16ToFloat32(u)), 32)
			default:
				b = appendFloat(b, float64(BFloat16ToFloat32(u)), 32)
			}
		}
	case Uint32, Int32, FP32:
		for i := 0; i < len(data); i += 4 {
			b = comma(b, i)
			u := binary.LittleEndian.Uint32(data[i:])
			switch t.DataType {
			case Uint32:
				b = strconv.AppendUint(b, uint64(u), 10)
			case Int32:
				b = strconv.AppendInt(b, int64(int32(u)), 10)
			default:
				b = appendFloat(b, float64(math.Float32frombits(u)), 32)
			}
		}
	case Uint64, Int64, FP64:
		for i := 0; i < len(data); i += 8 {
			b = comma(b, i)
			u := binary.LittleEndian.Uint64(data[i:])
			switch t.DataType {
			case Uint64:
				b = strconv.AppendUint(b, u, 10)
			case Int64:
				b = strconv.AppendInt(b, int64(u), 10)
			default:
				b = appendFloat(b, math.Float64frombits(u), 64)
			}
		}
	case Bytes:
		for i := 0; len(data) > 0; i++ {
			l := binary.LittleEndian.Uint32(data)
			s := data[4 : 4+l]
			data = data[4+l:]
			if !utf8.Valid(s) {
				return dst[:start], fmt.Errorf("%w: %q BYTES element %d is not valid UTF-8; request it as binary output (binary_data)", ErrInvalid, t.Name, i)
			}
			b = comma(b, i)
			b = AppendJSONString(b, unsafe.String(unsafe.SliceData(s), len(s)))
		}
	}
	return append(b, ']'), nil
}

func comma(b []byte, i int) []byte {
	if i > 0 {
		return append(b, ',')
	}
	return b
}

// appendFloat appends f as a JSON number in the shortest form that parses
// back to the same bitSize float, or as "NaN"/"Infinity"/"-Infinity".
// Plain decimal notation is used for magnitudes in [1e-6, 1e21) and
// exponent notation outside it.
func appendFloat(b []byte, f float64, bitSize int) []byte {
	switch {
	case f != f:
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, bitSize)
	if format == 'e' {
		// strconv writes at least two exponent digits ("1e-07"); drop the
		// padding zero to keep the output short.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s to dst as a JSON string literal. Quotes,
// backslashes and control characters are escaped; invalid UTF-8 bytes
// become U+FFFD.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
