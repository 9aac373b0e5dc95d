package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Test-only components: an in-memory source of int64 rows (x = 0..n-1), a
// collecting sink, and a few transforms. State shared with the tests lives
// in the configs' handles, looked up by id.

var testState sync.Map // id → *memState

type memState struct {
	mu        sync.Mutex
	reads     atomic.Int64
	acks      atomic.Int64
	ackErrs   atomic.Int64
	live      atomic.Int64 // emitted, not yet acknowledged
	maxLive   atomic.Int64
	rows      map[string][]int64 // sink id → x values written
	committed map[string]bool
	discarded map[string]bool
	dlq       []string // "_stage|_error|x"
	fp        string
	built     atomic.Int64 // test_closer instances built
	closed    atomic.Int64 // test_closer Close calls
}

func newState(id string) *memState {
	s := &memState{rows: map[string][]int64{}, committed: map[string]bool{}, discarded: map[string]bool{}, fp: "v1"}
	testState.Store(id, s)
	return s
}

func stateOf(id string) *memState {
	v, ok := testState.Load(id)
	if !ok {
		panic("no test state " + id)
	}
	return v.(*memState)
}

type memSourceConfig struct {
	State     string `yaml:"state" required:"true" doc:"test state id"`
	Rows      int    `yaml:"rows" doc:"rows to emit"`
	Batch     int    `yaml:"batch" doc:"rows per batch"`
	Once      bool   `yaml:"once" doc:"not rereadable"`
	NoFP      bool   `yaml:"no_fingerprint"`
	FailAfter int    `yaml:"fail_after" doc:"fail after this many batches (0 = never)"`
}

type memSource struct {
	cfg *memSourceConfig
	st  *memState
	env Env
}

type noFPSource struct{ s *memSource }

func (n noFPSource) Read(ctx context.Context, emit EmitFunc) error { return n.s.Read(ctx, emit) }
func (n noFPSource) Close() error                                  { return nil }

func (s *memSource) Read(ctx context.Context, emit EmitFunc) error {
	s.st.reads.Add(1)
	bs := s.cfg.Batch
	if bs == 0 {
		bs = s.env.BatchSize
	}
	n := 0
	for lo := 0; lo < s.cfg.Rows; lo += bs {
		if s.cfg.FailAfter > 0 && n == s.cfg.FailAfter {
			return errors.New("source broke")
		}
		hi := min(lo+bs, s.cfg.Rows)
		b := intBatch(lo, hi)
		defer b.Release()
		if l := s.st.live.Add(1); l > s.st.maxLive.Load() {
			s.st.maxLive.Store(l)
		}
		err := emit(ctx, b, func(ctx context.Context, err error) error {
			s.st.live.Add(-1)
			if err != nil {
				s.st.ackErrs.Add(1)
			} else {
				s.st.acks.Add(1)
			}
			return nil
		})
		if err != nil {
			return err
		}
		n++
	}
	return nil
}

func (s *memSource) Close() error { return nil }

// Split makes one task per 10 rows; OpenTask reads rows [lo, hi).
func (s *memSource) Split(context.Context) ([]Task, error) {
	var ts []Task
	for lo := 0; lo < s.cfg.Rows; lo += 10 {
		ts = append(ts, Task{ID: fmt.Sprintf("t%d", lo), Spec: []byte(fmt.Sprintf("%d %d", lo, min(lo+10, s.cfg.Rows)))})
	}
	return ts, nil
}

func (s *memSource) OpenTask(_ context.Context, t Task) (Source, error) {
	var lo, hi int
	if _, err := fmt.Sscanf(string(t.Spec), "%d %d", &lo, &hi); err != nil {
		return nil, err
	}
	return &rangeSource{lo: lo, hi: hi, st: s.st}, nil
}

type rangeSource struct {
	lo, hi int
	st     *memState
}

func (r *rangeSource) Read(ctx context.Context, emit EmitFunc) error {
	r.st.reads.Add(1)
	b := intBatch(r.lo, r.hi)
	defer b.Release()
	return emit(ctx, b, nil)
}
func (r *rangeSource) Close() error { return nil }

func (s *memSource) Rereadable() bool { return !s.cfg.Once }

func (s *memSource) Fingerprint(context.Context) (string, error) {
	return fmt.Sprintf("%d/%d/%s", s.cfg.Rows, s.cfg.Batch, s.st.fp), nil
}

var xSchema = arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil)

func intBatch(lo, hi int) Batch {
	b := array.NewInt64Builder(memory.DefaultAllocator)
	defer b.Release()
	for i := lo; i < hi; i++ {
		b.Append(int64(i))
	}
	col := b.NewArray()
	defer col.Release()
	return array.NewRecordBatch(xSchema, []arrow.Array{col}, int64(hi-lo))
}

