package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/kilnai/kiln/internal/gctune"
)

// Engine runs plans.
type Engine struct {
	// Logger receives run events and, off a terminal, progress lines.
	Logger *slog.Logger
	// DataDir holds the result cache (<DataDir>/pipeline-cache).
	DataDir string
	// Registry is passed to components as Env.Registry.
	Registry string
	// Runs records runs (nil: runs are not recorded; params_from_run then
	// cannot be used).
	Runs RunStore
	// Models is passed to components as Env.Models.
	Models any
	// Now is the clock (nil: time.Now); tests inject one for cache expiry.
	Now func() time.Time
}

// RunOptions are per-run choices.
type RunOptions struct {
	// ID is the run's id ("" = a new one).
	ID string
	// NoCache ignores the result cache (the result is still stored).
	NoCache bool
	// Progress, when set, receives a single-line progress bar redrawn in
	// place (a terminal); otherwise progress is logged every ProgressEvery.
	Progress io.Writer
	// ProgressEvery is the interval of progress log lines (default 10s).
	ProgressEvery time.Duration
	// Started is called with the run record once it exists.
	Started func(r *RunRecord)
	// Task, when set, makes the run read only that part of the plan's
	// source (a distributed task): the source must implement Splitter and
	// is read through OpenTask; Env.Task carries Task.ID to every
	// component; the result cache is not used, and transforms that need a
	// fitting pass must get their parameters (spec or params_from_run).
	Task *Task
	// RecordEvery is how often the run record is updated with the live
	// counters while the run goes on (0: every 5s; < 0: never).
	RecordEvery time.Duration

	live *atomic.Pointer[liveRun] // the pass under way, for live records
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) logger() *slog.Logger {
	if e.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Logger
}

// NewRunID returns a new, time-sortable run id.
func NewRunID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
}

type lineage struct {
	mu   sync.Mutex
	seen map[ModelRef]bool
	list []ModelRef
}

func (l *lineage) UsedModel(name, version string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := ModelRef{Model: name, Version: version}
	if !l.seen[r] {
		l.seen[r] = true
		l.list = append(l.list, r)
	}
}

// built is a plan's instantiated components.
type built struct {
	source     Source
	transforms []Transform
	sinks      []Sink
	dlq        Sink
}

// closeAll closes what is still open: the source, the transforms that
// hold resources (io.Closer: a remote predict's connection), the sinks.
func (b *built) closeAll(ctx context.Context, err error, log *slog.Logger) {
	if b.source != nil {
		_ = b.source.Close()
	}
	closeTransforms(b.transforms, log)
	b.transforms = nil
	for _, s := range b.sinks {
		_ = s.Close(ctx, err)
	}
	if b.dlq != nil {
		_ = b.dlq.Close(ctx, err)
	}
}

// closeTransforms closes the transforms that implement io.Closer; errors
// are logged (the run's outcome no longer depends on them).
func closeTransforms(ts []Transform, log *slog.Logger) {
	for _, t := range ts {
		if c, ok := t.(io.Closer); ok {
			if err := c.Close(); err != nil {
				log.Warn("closing a transform failed", "err", err)
			}
		}
	}
}

func buildSource(ctx context.Context, c Component, env Env) (Source, error) {
	spec, ok := LookupSource(c.Name)
	if !ok {
		return nil, fmt.Errorf("unknown source %q", c.Name)
	}
	s, err := spec.Build(ctx, c.Config, env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Stage, err)
	}
	return s, nil
}

func buildTransform(ctx context.Context, c Component, env Env) (Transform, error) {
	spec, ok := LookupTransform(c.Name)
	if !ok {
		return nil, fmt.Errorf("unknown transform %q", c.Name)
	}
	t, err := spec.Build(ctx, c.Config, env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Stage, err)
	}
	return t, nil
}

func buildSink(ctx context.Context, c Component, env Env) (Sink, error) {
	spec, ok := LookupSink(c.Name)
	if !ok {
		return nil, fmt.Errorf("unknown sink %q", c.Name)
	}
	s, err := spec.Build(ctx, c.Config, env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Stage, err)
	}
	return s, nil
}

