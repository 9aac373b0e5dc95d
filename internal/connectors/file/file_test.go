package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/kilnai/kiln/internal/pipeline"
)

// readAll reads a source into rows of strings (ValueStr, "<nil>" for null)
// and returns its schema.
func readAll(t *testing.T, cfg *SourceConfig) (*arrow.Schema, [][]string) {
	t.Helper()
	src, err := newSource(cfg, pipeline.Env{})
	if err != nil {
		t.Fatal(err)
	}
	sc, rows, err := collect(src)
	if err != nil {
		t.Fatal(err)
	}
	return sc, rows
}

func collect(src pipeline.Source) (*arrow.Schema, [][]string, error) {
	var sc *arrow.Schema
	var rows [][]string
	err := src.Read(context.Background(), func(_ context.Context, b pipeline.Batch, ack pipeline.AckFunc) error {
		sc = b.Schema()
		for r := range int(b.NumRows()) {
			row := make([]string, b.NumCols())
			for c := range int(b.NumCols()) {
				col := b.Column(c)
				if col.IsNull(r) {
					row[c] = "<nil>"
				} else {
					row[c] = col.ValueStr(r)
				}
			}
			rows = append(rows, row)
		}
		return nil
	})
	return sc, rows, err
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func types(sc *arrow.Schema) string {
	var out []string
	for _, f := range sc.Fields() {
		out = append(out, f.Name+":"+f.Type.String())
	}
	return strings.Join(out, ",")
}

func TestCSVSource(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, body string
		cfg        func(*SourceConfig)
		types      string
		rows       string
	}{
		{
			name:  "inferred types and nulls",
			body:  "id,score,name,ok,day,at\n1,1.5,ann,true,2024-01-02,2024-01-02T03:04:05Z\n2,,\"b,\"\"o\"\"b\",false,,\n3,2,NA,t,2024-02-03,2024-01-02T03:04:06.5Z\n",
			types: "id:int64,score:float64,name:utf8,ok:bool,day:date32,at:timestamp[us, tz=UTC]",
			rows:  `[["1","1.5","ann","true","2024-01-02","2024-01-02T03:04:05Z"],["2","<nil>","b,\"o\"b","false","<nil>","<nil>"],["3","2","<nil>","true","2024-02-03","2024-01-02T03:04:06.5Z"]]`,
		},
		{
			name:  "crlf quoted newlines unicode",
			body:  "a,b\r\n\"line1\r\nline2\",héllo 世界\r\n\r\n# not a comment by default,x\r\n",
			types: "a:utf8,b:utf8",
			rows:  `[["line1\nline2","héllo 世界"],["# not a comment by default","x"]]`,
		},
		{
			name:  "no header, delimiter, comment",
			body:  "# comment\n1;x\n2;y\n",
			cfg:   func(c *SourceConfig) { c.Header = false; c.Delimiter = ";"; c.Comment = "#" },
			types: "col_1:int64,col_2:utf8",
			rows:  `[["1","x"],["2","y"]]`,
		},
		{
			name: "explicit schema by header name, layout",
			body: "skip,when,n\nq,2024-03-04 05:06,7\n",
			cfg: func(c *SourceConfig) {
				c.Schema = []Field{{Name: "n", Type: "float64"}, {Name: "when", Type: "timestamp", Layout: "2006-01-02 15:04"}}
			},
			types: "n:float64,when:timestamp[us, tz=UTC]",
			rows:  `[["7","2024-03-04T05:06:00Z"]]`,
		},
		{
			name:  "last line without newline",
			body:  "a\n1\n2",
			types: "a:int64",
			rows:  `[["1"],["2"]]`,
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaultSourceConfig()
			cfg.Path = writeFile(t, dir, fmt.Sprintf("c%d.csv", i), tc.body)
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			sc, rows := readAll(t, cfg)
			if got := types(sc); got != tc.types {
				t.Errorf("types %s, want %s", got, tc.types)
			}
			if b := show(rows); b != tc.rows {
				t.Errorf("rows %s\nwant %s", b, tc.rows)
			}
		})
	}
}

func TestCSVErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, body, want string }{
		{"field count", "a,b\n1,2\n3\n", "record 2"},
		{"bare quote", "a,b\n1,x\"y\n", `bare "`},
		{"unterminated", "a,b\n1,\"xy\n", "not terminated"},
		{"bad value for inferred type", "a\n1\n2\n", ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaultSourceConfig()
			cfg.Path = writeFile(t, dir, fmt.Sprintf("e%d.csv", i), tc.body)
			src, err := newSource(cfg, pipeline.Env{})
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = collect(src)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
	t.Run("value outside the inferred type", func(t *testing.T) {
		cfg := defaultSourceConfig()
		cfg.Schema = []Field{{Name: "a", Type: "int64"}}
		cfg.Path = writeFile(t, dir, "v.csv", "a\n1\nx\n")
		src, _ := newSource(cfg, pipeline.Env{})
		_, _, err := collect(src)
		if err == nil || !strings.Contains(err.Error(), `"x" is not an int64`) || !strings.Contains(err.Error(), "record 2") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		cfg := defaultSourceConfig()
		cfg.Path = filepath.Join(dir, "nope-*.csv")
		src, _ := newSource(cfg, pipeline.Env{})
		if _, _, err := collect(src); err == nil || !strings.Contains(err.Error(), "no such file") {
			t.Fatalf("error %v", err)
		}
	})
}

// TestInferenceSample: the first rows are ints, rows near the end floats:
// inference looks beyond the first rows.
func TestInferenceSample(t *testing.T) {
	var b strings.Builder
	b.WriteString("id,v\n")
	for i := range 200_000 {
		if i > 190_000 {
			fmt.Fprintf(&b, "%d,%d.25\n", i, i)
		} else {
			fmt.Fprintf(&b, "%d,%d\n", i, i)
		}
	}
	cfg := defaultSourceConfig()
	cfg.Path = writeFile(t, t.TempDir(), "late.csv", b.String())
	cfg.InferRows = 100
	sc, rows := readAll(t, cfg)
	if got := types(sc); got != "id:int64,v:float64" {
		t.Fatalf("types %s", got)
	}
	if len(rows) != 200_000 || rows[199_999][1] != "199999.25" || rows[5][1] != "5" {
		t.Fatalf("%d rows, last %v", len(rows), rows[len(rows)-1])
	}
}

func TestGlobAndBlocks(t *testing.T) {
	dir := t.TempDir()
	var want int
	for f := range 3 {
		var b strings.Builder
		b.WriteString("k,text\n")
		for i := range 30_000 {
			fmt.Fprintf(&b, "%d,\"quoted, %d\"\"\n\"\n", f*100_000+i, i)
			want++
		}
		writeFile(t, dir, fmt.Sprintf("part-%d.csv", f), b.String())
	}
	cfg := defaultSourceConfig()
	cfg.Path = filepath.Join(dir, "part-*.csv")
	cfg.BatchSize = 1000 // many small blocks: exercises the block cutting
	sc, rows := readAll(t, cfg)
	if got := types(sc); got != "k:int64,text:utf8" {
		t.Fatalf("types %s", got)
	}
	if len(rows) != want {
		t.Fatalf("%d rows, want %d", len(rows), want)
	}
	for i, r := range rows {
		f, j := i/30_000, i%30_000
		if r[0] != fmt.Sprint(f*100_000+j) || r[1] != fmt.Sprintf("quoted, %d\"\n", j) {
			t.Fatalf("row %d = %q", i, r)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	in := writeFile(t, dir, "in.csv", "id,score,name,ok,day,at\n1,1.5,\"a,\"\"b\"\"\nc\",true,2024-01-02,2024-01-02T03:04:05.123456Z\n2,,ünï,false,,\n3,-2e-7,,t,1970-01-01,1969-12-31T23:59:59Z\n")
	cfg := defaultSourceConfig()
	cfg.Path = in
	wantSchema, want := readAll(t, cfg)
	for _, format := range []string{"csv", "json", "ndjson", "parquet"} {
		t.Run(format, func(t *testing.T) {
			out := filepath.Join(dir, "out", "rt."+format)
			copySource(t, in, &SinkConfig{Path: out}, pipeline.Env{})
			rc := defaultSourceConfig()
			rc.Path = out
			sc, got := readAll(t, rc)
			if types(sc) != types(wantSchema) {
				t.Errorf("types %s, want %s", types(sc), types(wantSchema))
			}
			if a, b := show(got), show(want); a != b {
				t.Errorf("rows %s\nwant %s", a, b)
			}
		})
	}
}

// copySource reads a CSV file into a sink and commits it.
func copySource(t *testing.T, in string, sc *SinkConfig, env pipeline.Env) {
	t.Helper()
	def := defaultSinkConfig()
	if sc.Compression == "" {
		sc.Compression = def.Compression
	}
	if sc.RowGroupRows == 0 {
		sc.RowGroupRows = def.RowGroupRows
	}
	if sc.Delimiter == "" {
		sc.Delimiter = def.Delimiter
	}
	sc.Header = true
	snk, err := newSink(sc, env)
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultSourceConfig()
	cfg.Path = in
	src, err := newSource(cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	err = src.Read(context.Background(), func(ctx context.Context, b pipeline.Batch, _ pipeline.AckFunc) error {
		_, err := snk.Write(ctx, b)
		return err
	})
	if cerr := snk.Close(context.Background(), err); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestAtomicSink(t *testing.T) {
	dir := t.TempDir()
	in := writeFile(t, dir, "in.csv", "a\n1\n2\n")
	out := filepath.Join(dir, "res", "out.parquet")
	for _, fail := range []bool{true, false} {
		cfg := defaultSinkConfig()
		cfg.Path = out
		snk, err := newSink(cfg, pipeline.Env{})
		if err != nil {
			t.Fatal(err)
		}
		scfg := defaultSourceConfig()
		scfg.Path = in
		src, _ := newSource(scfg, pipeline.Env{})
		if err := src.Read(context.Background(), func(ctx context.Context, b pipeline.Batch, _ pipeline.AckFunc) error {
			_, err := snk.Write(ctx, b)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		entries, _ := os.ReadDir(filepath.Dir(out))
		if len(entries) != 1 || !strings.HasPrefix(entries[0].Name(), ".out.parquet.tmp-") {
			t.Fatalf("while writing: %v", entries)
		}
		var runErr error
		if fail {
			runErr = errors.New("boom")
		}
		if err := snk.Close(context.Background(), runErr); err != nil {
			t.Fatal(err)
		}
		entries, _ = os.ReadDir(filepath.Dir(out))
		if fail && len(entries) != 0 {
			t.Fatalf("after a failed run: %v", entries)
		}
		if !fail && (len(entries) != 1 || entries[0].Name() != "out.parquet") {
			t.Fatalf("after success: %v", entries)
		}
	}
}

// show renders rows as JSON without HTML escaping.
func show(rows [][]string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(rows)
	return strings.TrimSpace(b.String())
}

func TestFastPathsAgree(t *testing.T) {
	for _, s := range []string{"0", "-0", "1.5", "123456789012345", "0.1", "-2.675", "+3.14159", "999999999999999", "1.000000000000001", "1e5", ".5", "5.", "-.25", "1.2.3", "", "-", "12345678901234567"} {
		want, werr := strconv.ParseFloat(s, 64)
		got, ok := parseFloat([]byte(s))
		if ok != (werr == nil) || (ok && math.Float64bits(got) != math.Float64bits(want)) {
			t.Errorf("parseFloat(%q) = %v %v, strconv %v %v", s, got, ok, want, werr)
		}
	}
	for _, s := range []string{"1970-01-01", "2024-02-29", "2023-02-29", "1900-03-01", "0001-01-01", "9999-12-31", "1969-12-31", "2000-13-01", "2000-1-01"} {
		tm, terr := time.Parse(layoutDate, s)
		d, ok := fastDate([]byte(s))
		if ok != (terr == nil) || (ok && int64(d) != tm.Unix()/86400 && tm.Unix() >= 0) || (ok && tm.Unix() < 0 && int64(d) != (tm.Unix()-86399)/86400) {
			t.Errorf("fastDate(%q) = %d %v, time %v %v", s, d, ok, tm, terr)
		}
	}
}
