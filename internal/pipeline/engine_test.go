package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// memRuns is an in-memory RunStore.
type memRuns struct {
	mu   sync.Mutex
	runs map[string]RunRecord
}

func (m *memRuns) CreateRun(_ context.Context, r *RunRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.runs == nil {
		m.runs = map[string]RunRecord{}
	}
	m.runs[r.ID] = *r
	return nil
}
func (m *memRuns) UpdateRun(ctx context.Context, r *RunRecord) error { return m.CreateRun(ctx, r) }
func (m *memRuns) GetRun(_ context.Context, id string) (*RunRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.runs[id]
	if !ok {
		return nil, ErrRunNotFound
	}
	return &r, nil
}
func (m *memRuns) ListRuns(context.Context, int) ([]*RunRecord, error) { return nil, nil }

var stateSeq int

func newTestState(t *testing.T) (string, *memState) {
	t.Helper()
	stateSeq++
	id := fmt.Sprintf("%s-%d", t.Name(), stateSeq)
	t.Cleanup(func() { testState.Delete(id) })
	return id, newState(id)
}

func mustParse(t *testing.T, src string) *Plan {
	t.Helper()
	p, err := Parse("t.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func seq(lo, hi int, keep func(int) bool) []int64 {
	var out []int64
	for i := lo; i < hi; i++ {
		if keep == nil || keep(i) {
			out = append(out, int64(i))
		}
	}
	return out
}

func sorted(v []int64) []int64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v
}

func TestRunBasic(t *testing.T) {
	tests := []struct {
		name     string
		settings string
		ordered  bool
	}{
		{"parallel", "{parallelism: 4, buffer: 1, max_in_flight: 3}", false},
		{"ordered parallel", "{parallelism: 4, ordered: true, max_in_flight: 5}", true},
		{"single worker", "{parallelism: 1}", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, st := newTestState(t)
			plan := mustParse(t, fmt.Sprintf(`name: basic
source: {test_mem: {state: %[1]s, rows: 1000, batch: 7}}
transforms: [test_filter: 3]
sinks:
  - test_sink: {state: %[1]s, id: a}
  - test_sink: {state: %[1]s, id: b}
settings: %[2]s
`, id, tt.settings))
			runs := &memRuns{}
			e := &Engine{DataDir: t.TempDir(), Runs: runs}
			rec, err := e.Run(context.Background(), plan, RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := seq(0, 1000, func(i int) bool { return i%3 != 0 })
			for _, sink := range []string{"a", "b"} {
				got := st.rows[sink]
				if !tt.ordered {
					got = sorted(got)
				}
				if !slices.Equal(got, want) {
					t.Errorf("sink %s got %d rows, want %d (order matters: %v)", sink, len(got), len(want), tt.ordered)
				}
				if !st.committed[sink] || st.discarded[sink] {
					t.Errorf("sink %s not committed", sink)
				}
			}
			if n := st.acks.Load(); n != 143 {
				t.Errorf("acks = %d, want 143", n)
			}
			if rec.Status != StatusSucceeded || rec.RowsIn != 1000 || rec.RowsOut != int64(len(want)) {
				t.Errorf("record = %+v", rec)
			}
			stored, _ := runs.GetRun(context.Background(), rec.ID)
			if stored.Status != StatusSucceeded || len(stored.Stages) != 4 {
				t.Errorf("stored = %+v", stored)
			}
			if s := stored.Stages[1]; s.Stage != "transforms[0].test_filter" || s.RowsIn != 1000 || s.RowsOut != int64(len(want)) || s.Bytes < int64(len(want))*8 {
				t.Errorf("transform stats = %+v", s)
			}
		})
	}
}

