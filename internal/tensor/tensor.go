// Package tensor provides Kiln's tensor representation: the Open Inference
// Protocol data types, shapes with validation, contiguous little-endian
// storage, and the codecs between that storage and the protocol's JSON and
// binary encodings.
//
// A Tensor's Data holds elements row-major, little-endian, at their native
// width. BYTES tensors hold each element as a 4-byte little-endian length
// followed by the bytes, exactly the binary-extension wire form, so binary
// requests pass through without re-encoding and batches concatenate by
// appending.
package tensor

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// DataType is an Open Inference Protocol tensor element type.
type DataType uint8

// The OIP data types. Invalid is the zero value.
const (
	Invalid DataType = iota
	Bool
	Uint8
	Uint16
	Uint32
	Uint64
	Int8
	Int16
	Int32
	Int64
	FP16
	FP32
	FP64
	Bytes
	BF16
)

var dtypeNames = [...]string{
	Invalid: "INVALID",
	Bool:    "BOOL",
	Uint8:   "UINT8",
	Uint16:  "UINT16",
	Uint32:  "UINT32",
	Uint64:  "UINT64",
	Int8:    "INT8",
	Int16:   "INT16",
	Int32:   "INT32",
	Int64:   "INT64",
	FP16:    "FP16",
	FP32:    "FP32",
	FP64:    "FP64",
	Bytes:   "BYTES",
	BF16:    "BF16",
}

var dtypeSizes = [...]int{
	Bool: 1, Uint8: 1, Uint16: 2, Uint32: 4, Uint64: 8,
	Int8: 1, Int16: 2, Int32: 4, Int64: 8,
	FP16: 2, FP32: 4, FP64: 8, Bytes: 0, BF16: 2,
}

// AllDataTypes lists every valid data type in protocol order.
var AllDataTypes = []DataType{Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, FP16, FP32, FP64, Bytes, BF16}

// String returns the protocol name ("FP32", "BYTES", ...).
func (d DataType) String() string {
	if int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return "DataType(" + strconv.Itoa(int(d)) + ")"
}

// Size is the element width in bytes; 0 for BYTES (variable) and Invalid.
func (d DataType) Size() int {
	if int(d) < len(dtypeSizes) {
		return dtypeSizes[d]
	}
	return 0
}

// Valid reports whether d is one of the protocol data types.
func (d DataType) Valid() bool { return d > Invalid && d <= BF16 }

// ParseDataType parses a protocol name; it also accepts Triton's config
// spelling ("TYPE_FP32", "TYPE_STRING").
func ParseDataType(s string) (DataType, error) {
	name := strings.TrimPrefix(s, "TYPE_")
	if name == "STRING" {
		return Bytes, nil
	}
	for i, n := range dtypeNames {
		if i != int(Invalid) && n == name {
			return DataType(i), nil
		}
	}
	return Invalid, fmt.Errorf("%w: unknown datatype %q", ErrInvalid, s)
}

