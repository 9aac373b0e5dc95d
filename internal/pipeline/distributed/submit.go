package distributed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kilnai/kiln/internal/pipeline"
)

// ErrTaskFailed is returned when a task failed on every delivery.
var ErrTaskFailed = errors.New("distributed task failed")

// SubmitOptions configure a distributed run.
type SubmitOptions struct {
	// URL of the NATS server.
	URL   string
	Queue Queue
	// Spec is the spec's text as written (the workers parse it again).
	Spec []byte
	// Engine supplies the logger, the data directory and the run store
	// where the whole run is recorded (Runs may be nil).
	Engine *pipeline.Engine
	// Progress receives one line per finished task (nil: none).
	Progress io.Writer
	// RunID is the run's id ("" = a new one).
	RunID string
}

// Submit splits plan's source into tasks, queues them, waits until every
// task succeeded (or one failed on its last delivery, or ctx ended), and
// returns the run's record: per-stage counters summed over the tasks,
// lineage merged. The record is returned also when the run fails.
func Submit(ctx context.Context, plan *pipeline.Plan, o SubmitOptions) (*pipeline.RunRecord, error) {
	q, err := o.Queue.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(o.Spec) == 0 {
		return nil, errors.New("distributed run: no spec text (workers parse the spec again)")
	}
	eng := o.Engine
	if eng == nil {
		eng = &pipeline.Engine{}
	}
	log := eng.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := time.Now
	if eng.Now != nil {
		now = eng.Now
	}
	// The submitter owns the record: if it dies mid-run, the next process
	// that reaps orphaned runs marks the run failed instead of leaving it
	// "running" forever (the workers' task outputs stay in the sinks).
	rec := &pipeline.RunRecord{ID: o.RunID, Pipeline: plan.Name, SpecDigest: plan.Digest, Status: pipeline.StatusRunning, Started: now().UTC(), Owner: pipeline.CurrentOwner()}
	if rec.ID == "" {
		rec.ID = pipeline.NewRunID(rec.Started)
	}
	log = log.With("pipeline", plan.Name, "run", rec.ID)

	tasks, err := split(ctx, plan, eng, rec.ID, log)
	if err != nil {
		return nil, err
	}
	if eng.Runs != nil {
		if err := eng.Runs.CreateRun(ctx, rec); err != nil {
			return nil, fmt.Errorf("record run: %w", err)
		}
	}
	runErr := submit(ctx, plan, o, q, rec, tasks, log)
	rec.Finished = now().UTC()
	rec.Duration = rec.Finished.Sub(rec.Started)
	switch {
	case runErr == nil:
		rec.Status = pipeline.StatusSucceeded
	case errors.Is(runErr, context.Canceled) || errors.Is(runErr, context.DeadlineExceeded):
		rec.Status = pipeline.StatusCancelled
		rec.Error = runErr.Error()
	default:
		rec.Status = pipeline.StatusFailed
		rec.Error = runErr.Error()
	}
	if eng.Runs != nil {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err := eng.Runs.UpdateRun(uctx, rec)
		cancel()
		if err != nil && runErr == nil {
			runErr = fmt.Errorf("record run: %w", err)
		}
	}
	if runErr != nil {
		log.Error("distributed run ended", "status", rec.Status, "err", runErr, "duration", rec.Duration)
	} else {
		log.Info("distributed run ended", "status", rec.Status, "tasks", len(tasks), "rows_in", rec.RowsIn, "rows_out", rec.RowsOut, "duration", rec.Duration)
	}
	return rec, runErr
}

// split builds the plan's source and asks it for its tasks.
func split(ctx context.Context, plan *pipeline.Plan, eng *pipeline.Engine, runID string, log *slog.Logger) ([]pipeline.Task, error) {
	spec, ok := pipeline.LookupSource(plan.Source.Name)
	if !ok {
		return nil, fmt.Errorf("unknown source %q", plan.Source.Name)
	}
	src, err := spec.Build(ctx, plan.Source.Config, pipeline.Env{Logger: log, DataDir: eng.DataDir, RunID: runID, BatchSize: plan.Settings.BatchSize})
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	defer src.Close()
	sp, ok := src.(pipeline.Splitter)
	if !ok {
		return nil, fmt.Errorf("source %q cannot be split into tasks, so it cannot run distributed", plan.Source.Name)
	}
	tasks, err := sp.Split(ctx)
	if err != nil {
		return nil, fmt.Errorf("splitting the source: %w", err)
	}
	if len(tasks) == 0 {
		return nil, fmt.Errorf("source %q has nothing to read: no tasks", plan.Source.Name)
	}
	seen := map[string]bool{}
	for _, t := range tasks {
		if t.ID == "" || seen[t.ID] {
			return nil, fmt.Errorf("source %q split into tasks with an empty or repeated id %q", plan.Source.Name, t.ID)
		}
		seen[t.ID] = true
	}
	return tasks, nil
}

