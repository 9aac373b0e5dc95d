package distributed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kilnai/kiln/internal/pipeline"
)

// The test components: a splittable source of numbered rows and a sink
// that commits each task's rows under the task id (replacing what an
// earlier delivery of the task committed, as an idempotent sink does).

type partsConfig struct {
	Parts    int    `yaml:"parts" doc:"tasks"`
	Rows     int    `yaml:"rows" doc:"rows per task"`
	FailTask string `yaml:"fail_task" doc:"task whose reads always fail"`
	FailOnce string `yaml:"fail_once" doc:"task whose first read fails"`
}

type partsSource struct {
	cfg  *partsConfig
	part int // -1: the whole source
}

func (s *partsSource) Close() error { return nil }

func (s *partsSource) Split(context.Context) ([]pipeline.Task, error) {
	var out []pipeline.Task
	for i := range s.cfg.Parts {
		b, _ := json.Marshal(i)
		out = append(out, pipeline.Task{ID: fmt.Sprintf("part-%d", i), Spec: b, Weight: int64(s.cfg.Rows)})
	}
	return out, nil
}

var failedOnce sync.Map

func (s *partsSource) OpenTask(_ context.Context, t pipeline.Task) (pipeline.Source, error) {
	var p int
	if err := json.Unmarshal(t.Spec, &p); err != nil {
		return nil, err
	}
	return &partsSource{cfg: s.cfg, part: p}, nil
}

