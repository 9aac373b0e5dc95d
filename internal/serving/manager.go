package serving

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kilnai/kiln/internal/batching"
	"github.com/kilnai/kiln/internal/catalog"
	"github.com/kilnai/kiln/internal/config"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/serving/respcache"
	"github.com/kilnai/kiln/internal/tensor"
)

// Options configure a Manager.
type Options struct {
	Catalog  Catalog
	Backends []inference.Backend
	Logger   *slog.Logger
	// Registerer receives the manager's Prometheus metrics (nil: none).
	Registerer prometheus.Registerer
	// MaxElements bounds each request tensor (0: tensor.DefaultMaxElements).
	MaxElements int64
	// LoadParallelism bounds concurrent model loads in LoadAll (default 2).
	LoadParallelism int
	// Cache stores responses of models whose config sets response_cache
	// (nil: no response caching).
	Cache respcache.Cache
	// Load is told when each request starts and ends (nil: nobody).
	Load LoadObserver
}

// LoadObserver follows the number of requests in flight (proctune
// adapts the scheduler to it).
type LoadObserver interface {
	Enter()
	Exit()
}

// Manager owns every loaded model version.
type Manager struct {
	opts     Options
	log      *slog.Logger
	metrics  *metrics
	backends map[string]inference.Backend

	mu     sync.Mutex // guards models (the map itself) and serialises creating entries
	models map[string]*model

	// loadMu serialises backend loads so the resident-memory growth
	// measured around one load belongs to that load alone.
	loadMu sync.Mutex
	inited map[string]bool // backends whose runtime was initialised (under loadMu)
}

// initializer is implemented by backends whose runtime has a one-time
// set-up cost (e.g. ONNX Runtime's environment), paid before measuring.
type initializer interface{ Init() error }

// model is one model name. Its serving state is an immutable snapshot
// swapped atomically, so the request path takes no lock.
type model struct {
	name   string
	lifeMu sync.Mutex // serialises load/unload of this model
	snap   atomic.Pointer[snapshot]
}

// snapshot is a model's serving state at one moment.
type snapshot struct {
	cfg      *config.Model // effective config of the default version (nil if none loaded)
	versions map[int64]*version
	// failed holds, per version number, why its last load failed.
	failed map[int64]string
	// unloaded is set after an explicit unload.
	unloaded bool
	err      error // model-level problem (config, catalog)

	// Derived by rebuild:
	entries []IndexEntry // every version known, with states
	latest  *version     // highest READY version
}

// rebuild derives entries, latest and cfg from versions and failures.
func (s *snapshot) rebuild() {
	s.entries = s.entries[:0]
	s.latest = nil
	nums := make([]int64, 0, len(s.versions)+len(s.failed))
	for n := range s.versions {
		nums = append(nums, n)
	}
	for n := range s.failed {
		if s.versions[n] == nil {
			nums = append(nums, n)
		}
	}
	slices.Sort(nums)
	for _, n := range nums {
		e := IndexEntry{Version: strconv.FormatInt(n, 10)}
		if v := s.versions[n]; v != nil {
			e.State = StateReady
			if r, ok := s.failed[n]; ok {
				e.Reason = "serving the previous load; reload failed: " + r
			}
			s.latest = v
		} else {
			e.State = StateUnavailable
			e.Reason = s.failed[n]
		}
		s.entries = append(s.entries, e)
	}
	s.cfg = nil
	if s.latest != nil {
		s.cfg = s.latest.cfg
	}
}

// New builds a Manager. It loads nothing until LoadAll or Load.
func New(opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxElements <= 0 {
		opts.MaxElements = tensor.DefaultMaxElements
	}
	if opts.LoadParallelism <= 0 {
		opts.LoadParallelism = 2
	}
	m := &Manager{
		opts:     opts,
		log:      opts.Logger,
		metrics:  newMetrics(opts.Registerer),
		backends: map[string]inference.Backend{},
		models:   map[string]*model{},
		inited:   map[string]bool{},
	}
	for _, b := range opts.Backends {
		m.backends[b.Name()] = b
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(pendingCollector{m})
	}
	return m
}

func (m *Manager) entry(name string, create bool) *model {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.models[name]
	if e == nil && create {
		e = &model{name: name}
		e.snap.Store(&snapshot{versions: map[int64]*version{}})
		m.models[name] = e
	}
	return e
}

// LoadAll loads every model of the catalog. Failures are recorded as the
// models' states (UNAVAILABLE with a reason) and logged; only a catalog
// that cannot be listed is an error.
func (m *Manager) LoadAll(ctx context.Context) error {
	names, err := m.opts.Catalog.List(ctx)
	if err != nil {
		return err
	}
	sem := make(chan struct{}, m.opts.LoadParallelism)
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := m.Load(ctx, name); err != nil {
				m.log.Warn("model not loaded", "model", name, "err", err)
			}
		}()
	}
	wg.Wait()
	return nil
}