// Run runs plan to the end and returns its record. The record is returned
// (and stored) also when the run fails; err is then the run's error.
func (e *Engine) Run(ctx context.Context, plan *Plan, opts RunOptions) (*RunRecord, error) {
	log := e.logger()
	start := e.now()
	rec := &RunRecord{ID: opts.ID, Pipeline: plan.Name, SpecDigest: plan.Digest, Status: StatusRunning, Started: start.UTC(), Owner: CurrentOwner()}
	if rec.ID == "" {
		rec.ID = NewRunID(start)
	}
	log = log.With("pipeline", plan.Name, "run", rec.ID)
	if e.Runs != nil {
		if err := e.Runs.CreateRun(ctx, rec); err != nil {
			return nil, fmt.Errorf("record run: %w", err)
		}
	}
	if opts.Started != nil {
		opts.Started(rec)
	}
	lin := &lineage{seen: map[ModelRef]bool{}}
	env := Env{Logger: log, DataDir: e.DataDir, Registry: e.Registry, Models: e.Models, RunID: rec.ID, BatchSize: plan.Settings.BatchSize, Lineage: lin}
	if opts.Task != nil {
		env.Task = opts.Task.ID
		log = log.With("task", opts.Task.ID)
		env.Logger = log
	}

	stopRecording := e.recordLive(ctx, *rec, &opts, log)
	releaseGC := gctune.Acquire()
	runErr := e.safeRun(ctx, plan, env, rec, opts, log)
	releaseGC()
	stopRecording()

	rec.Finished = e.now().UTC()
	rec.Duration = rec.Finished.Sub(rec.Started)
	rec.Lineage = lin.list
	switch {
	case runErr == nil && rec.Status == StatusCached:
	case runErr == nil:
		rec.Status = StatusSucceeded
	case errors.Is(runErr, context.Canceled) || errors.Is(runErr, context.DeadlineExceeded):
		rec.Status = StatusCancelled
		rec.Error = runErr.Error()
	default:
		rec.Status = StatusFailed
		rec.Error = runErr.Error()
	}
	for _, s := range rec.Stages {
		rec.RowsRejected += s.RowsRejected
	}
	if e.Runs != nil {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err := e.Runs.UpdateRun(uctx, rec)
		cancel()
		if err != nil && runErr == nil {
			runErr = fmt.Errorf("record run: %w", err)
		}
	}
	if runErr != nil {
		log.Error("pipeline run ended", "status", rec.Status, "err", runErr, "duration", rec.Duration)
	} else {
		log.Info("pipeline run ended", "status", rec.Status, "rows_in", rec.RowsIn, "rows_out", rec.RowsOut, "rejected", rec.RowsRejected, "duration", rec.Duration)
	}
	return rec, runErr
}

// recordLive updates the run record with the main pass's counters every
// opts.RecordEvery until the returned stop is called.
func (e *Engine) recordLive(ctx context.Context, base RunRecord, opts *RunOptions, log *slog.Logger) (stop func()) {
	every := opts.RecordEvery
	if every == 0 {
		every = 5 * time.Second
	}
	if e.Runs == nil || every < 0 {
		return func() {}
	}
	opts.live = new(atomic.Pointer[liveRun])
	live := opts.live
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			l := live.Load()
			if l == nil {
				continue
			}
			snap := base
			snap.Stages = l.stats()
			fillTotals(&snap, snap.Stages)
			snap.Duration = e.now().UTC().Sub(snap.Started)
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := e.Runs.UpdateRun(uctx, &snap); err != nil {
				log.Warn("recording the run's progress failed", "err", err)
			}
			cancel()
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// safeRun is run with a panic of a component (building, fitting, closing)
// turned into the run's error.
func (e *Engine) safeRun(ctx context.Context, plan *Plan, env Env, rec *RunRecord, opts RunOptions, log *slog.Logger) (err error) {
	defer func() {
		if v := recover(); v != nil {
			log.Error("pipeline component panicked", "panic", v, "stack", string(debug.Stack()))
			err = fmt.Errorf("internal error (panic): %v", v)
		}
	}()
	return e.run(ctx, plan, env, rec, opts, log)
}

func (e *Engine) run(ctx context.Context, plan *Plan, env Env, rec *RunRecord, opts RunOptions, log *slog.Logger) (runErr error) {
	closeCtx := context.WithoutCancel(ctx)
	b := &built{}
	defer func() {
		if b != nil {
			b.closeAll(closeCtx, runErr, log)
		}
	}()
	var err error
	if b.source, err = buildSource(ctx, plan.Source, env); err != nil {
		return err
	}
	for _, c := range plan.Transforms {
		t, err := buildTransform(ctx, c, env)
		if err != nil {
			return err
		}
		b.transforms = append(b.transforms, t)
	}
	for _, c := range plan.Sinks {
		s, err := buildSink(ctx, c, env)
		if err != nil {
			return err
		}
		b.sinks = append(b.sinks, s)
	}
	if plan.OnError != nil {
		if b.dlq, err = buildSink(ctx, *plan.OnError, env); err != nil {
			return err
		}
	}
	if opts.Task != nil {
		sp, ok := b.source.(Splitter)
		if !ok {
			return fmt.Errorf("source %q cannot be split into tasks", plan.Source.Name)
		}
		part, err := sp.OpenTask(ctx, *opts.Task)
		if err != nil {
			return fmt.Errorf("task %s: %w", opts.Task.ID, err)
		}
		_ = b.source.Close()
		b.source = part
	}

	// Result cache.
	var cw *cacheWriter
	if plan.Cache != nil && opts.Task == nil {
		key, err := e.cacheKey(ctx, plan, b.source)
		switch {
		case err != nil:
			return fmt.Errorf("cache: %w", err)
		case key == "":
			log.Info("result cache disabled: the source has no fingerprint", "source", plan.Source.Name)
		default:
			rec.CacheKey = key
			c := &resultCache{dir: cacheDir(e.DataDir), now: e.now}
			if !opts.NoCache {
				if entry, ok := c.lookup(key, log); ok {
					log.Info("result cache hit: replaying the stored output", "key", key, "rows", entry.Rows)
					_ = b.source.Close()
					b.source = nil
					replay := &cacheSource{dir: entry.dir, parts: entry.Parts}
					st, err := e.execute(ctx, plan, env, replay, nil, b.sinks, b.dlq, nil, "cache", opts, pass{}, log)
					if err == nil && b.dlq != nil && len(entry.DeadParts) > 0 {
						err = replayDeadLetters(ctx, entry, b.dlq, st)
					}
					rec.Stages = st
					fillTotals(rec, st)
					if err == nil {
						rec.Status = StatusCached
						err = b.closeSinks(closeCtx, nil)
					}
					return err
				}
			}
			if cw, err = c.writer(key, plan.Cache.TTL, rec.ID); err != nil {
				return fmt.Errorf("cache: %w", err)
			}
			if b.dlq != nil {
				b.dlq = cw.deadLetters(b.dlq)
			}
		}
	}

	// Parameters from an earlier run, then the fitting pass.
	if plan.Settings.ParamsFromRun != "" {
		if err := e.loadParams(ctx, plan, b.transforms); err != nil {
			return err
		}
	}
	if opts.Task != nil {
		for i, t := range b.transforms {
			if f, ok := t.(Fitter); ok && f.NeedsFit() {
				return fmt.Errorf("%s needs a fitting pass over all the data, which a distributed task cannot make: give its parameters, or use settings.params_from_run with a run that fitted them", plan.Transforms[i].Stage)
			}
		}
	}
	var cacheSink Sink
	if cw != nil {
		cacheSink = cw
	}
	st, fitted, err := e.passes(ctx, plan, env, b, cacheSink, opts, log)
	params := map[string]map[string]any{}
	for i, t := range b.transforms {
		if f, ok := t.(Fitter); ok && (fitted[i] || !f.NeedsFit()) {
			if p := f.Params(); len(p) > 0 {
				params[plan.Transforms[i].Stage] = p
			}
		}
	}
	if len(params) > 0 {
		rec.Params = params
	}
	rec.Stages = st
	fillTotals(rec, st)
	if cerr := b.source.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("source: %w", cerr)
	}
	b.source = nil
	if cw != nil {
		if cerr := cw.Close(closeCtx, err); cerr != nil && err == nil {
			log.Warn("result cache not stored", "err", cerr)
		}
	}
	if err != nil {
		return err
	}
	return b.closeSinks(closeCtx, nil)
}

