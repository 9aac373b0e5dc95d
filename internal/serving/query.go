package serving

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kilnai/kiln/internal/batching"
	"github.com/kilnai/kiln/internal/config"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/serving/respcache"
)

// resolve finds the version a request addresses ("" = the highest READY
// version) and takes a reference on it; the caller must release it.
func (m *Manager) resolve(name, ver string) (*version, error) {
	m.mu.Lock()
	e := m.models[name]
	m.mu.Unlock()
	if e == nil {
		return nil, fmt.Errorf("%w: %q", ErrModelNotFound, name)
	}
	var num int64
	if ver != "" {
		n, err := strconv.ParseInt(ver, 10, 64)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%w: model %q has no version %q (versions are positive integers)", ErrModelNotFound, name, ver)
		}
		num = n
	}
	for attempt := 0; attempt < 8; attempt++ {
		s := e.snap.Load()
		v := s.latest
		if ver != "" {
			v = s.versions[num]
			if v == nil {
				if _, failed := s.failed[num]; failed {
					return nil, fmt.Errorf("%w: model %q version %d is not ready: %s", ErrModelNotReady, name, num, s.failed[num])
				}
				return nil, fmt.Errorf("%w: model %q has no version %d being served", ErrModelNotFound, name, num)
			}
		}
		if v == nil {
			reason := "no version is loaded"
			if s.unloaded {
				reason = "it was unloaded"
			} else if s.err != nil {
				reason = s.err.Error()
			}
			return nil, fmt.Errorf("%w: model %q: %s", ErrModelNotReady, name, reason)
		}
		if v.acquire() {
			return v, nil
		}
		// The version was retired between the snapshot load and acquire:
		// a newer snapshot is already published; look again.
	}
	return nil, fmt.Errorf("%w: model %q is being reloaded", ErrModelNotReady, name)
}

// Infer runs one request on a model version ("" = the default version).
func (m *Manager) Infer(ctx context.Context, name, ver string, req *Request) (*Response, error) {
	if m.opts.Load != nil {
		m.opts.Load.Enter()
		defer m.opts.Load.Exit()
	}
	v, err := m.resolve(name, ver)
	if err != nil {
		return nil, err
	}
	defer v.release()
	start := time.Now()
	j, rows, shapeKey, err := v.prepare(req)
	if err != nil {
		v.fail(start, "invalid")
		return nil, err
	}
	var cacheKey respcache.Key
	if m.opts.Cache != nil && v.cfg.ResponseCache {
		cacheKey = respcache.NewKey(v.cacheID, v.number, j.inputs, req.Outputs)
		t0 := time.Now()
		outs, hit, err := m.opts.Cache.Get(ctx, cacheKey)
		if err != nil {
			m.log.Warn("response cache lookup failed; computing", "model", name, "version", v.number, "err", err)
		}
		if hit {
			d := time.Since(start)
			v.stats.cacheHit.add(time.Since(t0))
			v.stats.success.add(d)
			v.stats.lastInference.Store(time.Now().UnixMilli())
			v.metrics.requests.Inc()
			v.metrics.cacheHits.Inc()
			v.metrics.duration.Observe(d.Seconds())
			return &Response{Model: name, Version: v.number, Outputs: outs}, nil
		}
		v.stats.cacheMiss.add(time.Since(t0))
		v.metrics.cacheMisses.Inc()
	}
	prio := req.Priority
	if levels := v.priorityLevels(); prio > levels {
		prio = 0 // as Triton does: an out-of-range priority means the default level
	}
	outs, info, err := v.batcher.Submit(ctx, j, batching.Options{Rows: rows, ShapeKey: shapeKey, Priority: prio, Timeout: req.Timeout})
	if err != nil {
		reason := "backend"
		switch {
		case errors.Is(err, batching.ErrQueueFull):
			reason = "rejected"
		case errors.Is(err, batching.ErrDeadline):
			reason = "timeout"
		case errors.Is(err, batching.ErrCanceled):
			reason = "canceled"
		case errors.Is(err, batching.ErrTooLarge), errors.Is(err, batching.ErrInvalid):
			reason = "invalid"
			err = fmt.Errorf("%w: %w", inference.ErrInvalidInput, err)
		case errors.Is(err, batching.ErrClosed):
			reason = "other"
			err = fmt.Errorf("%w: model %q version %d is shutting down: %w", ErrModelNotReady, name, v.number, err)
		}
		v.fail(start, reason)
		return nil, err
	}
	d := time.Since(start)
	v.stats.success.add(d)
	v.stats.queue.add(info.QueueTime)
	v.stats.lastInference.Store(time.Now().UnixMilli())
	v.metrics.requests.Inc()
	v.metrics.duration.Observe(d.Seconds())
	v.metrics.queue.Observe(info.QueueTime.Seconds())
	if !cacheKey.IsZero() {
		// Store with a context of its own: the caller may already be gone.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		if err := m.opts.Cache.Set(sctx, cacheKey, outs); err != nil {
			m.log.Warn("response cache store failed", "model", name, "version", v.number, "err", err)
		}
		cancel()
	}
	return &Response{Model: name, Version: v.number, Outputs: outs}, nil
}

