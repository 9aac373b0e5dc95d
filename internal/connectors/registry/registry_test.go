package registry

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/kilnai/kiln/internal/pipeline"
	kreg "github.com/kilnai/kiln/internal/registry"
	"github.com/kilnai/kiln/internal/registry/dataset"
	"github.com/kilnai/kiln/internal/registry/sqlstore"
)

var testSchema = arrow.NewSchema([]arrow.Field{
	{Name: "x", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "c", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "t", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
}, nil)

// rowsBatch builds a batch from x values (NaN = null) and categories
// ("" = null); t is 2026-01-01 plus x days.
func rowsBatch(xs []float64, cs []string) arrow.RecordBatch {
	b := array.NewRecordBuilder(memory.DefaultAllocator, testSchema)
	defer b.Release()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, x := range xs {
		if math.IsNaN(x) {
			b.Field(0).AppendNull()
			b.Field(2).AppendNull()
		} else {
			b.Field(0).(*array.Float64Builder).Append(x)
			b.Field(2).(*array.TimestampBuilder).Append(arrow.Timestamp(base.Add(time.Duration(x) * 24 * time.Hour).UnixMicro()))
		}
		if cs[i] == "" {
			b.Field(1).AppendNull()
		} else {
			b.Field(1).(*array.StringBuilder).Append(cs[i])
		}
	}
	return b.NewRecordBatch()
}

func digestOf(ordered bool, batches ...arrow.RecordBatch) string {
	d := newDigester(ordered)
	for _, b := range batches {
		d.add(b)
	}
	return d.digest()
}

func TestDigest(t *testing.T) {
	a := rowsBatch([]float64{1, 2}, []string{"a", "b"})
	b := rowsBatch([]float64{3, math.NaN()}, []string{"c", ""})
	b2 := rowsBatch([]float64{3, math.NaN()}, []string{"C", ""})
	swapped := rowsBatch([]float64{2, 1}, []string{"b", "a"})
	defer func() {
		for _, x := range []arrow.RecordBatch{a, b, b2, swapped} {
			x.Release()
		}
	}()
	tests := []struct {
		name      string
		x, y      string
		wantEqual bool
	}{
		{"unordered ignores batch order", digestOf(false, a, b), digestOf(false, b, a), true},
		{"unordered ignores row order", digestOf(false, a), digestOf(false, swapped), true},
		{"ordered sees batch order", digestOf(true, a, b), digestOf(true, b, a), false},
		{"ordered is repeatable", digestOf(true, a, b), digestOf(true, a, b), true},
		{"a changed value changes it", digestOf(false, a, b), digestOf(false, a, b2), false},
		{"a repeated row changes it", digestOf(false, a), digestOf(false, a, a), false},
		{"kinds differ", digestOf(false, a), digestOf(true, a), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if (tc.x == tc.y) != tc.wantEqual || !strings.HasPrefix(tc.x, "sha256:") || len(tc.x) != 71 {
				t.Fatalf("%s vs %s, want equal=%v", tc.x, tc.y, tc.wantEqual)
			}
		})
	}
}

