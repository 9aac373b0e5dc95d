package batching

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitLimit bounds every wait for something that must happen; reaching it is
// a failure (a hang), never a speed measurement.
const waitLimit = 10 * time.Second

// call is one recorded exec call.
type call struct {
	ctx      context.Context
	instance int
	values   []string
	rows     int
}

// fakeExec is a gated execute function: each call is recorded and announced
// on started, then waits for a token on gate (or for gate to be closed, or for
// its ctx to end). It answers each item with its value plus suffix.
type fakeExec struct {
	suffix  string
	gate    chan struct{}
	started chan call

	mu    sync.Mutex
	calls []call
}

func newFakeExec() *fakeExec {
	return &fakeExec{suffix: "!", gate: make(chan struct{}), started: make(chan call, 1024)}
}

func (f *fakeExec) exec(ctx context.Context, instance int, items []Item[string]) ([]string, error) {
	c := call{ctx: ctx, instance: instance}
	for _, it := range items {
		c.values = append(c.values, it.Value)
		c.rows += it.Rows
	}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	f.started <- c
	select {
	case <-f.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	outs := make([]string, len(items))
	for i, it := range items {
		outs[i] = it.Value + f.suffix
	}
	return outs, nil
}

// open lets every current and future call through.
func (f *fakeExec) open() { close(f.gate) }

// release lets one call through.
func (f *fakeExec) release(t *testing.T) {
	t.Helper()
	select {
	case f.gate <- struct{}{}:
	case <-time.After(waitLimit):
		t.Fatal("no exec call to release")
	}
}

func (f *fakeExec) waitStarted(t *testing.T) call {
	t.Helper()
	select {
	case c := <-f.started:
		return c
	case <-time.After(waitLimit):
		t.Fatal("exec was not called")
		return call{}
	}
}

func (f *fakeExec) recorded() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// waitCalls waits until exec has been called n times.
func (f *fakeExec) waitCalls(t *testing.T, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d exec calls", n), func() bool { return len(f.recorded()) >= n })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	limit := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(limit) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

type result struct {
	value string
	info  Info
	err   error
}

func submitAsync(ctx context.Context, b *Batcher[string, string], v string, o Options) <-chan result {
	ch := make(chan result, 1)
	go func() {
		out, info, err := b.Submit(ctx, v, o)
		ch <- result{out, info, err}
	}()
	return ch
}

func await(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitLimit):
		t.Fatal("Submit did not return")
		return result{}
	}
}

// enqueue submits one request and waits until it is queued, so that requests
// enqueued one after another arrive in that order.
func enqueue(t *testing.T, ctx context.Context, b *Batcher[string, string], v string, o Options) <-chan result {
	t.Helper()
	n := b.QueueLen()
	ch := submitAsync(ctx, b, v, o)
	waitFor(t, v+" queued", func() bool { return b.QueueLen() == n+1 })
	return ch
}

