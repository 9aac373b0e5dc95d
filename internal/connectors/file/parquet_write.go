package file

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// parallelParquet writes Parquet files whose row groups have their column
// chunks encoded and compressed in parallel, one goroutine per core, each
// taking the next column: pqarrow's FileWriter encodes one column after
// the other on the caller's goroutine. Batches are collected (as slices,
// no copy) and encoded when the row group is full or they pass
// maxPendingBytes, so the Arrow data held stays bounded whatever the row
// group size; the encoded row group is held until it is closed, as
// pqarrow's buffered row groups are. It takes flat schemas of primitive
// columns (flatParquet); other schemas go through pqarrow's writer. The
// file is the one pqarrow writes for the same batches (the Arrow schema is
// stored too), row groups cut at the same rows.
type parallelParquet struct {
	w            *file.Writer
	arrProps     pqarrow.ArrowWriterProperties
	rgRows       int
	workers      int
	nullable     []bool
	rgw          file.BufferedRowGroupWriter // the row group being written (nil: none)
	rows         int                         // its rows (encoded and pending)
	pending      [][]arrow.Array             // per column, slices not yet encoded
	pendingBytes int64                       // their size (estimated)
	maxPending   int64                       // encode the pending slices beyond this size
	ones         []int16                     // definition levels of a chunk without nulls (read-only)
}

var _ batchWriter = (*parallelParquet)(nil)

// flatParquet reports whether every column of schema is a primitive one
// that parallelParquet writes as a single Parquet leaf.
func flatParquet(schema *arrow.Schema) bool {
	for _, f := range schema.Fields() {
		switch f.Type.ID() {
		case arrow.BOOL, arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64,
			arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64, arrow.FLOAT32, arrow.FLOAT64,
			arrow.STRING, arrow.LARGE_STRING, arrow.BINARY, arrow.LARGE_BINARY,
			arrow.DATE32, arrow.DATE64, arrow.TIMESTAMP:
		default:
			return false
		}
	}
	return true
}

// newParallelParquet starts a file on w with what pqarrow.NewFileWriter
// would write for schema, props and arrProps (with the Arrow schema
// stored); schema must be flat (flatParquet).
func newParallelParquet(schema *arrow.Schema, w io.Writer, props *parquet.WriterProperties, arrProps pqarrow.ArrowWriterProperties, workers int) (*parallelParquet, error) {
	pqSchema, err := pqarrow.ToParquet(schema, props, arrProps)
	if err != nil {
		return nil, err
	}
	if pqSchema.NumColumns() != schema.NumFields() {
		return nil, fmt.Errorf("parquet: %d leaf columns for %d fields", pqSchema.NumColumns(), schema.NumFields())
	}
	meta := make(metadata.KeyValueMetadata, 0)
	for i, k := range schema.Metadata().Keys() {
		if err := meta.Append(k, schema.Metadata().Values()[i]); err != nil {
			return nil, err
		}
	}
	// The Arrow schema, serialized as Arrow Flight does (an IPC stream of
	// the schema and no batch), so that readers restore the Arrow types.
	var ser bytes.Buffer
	iw := ipc.NewWriter(&ser, ipc.WithSchema(schema), ipc.WithAllocator(props.Allocator()))
	if err := iw.Close(); err != nil {
		return nil, err
	}
	if err := meta.Append("ARROW:schema", base64.StdEncoding.EncodeToString(ser.Bytes())); err != nil {
		return nil, err
	}
	fw, err := file.NewParquetWriterWithError(w, pqSchema.Root(), file.WithWriterProps(props), file.WithWriteMetadata(meta))
	if err != nil {
		return nil, err
	}
	p := &parallelParquet{w: fw, arrProps: arrProps, rgRows: int(props.MaxRowGroupLength()), workers: max(1, workers), maxPending: maxPendingBytes,
		pending: make([][]arrow.Array, schema.NumFields())}
	for _, f := range schema.Fields() {
		p.nullable = append(p.nullable, f.Nullable)
	}
	return p, nil
}

// maxPendingBytes bounds the Arrow data held for the row group being
// written: beyond it the collected slices are encoded into the row
// group's (compressed) buffers before more are taken.
const maxPendingBytes = 32 << 20