func TestProfile(t *testing.T) {
	var xs []float64
	var cs []string
	for i := 1; i <= 100; i++ {
		xs = append(xs, float64(i))
		cs = append(cs, []string{"red", "red", "green", "blue"}[i%4])
	}
	xs = append(xs, math.NaN())
	cs = append(cs, "")
	p := &profiler{}
	b1 := rowsBatch(xs[:60], cs[:60])
	b2 := rowsBatch(xs[60:], cs[60:])
	defer b1.Release()
	defer b2.Release()
	p.add(b1)
	p.add(b2)
	prof := p.profile()
	if prof.Rows != 101 || len(prof.Columns) != 3 {
		t.Fatalf("profile %+v", prof)
	}
	x, c, ts := prof.Columns[0], prof.Columns[1], prof.Columns[2]
	t.Run("numeric", func(t *testing.T) {
		if x.Kind != "numeric" || x.Count != 100 || x.Nulls != 1 || *x.Mean != 50.5 || *x.Min != 1 || *x.Max != 100 {
			t.Fatalf("%+v", x)
		}
		if math.Abs(*x.Std-math.Sqrt((100*100-1)/12.0)) > 1e-9 {
			t.Errorf("std %v", *x.Std)
		}
		if x.Quantiles["p50"] != 50.5 || x.Quantiles["p1"] != 1.99 || x.Quantiles["p99"] != 99.01 {
			t.Errorf("quantiles %v", x.Quantiles)
		}
		sum := 0.0
		for _, f := range x.Histogram.Fractions {
			sum += f
			if math.Abs(f-0.05) > 1e-9 {
				t.Errorf("uniform data, bin fraction %v", f)
			}
		}
		if len(x.Histogram.Edges) != 21 || math.Abs(sum-1) > 1e-9 {
			t.Errorf("histogram %+v", x.Histogram)
		}
	})
	t.Run("categorical", func(t *testing.T) {
		if c.Kind != "categorical" || c.Count != 100 || c.Nulls != 1 || c.Distinct != 3 || c.TopIsApprox {
			t.Fatalf("%+v", c)
		}
		want := []dataset.Category{{Value: "red", Count: 50}, {Value: "blue", Count: 25}, {Value: "green", Count: 25}}
		if fmt.Sprint(c.Top) != fmt.Sprint(want) {
			t.Errorf("top %v, want %v", c.Top, want)
		}
	})
	t.Run("temporal", func(t *testing.T) {
		if ts.Kind != "temporal" || ts.First != "2026-01-02T00:00:00Z" || ts.Last != "2026-04-11T00:00:00Z" {
			t.Fatalf("%+v", ts)
		}
	})
}

func TestProfileLargeCardinality(t *testing.T) {
	const n = 60000
	xs := make([]float64, n)
	cs := make([]string, n)
	for i := range n {
		xs[i] = float64(i % 1000)
		cs[i] = fmt.Sprintf("user-%d", i)
		if i%3 == 0 {
			cs[i] = "heavy" // a heavy hitter among 40,000 distinct values
		}
	}
	b := rowsBatch(xs, cs)
	defer b.Release()
	p := &profiler{}
	p.add(b)
	c := p.profile().Columns[1]
	distinct := float64(n - n/3 + 1)
	if math.Abs(float64(c.Distinct)-distinct)/distinct > 0.05 {
		t.Errorf("distinct estimate %d, true %v", c.Distinct, distinct)
	}
	if !c.TopIsApprox || c.Top[0].Value != "heavy" {
		t.Errorf("top %v approx %v", c.Top[:3], c.TopIsApprox)
	}
	x := p.profile().Columns[0]
	if math.Abs(x.Quantiles["p50"]-500) > 25 {
		t.Errorf("sampled median %v, want about 500", x.Quantiles["p50"])
	}
}

func pgDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("KILN_TEST_POSTGRES")
	if dsn == "" {
		if os.Getenv("KILN_REQUIRE_SERVICES") == "1" {
			t.Fatal("KILN_TEST_POSTGRES is not set and KILN_REQUIRE_SERVICES=1")
		}
		t.Skip("KILN_TEST_POSTGRES not set")
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "kiln_datasets_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`) })
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "search_path=" + schema
}

// registerVersion registers model with versions up to version in the
// registry database at dsn.
func registerVersion(t *testing.T, dsn, model string, version int64) *kreg.Service {
	t.Helper()
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := kreg.NewService(st, kreg.Options{})
	if _, err := svc.CreateModel(ctx, "test", kreg.CreateModelInput{Name: model}); err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i <= version; i++ {
		in := kreg.CreateVersionInput{Model: model, Artifact: kreg.Artifact{Digest: "sha256:" + strings.Repeat(fmt.Sprintf("%x", i%16), 64), Size: 1}}
		if _, _, err := svc.CreateVersion(ctx, "test", in); err != nil {
			t.Fatal(err)
		}
	}
	return svc
}

