package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Concat joins tensors along dimension 0, the batch dimension. All must
// have the same name, datatype, rank (at least 1) and non-batch dimensions,
// and valid data. BYTES data concatenates as it is (each element carries
// its own length). A single tensor is returned with a copied shape and its
// data shared; otherwise the result owns new data.
func Concat(ts []*Tensor) (Tensor, error) {
	if len(ts) == 0 {
		return Tensor{}, fmt.Errorf("%w: nothing to concatenate", ErrInvalid)
	}
	first := ts[0]
	if len(first.Shape) == 0 {
		return Tensor{}, fmt.Errorf("%w: cannot concatenate %q: it has no batch dimension", ErrInvalid, first.Name)
	}
	var rows int64
	size := 0
	for i, t := range ts {
		if t.Name != first.Name || t.DataType != first.DataType {
			return Tensor{}, fmt.Errorf("%w: cannot concatenate tensor %d (%q %s) with %q %s", ErrInvalid, i, t.Name, t.DataType, first.Name, first.DataType)
		}
		if len(t.Shape) != len(first.Shape) || !t.Shape[1:].Equal(first.Shape[1:]) {
			return Tensor{}, fmt.Errorf("%w: cannot concatenate %q: shape %v of tensor %d does not match %v beyond dimension 0", ErrInvalid, t.Name, t.Shape, i, first.Shape)
		}
		if err := t.Validate(math.MaxInt64); err != nil {
			return Tensor{}, err
		}
		if t.Shape[0] > math.MaxInt64-rows {
			return Tensor{}, fmt.Errorf("%w: concatenated batch of %q overflows", ErrTooLarge, t.Name)
		}
		rows += t.Shape[0]
		size += len(t.Data)
	}
	shape := first.Shape.Clone()
	shape[0] = rows
	out := Tensor{Name: first.Name, DataType: first.DataType, Shape: shape}
	if len(ts) == 1 {
		out.Data = first.Data
		return out, nil
	}
	data := make([]byte, 0, size)
	for _, t := range ts {
		data = append(data, t.Data...)
	}
	out.Data = data
	return out, nil
}

// Split cuts t along dimension 0 into len(rows) tensors holding rows[i]
// rows each; the counts must be non-negative and add up to t.Shape[0]. It
// is the inverse of Concat. The parts share t's data (each capped so that
// appending to one cannot overwrite the next) and one shape allocation.
func Split(t *Tensor, rows []int64) ([]Tensor, error) {
	rank := len(t.Shape)
	if rank == 0 {
		return nil, fmt.Errorf("%w: cannot split %q: it has no batch dimension", ErrInvalid, t.Name)
	}
	if err := t.Validate(math.MaxInt64); err != nil {
		return nil, err
	}
	var total int64
	for i, r := range rows {
		if r < 0 {
			return nil, fmt.Errorf("%w: cannot split %q: part %d has negative rows (%d)", ErrInvalid, t.Name, i, r)
		}
		if r > t.Shape[0]-total {
			return nil, fmt.Errorf("%w: cannot split %q: parts need more than its %d rows", ErrInvalid, t.Name, t.Shape[0])
		}
		total += r
	}
	if total != t.Shape[0] {
		return nil, fmt.Errorf("%w: cannot split %q: parts hold %d rows, it has %d", ErrInvalid, t.Name, total, t.Shape[0])
	}
	inner, err := t.Shape[1:].Elements(math.MaxInt64)
	if err != nil {
		return nil, err
	}
	shapes := make([]int64, len(rows)*rank)
	out := make([]Tensor, len(rows))
	data := t.Data
	for i, r := range rows {
		s := Shape(shapes[i*rank : (i+1)*rank : (i+1)*rank])
		copy(s, t.Shape)
		s[0] = r
		var n int
		if t.DataType == Bytes {
			n = skipBytesElements(data, r*inner)
		} else {
			n = int(r * inner * int64(t.DataType.Size()))
		}
		out[i] = Tensor{Name: t.Name, DataType: t.DataType, Shape: s, Data: data[:n:n]}
		data = data[n:]
	}
	return out, nil
}

// skipBytesElements returns the byte length of the first n elements of
// BYTES data that Validate has already checked.
func skipBytesElements(b []byte, n int64) int {
	off := 0
	for ; n > 0; n-- {
		off += 4 + int(binary.LittleEndian.Uint32(b[off:]))
	}
	return off
}
