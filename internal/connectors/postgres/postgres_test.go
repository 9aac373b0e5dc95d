package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jackc/pgx/v5"

	"github.com/kilnai/kiln/internal/pipeline"
)

// testDB returns a URL whose search_path is a fresh schema (dropped at the
// end) and a connection to it; it skips without KILN_TEST_POSTGRES unless
// KILN_REQUIRE_SERVICES=1.
func testDB(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	base := os.Getenv("KILN_TEST_POSTGRES")
	if base == "" {
		if os.Getenv("KILN_REQUIRE_SERVICES") == "1" {
			t.Fatal("KILN_TEST_POSTGRES is unset and KILN_REQUIRE_SERVICES=1")
		}
		t.Skip("KILN_TEST_POSTGRES is unset (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	ctx := context.Background()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "kiln_pgconn_" + hex.EncodeToString(b[:])
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		admin.Close(context.Background())
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	u := base + sep + "search_path=" + schema
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return u, conn
}

func readAll(t *testing.T, src pipeline.Source) (*arrow.Schema, [][]string, int) {
	t.Helper()
	var sc *arrow.Schema
	var rows [][]string
	batches := 0
	err := src.Read(context.Background(), func(_ context.Context, b pipeline.Batch, _ pipeline.AckFunc) error {
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
	return sc, rows, batches
}

func TestSourceTypes(t *testing.T) {
	u, _ := testDB(t)
	cfg := &SourceConfig{URL: u, BatchSize: 2, Args: []any{int64(1)}, Query: `
		select g as id, g::int2 as small, (g * 1.5)::float4 as f4, (g / 3.0)::numeric(10,4) as num,
		       g % 2 = 0 as even, 'name-' || g as name, null::text as nothing,
		       timestamptz '2024-01-02 03:04:05.25+00' + g * interval '1 day' as at,
		       date '2024-01-01' + g as day, ('{"k":' || g || '}')::jsonb as doc,
		       '7b6f1f4e-0000-4000-8000-00000000000' || g as uuid_text
		from generate_series($1::int, 3) g order by g`}
	src, err := newSource(cfg, pipeline.Env{})
	if err != nil {
		t.Fatal(err)
	}
	sc, rows, batches := readAll(t, src)
	var types []string
	for _, f := range sc.Fields() {
		types = append(types, f.Name+":"+f.Type.String())
	}
	want := "id:int64 small:int64 f4:float64 num:float64 even:bool name:utf8 nothing:utf8 at:timestamp[us, tz=UTC] day:date32 doc:utf8 uuid_text:utf8"
	if got := strings.Join(types, " "); got != want {
		t.Fatalf("types\n%s\nwant\n%s", got, want)
	}
	if batches != 2 || len(rows) != 3 {
		t.Fatalf("%d batches, %d rows", batches, len(rows))
	}
	got := fmt.Sprint(rows[1])
	if want := `[2 2 3 0.6667 true name-2 <nil> 2024-01-04T03:04:05.25Z 2024-01-03 {"k": 2} 7b6f1f4e-0000-4000-8000-000000000002]`; got != want {
		t.Fatalf("row 2\n%s\nwant\n%s", got, want)
	}
}

func TestSourceErrorsAndFingerprint(t *testing.T) {
	u, conn := testDB(t)
	ctx := context.Background()
	src, _ := newSource(&SourceConfig{URL: u, Query: "select * from missing_table"}, pipeline.Env{})
	if _, _, err := func() (*arrow.Schema, [][]string, error) {
		err := src.Read(ctx, func(context.Context, pipeline.Batch, pipeline.AckFunc) error { return nil })
		return nil, nil, err
	}(); err == nil || !strings.Contains(err.Error(), "missing_table") {
		t.Fatalf("error %v", err)
	}
	if _, err := conn.Exec(ctx, "create table t (id int, updated timestamptz)"); err != nil {
		t.Fatal(err)
	}
	cfg := &SourceConfig{URL: u, Query: "select * from t", FingerprintQuery: "select max(updated), count(*) from t"}
	s, _ := newSource(cfg, pipeline.Env{})
	f1, err := s.Fingerprint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f2, _ := s.Fingerprint(ctx)
	if _, err := conn.Exec(ctx, "insert into t values (1, now())"); err != nil {
		t.Fatal(err)
	}
	f3, _ := s.Fingerprint(ctx)
	if f1 != f2 || f1 == f3 {
		t.Fatalf("fingerprints %s %s %s: want equal, then different after a change", f1, f2, f3)
	}
}

func batch(t *testing.T, ids []int64, names []string, scores []float64) arrow.RecordBatch {
	t.Helper()
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "score", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "flag", Type: arrow.PrimitiveTypes.Int8, Nullable: true},
		{Name: "at", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
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
		b.Field(3).(*array.Int8Builder).Append(int8(i % 2))
		b.Field(4).(*array.TimestampBuilder).Append(arrow.Timestamp(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC).UnixMicro()))
	}
	return b.NewRecordBatch()
}

func TestSinkUpsertIdempotent(t *testing.T) {
	u, conn := testDB(t)
	ctx := context.Background()
	for run := range 2 {
		snk, err := newSink(&SinkConfig{URL: u, Table: "scores", UpsertKey: []string{"id"}, CreateTable: true}, pipeline.Env{})
		if err != nil {
			t.Fatal(err)
		}
		// The same key twice in a batch: the last row wins.
		b := batch(t, []int64{1, 2, 3, 2}, []string{"a", "b", "", "b2"}, []float64{1, 2, 3, 4 + float64(run)})
		rej, err := snk.Write(ctx, b)
		b.Release()
		if err != nil || len(rej) != 0 {
			t.Fatalf("run %d: %v %v", run, rej, err)
		}
		if err := snk.Close(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	var name string
	var score float64
	if err := conn.QueryRow(ctx, "select count(*) from scores").Scan(&n); err != nil || n != 3 {
		t.Fatalf("count %d %v, want 3", n, err)
	}
	if err := conn.QueryRow(ctx, "select name, score from scores where id = 2").Scan(&name, &score); err != nil || name != "b2" || score != 5 {
		t.Fatalf("row 2: %q %v %v", name, score, err)
	}
	var isNull bool
	if err := conn.QueryRow(ctx, "select name is null from scores where id = 3").Scan(&isNull); err != nil || !isNull {
		t.Fatalf("null name: %v %v", isNull, err)
	}
}

func TestSinkInsertRowErrors(t *testing.T) {
	u, conn := testDB(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "create table strict (id bigint primary key, name text not null, score double precision check (score >= 0), flag smallint, at timestamptz)"); err != nil {
		t.Fatal(err)
	}
	snk, err := newSink(&SinkConfig{URL: u, Table: "strict", CreateTable: false}, pipeline.Env{})
	if err != nil {
		t.Fatal(err)
	}
	b := batch(t, []int64{1, 2, 3, 1}, []string{"a", "", "c", "d"}, []float64{1, 2, -3, 4})
	defer b.Release()
	rej, err := snk.Write(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	var bad []int
	for _, r := range rej {
		bad = append(bad, r.Row)
		if !strings.Contains(r.Err.Error(), "SQLSTATE 23") {
			t.Errorf("row %d: %v", r.Row, r.Err)
		}
	}
	if fmt.Sprint(bad) != "[1 2 3]" {
		t.Fatalf("rejected rows %v (%v), want [1 2 3]", bad, rej)
	}
	if err := snk.Close(ctx, nil); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, "select count(*) from strict").Scan(&n); err != nil || n != 1 {
		t.Fatalf("count %d %v", n, err)
	}
	t.Run("missing table without create_table", func(t *testing.T) {
		snk, _ := newSink(&SinkConfig{URL: u, Table: "nope", CreateTable: false}, pipeline.Env{})
		if _, err := snk.Write(ctx, b); err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("error %v", err)
		}
		_ = snk.Close(ctx, nil)
	})
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  interface{ Validate() error }
		want string
	}{
		{"no url", &SourceConfig{Query: "select 1"}, "url is empty"},
		{"bad url", &SourceConfig{URL: "postgres://u:secret@h:notaport/db", Query: "select 1"}, "url"},
		{"empty query", &SourceConfig{URL: "postgres://h/db", Query: " "}, "query is empty"},
		{"bad arg", &SourceConfig{URL: "postgres://h/db", Query: "select $1", Args: []any{[]any{1}}}, "args[0]"},
		{"upsert without key", &SinkConfig{URL: "postgres://h/db", Table: "t", Mode: "upsert"}, "needs upsert_key"},
		{"bad mode", &SinkConfig{URL: "postgres://h/db", Table: "t", Mode: "merge"}, "want insert or upsert"},
		{"bad table", &SinkConfig{URL: "postgres://h/db", Table: "a.b.c"}, "schema.name"},
		{"ok", &SinkConfig{URL: "postgres://h/db", Table: "s.t", UpsertKey: []string{"id"}}, ""},
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
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("password in error: %v", err)
			}
		})
	}
}

