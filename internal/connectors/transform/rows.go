package transform

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/kilnai/kiln/internal/pipeline"
)

// This file holds the column kernels the transforms share: keeping a
// subset of a batch's rows, wrapping Go slices as Arrow arrays without
// copying, and reading numeric columns as float64.

// keepRows returns the rows of in whose keep flag is set (n of them). It
// returns in itself when every row is kept and nil when none is, so that
// the engine's ownership rules (out == in: nothing to release) hold.
func keepRows(in pipeline.Batch, keep []bool, n int) (pipeline.Batch, error) {
	rows := int(in.NumRows())
	if n == rows {
		return in, nil
	}
	if n == 0 {
		return nil, nil
	}
	rs := runsOf(keep)
	if len(rs) == 1 { // one contiguous range: a zero-copy slice
		return in.NewSlice(int64(rs[0].lo), int64(rs[0].hi)), nil
	}
	cols := make([]arrow.Array, in.NumCols())
	defer releaseAll(cols)
	for i := range cols {
		c, err := filterArray(in.Column(i), rs, n)
		if err != nil {
			return nil, fmt.Errorf("column %q: %w", in.Schema().Field(i).Name, err)
		}
		cols[i] = c
	}
	return array.NewRecordBatch(in.Schema(), cols, int64(n)), nil
}

// run is a range [lo, hi) of kept rows.
type run struct{ lo, hi int }

func runsOf(keep []bool) []run {
	var out []run
	for i := 0; i < len(keep); {
		if !keep[i] {
			i++
			continue
		}
		j := i + 1
		for j < len(keep) && keep[j] {
			j++
		}
		out = append(out, run{i, j})
		i = j
	}
	return out
}

// withoutRows returns in minus the rows named by rej (indexes into in).
func withoutRows(in pipeline.Batch, rej []pipeline.RowError) (pipeline.Batch, error) {
	if len(rej) == 0 {
		return in, nil
	}
	keep := make([]bool, in.NumRows())
	for i := range keep {
		keep[i] = true
	}
	n := len(keep)
	for _, r := range rej {
		if keep[r.Row] {
			keep[r.Row] = false
			n--
		}
	}
	return keepRows(in, keep, n)
}

func releaseAll(cols []arrow.Array) {
	for _, c := range cols {
		if c != nil {
			c.Release()
		}
	}
}

// bytesOf reinterprets a slice of fixed-width values as its bytes.
func bytesOf[T any](s []T) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(zero)))
}