func TestRunDeadLetters(t *testing.T) {
	tests := []struct {
		name      string
		onError   string
		wantErr   string
		wantDLQ   []string
		wantRows  int
		committed bool
	}{
		{"to dead-letter sink", "on_error: {test_sink: {state: %[1]s, id: dlq, dlq: true}}", "",
			[]string{"sinks[0].test_sink|sink refuses 7|7", "transforms[0].test_filter|bad value 5|5"}, 8, true},
		{"continue without sink", "on_error: {policy: continue}", "", nil, 8, true},
		{"stop by default", "", "transforms[0].test_filter rejected 1 rows (on_error policy stop); row 5: bad value 5", nil, -1, false},
		{"explicit stop", "on_error: {sink: {test_sink: {state: %[1]s, id: dlq, dlq: true}}, policy: stop}", "rejected 1 rows", nil, -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, st := newTestState(t)
			src := fmt.Sprintf(`source: {test_mem: {state: %[1]s, rows: 10, batch: 10}}
transforms: [test_filter: {reject: 5}]
sinks: [{test_sink: {state: %[1]s, id: a, reject: 7}}]
`+tt.onError+"\n", id)
			e := &Engine{DataDir: t.TempDir()}
			rec, err := e.Run(context.Background(), mustParse(t, src), RunOptions{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if rec.Status != StatusFailed || !st.discarded["a"] || st.committed["a"] {
					t.Errorf("status %s, sink committed %v", rec.Status, st.committed)
				}
				if st.ackErrs.Load() != 1 {
					t.Errorf("failed batch not acked with the error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(st.rows["a"]) != tt.wantRows {
				t.Errorf("rows = %v", st.rows["a"])
			}
			slices.Sort(st.dlq)
			if !slices.Equal(st.dlq, tt.wantDLQ) {
				t.Errorf("dead letters = %q, want %q", st.dlq, tt.wantDLQ)
			}
			if rec.RowsRejected != 2 {
				t.Errorf("rejected = %d", rec.RowsRejected)
			}
		})
	}
}

func TestRunFailures(t *testing.T) {
	tests := []struct {
		name, transforms, sinkExtra, sourceExtra, want string
	}{
		{"transform error", "[test_filter: {fail: 500}]", "", "", "transforms[0].test_filter: cannot transform 500"},
		{"sink error", "[]", ", fail: 600", "", "sinks[0].test_sink: sink cannot write 600"},
		{"source error", "[]", "", ", fail_after: 3", "source test_mem: source broke"},
		{"transform panic", "[test_filter: {panic: 300}]", "", "", "transforms: internal error (panic): boom at 300"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, st := newTestState(t)
			src := fmt.Sprintf(`source: {test_mem: {state: %[1]s, rows: 1000, batch: 10%[4]s}}
transforms: %[2]s
sinks: [{test_sink: {state: %[1]s, id: a%[3]s}}]
settings: {parallelism: 2, max_in_flight: 4}
`, id, tt.transforms, tt.sinkExtra, tt.sourceExtra)
			e := &Engine{DataDir: t.TempDir()}
			rec, err := e.Run(context.Background(), mustParse(t, src), RunOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if rec.Status != StatusFailed || rec.Error == "" {
				t.Errorf("record = %+v", rec)
			}
			if !st.discarded["a"] || st.committed["a"] {
				t.Errorf("sink not discarded")
			}
			// Every emitted batch is acknowledged exactly once.
			if st.acks.Load()+st.ackErrs.Load() == 0 {
				t.Errorf("no acknowledgements")
			}
		})
	}
}

func TestRunCancelled(t *testing.T) {
	id, st := newTestState(t)
	plan := mustParse(t, fmt.Sprintf(`source: {test_mem: {state: %[1]s, rows: 100000000, batch: 10}}
sinks: [{test_sink: {state: %[1]s, id: a}}]
`, id))
	ctx, cancel := context.WithCancel(context.Background())
	runs := &memRuns{}
	e := &Engine{DataDir: t.TempDir(), Runs: runs}
	var rec *RunRecord
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		rec, err = e.Run(ctx, plan, RunOptions{ID: "live", RecordEvery: time.Millisecond})
	}()
	// While it runs, the record shows its live counters.
	for {
		r, gerr := runs.GetRun(context.Background(), "live")
		if gerr == nil && r.Status == StatusRunning && r.RowsIn > 0 && len(r.Stages) == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if err == nil || rec.Status != StatusCancelled {
		t.Fatalf("err %v status %s", err, rec.Status)
	}
	if !st.discarded["a"] {
		t.Error("sink not discarded")
	}
}

func TestRunCache(t *testing.T) {
	id, st := newTestState(t)
	dir := t.TempDir()
	src := fmt.Sprintf(`source: {test_mem: {state: %[1]s, rows: 50, batch: 8}}
transforms: [test_filter: {mod: 2, reject: 7}]
sinks: [{test_sink: {state: %[1]s, id: a}}]
on_error: {test_sink: {state: %[1]s, id: dlq, dlq: true}}
cache: {ttl: 1h}
`, id)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	want := seq(0, 50, func(i int) bool { return i%2 != 0 && i != 7 })
	run := func(opts RunOptions) *RunRecord {
		t.Helper()
		// A new engine each time: the cache survives restarts.
		e := &Engine{DataDir: dir, Now: clock}
		st.rows["a"] = nil
		st.dlq = nil
		rec, err := e.Run(context.Background(), mustParse(t, src), opts)
		if err != nil {
			t.Fatal(err)
		}
		// The dead letters are reproduced too.
		if len(st.dlq) != 1 || st.dlq[0] != "transforms[0].test_filter|bad value 7|7" {
			t.Fatalf("dead letters = %q", st.dlq)
		}
		if !slices.Equal(sorted(st.rows["a"]), want) {
			t.Fatalf("sink got %v", st.rows["a"])
		}
		return rec
	}
	steps := []struct {
		name      string
		advance   time.Duration
		fp        string
		opts      RunOptions
		status    string
		wantReads int64
	}{
		{"first run misses", 0, "v1", RunOptions{}, StatusSucceeded, 1},
		{"second run hits without reading", 30 * time.Minute, "v1", RunOptions{}, StatusCached, 1},
		{"no-cache forces a run", 0, "v1", RunOptions{NoCache: true}, StatusSucceeded, 2},
		{"fingerprint change misses", 0, "v2", RunOptions{}, StatusSucceeded, 3},
		{"hit again", 0, "v2", RunOptions{}, StatusCached, 3},
		{"expired entry misses", 61 * time.Minute, "v2", RunOptions{}, StatusSucceeded, 4},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			now = now.Add(s.advance)
			st.fp = s.fp
			rec := run(s.opts)
			if rec.Status != s.status || st.reads.Load() != s.wantReads {
				t.Errorf("status %s reads %d, want %s %d", rec.Status, st.reads.Load(), s.status, s.wantReads)
			}
			if rec.CacheKey == "" {
				t.Error("no cache key")
			}
		})
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "pipeline-cache"))
	if len(ents) != 2 {
		t.Errorf("cache entries = %d, want 2 (v1 and the fresh v2)", len(ents))
	}
}

