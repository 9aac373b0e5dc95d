package file

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/kilnai/kiln/internal/pipeline"
)

// parseAll splits data into records with Kiln's parser.
func parseAll(data []byte, opt csvOptions) ([][]string, error) {
	p := csvParser{opt: opt}
	var out [][]string
	pos := 0
	for {
		next, ok, err := p.record(data, pos)
		if err != nil {
			return nil, err
		}
		if !ok {
			return out, nil
		}
		pos = next
		rec := make([]string, len(p.fields))
		for i, f := range p.fields {
			rec[i] = string(f)
		}
		out = append(out, rec)
	}
}

// FuzzCSVParser checks the record parser against encoding/csv on every
// input encoding/csv accepts, whole and cut into blocks at the record
// boundaries the block reader would choose.
func FuzzCSVParser(f *testing.F) {
	for _, s := range []string{
		"a,b\n1,2\n", "\"q,\"\"x\"\"\",y\r\n", "a\n\n\nb\r\n", "x,\"multi\nline\"\n,\n", "#c\n1,2\n",
		"\"\"\n", "a,\"b\r\nc\",d", "é,世界\n", "a\rb,c\n", "1,2\r",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, comment bool) {
		r := csv.NewReader(bytes.NewReader(data))
		r.FieldsPerRecord = -1
		opt := csvOptions{delim: ',', quote: '"'}
		if comment {
			r.Comment = '#'
			opt.comment = '#'
		}
		var want [][]string
		for {
			rec, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				return // not valid CSV for the reference: only crashes matter
			}
			want = append(want, rec)
		}
		got, err := parseAll(data, opt)
		if err != nil {
			t.Fatalf("kiln rejected valid CSV %q: %v", data, err)
		}
		if len(want) == 0 && len(got) == 0 {
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("input %q\nkiln     %q\nencoding %q", data, got, want)
		}
		// Cut where the block reader would: the parts parse to the same.
		if cut := lastRecordEnd(data, '"', opt.comment); cut > 0 && cut < len(data) {
			a, err1 := parseAll(data[:cut], opt)
			b, err2 := parseAll(data[cut:], opt)
			if err1 != nil || err2 != nil || !reflect.DeepEqual(append(a, b...), got) {
				t.Fatalf("input %q cut at %d: %q + %q (%v %v), want %q", data, cut, a, b, err1, err2, got)
			}
		}
	})
}

// FuzzInferAndDecode: whatever schema inference concludes from a small
// file (which it samples whole), decoding the file with it delivers every
// record but those the sample left out (they cannot be parsed or have the
// wrong number of fields), which are rejected.
func FuzzInferAndDecode(f *testing.F) {
	for _, s := range []string{
		"a,b\n1,x\n2.5,y\n", "n\n1\n\nNA\n-7\n", "d,t\n2024-01-02,2024-01-02T03:04:05Z\n,2024-01-02 03:04:05\n",
		"b\ntrue\nF\n", "x,y\n\"1\",\"2\"\n3,4\n", "h\n99999999999999999999\n", "k\n+1\n-0.5\n1e3\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return
		}
		path := filepath.Join(dir, "fuzz.csv")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		opt := csvOptions{delim: ',', quote: '"', header: true, nulls: newNullSet(defaultSourceConfig().NullValues)}
		fields, err := sampleCSV([]string{path}, opt, 1000)
		if err != nil {
			return
		}
		if err := validateSchema(fields); err != nil {
			t.Fatalf("inferred an invalid schema %v: %v", fields, err)
		}
		schema, err := arrowSchema(fields)
		if err != nil {
			t.Fatal(err)
		}
		plan := &csvReadPlan{opt: opt, fields: fields, schema: schema, rows: 3, blockSize: 64, workers: 2, progress: func(int64) {}}
		var rows, rejected int64
		err = readCSV(context.Background(), path, plan, false, func(_ context.Context, recs []pipeline.SourceReject) error {
			for _, r := range recs {
				// The sample left out the records that cannot be parsed or
				// have the wrong number of fields; every value of the
				// others fits the inferred type.
				if strings.HasPrefix(r.Err.Error(), "column ") {
					t.Fatalf("input %q: inferred %v but record %d was rejected: %v", data, fields, r.Index, r.Err)
				}
			}
			rejected += int64(len(recs))
			return nil
		}, func(_ context.Context, b arrow.RecordBatch) error {
			rows += b.NumRows()
			return nil
		})
		if err != nil {
			t.Fatalf("input %q: inferred %v but decoding failed: %v", data, fields, err)
		}
		want, err := parseAll(data, opt)
		if err == nil && len(want) > 0 && rows+rejected != int64(len(want)-1) {
			t.Fatalf("input %q: %d rows decoded and %d rejected, %d records after the header", data, rows, rejected, len(want)-1)
		}
	})
}

