package proctune

import (
	"log/slog"
	"runtime"
	"slices"
	"testing"
	"time"
)

// rig drives a tuner with a scripted scheduler, clock and GOMAXPROCS.
type rig struct {
	t     *Tuner
	now   time.Time
	s     Sample
	cores float64 // CPU the process uses while the clock runs
	procs []int   // every GOMAXPROCS the tuner set
}

func newRig(max int) *rig {
	r := &rig{now: time.Unix(1000, 0)}
	r.t = newTuner(max, slog.New(slog.DiscardHandler), func() Sample { return r.s }, func() time.Time { return r.now }, func(n int) { r.procs = append(r.procs, n) })
	r.t.upAt, r.t.holdFor = r.now, hold // as Start does
	return r
}

// run advances the clock by d in ticks, calling Tick after each.
func (r *rig) run(d time.Duration) {
	for end := r.now.Add(d); r.now.Before(end); {
		r.now = r.now.Add(tick)
		r.s.CPU += time.Duration(r.cores * float64(tick))
		r.t.Tick()
	}
}

func TestTuner(t *testing.T) {
	tests := []struct {
		name  string
		steps func(r *rig)
		want  []int // GOMAXPROCS calls in order
		procs int   // final
	}{
		{"idle goes down after the hold", func(r *rig) { r.run(2 * time.Second) }, []int{1}, 1},
		{"not before the hold", func(r *rig) { r.run(hold - tick) }, nil, 2},
		{"one request at a time goes down", func(r *rig) {
			for range 200 {
				r.t.Enter()
				r.run(tick)
				r.t.Exit()
			}
		}, []int{1}, 1},
		{"a second request brings the Ps back at once", func(r *rig) {
			r.run(2 * time.Second)
			r.t.Enter()
			r.t.Enter()
		}, []int{1, 2}, 2},
		{"concurrent requests keep them", func(r *rig) {
			r.run(2 * time.Second)
			r.t.Enter()
			r.t.Enter()
			for range 300 {
				r.t.Exit()
				r.run(tick)
				r.t.Enter()
			}
		}, []int{1, 2}, 2},
		{"down again after quiet and the hold", func(r *rig) {
			r.run(2 * time.Second)
			r.t.Enter()
			r.t.Enter()
			r.t.Exit()
			r.t.Exit()
			r.run(hold + quietFor + tick)
		}, []int{1, 2, 1}, 1},
		{"one busy core goes down", func(r *rig) {
			r.cores = 1
			r.run(2 * time.Second)
		}, []int{1}, 1},
		{"more than a core busy keeps them", func(r *rig) {
			r.cores = 1.4
			r.run(3 * time.Second)
		}, nil, 2},
		{"bursts beyond a core keep them", func(r *rig) {
			for range 100 {
				r.cores = 0.2
				r.run(5 * tick)
				r.cores = 1.9
				r.run(tick)
			}
		}, nil, 2},
		{"slow scheduling on one P brings them back", func(r *rig) {
			r.run(2 * time.Second)
			r.s.Slow += slowEvents
			r.run(tick)
		}, []int{1, 2}, 2},
		{"a few slow events spread out do not", func(r *rig) {
			r.run(2 * time.Second)
			for range 5 {
				r.s.Slow++
				r.run(time.Duration(window+1) * tick)
			}
		}, []int{1}, 1},
		{"slow scheduling at full parallelism is not quiet", func(r *rig) {
			for range 300 {
				r.s.Slow++
				r.run(tick)
			}
		}, nil, 2},
		{"busy relapses hold longer", func(r *rig) {
			r.run(2 * time.Second)
			r.s.Slow += slowEvents
			r.run(tick) // up, held holdBusy
			r.run(holdBusy - time.Second)
			if r.t.Procs() != 2 {
				panic("went down within holdBusy")
			}
			r.run(2 * time.Second) // down
			r.s.Slow += slowEvents
			r.run(tick) // up again soon after: held 2*holdBusy
			r.run(holdBusy + time.Second)
		}, []int{1, 2, 1, 2}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(2)
			tt.steps(r)
			if !slices.Equal(r.procs, tt.want) {
				t.Errorf("GOMAXPROCS calls %v, want %v", r.procs, tt.want)
			}
			if got := r.t.Procs(); got != tt.procs {
				t.Errorf("procs %d, want %d", got, tt.procs)
			}
		})
	}
}

// TestNil: a nil tuner (adaptive_procs off) is usable.
func TestNil(t *testing.T) {
	var tu *Tuner
	tu.Enter()
	tu.Exit()
	tu.Start()
	tu.Stop()
}

// TestRealProcess runs the tuner on this process's scheduler: idle, it
// goes down to one P; two requests in flight bring the maximum back; Stop
// restores it.
func TestRealProcess(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs GOMAXPROCS >= 2")
	}
	max := runtime.GOMAXPROCS(0)
	tu := New(nil)
	tu.Start()
	defer func() {
		tu.Stop()
		if got := runtime.GOMAXPROCS(0); got != max {
			t.Errorf("after Stop GOMAXPROCS is %d, want %d", got, max)
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for runtime.GOMAXPROCS(0) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("idle for 60s, GOMAXPROCS still %d", runtime.GOMAXPROCS(0))
		}
		time.Sleep(50 * time.Millisecond)
	}
	tu.Enter()
	tu.Enter()
	if got := runtime.GOMAXPROCS(0); got != max {
		t.Errorf("two requests in flight: GOMAXPROCS %d, want %d", got, max)
	}
	tu.Exit()
	tu.Exit()
}