func TestRunCacheNeedsFingerprint(t *testing.T) {
	id, st := newTestState(t)
	src := fmt.Sprintf(`source: {test_mem: {state: %[1]s, rows: 5, no_fingerprint: true}}
sinks: [{test_sink: {state: %[1]s, id: a}}]
cache: {ttl: 1h}
`, id)
	e := &Engine{DataDir: t.TempDir()}
	for range 2 {
		rec, err := e.Run(context.Background(), mustParse(t, src), RunOptions{})
		if err != nil || rec.Status != StatusSucceeded || rec.CacheKey != "" {
			t.Fatalf("rec %+v err %v", rec, err)
		}
	}
	if st.reads.Load() != 2 {
		t.Errorf("reads = %d", st.reads.Load())
	}
}

func TestRunFitAndParamsFromRun(t *testing.T) {
	id, st := newTestState(t)
	runs := &memRuns{}
	e := &Engine{DataDir: t.TempDir(), Runs: runs}
	// Training: rows 0..9 deduplicated by test_seen (stateful) then centred
	// on the fitted mean 4.5 → 4 (int).
	train := fmt.Sprintf(`source: {test_mem: {state: %[1]s, rows: 10, batch: 3}}
transforms: [test_seen: {}, test_center: {}]
sinks: [{test_sink: {state: %[1]s, id: train}}]
`, id)
	rec, err := e.Run(context.Background(), mustParse(t, train), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.Params["transforms[1].test_center"]["mean"]; got != 4.5 {
		t.Fatalf("params = %v", rec.Params)
	}
	if !slices.Equal(sorted(st.rows["train"]), seq(-4, 6, nil)) {
		t.Fatalf("train rows = %v (the fitting pass must not leave test_seen's state behind)", st.rows["train"])
	}
	// Scoring reuses the mean of the training run without fitting: a
	// once-only source would otherwise be refused.
	score := fmt.Sprintf(`source: {test_mem: {state: %[1]s, rows: 3, once: true}}
transforms: [test_center: {}]
sinks: [{test_sink: {state: %[1]s, id: score}}]
settings: {params_from_run: %[2]s}
`, id, rec.ID)
	if _, err := e.Run(context.Background(), mustParse(t, score), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sorted(st.rows["score"]), []int64{-4, -3, -2}) {
		t.Errorf("score rows = %v", st.rows["score"])
	}
	// Without params, a once-only source cannot be fitted.
	noParams := strings.Replace(score, "settings: {params_from_run: "+rec.ID+"}", "", 1)
	if _, err := e.Run(context.Background(), mustParse(t, noParams), RunOptions{}); err == nil || !strings.Contains(err.Error(), "can be read only once") {
		t.Errorf("err = %v", err)
	}
	unknown := strings.Replace(score, rec.ID, "nope", 1)
	if _, err := e.Run(context.Background(), mustParse(t, unknown), RunOptions{}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("err = %v", err)
	}
}

func TestRunLineageAndProgress(t *testing.T) {
	id, _ := newTestState(t)
	src := fmt.Sprintf(`name: lin
source: {test_mem: {state: %[1]s, rows: 20, batch: 5}}
transforms: [test_model: {model: iris}]
sinks: [{test_sink: {state: %[1]s, id: a}}]
`, id)
	var bar bytes.Buffer
	e := &Engine{DataDir: t.TempDir()}
	rec, err := e.Run(context.Background(), mustParse(t, src), RunOptions{Progress: &bar})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Lineage) != 1 || rec.Lineage[0] != (ModelRef{Model: "iris", Version: "1"}) {
		t.Errorf("lineage = %v", rec.Lineage)
	}
	if !strings.Contains(bar.String(), "lin  20 rows") || !strings.HasSuffix(bar.String(), "\n") {
		t.Errorf("progress = %q", bar.String())
	}
}