func closeBatcher[In, Out any](t *testing.T, b *Batcher[In, Out]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func mustNew(t *testing.T, cfg Config, f *fakeExec, opts ...Option) *Batcher[string, string] {
	t.Helper()
	b, err := New(cfg, f.exec, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b
}

// occupy submits a blocker request and waits until the (single) instance is
// executing it, so that later requests accumulate in the queue.
func occupy(t *testing.T, b *Batcher[string, string], f *fakeExec) <-chan result {
	t.Helper()
	// A full batch by itself, so it is dispatched whatever the delay.
	ch := submitAsync(context.Background(), b, "blocker", Options{ShapeKey: "blocker", Rows: max(b.maxBatch, 1)})
	f.waitStarted(t)
	return ch
}

func TestNewValidation(t *testing.T) {
	f := newFakeExec()
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero config", Config{}, true},
		{"full config", Config{MaxBatchSize: 8, PreferredBatchSizes: []int{4, 8}, MaxQueueDelay: time.Millisecond,
			MaxQueueSize: 10, PriorityLevels: 3, DefaultPriority: 2, DefaultTimeout: time.Second, PreserveOrdering: true, Instances: 4}, true},
		{"negative max batch", Config{MaxBatchSize: -1}, false},
		{"negative delay", Config{MaxQueueDelay: -1}, false},
		{"negative queue size", Config{MaxQueueSize: -1}, false},
		{"negative levels", Config{PriorityLevels: -1}, false},
		{"default priority above levels", Config{PriorityLevels: 2, DefaultPriority: 3}, false},
		{"default priority with one level", Config{DefaultPriority: 1}, true},
		{"negative default priority", Config{DefaultPriority: -1}, false},
		{"negative default timeout", Config{DefaultTimeout: -time.Second}, false},
		{"negative instances", Config{Instances: -2}, false},
		{"preferred above max", Config{MaxBatchSize: 4, PreferredBatchSizes: []int{8}}, false},
		{"preferred zero", Config{MaxBatchSize: 4, PreferredBatchSizes: []int{0}}, false},
		{"preferred without batching", Config{PreferredBatchSizes: []int{1}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New(tt.cfg, f.exec)
			if tt.ok {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				closeBatcher(t, b)
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("New error = %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := New[string, string](Config{}, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("New with nil exec: error = %v, want ErrInvalid", err)
	}
}

func TestSubmitValidation(t *testing.T) {
	f := newFakeExec()
	f.open()
	b := mustNew(t, Config{MaxBatchSize: 8, PriorityLevels: 2}, f)
	defer closeBatcher(t, b)

	tests := []struct {
		name    string
		opts    Options
		want    error
		message []string
	}{
		{"too many rows", Options{Rows: 9}, ErrTooLarge, []string{"9", "8"}},
		{"negative rows", Options{Rows: -1}, ErrInvalid, nil},
		{"priority above levels", Options{Priority: 3}, ErrInvalid, []string{"3"}},
		{"negative priority", Options{Priority: -1}, ErrInvalid, nil},
		{"negative timeout", Options{Timeout: -time.Second}, ErrInvalid, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := b.Submit(context.Background(), "x", tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			for _, m := range tt.message {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %s", err, m)
				}
			}
		})
	}
	if len(f.recorded()) != 0 {
		t.Errorf("exec was called for rejected requests")
	}

	t.Run("max rows accepted", func(t *testing.T) {
		if _, _, err := b.Submit(context.Background(), "x", Options{Rows: 8, Priority: 1}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("no batching ignores rows", func(t *testing.T) {
		nb := mustNew(t, Config{}, f)
		defer closeBatcher(t, nb)
		if _, _, err := nb.Submit(context.Background(), "x", Options{Rows: 100}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("context already done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, _, err := b.Submit(ctx, "x", Options{})
		if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) {
			t.Fatalf("error = %v, want ErrCanceled and context.Canceled", err)
		}
	})
}

// req is one request of a batch-formation case.
type req struct {
	v        string
	rows     int
	shape    string
	priority int
}

func TestBatchFormation(t *testing.T) {
	const hour = time.Hour // a delay that never expires during a test
	ones := func(shape string, vs ...string) []req {
		var rs []req
		for _, v := range vs {
			rs = append(rs, req{v: v, rows: 1, shape: shape})
		}
		return rs
	}
	tests := []struct {
		name string
		cfg  Config
		reqs []req
		// closeAfter, if > 0, is the number of batches (after the blocker)
		// to wait for before closing the batcher, which flushes the rest.
		closeAfter int
		want       [][]string
	}{
		{
			name: "everything fits",
			cfg:  Config{MaxBatchSize: 8},
			reqs: []req{{v: "a", rows: 1}, {v: "b", rows: 2}, {v: "c", rows: 3}},
			want: [][]string{{"a", "b", "c"}},
		},
		{
			name: "max size cuts",
			cfg:  Config{MaxBatchSize: 4},
			reqs: ones("", "a", "b", "c", "d", "e", "f"),
			want: [][]string{{"a", "b", "c", "d"}, {"e", "f"}},
		},
		{
			name: "full batch dispatches despite delay",
			cfg:  Config{MaxBatchSize: 4, MaxQueueDelay: hour},
			reqs: ones("", "a", "b", "c", "d", "e"), closeAfter: 1,
			want: [][]string{{"a", "b", "c", "d"}, {"e"}},
		},
		{
			name: "next item would exceed max",
			cfg:  Config{MaxBatchSize: 8, MaxQueueDelay: hour},
			reqs: []req{{v: "a", rows: 4}, {v: "b", rows: 3}, {v: "c", rows: 2}}, closeAfter: 1,
			want: [][]string{{"a", "b"}, {"c"}},
		},
		{
			name: "largest achievable preferred size",
			cfg:  Config{MaxBatchSize: 8, PreferredBatchSizes: []int{2, 4}, MaxQueueDelay: hour},
			reqs: ones("", "a", "b", "c", "d", "e"), closeAfter: 1,
			want: [][]string{{"a", "b", "c", "d"}, {"e"}},
		},
		{
			name: "smaller preferred size",
			cfg:  Config{MaxBatchSize: 8, PreferredBatchSizes: []int{2, 4}, MaxQueueDelay: hour},
			reqs: ones("", "a", "b", "c"), closeAfter: 1,
			want: [][]string{{"a", "b"}, {"c"}},
		},
		{
			name: "preferred size with zero delay",
			cfg:  Config{MaxBatchSize: 8, PreferredBatchSizes: []int{2}},
			reqs: ones("", "a", "b", "c"),
			want: [][]string{{"a", "b"}, {"c"}},
		},
		{
			name: "max beats preferred",
			cfg:  Config{MaxBatchSize: 4, PreferredBatchSizes: []int{2}, MaxQueueDelay: hour},
			reqs: ones("", "a", "b", "c", "d"),
			want: [][]string{{"a", "b", "c", "d"}},
		},
		{
			name: "shapes never mix",
			cfg:  Config{MaxBatchSize: 8},
			reqs: []req{{v: "a1", shape: "A"}, {v: "a2", shape: "A"}, {v: "b1", shape: "B"}, {v: "a3", shape: "A"}, {v: "b2", shape: "B"}, {v: "b3", shape: "B"}},
			want: [][]string{{"a1", "a2"}, {"b1"}, {"a3"}, {"b2", "b3"}},
		},
		{
			name: "another shape ends the batch despite delay",
			cfg:  Config{MaxBatchSize: 8, MaxQueueDelay: hour},
			reqs: []req{{v: "a1", shape: "A"}, {v: "a2", shape: "A"}, {v: "b1", shape: "B"}}, closeAfter: 1,
			want: [][]string{{"a1", "a2"}, {"b1"}},
		},
		{
			name: "priorities order a batch",
			cfg:  Config{MaxBatchSize: 8, PriorityLevels: 3},
			reqs: []req{{v: "x3", priority: 3}, {v: "y2", priority: 2}, {v: "z1", priority: 1}, {v: "w3", priority: 3}, {v: "v1", priority: 1}},
			want: [][]string{{"z1", "v1", "y2", "x3", "w3"}},
		},
		{
			name: "priorities order batches",
			cfg:  Config{MaxBatchSize: 1, PriorityLevels: 3},
			reqs: []req{{v: "x3", priority: 3}, {v: "y2", priority: 2}, {v: "z1", priority: 1}, {v: "w3", priority: 3}, {v: "v1", priority: 1}},
			want: [][]string{{"z1"}, {"v1"}, {"y2"}, {"x3"}, {"w3"}},
		},
		{
			name: "default priority is the lowest level",
			cfg:  Config{MaxBatchSize: 1, PriorityLevels: 2},
			reqs: []req{{v: "d1"}, {v: "p2", priority: 2}, {v: "p1", priority: 1}, {v: "d2"}},
			want: [][]string{{"p1"}, {"d1"}, {"p2"}, {"d2"}},
		},
		{
			name: "configured default priority",
			cfg:  Config{MaxBatchSize: 1, PriorityLevels: 3, DefaultPriority: 1},
			reqs: []req{{v: "p2", priority: 2}, {v: "d1"}},
			want: [][]string{{"d1"}, {"p2"}},
		},
		{
			name: "no batching",
			cfg:  Config{MaxBatchSize: 0},
			reqs: []req{{v: "a", rows: 3}, {v: "b", rows: 5}},
			want: [][]string{{"a"}, {"b"}},
		},
		{
			name: "batches span priority levels",
			cfg:  Config{MaxBatchSize: 3, PriorityLevels: 2},
			reqs: []req{{v: "a2", priority: 2}, {v: "b2", priority: 2}, {v: "c1", priority: 1}, {v: "d2", priority: 2}},
			want: [][]string{{"c1", "a2", "b2"}, {"d2"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeExec()
			b := mustNew(t, tt.cfg, f)
			blocker := occupy(t, b, f)
			var results []<-chan result
			for _, r := range tt.reqs {
				results = append(results, enqueue(t, context.Background(), b, r.v, Options{Rows: r.rows, ShapeKey: r.shape, Priority: r.priority}))
			}
			f.open()
			if tt.closeAfter > 0 {
				// Close flushes the batch that waits for the delay.
				f.waitCalls(t, 1+tt.closeAfter)
				closeBatcher(t, b)
			} else {
				defer closeBatcher(t, b)
			}
			if r := await(t, blocker); r.err != nil {
				t.Fatalf("blocker: %v", r.err)
			}
			for i, ch := range results {
				r := await(t, ch)
				if want := tt.reqs[i].v + "!"; r.err != nil || r.value != want {
					t.Errorf("request %s: got %q, %v; want %q", tt.reqs[i].v, r.value, r.err, want)
				}
			}
			var got [][]string
			for _, c := range f.recorded()[1:] {
				got = append(got, c.values)
			}
			if !slices.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("batches = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestIssueExample: one request of 1 row and one of 8 rows, queued together,
// execute as one call with 9 rows.
func TestIssueExample(t *testing.T) {
	f := newFakeExec()
	b := mustNew(t, Config{MaxBatchSize: 64, MaxQueueDelay: time.Millisecond}, f)
	defer closeBatcher(t, b)
	blocker := occupy(t, b, f)
	small := enqueue(t, context.Background(), b, "small", Options{Rows: 1, ShapeKey: "x"})
	big := enqueue(t, context.Background(), b, "big", Options{Rows: 8, ShapeKey: "x"})
	f.open()
	await(t, blocker)
	rs, rb := await(t, small), await(t, big)
	if rs.err != nil || rb.err != nil {
		t.Fatalf("errors: %v, %v", rs.err, rb.err)
	}
	calls := f.recorded()[1:]
	if len(calls) != 1 || calls[0].rows != 9 || len(calls[0].values) != 2 {
		t.Fatalf("exec calls after the blocker = %+v, want one call with 9 rows", calls)
	}
	for _, r := range []result{rs, rb} {
		if r.info.BatchRows != 9 || r.info.BatchItems != 2 || r.info.Instance != 0 || r.info.QueueTime <= 0 {
			t.Errorf("info = %+v, want 9 rows, 2 items, instance 0, positive queue time", r.info)
		}
	}
}

func TestDelayDispatchesLoneRequest(t *testing.T) {
	for _, delay := range []time.Duration{0, time.Microsecond, 5 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			f := newFakeExec()
			f.open()
			b := mustNew(t, Config{MaxBatchSize: 8, PreferredBatchSizes: []int{4}, MaxQueueDelay: delay}, f)
			defer closeBatcher(t, b)
			r := await(t, submitAsync(context.Background(), b, "lone", Options{}))
			if r.err != nil || r.value != "lone!" || r.info.BatchItems != 1 {
				t.Fatalf("got %+v", r)
			}
		})
	}
}

func TestInstances(t *testing.T) {
	f := newFakeExec()
	b := mustNew(t, Config{MaxBatchSize: 4, Instances: 3}, f)
	defer closeBatcher(t, b)
	var chans []<-chan result
	seen := map[int]bool{}
	for i := range 3 {
		chans = append(chans, submitAsync(context.Background(), b, fmt.Sprint(i), Options{}))
		seen[f.waitStarted(t).instance] = true // the request runs while the others still run
	}
	if len(seen) != 3 {
		t.Fatalf("instances used = %v, want 3 distinct", seen)
	}
	// All instances busy: requests accumulate and then run as one batch.
	var queued []<-chan result
	for i := range 4 {
		queued = append(queued, enqueue(t, context.Background(), b, fmt.Sprint("q", i), Options{}))
	}
	f.open()
	got := map[int]bool{}
	for _, ch := range chans {
		r := await(t, ch)
		if r.err != nil {
			t.Fatal(r.err)
		}
		got[r.info.Instance] = true
	}
	if len(got) != 3 {
		t.Errorf("Info.Instance values = %v, want 3 distinct", got)
	}
	for _, ch := range queued {
		if r := await(t, ch); r.err != nil || r.info.BatchItems != 4 {
			t.Errorf("queued request: %+v, want a batch of 4", r)
		}
	}
}

func TestResults(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name    string
		exec    ExecFunc[string, string]
		wantErr error
	}{
		{"exact per item", func(_ context.Context, _ int, items []Item[string]) ([]string, error) {
			outs := make([]string, len(items))
			for i, it := range items {
				outs[i] = strings.ToUpper(it.Value)
			}
			return outs, nil
		}, nil},
		{"too few results", func(_ context.Context, _ int, items []Item[string]) ([]string, error) {
			return make([]string, len(items)-1), nil
		}, ErrInternal},
		{"too many results", func(_ context.Context, _ int, items []Item[string]) ([]string, error) {
			return make([]string, len(items)+1), nil
		}, ErrInternal},
		{"exec error", func(context.Context, int, []Item[string]) ([]string, error) {
			return nil, errBoom
		}, errBoom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeExec()
			gated := func(ctx context.Context, inst int, items []Item[string]) ([]string, error) {
				if items[0].Value == "blocker" {
					return f.exec(ctx, inst, items)
				}
				return tt.exec(ctx, inst, items)
			}
			b, err := New(Config{MaxBatchSize: 8}, gated)
			if err != nil {
				t.Fatal(err)
			}
			defer closeBatcher(t, b)
			blocker := occupy(t, b, f)
			vals := []string{"a", "b", "c", "d"}
			var chans []<-chan result
			for _, v := range vals {
				chans = append(chans, enqueue(t, context.Background(), b, v, Options{}))
			}
			f.open()
			await(t, blocker)
			for i, ch := range chans {
				r := await(t, ch)
				if tt.wantErr != nil {
					if !errors.Is(r.err, tt.wantErr) {
						t.Errorf("%s: error = %v, want %v", vals[i], r.err, tt.wantErr)
					}
					continue
				}
				if r.err != nil || r.value != strings.ToUpper(vals[i]) {
					t.Errorf("%s: got %q, %v", vals[i], r.value, r.err)
				}
				if r.info.BatchItems != 4 {
					t.Errorf("%s: info %+v, want a batch of 4", vals[i], r.info)
				}
			}
		})
	}
}

// TestExpiredNeverExecuted: requests whose context ends or whose queue
// timeout passes while queued return at once, while the instance is still
// busy, and never reach exec.
func TestExpiredNeverExecuted(t *testing.T) {
	f := newFakeExec()
	b := mustNew(t, Config{MaxBatchSize: 8, PriorityLevels: 2}, f)
	defer closeBatcher(t, b)
	blocker := occupy(t, b, f)

	cancelCtx, cancel := context.WithCancel(context.Background())
	deadlineCtx, cancelDeadline := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancelDeadline()
	canceled := enqueue(t, cancelCtx, b, "canceled", Options{})
	keep1 := enqueue(t, context.Background(), b, "keep1", Options{})
	keep2 := enqueue(t, context.Background(), b, "keep2", Options{Timeout: time.Hour})
	timedOut := submitAsync(context.Background(), b, "timeout", Options{Timeout: time.Millisecond, Priority: 1})
	pastDeadline := submitAsync(deadlineCtx, b, "deadline", Options{})
	cancel()

	tests := []struct {
		name string
		ch   <-chan result
		want []error
	}{
		{"canceled", canceled, []error{ErrCanceled, context.Canceled}},
		{"queue timeout", timedOut, []error{ErrDeadline, context.DeadlineExceeded}},
		{"context deadline", pastDeadline, []error{ErrDeadline, context.DeadlineExceeded}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := await(t, tt.ch) // returns while the instance is still blocked
			for _, w := range tt.want {
				if !errors.Is(r.err, w) {
					t.Errorf("error = %v, want %v", r.err, w)
				}
			}
		})
	}
	if n := b.QueueLen(); n != 2 {
		t.Errorf("QueueLen = %d, want 2", n)
	}
	f.open()
	await(t, blocker)
	for _, ch := range []<-chan result{keep1, keep2} {
		if r := await(t, ch); r.err != nil {
			t.Errorf("kept request: %v", r.err)
		}
	}
	var seen []string
	for _, c := range f.recorded() {
		seen = append(seen, c.values...)
	}
	if want := []string{"blocker", "keep1", "keep2"}; !slices.Equal(seen, want) {
		t.Errorf("exec saw %v, want %v", seen, want)
	}
}

// TestExpiredDroppedByWorker: a request that expired while the instance was
// busy is dropped when the batch is formed, even before its Submit notices.
func TestExpiredDroppedByWorker(t *testing.T) {
	f := newFakeExec()
	b := mustNew(t, Config{MaxBatchSize: 8}, f)
	defer closeBatcher(t, b)
	blocker := occupy(t, b, f)
	// A context whose deadline is already in the past but that never
	// reports done, so only the worker's check can catch it.
	stale := enqueue(t, staleCtx{Context: context.Background(), deadline: time.Now().Add(-time.Second)}, b, "stale", Options{})
	keep := enqueue(t, context.Background(), b, "keep", Options{})
	f.open()
	await(t, blocker)
	if r := await(t, stale); !errors.Is(r.err, ErrDeadline) || !errors.Is(r.err, context.DeadlineExceeded) {
		t.Errorf("stale: error = %v, want ErrDeadline", r.err)
	}
	if r := await(t, keep); r.err != nil || r.info.BatchItems != 1 {
		t.Errorf("keep: %+v", r)
	}
	for _, c := range f.recorded() {
		if slices.Contains(c.values, "stale") {
			t.Errorf("exec saw an expired request: %v", c.values)
		}
	}
}

// staleCtx reports a deadline but is never done.
type staleCtx struct {
	context.Context
	deadline time.Time
}

func (c staleCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func TestCancelWhileExecuting(t *testing.T) {
	f := newFakeExec()
	b := mustNew(t, Config{MaxBatchSize: 8}, f)
	defer closeBatcher(t, b)
	blocker := occupy(t, b, f)
	ctxA, cancelA := context.WithCancel(context.Background())
	ctxB, cancelB := context.WithCancel(context.Background())
	defer cancelB()
	a := enqueue(t, ctxA, b, "a", Options{})
	bb := enqueue(t, ctxB, b, "b", Options{})
	f.release(t) // the blocker
	await(t, blocker)
	c := f.waitStarted(t)
	if !slices.Equal(c.values, []string{"a", "b"}) {
		t.Fatalf("batch = %v", c.values)
	}

	cancelA()
	r := await(t, a) // returns while exec is still running
	if !errors.Is(r.err, ErrCanceled) || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("a: error = %v, want ErrCanceled", r.err)
	}
	if err := c.ctx.Err(); err != nil {
		t.Fatalf("exec context ended when only one of two callers gave up: %v", err)
	}

	cancelB()
	select {
	case <-c.ctx.Done():
	case <-time.After(waitLimit):
		t.Fatal("exec context not cancelled after every caller gave up")
	}
	if r := await(t, bb); !errors.Is(r.err, ErrCanceled) {
		t.Fatalf("b: error = %v, want ErrCanceled", r.err)
	}
}

func TestDeadlineWhileExecuting(t *testing.T) {
	f := newFakeExec()
	b := mustNew(t, Config{MaxBatchSize: 8}, f)
	defer closeBatcher(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	ch := submitAsync(ctx, b, "slow", Options{})
	f.waitStarted(t)
	r := await(t, ch)
	if !errors.Is(r.err, ErrDeadline) || !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want ErrDeadline", r.err)
	}
}

// TestQueueTimeoutOnlyWhileQueued: Options.Timeout bounds queue time; an
// executing request keeps running past it (Triton semantics).
func TestQueueTimeoutOnlyWhileQueued(t *testing.T) {
	f := newFakeExec()
	b := mustNew(t, Config{MaxBatchSize: 8, DefaultTimeout: 50 * time.Millisecond}, f)
	defer closeBatcher(t, b)
	ch := submitAsync(context.Background(), b, "x", Options{})
	f.waitStarted(t)
	time.Sleep(100 * time.Millisecond) // let the queue timeout pass during execution
	f.open()
	if r := await(t, ch); r.err != nil || r.value != "x!" {
		t.Fatalf("got %+v", r)
	}
}

func TestQueueFull(t *testing.T) {
	f := newFakeExec()
	b := mustNew(t, Config{MaxBatchSize: 8, MaxQueueSize: 2}, f)
	defer closeBatcher(t, b)
	blocker := occupy(t, b, f)
	q1 := enqueue(t, context.Background(), b, "q1", Options{})
	q2 := enqueue(t, context.Background(), b, "q2", Options{})
	_, _, err := b.Submit(context.Background(), "q3", Options{})
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third queued request: error = %v, want ErrQueueFull", err)
	}
	f.open()
	for _, ch := range []<-chan result{blocker, q1, q2} {
		if r := await(t, ch); r.err != nil {
			t.Error(r.err)
		}
	}
	if _, _, err := b.Submit(context.Background(), "q4", Options{}); err != nil {
		t.Errorf("after the queue drained: %v", err)
	}
}

// TestPreserveOrdering: with two instances finishing in reverse order, the
// second request is answered only after the first.
func TestPreserveOrdering(t *testing.T) {
	gates := map[string]chan struct{}{"first": make(chan struct{}), "second": make(chan struct{})}
	started := make(chan string, 2)
	exec := func(_ context.Context, _ int, items []Item[string]) ([]string, error) {
		started <- items[0].Value
		<-gates[items[0].Value]
		return []string{items[0].Value + "!"}, nil
	}
	b, err := New(Config{MaxBatchSize: 1, Instances: 2, PreserveOrdering: true}, exec)
	if err != nil {
		t.Fatal(err)
	}
	defer closeBatcher(t, b)
	waitStarted := func(want string) {
		t.Helper()
		select {
		case got := <-started:
			if got != want {
				t.Fatalf("started %s, want %s", got, want)
			}
		case <-time.After(waitLimit):
			t.Fatalf("%s did not start", want)
		}
	}

	first := submitAsync(context.Background(), b, "first", Options{})
	waitStarted("first")
	second := submitAsync(context.Background(), b, "second", Options{})
	waitStarted("second")

	close(gates["second"])
	waitFor(t, "second completed", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.order[b.orderHead+1].complete
	})
	select {
	case r := <-second:
		t.Fatalf("second answered before first: %+v", r)
	case <-time.After(20 * time.Millisecond):
	}
	close(gates["first"])
	for _, ch := range []<-chan result{first, second} {
		if r := await(t, ch); r.err != nil {
			t.Error(r.err)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if n := len(b.order) - b.orderHead; n != 0 {
		t.Errorf("%d undelivered answers left", n)
	}
}

// TestPreserveOrderingSkipsAbandoned: a cancelled request does not hold back
// the answers after it.
func TestPreserveOrderingSkipsAbandoned(t *testing.T) {
	f := newFakeExec()
	b := mustNew(t, Config{MaxBatchSize: 1, PreserveOrdering: true}, f)
	defer closeBatcher(t, b)
	blocker := occupy(t, b, f)
	ctx, cancel := context.WithCancel(context.Background())
	gone := enqueue(t, ctx, b, "gone", Options{})
	after := enqueue(t, context.Background(), b, "after", Options{})
	cancel()
	if r := await(t, gone); !errors.Is(r.err, ErrCanceled) {
		t.Fatalf("gone: %v", r.err)
	}
	f.open()
	for _, ch := range []<-chan result{blocker, after} {
		if r := await(t, ch); r.err != nil {
			t.Error(r.err)
		}
	}
}

func TestClose(t *testing.T) {
	t.Run("drains queued requests", func(t *testing.T) {
		f := newFakeExec()
		b := mustNew(t, Config{MaxBatchSize: 2, MaxQueueDelay: time.Hour, Instances: 1}, f)
		blocker := occupy(t, b, f)
		var chans []<-chan result
		for _, v := range []string{"a", "b", "c"} {
			chans = append(chans, enqueue(t, context.Background(), b, v, Options{}))
		}
		closed := make(chan error, 1)
		go func() { closed <- b.Close(context.Background()) }()
		waitFor(t, "closed", func() bool {
			b.mu.Lock()
			defer b.mu.Unlock()
			return b.closed
		})
		if _, _, err := b.Submit(context.Background(), "late", Options{}); !errors.Is(err, ErrClosed) {
			t.Errorf("Submit after Close: error = %v, want ErrClosed", err)
		}
		f.open()
		for _, ch := range append(chans, blocker) {
			if r := await(t, ch); r.err != nil {
				t.Error(r.err)
			}
		}
		select {
		case err := <-closed:
			if err != nil {
				t.Fatalf("Close: %v", err)
			}
		case <-time.After(waitLimit):
			t.Fatal("Close did not return")
		}
		<-b.done // every worker exited
		if err := b.Close(context.Background()); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})

	t.Run("bounded by ctx", func(t *testing.T) {
		f := newFakeExec()
		b := mustNew(t, Config{MaxBatchSize: 1, PreserveOrdering: true}, f)
		blocker := occupy(t, b, f)
		q1 := enqueue(t, context.Background(), b, "q1", Options{})
		q2 := enqueue(t, context.Background(), b, "q2", Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		if err := b.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Close: error = %v, want context.DeadlineExceeded", err)
		}
		for _, ch := range []<-chan result{q1, q2} {
			if r := await(t, ch); !errors.Is(r.err, ErrClosed) {
				t.Errorf("queued request: error = %v, want ErrClosed", r.err)
			}
		}
		// The running batch's context was cancelled, so exec returned.
		if r := await(t, blocker); !errors.Is(r.err, context.Canceled) {
			t.Errorf("running request: error = %v, want context.Canceled from exec", r.err)
		}
		closeBatcher(t, b) // waits for the workers
		if got := len(f.recorded()); got != 1 {
			t.Errorf("exec calls = %d, want 1", got)
		}
	})
}

type countingObserver struct {
	batches, rows, items atomic.Int64
	mu                   sync.Mutex
	rejected             []error
}

func (o *countingObserver) Batch(rows, items, _ int) {
	o.batches.Add(1)
	o.rows.Add(int64(rows))
	o.items.Add(int64(items))
}

func (o *countingObserver) Rejected(err error) {
	o.mu.Lock()
	o.rejected = append(o.rejected, err)
	o.mu.Unlock()
}

func TestObserver(t *testing.T) {
	f := newFakeExec()
	obs := &countingObserver{}
	b := mustNew(t, Config{MaxBatchSize: 4, MaxQueueSize: 3}, f, WithObserver(obs))
	blocker := occupy(t, b, f)
	a := enqueue(t, context.Background(), b, "a", Options{Rows: 2})
	c := enqueue(t, context.Background(), b, "c", Options{Rows: 2})
	ctx, cancel := context.WithCancel(context.Background())
	d := enqueue(t, ctx, b, "d", Options{})
	_, _, _ = b.Submit(context.Background(), "full", Options{})
	_, _, _ = b.Submit(context.Background(), "big", Options{Rows: 5})
	cancel()
	await(t, d)
	f.open()
	for _, ch := range []<-chan result{blocker, a, c} {
		await(t, ch)
	}
	closeBatcher(t, b)
	_, _, _ = b.Submit(context.Background(), "closed", Options{})

	if got := obs.batches.Load(); got != 2 {
		t.Errorf("batches = %d, want 2", got)
	}
	if got := obs.rows.Load(); got != 8 {
		t.Errorf("rows = %d, want 8", got)
	}
	if got := obs.items.Load(); got != 3 {
		t.Errorf("items = %d, want 3", got)
	}
	want := []error{ErrQueueFull, ErrTooLarge, ErrCanceled, ErrClosed}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.rejected) != len(want) {
		t.Fatalf("rejected = %v, want %v", obs.rejected, want)
	}
	for _, w := range want {
		if !slices.ContainsFunc(obs.rejected, func(err error) bool { return errors.Is(err, w) }) {
			t.Errorf("rejected = %v, missing %v", obs.rejected, w)
		}
	}
}

// stressValue carries what exec needs to check a batch.
type stressValue struct {
	id    string
	shape string
	rows  int
}

func TestStress(t *testing.T) {
	for _, preserve := range []bool{false, true} {
		t.Run(fmt.Sprintf("preserve=%v", preserve), func(t *testing.T) {
			t.Parallel()
			const (
				goroutines = 32
				perG       = 200
				maxBatch   = 8
			)
			var bad atomic.Value
			var executed atomic.Int64
			exec := func(ctx context.Context, _ int, items []Item[stressValue]) ([]string, error) {
				rows := 0
				for _, it := range items {
					rows += it.Rows
					if it.Value.shape != items[0].Value.shape {
						bad.Store(fmt.Sprintf("mixed shapes in a batch: %+v", items))
					}
					if it.Rows != it.Value.rows {
						bad.Store(fmt.Sprintf("rows mismatch: %+v", it))
					}
				}
				if rows > maxBatch {
					bad.Store(fmt.Sprintf("batch of %d rows", rows))
				}
				executed.Add(int64(len(items)))
				if rand.IntN(4) == 0 {
					time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond)
				}
				outs := make([]string, len(items))
				for i, it := range items {
					outs[i] = it.Value.id
				}
				return outs, nil
			}
			b, err := New(Config{
				MaxBatchSize: maxBatch, PreferredBatchSizes: []int{4}, MaxQueueDelay: 100 * time.Microsecond,
				PriorityLevels: 3, Instances: 3, PreserveOrdering: preserve,
			}, exec)
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			var ok, failed atomic.Int64
			for g := range goroutines {
				wg.Go(func() {
					for i := range perG {
						v := stressValue{
							id:    fmt.Sprintf("%d/%d", g, i),
							shape: []string{"a", "b", "c"}[rand.IntN(3)],
							rows:  1 + rand.IntN(4),
						}
						ctx, cancel := context.Background(), context.CancelFunc(func() {})
						switch rand.IntN(8) {
						case 0:
							ctx, cancel = context.WithTimeout(ctx, time.Duration(rand.IntN(200))*time.Microsecond)
						case 1:
							ctx, cancel = context.WithCancel(ctx)
							time.AfterFunc(time.Duration(rand.IntN(200))*time.Microsecond, cancel)
						}
						out, _, err := b.Submit(ctx, v, Options{Rows: v.rows, ShapeKey: v.shape, Priority: rand.IntN(4)})
						switch {
						case err == nil && out == v.id:
							ok.Add(1)
						case err == nil:
							bad.Store(fmt.Sprintf("request %s got %q", v.id, out))
						case (errors.Is(err, ErrCanceled) || errors.Is(err, ErrDeadline)) && ctxEnded(ctx):
							failed.Add(1)
						default:
							bad.Store(fmt.Sprintf("request %s: unexpected error %v (ctx %v)", v.id, err, ctx.Err()))
						}
						cancel()
					}
				})
			}
			wg.Wait()
			closeBatcher(t, b)
			if msg := bad.Load(); msg != nil {
				t.Fatal(msg)
			}
			if got := ok.Load() + failed.Load(); got != goroutines*perG {
				t.Fatalf("answered %d of %d requests", got, goroutines*perG)
			}
			if ok.Load() == 0 || executed.Load() < ok.Load() {
				t.Fatalf("ok = %d, executed = %d", ok.Load(), executed.Load())
			}
			if n := b.QueueLen(); n != 0 {
				t.Fatalf("QueueLen after Close = %d", n)
			}
		})
	}
}

// ctxEnded reports whether ctx is done or its deadline has passed (the
// batcher may act on a deadline before ctx's own timer fires).
func ctxEnded(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ctx.Err() != nil || ok && !time.Now().Before(d)
}