func xs(b Batch) []int64 {
	for i, f := range b.Schema().Fields() {
		if f.Name == "x" {
			return append([]int64(nil), b.Column(i).(*array.Int64).Int64Values()...)
		}
	}
	return nil
}

type memSinkConfig struct {
	State  string `yaml:"state" required:"true"`
	ID     string `yaml:"id" required:"true"`
	Reject int64  `yaml:"reject" doc:"refuse rows with this x (as RowErrors); -1 none"`
	Fail   int64  `yaml:"fail" doc:"fail the write of a batch holding this x; -1 none"`
	DLQ    bool   `yaml:"dlq" doc:"record dead letters"`
}

type memSink struct {
	cfg  *memSinkConfig
	st   *memState
	task string
}

func (s *memSink) Write(_ context.Context, b Batch) ([]RowError, error) {
	var rej []RowError
	vals := xs(b)
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	if s.cfg.DLQ {
		var stage, msg *array.String
		for i, f := range b.Schema().Fields() {
			switch f.Name {
			case StageColumn:
				stage = b.Column(i).(*array.String)
			case ErrorColumn:
				msg = b.Column(i).(*array.String)
			}
		}
		for i := range int(b.NumRows()) {
			s.st.dlq = append(s.st.dlq, fmt.Sprintf("%s|%s|%d", stage.Value(i), msg.Value(i), vals[i]))
		}
		return nil, nil
	}
	for i, v := range vals {
		if v == s.cfg.Fail {
			return nil, fmt.Errorf("sink cannot write %d", v)
		}
		if v == s.cfg.Reject {
			rej = append(rej, RowError{Row: i, Err: fmt.Errorf("sink refuses %d", v)})
			continue
		}
		s.st.rows[s.cfg.ID+s.task] = append(s.st.rows[s.cfg.ID+s.task], v)
	}
	return rej, nil
}

func (s *memSink) Close(_ context.Context, runErr error) error {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	if runErr != nil {
		s.st.discarded[s.cfg.ID] = true
	} else {
		s.st.committed[s.cfg.ID] = true
	}
	return nil
}

// test_filter keeps rows with x % mod != 0 and rejects x == reject.
type filterConfig struct {
	Mod    int64 `yaml:"mod"`
	Reject int64 `yaml:"reject"`
	Fail   int64 `yaml:"fail"`
	Panic  int64 `yaml:"panic"`
}

func (c *filterConfig) Validate() error {
	if c.Mod < 0 {
		return errors.New("mod must not be negative")
	}
	return nil
}

type filterT struct{ cfg *filterConfig }

func (t *filterT) Apply(_ context.Context, in Batch) (Batch, []RowError, error) {
	b := array.NewInt64Builder(memory.DefaultAllocator)
	defer b.Release()
	var rej []RowError
	for i, v := range xs(in) {
		if v == t.cfg.Fail {
			return nil, nil, fmt.Errorf("cannot transform %d", v)
		}
		if v == t.cfg.Panic {
			panic(fmt.Sprintf("boom at %d", v))
		}
		if v == t.cfg.Reject {
			rej = append(rej, RowError{Row: i, Err: fmt.Errorf("bad value %d", v)})
			continue
		}
		if t.cfg.Mod > 0 && v%t.cfg.Mod == 0 {
			continue
		}
		b.Append(v)
	}
	col := b.NewArray()
	defer col.Release()
	return array.NewRecordBatch(xSchema, []arrow.Array{col}, int64(col.Len())), rej, nil
}

// test_center subtracts the mean of x (fitted) — a Fitter and ParamLoader.
type centerConfig struct {
	Mean *float64 `yaml:"mean"`
}

type centerT struct {
	mean       float64
	fitted     bool
	sum, count float64
}

func (t *centerT) NeedsFit() bool { return !t.fitted }
func (t *centerT) Fit(_ context.Context, in Batch) error {
	for _, v := range xs(in) {
		t.sum += float64(v)
		t.count++
	}
	return nil
}
func (t *centerT) FitDone(context.Context) error {
	if t.count == 0 {
		return errors.New("no rows to fit on")
	}
	t.mean, t.fitted = t.sum/t.count, true
	return nil
}
func (t *centerT) Params() map[string]any { return map[string]any{"mean": t.mean} }
func (t *centerT) LoadParams(p map[string]any) error {
	m, ok := p["mean"].(float64)
	if !ok {
		return errors.New("mean missing")
	}
	t.mean, t.fitted = m, true
	return nil
}
func (t *centerT) Apply(_ context.Context, in Batch) (Batch, []RowError, error) {
	b := array.NewInt64Builder(memory.DefaultAllocator)
	defer b.Release()
	for _, v := range xs(in) {
		b.Append(v - int64(t.mean))
	}
	col := b.NewArray()
	defer col.Release()
	return array.NewRecordBatch(xSchema, []arrow.Array{col}, int64(col.Len())), nil, nil
}

