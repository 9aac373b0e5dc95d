package file

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"runtime"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/kilnai/kiln/internal/pipeline"
)

// csvOptions are the dialect of a CSV file.
type csvOptions struct {
	delim, quote, comment byte
	header                bool
	nulls                 nullSet
}

// span locates a field that had to be unescaped: its text in the
// parser's scratch buffer and its index in the record.
type span struct {
	start, end, field int
}

// csvParser splits CSV records into fields (RFC 4180 with the options:
// quoted fields may hold delimiters, newlines and doubled quotes; CRLF line
// ends; blank lines and comment lines are skipped, as encoding/csv does).
type csvParser struct {
	opt     csvOptions
	spans   []span // fields unescaped into scratch, fixed up at the end
	scratch []byte
	fields  [][]byte
	special *[256]bool // bytes that end an unquoted field or are a bare quote
}

// stops returns the table of bytes an unquoted field's scan stops at.
func (p *csvParser) stops() *[256]bool {
	if p.special == nil {
		var t [256]bool
		t[p.opt.delim], t['\n'], t[p.opt.quote] = true, true, true
		p.special = &t
	}
	return p.special
}

var (
	errUnterminated = errors.New("quoted field not terminated")
	errBareQuote    = errors.New(`bare " in an unquoted field`)
	errAfterQuote   = errors.New(`extraneous or missing " in a quoted field`)
)

// record parses the record at data[pos:] (the whole remaining data is
// available: a record never continues past len(data)). It returns the
// position after the record and false when only blank or comment lines
// remained. The fields are in p.fields until the next call.
func (p *csvParser) record(data []byte, pos int) (int, bool, error) {
	pos = p.skip(data, pos)
	if pos >= len(data) {
		return pos, false, nil
	}
	next, err := p.parse(data, pos)
	return next, err == nil, err
}

// skip returns where the next record starts after the blank and comment
// lines at data[pos:] (len(data) when none does).
func (p *csvParser) skip(data []byte, pos int) int {
	o := &p.opt
	for pos < len(data) {
		c := data[pos]
		if c == '\n' {
			pos++
			continue
		}
		if c == '\r' && pos+1 < len(data) && data[pos+1] == '\n' {
			pos += 2
			continue
		}
		if c == '\r' && pos+1 == len(data) {
			return len(data)
		}
		if o.comment != 0 && c == o.comment {
			nl := bytes.IndexByte(data[pos:], '\n')
			if nl < 0 {
				return len(data)
			}
			pos += nl + 1
			continue
		}
		break
	}
	return pos
}

// parse splits the record that starts at data[pos] (not blank, not a
// comment) into p.fields and returns the position after it.
func (p *csvParser) parse(data []byte, pos int) (int, error) {
	o := &p.opt
	p.spans = p.spans[:0]
	p.scratch = p.scratch[:0]
	p.fields = p.fields[:0]
	stop := p.stops()
	for {
		if pos < len(data) && data[pos] == o.quote {
			qs := pos + 1
			pos = qs
			escaped := false
			for {
				j := bytes.IndexByte(data[pos:], o.quote)
				if j < 0 {
					return 0, errUnterminated
				}
				pos += j
				if pos+1 < len(data) && data[pos+1] == o.quote {
					escaped = true
					pos += 2
					continue
				}
				break
			}
			raw := data[qs:pos:pos]
			pos++ // closing quote
			if escaped || bytes.IndexByte(raw, '\r') >= 0 {
				s := len(p.scratch)
				for i := 0; i < len(raw); i++ {
					c := raw[i]
					if c == o.quote {
						i++ // the doubled quote
					} else if c == '\r' && i+1 < len(raw) && raw[i+1] == '\n' {
						continue
					}
					p.scratch = append(p.scratch, c)
				}
				p.spans = append(p.spans, span{start: s, end: len(p.scratch), field: len(p.fields)})
				p.fields = append(p.fields, nil)
			} else {
				p.fields = append(p.fields, raw)
			}
			switch {
			case pos == len(data):
				return p.done(data, pos), nil
			case data[pos] == o.delim:
				pos++
				continue
			case data[pos] == '\n':
				return p.done(data, pos+1), nil
			case data[pos] == '\r' && (pos+1 == len(data) || data[pos+1] == '\n'):
				return p.done(data, min(pos+2, len(data))), nil
			}
			return 0, errAfterQuote
		}
		start := pos
		for pos < len(data) && !stop[data[pos]] {
			pos++
		}
		if pos < len(data) && data[pos] == o.quote {
			return 0, errBareQuote
		}
		end := pos
		if end > start && data[end-1] == '\r' && (pos == len(data) || data[pos] == '\n') {
			end--
		}
		p.fields = append(p.fields, data[start:end:end])
		if pos == len(data) {
			return p.done(data, pos), nil
		}
		if data[pos] == '\n' {
			return p.done(data, pos+1), nil
		}
		pos++ // delimiter
	}
}

