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
)

// jsonRows streams the objects of a JSON array or of NDJSON (one value per
// line; any whitespace between values is accepted).
type jsonRows struct {
	dec     *json.Decoder
	array   bool
	started bool
	n       int
}

func newJSONRows(r io.Reader, array bool) *jsonRows {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	return &jsonRows{dec: dec, array: array}
}

// next returns the next object as raw JSON (false at the end).
func (j *jsonRows) next() (json.RawMessage, bool, error) {
	if j.array && !j.started {
		j.started = true
		t, err := j.dec.Token()
		if err == io.EOF {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		if d, ok := t.(json.Delim); !ok || d != '[' {
			return nil, false, errors.New("format json wants an array of objects (use ndjson for one object per line)")
		}
	}
	if !j.dec.More() {
		if j.array {
			if _, err := j.dec.Token(); err != nil {
				return nil, false, fmt.Errorf("after record %d: %w", j.n, err)
			}
			if _, err := j.dec.Token(); err != io.EOF {
				return nil, false, errors.New("data after the closing ]")
			}
		}
		return nil, false, nil
	}
	var raw json.RawMessage
	if err := j.dec.Decode(&raw); err != nil {
		return nil, false, fmt.Errorf("record %d: %w", j.n+1, err)
	}
	j.n++
	if len(raw) == 0 || raw[0] != '{' {
		return nil, false, fmt.Errorf("record %d: not a JSON object", j.n)
	}
	return raw, true, nil
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

// sampleJSON infers fields from up to n objects at the start of each file
// and, for NDJSON, every line of windows spread through each file.
func sampleJSON(paths []string, array bool, n int) ([]Field, error) {
	var in jsonInferrer
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
		rows := newJSONRows(bufio.NewReaderSize(f, 1<<16), array)
		for range head {
			raw, ok, err := rows.next()
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			if !ok {
				break
			}
			if err := in.add(raw); err != nil {
				f.Close()
				return nil, fmt.Errorf("%s: %w", p, err)
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

// readJSON decodes one JSON or NDJSON file into batches of rows.
func readJSON(ctx context.Context, path string, isArray bool, fields []Field, schema *arrow.Schema, rows int, progress *countingReader, emit func(context.Context, arrow.RecordBatch) error) error {
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
	flush := func() error {
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
	it := newJSONRows(bufio.NewReaderSize(progress, 1<<16), isArray)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		raw, ok, err := it.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		var obj map[string]any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&obj); err != nil {
			return fmt.Errorf("record %d: %w", it.n, err)
		}
		clear(seen)
		for k, v := range obj {
			ci, ok := idx[k]
			if !ok || v == nil {
				continue
			}
			if err := cols[ci].appendJSON(v); err != nil {
				return fmt.Errorf("record %d: key %q: %w", it.n, k, err)
			}
			seen[ci] = true
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
	return nil
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
