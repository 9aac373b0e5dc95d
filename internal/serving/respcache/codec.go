package respcache

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/kilnai/kiln/internal/tensor"
)

// FormatVersion is the first byte of every encoded value. Decode refuses
// other versions, so replicas running different formats miss rather than
// misread each other's values.
const FormatVersion = 1

// The encoding, all integers little-endian:
//
//	version  uint8   FormatVersion
//	count    uint32  number of tensors
//	count times:
//	  nameLen  uint32, name bytes
//	  datatype uint8   tensor.DataType
//	  rank     uint32, rank × int64 dimensions
//	  dataLen  uint64, data bytes
//
// Nothing may follow the last tensor.
const (
	headerSize    = 1 + 4
	minTensorSize = 4 + 1 + 4 + 8
)

// EncodedSize returns the length of the encoding of ts.
func EncodedSize(ts []tensor.Tensor) int {
	n := headerSize
	for i := range ts {
		n += minTensorSize + len(ts[i].Name) + 8*len(ts[i].Shape) + len(ts[i].Data)
	}
	return n
}

// Encode returns the binary encoding of ts after validating every tensor
// as Decode will (tensor.Tensor.Validate: datatype, shape against data).
func Encode(ts []tensor.Tensor) ([]byte, error) {
	if err := validateAll(ts); err != nil {
		return nil, err
	}
	b := make([]byte, 0, EncodedSize(ts))
	b = append(b, FormatVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ts)))
	for i := range ts {
		t := &ts[i]
		b = binary.LittleEndian.AppendUint32(b, uint32(len(t.Name)))
		b = append(b, t.Name...)
		b = append(b, byte(t.DataType))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(t.Shape)))
		for _, d := range t.Shape {
			b = binary.LittleEndian.AppendUint64(b, uint64(d))
		}
		b = binary.LittleEndian.AppendUint64(b, uint64(len(t.Data)))
		b = append(b, t.Data...)
	}
	return b, nil
}

// validateAll checks what Encode can represent and Decode will accept.
func validateAll(ts []tensor.Tensor) error {
	if uint64(len(ts)) > math.MaxUint32 {
		return fmt.Errorf("%w: %d tensors", tensor.ErrTooLarge, len(ts))
	}
	for i := range ts {
		t := &ts[i]
		if uint64(len(t.Name)) > math.MaxUint32 || uint64(len(t.Shape)) > math.MaxUint32 {
			return fmt.Errorf("%w: output %d: name or rank too long to encode", tensor.ErrTooLarge, i)
		}
		if err := t.Validate(elementLimit(t.Data)); err != nil {
			return fmt.Errorf("output %d: %w", i, err)
		}
	}
	return nil
}

// elementLimit bounds the element count of a tensor with this much data: a
// valid tensor never has more elements than data bytes (BYTES elements
// take at least 4), so this rejects nothing valid while keeping arbitrary
// shapes from passing as enormous.
func elementLimit(data []byte) int64 { return int64(len(data)) + 1 }

// Decode parses an encoding produced by Encode, validating every length,
// datatype and shape, and each tensor with tensor.Tensor.Validate. It never
// panics and never allocates more than a small multiple of len(b); on any
// malformed input it returns an error wrapping ErrCorrupt.
//
// The returned tensors' Data alias b.
func Decode(b []byte) ([]tensor.Tensor, error) {
	d := decoder{b: b}
	v, ok := d.u8()
	if !ok {
		return nil, d.fail("missing format version")
	}
	if v != FormatVersion {
		return nil, fmt.Errorf("%w: format version %d, want %d", ErrCorrupt, v, FormatVersion)
	}
	count, ok := d.u32()
	if !ok {
		return nil, d.fail("truncated tensor count")
	}
	if uint64(count) > uint64(len(d.b))/minTensorSize {
		return nil, fmt.Errorf("%w: %d tensors cannot fit in %d bytes", ErrCorrupt, count, len(d.b))
	}
	ts := make([]tensor.Tensor, count)
	for i := range ts {
		t := &ts[i]
		name, ok := d.bytes32()
		if !ok {
			return nil, d.fail("truncated tensor name")
		}
		t.Name = string(name)
		dt, ok := d.u8()
		if !ok {
			return nil, d.fail("truncated datatype")
		}
		t.DataType = tensor.DataType(dt)
		if !t.DataType.Valid() {
			return nil, fmt.Errorf("%w: tensor %d has invalid datatype %d", ErrCorrupt, i, dt)
		}
		rank, ok := d.u32()
		if !ok {
			return nil, d.fail("truncated rank")
		}
		if uint64(rank) > uint64(len(d.b))/8 {
			return nil, fmt.Errorf("%w: tensor %d has rank %d, only %d bytes remain", ErrCorrupt, i, rank, len(d.b))
		}
		t.Shape = make(tensor.Shape, rank)
		for j := range t.Shape {
			u, _ := d.u64() // length checked above
			t.Shape[j] = int64(u)
		}
		n, ok := d.u64()
		if !ok {
			return nil, d.fail("truncated data length")
		}
		if n > uint64(len(d.b)) {
			return nil, fmt.Errorf("%w: tensor %d has %d data bytes, only %d remain", ErrCorrupt, i, n, len(d.b))
		}
		t.Data = d.b[:n:n]
		d.b = d.b[n:]
		if err := t.Validate(elementLimit(t.Data)); err != nil {
			return nil, fmt.Errorf("%w: tensor %d: %w", ErrCorrupt, i, err)
		}
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(d.b))
	}
	return ts, nil
}

type decoder struct{ b []byte }

func (d *decoder) fail(what string) error { return fmt.Errorf("%w: %s", ErrCorrupt, what) }

func (d *decoder) u8() (uint8, bool) {
	if len(d.b) < 1 {
		return 0, false
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v, true
}

func (d *decoder) u32() (uint32, bool) {
	if len(d.b) < 4 {
		return 0, false
	}
	v := binary.LittleEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v, true
}

func (d *decoder) u64() (uint64, bool) {
	if len(d.b) < 8 {
		return 0, false
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v, true
}

func (d *decoder) bytes32() ([]byte, bool) {
	n, ok := d.u32()
	if !ok || uint64(n) > uint64(len(d.b)) {
		return nil, false
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v, true
}
