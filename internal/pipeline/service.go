package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// ErrBusy is returned when a Service already runs its maximum number of
// pipelines.
var ErrBusy = errors.New("too many pipeline runs in progress")

// ErrNotRunning is returned when cancelling a run that is not in progress
// in this process.
var ErrNotRunning = errors.New("pipeline run is not in progress here")

// Service runs pipelines submitted to a long-lived process (kiln serve):
// each run in its own goroutine, owned by the Service, cancellable, and
// waited for by Close.
type Service struct {
	engine *Engine
	lookup LookupFunc
	max    int

	mu      sync.Mutex
	running map[string]context.CancelFunc
	closed  bool
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

// NewService returns a Service running at most maxRuns pipelines at once
// (≤ 0: 4). lookup resolves ${VAR} in submitted specs (nil: none).
func NewService(e *Engine, lookup LookupFunc, maxRuns int) *Service {
	if maxRuns <= 0 {
		maxRuns = 4
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Service{engine: e, lookup: lookup, max: maxRuns, running: map[string]context.CancelFunc{}, ctx: ctx, stop: stop}
	// Runs left "running" by a process of this host that died (kill -9)
	// are marked failed now that this one starts.
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	s.reap(rctx)
	cancel()
	return s
}

// reap marks the runs of dead processes of this host failed; a failure
// is logged (the records stay as they were).
func (s *Service) reap(ctx context.Context) {
	if _, err := ReapRuns(ctx, s.engine.Runs, s.engine.logger()); err != nil {
		s.engine.logger().Warn("marking runs of exited processes failed", "err", err)
	}
}

// Submit parses spec and starts a run. With wait it returns the finished
// record (and the run's error inside it); otherwise the record as started.
// Spec errors are ErrInvalidSpec.
func (s *Service) Submit(ctx context.Context, name string, spec []byte, noCache, wait bool) (*RunRecord, error) {
	plan, err := Parse(name, spec, s.lookup)
	if err != nil {
		return nil, err
	}
	if s.engine.Runs == nil {
		return nil, errors.New("pipeline runs are not recorded in this process")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("shutting down")
	}
	if len(s.running) >= s.max {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w (limit %d)", ErrBusy, s.max)
	}
	id := NewRunID(s.engine.now())
	runCtx, cancel := context.WithCancel(s.ctx)
	s.running[id] = cancel
	s.wg.Add(1)
	s.mu.Unlock()

	started := make(chan *RunRecord, 1)
	done := make(chan *RunRecord, 1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.running, id)
			s.mu.Unlock()
			cancel()
		}()
		rec, err := s.engine.Run(runCtx, plan, RunOptions{ID: id, NoCache: noCache, ProgressEvery: 10 * time.Second,
			Started: func(r *RunRecord) {
				c := *r
				started <- &c
			}})
		if rec == nil {
			// The run could not even be recorded.
			rec = &RunRecord{ID: id, Pipeline: plan.Name, SpecDigest: plan.Digest, Status: StatusFailed, Error: err.Error()}
			select {
			case started <- rec:
			default:
			}
		}
		done <- rec
	}()
	var first *RunRecord
	select {
	case first = <-started:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if !wait || first.Status == StatusFailed {
		return first, nil
	}
	select {
	case rec := <-done:
		return rec, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Get returns a run's record.
func (s *Service) Get(ctx context.Context, id string) (*RunRecord, error) {
	s.reap(ctx)
	return s.engine.Runs.GetRun(ctx, id)
}

// List returns the newest runs.
func (s *Service) List(ctx context.Context, limit int) ([]*RunRecord, error) {
	s.reap(ctx)
	return s.engine.Runs.ListRuns(ctx, limit)
}

// Cancel stops a run in progress in this process.
func (s *Service) Cancel(id string) error {
	s.mu.Lock()
	cancel, ok := s.running[id]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("run %q: %w", id, ErrNotRunning)
	}
	cancel()
	return nil
}

// Close cancels every run in progress and waits for them to end (their
// records say cancelled), or for ctx.
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stop()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// AllowedVars is a LookupFunc that resolves only the variables named in
// list (comma-separated), so that specs submitted to a server cannot read
// the rest of its environment.
func AllowedVars(list string, lookup LookupFunc) LookupFunc {
	allowed := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		if n = strings.TrimSpace(n); n != "" {
			allowed[n] = true
		}
	}
	return func(name string) (string, bool) {
		if !allowed[name] || lookup == nil {
			return "", false
		}
		return lookup(name)
	}
}
