package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/internal/pipeline"
)

func TestFingerprint(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "a.csv", "x\n1\n")
	cfg := defaultSourceConfig()
	cfg.Path = filepath.Join(dir, "*.csv")
	src, err := newSource(cfg, pipeline.Env{})
	if err != nil {
		t.Fatal(err)
	}
	fp := func() string {
		t.Helper()
		f, err := src.Fingerprint(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	f1, f2 := fp(), fp()
	if f1 != f2 {
		t.Fatal("fingerprint not stable")
	}
	// Same size, same mtime, different content: the hash tells.
	st, _ := os.Stat(p)
	if err := os.WriteFile(p, []byte("x\n2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	f3 := fp()
	writeFile(t, dir, "b.csv", "x\n3\n") // a new file matches the glob
	f4 := fp()
	if err := os.Chtimes(p, st.ModTime().Add(time.Hour), st.ModTime().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	f5 := fp()
	seen := map[string]bool{}
	for _, f := range []string{f1, f3, f4, f5} {
		if seen[f] {
			t.Fatalf("fingerprints repeat: %s %s %s %s", f1, f3, f4, f5)
		}
		seen[f] = true
	}
}

func TestSplitCSVAndParquet(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("id,v\n")
	for i := range 3000 {
		fmt.Fprintf(&b, "%d,%d.5\n", i, i)
	}
	in := writeFile(t, dir, "in.csv", b.String())
	writeFile(t, dir, "in2.csv", "id,v\n9000,1\n")

	cfg := defaultSourceConfig()
	cfg.Path = filepath.Join(dir, "in*.csv")
	src, _ := newSource(cfg, pipeline.Env{})
	tasks, err := src.Split(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 2 {
		t.Fatalf("%d csv tasks, want one per file", len(tasks))
	}
	total := 0
	for _, task := range tasks {
		ts, err := src.OpenTask(context.Background(), task)
		if err != nil {
			t.Fatal(err)
		}
		sc, rows, err := collect(ts)
		if err != nil {
			t.Fatal(err)
		}
		if got := types(sc); got != "id:int64,v:float64" {
			t.Fatalf("task %s types %s (the schema is inferred once, at split)", task.ID, got)
		}
		total += len(rows)
	}
	if total != 3001 {
		t.Fatalf("%d rows over the tasks", total)
	}

	// Parquet with small row groups: tasks by row-group range.
	out := filepath.Join(dir, "p.parquet")
	copySource(t, in, &SinkConfig{Path: out, RowGroupRows: 100}, pipeline.Env{})
	pcfg := defaultSourceConfig()
	pcfg.Path = out
	psrc, err := newSource(pcfg, pipeline.Env{})
	if err != nil {
		t.Fatal(err)
	}
	ptasks, err := psrc.Split(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ptasks) != 1 {
		t.Fatalf("%d parquet tasks for 3000 rows (want one range under a million rows)", len(ptasks))
	}
	ts, err := psrc.OpenTask(context.Background(), pipeline.Task{ID: "x", Spec: []byte(`{"path":"` + out + `","row_groups":[3,4]}`)})
	if err != nil {
		t.Fatal(err)
	}
	_, rows, err := collect(ts)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 200 || rows[0][0] != "300" || rows[199][0] != "499" {
		t.Fatalf("row groups 3-4: %d rows, first %v", len(rows), rows[0])
	}
	bad, _ := psrc.OpenTask(context.Background(), pipeline.Task{ID: "x", Spec: []byte(`{"path":"` + out + `","row_groups":[99]}`)})
	if _, _, err := collect(bad); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("error %v", err)
	}
	if _, err := psrc.OpenTask(context.Background(), pipeline.Task{ID: "x", Spec: []byte(`{`)}); err == nil {
		t.Fatal("a bad task spec opened")
	}
}

func TestJSONSource(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, file, body, format, types, rows string
	}{
		{"array", "a.json", `[{"a": 1, "b": "x", "c": true}, {"a": 2.5, "d": "2024-01-02"}, {"b": null}]`, "", "a:float64,b:utf8,c:bool,d:date32",
			`[["1","x","true","<nil>"],["2.5","<nil>","<nil>","2024-01-02"],["<nil>","<nil>","<nil>","<nil>"]]`},
		{"ndjson with nested values", "b.ndjson", "{\"id\": 1, \"tags\": [\"x\"], \"o\": {\"k\": 1}}\n\n{\"id\": 2, \"at\": \"2024-01-02T03:04:05Z\"}\n", "", "id:int64,tags:utf8,o:utf8,at:timestamp[us, tz=UTC]",
			`[["1","[\"x\"]","{\"k\":1}","<nil>"],["2","<nil>","<nil>","2024-01-02T03:04:05Z"]]`},
		{"jsonl extension, unicode", "c.jsonl", "{\"s\": \"héllo \\u4e16\"}\n", "", "s:utf8", `[["héllo 世"]]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaultSourceConfig()
			cfg.Path = writeFile(t, dir, tc.file, tc.body)
			sc, rows := readAll(t, cfg)
			if got := types(sc); got != tc.types {
				t.Errorf("types %s, want %s", got, tc.types)
			}
			if got := show(rows); got != tc.rows {
				t.Errorf("rows %s\nwant %s", got, tc.rows)
			}
		})
	}
	for _, bad := range []struct{ name, file, body, want string }{
		{"array of scalars", "d.json", `[1, 2]`, "not a JSON object"},
		{"ndjson garbage", "e.ndjson", "{\"a\": 1}\n{oops}\n", "record 2"},
		{"object not array", "f.json", `{"a": 1}`, "array of objects"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			cfg := defaultSourceConfig()
			cfg.Path = writeFile(t, dir, bad.file, bad.body)
			cfg.Schema = []Field{{Name: "a", Type: "int64"}}
			src, _ := newSource(cfg, pipeline.Env{})
			if _, _, err := collect(src); err == nil || !strings.Contains(err.Error(), bad.want) {
				t.Fatalf("error %v, want %q", err, bad.want)
			}
		})
	}
}

func TestSinkPathsAndConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  SinkConfig
		env  pipeline.Env
		want string // resolved path, or an error fragment after "error:"
	}{
		{"task placeholder", SinkConfig{Path: "out/part-{task}.csv"}, pipeline.Env{RunID: "r1", Task: "0001-a/b.csv"}, "out/part-0001-a_b.csv.csv"},
		{"run placeholder", SinkConfig{Path: "out/{run}.parquet"}, pipeline.Env{RunID: "r1"}, "out/r1.parquet"},
		{"task outside a distributed run", SinkConfig{Path: "out/{task}.csv"}, pipeline.Env{RunID: "r1"}, "error:not a distributed task"},
		{"validation keeps placeholders", SinkConfig{Path: "out/{task}.csv"}, pipeline.Env{}, "out/{task}.csv"},
		{"unknown extension", SinkConfig{Path: "out/x.bin"}, pipeline.Env{}, "error:cannot tell the format"},
		{"bad compression", SinkConfig{Path: "out/x.parquet", Compression: "lz5"}, pipeline.Env{}, "error:compression"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaultSinkConfig()
			cfg.Path = tc.cfg.Path
			if tc.cfg.Compression != "" {
				cfg.Compression = tc.cfg.Compression
			}
			s, err := newSink(cfg, tc.env)
			if want, ok := strings.CutPrefix(tc.want, "error:"); ok {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("error %v, want %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.path != tc.want {
				t.Fatalf("path %s, want %s", s.path, tc.want)
			}
		})
	}
}

func TestSourceConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*SourceConfig)
		want string
	}{
		{"unknown extension", func(c *SourceConfig) { c.Path = "x.bin" }, "cannot tell the format"},
		{"bad format", func(c *SourceConfig) { c.Format = "xml" }, "want csv, json"},
		{"schema for parquet", func(c *SourceConfig) { c.Path = "x.parquet"; c.Schema = []Field{{Name: "a", Type: "int64"}} }, "carries its own"},
		{"bad type", func(c *SourceConfig) { c.Schema = []Field{{Name: "a", Type: "int"}} }, "want int64"},
		{"duplicate column", func(c *SourceConfig) { c.Schema = []Field{{Name: "a", Type: "int64"}, {Name: "a", Type: "string"}} }, "duplicate"},
		{"layout on int", func(c *SourceConfig) { c.Schema = []Field{{Name: "a", Type: "int64", Layout: "2006"}} }, "layout"},
		{"long delimiter", func(c *SourceConfig) { c.Delimiter = ";;" }, "one ASCII character"},
		{"delimiter equals quote", func(c *SourceConfig) { c.Delimiter = `"` }, "must differ"},
		{"bad glob", func(c *SourceConfig) { c.Path = "[.csv" }, "syntax error"},
		{"ok tsv", func(c *SourceConfig) { c.Path = "x.tsv" }, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := defaultSourceConfig()
			c.Path = "x.csv"
			tc.mod(c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSinkWithoutRows(t *testing.T) {
	dir := t.TempDir()
	want := map[string]string{"csv": "", "json": "[]\n", "ndjson": ""}
	for _, format := range []string{"csv", "json", "ndjson", "parquet"} {
		t.Run(format, func(t *testing.T) {
			cfg := defaultSinkConfig()
			cfg.Path = filepath.Join(dir, "empty."+format)
			s, err := newSink(cfg, pipeline.Env{})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Close(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(cfg.Path)
			if err != nil {
				t.Fatal(err)
			}
			if format == "parquet" {
				if _, err := parquetSchema(cfg.Path); err != nil {
					t.Fatalf("empty parquet unreadable: %v", err)
				}
				return
			}
			if string(b) != want[format] {
				t.Fatalf("content %q, want %q", b, want[format])
			}
		})
	}
}

// TestCSVCancelAndEmitError: a cancelled run and a failing emit end the
// read with that error, and the decoder's goroutines end with it.
func TestCSVCancelAndEmitError(t *testing.T) {
	var b strings.Builder
	b.WriteString("a,b\n")
	for i := range 100_000 {
		fmt.Fprintf(&b, "%d,x%d\n", i, i)
	}
	cfg := defaultSourceConfig()
	cfg.Path = writeFile(t, t.TempDir(), "big.csv", b.String())
	cfg.BatchSize = 500
	boom := fmt.Errorf("sink full")
	for _, tc := range []struct {
		name string
		want error
	}{{"cancel", context.Canceled}, {"emit error", boom}} {
		t.Run(tc.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			src, err := newSource(cfg, pipeline.Env{})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			batches := 0
			err = src.Read(ctx, func(ctx context.Context, _ pipeline.Batch, _ pipeline.AckFunc) error {
				batches++
				if batches == 3 {
					if tc.want == boom {
						return boom
					}
					cancel()
					return ctx.Err()
				}
				return nil
			})
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if batches != 3 {
				t.Fatalf("%d batches emitted after the error", batches)
			}
			// The reader and the workers have ended (give the runtime a
			// moment to retire them).
			for range 100 {
				if runtime.NumGoroutine() <= before {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > before {
				t.Fatalf("%d goroutines after the read, %d before", n, before)
			}
		})
	}
}

func TestTSVAndParquetGlobSchemas(t *testing.T) {
	dir := t.TempDir()
	in := writeFile(t, dir, "in.csv", "a,b\n1,x y\n")
	out := filepath.Join(dir, "o.tsv")
	copySource(t, in, &SinkConfig{Path: out}, pipeline.Env{})
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "a\tb\n1\tx y\n" {
		t.Fatalf("tsv %q", b)
	}
	cfg := defaultSourceConfig()
	cfg.Path = out
	if _, rows := readAll(t, cfg); show(rows) != `[["1","x y"]]` {
		t.Fatalf("tsv read back %v", rows)
	}

	// Parquet files of a glob must share a schema.
	copySource(t, in, &SinkConfig{Path: filepath.Join(dir, "p1.parquet")}, pipeline.Env{})
	other := writeFile(t, dir, "other.csv", "c\n2.5\n")
	copySource(t, other, &SinkConfig{Path: filepath.Join(dir, "p2.parquet")}, pipeline.Env{})
	pcfg := defaultSourceConfig()
	pcfg.Path = filepath.Join(dir, "p*.parquet")
	src, err := newSource(pcfg, pipeline.Env{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := collect(src); err == nil || !strings.Contains(err.Error(), "differs from the first file") {
		t.Fatalf("error %v", err)
	}
}

func TestValidityBitmap(t *testing.T) {
	for _, pattern := range []string{"", "1", "0", "11111111", "111111110", "01", "1111111111111111101", "0000000000", "1010101010101010101"} {
		t.Run(pattern, func(t *testing.T) {
			var v validity
			for _, c := range pattern {
				v.add(c == '1')
			}
			buf, nulls := v.buffer()
			if want := strings.Count(pattern, "0"); nulls != want {
				t.Fatalf("%d nulls, want %d", nulls, want)
			}
			if nulls == 0 {
				if buf != nil {
					t.Fatal("a bitmap without nulls")
				}
				return
			}
			bits := buf.Bytes()
			for i, c := range pattern {
				if got := bits[i>>3]&(1<<(i&7)) != 0; got != (c == '1') {
					t.Fatalf("bit %d = %v", i, got)
				}
			}
		})
	}
}
