package kiln

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/float16"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/kilnai/kiln/internal/connectors/transform"
	pb "github.com/kilnai/kiln/internal/grpcapi/inferencepb"
	"github.com/kilnai/kiln/internal/pipeline"
	"github.com/kilnai/kiln/internal/tensor"
)

// boundInput is an input plan resolved against a batch's schema.
type boundInput struct {
	plan  inputPlan
	cols  []arrow.Array
	width int // values per row
}

// chunk is one inference call's share of a batch: rows (indexes into the
// batch) and, once done, the outputs or the error.
type chunk struct {
	rows []int
	outs map[string]tensor.Tensor
	err  error
}

func (t *predictT) Apply(ctx context.Context, in pipeline.Batch) (pipeline.Batch, []pipeline.RowError, error) {
	n := int(in.NumRows())
	bound := make([]boundInput, len(t.ins))
	for i, ip := range t.ins {
		idx, err := resolve(in.Schema(), ip.patterns)
		if err != nil {
			return nil, nil, fmt.Errorf("predict: input %q: %w", ip.spec.Name, err)
		}
		b := boundInput{plan: ip, width: len(idx)}
		if ip.inner >= 0 && ip.inner != len(idx) {
			return nil, nil, fmt.Errorf("predict: input %q takes %d values per row (shape %v), but its columns are %d", ip.spec.Name, ip.inner, ip.spec.Shape, len(idx))
		}
		for _, j := range idx {
			col := in.Column(j)
			if err := checkColumn(ip.spec.DataType, col); err != nil {
				return nil, nil, fmt.Errorf("predict: input %q, column %q: %w", ip.spec.Name, in.Schema().Field(j).Name, err)
			}
			b.cols = append(b.cols, col)
		}
		bound[i] = b
	}

	// Rows with a null input cannot be sent.
	var rej []pipeline.RowError
	valid := make([]int, 0, n)
	for r := range n {
		if name := nullInput(bound, r); name != "" {
			rej = append(rej, pipeline.RowError{Row: r, Err: fmt.Errorf("predict: input column %q is null", name)})
			continue
		}
		valid = append(valid, r)
	}

	// Calls of batch_size rows, at most max_in_flight at once.
	var chunks []*chunk
	for lo := 0; lo < len(valid); lo += t.rows {
		chunks = append(chunks, &chunk{rows: valid[lo:min(lo+t.rows, len(valid))]})
	}
	var wg sync.WaitGroup
	for _, ch := range chunks {
		select {
		case t.sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, nil, ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-t.sem }()
			ch.outs, ch.err = t.call(ctx, bound, ch.rows)
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}

	keep := make([]bool, n)
	kept := 0
	var ok []*chunk
	for _, ch := range chunks {
		if ch.err != nil {
			if t.cfg.OnFailure == failError {
				return nil, nil, fmt.Errorf("predict: model %q: %w", t.cfg.Model, ch.err)
			}
			for _, r := range ch.rows {
				rej = append(rej, pipeline.RowError{Row: r, Err: fmt.Errorf("predict: model %q: %w", t.cfg.Model, ch.err)})
			}
			continue
		}
		for _, r := range ch.rows {
			keep[r] = true
		}
		kept += len(ch.rows)
		ok = append(ok, ch)
	}
	sortRej(rej)
	if kept == 0 {
		return nil, rej, nil
	}
	fields, cols, err := t.assemble(ok, kept)
	if err != nil {
		return nil, nil, fmt.Errorf("predict: model %q: %w", t.cfg.Model, err)
	}
	base, err := transform.KeepRows(in, keep, kept)
	if err != nil {
		releaseAll(cols)
		return nil, nil, fmt.Errorf("predict: %w", err)
	}
	out := withColumns(base, fields, cols)
	if base != in {
		base.Release()
	}
	return out, rej, nil
}

func sortRej(rej []pipeline.RowError) {
	slices.SortFunc(rej, func(a, b pipeline.RowError) int { return a.Row - b.Row })
}

func releaseAll(cols []arrow.Array) {
	for _, c := range cols {
		if c != nil {
			c.Release()
		}
	}
}

