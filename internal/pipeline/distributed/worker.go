package distributed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kilnai/kiln/internal/pipeline"
)

// Runner runs a plan (*pipeline.Engine is one); the worker runs each task
// with RunOptions.Task set.
type Runner interface {
	Run(ctx context.Context, plan *pipeline.Plan, opts pipeline.RunOptions) (*pipeline.RunRecord, error)
}

// WorkerOptions configure Work.
type WorkerOptions struct {
	// URL of the NATS server.
	URL   string
	Queue Queue
	// Runner runs the tasks (an Engine whose Models serve predict steps).
	Runner Runner
	// Concurrency is how many tasks run at once (default 1).
	Concurrency int
	// Name identifies the worker in task results (default host:pid).
	Name string
	// Lookup resolves the spec's ${VAR}s (default os.LookupEnv).
	Lookup pipeline.LookupFunc
	Logger *slog.Logger
}

// fetchWait is how long one pull for a task waits.
const fetchWait = time.Second

// Work pulls tasks and runs them until ctx ends. A task interrupted by
// ctx is nak'ed so that another worker takes it at once.
func Work(ctx context.Context, o WorkerOptions) error {
	q, err := o.Queue.withDefaults()
	if err != nil {
		return err
	}
	if o.Runner == nil {
		return errors.New("worker: no runner")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.Name == "" {
		h, _ := os.Hostname()
		o.Name = h + ":" + strconv.Itoa(os.Getpid())
	}
	if o.Lookup == nil {
		o.Lookup = os.LookupEnv
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("worker", o.Name)
	nc, js, err := connect(o.URL, "kiln worker "+o.Name)
	if err != nil {
		return err
	}
	defer nc.Close()
	cons, err := q.ensure(ctx, js)
	if err != nil {
		return err
	}
	maxDeliver := q.MaxDeliver
	if info := cons.CachedInfo(); info != nil && info.Config.MaxDeliver > 0 {
		maxDeliver = info.Config.MaxDeliver
	}
	w := &worker{o: o, q: q, js: js, log: log, maxDeliver: maxDeliver}
	log.Info("worker ready", "queue", q.Name, "concurrency", o.Concurrency, "nats", nc.ConnectedUrlRedacted())
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				m, err := w.next(ctx, cons)
				if err != nil {
					if ctx.Err() == nil {
						log.Warn("fetching a task failed", "err", err)
						sleep(ctx, time.Second)
					}
					continue
				}
				if m != nil {
					w.handle(ctx, m)
				}
			}
		})
	}
	wg.Wait()
	log.Info("worker stopped")
	return nil
}

type worker struct {
	o          WorkerOptions
	q          Queue
	js         jetstream.JetStream
	log        *slog.Logger
	maxDeliver int
}

// next pulls at most one task. The pull is not abandoned when ctx ends (a
// task the server delivered to an abandoned pull would wait out AckWait):
// a task that arrives then is nak'ed.
func (w *worker) next(ctx context.Context, cons jetstream.Consumer) (jetstream.Msg, error) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchWait)
	defer cancel()
	batch, err := cons.Fetch(1, jetstream.FetchContext(fctx))
	if err != nil {
		return nil, err
	}
	var msg jetstream.Msg
	for m := range batch.Messages() {
		msg = m
	}
	if err := batch.Error(); err != nil && msg == nil &&
		!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
		return nil, err
	}
	if msg != nil && ctx.Err() != nil {
		_ = msg.Nak()
		return nil, nil
	}
	return msg, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// handle runs one delivered task and settles it.
func (w *worker) handle(ctx context.Context, m jetstream.Msg) {
	attempt := 1
	if md, err := m.Metadata(); err == nil {
		attempt = int(md.NumDelivered)
	}
	var tm taskMsg
	if err := json.Unmarshal(m.Data(), &tm); err != nil || tm.Run == "" || tm.Task.ID == "" {
		w.log.Error("terminating an unreadable task message", "subject", m.Subject(), "err", err)
		_ = m.Term()
		return
	}
	log := w.log.With("run", tm.Run, "task", tm.Task.ID, "attempt", attempt)
	log.Info("task started", "pipeline", tm.Pipeline, "of", tm.Total)

	// Heart-beat so that a long task is not redelivered while it runs.
	hctx, stopHB := context.WithCancel(ctx)
	var hb sync.WaitGroup
	hb.Go(func() {
		t := time.NewTicker(w.q.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if err := m.InProgress(); err != nil {
					log.Warn("task heart-beat failed", "err", err)
				}
			case <-hctx.Done():
				return
			}
		}
	})
	rec, err := w.run(ctx, tm, log)
	stopHB()
	hb.Wait()

	if ctx.Err() != nil {
		// The worker is stopping: give the task back at once.
		_ = m.Nak()
		log.Info("task given back: the worker is stopping")
		return
	}
	res := result{Run: tm.Run, Task: tm.Task.ID, Worker: w.o.Name, Attempt: attempt, Record: rec}
	switch {
	case err == nil:
		res.Status = resultSucceeded
		// The result is published before the acknowledgement: a worker
		// dying in between makes the task run again (idempotent outputs),
		// never lost.
		if perr := w.publish(ctx, res); perr != nil {
			log.Error("publishing the task result failed; the task will run again", "err", perr)
			_ = m.Nak()
			return
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if aerr := m.DoubleAck(actx); aerr != nil {
			log.Warn("acknowledging the task failed; it may run again", "err", aerr)
		}
		cancel()
		log.Info("task done", "rows_in", rec.RowsIn, "rows_out", rec.RowsOut, "duration", rec.Duration)
	case attempt >= w.maxDeliver:
		res.Status, res.Error = resultFailed, err.Error()
		_ = w.publish(ctx, res)
		_ = m.Term()
		log.Error("task failed on its last delivery", "err", err)
	default:
		res.Status, res.Error = resultRetrying, err.Error()
		_ = w.publish(ctx, res)
		delay := retryDelay(attempt)
		_ = m.NakWithDelay(delay)
		log.Warn("task failed; it will be retried", "err", err, "retry_in", delay)
	}
}

// run parses the task's spec with this worker's environment and runs the
// plan on the task's part of the source.
func (w *worker) run(ctx context.Context, tm taskMsg, log *slog.Logger) (*pipeline.RunRecord, error) {
	plan, err := pipeline.Parse(tm.File, []byte(tm.Spec), w.o.Lookup)
	if err != nil {
		return nil, fmt.Errorf("parsing the spec on worker %s: %w", w.o.Name, err)
	}
	if plan.Digest != tm.Digest {
		log.Warn("the spec expands differently here than on the submitter (different ${VAR} values)", "vars", plan.Vars)
	}
	task := tm.Task
	rec, err := w.o.Runner.Run(ctx, plan, pipeline.RunOptions{ID: tm.Run + "-" + idToken(task.ID), Task: &task, ProgressEvery: time.Minute})
	return rec, err
}

// publish sends a task result, de-duplicated per run, task, delivery and
// status.
func (w *worker) publish(ctx context.Context, r result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	id := fmt.Sprintf("%s/%s/%d/%s", r.Run, r.Task, r.Attempt, r.Status)
	_, err = w.js.Publish(pctx, w.q.resultSubject(r.Run), b, jetstream.WithMsgID(id))
	return err
}

// retryDelay is the back-off before a failed task is delivered again:
// 1s, 2s, 4s, … capped at a minute.
func retryDelay(attempt int) time.Duration {
	d := time.Second << min(max(attempt-1, 0), 6)
	return min(d, time.Minute)
}

// idToken makes a task id usable inside a run id.
func idToken(id string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, id)
}