// Load (re)loads a model from the catalog, as the repository extension's
// load does: versions chosen by the version policy are loaded beside the
// ones serving, swapped in atomically, and versions no longer chosen or
// replaced are drained and closed. A version that fails to load keeps its
// previous incarnation serving. The error reports the first failure.
func (m *Manager) Load(ctx context.Context, name string) error {
	cm, err := m.opts.Catalog.Get(ctx, name)
	if errors.Is(err, catalog.ErrNotFound) {
		return fmt.Errorf("%w: %q is not in the model repository", ErrModelNotFound, name)
	}
	if err != nil {
		return err
	}
	e := m.entry(name, true)
	e.lifeMu.Lock()
	defer e.lifeMu.Unlock()
	old := e.snap.Load()

	if cm.Err != nil {
		// A broken model keeps whatever it served before.
		next := old.clone()
		next.err = cm.Err
		next.rebuild()
		e.snap.Store(next)
		return fmt.Errorf("%w: model %q: %w", inference.ErrUnavailable, name, cm.Err)
	}

	avail := make([]int64, 0, len(cm.Versions))
	byNum := map[int64]catalog.Version{}
	for _, v := range cm.Versions {
		avail = append(avail, v.Number)
		byNum[v.Number] = v
	}
	wanted := cm.Config.VersionPolicy.Select(avail)

	next := &snapshot{versions: map[int64]*version{}}
	var retired []*version
	var firstErr error
	failed := map[int64]string{}
	for _, n := range wanted {
		cv := byNum[n]
		prev := old.versions[n]
		if cv.Err != nil {
			failed[n] = cv.Err.Error()
			if prev != nil {
				next.versions[n] = prev
			}
			firstErr = cmp(firstErr, fmt.Errorf("version %d: %w", n, cv.Err))
			continue
		}
		key, kerr := loadKey(cm.Config, cv)
		if kerr == nil && prev != nil && prev.key == key {
			next.versions[n] = prev // unchanged: keep serving, no reload
			continue
		}
		m.metrics.setState(name, strconv.FormatInt(n, 10), StateLoading)
		v, err := m.loadVersion(ctx, name, cm.Dir, cm.Config, cv, key)
		if err != nil {
			m.log.Error("model version failed to load", "model", name, "version", n, "err", err)
			failed[n] = err.Error()
			firstErr = cmp(firstErr, fmt.Errorf("version %d: %w", n, err))
			if prev != nil {
				next.versions[n] = prev // the old one keeps serving
				m.metrics.setState(name, prev.label, StateReady)
			} else {
				m.metrics.setState(name, strconv.FormatInt(n, 10), StateUnavailable)
			}
			continue
		}
		next.versions[n] = v
		if prev != nil {
			retired = append(retired, prev)
		}
		m.metrics.setState(name, v.label, StateReady)
		m.log.Info("model version ready", "model", name, "version", n, "backend", v.backend,
			"load_time", v.loadDuration.Round(time.Microsecond), "memory_bytes", v.memBytes, "instances", len(v.instances))
	}
	for n, prev := range old.versions {
		if !slices.Contains(wanted, n) {
			retired = append(retired, prev)
		}
	}
	next.failed = failed
	next.rebuild()
	e.snap.Store(next)
	m.drain(ctx, retired)
	if firstErr != nil {
		return fmt.Errorf("%w: model %q: %w", inference.ErrUnavailable, name, firstErr)
	}
	if len(wanted) == 0 {
		return fmt.Errorf("%w: model %q: the version policy selects none of the versions %v", inference.ErrUnavailable, name, avail)
	}
	return nil
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// Unload stops serving every version of a model. It returns once in-flight
// requests have finished (or ctx ends) and the versions are closed.
func (m *Manager) Unload(ctx context.Context, name string) error {
	e := m.entry(name, false)
	if e == nil {
		if _, err := m.opts.Catalog.Get(ctx, name); err != nil {
			return fmt.Errorf("%w: %q", ErrModelNotFound, name)
		}
		return nil // known to the repository, never loaded: nothing to do
	}
	e.lifeMu.Lock()
	defer e.lifeMu.Unlock()
	old := e.snap.Load()
	retired := make([]*version, 0, len(old.versions))
	for _, v := range old.versions {
		retired = append(retired, v)
	}
	next := &snapshot{versions: map[int64]*version{}, unloaded: true}
	next.rebuild()
	e.snap.Store(next)
	return m.drain(ctx, retired)
}

// drain retires versions: no new requests, wait for in-flight ones, then close.
func (m *Manager) drain(ctx context.Context, vs []*version) error {
	var errs []error
	for _, v := range vs {
		m.metrics.setState(v.model, v.label, StateUnloading)
		select {
		case <-v.retire():
		case <-ctx.Done():
			m.log.Warn("closing model version with requests in flight", "model", v.model, "version", v.number, "err", ctx.Err())
		}
		if err := v.shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("model %q version %d: %w", v.model, v.number, err))
		}
		m.metrics.setState(v.model, v.label, StateUnavailable)
		m.log.Info("model version unloaded", "model", v.model, "version", v.number)
	}
	return errors.Join(errs...)
}

