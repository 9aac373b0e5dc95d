// Package batching provides a dynamic batcher: it queues requests, groups
// compatible ones into batches and runs each batch on one of several
// instances through a caller-supplied execute function.
//
// The policy follows Triton's dynamic batcher (GetDynamicBatch): a batch never
// exceeds Config.MaxBatchSize rows, only requests with equal shape keys share a
// batch, a batch is dispatched as soon as it is full, reaches the largest
// achievable preferred size, cannot grow, or its oldest request has waited
// Config.MaxQueueDelay. Requests are served by priority level (1 is highest),
// FIFO within a level. A request whose deadline passes or whose context is
// cancelled while queued is removed and never reaches the execute function;
// the queue can be bounded, in which case an overflowing request fails
// immediately with ErrQueueFull.
//
// Beyond Triton, a caller that gives up while its batch is executing gets its
// error at once, and the execute function's context is cancelled only when
// every request in the batch has given up, so one impatient client does not
// cancel the work of the others.
//
// Batches are formed from the head of the queue (highest priority, then
// oldest): the batch ends at the first request of another shape key or one
// that would exceed the maximum, as in Triton; that request starts a later
// batch. While every instance is busy, requests keep accumulating, so batches
// grow under load. Each instance is a goroutine owned by the Batcher; Close
// ends them.
//
// The package knows nothing about tensors, models or transports: a request is
// an opaque value with a row count and a shape key.
package batching

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Sentinel errors. Errors returned by New and Submit wrap one of these (test
// with errors.Is), except errors returned by the execute function, which
// Submit passes through unchanged.
var (
	// ErrQueueFull: the queue holds Config.MaxQueueSize requests already.
	ErrQueueFull = errors.New("batching: queue full")
	// ErrDeadline: the request's deadline passed before it was executed, or its
	// context's deadline passed while it was executing. Errors wrapping it
	// also wrap context.DeadlineExceeded.
	ErrDeadline = errors.New("batching: deadline exceeded")
	// ErrCanceled: the request's context was cancelled. Errors wrapping it
	// also wrap context.Canceled.
	ErrCanceled = errors.New("batching: canceled")
	// ErrClosed: the batcher is closed, or was closed before the request ran.
	ErrClosed = errors.New("batching: closed")
	// ErrTooLarge: the request has more rows than Config.MaxBatchSize.
	ErrTooLarge = errors.New("batching: request too large")
	// ErrInvalid: an invalid configuration or request option.
	ErrInvalid = errors.New("batching: invalid argument")
	// ErrInternal: the execute function broke its contract (returned a
	// number of results different from the number of items).
	ErrInternal = errors.New("batching: internal error")
)

// Config is the batching policy of one queue (one model version). The zero
// value, with Instances defaulted to 1, executes each request alone as soon as
// the instance is free.
type Config struct {
	// MaxBatchSize is the largest number of rows in a batch. Values <= 1
	// disable batching: each request executes alone and its Rows are not
	// checked.
	MaxBatchSize int
	// PreferredBatchSizes are row counts worth dispatching at once, without
	// waiting for MaxQueueDelay. Each must be in [1, MaxBatchSize].
	PreferredBatchSizes []int
	// MaxQueueDelay is how long the oldest request of a batch that is neither
	// full nor at a preferred size may wait for more requests. 0 dispatches
	// whatever is queued as soon as an instance is free.
	MaxQueueDelay time.Duration
	// MaxQueueSize bounds the number of queued (not yet executing) requests;
	// 0 means unbounded. A request that finds the queue full fails at once
	// with ErrQueueFull.
	MaxQueueSize int
	// PriorityLevels is the number of priority levels; 0 and 1 both mean one.
	// Level 1 is the highest: every queued level-1 request is served before
	// any level-2 request, and so on; FIFO within a level.
	PriorityLevels int
	// DefaultPriority is the level of requests that give priority 0. 0 means
	// the lowest level (PriorityLevels), so unprioritized traffic never
	// overtakes prioritized traffic.
	DefaultPriority int
	// DefaultTimeout is the queue timeout of requests that give none; 0 means
	// none. A queue timeout bounds the time spent queued, not executing.
	DefaultTimeout time.Duration
	// PreserveOrdering delivers responses in submission order, across batches
	// and instances. Requests that fail without executing (deadline,
	// cancellation, close) are answered at once.
	PreserveOrdering bool
	// Instances is the number of concurrent executors; each runs one batch at
	// a time. 0 means 1.
	Instances int
}

// Item is one request as the execute function sees it.
type Item[In any] struct {
	Value In
	Rows  int
}

// ExecFunc executes one batch on the given instance (0 <= instance <
// Config.Instances) and returns one Out per item, in item order, or an error
// for the whole batch. All items share a shape key and their Rows sum to at
// most Config.MaxBatchSize (when batching is enabled).
//
// ctx is cancelled when every request in the batch has been abandoned by its
// caller, or when Close gives up waiting; exec should then return promptly.
// exec must not retain items after it returns; the batcher does not retain the
// returned slice, so exec may reuse it on its next call for the same instance.
// exec must not panic: panics are not recovered and crash the program.
type ExecFunc[In, Out any] func(ctx context.Context, instance int, items []Item[In]) ([]Out, error)

// Options describe one request.
type Options struct {
	// Rows is the request's size along the batch dimension; 0 means 1.
	Rows int
	// ShapeKey identifies the request's non-batch shape; only requests with
	// equal keys share a batch.
	ShapeKey string
	// Priority is the request's level in [1, Config.PriorityLevels]; 0 means
	// Config.DefaultPriority.
	Priority int
	// Timeout bounds the time spent queued; 0 means Config.DefaultTimeout.
	// The effective deadline is the earlier of this and ctx's deadline.
	Timeout time.Duration
}

// Info describes how a request was executed.
type Info struct {
	// QueueTime is the time from Submit to the start of execution.
	QueueTime time.Duration
	// BatchRows and BatchItems are the size of the batch the request ran in.
	BatchRows, BatchItems int
	// Instance is the instance that executed the batch.
	Instance int
}

// Observer receives events for metrics. Its methods are called synchronously
// from the batcher's and the callers' goroutines, concurrently, and must be
// cheap and must not block or call back into the Batcher.
type Observer interface {
	// Batch is called once per batch, just before it is executed.
	Batch(rows, items, instance int)
	// Rejected is called once per request that ends without the execute
	// function's answer, with the error Submit returns: invalid, too large,
	// queue full, closed, deadline, or cancelled (while queued or executing).
	Rejected(reason error)
}

// Option configures a Batcher.
type Option func(*options)

type options struct {
	observer Observer
}

// WithObserver reports batches and rejections to o.
func WithObserver(o Observer) Option {
	return func(opts *options) { opts.observer = o }
}

// Errors carrying both a batching sentinel and the context error.
var (
	errDeadlineQueued    = fmt.Errorf("%w while queued: %w", ErrDeadline, context.DeadlineExceeded)
	errDeadlineExecuting = fmt.Errorf("%w while executing: %w", ErrDeadline, context.DeadlineExceeded)
	errCanceledQueued    = fmt.Errorf("%w while queued: %w", ErrCanceled, context.Canceled)
	errCanceledExecuting = fmt.Errorf("%w while executing: %w", ErrCanceled, context.Canceled)
	errClosedQueued      = fmt.Errorf("%w before the request was executed", ErrClosed)
)

// ctxError maps a context error to the batcher's error for it.
func ctxError(err error, executing bool) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		if executing {
			return errDeadlineExecuting
		}
		return errDeadlineQueued
	case errors.Is(err, context.Canceled):
		if executing {
			return errCanceledExecuting
		}
		return errCanceledQueued
	default:
		return fmt.Errorf("%w: %w", ErrCanceled, err)
	}
}

