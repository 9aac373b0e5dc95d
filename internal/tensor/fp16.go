package tensor

import (
	"fmt"
	"math"

	"github.com/x448/float16"
)

// Float16Bits converts f to IEEE 754 binary16 (FP16) bits, rounding to
// nearest with ties to even. Values beyond the FP16 range become ±Inf,
// tiny values become FP16 subnormals or ±0, and NaN stays a (quiet) NaN
// with its sign.
func Float16Bits(f float32) uint16 { return float16.Fromfloat32(f).Bits() }

// Float16ToFloat32 converts FP16 bits to float32. Every FP16 value,
// subnormals included, is exactly representable as a float32.
func Float16ToFloat32(h uint16) float32 { return float16.Frombits(h).Float32() }

// BFloat16Bits converts f to bfloat16 (BF16) bits: the upper half of the
// float32, rounded to nearest with ties to even. NaN stays a quiet NaN
// with its sign; values that round past the largest BF16 become ±Inf.
func BFloat16Bits(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: truncate and force the quiet bit
		return uint16(b>>16) | 0x0040
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// BFloat16ToFloat32 converts BF16 bits to float32 (exact).
func BFloat16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// float16BitsFrom64 converts f to FP16 with a single correct rounding (see
// roundToOdd32).
func float16BitsFrom64(f float64) uint16 { return Float16Bits(roundToOdd32(f)) }

// bfloat16BitsFrom64 converts f to BF16 with a single correct rounding.
func bfloat16BitsFrom64(f float64) uint16 { return BFloat16Bits(roundToOdd32(f)) }

// roundToOdd32 rounds f to float32 with the round-to-odd rule: an inexact
// result is the neighbour whose last significand bit is 1. Rounding that
// result again to a format with at least two fewer significand bits (FP16
// has 11, BF16 8, float32 24) gives the same answer as rounding f once, so
// float64 -> FP16/BF16 conversions do not suffer double rounding.
func roundToOdd32(f float64) float32 {
	r := float32(f)
	if float64(r) == f || f != f || math.Float32bits(r)&1 == 1 {
		return r
	}
	if float64(r) < f {
		return math.Nextafter32(r, float32(math.Inf(1)))
	}
	return math.Nextafter32(r, float32(math.Inf(-1)))
}

// number is a fixed-width numeric element type (BOOL excluded).
type number interface {
	~uint8 | ~uint16 | ~uint32 | ~uint64 | ~int8 | ~int16 | ~int32 | ~int64 | ~float32 | ~float64
}

// Convert returns t converted to the numeric data type to, with a new
// shape and data (when to equals t's type the result shares t's data).
// BYTES converts only to itself.
//
// Conversions to floating-point types round to nearest, ties to even,
// once (an int64 or uint64 beyond 2^53 converted to BF16 may round twice);
// values beyond a type's range become ±Inf. Conversions to integer types
// are exact or fail: a value that is fractional, NaN or out of range is an
// error naming the element. Conversion to BOOL maps nonzero (and NaN) to
// true; BOOL converts to 0 or 1.
func Convert(t *Tensor, to DataType) (Tensor, error) {
	from := t.DataType
	if !to.Valid() {
		return Tensor{}, fmt.Errorf("%w: cannot convert %q to an invalid datatype", ErrInvalid, t.Name)
	}
	if err := t.Validate(math.MaxInt64); err != nil {
		return Tensor{}, err
	}
	out := Tensor{Name: t.Name, DataType: to, Shape: t.Shape.Clone()}
	if from == to {
		out.Data = t.Data
		return out, nil
	}
	if from == Bytes || to == Bytes {
		return Tensor{}, fmt.Errorf("%w: cannot convert %q from %s to %s", ErrInvalid, t.Name, from, to)
	}
	var err error
	switch from {
	case Bool:
		src := make([]uint8, len(t.Data))
		for i, b := range t.Data {
			if b != 0 {
				src[i] = 1
			}
		}
		out.Data, err = convertFrom(src, to)
	case Uint8:
		out.Data, err = convertFrom(View[uint8](t.Data), to)
	case Uint16:
		out.Data, err = convertFrom(View[uint16](t.Data), to)
	case Uint32:
		out.Data, err = convertFrom(View[uint32](t.Data), to)
	case Uint64:
		out.Data, err = convertFrom(View[uint64](t.Data), to)
	case Int8:
		out.Data, err = convertFrom(View[int8](t.Data), to)
	case Int16:
		out.Data, err = convertFrom(View[int16](t.Data), to)
	case Int32:
		out.Data, err = convertFrom(View[int32](t.Data), to)
	case Int64:
		out.Data, err = convertFrom(View[int64](t.Data), to)
	case FP32:
		out.Data, err = convertFrom(View[float32](t.Data), to)
	case FP64:
		out.Data, err = convertFrom(View[float64](t.Data), to)
	case FP16, BF16:
		// Every FP16 and BF16 value is exact in float32.
		dec := Float16ToFloat32
		if from == BF16 {
			dec = BFloat16ToFloat32
		}
		h := View[uint16](t.Data)
		f := make([]float32, len(h))
		for i, x := range h {
			f[i] = dec(x)
		}
		if to == FP32 {
			out.Data = AsBytes(f)
		} else {
			out.Data, err = convertFrom(f, to)
		}
	}
	if err != nil {
		return Tensor{}, fmt.Errorf("%w: converting %q from %s to %s: %w", ErrInvalid, t.Name, from, to, err)
	}
	return out, nil
}

func convertFrom[S number](src []S, to DataType) ([]byte, error) {
	switch to {
	case Bool:
		dst := make([]byte, len(src))
		for i, s := range src {
			if s != 0 {
				dst[i] = 1
			}
		}
		return dst, nil
	case Uint8:
		return convertExact[S, uint8](src)
	case Uint16:
		return convertExact[S, uint16](src)
	case Uint32:
		return convertExact[S, uint32](src)
	case Uint64:
		return convertExact[S, uint64](src)
	case Int8:
		return convertExact[S, int8](src)
	case Int16:
		return convertExact[S, int16](src)
	case Int32:
		return convertExact[S, int32](src)
	case Int64:
		return convertExact[S, int64](src)
	case FP32:
		return convertRound[S, float32](src), nil
	case FP64:
		return convertRound[S, float64](src), nil
	case FP16, BF16:
		dst := make([]uint16, len(src))
		if f32, ok := any(src).([]float32); ok {
			conv := Float16Bits
			if to == BF16 {
				conv = BFloat16Bits
			}
			for i, f := range f32 {
				dst[i] = conv(f)
			}
		} else {
			conv := float16BitsFrom64
			if to == BF16 {
				conv = bfloat16BitsFrom64
			}
			for i, s := range src {
				dst[i] = conv(float64(s))
			}
		}
		return AsBytes(dst), nil
	}
	return nil, fmt.Errorf("unsupported target type %s", to)
}

// convertExact converts to an integer type D, failing unless every value
// converts exactly: the round trip must give the value back with its sign.
func convertExact[S, D number](src []S) ([]byte, error) {
	dst := make([]D, len(src))
	for i, s := range src {
		d := D(s)
		if S(d) != s || (s < 0) != (d < 0) {
			return nil, fmt.Errorf("element %d (%v) is not representable as %T", i, s, d)
		}
		dst[i] = d
	}
	return AsBytes(dst), nil
}

// convertRound converts to a floating-point type D, rounding to nearest.
func convertRound[S, D number](src []S) []byte {
	dst := make([]D, len(src))
	for i, s := range src {
		dst[i] = D(s)
	}
	return AsBytes(dst)
}