// withColumns returns b with cols added (replacing columns of the same
// name), taking over the caller's references to cols.
func withColumns(b pipeline.Batch, fields []arrow.Field, cols []arrow.Array) pipeline.Batch {
	outFields := make([]arrow.Field, 0, int(b.NumCols())+len(fields))
	outCols := make([]arrow.Array, 0, cap(outFields))
	replaced := map[string]bool{}
	for i, f := range b.Schema().Fields() {
		col := b.Column(i)
		for j, nf := range fields {
			if nf.Name == f.Name {
				f, col = nf, cols[j]
				replaced[f.Name] = true
			}
		}
		outFields = append(outFields, f)
		outCols = append(outCols, col)
	}
	for j, nf := range fields {
		if !replaced[nf.Name] {
			outFields = append(outFields, nf)
			outCols = append(outCols, cols[j])
		}
	}
	md := b.Schema().Metadata()
	rec := array.NewRecordBatch(arrow.NewSchema(outFields, &md), outCols, b.NumRows())
	releaseAll(cols)
	return rec
}

func nullInput(bound []boundInput, r int) string {
	for _, b := range bound {
		for j, c := range b.cols {
			if c.IsNull(r) {
				return b.plan.patterns[min(j, len(b.plan.patterns)-1)]
			}
		}
	}
	return ""
}

// call runs one inference call (with retries) on rows.
func (t *predictT) call(ctx context.Context, bound []boundInput, rows []int) (map[string]tensor.Tensor, error) {
	ins := make([]tensor.Tensor, len(bound))
	for i, b := range bound {
		data, err := buildInput(b.plan.spec.DataType, b.cols, rows)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", b.plan.spec.Name, err)
		}
		shape := tensor.Shape{int64(len(rows))}
		for _, d := range b.plan.spec.Shape[1:] {
			if d < 0 {
				d = int64(b.width) // the one variable dimension takes the columns
			}
			shape = append(shape, d)
		}
		if len(b.plan.spec.Shape) == 1 && b.width != 1 {
			return nil, fmt.Errorf("input %q takes one value per row (shape %v), but %d columns are mapped", b.plan.spec.Name, b.plan.spec.Shape, b.width)
		}
		ins[i] = tensor.Tensor{Name: b.plan.spec.Name, DataType: b.plan.spec.DataType, Shape: shape, Data: data}
	}
	var lastErr error
	for attempt := 0; attempt <= t.cfg.Retries; attempt++ {
		if attempt > 0 {
			wait := time.Duration(100<<(attempt-1)) * time.Millisecond
			select {
			case <-time.After(min(wait, 5*time.Second)):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		cctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
		outs, ver, err := t.be.infer(cctx, ins, t.outName)
		cancel()
		if err == nil {
			if err := checkOutputs(outs, t.outName, len(rows)); err != nil {
				return nil, err
			}
			t.noteVersion(ver)
			return outs, nil
		}
		lastErr = err
		if ctx.Err() != nil || t.be.permanent(err) {
			break
		}
	}
	return nil, lastErr
}

func checkOutputs(outs map[string]tensor.Tensor, names []string, rows int) error {
	for _, name := range names {
		o, ok := outs[name]
		if !ok {
			return fmt.Errorf("the response has no output %q", name)
		}
		if len(o.Shape) == 0 || o.Shape[0] != int64(rows) {
			return fmt.Errorf("output %q has shape %v for %d rows; predict needs rows along the first dimension", name, o.Shape, rows)
		}
	}
	return nil
}

// checkColumn reports whether a column can feed a tensor of type dt.
func checkColumn(dt tensor.DataType, col arrow.Array) error {
	id := col.DataType().ID()
	isNum := numericID(id) || id == arrow.BOOL
	switch {
	case dt == tensor.Bytes && (id == arrow.STRING || id == arrow.LARGE_STRING || id == arrow.BINARY || id == arrow.LARGE_BINARY):
		return nil
	case dt != tensor.Bytes && isNum:
		return nil
	}
	return fmt.Errorf("a %s column cannot feed a %s tensor", col.DataType(), dt)
}

func numericID(id arrow.Type) bool {
	switch id {
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64,
		arrow.FLOAT16, arrow.FLOAT32, arrow.FLOAT64:
		return true
	}
	return false
}

type number interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~float32 | ~float64
}