// done points the unescaped fields into scratch (which may have moved
// while it grew).
func (p *csvParser) done(_ []byte, pos int) int {
	for _, s := range p.spans {
		p.fields[s.field] = p.scratch[s.start:s.end:s.end]
	}
	return pos
}

// lastRecordEnd returns the offset just after the last complete record in
// b, which starts at a record boundary (0 when b holds no complete record).
func lastRecordEnd(b []byte, quote, comment byte) int {
	if bytes.IndexByte(b, quote) < 0 {
		return bytes.LastIndexByte(b, '\n') + 1
	}
	inQ, lineStart, last := false, true, 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inQ {
			if c == quote {
				inQ = false
			}
			continue
		}
		if lineStart && comment != 0 && c == comment {
			j := bytes.IndexByte(b[i:], '\n')
			if j < 0 {
				break
			}
			i += j
			last = i + 1
			continue
		}
		lineStart = false
		switch c {
		case quote:
			inQ = true
		case '\n':
			last, lineStart = i+1, true
		}
	}
	return last
}

// recordEnd returns the end of the record that starts at data[start]
// when it cannot be parsed: after the first line break outside quotes,
// quotes counted as lastRecordEnd counts them (so the records after it are
// the ones the block reader cuts at), or len(data).
func recordEnd(data []byte, start int, quote byte) int {
	inQ := false
	for i := start; i < len(data); i++ {
		switch data[i] {
		case quote:
			inQ = !inQ
		case '\n':
			if !inQ {
				return i + 1
			}
		}
	}
	return len(data)
}

// csvReject is a record of a block that the decoder refused; the reader
// turns rec and line into the record's number and line in the file.
type csvReject struct {
	rec  int    // records of the block before it
	line int    // line breaks of the block before it
	text []byte // the record's text (a copy, without its line break)
	err  error
}

func newCSVReject(rec, line int, text []byte, err error) csvReject {
	text = bytes.TrimSuffix(text, []byte{'\n'})
	text = bytes.TrimSuffix(text, []byte{'\r'})
	return csvReject{rec: rec, line: line, text: pipeline.CopyRecord(text), err: err}
}

// blockResult is what decoding a block produced.
type blockResult struct {
	batches []arrow.RecordBatch
	recs    int // records, the rejected ones included
	lines   int // line breaks in the block
	rejects []csvReject
}

// blockDecoder turns blocks of whole CSV records into Arrow batches.
type blockDecoder struct {
	p      csvParser
	schema *arrow.Schema
	fields []Field
	proj   []int // CSV field index → schema column (-1: skipped)
	cols   []column
	fast   []fastCol // per schema column: its typed append
	stop   [256]bool // bytes that end an unquoted field on the fast path
	below  uint64    // one more than the largest stop byte, in every byte of a word
	bounds []int     // the fast path's fields: start, end offsets
	rows   int       // rows per batch
	// general makes every record go through the general parser and the
	// columns' appendText (the fuzz test compares the two paths).
	general bool
}

// Column kinds the fast path appends to without an interface call.
const (
	kindOther = iota
	kindInt64
	kindFloat64
	kindTimestamp // a layout fastTime knows
	kindDate      // layoutDate
	kindBool
	kindString
)

// fastCol is a column with its concrete type, for the decoder's fast path.
type fastCol struct {
	kind int
	i64  *fixedCol[int64]
	f64  *fixedCol[float64]
	i32  *fixedCol[int32]
	b    *boolCol
	s    *stringCol
	ts   timeLayout
	day  dateCache
}