// replayDeadLetters writes a cached run's dead letters into the on_error
// sink, counting them in its stage (the last of st).
func replayDeadLetters(ctx context.Context, entry *cacheEntry, dlq Sink, st []StageStats) error {
	src := &cacheSource{dir: entry.dir, parts: entry.DeadParts}
	last := &st[len(st)-1]
	return src.Read(ctx, func(ctx context.Context, b Batch, _ AckFunc) error {
		rej, err := dlq.Write(ctx, b)
		if err == nil && len(rej) > 0 {
			err = fmt.Errorf("refused %d rows: %w", len(rej), rej[0].Err)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", last.Stage, err)
		}
		last.Batches++
		last.RowsIn += b.NumRows()
		last.RowsOut += b.NumRows()
		last.Bytes += BatchBytes(b)
		return nil
	})
}

// closeSinks commits every sink (and the dead-letter sink) and forgets
// them, so the deferred closeAll does not close them again.
func (b *built) closeSinks(ctx context.Context, runErr error) error {
	var first error
	for _, s := range b.sinks {
		if err := s.Close(ctx, runErr); err != nil && first == nil {
			first = fmt.Errorf("closing sink: %w", err)
		}
	}
	if b.dlq != nil {
		if err := b.dlq.Close(ctx, runErr); err != nil && first == nil {
			first = fmt.Errorf("closing on_error sink: %w", err)
		}
	}
	b.sinks, b.dlq = nil, nil
	return first
}

func fillTotals(rec *RunRecord, st []StageStats) {
	if len(st) == 0 {
		return
	}
	// Rows in: what the source read, the records it rejected included.
	rec.RowsIn = st[0].RowsOut + st[0].RowsRejected
	// Rows out: what reached the first sink (every sink gets every batch).
	for _, s := range st {
		if s.Stage != "source" && len(s.Stage) > 5 && s.Stage[:5] == "sinks" {
			rec.RowsOut = s.RowsIn - s.RowsRejected
			return
		}
	}
}