func TestGroupDigits(t *testing.T) {
	for in, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -12345: "-12,345"} {
		if got := groupDigits(in); got != want {
			t.Errorf("groupDigits(%d) = %q", in, got)
		}
	}
}

func TestRunTask(t *testing.T) {
	id, st := newTestState(t)
	src := fmt.Sprintf(`source: {test_mem: {state: %[1]s, rows: 35}}
transforms: [test_filter: 2]
sinks: [{test_sink: {state: %[1]s, id: a}}]
cache: {ttl: 1h}
`, id)
	plan := mustParse(t, src)
	e := &Engine{DataDir: t.TempDir()}
	rec, err := e.Run(context.Background(), plan, RunOptions{Task: &Task{ID: "t20", Spec: []byte("20 30")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := sorted(st.rows["at20"]); !slices.Equal(got, seq(20, 30, func(i int) bool { return i%2 != 0 })) {
		t.Errorf("task rows = %v", got)
	}
	if rec.CacheKey != "" || rec.RowsIn != 10 {
		t.Errorf("record = %+v", rec)
	}
	fit := mustParse(t, fmt.Sprintf(`source: {test_mem: {state: %[1]s, rows: 35}}
transforms: [test_center: {}]
sinks: [{test_sink: {state: %[1]s, id: b}}]
`, id))
	if _, err := e.Run(context.Background(), fit, RunOptions{Task: &Task{ID: "t0", Spec: []byte("0 10")}}); err == nil || !strings.Contains(err.Error(), "cannot make") {
		t.Errorf("fitting in a task: %v", err)
	}
}

// TestRunBoundsInFlight checks the memory bound: never more than
// max_in_flight batches between the source and the sinks (a batch is
// counted from just before emit until its acknowledgement).
func TestRunBoundsInFlight(t *testing.T) {
	for _, limit := range []int{1, 3, 8} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			id, st := newTestState(t)
			plan := mustParse(t, fmt.Sprintf(`source: {test_mem: {state: %[1]s, rows: 5000, batch: 10}}
transforms: [test_filter: 7]
sinks: [{test_sink: {state: %[1]s, id: a}}, {test_sink: {state: %[1]s, id: b}}]
settings: {parallelism: 4, buffer: 2, max_in_flight: %[2]d, ordered: true}
`, id, limit))
			if _, err := (&Engine{DataDir: t.TempDir()}).Run(context.Background(), plan, RunOptions{}); err != nil {
				t.Fatal(err)
			}
			// +1: the source counts a batch just before emit blocks on the limit.
			if m := st.maxLive.Load(); m > int64(limit)+1 {
				t.Errorf("%d batches in flight, limit %d", m, limit)
			}
			if len(st.rows["a"]) != 5000-715 {
				t.Errorf("rows = %d", len(st.rows["a"]))
			}
		})
	}
}

