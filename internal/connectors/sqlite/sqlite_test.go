package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/kilnai/kiln/internal/pipeline"
)

func readAll(t *testing.T, cfg *SourceConfig) (string, [][]string, int) {
	t.Helper()
	src, err := newSource(cfg, pipeline.Env{})
	if err != nil {
		t.Fatal(err)
	}
	var sc *arrow.Schema
	var rows [][]string
	batches := 0
	err = src.Read(context.Background(), func(_ context.Context, b pipeline.Batch, _ pipeline.AckFunc) error {
		sc = b.Schema()
		batches++
		for r := range int(b.NumRows()) {
			row := make([]string, b.NumCols())
			for c := range int(b.NumCols()) {
				if b.Column(c).IsNull(r) {
					row[c] = "<nil>"
				} else {
					row[c] = b.Column(c).ValueStr(r)
				}
			}
			rows = append(rows, row)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	if sc != nil {
		for _, f := range sc.Fields() {
			types = append(types, f.Name+":"+f.Type.String())
		}
	}
	return strings.Join(types, " "), rows, batches
}

func testBatch(ids []int64, names []string, scores []float64) arrow.RecordBatch {
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "score", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "ok", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
		{Name: "at", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
		{Name: "day", Type: arrow.FixedWidthTypes.Date32, Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	for i, id := range ids {
		b.Field(0).(*array.Int64Builder).Append(id)
		if names[i] == "" {
			b.Field(1).AppendNull()
		} else {
			b.Field(1).(*array.StringBuilder).Append(names[i])
		}
		b.Field(2).(*array.Float64Builder).Append(scores[i])
		b.Field(3).(*array.BooleanBuilder).Append(i%2 == 0)
		at := time.Date(2024, 1, 2, 3, 4, 5, 500000000, time.UTC).Add(time.Duration(i) * time.Hour)
		b.Field(4).(*array.TimestampBuilder).Append(arrow.Timestamp(at.UnixMicro()))
		b.Field(5).(*array.Date32Builder).Append(arrow.Date32FromTime(at))
	}
	return b.NewRecordBatch()
}

func write(t *testing.T, cfg *SinkConfig, b arrow.RecordBatch) []pipeline.RowError {
	t.Helper()
	snk, err := newSink(cfg, pipeline.Env{})
	if err != nil {
		t.Fatal(err)
	}
	rej, err := snk.Write(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if err := snk.Close(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	return rej
}

func TestSinkThenSourceRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "rt.db")
	b := testBatch([]int64{1, 2, 3}, []string{"a", "", "ü \"q\""}, []float64{1.5, 2, -3})
	defer b.Release()
	if rej := write(t, &SinkConfig{Path: path, Table: "t", CreateTable: true}, b); len(rej) != 0 {
		t.Fatal(rej)
	}
	types, rows, _ := readAll(t, &SourceConfig{Path: path, Query: "select * from t order by id"})
	if want := "id:int64 name:utf8 score:float64 ok:bool at:timestamp[us, tz=UTC] day:date32"; types != want {
		t.Fatalf("types %s\nwant  %s", types, want)
	}
	if got := fmt.Sprint(rows); got != `[[1 a 1.5 true 2024-01-02T03:04:05.5Z 2024-01-02] [2 <nil> 2 false 2024-01-02T04:04:05.5Z 2024-01-02] [3 ü "q" -3 true 2024-01-02T05:04:05.5Z 2024-01-02]]` {
		t.Fatalf("rows %s", got)
	}
}

func TestSourceInferenceAndBatches(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("create table x (a integer, b, c text)"); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		var b any = i
		if i == 2 {
			b = 2.5 // an untyped column holding ints and a float: float64
		}
		if _, err := db.Exec("insert into x values (?, ?, ?)", i, b, fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	cases := []struct {
		name, query, types string
		args               []any
		batch, rows        int
		wantBatches        int
	}{
		{"declared and inferred", "select a, b, c from x", "a:int64 b:float64 c:utf8", nil, 4, 10, 3},
		{"expressions", "select a * 2 as twice, a / 2.0 as half, null as empty, a > 4 as big from x where a < ?", "twice:int64 half:float64 empty:utf8 big:int64", []any{3}, 100, 3, 1},
		{"empty result", "select * from x where a > 100", "", nil, 0, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			types, rows, batches := readAll(t, &SourceConfig{Path: path, Query: tc.query, Args: tc.args, BatchSize: tc.batch})
			if types != tc.types || len(rows) != tc.rows || batches != tc.wantBatches {
				t.Fatalf("types %q rows %d batches %d, want %q %d %d", types, len(rows), batches, tc.types, tc.rows, tc.wantBatches)
			}
		})
	}
	t.Run("value outside the column type", func(t *testing.T) {
		src, _ := newSource(&SourceConfig{Path: path, Query: "select case when a = 5 then 'x' else a end as v from x", BatchSize: 2}, pipeline.Env{})
		err := src.Read(context.Background(), func(context.Context, pipeline.Batch, pipeline.AckFunc) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "row 6") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("missing database", func(t *testing.T) {
		src, _ := newSource(&SourceConfig{Path: path + ".nope", Query: "select 1"}, pipeline.Env{})
		err := src.Read(context.Background(), func(context.Context, pipeline.Batch, pipeline.AckFunc) error { return nil })
		if err == nil || !os.IsNotExist(unwrapAll(err)) {
			t.Fatalf("error %v", err)
		}
		if _, err := os.Stat(path + ".nope"); !os.IsNotExist(err) {
			t.Fatal("reading created the database")
		}
	})
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || u.Unwrap() == nil {
			return err
		}
		err = u.Unwrap()
	}
}

func TestUpsertIdempotentAndRowErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "u.db")
	cfg := func() *SinkConfig {
		return &SinkConfig{Path: path, Table: "scores", UpsertKey: []string{"id"}, CreateTable: true}
	}
	for run := range 2 {
		b := testBatch([]int64{1, 2, 3, 2}, []string{"a", "b", "c", "b2"}, []float64{1, 2, 3, 4 + float64(run)})
		rej := write(t, cfg(), b)
		b.Release()
		if len(rej) != 0 {
			t.Fatal(rej)
		}
	}
	_, rows, _ := readAll(t, &SourceConfig{Path: path, Query: "select id, name, score from scores order by id"})
	if got := fmt.Sprint(rows); got != "[[1 a 1] [2 b2 5] [3 c 3]]" {
		t.Fatalf("rows %s", got)
	}

	// Constraint violations: those rows are rejected, the rest written.
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`create table strict (id integer primary key, name text not null, score real check (score >= 0), ok boolean, at timestamp, day date)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	b := testBatch([]int64{10, 11, 12, 10}, []string{"a", "", "c", "d"}, []float64{1, 2, -1, 3})
	defer b.Release()
	rej := write(t, &SinkConfig{Path: path, Table: "strict", Mode: "insert"}, b)
	var bad []int
	for _, r := range rej {
		bad = append(bad, r.Row)
		if !strings.Contains(r.Err.Error(), "constraint") {
			t.Errorf("row %d: %v", r.Row, r.Err)
		}
	}
	if fmt.Sprint(bad) != "[1 2 3]" {
		t.Fatalf("rejected %v", rej)
	}
	_, rows, _ = readAll(t, &SourceConfig{Path: path, Query: "select id from strict"})
	if fmt.Sprint(rows) != "[[10]]" {
		t.Fatalf("rows %v", rows)
	}
}

func TestFingerprintChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.db")
	b := testBatch([]int64{1}, []string{"a"}, []float64{1})
	defer b.Release()
	write(t, &SinkConfig{Path: path, Table: "t", CreateTable: true}, b)
	src, _ := newSource(&SourceConfig{Path: path, Query: "select * from t"}, pipeline.Env{})
	f1, err := src.Fingerprint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f2, _ := src.Fingerprint(context.Background())
	time.Sleep(10 * time.Millisecond) // a distinct mtime on coarse file systems
	b2 := testBatch([]int64{2}, []string{"b"}, []float64{2})
	defer b2.Release()
	write(t, &SinkConfig{Path: path, Table: "t"}, b2)
	f3, _ := src.Fingerprint(context.Background())
	other, _ := newSource(&SourceConfig{Path: path, Query: "select id from t"}, pipeline.Env{})
	f4, _ := other.Fingerprint(context.Background())
	if f1 != f2 || f1 == f3 || f3 == f4 {
		t.Fatalf("fingerprints %s %s %s %s", f1, f2, f3, f4)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  interface{ Validate() error }
		want string
	}{
		{"no path", &SourceConfig{Query: "select 1"}, "path is empty"},
		{"no query", &SourceConfig{Path: "x.db"}, "query is empty"},
		{"bad arg", &SourceConfig{Path: "x.db", Query: "select ?", Args: []any{map[string]any{}}}, "args[0]"},
		{"no table", &SinkConfig{Path: "x.db"}, "table is empty"},
		{"upsert without key", &SinkConfig{Path: "x.db", Table: "t", Mode: "upsert"}, "needs upsert_key"},
		{"key with insert", &SinkConfig{Path: "x.db", Table: "t", Mode: "insert", UpsertKey: []string{"id"}}, "needs mode upsert"},
		{"ok", &SinkConfig{Path: "x.db", Table: "t", UpsertKey: []string{"id"}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
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

func TestSplitKeyRanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("create table o (id integer, v text); insert into o values (null, 'n')"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 50; i++ {
		if _, err := db.Exec("insert into o values (?, ?)", i, fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		cfg         SourceConfig
		tasks, rows int
	}{
		{"ranges with an arg", SourceConfig{Path: path, Query: "select * from o where v <> ?", Args: []any{"v7"}, SplitColumn: "id", SplitTasks: 3}, 3, 50},
		{"whole query", SourceConfig{Path: path, Query: "select * from o"}, 1, 51},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			src, err := newSource(&cfg, pipeline.Env{})
			if err != nil {
				t.Fatal(err)
			}
			tasks, err := src.Split(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(tasks) != tc.tasks {
				t.Fatalf("%d tasks: %v", len(tasks), tasks)
			}
			seen := map[string]int{}
			for _, task := range tasks {
				ts, err := src.OpenTask(ctx, task)
				if err != nil {
					t.Fatal(err)
				}
				var n int
				err = ts.Read(ctx, func(_ context.Context, b pipeline.Batch, _ pipeline.AckFunc) error {
					for r := range int(b.NumRows()) {
						seen[b.Column(1).ValueStr(r)]++
						n++
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			for v, c := range seen {
				if c != 1 {
					t.Fatalf("%s read %d times", v, c)
				}
			}
			if len(seen) != tc.rows {
				t.Fatalf("%d rows, want %d", len(seen), tc.rows)
			}
		})
	}
}