func (e *Engine) loadParams(ctx context.Context, plan *Plan, ts []Transform) error {
	if e.Runs == nil {
		return fmt.Errorf("settings.params_from_run: runs are not recorded here")
	}
	prev, err := e.Runs.GetRun(ctx, plan.Settings.ParamsFromRun)
	if err != nil {
		return fmt.Errorf("settings.params_from_run: %w", err)
	}
	// Stages of the earlier run by component name, in order, so that the
	// n-th standardize here takes the n-th standardize's parameters there
	// even when other transforms were added or removed around it.
	byName := map[string][]map[string]any{}
	for _, s := range prev.Stages {
		if p, ok := prev.Params[s.Stage]; ok {
			byName[s.Component] = append(byName[s.Component], p)
		}
	}
	used := map[string]int{}
	for i, t := range ts {
		pl, ok := t.(ParamLoader)
		if !ok {
			continue
		}
		if f, isFitter := t.(Fitter); isFitter && !f.NeedsFit() {
			// Parameters given in the spec win.
			continue
		}
		c := plan.Transforms[i]
		p, exact := prev.Params[c.Stage]
		if !exact {
			list := byName[c.Name]
			if used[c.Name] >= len(list) {
				return fmt.Errorf("settings.params_from_run: run %s has no fitted parameters for %s", prev.ID, c.Stage)
			}
			p = list[used[c.Name]]
		}
		used[c.Name]++
		if err := pl.LoadParams(p); err != nil {
			return fmt.Errorf("%s: parameters of run %s: %w", c.Stage, prev.ID, err)
		}
	}
	return nil
}

// fitGroups returns the indexes of the transforms that need fitting,
// grouped into passes. A fitter joins the pass of the fitters right before
// it when what it would be fitted on there equals what it would be fitted
// on after them: each of them keeps every row (RowKeeper) and writes no
// column it reads (ColumnUser). When in doubt (a transform that does not
// say), a fitter gets a pass of its own.
func fitGroups(ts []Transform) [][]int {
	var groups [][]int
	var cur []int
	var written []string // by the fitters of cur
	for i, t := range ts {
		f, ok := t.(Fitter)
		if !ok || !f.NeedsFit() {
			if cur != nil {
				groups = append(groups, cur)
				cur, written = nil, nil
			}
			continue
		}
		if cur != nil && !joins(t, written) {
			groups = append(groups, cur)
			cur, written = nil, nil
		}
		cur = append(cur, i)
		written = appendWrites(written, t)
	}
	if cur != nil {
		groups = append(groups, cur)
	}
	return groups
}

// appendWrites adds t's written columns to written; nil when unknown.
func appendWrites(written []string, t Transform) []string {
	cu, ok := t.(ColumnUser)
	if !ok {
		return nil
	}
	reads, writes := cu.Columns()
	if reads == nil && writes == nil {
		return nil
	}
	if rk, ok := t.(RowKeeper); !ok || !rk.KeepsRows() {
		return nil
	}
	out := make([]string, 0, len(written)+len(writes))
	return append(append(out, written...), writes...)
}

// joins reports whether fitter t may be fitted in the pass of the fitters
// before it, whose written columns are written (nil: unknown, or one of
// them may drop or reject rows).
func joins(t Transform, written []string) bool {
	if written == nil {
		return false
	}
	cu, ok := t.(ColumnUser)
	if !ok {
		return false
	}
	reads, writes := cu.Columns()
	if reads == nil && writes == nil {
		return false
	}
	for _, r := range reads {
		for _, w := range written {
			if ColumnsOverlap(r, w) {
				return false
			}
		}
	}
	return true
}

// fitSink feeds a fitting pass's batches to its Fitters.
type fitSink struct {
	fs     []Fitter
	stages []string
}

func (s fitSink) Write(ctx context.Context, b Batch) ([]RowError, error) {
	for k, f := range s.fs {
		if err := f.Fit(ctx, b); err != nil {
			if len(s.fs) > 1 {
				return nil, fmt.Errorf("fit %s: %w", s.stages[k], err)
			}
			return nil, fmt.Errorf("fit: %w", err)
		}
	}
	return nil, nil
}

func (fitSink) Close(context.Context, error) error { return nil }

// stage counters, updated atomically.
type counters struct {
	stage, component               string
	in, out, rejected, batches, by atomic.Int64
	nanos                          atomic.Int64
}

func (c *counters) snapshot() StageStats {
	return StageStats{Stage: c.stage, Component: c.component, RowsIn: c.in.Load(), RowsOut: c.out.Load(),
		RowsRejected: c.rejected.Load(), Batches: c.batches.Load(), Bytes: c.by.Load(), Duration: time.Duration(c.nanos.Load())}
}

// item is one emitted batch on its way through the run.
type item struct {
	seq     uint64
	b       Batch
	ack     AckFunc
	pending atomic.Int32
}

type dlqItem struct {
	it *item
	b  Batch
}