// FuzzSourceConfig: any JSON task spec either opens or fails cleanly.
func FuzzTaskSpec(f *testing.F) {
	f.Add([]byte(`{"path":"x.csv","schema":[{"name":"a","type":"int64"}]}`))
	f.Add([]byte(`{"path":"","row_groups":[1,2]}`))
	f.Add([]byte(`{"path":"p.parquet","schema":[{"name":"a","type":"nope"}]}`))
	cfg := defaultSourceConfig()
	cfg.Path = "x.csv"
	src, err := newSource(cfg, pipeline.Env{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, spec []byte) {
		s, err := src.OpenTask(context.Background(), pipeline.Task{ID: "t", Spec: spec})
		if err == nil && s == nil {
			t.Fatal("nil source without an error")
		}
		if err != nil && errors.Unwrap(err) == nil && err.Error() == "" {
			t.Fatal("empty error")
		}
	})
}

// FuzzFastTime: the fast timestamp path agrees with time.Parse whenever it
// accepts a text.
func FuzzFastTime(f *testing.F) {
	for _, s := range []string{"2024-01-02T03:04:05Z", "2024-01-02 03:04:05.123456789", "1969-12-31T23:59:59.5Z", "2024-02-30T00:00:00Z", "2024-01-02T24:00:00Z", "0001-01-01T00:00:00"} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(3))
	}
	layouts := []string{time.RFC3339, time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", layoutT, layoutSpace}
	f.Fuzz(func(t *testing.T, s string, li uint8) {
		layout := layouts[int(li)%len(layouts)]
		got, ok := fastTime(layout, []byte(s))
		if !ok {
			return
		}
		tm, err := time.Parse(layout, s)
		if err != nil {
			t.Fatalf("fastTime(%q, %q) = %d, time.Parse refuses: %v", layout, s, got, err)
		}
		if want := tm.UnixMicro(); got != want {
			t.Fatalf("fastTime(%q, %q) = %d, time.Parse %d", layout, s, got, want)
		}
	})
}

// FuzzJSONString: the JSON sink's string encoder produces JSON that
// decodes to the text (invalid UTF-8 bytes become U+FFFD, as
// encoding/json does).
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "quote\" back\\slash", "\x00\x1f\t\n\r", "héllo 世界", "\xff\xfe", "<&>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Fatalf("%q encoded as invalid JSON %s: %v", s, enc, err)
		}
		var want strings.Builder
		for i := 0; i < len(s); {
			r, size := utf8.DecodeRuneInString(s[i:])
			want.WriteRune(r) // RuneError for an invalid byte
			i += size
		}
		if got != want.String() {
			t.Fatalf("%q → %s → %q, want %q", s, enc, got, want.String())
		}
	})
}

