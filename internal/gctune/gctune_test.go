package gctune

import (
	"math"
	"runtime/debug"
	"sync/atomic"
	"testing"
)

// gcSettings reads the GC percent and memory limit without changing them.
func gcSettings() (int, int64) {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p, debug.SetMemoryLimit(-1)
}

// TestGCTuner: the first of overlapping runs applies the run settings,
// the last restores the previous ones; the limit follows the live heap
// upward; a process whose environment sets GOGC or GOMEMLIMIT is left
// alone.
func TestGCTuner(t *testing.T) {
	p0, l0 := gcSettings()
	if l0 != math.MaxInt64 {
		t.Skip("the test process has a memory limit")
	}
	var live atomic.Int64
	env := map[string]string{}
	g := &gcTuner{getenv: func(k string) string { return env[k] }, footprint: func() int64 { return 10 << 20 }, liveHeap: live.Load}

	r1 := g.acquire()
	if p, l := gcSettings(); p != gcPercentDuringRuns || l != 10<<20+gcHeadroom {
		t.Fatalf("during a run: GOGC %d, limit %d", p, l)
	}
	r2 := g.acquire()
	r1()
	r1() // releasing twice counts once
	if p, _ := gcSettings(); p != gcPercentDuringRuns {
		t.Fatalf("a run still holds the settings: GOGC %d", p)
	}
	live.Store(300 << 20)
	g.raise()
	if _, l := gcSettings(); l != 600<<20 {
		t.Errorf("limit %d, want twice the live heap", l)
	}
	live.Store(50 << 20)
	g.raise()
	if _, l := gcSettings(); l != 600<<20 {
		t.Errorf("limit lowered to %d", l)
	}
	r2()
	if p, l := gcSettings(); p != p0 || l != l0 {
		t.Fatalf("after the runs: GOGC %d, limit %d; want %d, %d", p, l, p0, l0)
	}

	for _, k := range []string{"GOGC", "GOMEMLIMIT"} {
		env = map[string]string{k: "200"}
		r := g.acquire()
		if p, l := gcSettings(); p != p0 || l != l0 {
			t.Errorf("%s set: GOGC %d, limit %d changed", k, p, l)
		}
		r()
	}
}
