package file

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/kilnai/kiln/internal/pipeline"
)

// jsonRecord is one record of a JSON input: an object's raw text (valid
// until the next call of the reader), or the text of a bad record and
// why it is bad.
type jsonRecord struct {
	raw   []byte
	line  int64 // where it starts (NDJSON; 0 in a JSON array)
	index int64 // 1-based number among the records
	err   error // not nil: a bad record
}

// jsonReader yields the records of a JSON array or of NDJSON; false at the
// end. An error ends the input (it cannot be read on).
type jsonReader interface {
	next() (jsonRecord, bool, error)
}

var errNotObject = errors.New("not a JSON object")

// jsonRows streams the elements of a JSON array. An element that is not
// an object is a bad record; invalid JSON ends the read (the rest of an
// array cannot be found after it).
type jsonRows struct {
	dec     *json.Decoder
	started bool
	n       int64
}

func newJSONRows(r io.Reader) *jsonRows {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	return &jsonRows{dec: dec}
}

func (j *jsonRows) next() (jsonRecord, bool, error) {
	if !j.started {
		j.started = true
		t, err := j.dec.Token()
		if err == io.EOF {
			return jsonRecord{}, false, nil
		}
		if err != nil {
			return jsonRecord{}, false, err
		}
		if d, ok := t.(json.Delim); !ok || d != '[' {
			return jsonRecord{}, false, errors.New("format json wants an array of objects (use ndjson for one object per line)")
		}
	}
	if !j.dec.More() {
		if _, err := j.dec.Token(); err != nil {
			return jsonRecord{}, false, fmt.Errorf("after record %d: %w", j.n, err)
		}
		if _, err := j.dec.Token(); err != io.EOF {
			return jsonRecord{}, false, errors.New("data after the closing ]")
		}
		return jsonRecord{}, false, nil
	}
	var raw json.RawMessage
	if err := j.dec.Decode(&raw); err != nil {
		return jsonRecord{}, false, fmt.Errorf("record %d: %w", j.n+1, err)
	}
	j.n++
	r := jsonRecord{raw: raw, index: j.n}
	if len(raw) == 0 || raw[0] != '{' {
		r.err = errNotObject
	}
	return r, true, nil
}

// ndjsonRows reads NDJSON a line at a time: each line holds one value
// (several values on a line are read too, and a value may go on over the
// lines after it as long as none of them starts with '{', which starts the
// next record). A line that is not JSON, or a value that is not an object,
// is a bad record with its line number, and reading goes on at the next
// line.
type ndjsonRows struct {
	r        *bufio.Reader
	lines    int64  // read so far
	n        int64  // records (good and bad) returned
	long     []byte // a line longer than the reader's buffer
	rest     []byte // the text left of the line(s) being decoded
	restLine int64  // the line where rest starts
	ahead    []byte // a line read ahead (a copy)
	hasAhead bool
}

func newNDJSONRows(r io.Reader) *ndjsonRows {
	return &ndjsonRows{r: bufio.NewReaderSize(r, 1<<16)}
}

// readLine returns the next line (without its line break; valid until
// the next read) and its number; io.EOF at the end.
func (j *ndjsonRows) readLine() ([]byte, int64, error) {
	if j.hasAhead {
		j.hasAhead = false
		return j.ahead, j.lines, nil
	}
	line, err := j.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		j.long = append(j.long[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = j.r.ReadSlice('\n')
			j.long = append(j.long, line...)
		}
		line = j.long
	}
	if err != nil && err != io.EOF {
		return nil, 0, err
	}
	if err == io.EOF && len(line) == 0 {
		return nil, 0, io.EOF
	}
	j.lines++
	return bytes.TrimSuffix(line, []byte{'\n'}), j.lines, nil
}

func (j *ndjsonRows) next() (jsonRecord, bool, error) {
	for len(j.rest) == 0 {
		line, n, err := j.readLine()
		if err == io.EOF {
			return jsonRecord{}, false, nil
		}
		if err != nil {
			return jsonRecord{}, false, err
		}
		t := bytes.TrimSpace(line)
		if len(t) == 0 {
			continue
		}
		if t[0] == '{' && json.Valid(t) {
			// The common case: one object on its line.
			j.n++
			return jsonRecord{raw: t, line: n, index: j.n}, true, nil
		}
		j.rest = append(j.rest[:0], t...)
		j.restLine = n
	}
	return j.fromRest()
}