func newBlockDecoder(opt csvOptions, fields []Field, schema *arrow.Schema, proj []int, rows int) (*blockDecoder, error) {
	d := &blockDecoder{p: csvParser{opt: opt}, schema: schema, fields: fields, proj: proj, rows: rows}
	d.stop[opt.delim], d.stop['\n'], d.stop['\r'], d.stop[opt.quote] = true, true, true, true
	// The word-at-a-time scan looks for bytes below the largest stop byte
	// + 1; delimiters and quotes above 0x7f (not ASCII) leave it to the
	// byte loop.
	if top := max(opt.delim, opt.quote, '\r'); top < 0x80 {
		d.below = lanes1 * uint64(top+1)
	}
	for _, f := range fields {
		c, err := newColumn(f, min(rows, 1<<16))
		if err != nil {
			return nil, err
		}
		d.cols = append(d.cols, c)
		var fc fastCol
		switch c := c.(type) {
		case *fixedCol[int64]:
			switch f.Type {
			case typeInt64:
				fc.kind, fc.i64 = kindInt64, c
			case typeTimestamp:
				if tl, ok := fastLayouts[timestampLayout(f)]; ok {
					fc.kind, fc.i64, fc.ts = kindTimestamp, c, tl
				}
			}
		case *fixedCol[float64]:
			fc.kind, fc.f64 = kindFloat64, c
		case *fixedCol[int32]:
			if f.Layout == "" || f.Layout == layoutDate {
				fc.kind, fc.i32 = kindDate, c
			}
		case *boolCol:
			fc.kind, fc.b = kindBool, c
		case *stringCol:
			fc.kind, fc.s = kindString, c
		}
		d.fast = append(d.fast, fc)
	}
	return d, nil
}

// splitFast splits the record at data[pos:] into d.bounds when it is a
// plain one: no quote, no carriage return, not blank, not a comment, and
// ended by a line break (so that a record of the fast path is exactly one
// line). It returns the position after the record and false when the
// record needs the general parser (or pos is at the end of data).
func (d *blockDecoder) splitFast(data []byte, pos int) (int, bool) {
	if pos >= len(data) {
		return pos, false
	}
	if c := data[pos]; c == '\n' || c == '\r' || (d.p.opt.comment != 0 && c == d.p.opt.comment) {
		return pos, false
	}
	b := d.bounds[:0]
	delim, quote := d.p.opt.delim, d.p.opt.quote
	start := pos
	// Eight bytes at a time while they last: every candidate byte of a
	// word (stopMask) is looked at before the next word is loaded.
	for d.below != 0 && pos+8 <= len(data) {
		for m := d.stopMask(binary.LittleEndian.Uint64(data[pos:])); m != 0; m &= m - 1 {
			at := pos + bits.TrailingZeros64(m)>>3
			switch data[at] {
			case delim:
				b = append(b, start, at)
				start = at + 1
			case '\n':
				d.bounds = append(b, start, at)
				return at + 1, true
			case quote, '\r':
				d.bounds = b
				return pos, false
			}
		}
		pos += 8
	}
	// Then one byte at a time.
	stop := &d.stop
	for pos = max(pos, start); ; {
		for pos < len(data) && !stop[data[pos]] {
			pos++
		}
		b = append(b, start, pos)
		if pos == len(data) {
			// The last record, without a line break.
			d.bounds = b
			return pos, false
		}
		switch data[pos] {
		case delim:
			pos++
			start = pos
		case '\n':
			d.bounds = b
			return pos + 1, true
		default: // a quote or a carriage return
			d.bounds = b
			return pos, false
		}
	}
}

// Bytes broadcast to the eight lanes of a word.
const (
	lanes1  = 0x0101010101010101
	lanesHi = 0x8080808080808080
)

// stopMask has the high bit set of every byte of w (little-endian) below
// d.below, which every stop byte (delimiter, quote, \n, \r) is: the lowest
// set bit marks the first such byte (bits above it may be false
// positives, and the byte may be no stop byte: the caller checks).
func (d *blockDecoder) stopMask(w uint64) uint64 {
	return (w - d.below) &^ w & lanesHi
}