// valuesOf reinterprets bytes as a slice of fixed-width values (the bytes
// come from Arrow buffers, which are 64-byte aligned, or from Go slices of
// the same type).
func valuesOf[T any](b []byte) []T {
	var zero T
	n := len(b) / int(unsafe.Sizeof(zero))
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

// copyBits copies the bits of the kept runs of src (from bit offset off)
// to a new bitmap of n bits.
func copyBits(src []byte, off int, rs []run, n int) []byte {
	out := make([]byte, bitutil.BytesForBits(int64(n)))
	pos := 0
	for _, r := range rs {
		if r.hi-r.lo >= 128 { // CopyBitmap has a set-up cost
			bitutil.CopyBitmap(src, off+r.lo, r.hi-r.lo, out, pos)
			pos += r.hi - r.lo
			continue
		}
		for i := off + r.lo; i < off+r.hi; i++ {
			if src[i>>3]&(1<<(i&7)) != 0 {
				out[pos>>3] |= 1 << (pos & 7)
			}
			pos++
		}
	}
	return out
}

// filterArray keeps the rows of a in the runs rs (n rows in all).
func filterArray(a arrow.Array, rs []run, n int) (arrow.Array, error) {
	d := a.Data()
	off := d.Offset()
	var validity *memory.Buffer
	nulls := 0
	if a.NullN() > 0 {
		bm := copyBits(d.Buffers()[0].Bytes(), off, rs, n)
		nulls = n - bitutil.CountSetBits(bm, 0, n)
		validity = memory.NewBufferBytes(bm)
	}
	dt := a.DataType()
	switch dt.ID() {
	case arrow.BOOL:
		out := copyBits(d.Buffers()[1].Bytes(), off, rs, n)
		return makeArray(dt, n, []*memory.Buffer{validity, memory.NewBufferBytes(out)}, nulls), nil
	case arrow.STRING, arrow.BINARY:
		return filterVarBinary[int32](a, dt, rs, n, validity, nulls), nil
	case arrow.LARGE_STRING, arrow.LARGE_BINARY:
		return filterVarBinary[int64](a, dt, rs, n, validity, nulls), nil
	case arrow.NULL:
		return array.MakeArrayOfNull(memory.DefaultAllocator, dt, n), nil
	}
	if fw, ok := dt.(arrow.FixedWidthDataType); ok && fw.BitWidth()%8 == 0 && len(d.Buffers()) == 2 && dt.ID() != arrow.DICTIONARY {
		w := fw.BitWidth() / 8
		src := d.Buffers()[1].Bytes()[off*w : (off+d.Len())*w]
		var out []byte
		switch w {
		case 8:
			out = bytesOf(pickRuns(valuesOf[uint64](src), rs, n))
		case 4:
			out = bytesOf(pickRuns(valuesOf[uint32](src), rs, n))
		case 2:
			out = bytesOf(pickRuns(valuesOf[uint16](src), rs, n))
		case 1:
			out = pickRuns(src, rs, n)
		default:
			out = make([]byte, n*w)
			pos := 0
			for _, r := range rs {
				pos += copy(out[pos:], src[r.lo*w:r.hi*w])
			}
		}
		return makeArray(dt, n, []*memory.Buffer{validity, memory.NewBufferBytes(out)}, nulls), nil
	}
	// Nested and other types: concatenate slices of the kept runs.
	parts := make([]arrow.Array, 0, len(rs))
	defer releaseAll(parts)
	for _, r := range rs {
		parts = append(parts, array.NewSlice(a, int64(r.lo), int64(r.hi)))
	}
	out, err := array.Concatenate(parts, memory.DefaultAllocator)
	if err != nil {
		return nil, fmt.Errorf("selecting rows of a %s column: %w", dt, err)
	}
	return out, nil
}

// pickRuns copies the values of the runs: short runs element by element,
// long ones with copy.
func pickRuns[T any](src []T, rs []run, n int) []T {
	out := make([]T, n)
	pos := 0
	for _, r := range rs {
		if r.hi-r.lo > 8 {
			pos += copy(out[pos:], src[r.lo:r.hi])
			continue
		}
		for i := r.lo; i < r.hi; i++ {
			out[pos] = src[i]
			pos++
		}
	}
	return out
}

func filterVarBinary[O int32 | int64](a arrow.Array, dt arrow.DataType, rs []run, n int, validity *memory.Buffer, nulls int) arrow.Array {
	d := a.Data()
	off := d.Offset()
	offs := valuesOf[O](d.Buffers()[1].Bytes())[off : off+d.Len()+1]
	var data []byte
	if b := d.Buffers()[2]; b != nil {
		data = b.Bytes()
	}
	size := 0
	for _, r := range rs {
		size += int(offs[r.hi] - offs[r.lo])
	}
	outOffs := make([]O, n+1)
	outData := make([]byte, size)
	pos, at := 0, O(0)
	for _, r := range rs {
		base := offs[r.lo]
		copy(outData[at:], data[base:offs[r.hi]])
		delta := at - base
		for k := r.lo; k < r.hi; k++ {
			pos++
			outOffs[pos] = offs[k+1] + delta
		}
		at += offs[r.hi] - base
	}
	return makeArray(dt, n, []*memory.Buffer{validity, memory.NewBufferBytes(bytesOf(outOffs)), memory.NewBufferBytes(outData)}, nulls)
}

func makeArray(dt arrow.DataType, n int, bufs []*memory.Buffer, nulls int) arrow.Array {
	d := array.NewData(dt, n, bufs, nil, nulls, 0)
	defer d.Release()
	return array.MakeFromData(d)
}

// nullMask is a per-row null flag (nil: no nulls).
type nullMask []bool

// bitmap converts a null mask to an Arrow validity buffer and null count.
func (m nullMask) bitmap(n int) (*memory.Buffer, int) {
	if m == nil {
		return nil, 0
	}
	bm := make([]byte, bitutil.BytesForBits(int64(n)))
	nulls := 0
	for i := range n {
		if m[i] {
			nulls++
		} else {
			bitutil.SetBit(bm, i)
		}
	}
	if nulls == 0 {
		return nil, 0
	}
	return memory.NewBufferBytes(bm), nulls
}

// nullsOf returns a's null mask (nil when it has no nulls).
func nullsOf(a arrow.Array) nullMask {
	if a.NullN() == 0 {
		return nil
	}
	m := make(nullMask, a.Len())
	d := a.Data()
	if bufs := d.Buffers(); len(bufs) > 0 && bufs[0] != nil {
		bm, off := bufs[0].Bytes(), d.Offset()
		for i := range m {
			j := off + i
			m[i] = bm[j>>3]&(1<<(j&7)) == 0
		}
		return m
	}
	for i := range m {
		m[i] = a.IsNull(i)
	}
	return m
}

// float64Array wraps vals (and nulls) as a Float64 array without copying.
func float64Array(vals []float64, nulls nullMask) arrow.Array {
	v, nn := nulls.bitmap(len(vals))
	return makeArray(arrow.PrimitiveTypes.Float64, len(vals), []*memory.Buffer{v, memory.NewBufferBytes(bytesOf(vals))}, nn)
}

// int64Array wraps vals (and nulls) as an Int64 array without copying.
func int64Array(vals []int64, nulls nullMask) arrow.Array {
	v, nn := nulls.bitmap(len(vals))
	return makeArray(arrow.PrimitiveTypes.Int64, len(vals), []*memory.Buffer{v, memory.NewBufferBytes(bytesOf(vals))}, nn)
}

// boolArray builds a Boolean array from flags.
func boolArray(vals []bool, nulls nullMask) arrow.Array {
	bits := make([]byte, bitutil.BytesForBits(int64(len(vals))))
	for i, b := range vals {
		if b {
			bitutil.SetBit(bits, i)
		}
	}
	v, nn := nulls.bitmap(len(vals))
	return makeArray(arrow.FixedWidthTypes.Boolean, len(vals), []*memory.Buffer{v, memory.NewBufferBytes(bits)}, nn)
}

// asFloat64 reads a numeric column as float64 values. A Float64 column
// without an offset is returned without copying (callers must not write
// to the result). Null rows hold unspecified values (check validity).
func asFloat64(a arrow.Array) ([]float64, error) {
	n := a.Len()
	switch c := a.(type) {
	case *array.Float64:
		return c.Float64Values(), nil
	case *array.Float32:
		return convert(c.Float32Values()), nil
	case *array.Int64:
		return convert(c.Int64Values()), nil
	case *array.Int32:
		return convert(c.Int32Values()), nil
	case *array.Int16:
		return convert(c.Int16Values()), nil
	case *array.Int8:
		return convert(c.Int8Values()), nil
	case *array.Uint64:
		return convert(c.Uint64Values()), nil
	case *array.Uint32:
		return convert(c.Uint32Values()), nil
	case *array.Uint16:
		return convert(c.Uint16Values()), nil
	case *array.Uint8:
		return convert(c.Uint8Values()), nil
	case *array.Float16:
		out := make([]float64, n)
		for i, v := range c.Values() {
			out[i] = float64(v.Float32())
		}
		return out, nil
	}
	return nil, fmt.Errorf("column of type %s is not numeric", a.DataType())
}

type number interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~float32 | ~float64
}