// FuzzDecodeFastPath: the block decoder's fast path (plain records split
// into offsets, typed appends) decodes exactly what the general parser
// and the columns' appendText decode, and fails where they fail, with the
// same error.
func FuzzDecodeFastPath(f *testing.F) {
	for _, s := range []string{
		"1,2.5,x\n3,-4,y\n", "1,,NA\n\n2,3,\"q\"\"\"\n", "#c\n5,6,7\r\n8,9,10", "2024-01-02T03:04:05,2024-01-02,true\n",
		"1,2\n3\n", "x,1,2\n", "1,2,3,4\n", "\"a\nb\",1,2\n", "1,2,3\r\n\r\n4,5,6\r", "t,F,TRUE\nfalse,f,x\n",
		"2024-13-01T00:00:00,1,1\n", "1,2,a\"b\n", "1e3,.5,+7\n",
	} {
		f.Add([]byte(s), uint16(0x0123), false, uint8(0))
		f.Add([]byte(s), uint16(0x4455), true, uint8(0))
		f.Add([]byte(s), uint16(0x2310), false, uint8(1))
	}
	// Longer records (the word-at-a-time scan), spaces and signs right
	// after delimiters, other delimiters.
	for _, s := range []string{
		"12345678901,2024-01-02T03:04:05,-0.125\n-7,2024-01-02T03:04:05.5,+3\n",
		"a long text value here,with spaces,  -1 \n1,2,3\n",
		"1;2;3\n4;-5;6\n", "1\t2\t3\n", "1|2|3\n", "1\xc3\xa92\xc3\xa93\n",
	} {
		for d := range uint8(5) {
			f.Add([]byte(s), uint16(0x5555), false, d)
			f.Add([]byte(s), uint16(0x1001), false, d)
		}
	}
	types := []Field{
		{Type: typeInt64}, {Type: typeFloat64}, {Type: typeTimestamp, Layout: "2006-01-02T15:04:05"}, {Type: typeDate},
		{Type: typeBool}, {Type: typeString}, {Type: typeTimestamp}, {Type: typeDate, Layout: "02/01/2006"},
	}
	delims := []byte{',', ';', '\t', '|', 0xa9}
	f.Fuzz(func(t *testing.T, data []byte, kinds uint16, comment bool, delim uint8) {
		// Three columns, types picked by kinds' nibbles.
		var fields []Field
		for i := range 3 {
			fl := types[int(kinds>>(4*i))%len(types)]
			fl.Name = fmt.Sprintf("c%d", i)
			fields = append(fields, fl)
		}
		schema, err := arrowSchema(fields)
		if err != nil {
			t.Fatal(err)
		}
		opt := csvOptions{delim: delims[int(delim)%len(delims)], quote: '"', nulls: newNullSet([]string{"", "NA"})}
		if comment {
			opt.comment = '#'
		}
		decode := func(general bool) blockResult {
			d, err := newBlockDecoder(opt, fields, schema, []int{0, 1, 2}, 4)
			if err != nil {
				t.Fatal(err)
			}
			d.general = general
			return d.decode(data)
		}
		fast, slow := decode(false), decode(true)
		if fast.recs != slow.recs || fast.lines != slow.lines || len(fast.batches) != len(slow.batches) {
			t.Fatalf("input %q: %d records, %d lines in %d batches, general %d, %d in %d", data, fast.recs, fast.lines, len(fast.batches), slow.recs, slow.lines, len(slow.batches))
		}
		for i := range fast.batches {
			if !array.RecordEqual(fast.batches[i], slow.batches[i]) {
				t.Fatalf("input %q: batch %d differs:\n%v\n%v", data, i, fast.batches[i], slow.batches[i])
			}
		}
		if a, b := showBlockRejects(fast.rejects), showBlockRejects(slow.rejects); a != b {
			t.Fatalf("input %q: rejects differ:\n%s\ngeneral\n%s", data, a, b)
		}
		checkBlockResult(t, data, fast)
	})
}

func showBlockRejects(rs []csvReject) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%d@%d %q: %v\n", r.rec, r.line, r.text, r.err)
	}
	return b.String()
}

// checkBlockResult checks that every record of a block was delivered or
// rejected, and that each rejected one is where its line says.
func checkBlockResult(t *testing.T, data []byte, res blockResult) {
	t.Helper()
	rows := 0
	for _, b := range res.batches {
		rows += int(b.NumRows())
	}
	if rows+len(res.rejects) != res.recs {
		t.Fatalf("input %q: %d rows + %d rejects, %d records", data, rows, len(res.rejects), res.recs)
	}
	if n := bytes.Count(data, []byte{'\n'}); res.lines != n {
		t.Fatalf("input %q: %d lines counted, %d line breaks", data, res.lines, n)
	}
	prev := -1
	for _, r := range res.rejects {
		if r.rec <= prev || r.rec >= res.recs {
			t.Fatalf("input %q: reject of record %d after %d (of %d)", data, r.rec, prev, res.recs)
		}
		prev = r.rec
		at := 0
		for range r.line {
			at += bytes.IndexByte(data[at:], '\n') + 1
		}
		if !bytes.HasPrefix(data[at:], r.text) {
			t.Fatalf("input %q: rejected %q is not at line %d (%q)", data, r.text, r.line+1, data[at:])
		}
	}
}