func (s *partsSource) Read(ctx context.Context, emit pipeline.EmitFunc) error {
	if s.part < 0 {
		return errors.New("the test source reads only tasks")
	}
	id := fmt.Sprintf("part-%d", s.part)
	if id == s.cfg.FailTask {
		return errors.New("this part is unreadable")
	}
	if id == s.cfg.FailOnce {
		if _, loaded := failedOnce.LoadOrStore(id, true); !loaded {
			return errors.New("transient failure")
		}
	}
	schema := arrow.NewSchema([]arrow.Field{{Name: "n", Type: arrow.PrimitiveTypes.Int64}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for i := range s.cfg.Rows {
		b.Field(0).(*array.Int64Builder).Append(int64(s.part*s.cfg.Rows + i))
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	return emit(ctx, rec, nil)
}

// committed holds each task's committed rows, by sink label.
var committed sync.Map // label → *sync.Map (task → []int64)

type memSinkConfig struct {
	Label string `yaml:"label" doc:"where rows are committed"`
}

type memSink struct {
	label, task string
	rows        []int64
}

func (s *memSink) Write(_ context.Context, b pipeline.Batch) ([]pipeline.RowError, error) {
	col := b.Column(0).(*array.Int64)
	s.rows = append(s.rows, col.Int64Values()...)
	return nil, nil
}

func (s *memSink) Close(_ context.Context, runErr error) error {
	if runErr != nil {
		return nil
	}
	m, _ := committed.LoadOrStore(s.label, &sync.Map{})
	m.(*sync.Map).Store(s.task, s.rows)
	return nil
}

func init() {
	pipeline.RegisterSource(pipeline.SourceSpec{
		Spec: pipeline.Spec{Name: "test_parts", Summary: "test", Config: func() any { return &partsConfig{Parts: 4, Rows: 100} }},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Source, error) {
			return &partsSource{cfg: cfg.(*partsConfig), part: -1}, nil
		},
	})
	pipeline.RegisterSink(pipeline.SinkSpec{
		Spec: pipeline.Spec{Name: "test_mem", Summary: "test", Config: func() any { return &memSinkConfig{} }},
		Build: func(_ context.Context, cfg any, env pipeline.Env) (pipeline.Sink, error) {
			return &memSink{label: cfg.(*memSinkConfig).Label, task: env.Task}, nil
		},
	})
}

func natsURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("KILN_TEST_NATS")
	if u == "" {
		if os.Getenv("KILN_REQUIRE_SERVICES") == "1" {
			t.Fatal("KILN_TEST_NATS is unset and KILN_REQUIRE_SERVICES=1")
		}
		t.Skip("KILN_TEST_NATS is unset (e.g. nats://127.0.0.1:4222)")
	}
	return u
}

// testQueue is a queue of the test's own, deleted afterwards.
func testQueue(t *testing.T, url string) Queue {
	t.Helper()
	var b [5]byte
	_, _ = rand.Read(b[:])
	q := Queue{Name: "kilntest" + hex.EncodeToString(b[:]), AckWait: 2 * time.Second, MaxDeliver: 3}
	t.Cleanup(func() {
		nc, err := nats.Connect(url)
		if err != nil {
			return
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		_ = js.DeleteStream(context.Background(), q.tasksStream())
		_ = js.DeleteStream(context.Background(), q.resultsStream())
	})
	return q
}

func parse(t *testing.T, src string, label string) (*pipeline.Plan, []byte) {
	t.Helper()
	text := fmt.Sprintf("name: dist\nsource:\n  test_parts: %s\nsinks:\n  - test_mem: {label: %s}\n", src, label)
	plan, err := pipeline.Parse("dist.yaml", []byte(text), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return plan, []byte(text)
}

// startWorkers runs n workers until the test ends.
func startWorkers(t *testing.T, url string, q Queue, n int, runner func(i int) Runner) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			err := Work(ctx, WorkerOptions{URL: url, Queue: q, Runner: runner(i), Name: fmt.Sprintf("w%d", i)})
			if err != nil && ctx.Err() == nil {
				t.Errorf("worker %d: %v", i, err)
			}
		})
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

func engineRunner(int) Runner { return &pipeline.Engine{} }

// rowsOf returns the committed rows of label, checking that each of
// 0..want-1 is there exactly once.
func checkRows(t *testing.T, label string, want int) {
	t.Helper()
	m, ok := committed.Load(label)
	if !ok {
		t.Fatal("nothing committed")
	}
	seen := make([]int, want)
	m.(*sync.Map).Range(func(_, v any) bool {
		for _, n := range v.([]int64) {
			if n < 0 || int(n) >= want {
				t.Errorf("unexpected row %d", n)
				continue
			}
			seen[n]++
		}
		return true
	})
	for n, c := range seen {
		if c != 1 {
			t.Fatalf("row %d committed %d times", n, c)
		}
	}
}

func TestDistributedRun(t *testing.T) {
	url := natsURL(t)
	q := testQueue(t, url)
	startWorkers(t, url, q, 2, engineRunner)
	plan, text := parse(t, "{parts: 6, rows: 50}", "ok")
	var progress strings.Builder
	rec, err := Submit(context.Background(), plan, SubmitOptions{URL: url, Queue: q, Spec: text, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, "ok", 300)
	if rec.Status != pipeline.StatusSucceeded || rec.RowsIn != 300 || rec.RowsOut != 300 {
		t.Fatalf("record %+v", rec)
	}
	if self := pipeline.CurrentOwner(); rec.Owner == nil || *rec.Owner != *self {
		t.Errorf("run owner %+v, want the submitting process %+v", rec.Owner, self)
	}
	var sink *pipeline.StageStats
	for i := range rec.Stages {
		if strings.HasPrefix(rec.Stages[i].Stage, "sinks[0]") {
			sink = &rec.Stages[i]
		}
	}
	if sink == nil || sink.RowsIn != 300 {
		t.Fatalf("stages %+v", rec.Stages)
	}
	if n := strings.Count(progress.String(), " done by "); n != 6 {
		t.Errorf("progress has %d task lines:\n%s", n, progress.String())
	}
}

// A task that fails once is retried (nak with back-off) and the run
// completes with every row once.
func TestTaskRetried(t *testing.T) {
	url := natsURL(t)
	q := testQueue(t, url)
	startWorkers(t, url, q, 2, engineRunner)
	plan, text := parse(t, "{parts: 3, rows: 10, fail_once: part-1}", "retry")
	if _, err := Submit(context.Background(), plan, SubmitOptions{URL: url, Queue: q, Spec: text}); err != nil {
		t.Fatal(err)
	}
	checkRows(t, "retry", 30)
}

// A task failing on every delivery fails the run after MaxDeliver.
func TestTaskFailsForGood(t *testing.T) {
	url := natsURL(t)
	q := testQueue(t, url)
	q.MaxDeliver = 2
	startWorkers(t, url, q, 1, engineRunner)
	plan, text := parse(t, "{parts: 2, rows: 10, fail_task: part-0}", "fail")
	rec, err := Submit(context.Background(), plan, SubmitOptions{URL: url, Queue: q, Spec: text})
	if !errors.Is(err, ErrTaskFailed) || !strings.Contains(err.Error(), "this part is unreadable") || !strings.Contains(err.Error(), "attempt 2") {
		t.Fatalf("err = %v", err)
	}
	if rec == nil || rec.Status != pipeline.StatusFailed {
		t.Fatalf("record %+v", rec)
	}
}

// hangingRunner never finishes its first task and never heart-beats
// beyond the worker's own (it simulates a worker that stopped
// responding: its context is cut, the message is neither acked nor
// nak'ed because the worker's handle sees the run's context alive).
type deadRunner struct {
	started chan string
	once    sync.Once
	inner   Runner
}

func (d *deadRunner) Run(ctx context.Context, plan *pipeline.Plan, o pipeline.RunOptions) (*pipeline.RunRecord, error) {
	first := false
	d.once.Do(func() { first = true })
	if first {
		d.started <- o.Task.ID
		<-ctx.Done() // hangs until the worker is stopped
		return nil, ctx.Err()
	}
	return d.inner.Run(ctx, plan, o)
}

// A worker that stops mid-task gives it back; another worker takes it.
func TestStoppedWorkerGivesTaskBack(t *testing.T) {
	url := natsURL(t)
	q := testQueue(t, url)
	dead := &deadRunner{started: make(chan string, 1), inner: &pipeline.Engine{}}
	wctx, stopA := context.WithCancel(context.Background())
	var awg sync.WaitGroup
	awg.Go(func() {
		_ = Work(wctx, WorkerOptions{URL: url, Queue: q, Runner: dead, Name: "a"})
	})
	defer func() { stopA(); awg.Wait() }()
	plan, text := parse(t, "{parts: 3, rows: 10}", "handover")
	done := make(chan error, 1)
	var rec atomic.Pointer[pipeline.RunRecord]
	go func() {
		r, err := Submit(context.Background(), plan, SubmitOptions{URL: url, Queue: q, Spec: text})
		rec.Store(r)
		done <- err
	}()
	<-dead.started
	stopA()
	awg.Wait()
	startWorkers(t, url, q, 1, engineRunner)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkRows(t, "handover", 30)
}

func TestSplitErrors(t *testing.T) {
	url := natsURL(t)
	q := testQueue(t, url)
	plan, text := parse(t, "{parts: 0}", "none")
	if _, err := Submit(context.Background(), plan, SubmitOptions{URL: url, Queue: q, Spec: text}); err == nil || !strings.Contains(err.Error(), "no tasks") {
		t.Fatalf("err = %v", err)
	}
	if _, err := (Queue{Name: "a.b"}).withDefaults(); err == nil {
		t.Error("queue name with a dot accepted")
	}
}

func TestRetryDelay(t *testing.T) {
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 20: time.Minute} {
		if got := retryDelay(attempt); got != want {
			t.Errorf("attempt %d: %v, want %v", attempt, got, want)
		}
	}
}

// slowRunner makes every task outlast the ack wait and counts runs.
type slowRunner struct {
	inner Runner
	d     time.Duration
	mu    sync.Mutex
	runs  map[string]int
}

func (s *slowRunner) Run(ctx context.Context, plan *pipeline.Plan, o pipeline.RunOptions) (*pipeline.RunRecord, error) {
	s.mu.Lock()
	s.runs[o.Task.ID]++
	s.mu.Unlock()
	select {
	case <-time.After(s.d):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.inner.Run(ctx, plan, o)
}

// Heart-beats keep a task that runs longer than the ack wait from being
// delivered to another worker.
func TestHeartbeatsKeepLongTasks(t *testing.T) {
	url := natsURL(t)
	q := testQueue(t, url)
	q.AckWait = time.Second
	slow := &slowRunner{inner: &pipeline.Engine{}, d: 2500 * time.Millisecond, runs: map[string]int{}}
	startWorkers(t, url, q, 3, func(int) Runner { return slow }) // an idle worker would take a redelivered task
	plan, text := parse(t, "{parts: 2, rows: 5}", "slow")
	var progress strings.Builder
	if _, err := Submit(context.Background(), plan, SubmitOptions{URL: url, Queue: q, Spec: text, Progress: &progress}); err != nil {
		t.Fatal(err)
	}
	checkRows(t, "slow", 10)
	slow.mu.Lock()
	defer slow.mu.Unlock()
	for id, n := range slow.runs {
		if n != 1 {
			t.Errorf("task %s ran %d times", id, n)
		}
	}
	if strings.Count(progress.String(), "(attempt 1,") != 2 {
		t.Errorf("progress:\n%s", progress.String())
	}
}
