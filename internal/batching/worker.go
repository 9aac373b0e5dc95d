package batching

import (
	"context"
	"fmt"
	"time"
)

// worker is one instance: a goroutine, owned by the Batcher, that forms a
// batch whenever it is free and executes it. It exits when the Batcher is
// closed and its queue is empty.
type worker[In, Out any] struct {
	b        *Batcher[In, Out]
	instance int
	// wake (1-buffered) tells a parked worker to re-plan.
	wake chan struct{}
	// claimed is set while Submit's fast path executes on this worker's
	// instance in the caller's goroutine; the worker must not run a batch
	// meanwhile. Guarded by Batcher.mu.
	claimed bool
	batch   []*request[In, Out]
	items   []Item[In]
	timer   *time.Timer
	// ctx and cancel are the execute context of batch; cancel is nil when
	// ctx is the Batcher's base context.
	ctx    context.Context
	cancel context.CancelFunc
}

// batchCancel cancels a batch's execute context when the last of its
// requests is abandoned by its caller. Guarded by Batcher.mu.
type batchCancel struct {
	remaining int
	cancel    context.CancelFunc
}

// poke wakes the worker if it is parked (a pending token is enough).
func (w *worker[In, Out]) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// unidle removes w from the idle list if it is there. b.mu must be held.
func (w *worker[In, Out]) unidle() {
	b := w.b
	for i, x := range b.idle {
		if x == w {
			last := len(b.idle) - 1
			copy(b.idle[i:], b.idle[i+1:])
			b.idle[last] = nil
			b.idle = b.idle[:last]
			return
		}
	}
}

func (w *worker[In, Out]) loop() {
	b := w.b
	b.mu.Lock()
	for {
		var wait time.Duration
		if !w.claimed {
			start := time.Now()
			wait = w.plan(start)
			if len(w.batch) > 0 {
				if b.queued > 0 {
					b.signal() // another free instance may take the rest
				}
				b.mu.Unlock()
				w.run(start)
				b.mu.Lock()
				continue
			}
			if b.closed && b.queued == 0 {
				break
			}
			if !b.closed {
				b.idle = append(b.idle, w)
			}
		}
		timed := wait > 0 && !w.claimed
		b.mu.Unlock()
		if timed {
			if w.timer == nil {
				w.timer = time.NewTimer(wait)
			} else {
				w.timer.Reset(wait)
			}
			select {
			case <-w.wake:
			case <-w.timer.C:
			}
			w.timer.Stop()
		} else {
			<-w.wake
		}
		b.mu.Lock()
		w.unidle()
	}
	b.live--
	if b.live == 0 {
		close(b.done)
		b.abort()
	}
	b.mu.Unlock()
}

// plan forms the next batch into w.batch, taking its requests out of the
// queue, as Triton's GetDynamicBatch does: scan the queue in priority then
// arrival order, dropping expired requests; stop at a request of another
// shape or one that would exceed MaxBatchSize; remember the largest preferred
// size reached. If no batch is due, w.batch is empty and plan returns how long
// to wait for the oldest request's delay (0: wait for a new request).
// b.mu must be held.
func (w *worker[In, Out]) plan(now time.Time) time.Duration {
	b := w.b
	w.batch = w.batch[:0]
	var (
		rows, best    int
		shape         string
		oldest        time.Time
		full, blocked bool
		dropped       bool
	)
scan:
	for i := range b.levels {
		for r := b.levels[i].head; r != nil; {
			next := r.next
			if err := expired(r, now); err != nil {
				b.drop(r, err)
				dropped = true
				r = next
				continue
			}
			if len(w.batch) == 0 {
				shape, oldest = r.shape, r.enq
			} else {
				if r.shape != shape || rows+r.rows > b.maxBatch {
					blocked = true
					break scan
				}
				if r.enq.Before(oldest) {
					oldest = r.enq
				}
			}
			w.batch = append(w.batch, r)
			rows += r.rows
			if rows >= b.maxBatch {
				full = true // also when batching is disabled (max <= 1)
				break scan
			}
			if b.isPreferred(rows) {
				best = len(w.batch)
			}
			r = next
		}
	}
	if dropped && b.preserve {
		b.flushOrder()
	}
	if len(w.batch) == 0 {
		return 0
	}
	n := len(w.batch)
	if !full && !b.closed {
		waited := now.Sub(oldest)
		delayExceeded := b.delay > 0 && waited >= b.delay
		switch {
		case best > 0 && !delayExceeded:
			n = best
		case blocked || delayExceeded || b.delay == 0:
		default:
			w.batch = w.batch[:0]
			return b.delay - waited
		}
	}
	clear(w.batch[n:])
	w.batch = w.batch[:n]
	for _, r := range w.batch {
		b.levels[r.level].remove(r)
		r.state = stateRunning
	}
	b.queued -= n
	w.execContext()
	return 0
}

// execContext prepares the context for executing w.batch: it is cancelled
// when every request has been abandoned by its caller (see Batcher.abandon),
// or when Close aborts. If any request's context cannot be cancelled, the
// batch can never be abandoned by all, and the base context serves at no
// cost. b.mu must be held.
func (w *worker[In, Out]) execContext() {
	b := w.b
	w.ctx, w.cancel = b.base, nil
	for _, r := range w.batch {
		if r.done == nil {
			return
		}
	}
	w.ctx, w.cancel = context.WithCancel(b.base)
	bc := &batchCancel{remaining: len(w.batch), cancel: w.cancel}
	for _, r := range w.batch {
		r.batch = bc
	}
}

// expired returns the error for a queued request that must not execute.
func expired[In, Out any](r *request[In, Out], now time.Time) error {
	if r.done != nil {
		select {
		case <-r.done:
			return ctxError(r.ctx.Err(), false)
		default:
		}
	}
	if !r.deadline.IsZero() && !now.Before(r.deadline) {
		return errDeadlineQueued
	}
	return nil
}

func (b *Batcher[In, Out]) isPreferred(rows int) bool {
	for _, p := range b.preferred {
		if p == rows {
			return true
		}
	}
	return false
}

// run executes w.batch, dispatched at start, and answers its requests.
func (w *worker[In, Out]) run(start time.Time) {
	b := w.b
	rows := 0
	for _, r := range w.batch {
		w.items = append(w.items, Item[In]{Value: r.value, Rows: r.rows})
		rows += r.rows
	}
	if b.obs != nil {
		b.obs.Batch(rows, len(w.batch), w.instance)
	}
	outs, err := b.exec(w.ctx, w.instance, w.items)
	if w.cancel != nil {
		w.cancel()
	}
	w.ctx, w.cancel = nil, nil
	clear(w.items)
	w.items = w.items[:0]
	if err == nil && len(outs) != len(w.batch) {
		err = fmt.Errorf("%w: execute returned %d results for %d items", ErrInternal, len(outs), len(w.batch))
	}

	info := Info{BatchRows: rows, BatchItems: len(w.batch), Instance: w.instance}
	if b.preserve {
		b.mu.Lock()
	}
	for i, r := range w.batch {
		r.info = info
		r.info.QueueTime = start.Sub(r.enq)
		if err != nil {
			r.err = err
		} else {
			r.out = outs[i]
		}
		if b.preserve {
			r.complete = true
		} else {
			r.ch <- struct{}{} // r belongs to its Submit from here on
		}
	}
	if b.preserve {
		b.flushOrder()
		b.mu.Unlock()
	}
	clear(w.batch)
	w.batch = w.batch[:0]
}