type reqState uint8

const (
	stateQueued   reqState = iota // in a level queue
	stateRunning                  // taken into a batch
	stateFinished                 // removed without executing
)

// request is one queued Submit. Fields up to next are set by Submit before
// the request is published; state, prev, next and the ordering flags are
// guarded by Batcher.mu; out, info and err are written by exactly one party
// before it signals ch, and read by Submit after receiving from ch.
type request[In, Out any] struct {
	value    In
	rows     int
	shape    string
	level    int
	enq      time.Time
	deadline time.Time // zero: none
	ctx      context.Context
	done     <-chan struct{} // ctx.Done(), nil if ctx cannot be cancelled

	prev, next *request[In, Out]
	state      reqState
	// PreserveOrdering: complete means the answer is ready (or none is owed,
	// skip); the request stays in Batcher.order until delivered in turn.
	complete, skip bool
	// noRecycle: something other than Submit may still refer to the request,
	// so it must not go back to the pool.
	noRecycle bool
	// rejected: err is the batcher's, not exec's.
	rejected bool
	// batch, while running, counts the batch's requests not yet abandoned;
	// nil if the batch cannot be abandoned by all.
	batch *batchCancel

	out  Out
	info Info
	err  error
	ch   chan struct{} // 1-buffered; signalled exactly once per use
}