type discardSink struct{}

func (discardSink) Write(context.Context, Batch) ([]RowError, error) { return nil, nil }
func (discardSink) Close(context.Context, error) error               { return nil }

func init() {
	RegisterSink(SinkSpec{
		Spec:  Spec{Name: "test_discard", Summary: "drops everything", Config: func() any { return &struct{}{} }},
		Build: func(context.Context, any, Env) (Sink, error) { return discardSink{}, nil },
	})
}

// BenchmarkEngineOverhead measures the engine's own cost per batch: a
// source of 8192-row batches straight into a sink that drops them.
func BenchmarkEngineOverhead(b *testing.B) {
	id := "bench"
	st := newState(id)
	defer testState.Delete(id)
	const rows = 8192 * 200
	plan, err := Parse("b.yaml", []byte(fmt.Sprintf("source: {test_mem: {state: %s, rows: %d, batch: 8192}}\nsinks: [test_discard: {}]\n", id, rows)), nil)
	if err != nil {
		b.Fatal(err)
	}
	e := &Engine{DataDir: b.TempDir()}
	b.ResetTimer()
	for range b.N {
		if _, err := e.Run(context.Background(), plan, RunOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
	_ = st
}

func TestPruneCache(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &resultCache{dir: cacheDir(dir), now: func() time.Time { return now }}
	store := func(key string, ttl time.Duration) {
		w, err := c.writer(key, ttl, "r-"+key)
		if err != nil {
			t.Fatal(err)
		}
		b := intBatch(0, 3)
		defer b.Release()
		if _, err := w.Write(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	store("old", time.Hour)
	store("fresh", 48*time.Hour)
	abandoned, err := c.writer("x", time.Hour, "crashed")
	if err != nil {
		t.Fatal(err)
	}
	old := now.Add(-48 * time.Hour)
	if err := os.Chtimes(abandoned.tmp, old, old); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Hour)
	e := &Engine{DataDir: dir, Now: func() time.Time { return now }}
	if err := e.PruneCache(e.logger()); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(cacheDir(dir))
	var names []string
	for _, de := range ents {
		names = append(names, de.Name())
	}
	if !slices.Equal(names, []string{"fresh"}) {
		t.Errorf("after pruning: %v", names)
	}
}