// write adds b's rows to the row group being written, closing row groups
// as they fill.
func (p *parallelParquet) write(b arrow.RecordBatch) error {
	n := int(b.NumRows())
	if n == 0 {
		return nil
	}
	rowBytes := batchBytes(b) / int64(n)
	for off := 0; off < n; {
		take := min(n-off, p.rgRows-p.rows)
		for i, col := range b.Columns() {
			if off == 0 && take == n {
				col.Retain()
			} else {
				col = array.NewSlice(col, int64(off), int64(off+take))
			}
			p.pending[i] = append(p.pending[i], col)
		}
		p.rows += take
		p.pendingBytes += int64(take) * rowBytes
		off += take
		var err error
		switch {
		case p.rows == p.rgRows:
			err = p.flush()
		case p.pendingBytes >= p.maxPending:
			err = p.encode(false)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// batchBytes is the size of b's buffers.
func batchBytes(b arrow.RecordBatch) int64 {
	var n int64
	for _, c := range b.Columns() {
		for _, buf := range c.Data().Buffers() {
			if buf != nil {
				n += int64(buf.Len())
			}
		}
	}
	return n
}

// flush ends the row group: what is pending is encoded, the last pages
// compressed, and the row group's buffers copied into the file in order.
func (p *parallelParquet) flush() error {
	if p.rows == 0 {
		return nil
	}
	if err := p.encode(true); err != nil {
		return err
	}
	rgw := p.rgw
	p.rgw, p.rows = nil, 0
	return rgw.Close()
}

// encode writes the pending slices into the row group's column writers,
// the columns in parallel; last also encodes and compresses the page each
// column is filling.
func (p *parallelParquet) encode(last bool) error {
	defer p.release()
	if p.rgw == nil {
		rgw, err := p.w.AppendBufferedRowGroupChecked()
		if err != nil {
			return err
		}
		p.rgw = rgw
	}
	if longest := p.longestPending(); len(p.ones) < longest {
		p.ones = make([]int16, longest)
		for i := range p.ones {
			p.ones[i] = 1
		}
	}
	errs := make([]error, len(p.pending))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(p.workers, len(p.pending)) {
		wg.Go(func() {
			ctx := pqarrow.NewArrowWriteContext(context.Background(), &p.arrProps)
			var defs []int16
			for {
				i := int(next.Add(1) - 1)
				if i >= len(p.pending) {
					return
				}
				defs, errs[i] = p.writeColumn(ctx, p.rgw, i, defs, last)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("parquet column %d: %w", i, err)
		}
	}
	return nil
}

// longestPending is the length of the longest pending slice.
func (p *parallelParquet) longestPending() int {
	n := 0
	if len(p.pending) > 0 {
		for _, a := range p.pending[0] {
			n = max(n, a.Len())
		}
	}
	return n
}

// pageFlusher is implemented by arrow-go's column chunk writers: it
// encodes and compresses the page being filled into the row group's
// buffer.
type pageFlusher interface {
	FlushCurrentPage() error
}

// writeColumn encodes column i's pending slices into its column chunk
// writer (last: and the page it is filling); defs is scratch space for
// definition levels.
func (p *parallelParquet) writeColumn(ctx context.Context, rgw file.BufferedRowGroupWriter, i int, defs []int16, last bool) ([]int16, error) {
	cw, err := rgw.Column(i)
	if err != nil {
		return defs, err
	}
	for _, a := range p.pending[i] {
		var lv []int16
		if p.nullable[i] {
			if a.NullN() == 0 {
				lv = p.ones[:a.Len()]
			} else {
				defs = definitionLevels(defs[:0], a)
				lv = defs
			}
		}
		if err := pqarrow.WriteArrowToColumn(ctx, cw, a, lv, nil, p.nullable[i]); err != nil {
			return defs, err
		}
	}
	if !last {
		return defs, nil
	}
	// The last page is encoded and compressed here, in parallel, rather
	// than when the row group is closed. Only for plain encoding, whose
	// size estimate is 0 exactly when no value waits (a page must not be
	// flushed empty); a dictionary-encoded page, and a page holding only
	// nulls, are left to Close.
	enc := cw.CurrentEncoder()
	if f, ok := cw.(pageFlusher); ok && enc.Encoding() == parquet.Encodings.Plain && enc.EstimatedDataEncodedSize() > 0 {
		return defs, f.FlushCurrentPage()
	}
	return defs, nil
}

// definitionLevels appends a's definition levels (1 valid, 0 null) to
// dst.
func definitionLevels(dst []int16, a arrow.Array) []int16 {
	n := a.Len()
	bits, off := a.NullBitmapBytes(), a.Data().Offset()
	for j := range n {
		if bits == nil || bitutil.BitIsSet(bits, off+j) {
			dst = append(dst, 1)
		} else {
			dst = append(dst, 0)
		}
	}
	return dst
}

// release drops the pending slices.
func (p *parallelParquet) release() {
	for i, cols := range p.pending {
		for j, c := range cols {
			c.Release()
			cols[j] = nil
		}
		p.pending[i] = cols[:0]
	}
	p.pendingBytes = 0
}

// finish writes the last row group and the footer.
func (p *parallelParquet) finish() error {
	if err := p.flush(); err != nil {
		return err
	}
	return p.w.Close()
}

// parquetWorkers is how many goroutines encode a row group's columns.
func parquetWorkers() int { return runtime.GOMAXPROCS(0) }