func TestSplitKeyRanges(t *testing.T) {
	u, conn := testDB(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "create table o as select g as id, g * 2 as v from generate_series(1, 103) g; insert into o values (null, 0)"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		cfg    SourceConfig
		tasks  int
		rows   int
		filter string
	}{
		{"ranges", SourceConfig{URL: u, Query: "select * from o where v >= $1", Args: []any{0}, SplitColumn: "id", SplitTasks: 4}, 4, 104, ""},
		{"more tasks than keys", SourceConfig{URL: u, Query: "select * from o where id <= 3", SplitColumn: "id", SplitTasks: 10}, 3, 3, ""},
		{"no split column", SourceConfig{URL: u, Query: "select * from o"}, 1, 104, ""},
		{"only nulls", SourceConfig{URL: u, Query: "select * from o where id is null", SplitColumn: "id"}, 1, 1, ""},
	}
	for _, tc := range cases {
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
				t.Fatalf("%d tasks, want %d: %v", len(tasks), tc.tasks, tasks)
			}
			seen := map[string]int{}
			fps := map[string]bool{}
			for _, task := range tasks {
				ts, err := src.OpenTask(ctx, task)
				if err != nil {
					t.Fatal(err)
				}
				fp, err := ts.(*source).Fingerprint(ctx)
				if err != nil {
					t.Fatal(err)
				}
				fps[fp] = true
				_, rows, _ := readAll(t, ts)
				for _, r := range rows {
					seen[r[0]]++
				}
			}
			n := 0
			for id, c := range seen {
				if c != 1 {
					t.Fatalf("id %s read %d times", id, c)
				}
				n++
			}
			if n != tc.rows || len(fps) != len(tasks) {
				t.Fatalf("%d distinct rows (want %d), %d distinct fingerprints for %d tasks", n, tc.rows, len(fps), len(tasks))
			}
		})
	}
	src, _ := newSource(&SourceConfig{URL: u, Query: "select * from o"}, pipeline.Env{})
	if _, err := src.OpenTask(ctx, pipeline.Task{ID: "x", Spec: []byte(`{"lo":1,"hi":2}`)}); err == nil {
		t.Fatal("a key range opened without split_column")
	}
}