func submit(ctx context.Context, plan *pipeline.Plan, o SubmitOptions, q Queue, rec *pipeline.RunRecord, tasks []pipeline.Task, log *slog.Logger) error {
	nc, js, err := connect(o.URL, "kiln pipeline submit "+rec.ID)
	if err != nil {
		return err
	}
	defer nc.Close()
	if _, err := q.ensure(ctx, js); err != nil {
		return err
	}

	// Follow results and max-delivery advisories before queueing, so
	// nothing is missed.
	results, err := js.OrderedConsumer(ctx, q.resultsStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{q.resultSubject(rec.ID)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("results consumer: %w", err)
	}
	type event struct {
		res *result
		seq uint64 // a max-deliveries advisory's stream sequence
	}
	events := make(chan event, 64)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	cc, err := results.Consume(func(m jetstream.Msg) {
		var r result
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			log.Warn("ignoring an unreadable task result", "err", err)
			return
		}
		select {
		case events <- event{res: &r}:
		case <-rctx.Done():
		}
	})
	if err != nil {
		return fmt.Errorf("results consumer: %w", err)
	}
	defer cc.Stop()
	adv, err := nc.Subscribe("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."+q.tasksStream()+"."+q.consumer(), func(m *nats.Msg) {
		var a struct {
			StreamSeq uint64 `json:"stream_seq"`
		}
		if json.Unmarshal(m.Data, &a) == nil && a.StreamSeq > 0 {
			select {
			case events <- event{seq: a.StreamSeq}:
			case <-rctx.Done():
			}
		}
	})
	if err != nil {
		return fmt.Errorf("advisories: %w", err)
	}
	defer func() { _ = adv.Unsubscribe() }()

	// Queue the tasks.
	text := string(o.Spec)
	subject := q.taskSubject(rec.ID)
	bySeq := map[uint64]string{}
	var weight int64
	for _, t := range tasks {
		weight += t.Weight
		b, err := json.Marshal(taskMsg{Run: rec.ID, Pipeline: plan.Name, File: plan.File, Spec: text, Digest: plan.Digest, Task: t, Total: len(tasks)})
		if err != nil {
			return err
		}
		ack, err := js.Publish(ctx, subject, b, jetstream.WithMsgID(rec.ID+"/"+t.ID))
		if err != nil {
			purge(js, q, rec.ID, log)
			return fmt.Errorf("queueing task %s: %w", t.ID, err)
		}
		bySeq[ack.Sequence] = t.ID
	}
	log.Info("distributed run queued", "tasks", len(tasks), "subject", subject)
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "run %s: %d tasks queued on %s; waiting for workers (kiln worker --nats %s --queue %s)\n", rec.ID, len(tasks), subject, redactURLs(o.URL), q.Name)
	}

	done := map[string]*pipeline.RunRecord{}
	for len(done) < len(tasks) {
		var ev event
		select {
		case ev = <-events:
		case <-ctx.Done():
			purge(js, q, rec.ID, log)
			merge(rec, done)
			return ctx.Err()
		}
		if ev.seq != 0 {
			id, ok := bySeq[ev.seq]
			if !ok {
				continue // another run's task
			}
			if _, finished := done[id]; finished {
				continue
			}
			purge(js, q, rec.ID, log)
			merge(rec, done)
			return fmt.Errorf("%w: task %s was delivered %d times without being acknowledged (workers died or hung)", ErrTaskFailed, id, q.MaxDeliver)
		}
		r := ev.res
		if r.Run != rec.ID {
			continue
		}
		switch r.Status {
		case resultSucceeded:
			if _, dup := done[r.Task]; dup {
				continue // a redelivered task that succeeded twice
			}
			if r.Record == nil {
				r.Record = &pipeline.RunRecord{}
			}
			done[r.Task] = r.Record
			log.Info("task done", "task", r.Task, "worker", r.Worker, "attempt", r.Attempt, "rows_in", r.Record.RowsIn, "done", len(done), "of", len(tasks))
			if o.Progress != nil {
				fmt.Fprintf(o.Progress, "task %s done by %s (attempt %d, %d rows in, %d out): %d/%d\n", r.Task, r.Worker, r.Attempt, r.Record.RowsIn, r.Record.RowsOut, len(done), len(tasks))
			}
		case resultRetrying:
			log.Warn("task failed; it will be retried", "task", r.Task, "worker", r.Worker, "attempt", r.Attempt, "err", r.Error)
		case resultFailed:
			purge(js, q, rec.ID, log)
			merge(rec, done)
			return fmt.Errorf("%w: task %s on %s (attempt %d): %s", ErrTaskFailed, r.Task, r.Worker, r.Attempt, r.Error)
		}
	}
	merge(rec, done)
	return nil
}

// purge removes the run's tasks that are still queued.
func purge(js jetstream.JetStream, q Queue, run string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, q.tasksStream())
	if err == nil {
		err = s.Purge(ctx, jetstream.WithPurgeSubject(q.taskSubject(run)))
	}
	if err != nil {
		log.Warn("could not purge the run's queued tasks", "err", err)
	}
}

// merge sums the task records into rec: stages by name, totals, lineage.
func merge(rec *pipeline.RunRecord, done map[string]*pipeline.RunRecord) {
	ids := make([]string, 0, len(done))
	for id := range done {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	rec.Stages, rec.Lineage = nil, nil
	rec.RowsIn, rec.RowsOut, rec.RowsRejected = 0, 0, 0
	idx := map[string]int{}
	seen := map[pipeline.ModelRef]bool{}
	for _, id := range ids {
		t := done[id]
		rec.RowsIn += t.RowsIn
		rec.RowsOut += t.RowsOut
		rec.RowsRejected += t.RowsRejected
		for _, s := range t.Stages {
			i, ok := idx[s.Stage]
			if !ok {
				i = len(rec.Stages)
				idx[s.Stage] = i
				rec.Stages = append(rec.Stages, pipeline.StageStats{Stage: s.Stage, Component: s.Component})
			}
			rec.Stages[i].Add(s)
		}
		for _, m := range t.Lineage {
			if !seen[m] {
				seen[m] = true
				rec.Lineage = append(rec.Lineage, m)
			}
		}
	}
}