// fifo is an intrusive doubly linked list of requests.
type fifo[In, Out any] struct {
	head, tail *request[In, Out]
}

func (q *fifo[In, Out]) push(r *request[In, Out]) {
	r.prev, r.next = q.tail, nil
	if q.tail == nil {
		q.head = r
	} else {
		q.tail.next = r
	}
	q.tail = r
}

func (q *fifo[In, Out]) remove(r *request[In, Out]) {
	if r.prev == nil {
		q.head = r.next
	} else {
		r.prev.next = r.next
	}
	if r.next == nil {
		q.tail = r.prev
	} else {
		r.next.prev = r.prev
	}
	r.prev, r.next = nil, nil
}

// Batcher queues requests and executes them in batches. It must be closed
// with Close, which ends its goroutines. Its methods are safe for concurrent
// use.
type Batcher[In, Out any] struct {
	exec        ExecFunc[In, Out]
	obs         Observer
	maxBatch    int
	preferred   []int
	delay       time.Duration
	maxQueue    int
	defPriority int
	defTimeout  time.Duration
	preserve    bool
	errFull     error

	pool sync.Pool // *request[In, Out]

	// base is the parent of every exec context; abort cancels it when Close
	// gives up waiting.
	base  context.Context
	abort context.CancelFunc

	done chan struct{} // closed when the last worker exits

	mu     sync.Mutex
	levels []fifo[In, Out]
	queued int
	// idle holds the parked, unclaimed workers; signal wakes one of them
	// and Submit's fast path borrows one to execute inline.
	idle      []*worker[In, Out]
	workers   []*worker[In, Out]
	live      int
	closed    bool
	order     []*request[In, Out] // PreserveOrdering: undelivered requests in submission order
	orderHead int
}

