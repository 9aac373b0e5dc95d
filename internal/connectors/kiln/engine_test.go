package kiln

import (
	"context"
	"sync"
	"testing"

	"github.com/kilnai/kiln/internal/pipeline"
)

// A source of inputBatch batches and a counting sink, to run predict
// through the engine.

type batchesConfig struct {
	Batches int `yaml:"batches"`
	Rows    int `yaml:"rows"`
}

type batchesSource struct {
	t   *testing.T
	cfg *batchesConfig
}

func (s *batchesSource) Read(ctx context.Context, emit pipeline.EmitFunc) error {
	for range s.cfg.Batches {
		b := inputBatch(s.t, s.cfg.Rows, 3)
		b.Retain() // the engine takes this reference; inputBatch's cleanup keeps its own
		if err := emit(ctx, b, nil); err != nil {
			return err
		}
	}
	return nil
}

func (s *batchesSource) Close() error { return nil }

type countSink struct {
	mu   *sync.Mutex
	rows *int64
}

func (s *countSink) Write(_ context.Context, b pipeline.Batch) ([]pipeline.RowError, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*s.rows += b.NumRows()
	return nil, nil
}

func (s *countSink) Close(context.Context, error) error { return nil }

var current struct {
	sync.Mutex
	t    *testing.T
	rows int64
}

func init() {
	pipeline.RegisterSource(pipeline.SourceSpec{
		Spec: pipeline.Spec{Name: "kilntest_batches", Config: func() any { return &batchesConfig{} }},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Source, error) {
			return &batchesSource{t: current.t, cfg: cfg.(*batchesConfig)}, nil
		},
	})
	pipeline.RegisterSink(pipeline.SinkSpec{
		Spec: pipeline.Spec{Name: "kilntest_count", Config: func() any { return &struct{}{} }},
		Build: func(context.Context, any, pipeline.Env) (pipeline.Sink, error) {
			return &countSink{mu: &current.Mutex, rows: &current.rows}, nil
		},
	})
}

// TestPredictThroughEngine runs predict in a pipeline: parallel workers,
// null inputs dead-lettered (policy continue), lineage in the run record.
func TestPredictThroughEngine(t *testing.T) {
	mgr, _ := fakeManager(t)
	current.t, current.rows = t, 0
	spec := `
source:
  kilntest_batches: {batches: 6, rows: 40}
transforms:
  - predict: {model: m, inputs: {x: [a, b], k: k}, outputs: {z: zz}, batch_size: 16}
sinks:
  - kilntest_count: {}
on_error: {policy: continue}
settings: {parallelism: 3}
`
	plan, err := pipeline.Parse("predict.yaml", []byte(spec), nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := (&pipeline.Engine{DataDir: t.TempDir(), Models: mgr}).Run(context.Background(), plan, pipeline.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if current.rows != 6*39 || rec.RowsRejected != 6 {
		t.Errorf("%d rows written, %d rejected; want %d and 6 (one null input per batch)", current.rows, rec.RowsRejected, 6*39)
	}
	if len(rec.Lineage) != 1 || rec.Lineage[0] != (pipeline.ModelRef{Model: "m", Version: "1"}) {
		t.Errorf("lineage %v, want [m 1]", rec.Lineage)
	}
}