type lineage struct{ used []string }

func (l *lineage) UsedModel(name, version string) { l.used = append(l.used, name+"@"+version) }

// TestSinkRecords writes through the sink on SQLite and PostgreSQL: a
// failed run records nothing, a successful one its digest and profile,
// and the run's lineage names the version.
func TestSinkRecords(t *testing.T) {
	backends := map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "registry.db") },
		"postgres": pgDSN,
	}
	for name, dsnFor := range backends {
		t.Run(name, func(t *testing.T) {
			dsn := dsnFor(t)
			ctx := context.Background()
			svc := registerVersion(t, dsn, "churn", 3)
			body := fmt.Sprintf(`{model: churn, version: 3, dataset: customers, role: training, registry: %q}`, dsn)
			cfg, err := pipeline.DecodeComponent(pipeline.KindSink, "registry", []byte(body), func(string) (string, bool) { return "", false })
			if err != nil {
				t.Fatal(err)
			}
			b := rowsBatch([]float64{1, 2, 3}, []string{"a", "b", "a"})
			defer b.Release()

			lin := &lineage{}
			failed, err := newSink(ctx, cfg.(*SinkConfig), pipeline.Env{RunID: "run-1", Lineage: lin})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := failed.Write(ctx, b); err != nil {
				t.Fatal(err)
			}
			if err := failed.Close(ctx, fmt.Errorf("the run failed")); err != nil {
				t.Fatal(err)
			}
			for range 2 { // the same run and task recorded twice is one record
				s, err := newSink(ctx, cfg.(*SinkConfig), pipeline.Env{RunID: "run-2", Lineage: lin})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.Write(ctx, b); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(ctx, nil); err != nil {
					t.Fatal(err)
				}
			}
			st, err := OpenStore(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			ds, err := st.Datasets(ctx, "churn", 3)
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) != 1 || ds[0].RunID != "run-2" || ds[0].Rows != 3 || ds[0].Digest != digestOf(false, b) || ds[0].Role != "training" {
				t.Fatalf("records %+v", ds)
			}
			if p := ds[0].Profile; p == nil || p.Columns[1].Top[0] != (dataset.Category{Value: "a", Count: 2}) || *p.Columns[0].Mean != 2 {
				t.Fatalf("profile %+v", ds[0].Profile)
			}
			if fmt.Sprint(lin.used) != "[churn@3 churn@3]" {
				t.Errorf("lineage %v", lin.used)
			}
			v, err := svc.GetVersion(ctx, "churn", 3)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"kiln.dataset.training": "customers", "kiln.dataset.training.digest": ds[0].Digest,
				"kiln.dataset.training.rows": "3", "kiln.dataset.training.run": "run-2"}
			for k, w := range want {
				if v.Tags[k] != w {
					t.Errorf("tag %s = %q, want %q (tags %v)", k, v.Tags[k], w, v.Tags)
				}
			}
			other := fmt.Sprintf(`{model: churn, version: 4, dataset: customers, registry: %q}`, dsn)
			cfg4, err := pipeline.DecodeComponent(pipeline.KindSink, "registry", []byte(other), func(string) (string, bool) { return "", false })
			if err != nil {
				t.Fatal(err)
			}
			if _, err := newSink(ctx, cfg4.(*SinkConfig), pipeline.Env{}); !errors.Is(err, kreg.ErrNotFound) {
				t.Fatalf("an unregistered version: err = %v, want not found", err)
			}
		})
	}
}

