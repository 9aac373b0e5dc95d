package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// passes runs the plan's transforms over the source into the sinks. When
// some transforms need fitting (fitGroups), the data flows in passes: the
// first reads the source through the transforms before the first group of
// fitters, handing the batches to those fitters and to a spill (a
// temporary Arrow IPC file); once they are fitted the next pass replays
// the spill through the transforms up to the next group, and so on; the
// last pass runs the rest of the transforms into the sinks. So the source
// is read once and every transform sees every row once: its rejected rows
// go to on_error once, and stateful transforms (dedupe) keep one state.
// Each fitting pass hands the batches to its fitters (and to the spill) in
// source order, so fitted parameters are the same on every run over the
// same data. It returns the run's per-stage statistics and which fitters
// were fitted.
func (e *Engine) passes(ctx context.Context, plan *Plan, env Env, b *built, cacheSink Sink, opts RunOptions, log *slog.Logger) ([]StageStats, map[int]bool, error) {
	groups := fitGroups(b.transforms)
	acc := newRunStats(plan, b.dlq != nil)
	fitted := map[int]bool{}
	if len(groups) > 0 {
		if r, ok := b.source.(Rereadable); ok && !r.Rereadable() {
			stage := plan.Transforms[groups[0][0]].Stage
			return acc.list(nil, pass{}), fitted, fmt.Errorf("%s needs a fitting pass over the data, but source %q can be read only once: give its parameters, or use settings.params_from_run", stage, plan.Source.Name)
		}
	}
	src := Source(b.source)
	var prev *spill
	defer func() {
		if prev != nil {
			prev.release()
		}
	}()
	from := 0
	for idx, g := range groups {
		j := g[0]
		stages := make([]string, len(g))
		fitters := make([]Fitter, len(g))
		for k, i := range g {
			stages[k] = plan.Transforms[i].Stage
			fitters[k] = b.transforms[i].(Fitter)
		}
		name := strings.Join(stages, ", ")
		log.Info("fitting pass", "stages", stages)
		sp := newSpill(spillDir(e.DataDir))
		passPlan := *plan
		passPlan.Name = plan.Name + " (fitting " + name + ")"
		passPlan.Transforms = plan.Transforms[from:j]
		passPlan.Sinks = []Component{
			{Kind: KindSink, Name: "fit", Stage: "fit." + strings.Join(stages, "+")},
			{Kind: KindSink, Name: "spill", Stage: "spill"},
		}
		passPlan.Settings.Ordered = true
		p := pass{idx: idx, from: from, to: j, first: from == 0 && idx == 0, acc: acc}
		st, err := e.execute(ctx, &passPlan, env, src, b.transforms[from:j], []Sink{fitSink{fs: fitters, stages: stages}, sp}, b.dlq, nil, plan.Source.Name, opts, p, log)
		acc.absorb(st, p)
		if cerr := sp.Close(ctx, err); cerr != nil && err == nil {
			err = cerr
		}
		if prev != nil {
			prev.release()
		}
		prev = sp
		if err != nil {
			return acc.list(nil, pass{}), fitted, fmt.Errorf("fitting pass of %s: %w", name, err)
		}
		for k, f := range fitters {
			if err := f.FitDone(ctx); err != nil {
				return acc.list(nil, pass{}), fitted, fmt.Errorf("%s: %w", stages[k], err)
			}
			fitted[g[k]] = true
		}
		src, from = sp.source(true), j
	}
	mainPlan := *plan
	mainPlan.Transforms = plan.Transforms[from:]
	p := pass{idx: len(groups), from: from, to: len(plan.Transforms), first: len(groups) == 0, final: true, acc: acc}
	st, err := e.execute(ctx, &mainPlan, env, src, b.transforms[from:], b.sinks, b.dlq, cacheSink, plan.Source.Name, opts, p, log)
	acc.absorb(st, p)
	return acc.list(nil, pass{}), fitted, err
}

// pass says which part of the run one execute covers: the transforms
// [from, to), the source's stage when first, the sinks' when final. idx
// numbers the passes of a run (their dead letters add up).
type pass struct {
	idx, from, to int
	first, final  bool
	acc           *runStats // nil: the pass is the whole run (a cache replay)
}

// runStats assembles a run's per-stage statistics from its passes: the
// source's from the first, each transform's from the pass that ran it,
// the sinks' from the last, the on_error sink's summed over all.
type runStats struct {
	mu     sync.Mutex
	nx, ns int
	base   []StageStats // source, transforms, sinks
	dlq    *StageStats  // name of the on_error stage (nil: none)
	dlqs   []StageStats // per pass
}

func newRunStats(plan *Plan, hasDLQ bool) *runStats {
	a := &runStats{nx: len(plan.Transforms), ns: len(plan.Sinks)}
	a.base = append(a.base, StageStats{Stage: "source", Component: plan.Source.Name})
	for _, c := range plan.Transforms {
		a.base = append(a.base, StageStats{Stage: c.Stage, Component: c.Name})
	}
	for _, c := range plan.Sinks {
		a.base = append(a.base, StageStats{Stage: c.Stage, Component: c.Name})
	}
	if hasDLQ && plan.OnError != nil {
		a.dlq = &StageStats{Stage: plan.OnError.Stage, Component: plan.OnError.Name}
	}
	return a
}

// merge writes the statistics st of pass p (as execute returns them:
// source, the pass's transforms, its sinks, on_error) into base and dlqs.
func (a *runStats) merge(base, dlqs []StageStats, st []StageStats, p pass) []StageStats {
	if len(st) == 0 {
		return dlqs
	}
	if p.first {
		base[0] = st[0]
	}
	n := p.to - p.from
	for k := 0; k < n && 1+k < len(st); k++ {
		base[1+p.from+k] = st[1+k]
	}
	if p.final {
		for i := 0; i < a.ns && 1+n+i < len(st); i++ {
			base[1+a.nx+i] = st[1+n+i]
		}
	}
	if a.dlq != nil {
		for len(dlqs) <= p.idx {
			dlqs = append(dlqs, StageStats{})
		}
		dlqs[p.idx] = st[len(st)-1]
	}
	return dlqs
}

// absorb records the final statistics of a pass.
func (a *runStats) absorb(st []StageStats, p pass) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dlqs = a.merge(a.base, a.dlqs, st, p)
}

// list returns the run's statistics, with those of a pass under way (cur,
// of pass p) when cur is not nil.
func (a *runStats) list(cur []StageStats, p pass) []StageStats {
	a.mu.Lock()
	out := append([]StageStats(nil), a.base...)
	dlqs := append([]StageStats(nil), a.dlqs...)
	a.mu.Unlock()
	if cur != nil {
		dlqs = a.merge(out, dlqs, cur, p)
	}
	if a.dlq != nil {
		d := *a.dlq
		for _, s := range dlqs {
			d.Add(s)
		}
		out = append(out, d)
	}
	return out
}

// liveRun is what the live run record is made from: the pass under way
// and the statistics of the finished ones.
type liveRun struct {
	r *runner
	p pass
}

func (l *liveRun) stats() []StageStats {
	if l.p.acc == nil {
		return l.r.stats()
	}
	var cur []StageStats
	if l.r != nil {
		cur = l.r.stats()
	}
	return l.p.acc.list(cur, l.p)
}
