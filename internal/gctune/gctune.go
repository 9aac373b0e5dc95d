// Package gctune relaxes Go's garbage collector while Kiln does
// allocation-heavy work that keeps little alive: pipeline runs (Arrow
// buffers) and serving (request and response buffers).
package gctune

import (
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// A pipeline run allocates Arrow buffers at a high rate (CSV columns,
// transform outputs, Parquet pages), and a server request and response
// buffers, while keeping little alive, so with Go's default GOGC=100 the
// collector runs every few megabytes: over a hundred cycles a second.
// While at least one holder has called Acquire, the heap may grow to
// five times the live data (GOGC=400), with a memory limit of what the
// process used at the first Acquire plus gcHeadroom, so that the process
// stays small; the limit follows the live heap upward (twice it, as
// GOGC=100 would allow) should the process grow, so the collector is
// never squeezed. When the last holder releases, the previous settings
// come back. A process started with GOGC or GOMEMLIMIT in its
// environment is left alone.

const (
	gcPercentDuringRuns = 400
	gcHeadroom          = 192 << 20
	gcWatchEvery        = 250 * time.Millisecond
)

// gcTuner applies the settings while at least one run holds it.
type gcTuner struct {
	mu          sync.Mutex
	refs        int
	active      bool
	prevPercent int
	prevLimit   int64
	limit       int64
	stop        chan struct{}
	done        chan struct{}

	// getenv, footprint and liveHeap are the process's (tests replace
	// them).
	getenv    func(string) string
	footprint func() int64
	liveHeap  func() int64
}

var global = &gcTuner{getenv: os.Getenv, footprint: memFootprint, liveHeap: memLiveHeap}

// Acquire applies the settings (for the first holder) and returns the
// function that gives them back (undone by the last holder); calling it
// more than once is harmless.
func Acquire() (release func()) { return global.acquire() }

func (g *gcTuner) acquire() (release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refs++
	if g.refs == 1 && g.getenv("GOGC") == "" && g.getenv("GOMEMLIMIT") == "" && debug.SetMemoryLimit(-1) == math.MaxInt64 {
		g.active = true
		g.limit = g.footprint() + gcHeadroom
		g.prevLimit = debug.SetMemoryLimit(g.limit)
		g.prevPercent = debug.SetGCPercent(gcPercentDuringRuns)
		g.stop, g.done = make(chan struct{}), make(chan struct{})
		go g.watch(g.stop, g.done)
	}
	var once sync.Once
	return func() { once.Do(g.release) }
}

func (g *gcTuner) release() {
	g.mu.Lock()
	g.refs--
	if g.refs > 0 || !g.active {
		g.mu.Unlock()
		return
	}
	g.active = false
	debug.SetGCPercent(g.prevPercent)
	debug.SetMemoryLimit(g.prevLimit)
	stop, done := g.stop, g.done
	g.mu.Unlock()
	close(stop)
	<-done
}

// watch raises the limit to twice the live heap when that is above it.
func (g *gcTuner) watch(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(gcWatchEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		g.raise()
	}
}

func (g *gcTuner) raise() {
	want := 2 * g.liveHeap()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.active && want > g.limit {
		g.limit = want
		debug.SetMemoryLimit(want)
	}
}

// memFootprint is the memory the Go runtime holds from the system (what
// a memory limit counts).
func memFootprint() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64() - s[1].Value.Uint64())
}

// memLiveHeap is the heap marked live by the last collection.
func memLiveHeap() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}
