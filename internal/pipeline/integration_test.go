package pipeline_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	_ "github.com/kilnai/kiln/internal/connectors/transform"
	"github.com/kilnai/kiln/internal/pipeline"
	"github.com/kilnai/kiln/internal/pipeline/runstore"
)

// The engine with the real transforms: a people source (id, age as
// string, country) and a collecting sink.

type peopleConfig struct {
	Once bool `yaml:"once" doc:"not rereadable"`
}

type people struct{ once bool }

var peopleSchema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "age", Type: arrow.BinaryTypes.String},
	{Name: "country", Type: arrow.BinaryTypes.String},
}, nil)

var peopleRows = []struct {
	id      int64
	age     string
	country string
}{{1, "20", "fr"}, {2, "30", "de"}, {3, "abc", "fr"}, {4, "40", "it"}, {5, "50", "de"}, {6, "60", "fr"}}

func (p people) Read(ctx context.Context, emit pipeline.EmitFunc) error {
	for lo := 0; lo < len(peopleRows); lo += 2 {
		ib := array.NewInt64Builder(memory.DefaultAllocator)
		ab := array.NewStringBuilder(memory.DefaultAllocator)
		cb := array.NewStringBuilder(memory.DefaultAllocator)
		for _, r := range peopleRows[lo : lo+2] {
			ib.Append(r.id)
			ab.Append(r.age)
			cb.Append(r.country)
		}
		cols := []arrow.Array{ib.NewArray(), ab.NewArray(), cb.NewArray()}
		b := array.NewRecordBatch(peopleSchema, cols, 2)
		for _, c := range cols {
			c.Release()
		}
		ib.Release()
		ab.Release()
		cb.Release()
		if err := emit(ctx, b, nil); err != nil {
			return err
		}
	}
	return nil
}
func (people) Close() error       { return nil }
func (p people) Rereadable() bool { return !p.once }

type collectConfig struct {
	ID string `yaml:"id" doc:"collection"`
}

var collected = struct {
	sync.Mutex
	rows map[string][]map[string]any
}{rows: map[string][]map[string]any{}}

type collect struct{ id string }

func (c collect) Write(_ context.Context, b pipeline.Batch) ([]pipeline.RowError, error) {
	collected.Lock()
	defer collected.Unlock()
	for i := range int(b.NumRows()) {
		row := map[string]any{}
		for j, f := range b.Schema().Fields() {
			col := b.Column(j)
			if col.IsNull(i) {
				row[f.Name] = nil
				continue
			}
			switch a := col.(type) {
			case *array.Int64:
				row[f.Name] = a.Value(i)
			case *array.Float64:
				row[f.Name] = a.Value(i)
			case *array.String:
				row[f.Name] = a.Value(i)
			default:
				row[f.Name] = col.ValueStr(i)
			}
		}
		collected.rows[c.id] = append(collected.rows[c.id], row)
	}
	return nil, nil
}
func (collect) Close(context.Context, error) error { return nil }

func init() {
	pipeline.RegisterSource(pipeline.SourceSpec{
		Spec: pipeline.Spec{Name: "it_people", Summary: "test people", Config: func() any { return &peopleConfig{} }},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Source, error) {
			return people{once: cfg.(*peopleConfig).Once}, nil
		},
	})
	pipeline.RegisterSink(pipeline.SinkSpec{
		Spec: pipeline.Spec{Name: "it_collect", Summary: "collect rows", Config: func() any { return &collectConfig{} }},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Sink, error) {
			return collect{id: cfg.(*collectConfig).ID}, nil
		},
	})
}

var runSeq int

func rowsOf(id string) []map[string]any {
	collected.Lock()
	defer collected.Unlock()
	return collected.rows[id]
}

func TestEngineWithTransforms(t *testing.T) {
	dir := t.TempDir()
	store, err := runstore.Open(context.Background(), runstore.DefaultDSN(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	e := &pipeline.Engine{DataDir: dir, Runs: store}
	run := func(spec string) *pipeline.RunRecord {
		t.Helper()
		plan, err := pipeline.Parse("it.yaml", []byte(spec), nil)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := e.Run(context.Background(), plan, pipeline.RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	runSeq++
	id := fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "_"), runSeq)
	train := run(fmt.Sprintf(`name: train
source: {it_people: {}}
transforms:
  - cast: {age: float64}
  - filter: "age >= 25"
  - standardize: {columns: [age]}
  - one_hot: {column: country}
sinks: [{it_collect: {id: %[1]s-train}}]
on_error: {it_collect: {id: %[1]s-dlq}}
`, id))
	// Ages 30, 40, 50, 60 pass: mean 45, population std sqrt(125).
	got := slices.Clone(rowsOf(id + "-train"))
	if len(got) != 4 || train.RowsIn != 6 || train.RowsOut != 4 || train.RowsRejected != 1 {
		t.Fatalf("train: %d rows, record %+v", len(got), train)
	}
	std := math.Sqrt(125)
	for _, r := range got {
		if r["id"] == int64(2) {
			if z := r["age"].(float64); math.Abs(z-(30-45)/std) > 1e-9 {
				t.Errorf("z(30) = %v", z)
			}
		}
	}
	if _, ok := got[0]["country_de"]; !ok {
		t.Errorf("one_hot columns missing: %v", got[0])
	}
	dlq := rowsOf(id + "-dlq")
	if len(dlq) != 1 || dlq[0]["id"] != int64(3) || dlq[0][pipeline.StageColumn] != "transforms[0].cast" || dlq[0][pipeline.ErrorColumn] == "" {
		t.Errorf("dead letters = %v", dlq)
	}
	if len(train.Params) != 2 {
		t.Errorf("params = %v", train.Params)
	}

	// Scoring on a once-only source with the training statistics.
	run(fmt.Sprintf(`name: score
source: {it_people: {once: true}}
transforms:
  - cast: {age: float64}
  - filter: "age >= 25"
  - standardize: {columns: [age]}
  - one_hot: {column: country}
sinks: [{it_collect: {id: %[1]s-score}}]
on_error: {policy: continue}
settings: {params_from_run: %[2]s}
`, id, train.ID))
	score := slices.Clone(rowsOf(id + "-score"))
	if len(score) != 4 {
		t.Fatalf("score rows = %v", score)
	}
	byID := func(rows []map[string]any) {
		sort.Slice(rows, func(i, j int) bool { return rows[i]["id"].(int64) < rows[j]["id"].(int64) })
	}
	byID(score)
	byID(got)
	for i := range score {
		if score[i]["age"] != got[i]["age"] || score[i]["country_it"] != got[i]["country_it"] {
			t.Errorf("row %d: scoring %v, training %v", i, score[i], got[i])
		}
	}
}