func convert[T number](src []T) []float64 {
	out := make([]float64, len(src))
	for i, v := range src {
		out[i] = float64(v)
	}
	return out
}

// finite reports whether f is neither NaN nor infinite.
func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// columnIndex returns the index of a column by name, or an error listing
// the batch's columns.
func columnIndex(s *arrow.Schema, name string) (int, error) {
	idx := s.FieldIndices(name)
	if len(idx) == 0 {
		return -1, fmt.Errorf("no column %q in the batch (columns: %s)", name, columnNames(s))
	}
	return idx[0], nil
}

func columnNames(s *arrow.Schema) string {
	out := make([]byte, 0, 64)
	for i, f := range s.Fields() {
		if i > 0 {
			out = append(out, ", "...)
		}
		out = append(out, f.Name...)
	}
	return string(out)
}

// replaceColumns returns a batch with the columns of in, where repl[i]
// (when set) replaces column i, followed by extra columns. It takes over
// the caller's references to the arrays in repl and extra.
func replaceColumns(in pipeline.Batch, repl map[int]arrow.Array, extra []arrow.Field, extraCols []arrow.Array, drop map[int]bool) pipeline.Batch {
	fields := make([]arrow.Field, 0, int(in.NumCols())+len(extra))
	cols := make([]arrow.Array, 0, cap(fields))
	var owned []arrow.Array
	for i, f := range in.Schema().Fields() {
		if drop[i] {
			if r, ok := repl[i]; ok {
				owned = append(owned, r)
			}
			continue
		}
		if r, ok := repl[i]; ok {
			f.Type = r.DataType()
			fields = append(fields, f)
			cols = append(cols, r)
			owned = append(owned, r)
			continue
		}
		fields = append(fields, f)
		cols = append(cols, in.Column(i))
	}
	fields = append(fields, extra...)
	cols = append(cols, extraCols...)
	owned = append(owned, extraCols...)
	md := in.Schema().Metadata()
	out := array.NewRecordBatch(arrow.NewSchema(fields, &md), cols, in.NumRows())
	releaseAll(owned)
	return out
}

// asInt64 reads an integer column as int64 values (an Int64 column
// without copying; callers must not write to the result).
func asInt64(a arrow.Array) ([]int64, error) {
	switch c := a.(type) {
	case *array.Int64:
		return c.Int64Values(), nil
	case *array.Int32:
		return widen(c.Int32Values()), nil
	case *array.Int16:
		return widen(c.Int16Values()), nil
	case *array.Int8:
		return widen(c.Int8Values()), nil
	case *array.Uint64:
		return widen(c.Uint64Values()), nil
	case *array.Uint32:
		return widen(c.Uint32Values()), nil
	case *array.Uint16:
		return widen(c.Uint16Values()), nil
	case *array.Uint8:
		return widen(c.Uint8Values()), nil
	}
	return nil, fmt.Errorf("column of type %s is not an integer column", a.DataType())
}

func widen[T ~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64](src []T) []int64 {
	out := make([]int64, len(src))
	for i, v := range src {
		out[i] = int64(v)
	}
	return out
}

// KeepRows returns the rows of in whose keep flag is set (n of them): in
// itself when every row is kept, nil when none is, else a new batch the
// caller owns. Other connectors (predict) use it to drop rejected rows.
func KeepRows(in pipeline.Batch, keep []bool, n int) (pipeline.Batch, error) {
	return keepRows(in, keep, n)
}