// appendFast appends field text v (not null) to schema column ci; false
// when it does not parse (appendText then reports why).
func (d *blockDecoder) appendFast(ci int, v []byte) bool {
	fc := &d.fast[ci]
	switch fc.kind {
	case kindInt64:
		n, ok := parseInt(v)
		if ok {
			fc.i64.appendValue(n)
		}
		return ok
	case kindFloat64:
		f, ok := parseFloat(v)
		if ok {
			fc.f64.appendValue(f)
		}
		return ok
	case kindTimestamp:
		us, ok := fc.ts.parseCached(v, &fc.day)
		if ok {
			fc.i64.appendValue(us)
		}
		return ok
	case kindDate:
		days, ok := fastDate(v)
		if ok {
			fc.i32.appendValue(days)
		}
		return ok
	case kindBool:
		on, ok := parseBool(v)
		if ok {
			fc.b.add(on)
		}
		return ok
	case kindString:
		return fc.s.appendText(v) == nil
	}
	return false
}

// decode parses every record of data. A record that cannot be parsed,
// has the wrong number of fields or a field its column cannot take is
// rejected (nothing of it reaches the columns) and decoding goes on.
func (d *blockDecoder) decode(data []byte) blockResult {
	var res blockResult
	// A record of the fast path is one line ended by a line break, so the
	// line breaks before a record are those of the fast records before it
	// (recs - slowRecs) and those the general path saw (slowLines): the
	// fast path counts nothing.
	recs, slowRecs, slowLines, pos := 0, 0, 0, 0
	nulls := &d.p.opt.nulls
records:
	for {
		// Plain records (the common case) are split into offsets and
		// appended through the typed fast path; the others go through
		// the general parser.
		if next, ok := d.splitFast(data, pos); ok && !d.general {
			pos = next
			b := d.bounds
			if len(b) != 2*len(d.proj) {
				res.rejects = append(res.rejects, d.fastReject(data, next, recs, recs-slowRecs+slowLines, fmt.Errorf("%d fields, want %d", len(b)/2, len(d.proj))))
				recs++
				continue
			}
			for i, ci := range d.proj {
				if ci < 0 {
					continue
				}
				v := data[b[2*i]:b[2*i+1]]
				if nulls.is(v) {
					d.cols[ci].appendNull()
					continue
				}
				if !d.appendFast(ci, v) {
					if err := d.cols[ci].appendText(v); err != nil {
						d.truncate(d.cols[ci].len())
						res.rejects = append(res.rejects, d.fastReject(data, next, recs, recs-slowRecs+slowLines, fmt.Errorf("column %q: %w", d.fields[ci].Name, err)))
						recs++
						continue records
					}
				}
			}
		} else {
			start := d.p.skip(data, pos)
			if start >= len(data) {
				slowLines += bytes.Count(data[pos:], []byte{'\n'})
				break
			}
			slowRecs++
			slowLines += bytes.Count(data[pos:start], []byte{'\n'})
			line := recs - slowRecs + 1 + slowLines
			next, err := d.p.parse(data, start)
			if err != nil {
				next = recordEnd(data, start, d.p.opt.quote)
			}
			pos = next
			slowLines += bytes.Count(data[start:next], []byte{'\n'})
			if err == nil && len(d.p.fields) != len(d.proj) {
				err = fmt.Errorf("%d fields, want %d", len(d.p.fields), len(d.proj))
			}
			if err != nil {
				res.rejects = append(res.rejects, newCSVReject(recs, line, data[start:next], err))
				recs++
				continue
			}
			for i, v := range d.p.fields {
				ci := d.proj[i]
				if ci < 0 {
					continue
				}
				if nulls.is(v) {
					d.cols[ci].appendNull()
					continue
				}
				if err := d.cols[ci].appendText(v); err != nil {
					d.truncate(d.cols[ci].len())
					res.rejects = append(res.rejects, newCSVReject(recs, line, data[start:next], fmt.Errorf("column %q: %w", d.fields[ci].Name, err)))
					recs++
					continue records
				}
			}
		}
		recs++
		if d.cols[0].len() >= d.rows {
			res.batches = append(res.batches, d.flush())
		}
	}
	if len(d.cols) > 0 && d.cols[0].len() > 0 {
		res.batches = append(res.batches, d.flush())
	}
	res.recs, res.lines = recs, recs-slowRecs+slowLines
	return res
}