// buildInput lays out the rows' values of cols row-major as dt elements:
// element j of row r is cols[j][rows[r]].
func buildInput(dt tensor.DataType, cols []arrow.Array, rows []int) ([]byte, error) {
	switch dt {
	case tensor.FP32:
		return fillAs[float32](cols, rows)
	case tensor.FP64:
		return fillAs[float64](cols, rows)
	case tensor.Int8:
		return fillAs[int8](cols, rows)
	case tensor.Int16:
		return fillAs[int16](cols, rows)
	case tensor.Int32:
		return fillAs[int32](cols, rows)
	case tensor.Int64:
		return fillAs[int64](cols, rows)
	case tensor.Uint8:
		return fillAs[uint8](cols, rows)
	case tensor.Uint16:
		return fillAs[uint16](cols, rows)
	case tensor.Uint32:
		return fillAs[uint32](cols, rows)
	case tensor.Uint64:
		return fillAs[uint64](cols, rows)
	case tensor.Bool:
		b, err := fillAs[uint8](cols, rows)
		for i := range b {
			if b[i] != 0 {
				b[i] = 1
			}
		}
		return b, err
	case tensor.Bytes:
		var out []byte
		for _, r := range rows {
			for _, c := range cols {
				var v []byte
				switch s := c.(type) {
				case *array.String:
					v = []byte(s.Value(r))
				case *array.LargeString:
					v = []byte(s.Value(r))
				case *array.Binary:
					v = s.Value(r)
				case *array.LargeBinary:
					v = s.Value(r)
				}
				out = binary.LittleEndian.AppendUint32(out, uint32(len(v)))
				out = append(out, v...)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("predict cannot build %s tensors", dt)
}

func fillAs[T number](cols []arrow.Array, rows []int) ([]byte, error) {
	k := len(cols)
	out := make([]T, len(rows)*k)
	for j, c := range cols {
		switch a := c.(type) {
		case *array.Float64:
			scatter(out, a.Float64Values(), rows, k, j)
		case *array.Float32:
			scatter(out, a.Float32Values(), rows, k, j)
		case *array.Int64:
			scatter(out, a.Int64Values(), rows, k, j)
		case *array.Int32:
			scatter(out, a.Int32Values(), rows, k, j)
		case *array.Int16:
			scatter(out, a.Int16Values(), rows, k, j)
		case *array.Int8:
			scatter(out, a.Int8Values(), rows, k, j)
		case *array.Uint64:
			scatter(out, a.Uint64Values(), rows, k, j)
		case *array.Uint32:
			scatter(out, a.Uint32Values(), rows, k, j)
		case *array.Uint16:
			scatter(out, a.Uint16Values(), rows, k, j)
		case *array.Uint8:
			scatter(out, a.Uint8Values(), rows, k, j)
		case *array.Float16:
			for r, row := range rows {
				out[r*k+j] = T(a.Value(row).Float32())
			}
		case *array.Boolean:
			for r, row := range rows {
				if a.Value(row) {
					out[r*k+j] = 1
				}
			}
		default:
			return nil, fmt.Errorf("a %s column cannot feed a numeric tensor", c.DataType())
		}
	}
	return bytesOf(out), nil
}

func scatter[T, S number](out []T, src []S, rows []int, k, j int) {
	if k == 1 {
		for r, row := range rows {
			out[r] = T(src[row])
		}
		return
	}
	for r, row := range rows {
		out[r*k+j] = T(src[row])
	}
}

func bytesOf[T any](s []T) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(zero)))
}

// arrowType is the column type of a tensor element type.
func arrowType(dt tensor.DataType) arrow.DataType {
	switch dt {
	case tensor.Bool:
		return arrow.FixedWidthTypes.Boolean
	case tensor.Int8:
		return arrow.PrimitiveTypes.Int8
	case tensor.Int16:
		return arrow.PrimitiveTypes.Int16
	case tensor.Int32:
		return arrow.PrimitiveTypes.Int32
	case tensor.Int64:
		return arrow.PrimitiveTypes.Int64
	case tensor.Uint8:
		return arrow.PrimitiveTypes.Uint8
	case tensor.Uint16:
		return arrow.PrimitiveTypes.Uint16
	case tensor.Uint32:
		return arrow.PrimitiveTypes.Uint32
	case tensor.Uint64:
		return arrow.PrimitiveTypes.Uint64
	case tensor.FP16:
		return arrow.FixedWidthTypes.Float16
	case tensor.FP32:
		return arrow.PrimitiveTypes.Float32
	case tensor.FP64:
		return arrow.PrimitiveTypes.Float64
	case tensor.Bytes:
		return arrow.BinaryTypes.String
	}
	return nil
}

