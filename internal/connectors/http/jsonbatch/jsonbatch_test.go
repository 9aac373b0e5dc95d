package jsonbatch

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
)

func TestInferAndBuild(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		schema string
		rows   []string
	}{
		{
			name:   "types and order",
			in:     `{"b": true, "i": 1, "f": 1.5, "s": "x", "t": "2026-01-02T03:04:05.5Z", "d": "2026-02-28", "o": {"k": [1]}}`,
			schema: "b:bool i:int64 f:float64 s:utf8 t:timestamp[us, tz=UTC] d:date32 o:utf8",
			rows:   []string{`{"b":true,"i":1,"f":1.5,"s":"x","t":"2026-01-02T03:04:05.5Z","d":"2026-02-28","o":"{\"k\": [1]}"}`},
		},
		{
			name:   "widening",
			in:     "{\"a\": 1, \"b\": 1, \"c\": null}\n\n{\"a\": 2.5, \"b\": \"x\", \"d\": false}\n",
			schema: "a:float64 b:utf8 c:utf8 d:bool",
			rows:   []string{`{"a":1,"b":"1","c":null,"d":null}`, `{"a":2.5,"b":"x","c":null,"d":false}`},
		},
		{
			name:   "huge number kept as text",
			in:     `{"n": 1e400}`,
			schema: "n:utf8",
			rows:   []string{`{"n":"1e400"}`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			order := &KeyOrder{}
			recs, err := ParseNDJSON([]byte(tc.in), order)
			if err != nil {
				t.Fatal(err)
			}
			schema := Infer(recs, order.Keys)
			var got []string
			for _, f := range schema.Fields() {
				got = append(got, f.Name+":"+f.Type.String())
			}
			if strings.Join(got, " ") != tc.schema {
				t.Errorf("schema %q, want %q", strings.Join(got, " "), tc.schema)
			}
			b, err := Build(nil, schema, recs, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Release()
			for r, want := range tc.rows {
				if got := string(AppendRow(nil, b, r)); got != want {
					t.Errorf("row %d = %s, want %s", r, got, want)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{`[1, 2]`, "record 0: want a JSON object, got a number"},
		{`[{"a": 1}, "x"]`, "record 1: want a JSON object, got a string"},
		{`{"a": 1}`, "want a JSON array"},
		{`[{"a": }]`, "invalid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			_, err := ParseArray([]byte(tc.in), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := ParseObject([]byte(`{"a":1} {"b":2}`), nil); err == nil {
		t.Error("trailing data accepted")
	}
}

func TestSchemaErrors(t *testing.T) {
	tests := []struct {
		fields []Field
		want   string
	}{
		{nil, "no fields"},
		{[]Field{{Name: "a", Type: "int64"}, {Name: "a", Type: "bool"}}, "twice"},
		{[]Field{{Name: "", Type: "int64"}}, "no name"},
		{[]Field{{Name: "a", Type: "int"}}, `unknown type "int"`},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if _, err := Schema(tc.fields); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	doc := []byte(`{"data": {"items": [1], "next": null}, "n": 3}`)
	tests := []struct {
		path string
		want string
		ok   bool
		err  bool
	}{
		{"data.items", "[1]", true, false},
		{"data.next", "null", true, false},
		{"data.missing", "", false, false},
		{"n.x", "", false, true},
		{"", string(doc), true, false},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			v, ok, err := Lookup(doc, tc.path)
			if string(v) != tc.want || ok != tc.ok || (err != nil) != tc.err {
				t.Fatalf("got %s %v %v", v, ok, err)
			}
		})
	}
}

// FuzzRoundTrip: whatever NDJSON parses builds with its inferred schema,
// and the rows encoded back parse and build to the same batch.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte(`{"a": 1, "b": "x", "c": [1, {"d": null}], "t": "2026-01-02T03:04:05Z"}` + "\n" + `{"a": 2.5e3, "b": true}`))
	f.Add([]byte(`{"\u00e9": "\ud83d\ude00", "n": -0, "m": 1e400}`))
	f.Add([]byte(`{"a": 9223372036854775807}` + "\n" + `{"a": -9223372036854775808}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		order := &KeyOrder{}
		recs, err := ParseNDJSON(data, order)
		if err != nil || len(recs) == 0 {
			return
		}
		schema := Infer(recs, order.Keys)
		b, err := Build(nil, schema, recs, 0)
		if err != nil {
			t.Fatalf("inferred schema does not fit its own sample: %v", err)
		}
		defer b.Release()
		var again []Record
		for r := range int(b.NumRows()) {
			rec, err := ParseObject(AppendRow(nil, b, r), nil)
			if err != nil {
				t.Fatalf("row %d encodes to invalid JSON: %v", r, err)
			}
			again = append(again, rec)
		}
		b2, err := Build(nil, schema, again, 0)
		if err != nil {
			t.Fatalf("re-encoded rows do not fit the schema: %v", err)
		}
		defer b2.Release()
		if !array.RecordEqual(b, b2) {
			t.Fatalf("round trip changed the batch:\n%v\n%v", b, b2)
		}
	})
}

// FuzzAppendString: the fast string encoder agrees with encoding/json.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"plain", `q"uote`, "back\\slash", "<html>&", "tab\t", "é\u2028", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	})
}