// test_seen is Ordered and stateful: drops x it has seen before.
type seenConfig struct{}
type seenT struct{ seen map[int64]bool }

func (t *seenT) Ordered() bool { return true }
func (t *seenT) Apply(_ context.Context, in Batch) (Batch, []RowError, error) {
	b := array.NewInt64Builder(memory.DefaultAllocator)
	defer b.Release()
	for _, v := range xs(in) {
		if !t.seen[v] {
			t.seen[v] = true
			b.Append(v)
		}
	}
	col := b.NewArray()
	defer col.Release()
	return array.NewRecordBatch(xSchema, []arrow.Array{col}, int64(col.Len())), nil, nil
}

// test_model reports lineage.
type modelConfig struct {
	Model string `yaml:"model" required:"true" doc:"model name"`
}
type modelT struct {
	cfg *modelConfig
	env Env
}

func (t *modelT) Apply(_ context.Context, in Batch) (Batch, []RowError, error) {
	t.env.Lineage.UsedModel(t.cfg.Model, "1")
	in.Retain()
	return in, nil, nil
}

// test_closer passes batches through and holds a resource (io.Closer).
type closerConfig struct {
	State string `yaml:"state" required:"true" doc:"test state id"`
}
type closerT struct {
	st     *memState
	closed atomic.Bool
}

func (t *closerT) Apply(_ context.Context, in Batch) (Batch, []RowError, error) {
	if t.closed.Load() {
		return nil, nil, errors.New("used after Close")
	}
	in.Retain()
	return in, nil, nil
}

func (t *closerT) Close() error {
	if t.closed.Swap(true) {
		return errors.New("closed twice")
	}
	t.st.closed.Add(1)
	return nil
}

func init() {
	RegisterTransform(TransformSpec{
		Spec: Spec{Name: "test_closer", Summary: "holds a resource", Config: func() any { return &closerConfig{} }},
		Build: func(_ context.Context, cfg any, _ Env) (Transform, error) {
			st := stateOf(cfg.(*closerConfig).State)
			st.built.Add(1)
			return &closerT{st: st}, nil
		},
	})
	RegisterSource(SourceSpec{
		Spec: Spec{Name: "test_mem", Summary: "in-memory test rows", Config: func() any { return &memSourceConfig{Rows: 10, Batch: 3} },
			Examples: []string{"{state: s, rows: 5}"}},
		Build: func(_ context.Context, cfg any, env Env) (Source, error) {
			c := cfg.(*memSourceConfig)
			s := &memSource{cfg: c, st: stateOf(c.State), env: env}
			if c.NoFP {
				return noFPSource{s}, nil
			}
			return s, nil
		},
	})
	RegisterSink(SinkSpec{
		Spec: Spec{Name: "test_sink", Summary: "collecting test sink", Config: func() any { return &memSinkConfig{Reject: -1 << 62, Fail: -1 << 62} }},
		Build: func(_ context.Context, cfg any, env Env) (Sink, error) {
			c := cfg.(*memSinkConfig)
			return &memSink{cfg: c, st: stateOf(c.State), task: env.Task}, nil
		},
	})
	RegisterTransform(TransformSpec{
		Spec: Spec{Name: "test_filter", Summary: "drop multiples of mod", Scalar: "mod", Config: func() any { return &filterConfig{Reject: -1, Fail: -1, Panic: -1} }},
		Build: func(_ context.Context, cfg any, _ Env) (Transform, error) {
			return &filterT{cfg: cfg.(*filterConfig)}, nil
		},
	})
	RegisterTransform(TransformSpec{
		Spec: Spec{Name: "test_center", Summary: "subtract the fitted mean", Config: func() any { return &centerConfig{} }},
		Build: func(_ context.Context, cfg any, _ Env) (Transform, error) {
			c := cfg.(*centerConfig)
			if c.Mean != nil {
				return &centerT{mean: *c.Mean, fitted: true}, nil
			}
			return &centerT{}, nil
		},
	})
	RegisterTransform(TransformSpec{
		Spec: Spec{Name: "test_seen", Summary: "drop repeated x", Config: func() any { return &seenConfig{} }},
		Build: func(context.Context, any, Env) (Transform, error) {
			return &seenT{seen: map[int64]bool{}}, nil
		},
	})
	RegisterTransform(TransformSpec{
		Spec: Spec{Name: "test_model", Summary: "report lineage", Config: func() any { return &modelConfig{} }},
		Build: func(_ context.Context, cfg any, env Env) (Transform, error) {
			return &modelT{cfg: cfg.(*modelConfig), env: env}, nil
		},
	})
}