// New validates cfg and starts cfg.Instances workers that call exec.
func New[In, Out any](cfg Config, exec ExecFunc[In, Out], opts ...Option) (*Batcher[In, Out], error) {
	if exec == nil {
		return nil, fmt.Errorf("%w: nil execute function", ErrInvalid)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	levels := max(cfg.PriorityLevels, 1)
	instances := max(cfg.Instances, 1)
	b := &Batcher[In, Out]{
		exec:        exec,
		obs:         o.observer,
		maxBatch:    cfg.MaxBatchSize,
		delay:       cfg.MaxQueueDelay,
		maxQueue:    cfg.MaxQueueSize,
		defPriority: cfg.DefaultPriority,
		defTimeout:  cfg.DefaultTimeout,
		preserve:    cfg.PreserveOrdering,
		done:        make(chan struct{}),
		levels:      make([]fifo[In, Out], levels),
		live:        instances,
	}
	if b.defPriority == 0 {
		b.defPriority = levels
	}
	if cfg.MaxBatchSize > 1 {
		b.preferred = append([]int(nil), cfg.PreferredBatchSizes...)
	}
	b.errFull = fmt.Errorf("%w: %d requests queued", ErrQueueFull, cfg.MaxQueueSize)
	b.pool.New = func() any { return &request[In, Out]{ch: make(chan struct{}, 1)} }
	b.base, b.abort = context.WithCancel(context.Background())
	for i := range instances {
		b.workers = append(b.workers, &worker[In, Out]{b: b, instance: i, wake: make(chan struct{}, 1)})
	}
	for _, w := range b.workers {
		go w.loop()
	}
	return b, nil
}

func (c Config) validate() error {
	switch {
	case c.MaxBatchSize < 0:
		return fmt.Errorf("%w: max batch size %d is negative", ErrInvalid, c.MaxBatchSize)
	case c.MaxQueueDelay < 0:
		return fmt.Errorf("%w: max queue delay %v is negative", ErrInvalid, c.MaxQueueDelay)
	case c.MaxQueueSize < 0:
		return fmt.Errorf("%w: max queue size %d is negative", ErrInvalid, c.MaxQueueSize)
	case c.PriorityLevels < 0:
		return fmt.Errorf("%w: priority levels %d is negative", ErrInvalid, c.PriorityLevels)
	case c.DefaultPriority < 0 || c.DefaultPriority > max(c.PriorityLevels, 1):
		return fmt.Errorf("%w: default priority %d outside [1, %d]", ErrInvalid, c.DefaultPriority, max(c.PriorityLevels, 1))
	case c.DefaultTimeout < 0:
		return fmt.Errorf("%w: default timeout %v is negative", ErrInvalid, c.DefaultTimeout)
	case c.Instances < 0:
		return fmt.Errorf("%w: instances %d is negative", ErrInvalid, c.Instances)
	}
	if len(c.PreferredBatchSizes) > 0 && c.MaxBatchSize <= 1 {
		return fmt.Errorf("%w: preferred batch sizes need a max batch size above 1", ErrInvalid)
	}
	for _, p := range c.PreferredBatchSizes {
		if p < 1 || p > c.MaxBatchSize {
			return fmt.Errorf("%w: preferred batch size %d outside [1, %d]", ErrInvalid, p, c.MaxBatchSize)
		}
	}
	return nil
}

// Submit queues v and waits for its result. It returns exec's answer for v and
// how it was executed, or an error wrapping one of the sentinel errors, or
// exec's error for the whole batch.
//
// Submit returns as soon as ctx is done, whether v is queued or executing,
// with an error wrapping ErrCanceled or ErrDeadline (and ctx's error); a
// request that leaves the queue this way is never executed.
func (b *Batcher[In, Out]) Submit(ctx context.Context, v In, o Options) (Out, Info, error) {
	rows := o.Rows
	if rows == 0 {
		rows = 1
	}
	level := o.Priority
	if level == 0 {
		level = b.defPriority
	}
	switch {
	case rows < 0:
		return b.reject(fmt.Errorf("%w: rows %d is negative", ErrInvalid, rows))
	case level < 1 || level > len(b.levels):
		return b.reject(fmt.Errorf("%w: priority %d outside [1, %d]", ErrInvalid, o.Priority, len(b.levels)))
	case o.Timeout < 0:
		return b.reject(fmt.Errorf("%w: timeout %v is negative", ErrInvalid, o.Timeout))
	case b.maxBatch > 1 && rows > b.maxBatch:
		return b.reject(fmt.Errorf("%w: %d rows exceed the max batch size of %d", ErrTooLarge, rows, b.maxBatch))
	}
	if err := ctx.Err(); err != nil {
		return b.reject(ctxError(err, false))
	}

	timeout := o.Timeout
	if timeout == 0 {
		timeout = b.defTimeout
	}
	now := time.Now()
	var deadline time.Time
	if timeout > 0 {
		deadline = now.Add(timeout)
	}
	// The queue timeout needs a timer only when it comes before ctx's deadline.
	useTimer := timeout > 0
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || !deadline.Before(d)) {
		deadline = d
		useTimer = false
	}

	b.mu.Lock()
	if w := b.borrow(deadline, now); w != nil {
		b.mu.Unlock()
		return b.inline(ctx, w, v, rows)
	}
	b.mu.Unlock()

	r := b.pool.Get().(*request[In, Out])
	r.value, r.rows, r.shape, r.level = v, rows, o.ShapeKey, level-1
	r.enq, r.deadline = now, deadline
	r.ctx, r.done = ctx, ctx.Done()

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.recycle(r)
		return b.reject(ErrClosed)
	}
	if b.maxQueue > 0 && b.queued >= b.maxQueue {
		b.mu.Unlock()
		b.recycle(r)
		return b.reject(b.errFull)
	}
	r.state = stateQueued
	b.levels[r.level].push(r)
	b.queued++
	if b.preserve {
		b.order = append(b.order, r)
	}
	b.signal()
	b.mu.Unlock()

	var timeoutC <-chan time.Time
	if useTimer {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timeoutC = t.C
	}
	for {
		select {
		case <-r.ch:
			return b.finish(r)
		case <-r.done:
			return b.abandon(r)
		case <-timeoutC:
			// A queue timeout: it does not apply once the request executes.
			timeoutC = nil
			b.mu.Lock()
			queued := r.state == stateQueued
			if queued {
				b.dequeue(r)
			}
			b.mu.Unlock()
			if queued {
				return b.reject(errDeadlineQueued)
			}
		}
	}
}