// FuzzCSVRejects: a file read in small blocks by parallel workers
// delivers and rejects exactly what one block does; every record is
// either delivered or rejected (as many as encoding/csv counts when it
// accepts the input).
func FuzzCSVRejects(f *testing.F) {
	for _, s := range []string{
		"1,a\n2\n3,c\n", "x,1\n\"q\"\"\",2\n", "1,\"a\nb\"\n2,b\"c\n3,d\"\n4,e\n", "#c\n5,\"unterminated\n6,f\n",
		"1,a\r\n\r\n2,b,c\r\n", "\"1\"x,a\n2,b", "1,2,3,4\n\n\n5,6\n7,8",
	} {
		f.Add([]byte(s), uint8(8))
		f.Add([]byte(s), uint8(64))
	}
	dir := f.TempDir()
	fields := []Field{{Name: "n", Type: typeInt64}, {Name: "s", Type: typeString}}
	schema, err := arrowSchema(fields)
	if err != nil {
		f.Fatal(err)
	}
	opt := csvOptions{delim: ',', quote: '"', comment: '#', nulls: newNullSet([]string{""})}
	f.Fuzz(func(t *testing.T, data []byte, block uint8) {
		if len(data) > 4096 {
			return
		}
		path := filepath.Join(dir, "fuzz.csv")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := newBlockDecoder(opt, fields, schema, []int{0, 1}, 3)
		if err != nil {
			t.Fatal(err)
		}
		whole := d.decode(data)
		checkBlockResult(t, data, whole)
		var want strings.Builder
		rows := 0
		for _, b := range whole.batches {
			rows += int(b.NumRows())
		}
		for _, r := range whole.rejects {
			fmt.Fprintf(&want, "%d #%d %q: %v\n", r.line+1, r.rec+1, r.text, r.err)
		}
		plan := &csvReadPlan{opt: opt, fields: fields, schema: schema, rows: 3, blockSize: 1 + int(block)%128, workers: 2, progress: func(int64) {}}
		var got strings.Builder
		read := 0
		err = readCSV(context.Background(), path, plan, true, func(_ context.Context, recs []pipeline.SourceReject) error {
			for _, r := range recs {
				fmt.Fprintf(&got, "%d #%d %q: %v\n", r.Line, r.Index, r.Record, r.Err)
			}
			return nil
		}, func(_ context.Context, b arrow.RecordBatch) error {
			read += int(b.NumRows())
			return nil
		})
		if err != nil {
			t.Fatalf("input %q: %v", data, err)
		}
		if read != rows || got.String() != want.String() {
			t.Fatalf("input %q in blocks of %d: %d rows, rejects\n%s\nin one block %d rows\n%s", data, plan.blockSize, read, got.String(), rows, want.String())
		}
		r := csv.NewReader(bytes.NewReader(data))
		r.FieldsPerRecord = -1
		r.Comment = '#'
		n := 0
		for {
			_, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				return // not valid CSV for the reference
			}
			n++
		}
		if whole.recs != n {
			t.Fatalf("input %q: %d records (%d delivered), encoding/csv reads %d", data, whole.recs, rows, n)
		}
	})
}

// FuzzNDJSONRejects: every record of an NDJSON input is either delivered
// or rejected, each rejected one at a line that holds its text, and
// inputs of one object per line are read a record per non-blank line.
func FuzzNDJSONRejects(f *testing.F) {
	for _, s := range []string{
		"{\"a\": 1}\n{oops}\n{\"a\": \"x\"}\n", "{\"a\":\n2}\n{\"a\": 3\n{\"a\": 4}\n", "[1]\n\"s\"\n{} {}\n", "{\"a\": 1} x\n\n\n",
		"{\"a\": 1.5}\r\n{\"b\": null}", "{\n", "}\n{\"a\": 9}",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	fields := []Field{{Name: "a", Type: typeInt64}, {Name: "b", Type: typeString}}
	schema, err := arrowSchema(fields)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return
		}
		path := filepath.Join(dir, "fuzz.ndjson")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		var rejects []pipeline.SourceReject
		rows := 0
		err := readJSON(context.Background(), path, false, fields, schema, 2, &countingReader{add: func(int64) {}}, func(_ context.Context, recs []pipeline.SourceReject) error {
			rejects = append(rejects, recs...)
			return nil
		}, func(_ context.Context, b arrow.RecordBatch) error {
			rows += int(b.NumRows())
			return nil
		})
		if err != nil {
			t.Fatalf("input %q: %v", data, err)
		}
		lines := bytes.Split(data, []byte{'\n'})
		records := int64(0)
		for _, r := range rejects {
			if r.Line < 1 || int(r.Line) > len(lines) {
				t.Fatalf("input %q: rejected %q at line %d of %d", data, r.Record, r.Line, len(lines))
			}
			if first := bytes.TrimSpace(r.Record); len(first) > 0 {
				if k := bytes.IndexByte(first, '\n'); k >= 0 {
					first = first[:k]
				}
				if !bytes.Contains(lines[r.Line-1], bytes.TrimSpace(first)) {
					t.Fatalf("input %q: rejected %q is not on line %d (%q)", data, r.Record, r.Line, lines[r.Line-1])
				}
			}
			if r.Index <= records {
				t.Fatalf("input %q: record numbers out of order at %d", data, r.Index)
			}
			records = r.Index
		}
		// One value per line: every non-blank line is a record.
		simple, nonBlank := true, 0
		for _, l := range lines {
			l = bytes.TrimSpace(l)
			if len(l) == 0 {
				continue
			}
			nonBlank++
			if !json.Valid(l) {
				simple = false
			}
		}
		if simple && rows+len(rejects) != nonBlank {
			t.Fatalf("input %q: %d rows + %d rejects, %d lines with a value", data, rows, len(rejects), nonBlank)
		}
	})
}
