package jsonbatch

import (
	"bytes"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
)

func TestBuilderRefusesWholeRecords(t *testing.T) {
	schema, err := Schema([]Field{{Name: "id", Type: "int64"}, {Name: "at", Type: "timestamp"}, {Name: "ok", Type: "bool"}, {Name: "d", Type: "date"}, {Name: "x", Type: "float64"}, {Name: "s", Type: "string"}})
	if err != nil {
		t.Fatal(err)
	}
	parse := func(s string) Record {
		t.Helper()
		r, err := ParseObject([]byte(s), nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	b := NewBuilder(nil, schema, 4)
	defer b.Release()
	steps := []struct {
		recs []string
		want string // error, "" when appended
	}{
		{[]string{`{"id": 1, "at": "2024-01-02T03:04:05Z", "ok": true, "d": "2024-01-02", "x": 1.5, "s": "a"}`}, ""},
		{[]string{`{"id": 2, "at": "2024-01-02T03:04:05Z", "ok": "yes"}`}, `column "ok": "yes" is not a boolean`},
		{[]string{`{"id": 3, "s": {"n": [1]}}`, `{"id": 4.5}`}, `record 1, column "id": 4.5 is not an integer`},
		{[]string{`{"id": 5, "d": "02/01/2024"}`}, `column "d": "02/01/2024" is not a YYYY-MM-DD date`},
		{[]string{`{"id": 6, "x": "1"}`}, `column "x": "1" is not a number`},
		{[]string{`{"id": 7, "at": 1}`}, `column "at": 1 is not an RFC 3339 timestamp`},
		{[]string{`{"id": 8e0, "s": 9}`, `{"id": 9, "s": false}`}, ""},
	}
	var kept []Record
	for _, st := range steps {
		var recs []Record
		for _, s := range st.recs {
			recs = append(recs, parse(s))
		}
		err := b.AppendAll(recs)
		switch {
		case st.want == "" && err != nil:
			t.Fatalf("%v: %v", st.recs, err)
		case st.want != "" && (err == nil || err.Error() != st.want):
			t.Fatalf("%v: err %v, want %q", st.recs, err, st.want)
		case st.want == "":
			kept = append(kept, recs...)
		}
	}
	got := b.NewBatch()
	defer got.Release()
	want, err := Build(nil, schema, kept, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Release()
	if got.NumRows() != 3 || !array.RecordEqual(got, want) {
		t.Fatalf("builder made\n%v\nwant\n%v", got, want)
	}
}

// FuzzBuilderRejects: records of any NDJSON, appended one at a time to a
// fixed schema, are each appended or refused whole: the batch holds
// exactly the appended ones (the same as building them alone).
func FuzzBuilderRejects(f *testing.F) {
	f.Add([]byte("{\"id\": 1, \"t\": \"2024-01-02T03:04:05Z\"}\n{\"id\": \"x\"}\n{\"id\": 2, \"f\": \"no\"}\n{\"b\": 1}"))
	f.Add([]byte("{\"id\": 1.0, \"f\": 2, \"s\": [1]}\n{\"d\": \"2024-02-30\"}\n{\"b\": true, \"s\": null}"))
	schema, err := Schema([]Field{{Name: "id", Type: "int64"}, {Name: "f", Type: "float64"}, {Name: "b", Type: "bool"}, {Name: "t", Type: "timestamp"}, {Name: "d", Type: "date"}, {Name: "s", Type: "string"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b := NewBuilder(nil, schema, 0)
		defer b.Release()
		var kept []Record
		lines, refused := 0, 0
		for _, l := range bytes.Split(data, []byte("\n")) {
			r, err := ParseObject(l, nil)
			if err != nil {
				continue
			}
			lines++
			if err := b.Append(r); err != nil {
				if !strings.HasPrefix(err.Error(), "column ") {
					t.Fatalf("%s: error %q does not name the column", l, err)
				}
				refused++
				continue
			}
			kept = append(kept, r)
		}
		got := b.NewBatch()
		defer got.Release()
		if int(got.NumRows())+refused != lines {
			t.Fatalf("%d rows + %d refused, %d records", got.NumRows(), refused, lines)
		}
		want, err := Build(nil, schema, kept, 0)
		if err != nil {
			t.Fatalf("appended records do not build: %v", err)
		}
		defer want.Release()
		if !array.RecordEqual(got, want) {
			t.Fatalf("builder made\n%v\nwant\n%v", got, want)
		}
	})
}