// assemble turns the outputs of the successful calls (in row order) into
// columns of kept rows.
func (t *predictT) assemble(chunks []*chunk, kept int) ([]arrow.Field, []arrow.Array, error) {
	var fields []arrow.Field
	var cols []arrow.Array
	fail := func(err error) ([]arrow.Field, []arrow.Array, error) {
		releaseAll(cols)
		return nil, nil, err
	}
	for _, op := range t.outs {
		name := op.spec.Name
		first := chunks[0].outs[name]
		dt := first.DataType
		width := 1
		for _, d := range first.Shape[1:] {
			width *= int(d)
		}
		for _, ch := range chunks[1:] {
			o := ch.outs[name]
			w := 1
			for _, d := range o.Shape[1:] {
				w *= int(d)
			}
			if o.DataType != dt || w != width {
				return fail(fmt.Errorf("output %q changes type or width between calls (%s×%d, then %s×%d)", name, dt, width, o.DataType, w))
			}
		}
		if dt == tensor.Bytes {
			if width != 1 || len(op.columns) > 1 || op.argmax != "" {
				return fail(fmt.Errorf("output %q is BYTES with %d values per row; only one string per row can become a column", name, width))
			}
			b := array.NewStringBuilder(memory.DefaultAllocator)
			for _, ch := range chunks {
				data := ch.outs[name].Data
				for len(data) >= 4 {
					l := uint64(binary.LittleEndian.Uint32(data))
					if l > uint64(len(data)-4) {
						b.Release()
						return fail(fmt.Errorf("output %q: a BYTES length runs past the data", name))
					}
					b.Append(string(data[4 : 4+l]))
					data = data[4+l:]
				}
			}
			fields = append(fields, arrow.Field{Name: op.columns[0], Type: arrow.BinaryTypes.String, Nullable: true})
			cols = append(cols, b.NewArray())
			b.Release()
			continue
		}
		size := dt.Size()
		flat := make([]byte, 0, kept*width*size)
		for _, ch := range chunks {
			flat = append(flat, ch.outs[name].Data...)
		}
		if len(flat) != kept*width*size {
			return fail(fmt.Errorf("output %q has %d bytes for %d rows of %d %s values", name, len(flat), kept, width, dt))
		}
		at := arrowType(dt)
		switch {
		case len(op.columns) == 1 && width == 1:
			fields = append(fields, arrow.Field{Name: op.columns[0], Type: at, Nullable: true})
			cols = append(cols, primitive(at, flat, kept))
		case len(op.columns) == 1:
			child := primitive(at, flat, kept*width)
			lt := arrow.FixedSizeListOf(int32(width), at)
			d := array.NewData(lt, kept, []*memory.Buffer{nil}, []arrow.ArrayData{child.Data()}, 0, 0)
			child.Release()
			fields = append(fields, arrow.Field{Name: op.columns[0], Type: lt, Nullable: true})
			cols = append(cols, array.MakeFromData(d))
			d.Release()
		case len(op.columns) > 1:
			if len(op.columns) != width {
				return fail(fmt.Errorf("output %q has %d values per row, but %d columns are mapped", name, width, len(op.columns)))
			}
			for j, cname := range op.columns {
				part := make([]byte, kept*size)
				for r := range kept {
					copy(part[r*size:(r+1)*size], flat[(r*width+j)*size:(r*width+j+1)*size])
				}
				fields = append(fields, arrow.Field{Name: cname, Type: at, Nullable: true})
				cols = append(cols, primitive(at, part, kept))
			}
		}
		if op.argmax != "" {
			idx := make([]int64, kept)
			vals := asFloats(dt, flat)
			for r := range kept {
				best := 0
				for j := 1; j < width; j++ {
					if vals[r*width+j] > vals[r*width+best] {
						best = j
					}
				}
				idx[r] = int64(best)
			}
			fields = append(fields, arrow.Field{Name: op.argmax, Type: arrow.PrimitiveTypes.Int64, Nullable: true})
			cols = append(cols, primitive(arrow.PrimitiveTypes.Int64, bytesOf(idx), kept))
		}
	}
	if len(fields) == 0 {
		return fail(errors.New("no output columns"))
	}
	return fields, cols, nil
}

