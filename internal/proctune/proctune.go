// Package proctune runs Go code on a single processor (GOMAXPROCS=1) while
// a server is lightly loaded, and on all of them as soon as it is not.
//
// At low load — one request at a time, nothing else busy — a second P
// costs latency rather than adding capacity: every goroutine a request
// wakes (net/http's background read, gRPC's reader and writer) or readies
// (a deadline, a condition variable) while the other P is idle makes the
// scheduler wake a second thread through a futex, which spins, perhaps
// steals the goroutine to another core, finds nothing else and sleeps
// again. On virtual machines those wake-ups are expensive: measured on a
// 2-core VM at concurrency 1 with the MLP benchmark model, Kiln answered
// in 129 instead of 144 µs (median) over HTTP binary and in 240 instead of
// 297 µs over gRPC with this tuner (see docs/serving.md and
// docs/benchmarks.md). With one P the woken goroutines simply run on the
// same thread after the handler.
//
// The Tuner watches the in-flight requests (Enter/Exit, called by the
// serving layer) and, every tick, the process's CPU time and the
// scheduler's latencies (runtime/metrics):
//   - down to one P once, for quietFor, at most one request was in flight
//     at a time, the process used little more than one core and no
//     goroutine waited long for a P; never sooner than hold after going
//     up;
//   - back up at once when a second request enters, and after a window in
//     which goroutines waited a long time for the one P (a pipeline, a
//     burst of other work).
//
// Switching calls runtime.GOMAXPROCS, which stops the world for a few
// microseconds; the hysteresis keeps that rare. The maximum is the
// GOMAXPROCS the process started with (the GOMAXPROCS environment
// variable, or the CPUs it may use), which is always restored on Stop.
package proctune

import (
	"log/slog"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// tick is how often the scheduler is sampled.
	tick = 10 * time.Millisecond
	// quietFor is how long the process must be quiet before going down.
	quietFor = 300 * time.Millisecond
	// hold is the shortest stay at full parallelism after going up
	// because of concurrent requests; holdBusy after going up because
	// goroutines queued for the single P (other work, which tends to
	// last).
	hold     = time.Second
	holdBusy = 5 * time.Second
	// A quiet stretch uses at most quietCores on average and no tick more
	// than burstCores: a process busy beyond one core has work for more.
	quietCores = 1.2
	burstCores = 1.6
	// window is the number of ticks judged together while on one P:
	// slowEvents scheduling latencies (runnable to running) of at least
	// slowLatency within it bring the Ps back. (The count of goroutines
	// waiting is no signal on one P: the tuner samples right when the P
	// frees, which is when the goroutines a request readied queue.)
	window      = 10
	slowEvents  = 4
	slowLatency = time.Millisecond
	// Going up for other work soon after coming down doubles holdBusy
	// (up to maxHoldBusy), so that steady background work that looks
	// quiet to the sampler costs a short burst of slow scheduling rarely.
	relapse     = 30 * time.Second
	maxHoldBusy = 5 * time.Minute
)

// Sample is one reading of the scheduler.
type Sample struct {
	// CPU is the process's cumulative CPU time (user and system).
	CPU time.Duration
	// Slow is the cumulative count of scheduling latencies (runnable to
	// running) of at least slowLatency.
	Slow uint64
}

// Tuner adapts GOMAXPROCS to the load; the zero value is not usable, use
// New. A nil *Tuner is valid and does nothing.
type Tuner struct {
	max      int
	log      *slog.Logger
	inflight atomic.Int32
	peak     atomic.Int32 // highest in-flight count since the last tick
	low      atomic.Bool  // running on one P

	mu       sync.Mutex // serialises switches and the fields below
	procs    int
	upAt     time.Time
	holdFor  time.Duration
	quietAt  time.Time     // start of the current quiet stretch (zero: not quiet)
	quietCPU time.Duration // CPU time at quietAt
	lastCPU  time.Duration
	lastAt   time.Time
	downAt   time.Time // last switch to one P
	busyHold time.Duration
	lastSlow uint64
	slow     [window]uint64
	n        int // ticks recorded on one P

	// The process's scheduler, clock and GOMAXPROCS (tests replace them).
	sample   func() Sample
	now      func() time.Time
	setProcs func(int)

	stop chan struct{}
	done chan struct{}
}

// New returns a tuner for up to runtime.GOMAXPROCS(0) processors; it
// switches nothing until Start.
func New(log *slog.Logger) *Tuner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return newTuner(runtime.GOMAXPROCS(0), log, readSample, time.Now, func(n int) { runtime.GOMAXPROCS(n) })
}