// runner is one pass of batches from a source to the sinks.
type runner struct {
	plan    *Plan
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelCauseFunc
	errOnce sync.Once
	err     error

	sem      chan struct{}
	mu       sync.Mutex
	inflight map[*item]struct{}
	seq      uint64 // of the next batch (the source's goroutine only)

	source *counters
	xs     []*counters
	ss     []*counters
	dlqC   *counters
	dlqCh  chan dlqItem
	hasDLQ bool
	warned sync.Map // stage → *atomic.Int32 (rejection warnings logged)
}

func (r *runner) fail(err error) {
	r.errOnce.Do(func() {
		r.err = err
		r.cancel(err)
	})
}

// admit takes a place among the batches in flight (waiting while
// max_in_flight are) for an item of b (nil: the source's rejected records)
// and registers it. When the run ends first, ack gets the run's error.
func (r *runner) admit(ctx context.Context, b Batch, ack AckFunc) (*item, error) {
	select {
	case r.sem <- struct{}{}:
	case <-r.ctx.Done():
		err := context.Cause(r.ctx)
		if ack != nil {
			_ = ack(ctx, err)
		}
		return nil, err
	}
	it := &item{b: b, ack: ack}
	if b != nil {
		// Batches are numbered for the reorder buffer; rejected records
		// do not pass it.
		it.seq = r.seq
		r.seq++
	}
	it.pending.Store(1)
	r.mu.Lock()
	r.inflight[it] = struct{}{}
	r.mu.Unlock()
	return it, nil
}

// done drops one reference to it; the last one acknowledges the batch.
func (r *runner) done(it *item) {
	if it.pending.Add(-1) != 0 {
		return
	}
	r.mu.Lock()
	delete(r.inflight, it)
	r.mu.Unlock()
	if it.b != nil {
		it.b.Release()
		it.b = nil
	}
	if it.ack != nil {
		if err := it.ack(r.ctx, nil); err != nil {
			r.log.Warn("acknowledging a batch to the source failed (it may be delivered again)", "err", err)
		}
	}
	<-r.sem
}