func (v *version) fail(start time.Time, reason string) {
	v.stats.fail.add(time.Since(start))
	v.metrics.fail(reason)
}

// ModelInfo is what the metadata endpoints report.
type ModelInfo struct {
	Name     string
	Versions []string
	Version  string // the version described
	Platform string
	Inputs   []inference.TensorSpec
	Outputs  []inference.TensorSpec
}

// Metadata describes a model version ("" = the default version).
func (m *Manager) Metadata(name, ver string) (*ModelInfo, error) {
	v, err := m.resolve(name, ver)
	if err != nil {
		return nil, err
	}
	defer v.release()
	info := &ModelInfo{Name: name, Version: v.label, Platform: v.meta.Platform, Inputs: v.meta.Inputs, Outputs: v.meta.Outputs}
	if e := m.entry(name, false); e != nil {
		for _, en := range e.snap.Load().entries {
			if en.State == StateReady {
				info.Versions = append(info.Versions, en.Version)
			}
		}
	}
	return info, nil
}

// Ready reports whether a model version can serve. An unknown model is
// ErrModelNotFound; a known one that cannot serve is (false, nil).
func (m *Manager) Ready(name, ver string) (bool, error) {
	v, err := m.resolve(name, ver)
	if errors.Is(err, ErrModelNotReady) {
		return false, nil
	}
	if errors.Is(err, ErrModelNotFound) && ver == "" {
		if _, cerr := m.opts.Catalog.Get(context.Background(), name); cerr == nil {
			return false, nil
		}
	}
	if err != nil {
		return false, err
	}
	v.release()
	return true, nil
}

// AllReady reports whether every model the manager tried to load serves
// at least one version.
func (m *Manager) AllReady() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.models {
		s := e.snap.Load()
		if s.latest == nil && !s.unloaded {
			return false
		}
		for _, en := range s.entries {
			if en.State != StateReady {
				return false
			}
		}
	}
	return true
}

// Config returns the effective config (model file + config.yaml) of a
// model version ("" = the default version).
func (m *Manager) Config(name, ver string) (*config.Model, error) {
	v, err := m.resolve(name, ver)
	if err != nil {
		return nil, err
	}
	defer v.release()
	return v.cfg, nil
}

// Index lists every model of the catalog and every version the manager
// knows, with states. readyOnly keeps READY versions only.
func (m *Manager) Index(ctx context.Context, readyOnly bool) ([]IndexEntry, error) {
	names, err := m.opts.Catalog.List(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []IndexEntry
	add := func(name string) {
		seen[name] = true
		e := m.entry(name, false)
		if e == nil {
			if !readyOnly {
				out = append(out, IndexEntry{Name: name, State: StateUnavailable, Reason: "not loaded"})
			}
			return
		}
		s := e.snap.Load()
		if len(s.entries) == 0 && !readyOnly {
			reason := "not loaded"
			switch {
			case s.unloaded:
				reason = "unloaded"
			case s.err != nil:
				reason = s.err.Error()
			}
			out = append(out, IndexEntry{Name: name, State: StateUnavailable, Reason: reason})
		}
		for _, en := range s.entries {
			if readyOnly && en.State != StateReady {
				continue
			}
			en.Name = name
			out = append(out, en)
		}
	}
	for _, n := range names {
		add(n)
	}
	m.mu.Lock()
	var extra []string
	for n := range m.models {
		if !seen[n] {
			extra = append(extra, n)
		}
	}
	m.mu.Unlock()
	for _, n := range extra {
		add(n)
	}
	return out, nil
}

// Statistics returns per-version statistics: every version of every model
// (name ""), every version of one model (ver ""), or one version.
func (m *Manager) Statistics(name, ver string) ([]Stats, error) {
	m.mu.Lock()
	var targets []*model
	if name == "" {
		for _, e := range m.models {
			targets = append(targets, e)
		}
	} else if e := m.models[name]; e != nil {
		targets = append(targets, e)
	}
	m.mu.Unlock()
	if name != "" && len(targets) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrModelNotFound, name)
	}
	var out []Stats
	for _, e := range targets {
		s := e.snap.Load()
		for _, en := range s.entries {
			if ver != "" && en.Version != ver {
				continue
			}
			n, _ := strconv.ParseInt(en.Version, 10, 64)
			if v := s.versions[n]; v != nil {
				out = append(out, v.stats.snapshot(e.name, v.label, v.memBytes))
			}
		}
	}
	if ver != "" && len(out) == 0 {
		return nil, fmt.Errorf("%w: model %q has no version %q being served", ErrModelNotFound, name, ver)
	}
	sortStats(out)
	return out, nil
}

func sortStats(s []Stats) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && (s[j].Name < s[j-1].Name || (s[j].Name == s[j-1].Name && len(s[j].Version) < len(s[j-1].Version)) ||
			(s[j].Name == s[j-1].Name && len(s[j].Version) == len(s[j-1].Version) && s[j].Version < s[j-1].Version)); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// residentBytes reads the process's resident set size from /proc (0 when
// unavailable).
func residentBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}