func TestSinkErrors(t *testing.T) {
	tests := []struct{ body, want string }{
		{`{model: m, version: 0, dataset: d}`, "want a version number"},
		{`{model: m, version: 1, dataset: d, role: train}`, `role "train"`},
		{`{model: m, version: 1, dataset: d, digest: sorted}`, "ordered or unordered"},
		{`{model: m, dataset: d}`, "missing required field version"},
		{`{model: m, version: latest, dataset: d}`, "where an integer is expected"},
	}
	for _, tc := range tests {
		t.Run(tc.body, func(t *testing.T) {
			_, err := pipeline.DecodeComponent(pipeline.KindSink, "registry", []byte(tc.body), func(string) (string, bool) { return "", false })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("unreachable database", func(t *testing.T) {
		cfg := &SinkConfig{Model: "m", Version: 1, Dataset: "d", Role: "training", Digest: "unordered", Registry: "mysql://x"}
		if _, err := newSink(context.Background(), cfg, pipeline.Env{}); err == nil || !strings.Contains(err.Error(), "unsupported database") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("schema change between batches", func(t *testing.T) {
		dsn := "sqlite:" + filepath.Join(t.TempDir(), "r.db")
		registerVersion(t, dsn, "m", 1)
		cfg := &SinkConfig{Model: "m", Version: 1, Dataset: "d", Role: "training", Digest: "unordered", Registry: dsn}
		s, err := newSink(context.Background(), cfg, pipeline.Env{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(context.Background(), fmt.Errorf("done"))
		a := rowsBatch([]float64{1}, []string{"a"})
		defer a.Release()
		if _, err := s.Write(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		other := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "y", Type: arrow.PrimitiveTypes.Float64, Nullable: true}}, nil), []arrow.Array{a.Column(0)}, 1)
		if _, err := s.Write(context.Background(), other); err == nil {
			t.Fatal("a batch with other columns was accepted")
		}
	})
}

// BenchmarkProfileAndDigest measures the sink's per-row cost (digest and
// profile of a float, a string and a timestamp column).
func BenchmarkProfileAndDigest(b *testing.B) {
	const n = 65536
	xs := make([]float64, n)
	cs := make([]string, n)
	for i := range n {
		xs[i] = float64(i % 977)
		cs[i] = fmt.Sprintf("c%d", i%300)
	}
	batch := rowsBatch(xs, cs)
	defer batch.Release()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		p, d := &profiler{}, newDigester(false)
		p.add(batch)
		d.add(batch)
		_ = p.profile()
		_ = d.digest()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// TestSinkDefaultDatabase: a sink whose spec names no database writes to
// the registry the process uses (Env.Registry: kiln serve's or the CLI's
// --registry), else to registry.db in the data directory.
func TestSinkDefaultDatabase(t *testing.T) {
	for _, tc := range []struct {
		name    string
		process func(t *testing.T) string // Env.Registry
	}{
		{"data dir", func(*testing.T) string { return "" }},
		{"process sqlite", func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "elsewhere.db") }},
		{"process postgres", pgDSN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dataDir := t.TempDir()
			env := pipeline.Env{RunID: "run-1", DataDir: dataDir, Registry: tc.process(t), Lineage: &lineage{}}
			want := env.Registry
			if want == "" {
				want = "sqlite:" + filepath.Join(dataDir, "registry.db")
			}
			registerVersion(t, want, "churn", 1)
			cfg, err := pipeline.DecodeComponent(pipeline.KindSink, "registry", []byte(`{model: churn, version: 1, dataset: d}`), func(string) (string, bool) { return "", false })
			if err != nil {
				t.Fatal(err)
			}
			s, err := newSink(ctx, cfg.(*SinkConfig), env)
			if err != nil {
				t.Fatal(err)
			}
			b := rowsBatch([]float64{1, 2}, []string{"a", "b"})
			defer b.Release()
			if _, err := s.Write(ctx, b); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(ctx, nil); err != nil {
				t.Fatal(err)
			}
			st, err := OpenStore(ctx, want)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if ds, err := st.Datasets(ctx, "churn", 1); err != nil || len(ds) != 1 || ds[0].Rows != 2 {
				t.Fatalf("records in %s: %+v, %v", want, ds, err)
			}
		})
	}
}