// execute runs one pass: src → transforms → sinks (+ cache writer, if any).
func (e *Engine) execute(ctx context.Context, plan *Plan, env Env, src Source, ts []Transform, sinks []Sink, dlq Sink, cw Sink, sourceName string, opts RunOptions, p pass, log *slog.Logger) ([]StageStats, error) {
	set := plan.Settings
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r := &runner{plan: plan, log: log, ctx: rctx, cancel: cancel,
		sem: make(chan struct{}, set.MaxInFlight), inflight: map[*item]struct{}{},
		source: &counters{stage: "source", component: sourceName}, hasDLQ: dlq != nil}
	for i := range ts {
		r.xs = append(r.xs, &counters{stage: plan.Transforms[i].Stage, component: plan.Transforms[i].Name})
	}
	for i := range sinks {
		r.ss = append(r.ss, &counters{stage: plan.Sinks[i].Stage, component: plan.Sinks[i].Name})
	}
	if dlq != nil {
		r.dlqC = &counters{stage: plan.OnError.Stage, component: plan.OnError.Name}
	}
	if opts.live != nil {
		opts.live.Store(&liveRun{r: r, p: p})
	}
	allSinks := sinks
	if cw != nil {
		allSinks = append(append([]Sink(nil), sinks...), cw)
	}

	workers := set.Parallelism
	for _, t := range ts {
		if o, ok := t.(Ordered); ok && o.Ordered() {
			workers = 1
		}
	}
	if len(ts) == 0 {
		workers = 1
	}

	srcOut := make(chan *item, set.Buffer)
	xOut := make(chan *item, set.Buffer)
	r.dlqCh = make(chan dlqItem, set.Buffer)
	sinkChs := make([]chan *item, len(allSinks))
	for i := range sinkChs {
		sinkChs[i] = make(chan *item, set.Buffer)
	}

	stopProgress := r.startProgress(src, opts)

	// Records the source cannot decode go where rejected rows go.
	if rj, ok := src.(Rejecter); ok {
		rj.SetReject(r.sourceRejects)
		defer rj.SetReject(nil)
	}

	var wg sync.WaitGroup
	// Source.
	srcDone := make(chan struct{})
	wg.Go(func() {
		defer close(srcDone)
		defer close(srcOut)
		defer r.recoverStage("source " + plan.Source.Name)
		err := src.Read(rctx, func(ctx context.Context, b Batch, ack AckFunc) error {
			if b == nil {
				return fmt.Errorf("source emitted a nil batch")
			}
			if b.NumRows() == 0 {
				// Nothing to transform or write: acknowledged at once.
				if ack != nil {
					return ack(ctx, nil)
				}
				return nil
			}
			// The engine keeps its own reference; the source may release
			// its one when emit returns.
			b.Retain()
			it, err := r.admit(ctx, b, ack)
			if err != nil {
				b.Release()
				return err
			}
			r.source.batches.Add(1)
			r.source.out.Add(b.NumRows())
			r.source.by.Add(BatchBytes(b))
			select {
			case srcOut <- it:
				return nil
			case <-rctx.Done():
				return context.Cause(rctx)
			}
		})
		if err != nil && rctx.Err() == nil {
			r.fail(fmt.Errorf("source %s: %w", plan.Source.Name, err))
		}
	})

	// Transform workers.
	var xwg sync.WaitGroup
	for range workers {
		xwg.Go(func() {
			defer r.recoverStage("transforms")
			for {
				var it *item
				select {
				case it = <-srcOut:
				case <-rctx.Done():
					return
				}
				if it == nil {
					return
				}
				if !r.transform(it, ts) {
					return
				}
				select {
				case xOut <- it:
				case <-rctx.Done():
					return
				}
			}
		})
	}
	wg.Go(func() {
		xwg.Wait()
		close(xOut)
	})

	// Dispatcher (with the reorder buffer when asked).
	wg.Go(func() {
		defer func() {
			for _, ch := range sinkChs {
				close(ch)
			}
		}()
		var next uint64
		held := map[uint64]*item{}
		dispatch := func(it *item) bool {
			if it.b == nil || it.b.NumRows() == 0 || len(sinkChs) == 0 {
				r.done(it)
				return true
			}
			it.pending.Add(int32(len(sinkChs)))
			for _, ch := range sinkChs {
				select {
				case ch <- it:
				case <-rctx.Done():
					return false
				}
			}
			r.done(it)
			return true
		}
		for {
			var it *item
			select {
			case it = <-xOut:
			case <-rctx.Done():
				return
			}
			if it == nil {
				return
			}
			if !set.Ordered || workers == 1 {
				if !dispatch(it) {
					return
				}
				continue
			}
			held[it.seq] = it
			for {
				h, ok := held[next]
				if !ok {
					break
				}
				delete(held, next)
				next++
				if !dispatch(h) {
					return
				}
			}
		}
	})

	// Sinks.
	var swg sync.WaitGroup
	for i, s := range allSinks {
		var c *counters
		stage := "result cache"
		if i < len(r.ss) {
			c = r.ss[i]
			stage = c.stage
		}
		ch := sinkChs[i]
		swg.Go(func() {
			defer r.recoverStage(stage)
			for {
				var it *item
				select {
				case it = <-ch:
				case <-rctx.Done():
					return
				}
				if it == nil {
					return
				}
				t0 := time.Now()
				rej, err := s.Write(rctx, it.b)
				if c != nil {
					c.nanos.Add(int64(time.Since(t0)))
					c.batches.Add(1)
					c.in.Add(it.b.NumRows())
					c.by.Add(BatchBytes(it.b))
					c.out.Add(it.b.NumRows() - int64(len(rej)))
					c.rejected.Add(int64(len(rej)))
				}
				if err != nil {
					r.fail(fmt.Errorf("%s: %w", stage, err))
					return
				}
				if len(rej) > 0 && !r.rejected(it, it.b, rej, stage) {
					return
				}
				r.done(it)
			}
		})
	}
	wg.Go(func() {
		// Sinks, transforms and the source (its rejected records) hand
		// dead letters over.
		swg.Wait()
		xwg.Wait()
		<-srcDone
		close(r.dlqCh)
	})

	// Dead-letter sink.
	wg.Go(func() {
		if dlq != nil {
			defer r.recoverStage(plan.OnError.Stage)
		}
		for {
			var d dlqItem
			var ok bool
			select {
			case d, ok = <-r.dlqCh:
			case <-rctx.Done():
				return
			}
			if !ok {
				return
			}
			t0 := time.Now()
			rej, err := dlq.Write(rctx, d.b)
			r.dlqC.nanos.Add(int64(time.Since(t0)))
			r.dlqC.batches.Add(1)
			r.dlqC.in.Add(d.b.NumRows())
			r.dlqC.by.Add(BatchBytes(d.b))
			r.dlqC.out.Add(d.b.NumRows() - int64(len(rej)))
			r.dlqC.rejected.Add(int64(len(rej)))
			d.b.Release()
			if err == nil && len(rej) > 0 {
				err = fmt.Errorf("refused %d rows: %w", len(rej), rej[0].Err)
			}
			if err != nil {
				r.fail(fmt.Errorf("%s: %w", r.dlqC.stage, err))
				return
			}
			r.done(d.it)
		}
	})

	wg.Wait()
	stopProgress()

	// Whatever is still in flight failed with the run's error.
	err := r.err
	if err == nil && ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	if err == nil && len(r.inflight) > 0 {
		err = fmt.Errorf("internal error: %d batches neither written nor failed", len(r.inflight))
	}
	for it := range r.inflight {
		if it.b != nil {
			it.b.Release()
		}
		if it.ack != nil {
			_ = it.ack(context.WithoutCancel(ctx), err)
		}
	}
	return r.stats(), err
}