// fromRest decodes the first value of j.rest, reading on over the lines
// after it while the value is incomplete.
func (j *ndjsonRows) fromRest() (jsonRecord, bool, error) {
	for {
		dec := json.NewDecoder(bytes.NewReader(j.rest))
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == nil {
			line := j.restLine
			after := bytes.TrimLeft(j.rest[dec.InputOffset():], " \t\r\n")
			j.restLine += int64(bytes.Count(j.rest[:len(j.rest)-len(after)], []byte{'\n'}))
			j.rest = after
			j.n++
			r := jsonRecord{raw: raw, line: line, index: j.n}
			if raw[0] != '{' {
				r.err = errNotObject
			}
			return r, true, nil
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			// Incomplete: on over the next line, unless it starts the
			// next record (or there is none).
			line, _, rerr := j.readLine()
			if rerr != nil && rerr != io.EOF {
				return jsonRecord{}, false, rerr
			}
			if rerr == nil && (len(line) == 0 || line[0] != '{') {
				j.rest = append(append(j.rest, '\n'), line...)
				continue
			}
			if rerr == nil {
				j.ahead, j.hasAhead = append(j.ahead[:0], line...), true
			}
			err = errors.New("unexpected end of JSON input")
		}
		// Not JSON: the rest of the line(s) is one bad record.
		j.n++
		r := jsonRecord{raw: j.rest, line: j.restLine, index: j.n, err: err}
		j.rest = j.rest[:0]
		return r, true, nil
	}
}

// orderedObject decodes an object keeping its key order.
func orderedObject(raw []byte) (keys []string, vals []any, err error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return nil, nil, err
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		k, _ := t.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		keys = append(keys, k)
		vals = append(vals, v)
	}
	return keys, vals, nil
}

// jsonKind classifies one decoded JSON value.
func jsonKind(v any) kind {
	switch x := v.(type) {
	case nil:
		return kNull
	case bool:
		return kBool
	case json.Number:
		if _, ok := parseInt([]byte(x)); ok {
			return kInt
		}
		return kFloat
	case string:
		switch k := kindOf([]byte(x)); k {
		case kDate, kTimestamp, kTimestampSp, kTimestampT:
			return k
		}
	}
	return kString
}

// jsonInferrer accumulates key order and kinds over sampled objects.
type jsonInferrer struct {
	names []string
	index map[string]int
	kinds []kind
}

func (in *jsonInferrer) add(raw []byte) error {
	keys, vals, err := orderedObject(raw)
	if err != nil {
		return err
	}
	if in.index == nil {
		in.index = map[string]int{}
	}
	for i, k := range keys {
		ci, ok := in.index[k]
		if !ok {
			ci = len(in.names)
			in.index[k] = ci
			in.names = append(in.names, k)
			in.kinds = append(in.kinds, kNull)
		}
		if in.kinds[ci] != kString {
			in.kinds[ci] = merge(in.kinds[ci], jsonKind(vals[i]))
		}
	}
	return nil
}

func (in *jsonInferrer) fields() []Field {
	out := make([]Field, len(in.names))
	for i, n := range in.names {
		out[i] = in.kinds[i].field(n)
	}
	return out
}

// newJSONReader reads the records of a JSON array or of NDJSON.
func newJSONReader(r io.Reader, isArray bool) jsonReader {
	if isArray {
		return newJSONRows(bufio.NewReaderSize(r, 1<<16))
	}
	return newNDJSONRows(r)
}

// sampleJSON infers fields from up to n objects at the start of each file
// and, for NDJSON, every line of windows spread through each file. Bad
// records are left out (reading rejects them); the first of them is the
// error when no object was left.
func sampleJSON(paths []string, array bool, n int) ([]Field, error) {
	var in jsonInferrer
	var firstBad error
	for fi, p := range paths {
		if fi >= 8 {
			break
		}
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		head := n
		if fi > 0 {
			head = max(1, n/4)
		}
		rows := newJSONReader(f, array)
		for range head {
			r, ok, err := rows.next()
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			if !ok {
				break
			}
			if r.err == nil {
				r.err = in.add(r.raw)
			}
			if r.err != nil && firstBad == nil {
				firstBad = fmt.Errorf("%s: %w", p, recordError(pipeline.SourceReject{Line: r.line, Index: r.index, Err: r.err}))
			}
		}
		if !array {
			for _, w := range sampleWindows(f) {
				for _, l := range bytes.Split(w, []byte{'\n'}) {
					if l = bytes.TrimSpace(l); len(l) > 0 && l[0] == '{' {
						_ = in.add(l) // a window edge may cut a line: ignore what does not parse
					}
				}
			}
		}
		f.Close()
	}
	if len(in.names) == 0 {
		if firstBad != nil {
			return nil, firstBad
		}
		return nil, errors.New("no records to infer a schema from (give an explicit schema)")
	}
	return in.fields(), nil
}