// Close unloads every model.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	names := make([]string, 0, len(m.models))
	for n := range m.models {
		names = append(names, n)
	}
	m.mu.Unlock()
	var errs []error
	for _, n := range names {
		if err := m.Unload(ctx, n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// loadKey identifies what a version would be loaded from; an unchanged key
// means a reload can keep the running version.
func loadKey(cfg *config.Model, v catalog.Version) (string, error) {
	st, err := os.Stat(v.Path)
	if err != nil {
		return "", err
	}
	cj, _ := json.Marshal(cfg)
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%d\x00%s\x00", v.Path, st.Size(), st.ModTime().UnixNano(), v.Backend)
	h.Write(cj)
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (m *Manager) loadVersion(ctx context.Context, name, dir string, cfg *config.Model, cv catalog.Version, key string) (*version, error) {
	backendName := cfg.Backend
	if backendName == "" {
		backendName = cv.Backend
	}
	if backendName != cv.Backend {
		return nil, fmt.Errorf("config.yaml says backend %q but the version holds a %s model file", backendName, cv.Backend)
	}
	be := m.backends[backendName]
	if be == nil {
		return nil, fmt.Errorf("%w: backend %q is not available in this build", inference.ErrUnsupported, backendName)
	}
	instances := max(cfg.Instances, 1)
	var mbs *int
	if cfg.MaxBatchSize != nil {
		mbs = cfg.MaxBatchSize
	}
	spec := inference.LoadSpec{Name: name, Version: cv.Number, Path: cv.Path, Parameters: cfg.Parameters}
	if len(cfg.Inputs) > 0 || len(cfg.Outputs) > 0 {
		batch := mbs == nil || *mbs > 0
		spec.Inputs = specsFromConfig(cfg.Inputs, batch)
		spec.Outputs = specsFromConfig(cfg.Outputs, batch)
	}
	m.loadMu.Lock()
	if in, ok := be.(initializer); ok && !m.inited[backendName] {
		if err := in.Init(); err != nil {
			m.loadMu.Unlock()
			return nil, err
		}
		m.inited[backendName] = true
	}
	t0 := time.Now()
	rss0 := residentBytes()
	v := &version{
		model: name, number: cv.Number, label: strconv.FormatInt(cv.Number, 10),
		key: key, backend: backendName, maxElems: m.opts.MaxElements, drained: make(chan struct{}),
	}
	closeAll := func() {
		for _, inst := range v.instances {
			_ = inst.Close()
		}
	}
	for i := 0; i < instances; i++ {
		inst, err := be.Load(ctx, spec)
		if err != nil {
			m.loadMu.Unlock()
			closeAll()
			return nil, err
		}
		v.instances = append(v.instances, inst)
	}
	if rss1 := residentBytes(); rss1 > rss0 {
		v.memBytes = rss1 - rss0
	}
	m.loadMu.Unlock()
	eff, served, err := complete(name, cfg, v.instances[0].Metadata())
	if err != nil {
		closeAll()
		return nil, err
	}
	eff.Backend = backendName
	v.cfg, v.meta = eff, served
	v.batching = *eff.MaxBatchSize > 0
	if err := v.warmup(ctx, dir); err != nil {
		closeAll()
		return nil, err
	}
	if eff.ResponseCache {
		id, err := contentID(cv.Path, eff)
		if err != nil {
			closeAll()
			return nil, err
		}
		v.cacheID = name + "@" + id
	}
	b, err := batching.New(batcherConfig(eff), v.execute)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("dynamic_batching: %w", err)
	}
	v.batcher = b
	v.loadDuration = time.Since(t0)
	v.loadedAt = time.Now()
	v.metrics = m.metrics.forVersion(name, v.label)
	m.metrics.loadTime.With(v.metrics.labels).Set(v.loadDuration.Seconds())
	m.metrics.memory.With(v.metrics.labels).Set(float64(v.memBytes))
	return v, nil
}

// contentID digests a model file and its effective config.
func contentID(path string, cfg *config.Model) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	cj, _ := json.Marshal(cfg)
	h.Write(cj)
	return hex.EncodeToString(h.Sum(nil)[:12]), nil
}

func (s *snapshot) clone() *snapshot {
	n := &snapshot{versions: make(map[int64]*version, len(s.versions)), failed: s.failed, err: s.err}
	for k, v := range s.versions {
		n.versions[k] = v
	}
	return n
}