// stats snapshots every stage's counters.
func (r *runner) stats() []StageStats {
	stats := []StageStats{r.source.snapshot()}
	for _, c := range r.xs {
		stats = append(stats, c.snapshot())
	}
	for _, c := range r.ss {
		stats = append(stats, c.snapshot())
	}
	if r.dlqC != nil {
		stats = append(stats, r.dlqC.snapshot())
	}
	return stats
}

// recoverStage turns a panic in a component into the run's error, so that
// a faulty component fails its run instead of the process (kiln serve).
func (r *runner) recoverStage(stage string) {
	if v := recover(); v != nil {
		r.log.Error("pipeline component panicked", "stage", stage, "panic", v, "stack", string(debug.Stack()))
		r.fail(fmt.Errorf("%s: internal error (panic): %v", stage, v))
	}
}

// transform runs it through every transform; false stops the worker.
func (r *runner) transform(it *item, ts []Transform) bool {
	for i, t := range ts {
		c := r.xs[i]
		in := it.b
		c.in.Add(in.NumRows())
		c.batches.Add(1)
		t0 := time.Now()
		out, rej, err := t.Apply(r.ctx, in)
		c.nanos.Add(int64(time.Since(t0)))
		if err != nil {
			if out != nil && out != in {
				out.Release()
			}
			r.fail(fmt.Errorf("%s: %w", c.stage, err))
			return false
		}
		c.rejected.Add(int64(len(rej)))
		if len(rej) > 0 && !r.rejected(it, in, rej, c.stage) {
			if out != nil && out != in {
				out.Release()
			}
			return false
		}
		if out != in {
			in.Release()
		}
		it.b = out
		if out == nil {
			return true
		}
		c.out.Add(out.NumRows())
		c.by.Add(BatchBytes(out))
		if out.NumRows() == 0 {
			return true
		}
	}
	return true
}

const maxRejectWarnings = 5

// rejected handles rows a stage refused: to the dead-letter sink, logged
// and dropped, or stop the run (policy stop). false means the run stops.
func (r *runner) rejected(it *item, in Batch, rej []RowError, stage string) bool {
	if r.plan.Policy == PolicyStop {
		r.fail(fmt.Errorf("%s rejected %d rows (on_error policy stop); row %d: %w", stage, len(rej), rej[0].Row, rej[0].Err))
		return false
	}
	if !r.hasDLQ {
		v, _ := r.warned.LoadOrStore(stage, new(atomic.Int32))
		n := v.(*atomic.Int32)
		for _, re := range rej {
			if n.Add(1) > maxRejectWarnings {
				break
			}
			r.log.Warn("row rejected (no on_error sink: dropped)", "stage", stage, "row", re.Row, "err", re.Err)
		}
		return true
	}
	d, err := DeadLetters(in, rej, stage)
	if err != nil {
		r.fail(fmt.Errorf("%s: building dead-letter rows: %w", stage, err))
		return false
	}
	it.pending.Add(1)
	select {
	case r.dlqCh <- dlqItem{it: it, b: d}:
		return true
	case <-r.ctx.Done():
		d.Release()
		return false
	}
}

// sourceRejects is the RejectFunc of the pass that reads the source: the
// records go where rows a transform rejects go (see rejected), as dead
// letters made by SourceDeadLetters, and count as the source's rejected
// rows.
func (r *runner) sourceRejects(ctx context.Context, recs []SourceReject, ack AckFunc) error {
	if len(recs) == 0 {
		if ack != nil {
			return ack(ctx, nil)
		}
		return nil
	}
	if r.ctx.Err() != nil {
		err := context.Cause(r.ctx)
		if ack != nil {
			_ = ack(ctx, err)
		}
		return err
	}
	stage := r.source.stage
	r.source.rejected.Add(int64(len(recs)))
	if r.plan.Policy == PolicyStop {
		re := recs[0]
		err := fmt.Errorf("%s rejected a record (on_error policy stop): %s: %w", stage, re.Location(), re.Err)
		r.fail(err)
		if ack != nil {
			_ = ack(ctx, err)
		}
		return err
	}
	if !r.hasDLQ {
		v, _ := r.warned.LoadOrStore(stage, new(atomic.Int32))
		n := v.(*atomic.Int32)
		for _, re := range recs {
			if n.Add(1) > maxRejectWarnings {
				break
			}
			r.log.Warn("record rejected (no on_error sink: dropped)", "stage", stage, "at", re.Location(), "err", re.Err)
		}
		if ack != nil {
			if err := ack(ctx, nil); err != nil {
				r.log.Warn("acknowledging rejected records to the source failed (they may be delivered again)", "err", err)
			}
		}
		return nil
	}
	d := SourceDeadLetters(recs, stage)
	it, err := r.admit(ctx, nil, ack)
	if err != nil {
		d.Release()
		return err
	}
	select {
	case r.dlqCh <- dlqItem{it: it, b: d}:
		return nil
	case <-r.ctx.Done():
		// it stays in flight: acknowledged with the run's error at the end.
		d.Release()
		return context.Cause(r.ctx)
	}
}