// reject reports err to the observer and returns it from Submit.
func (b *Batcher[In, Out]) reject(err error) (Out, Info, error) {
	if b.obs != nil {
		b.obs.Rejected(err)
	}
	var zero Out
	return zero, Info{}, err
}

// finish returns the answer signalled on r.ch and recycles r. If the batch
// failed and the caller's context has ended, most likely the failure is the
// cancellation of the batch, so the caller gets its context's error.
func (b *Batcher[In, Out]) finish(r *request[In, Out]) (Out, Info, error) {
	out, info, err, rejected, ctx := r.out, r.info, r.err, r.rejected, r.ctx
	if !r.noRecycle {
		b.recycle(r)
	}
	switch {
	case rejected:
		return b.reject(err)
	case err != nil && ctx.Err() != nil:
		return b.reject(ctxError(ctx.Err(), true))
	case err != nil:
		var zero Out
		return zero, info, err
	}
	return out, info, nil
}

// abandon handles r's context ending before Submit got an answer. r is not
// recycled: a worker may still hold it.
func (b *Batcher[In, Out]) abandon(r *request[In, Out]) (Out, Info, error) {
	select {
	case <-r.ch: // the answer arrived at the same time; prefer it
		return b.finish(r)
	default:
	}
	b.mu.Lock()
	executing := r.state == stateRunning
	switch {
	case r.state == stateQueued:
		b.dequeue(r)
	case executing && r.batch != nil:
		// The batch's context ends when its last caller gives up.
		r.batch.remaining--
		if r.batch.remaining == 0 {
			r.batch.cancel()
		}
	}
	b.mu.Unlock()
	return b.reject(ctxError(r.ctx.Err(), executing))
}

// dequeue removes a queued request whose Submit answers by itself.
// b.mu must be held.
func (b *Batcher[In, Out]) dequeue(r *request[In, Out]) {
	b.levels[r.level].remove(r)
	b.queued--
	r.state = stateFinished
	if b.preserve {
		r.complete, r.skip, r.noRecycle = true, true, true
		b.flushOrder()
	}
}

// drop removes a queued request and answers it with err, a batcher error.
// b.mu must be held; with PreserveOrdering the caller must flushOrder.
func (b *Batcher[In, Out]) drop(r *request[In, Out], err error) {
	b.levels[r.level].remove(r)
	b.queued--
	r.state = stateFinished
	r.err, r.rejected = err, true
	if b.preserve {
		r.complete, r.skip, r.noRecycle = true, true, true
	}
	r.ch <- struct{}{}
}