func newTuner(max int, log *slog.Logger, sample func() Sample, now func() time.Time, set func(int)) *Tuner {
	return &Tuner{max: max, procs: max, log: log, sample: sample, now: now, setProcs: set}
}

// Enter records a request starting; a second concurrent request brings
// every P back at once.
func (t *Tuner) Enter() {
	if t == nil {
		return
	}
	n := t.inflight.Add(1)
	for {
		p := t.peak.Load()
		if n <= p || t.peak.CompareAndSwap(p, n) {
			break
		}
	}
	if n >= 2 && t.low.Load() {
		t.mu.Lock()
		t.up("concurrent requests", hold)
		t.mu.Unlock()
	}
}

// Exit records a request finishing.
func (t *Tuner) Exit() {
	if t != nil {
		t.inflight.Add(-1)
	}
}

// Start samples the scheduler every tick until Stop. Processes that may
// use one CPU only have nothing to adapt.
func (t *Tuner) Start() {
	if t == nil || t.max < 2 || t.stop != nil {
		return
	}
	t.stop, t.done = make(chan struct{}), make(chan struct{})
	t.mu.Lock()
	t.upAt = t.now()
	t.holdFor = hold
	s := t.sample()
	t.lastSlow, t.lastCPU, t.lastAt = s.Slow, s.CPU, t.upAt
	t.mu.Unlock()
	go func() {
		defer close(t.done)
		tk := time.NewTicker(tick)
		defer tk.Stop()
		for {
			select {
			case <-t.stop:
				return
			case <-tk.C:
				t.Tick()
			}
		}
	}()
}

// Stop ends sampling and restores the maximum.
func (t *Tuner) Stop() {
	if t == nil || t.stop == nil {
		return
	}
	close(t.stop)
	<-t.done
	t.mu.Lock()
	t.up("stopping", 0)
	t.mu.Unlock()
}

// Procs returns the GOMAXPROCS the tuner last set (the maximum until it
// first goes down).
func (t *Tuner) Procs() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.procs
}

// Tick takes one sample and switches if the rules say so (Start calls it
// every tick; tests call it directly).
func (t *Tuner) Tick() {
	s := t.sample()
	peak := t.peak.Swap(t.inflight.Load())
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	slow := s.Slow - t.lastSlow
	cores := 0.0
	if d := now.Sub(t.lastAt); d > 0 {
		cores = float64(s.CPU-t.lastCPU) / float64(d)
	}
	t.lastSlow, t.lastCPU, t.lastAt = s.Slow, s.CPU, now
	if t.procs == 1 {
		i := t.n % window
		t.slow[i] = slow
		t.n++
		var slowSum uint64
		for k := range min(t.n, window) {
			slowSum += t.slow[k]
		}
		if slowSum < slowEvents {
			return
		}
		if t.busyHold == 0 || now.Sub(t.downAt) >= relapse {
			t.busyHold = holdBusy
		} else {
			t.busyHold = min(2*t.busyHold, maxHoldBusy)
		}
		t.up("goroutines wait long for one processor", t.busyHold)
		return
	}
	if peak > 1 || slow > 0 || cores > burstCores {
		t.quietAt = time.Time{}
		return
	}
	if t.quietAt.IsZero() {
		t.quietAt, t.quietCPU = now, s.CPU
		return
	}
	q := now.Sub(t.quietAt)
	if q >= quietFor && now.Sub(t.upAt) >= t.holdFor && t.inflight.Load() <= 1 &&
		float64(s.CPU-t.quietCPU)/float64(q) <= quietCores {
		t.procs = 1
		t.low.Store(true)
		t.n = 0
		t.downAt = now
		t.setProcs(1)
		t.log.Debug("low load: running Go code on one processor", "max", t.max)
	}
}

// up restores every P (t.mu held); holdFor is the shortest stay.
func (t *Tuner) up(reason string, holdFor time.Duration) {
	if t.procs == t.max {
		return
	}
	t.procs = t.max
	t.low.Store(false)
	t.upAt, t.holdFor, t.quietAt = t.now(), holdFor, time.Time{}
	t.setProcs(t.max)
	t.log.Debug("load: running Go code on every processor", "procs", t.max, "reason", reason)
}

// readSample reads the process's CPU time and scheduling latencies.
func readSample() Sample {
	var out Sample
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		out.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindFloat64Histogram {
		h := s[0].Value.Float64Histogram()
		for i, c := range h.Counts {
			if h.Buckets[i] >= slowLatency.Seconds() {
				out.Slow += c
			}
		}
	}
	return out
}