// fastReject is the reject of the fast path's record that ends at next
// (after its line break; the record is that one line).
func (d *blockDecoder) fastReject(data []byte, next, rec, line int, err error) csvReject {
	start := bytes.LastIndexByte(data[:next-1], '\n') + 1
	return newCSVReject(rec, line, data[start:next], err)
}

// truncate drops what a refused record appended: every column keeps its
// first n values.
func (d *blockDecoder) truncate(n int) {
	for _, c := range d.cols {
		c.truncate(n)
	}
}

func (d *blockDecoder) flush() arrow.RecordBatch {
	arrs := make([]arrow.Array, len(d.cols))
	for i, c := range d.cols {
		arrs[i] = c.finish()
	}
	n := int64(arrs[0].Len())
	b := array.NewRecordBatch(d.schema, arrs, n)
	for _, a := range arrs {
		a.Release()
	}
	return b
}

// csvReadPlan is what reading one CSV file needs.
type csvReadPlan struct {
	opt       csvOptions
	fields    []Field
	schema    *arrow.Schema
	rows      int // rows per batch
	blockSize int
	workers   int
	progress  func(n int64)
}

// headerName is the column name of header field i: its text, or col_N
// when it is empty.
func headerName(i int, h []byte) string {
	if len(h) == 0 {
		return fmt.Sprintf("col_%d", i+1)
	}
	return string(h)
}

// headerProjection maps the header's names to schema columns.
func headerProjection(header [][]byte, fields []Field, explicit bool) ([]int, error) {
	idx := make(map[string]int, len(fields))
	for i, f := range fields {
		idx[f.Name] = i
	}
	proj := make([]int, len(header))
	seen := make([]bool, len(fields))
	for i, h := range header {
		ci, ok := idx[headerName(i, h)]
		if !ok || seen[ci] {
			if !explicit {
				return nil, fmt.Errorf("header column %d %q is not in the inferred schema (files of a glob must share a header)", i+1, h)
			}
			proj[i] = -1
			continue
		}
		seen[ci] = true
		proj[i] = ci
	}
	for i, ok := range seen {
		if !ok {
			return nil, fmt.Errorf("column %q is not in the header", fields[i].Name)
		}
	}
	return proj, nil
}

type csvJob struct {
	data []byte
	buf  *[]byte
	res  chan blockResult
}

