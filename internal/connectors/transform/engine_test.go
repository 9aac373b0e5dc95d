package transform

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/kilnai/kiln/internal/pipeline"
)

// A test source of generated rows and a sink that collects them, so the
// transforms run through the real engine (fitting pass, parallel
// workers, dead letters).

type genConfig struct {
	Batches int    `yaml:"batches"`
	Rows    int    `yaml:"rows"`
	Key     string `yaml:"key"` // counts the reads under this key
}

type genSource struct{ cfg *genConfig }

// genReads counts the reads of the genSources by key.
var genReads = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

func (s *genSource) Read(ctx context.Context, emit pipeline.EmitFunc) error {
	if s.cfg.Key != "" {
		genReads.Lock()
		genReads.n[s.cfg.Key]++
		genReads.Unlock()
	}
	mem := memory.DefaultAllocator
	countries := []string{"FR", "DE", "GB", "IT"}
	for b := range s.cfg.Batches {
		ib := array.NewInt64Builder(mem)
		fb := array.NewFloat64Builder(mem)
		sb := array.NewStringBuilder(mem)
		for r := range s.cfg.Rows {
			id := b*s.cfg.Rows + r
			ib.Append(int64(id))
			if id%10 == 3 {
				fb.AppendNull()
			} else {
				fb.Append(float64(id % 100))
			}
			sb.Append(countries[id%len(countries)])
		}
		cols := []arrow.Array{ib.NewArray(), fb.NewArray(), sb.NewArray()}
		ib.Release()
		fb.Release()
		sb.Release()
		schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}, {Name: "amount", Type: arrow.PrimitiveTypes.Float64, Nullable: true}, {Name: "country", Type: arrow.BinaryTypes.String}}, nil)
		rec := array.NewRecordBatch(schema, cols, int64(s.cfg.Rows))
		releaseAll(cols)
		if err := emit(ctx, rec, nil); err != nil {
			return err
		}
	}
	return nil
}

func (s *genSource) Close() error { return nil }

type collectConfig struct {
	Key string `yaml:"key"`
}

var collected = struct {
	sync.Mutex
	rows map[string][]map[string]any
}{rows: map[string][]map[string]any{}}

type collectSink struct{ key string }

func (s *collectSink) Write(_ context.Context, b pipeline.Batch) ([]pipeline.RowError, error) {
	collected.Lock()
	defer collected.Unlock()
	for i := range int(b.NumRows()) {
		row := map[string]any{}
		for ci, f := range b.Schema().Fields() {
			a := b.Column(ci)
			if a.IsNull(i) {
				row[f.Name] = nil
			} else {
				row[f.Name] = a.ValueStr(i)
			}
		}
		collected.rows[s.key] = append(collected.rows[s.key], row)
	}
	return nil, nil
}

func (s *collectSink) Close(context.Context, error) error { return nil }

// resetCollected forgets what earlier runs of a test collected (-count).
func resetCollected(key string) {
	collected.Lock()
	defer collected.Unlock()
	delete(collected.rows, key)
	delete(collected.rows, key+"-dlq")
}

func init() {
	pipeline.RegisterSource(pipeline.SourceSpec{
		Spec: pipeline.Spec{Name: "transformtest_gen", Config: func() any { return &genConfig{Batches: 4, Rows: 1000} }},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Source, error) {
			return &genSource{cfg: cfg.(*genConfig)}, nil
		},
	})
	pipeline.RegisterSink(pipeline.SinkSpec{
		Spec: pipeline.Spec{Name: "transformtest_collect", Config: func() any { return &collectConfig{} }},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Sink, error) {
			return &collectSink{key: cfg.(*collectConfig).Key}, nil
		},
	})
}

func TestThroughEngine(t *testing.T) {
	resetCollected(t.Name())
	spec := fmt.Sprintf(`
name: transforms
source:
  transformtest_gen: {batches: 8, rows: 500}
transforms:
  - filter: "amount >= 10"
  - derive: {ratio: "100 / (amount - 50)", big: "amount > 90"}
  - standardize: {columns: [amount]}
  - one_hot: {column: country}
  - dedupe: {columns: [id]}
sinks:
  - transformtest_collect: {key: %[1]s}
on_error:
  transformtest_collect: {key: %[1]s-dlq}
settings: {parallelism: 3, batch_size: 500}
`, t.Name())
	plan, err := pipeline.Parse("transforms.yaml", []byte(spec), nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := (&pipeline.Engine{DataDir: t.TempDir()}).Run(context.Background(), plan, pipeline.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	collected.Lock()
	out, dlq := collected.rows[t.Name()], collected.rows[t.Name()+"-dlq"]
	collected.Unlock()

	// Expected: ids with amount = id%100 >= 10, not null (id%10 != 3),
	// and amount != 50 (division by zero is not an error for floats: +Inf).
	var kept []float64
	for id := range 4000 {
		a := id % 100
		if id%10 == 3 || a < 10 {
			continue
		}
		kept = append(kept, float64(a))
	}
	if len(out) != len(kept) || len(dlq) != 0 {
		t.Fatalf("%d rows out, %d dead letters; want %d and 0", len(out), len(dlq), len(kept))
	}
	var sum, sq float64
	for _, x := range kept {
		sum += x
	}
	mean := sum / float64(len(kept))
	for _, x := range kept {
		sq += (x - mean) * (x - mean)
	}
	std := math.Sqrt(sq / float64(len(kept)))
	p := rec.Params["transforms[2].standardize"]["amount"].(map[string]any)
	if math.Abs(p["mean"].(float64)-mean) > 1e-9 || math.Abs(p["std"].(float64)-std) > 1e-9 {
		t.Errorf("fitted %v, want mean %v std %v", p, mean, std)
	}
	if got := rec.Params["transforms[3].one_hot"]["categories"]; fmt.Sprint(got) != "[DE FR GB IT]" {
		t.Errorf("categories %v", got)
	}
	for _, row := range out[:5] {
		for _, k := range []string{"country_DE", "country_FR", "country_GB", "country_IT", "ratio", "big", "amount"} {
			if _, ok := row[k]; !ok {
				t.Fatalf("row %v has no %s", row, k)
			}
		}
	}
}

func TestDeadLettersThroughEngine(t *testing.T) {
	resetCollected(t.Name())
	spec := fmt.Sprintf(`
source:
  transformtest_gen: {batches: 3, rows: 100}
transforms:
  - filter: "id %% (id %% 7) == 0"
sinks:
  - transformtest_collect: {key: %[1]s}
on_error:
  transformtest_collect: {key: %[1]s-dlq}
`, t.Name())
	plan, err := pipeline.Parse("dlq.yaml", []byte(spec), nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := (&pipeline.Engine{DataDir: t.TempDir()}).Run(context.Background(), plan, pipeline.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	collected.Lock()
	out, dlq := collected.rows[t.Name()], collected.rows[t.Name()+"-dlq"]
	collected.Unlock()
	wantOut, wantDLQ := 0, 0
	for id := range 300 {
		switch {
		case id%7 == 0:
			wantDLQ++
		case id%(id%7) == 0:
			wantOut++
		}
	}
	if len(out) != wantOut || len(dlq) != wantDLQ || rec.RowsRejected != int64(wantDLQ) {
		t.Fatalf("out %d, dead letters %d, rejected %d; want %d, %d, %d", len(out), len(dlq), rec.RowsRejected, wantOut, wantDLQ, wantDLQ)
	}
	if dlq[0]["_error"] == nil || dlq[0]["_stage"] != "transforms[0].filter" {
		t.Errorf("dead letter %v", dlq[0])
	}
}