// primitive wraps little-endian element bytes as an array of n values.
func primitive(at arrow.DataType, data []byte, n int) arrow.Array {
	if at.ID() == arrow.BOOL {
		bits := make([]byte, bitutil.BytesForBits(int64(n)))
		for i := range n {
			if data[i] != 0 {
				bitutil.SetBit(bits, i)
			}
		}
		data = bits
	}
	d := array.NewData(at, n, []*memory.Buffer{nil, memory.NewBufferBytes(data)}, nil, 0, 0)
	defer d.Release()
	return array.MakeFromData(d)
}

// asFloats reads numeric tensor data as float64 (for argmax).
func asFloats(dt tensor.DataType, b []byte) []float64 {
	conv := func(n int, at func(i int) float64) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = at(i)
		}
		return out
	}
	switch dt {
	case tensor.FP32:
		v := tensor.View[float32](b)
		return conv(len(v), func(i int) float64 { return float64(v[i]) })
	case tensor.FP64:
		return slices.Clone(tensor.View[float64](b))
	case tensor.FP16:
		return conv(len(b)/2, func(i int) float64 {
			return float64(float16Bits(b[2*i:]).Float32())
		})
	case tensor.Int8:
		v := tensor.View[int8](b)
		return conv(len(v), func(i int) float64 { return float64(v[i]) })
	case tensor.Int16:
		v := tensor.View[int16](b)
		return conv(len(v), func(i int) float64 { return float64(v[i]) })
	case tensor.Int32:
		v := tensor.View[int32](b)
		return conv(len(v), func(i int) float64 { return float64(v[i]) })
	case tensor.Int64:
		v := tensor.View[int64](b)
		return conv(len(v), func(i int) float64 { return float64(v[i]) })
	case tensor.Uint8:
		return conv(len(b), func(i int) float64 { return float64(b[i]) })
	case tensor.Uint16:
		v := tensor.View[uint16](b)
		return conv(len(v), func(i int) float64 { return float64(v[i]) })
	case tensor.Uint32:
		v := tensor.View[uint32](b)
		return conv(len(v), func(i int) float64 { return float64(v[i]) })
	case tensor.Uint64:
		v := tensor.View[uint64](b)
		return conv(len(v), func(i int) float64 { return float64(v[i]) })
	}
	return make([]float64, len(b))
}

func float16Bits(b []byte) float16.Num { return float16.FromBits(binary.LittleEndian.Uint16(b)) }

// contentsBytes converts the typed contents of a gRPC tensor to
// little-endian element bytes.
func contentsBytes(dt tensor.DataType, c *pb.InferTensorContents) []byte {
	if c == nil {
		return nil
	}
	narrow := func(vals []int32, size int) []byte {
		out := make([]byte, len(vals)*size)
		for i, v := range vals {
			switch size {
			case 1:
				out[i] = byte(v)
			case 2:
				binary.LittleEndian.PutUint16(out[2*i:], uint16(v))
			default:
				binary.LittleEndian.PutUint32(out[4*i:], uint32(v))
			}
		}
		return out
	}
	switch dt {
	case tensor.Bool:
		out := make([]byte, len(c.BoolContents))
		for i, v := range c.BoolContents {
			if v {
				out[i] = 1
			}
		}
		return out
	case tensor.Int8, tensor.Int16, tensor.Int32:
		return narrow(c.IntContents, dt.Size())
	case tensor.Uint8, tensor.Uint16, tensor.Uint32:
		vals := make([]int32, len(c.UintContents))
		for i, v := range c.UintContents {
			vals[i] = int32(v)
		}
		return narrow(vals, dt.Size())
	case tensor.Int64:
		return bytesOf(c.Int64Contents)
	case tensor.Uint64:
		return bytesOf(c.Uint64Contents)
	case tensor.FP32:
		return bytesOf(c.Fp32Contents)
	case tensor.FP64:
		return bytesOf(c.Fp64Contents)
	case tensor.Bytes:
		var out []byte
		for _, v := range c.BytesContents {
			out = binary.LittleEndian.AppendUint32(out, uint32(len(v)))
			out = append(out, v...)
		}
		return out
	}
	return nil
}