// Dead-letter columns added to rejected rows.
const (
	ErrorColumn = "_error"
	StageColumn = "_stage"
)

// Dead-letter columns of records a source rejected (SourceDeadLetters).
const (
	RecordColumn = "_record"
	InputColumn  = "_input"
	LineColumn   = "_line"
	IndexColumn  = "_index"
)

// sourceDeadLetterSchema is the schema of SourceDeadLetters' batches.
var sourceDeadLetterSchema = arrow.NewSchema([]arrow.Field{
	{Name: RecordColumn, Type: arrow.BinaryTypes.String},
	{Name: InputColumn, Type: arrow.BinaryTypes.String},
	{Name: LineColumn, Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: IndexColumn, Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: ErrorColumn, Type: arrow.BinaryTypes.String},
	{Name: StageColumn, Type: arrow.BinaryTypes.String},
}, nil)

// SourceDeadLetters builds the dead-letter batch of records a source
// rejected: _record (the raw text), _input (file path, URL, subject),
// _line and _index (null when 0; see SourceReject), _error and _stage.
func SourceDeadLetters(recs []SourceReject, stage string) Batch {
	mem := memory.DefaultAllocator
	b := array.NewRecordBuilder(mem, sourceDeadLetterSchema)
	defer b.Release()
	text := b.Field(0).(*array.StringBuilder)
	input := b.Field(1).(*array.StringBuilder)
	line := b.Field(2).(*array.Int64Builder)
	index := b.Field(3).(*array.Int64Builder)
	msg := b.Field(4).(*array.StringBuilder)
	st := b.Field(5).(*array.StringBuilder)
	for _, re := range recs {
		text.BinaryBuilder.Append(re.Record[:min(len(re.Record), MaxRejectRecord)])
		input.Append(re.Input)
		appendPositive(line, re.Line)
		appendPositive(index, re.Index)
		m := "rejected"
		if re.Err != nil {
			m = re.Err.Error()
		}
		msg.Append(m)
		st.Append(stage)
	}
	return b.NewRecordBatch()
}

// DeadLetters builds the dead-letter batch for rows of in that stage
// rejected: the rows' original columns plus _error (the reason) and
// _stage (which stage refused them).
func DeadLetters(in Batch, rej []RowError, stage string) (Batch, error) {
	mem := memory.DefaultAllocator
	var fields []arrow.Field
	var cols []arrow.Array
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	n := int(in.NumRows())
	for ci, f := range in.Schema().Fields() {
		if f.Name == ErrorColumn || f.Name == StageColumn {
			continue
		}
		col := in.Column(ci)
		parts := make([]arrow.Array, 0, len(rej))
		for _, re := range rej {
			if re.Row < 0 || re.Row >= n {
				for _, p := range parts {
					p.Release()
				}
				return nil, fmt.Errorf("row %d out of range (batch has %d rows)", re.Row, n)
			}
			parts = append(parts, array.NewSlice(col, int64(re.Row), int64(re.Row+1)))
		}
		joined, err := array.Concatenate(parts, mem)
		for _, p := range parts {
			p.Release()
		}
		if err != nil {
			return nil, err
		}
		fields = append(fields, f)
		cols = append(cols, joined)
	}
	eb := array.NewStringBuilder(mem)
	sb := array.NewStringBuilder(mem)
	defer eb.Release()
	defer sb.Release()
	for _, re := range rej {
		msg := "rejected"
		if re.Err != nil {
			msg = re.Err.Error()
		}
		eb.Append(msg)
		sb.Append(stage)
	}
	fields = append(fields, arrow.Field{Name: ErrorColumn, Type: arrow.BinaryTypes.String}, arrow.Field{Name: StageColumn, Type: arrow.BinaryTypes.String})
	cols = append(cols, eb.NewArray(), sb.NewArray())
	return array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, int64(len(rej))), nil
}

// appendPositive appends n, or null when it is not positive.
func appendPositive(b *array.Int64Builder, n int64) {
	if n > 0 {
		b.Append(n)
	} else {
		b.AppendNull()
	}
}

// BatchBytes is the size of a batch's Arrow buffers.
func BatchBytes(b Batch) int64 {
	if b == nil {
		return 0
	}
	var n int64
	for _, c := range b.Columns() {
		n += dataBytes(c.Data())
	}
	return n
}

func dataBytes(d arrow.ArrayData) int64 {
	var n int64
	for _, buf := range d.Buffers() {
		if buf != nil {
			n += int64(buf.Len())
		}
	}
	for _, ch := range d.Children() {
		n += dataBytes(ch)
	}
	if d.DataType().ID() == arrow.DICTIONARY {
		if dict := d.Dictionary(); dict != nil {
			n += dataBytes(dict)
		}
	}
	return n
}