// MarshalText implements encoding.TextMarshaler.
func (d DataType) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *DataType) UnmarshalText(b []byte) error {
	v, err := ParseDataType(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ErrInvalid marks a malformed tensor: bad shape, datatype or data.
var ErrInvalid = errors.New("invalid tensor")

// ErrTooLarge marks a tensor whose element count or byte size exceeds a limit.
var ErrTooLarge = errors.New("tensor too large")

// Shape is a list of dimensions. In a request every dimension is >= 0; in
// model metadata -1 marks a variable dimension.
type Shape []int64

// DefaultMaxElements bounds the element count of one tensor unless a
// caller chooses another limit (64 Mi elements).
const DefaultMaxElements = 64 << 20

// Elements returns the product of the dimensions after validating them:
// no negative dimension, no overflow, and at most max elements (max <= 0
// means DefaultMaxElements). It never allocates, so it is safe to call on
// untrusted shapes before any buffer is sized from them.
func (s Shape) Elements(max int64) (int64, error) {
	if max <= 0 {
		max = DefaultMaxElements
	}
	zero := false
	for i, d := range s {
		if d < 0 {
			return 0, fmt.Errorf("%w: dimension %d is negative (%d)", ErrInvalid, i, d)
		}
		zero = zero || d == 0
	}
	if zero {
		return 0, nil // an empty tensor, whatever its other dimensions
	}
	n := int64(1)
	for _, d := range s {
		if n > math.MaxInt64/d {
			return 0, fmt.Errorf("%w: shape %v overflows the element count", ErrTooLarge, s)
		}
		n *= d
		if n > max {
			return 0, fmt.Errorf("%w: shape %v has more than %d elements (the limit)", ErrTooLarge, s, max)
		}
	}
	return n, nil
}

// Equal reports whether two shapes are identical.
func (s Shape) Equal(o Shape) bool {
	if len(s) != len(o) {
		return false
	}
	for i := range s {
		if s[i] != o[i] {
			return false
		}
	}
	return true
}

// Matches reports whether a concrete shape fits a metadata shape in which
// -1 marks a variable dimension.
func (s Shape) Matches(pattern Shape) bool {
	if len(s) != len(pattern) {
		return false
	}
	for i := range s {
		if pattern[i] >= 0 && pattern[i] != s[i] {
			return false
		}
	}
	return true
}

// Clone returns a copy of s.
func (s Shape) Clone() Shape { return append(Shape(nil), s...) }

// String formats the shape as [a,b,c].
func (s Shape) String() string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(d, 10))
	}
	b.WriteByte(']')
	return b.String()
}

// Tensor is a named, typed, shaped block of contiguous element bytes.
type Tensor struct {
	Name     string
	DataType DataType
	Shape    Shape
	Data     []byte
}

// ByteSize returns the exact byte size a fixed-width tensor of this type
// and shape must have, validating the shape against max elements. For
// BYTES it returns -1 (the size depends on the elements).
func ByteSize(dt DataType, s Shape, max int64) (int64, error) {
	n, err := s.Elements(max)
	if err != nil {
		return 0, err
	}
	if dt == Bytes {
		return -1, nil
	}
	if !dt.Valid() {
		return 0, fmt.Errorf("%w: invalid datatype", ErrInvalid)
	}
	if n > math.MaxInt64/int64(dt.Size()) {
		return 0, fmt.Errorf("%w: %s%v overflows the byte size", ErrTooLarge, dt, s)
	}
	return n * int64(dt.Size()), nil
}

// Validate checks that t's data agrees with its datatype and shape: the
// exact byte length for fixed-width types; for BYTES, well-formed length
// prefixes whose count equals the element count.
func (t *Tensor) Validate(max int64) error {
	if !t.DataType.Valid() {
		return fmt.Errorf("%w: %q has an invalid datatype", ErrInvalid, t.Name)
	}
	n, err := t.Shape.Elements(max)
	if err != nil {
		return fmt.Errorf("%q: %w", t.Name, err)
	}
	if t.DataType == Bytes {
		count, err := CountBytesElements(t.Data)
		if err != nil {
			return fmt.Errorf("%q: %w", t.Name, err)
		}
		if count != n {
			return fmt.Errorf("%w: %q has %d BYTES elements, shape %v needs %d", ErrInvalid, t.Name, count, t.Shape, n)
		}
		return nil
	}
	size := int64(t.DataType.Size())
	if have := int64(len(t.Data)); have%size != 0 || have/size != n {
		if n > math.MaxInt64/size {
			return fmt.Errorf("%w: %q: %s%v overflows the byte size", ErrTooLarge, t.Name, t.DataType, t.Shape)
		}
		return fmt.Errorf("%w: %q has %d data bytes, %s%v needs %d", ErrInvalid, t.Name, len(t.Data), t.DataType, t.Shape, n*size)
	}
	return nil
}

// CountBytesElements walks length-prefixed BYTES data and returns the
// number of elements, failing if a length runs past the end.
func CountBytesElements(b []byte) (int64, error) {
	var n int64
	for len(b) > 0 {
		if len(b) < 4 {
			return 0, fmt.Errorf("%w: truncated BYTES length prefix", ErrInvalid)
		}
		l := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24
		b = b[4:]
		if l > uint64(len(b)) {
			return 0, fmt.Errorf("%w: BYTES element length %d exceeds the remaining %d bytes", ErrInvalid, l, len(b))
		}
		b = b[l:]
		n++
	}
	return n, nil
}