// flushOrder delivers, in submission order, every answer that is ready and
// not preceded by one that is not. b.mu must be held.
func (b *Batcher[In, Out]) flushOrder() {
	for b.orderHead < len(b.order) {
		r := b.order[b.orderHead]
		if !r.complete {
			break
		}
		b.order[b.orderHead] = nil
		b.orderHead++
		if !r.skip {
			r.ch <- struct{}{}
		}
	}
	if b.orderHead == len(b.order) {
		b.order, b.orderHead = b.order[:0], 0
	} else if b.orderHead >= 1024 && b.orderHead*2 >= len(b.order) {
		n := copy(b.order, b.order[b.orderHead:])
		clear(b.order[n:])
		b.order, b.orderHead = b.order[:n], 0
	}
}

func (b *Batcher[In, Out]) recycle(r *request[In, Out]) {
	ch := r.ch
	*r = request[In, Out]{ch: ch}
	b.pool.Put(r)
}

// signal wakes one idle worker, if any. b.mu must be held.
func (b *Batcher[In, Out]) signal() {
	if n := len(b.idle); n > 0 {
		w := b.idle[n-1]
		b.idle[n-1] = nil
		b.idle = b.idle[:n-1]
		w.poke()
	}
}

// borrow claims an idle worker for executing a request inline in its
// caller's goroutine — the fast path when nothing is queued, an instance
// is free and the policy would dispatch a lone request at once (no queue
// delay to wait for company, no ordering to keep). It returns nil when the
// request must go through the queue. b.mu must be held.
func (b *Batcher[In, Out]) borrow(deadline, now time.Time) *worker[In, Out] {
	if b.closed || b.queued > 0 || b.preserve || len(b.idle) == 0 ||
		(b.delay > 0 && b.maxBatch > 1) || (!deadline.IsZero() && !now.Before(deadline)) {
		return nil
	}
	n := len(b.idle)
	w := b.idle[n-1]
	b.idle[n-1] = nil
	b.idle = b.idle[:n-1]
	w.claimed = true
	return w
}

// inline executes one request on a borrowed worker's instance in the
// caller's goroutine, with the caller's context, then returns the worker.
func (b *Batcher[In, Out]) inline(ctx context.Context, w *worker[In, Out], v In, rows int) (Out, Info, error) {
	if b.obs != nil {
		b.obs.Batch(rows, 1, w.instance)
	}
	w.items = append(w.items[:0], Item[In]{Value: v, Rows: rows})
	outs, err := b.exec(ctx, w.instance, w.items)
	clear(w.items)
	w.items = w.items[:0]
	if err == nil && len(outs) != 1 {
		err = fmt.Errorf("%w: execute returned %d results for 1 item", ErrInternal, len(outs))
	}
	// Take the answer before the instance is released: exec may reuse its
	// result slice on its next call.
	var out Out
	if err == nil {
		out = outs[0]
	}
	b.mu.Lock()
	w.claimed = false
	if b.queued > 0 || b.closed {
		w.poke() // the worker picks up the queue, or exits
	} else {
		b.idle = append(b.idle, w)
	}
	b.mu.Unlock()
	info := Info{BatchRows: rows, BatchItems: 1, Instance: w.instance}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return b.reject(ctxError(cerr, true))
		}
		var zero Out
		return zero, info, err
	}
	return out, info, nil
}

// QueueLen returns the number of queued requests, not counting executing ones.
func (b *Batcher[In, Out]) QueueLen() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.queued
}

// Close stops accepting requests (Submit returns ErrClosed), executes the
// queued ones and waits for running batches to finish. If ctx ends first,
// Close answers the still queued requests with ErrClosed, cancels the
// contexts of running batches and returns an error wrapping ctx's error; the
// workers then exit as soon as their execute calls return. Close may be
// called again, e.g. to wait for the workers after it timed out.
func (b *Batcher[In, Out]) Close(ctx context.Context) error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		b.idle = b.idle[:0]
		for _, w := range b.workers {
			w.poke() // drain the queue, then exit
		}
	}
	b.mu.Unlock()

	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
	}

	b.mu.Lock()
	for i := range b.levels {
		for r := b.levels[i].head; r != nil; {
			next := r.next
			b.drop(r, errClosedQueued)
			r = next
		}
	}
	if b.preserve {
		b.flushOrder()
	}
	b.mu.Unlock()
	b.abort()
	return fmt.Errorf("batching: close: %w", ctx.Err())
}
