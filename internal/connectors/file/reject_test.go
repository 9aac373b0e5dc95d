package file

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/kilnai/kiln/internal/pipeline"
)

// readRejecting reads src with a RejectFunc that collects what it gets
// (and returns stop, when not nil).
func readRejecting(t *testing.T, src *source, stop error) ([][]string, []pipeline.SourceReject, error) {
	t.Helper()
	var rejects []pipeline.SourceReject
	src.SetReject(func(_ context.Context, recs []pipeline.SourceReject, ack pipeline.AckFunc) error {
		if ack != nil {
			t.Error("the file source passed an ack")
		}
		rejects = append(rejects, recs...)
		return stop
	})
	_, rows, err := collect(src)
	return rows, rejects, err
}

// showRejects renders rejects as "LOCATION #INDEX RECORD | ERROR", one per
// line, with the directory cut from the paths.
func showRejects(dir string, recs []pipeline.SourceReject) string {
	var b strings.Builder
	for _, r := range recs {
		loc := strings.TrimPrefix(r.Location(), dir+string(filepath.Separator))
		fmt.Fprintf(&b, "%s #%d %s | %v\n", loc, r.Index, r.Record, r.Err)
	}
	return b.String()
}

func TestSourceRejects(t *testing.T) {
	csvSchema := []Field{{Name: "id", Type: typeInt64}, {Name: "at", Type: typeTimestamp}, {Name: "day", Type: typeDate}, {Name: "ok", Type: typeBool}}
	jsonSchema := []Field{{Name: "id", Type: typeInt64}, {Name: "v", Type: typeString}}
	const at = "2024-01-02T03:04:05Z"
	cases := []struct {
		name, file, body string
		schema           []Field // nil: inferred
		ids              string  // the ids delivered
		rejects          string  // showRejects
	}{
		{"csv: too few fields", "a.csv", "id,at,day,ok\n1," + at + ",2024-01-02,true\n2," + at + ",2024-01-02\n3," + at + ",2024-01-02,false\n", csvSchema,
			"1 3", "a.csv:3 #2 2," + at + ",2024-01-02 | 3 fields, want 4\n"},
		{"csv: too many fields", "b.csv", "id,at,day,ok\n1," + at + ",2024-01-02,true,x\n2," + at + ",2024-01-02,t\n", csvSchema,
			"2", "b.csv:2 #1 1," + at + ",2024-01-02,true,x | 5 fields, want 4\n"},
		{"csv: not an int64", "c.csv", "id,at,day,ok\nabc," + at + ",2024-01-02,true\n2," + at + ",2024-01-02,t\n", csvSchema,
			"2", `c.csv:2 #1 abc,` + at + `,2024-01-02,true | column "id": "abc" is not an int64` + "\n"},
		{"csv: malformed timestamp after good columns", "d.csv", "id,at,day,ok\n1,2024-01-02T25:00:00Z,2024-01-02,true\n2," + at + ",2024-01-02,t\n", csvSchema,
			"2", `d.csv:2 #1 1,2024-01-02T25:00:00Z,2024-01-02,true | column "at": "2024-01-02T25:00:00Z" is not a timestamp in layout "2006-01-02T15:04:05.999999999Z07:00"` + "\n"},
		{"csv: malformed date, last column bad", "e.csv", "id,at,day,ok\n1," + at + ",2024-02-30,yes\n\n# x\n2," + at + ",2024-01-02,t\n3," + at + ",2024-01-02,maybe\n", csvSchema,
			"2", `e.csv:2 #1 1,` + at + `,2024-02-30,yes | column "day": "2024-02-30" is not a date in layout "2006-01-02"` + "\n" +
				`e.csv:6 #3 3,` + at + `,2024-01-02,maybe | column "ok": "maybe" is not a bool` + "\n"},
		{"csv: quoted record with a line break, then a bad one", "f.csv", "id,at,day,ok\n\"1\"," + at + ",2024-01-02,\"t\nx\"\n\"2\",\"" + at + "\",2024-01-02,t\n", csvSchema,
			"2", `f.csv:2 #1 "1",` + at + `,2024-01-02,"t` + "\n" + `x" | column "ok": "t\nx" is not a bool` + "\n"},
		{"csv: stray quotes make one bad record", "g.csv", "id,at,day,ok\n1," + at + ",2024-01-02,t\n2,x\"y,2024-01-02,t\n3,z\"," + at + ",t\n4," + at + ",2024-01-02,f\n", csvSchema,
			"1 4", "g.csv:3 #2 2,x\"y,2024-01-02,t\n3,z\"," + at + ",t | " + errBareQuote.Error() + "\n"},
		{"csv: unterminated quote at the end", "h.csv", "id,at,day,ok\n1," + at + ",2024-01-02,t\n2," + at + ",\"2024-01-02,t\n", csvSchema,
			"1", "h.csv:3 #2 2," + at + ",\"2024-01-02,t | " + errUnterminated.Error() + "\n"},
		{"csv: inferred schema skips the bad record", "i.csv", "n,s\n1,a\n2\n3,c\n", nil,
			"1 3", "i.csv:3 #2 2 | 1 fields, want 2\n"},
		{"ndjson: not JSON, truncated, not an object, wrong type", "j.ndjson",
			"{\"id\": 1, \"v\": \"a\"}\n{oops}\n{\"id\": 3, \"v\":\n{\"id\": 4}\n[5]\n\n{\"id\": \"six\"}\n{\"id\": 7} nope\n{\n  \"id\": 8,\n  \"v\": \"pretty\"\n}\n", jsonSchema,
			"1 4 7 8", "j.ndjson:2 #2 {oops} | invalid character 'o' looking for beginning of object key string\n" +
				"j.ndjson:3 #3 {\"id\": 3, \"v\": | unexpected end of JSON input\n" +
				"j.ndjson:5 #5 [5] | not a JSON object\n" +
				"j.ndjson:7 #6 {\"id\": \"six\"} | key \"id\": \"six\" is not an int64\n" +
				"j.ndjson:8 #8 nope | invalid character 'o' in literal null (expecting 'u')\n"},
		{"ndjson: inferred schema, bad lines left out of the sample", "k.ndjson", "{\"id\": 1}\nnot json\n{\"id\": 2}\n", nil,
			"1 2", "k.ndjson:2 #2 not json | invalid character 'o' in literal null (expecting 'u')\n"},
		{"json: elements that are not objects or do not fit", "l.json", `[{"id": 1}, 2, {"id": "x", "v": "y"}, {"id": 4, "v": [1]}, "s"]`, jsonSchema,
			"1 4", "l.json#2 #2 2 | not a JSON object\nl.json#3 #3 {\"id\": \"x\", \"v\": \"y\"} | key \"id\": \"x\" is not an int64\nl.json#5 #5 \"s\" | not a JSON object\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := defaultSourceConfig()
			cfg.Path = writeFile(t, dir, tc.file, tc.body)
			cfg.Schema = tc.schema
			cfg.Comment = "#"
			src, err := newSource(cfg, pipeline.Env{})
			if err != nil {
				t.Fatal(err)
			}
			src.workers = 2
			rows, rejects, err := readRejecting(t, src, nil)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range rows {
				ids = append(ids, r[0])
			}
			if got := strings.Join(ids, " "); got != tc.ids {
				t.Errorf("ids %q, want %q", got, tc.ids)
			}
			if got := showRejects(dir, rejects); got != tc.rejects {
				t.Errorf("rejects\n%s\nwant\n%s", got, tc.rejects)
			}

			// Without a RejectFunc the first one fails the read, naming
			// the file and the record.
			src, _ = newSource(cfg, pipeline.Env{})
			_, _, err = collect(src)
			first := rejects[0]
			want := fmt.Sprintf("%s: record %d: ", first.Input, first.Index)
			if first.Line > 0 {
				want = fmt.Sprintf("%s: line %d (record %d): ", first.Input, first.Line, first.Index)
			}
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("without a RejectFunc: %v, want %q...", err, want)
			}

			// A RejectFunc that stops the run ends the read with its error.
			stop := errors.New("policy stop")
			src, _ = newSource(cfg, pipeline.Env{})
			if _, _, err := readRejecting(t, src, stop); !errors.Is(err, stop) {
				t.Errorf("stopping RejectFunc: %v", err)
			}
		})
	}
	t.Run("json syntax error ends the read", func(t *testing.T) {
		cfg := defaultSourceConfig()
		cfg.Path = writeFile(t, t.TempDir(), "m.json", `[{"id": 1}, {"id": 2,,}]`)
		cfg.Schema = jsonSchema
		src, _ := newSource(cfg, pipeline.Env{})
		if _, _, err := readRejecting(t, src, nil); err == nil || !strings.Contains(err.Error(), "record 2") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestCSVRejectsAcrossBlocks: in a file cut into many small blocks decoded
// in parallel, every bad record is rejected with its exact line and
// number, and every good one delivered, in order.
func TestCSVRejectsAcrossBlocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "many.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "# generated\nid,name")
	line, good, want := 2, 0, ""
	for i := range 5000 {
		line++
		switch {
		case i%97 == 5:
			fmt.Fprintf(w, "x%d,bad\n", i)
			want += fmt.Sprintf("%d #%d x%d,bad | column \"id\": \"x%d\" is not an int64\n", line, i+1, i, i)
		case i%89 == 7:
			fmt.Fprintf(w, "%d,\"two\nlines\",extra\n", i)
			want += fmt.Sprintf("%d #%d %d,\"two\nlines\",extra | 3 fields, want 2\n", line, i+1, i)
			line++
		case i%83 == 3:
			fmt.Fprintf(w, "\n%d,\"q\"\"uoted\"\n", i) // a blank line first
			line++
			good++
		default:
			fmt.Fprintf(w, "%d,n%d\n", i, i)
			good++
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	fields := []Field{{Name: "id", Type: typeInt64}, {Name: "name", Type: typeString}}
	schema, _ := arrowSchema(fields)
	opt := csvOptions{delim: ',', quote: '"', comment: '#', header: true, nulls: newNullSet(nil)}
	for _, block := range []int{64, 1000, 1 << 20} {
		t.Run(fmt.Sprint("block ", block), func(t *testing.T) {
			plan := &csvReadPlan{opt: opt, fields: fields, schema: schema, rows: 100, blockSize: block, workers: 3, progress: func(int64) {}}
			var got strings.Builder
			rows, last := 0, int64(-1)
			err := readCSV(context.Background(), path, plan, true, func(_ context.Context, recs []pipeline.SourceReject) error {
				for _, r := range recs {
					fmt.Fprintf(&got, "%d #%d %s | %v\n", r.Line, r.Index, r.Record, r.Err)
				}
				return nil
			}, func(_ context.Context, b arrow.RecordBatch) error {
				ids := b.Column(0)
				for i := range ids.Len() {
					var id int64
					fmt.Sscan(ids.ValueStr(i), &id)
					if id <= last {
						t.Fatalf("id %d after %d: out of order", id, last)
					}
					last = id
				}
				rows += int(b.NumRows())
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if rows != good {
				t.Errorf("%d rows delivered, want %d", rows, good)
			}
			if got.String() != want {
				t.Errorf("rejects differ:\n%s\nwant\n%s", got.String(), want)
			}
		})
	}
}

// TestInferredSchemaRejects: a value outside the type inferred from the
// sample is a rejected record, not the end of the read.
func TestInferredSchemaRejects(t *testing.T) {
	var b strings.Builder
	b.WriteString("id,v\n")
	const bad = 3000 // past the first infer_rows, before the first sample window
	for i := range 100_000 {
		if i == bad {
			fmt.Fprintf(&b, "%d,oops\n", i)
			continue
		}
		fmt.Fprintf(&b, "%d,%d\n", i, i*2)
	}
	dir := t.TempDir()
	cfg := defaultSourceConfig()
	cfg.Path = writeFile(t, dir, "late.csv", b.String())
	cfg.InferRows = 100
	src, err := newSource(cfg, pipeline.Env{})
	if err != nil {
		t.Fatal(err)
	}
	rows, rejects, err := readRejecting(t, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("late.csv:%d #%d %d,oops | column \"v\": \"oops\" is not an int64\n", bad+2, bad+1, bad)
	if got := showRejects(dir, rejects); len(rows) != 99_999 || got != want {
		t.Fatalf("%d rows, rejects %q, want 99999 rows and %q", len(rows), got, want)
	}
}