// sampleWindow is how much is read at each of the points spread through a
// file (seven interior points and the end) to widen the inferred schema
// beyond its first rows; every whole record of a window is sampled.
const sampleWindow = 64 << 10

// sampleWindows returns whole lines read at points spread through a file
// larger than two windows (each starts after a newline).
func sampleWindows(f *os.File) [][]byte {
	st, err := f.Stat()
	if err != nil || st.Size() < 2*sampleWindow {
		return nil
	}
	var out [][]byte
	size := st.Size()
	offs := make([]int64, 0, 8)
	for k := int64(1); k < 8; k++ {
		offs = append(offs, size*k/8)
	}
	offs = append(offs, size-sampleWindow)
	for _, off := range offs {
		buf := make([]byte, sampleWindow)
		n, err := f.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			continue
		}
		buf = buf[:n]
		nl := bytes.IndexByte(buf, '\n')
		if nl < 0 {
			continue
		}
		buf = buf[nl+1:]
		if end := bytes.LastIndexByte(buf, '\n'); end >= 0 && off+int64(n) < size {
			buf = buf[:end+1]
		}
		out = append(out, buf)
	}
	return out
}

// maxRejects is how many rejected records the JSON reader collects before
// it hands them over (it also does before each batch).
const maxRejects = 1024

// readJSON decodes one JSON or NDJSON file into batches of rows. Records
// that are not objects, not JSON (an NDJSON line), or hold a value their
// column cannot take go to reject.
func readJSON(ctx context.Context, path string, isArray bool, fields []Field, schema *arrow.Schema, rows int, progress *countingReader, reject rejectFunc, emit func(context.Context, arrow.RecordBatch) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	progress.r = f
	idx := make(map[string]int, len(fields))
	cols := make([]column, len(fields))
	for i, fl := range fields {
		idx[fl.Name] = i
		if cols[i], err = newColumn(fl, min(rows, 1<<16)); err != nil {
			return err
		}
	}
	seen := make([]bool, len(fields))
	var rejects []pipeline.SourceReject
	handOver := func() error {
		r := rejects
		rejects = nil
		return rejected(ctx, reject, r)
	}
	bad := func(r jsonRecord, err error) error {
		rejects = append(rejects, pipeline.SourceReject{Record: pipeline.CopyRecord(r.raw), Input: path, Line: r.line, Index: r.index, Err: err})
		if reject == nil || len(rejects) >= maxRejects {
			return handOver()
		}
		return nil
	}
	flush := func() error {
		if err := handOver(); err != nil {
			return err
		}
		arrs := make([]arrow.Array, len(cols))
		for i, c := range cols {
			arrs[i] = c.finish()
		}
		b := array.NewRecordBatch(schema, arrs, int64(arrs[0].Len()))
		for _, a := range arrs {
			a.Release()
		}
		defer b.Release()
		return emit(ctx, b)
	}
	it := newJSONReader(progress, isArray)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		r, ok, err := it.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if r.err != nil {
			if err := bad(r, r.err); err != nil {
				return err
			}
			continue
		}
		var obj map[string]any
		dec := json.NewDecoder(bytes.NewReader(r.raw))
		dec.UseNumber()
		if err := dec.Decode(&obj); err != nil {
			if err := bad(r, err); err != nil {
				return err
			}
			continue
		}
		n := cols[0].len()
		clear(seen)
		var verr error
		for k, v := range obj {
			ci, ok := idx[k]
			if !ok || v == nil {
				continue
			}
			if err := cols[ci].appendJSON(v); err != nil {
				verr = fmt.Errorf("key %q: %w", k, err)
				break
			}
			seen[ci] = true
		}
		if verr != nil {
			for _, c := range cols {
				c.truncate(n)
			}
			if err := bad(r, verr); err != nil {
				return err
			}
			continue
		}
		for ci, ok := range seen {
			if !ok {
				cols[ci].appendNull()
			}
		}
		if cols[0].len() >= rows {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if len(cols) > 0 && cols[0].len() > 0 {
		return flush()
	}
	return handOver()
}

// countingReader counts bytes read for progress.
type countingReader struct {
	r   io.Reader
	add func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.add(int64(n))
	return n, err
}