// readCSV decodes one file: a reader goroutine cuts it into blocks of whole
// records, workers parse blocks in parallel, and this goroutine hands
// their rejected records to reject and emits their batches, in file order.
func readCSV(ctx context.Context, path string, plan *csvReadPlan, explicit bool, reject rejectFunc, emit func(context.Context, arrow.RecordBatch) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()

	first := make([]byte, 0, plan.blockSize)
	first, err = fill(f, first, plan.blockSize)
	if err != nil {
		return err
	}
	plan.progress(int64(len(first)))
	start := 0
	var proj []int
	if plan.opt.header {
		p := csvParser{opt: plan.opt}
		for {
			// Read on until the header record ends inside the buffer (or
			// the file ends).
			if len(first) < cap(first) {
				break
			}
			end := lastRecordEnd(first, plan.opt.quote, plan.opt.comment)
			if next, ok, err := p.record(first, 0); err == nil && ok && end > 0 && next <= end {
				break
			}
			// A header longer than the block: read more.
			more := make([]byte, len(first), 2*cap(first))
			copy(more, first)
			n := len(more)
			more, err = fill(f, more, cap(more))
			if err != nil {
				return err
			}
			plan.progress(int64(len(more) - n))
			first = more
		}
		next, ok, err := p.record(first, 0)
		if err != nil {
			return fmt.Errorf("header: %w", err)
		}
		if !ok {
			return nil // an empty file
		}
		start = next
		if proj, err = headerProjection(p.fields, plan.fields, explicit); err != nil {
			return err
		}
	} else {
		proj = make([]int, len(plan.fields))
		for i := range proj {
			proj[i] = i
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pool := sync.Pool{New: func() any { b := make([]byte, 0, plan.blockSize); return &b }}
	jobs := make(chan *csvJob)
	pending := make(chan *csvJob, 2*plan.workers)
	var wg sync.WaitGroup
	var decErr error
	decoders := make([]*blockDecoder, plan.workers)
	for i := range decoders {
		if decoders[i], decErr = newBlockDecoder(plan.opt, plan.fields, plan.schema, proj, plan.rows); decErr != nil {
			return decErr
		}
	}
	for _, d := range decoders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				res := d.decode(j.data)
				if j.buf != nil {
					pool.Put(j.buf)
				}
				j.res <- res
			}
		}()
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(jobs)
		defer close(pending)
		send := func(j *csvJob) error {
			select {
			case pending <- j:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case jobs <- j:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		readErr <- splitBlocks(ctx, f, first[start:], plan, &pool, send)
	}()

	recs := 0
	line := 1 + bytes.Count(first[:start], []byte{'\n'}) // of the block's start
	var runErr error
	for j := range pending {
		if runErr != nil {
			continue // draining after an error
		}
		var r blockResult
		select {
		case r = <-j.res:
		case <-ctx.Done():
			runErr = ctx.Err()
			cancel()
			continue
		}
		if len(r.rejects) > 0 {
			rej := make([]pipeline.SourceReject, len(r.rejects))
			for i, x := range r.rejects {
				rej[i] = pipeline.SourceReject{Record: x.text, Input: path, Line: int64(line + x.line), Index: int64(recs + x.rec + 1), Err: x.err}
			}
			if err := rejected(ctx, reject, rej); err != nil {
				for _, b := range r.batches {
					b.Release()
				}
				runErr = err
				cancel()
				continue
			}
		}
		recs += r.recs
		line += r.lines
		for i, b := range r.batches {
			if runErr == nil {
				if err := emit(ctx, b); err != nil {
					runErr = err
					cancel()
				}
			}
			b.Release()
			r.batches[i] = nil
		}
	}
	wg.Wait()
	if err := <-readErr; runErr == nil && err != nil && !errors.Is(err, context.Canceled) {
		runErr = err
	}
	if runErr == nil {
		runErr = ctx.Err()
	}
	return runErr
}

// fill reads into b up to size bytes (less only at the end of the file).
func fill(r io.Reader, b []byte, size int) ([]byte, error) {
	n, err := io.ReadFull(r, b[len(b):size])
	b = b[:len(b)+n]
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	return b, err
}

// splitBlocks reads the rest of the file after head and hands out blocks
// that end at record boundaries.
func splitBlocks(ctx context.Context, f *os.File, head []byte, plan *csvReadPlan, pool *sync.Pool, send func(*csvJob) error) error {
	carry := head
	eof := false
	for !eof {
		if err := ctx.Err(); err != nil {
			return err
		}
		bp := pool.Get().(*[]byte)
		size := max(plan.blockSize, 2*len(carry))
		buf := *bp
		if cap(buf) < size {
			buf = make([]byte, 0, size)
		}
		buf = append(buf[:0], carry...)
		n0 := len(buf)
		var err error
		buf, err = fill(f, buf, size)
		if err != nil {
			return err
		}
		plan.progress(int64(len(buf) - n0))
		if len(buf) < size {
			eof = true
		}
		cut := len(buf)
		if !eof {
			cut = lastRecordEnd(buf, plan.opt.quote, plan.opt.comment)
			if cut == 0 {
				// One record longer than the block: read on with a bigger one.
				carry = append([]byte(nil), buf...)
				*bp = buf
				pool.Put(bp)
				continue
			}
		}
		// The remainder moves to the next block: copy it before buf is reused.
		carry = append([]byte(nil), buf[cut:]...)
		if cut == 0 {
			*bp = buf
			pool.Put(bp)
			continue
		}
		*bp = buf
		if err := send(&csvJob{data: buf[:cut], buf: bp, res: make(chan blockResult, 1)}); err != nil {
			return err
		}
	}
	if len(carry) > 0 {
		return send(&csvJob{data: carry, res: make(chan blockResult, 1)})
	}
	return nil
}

// defaultWorkers is the number of CSV parsing goroutines.
func defaultWorkers() int { return max(1, runtime.GOMAXPROCS(0)) }
