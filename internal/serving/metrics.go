package serving

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Prometheus families the manager maintains. Labels carry
// model and version only for models the manager knows, so a client cannot
// create series by asking for made-up names.
type metrics struct {
	requests   *prometheus.CounterVec
	failures   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	queue      *prometheus.HistogramVec
	compute    *prometheus.HistogramVec
	batchSize  *prometheus.HistogramVec
	inferences *prometheus.CounterVec
	executions *prometheus.CounterVec
	state      *prometheus.GaugeVec
	loadTime   *prometheus.GaugeVec
	memory     *prometheus.GaugeVec
	cacheHits  *prometheus.CounterVec
	cacheMiss  *prometheus.CounterVec
}

// latencyBuckets span 50µs to ~10s.
var latencyBuckets = prometheus.ExponentialBuckets(50e-6, 2.5, 14)

func newMetrics(reg prometheus.Registerer) *metrics {
	mv := []string{"model", "version"}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_inference_requests_total", Help: "Inference requests that completed successfully.",
		}, mv),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_inference_failures_total", Help: "Inference requests that failed, by reason (invalid, rejected, timeout, canceled, backend, other).",
		}, append(mv, "reason")),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kiln_inference_request_duration_seconds", Help: "End-to-end time of an inference request inside the model manager (queue + compute).",
			Buckets: latencyBuckets,
		}, mv),
		queue: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kiln_inference_queue_duration_seconds", Help: "Time a request waited in the batcher's queue.",
			Buckets: latencyBuckets,
		}, mv),
		compute: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kiln_inference_compute_duration_seconds", Help: "Time of one backend execution (one batch).",
			Buckets: latencyBuckets,
		}, mv),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kiln_inference_batch_size", Help: "Rows per backend execution.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}, mv),
		inferences: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_inference_rows_total", Help: "Rows inferred (a request of batch n counts n).",
		}, mv),
		executions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_inference_executions_total", Help: "Backend executions (batches).",
		}, mv),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kiln_model_state", Help: "1 for the current state of each model version.",
		}, append(mv, "state")),
		loadTime: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kiln_model_load_duration_seconds", Help: "How long the last load of a model version took.",
		}, mv),
		memory: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kiln_model_memory_bytes", Help: "Resident memory a model version added when it loaded (RSS delta).",
		}, mv),
		cacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_response_cache_hits_total", Help: "Requests answered from the response cache.",
		}, mv),
		cacheMiss: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_response_cache_misses_total", Help: "Response cache lookups that missed.",
		}, mv),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.failures, m.duration, m.queue, m.compute, m.batchSize,
			m.inferences, m.executions, m.state, m.loadTime, m.memory, m.cacheHits, m.cacheMiss} {
			reg.MustRegister(c)
		}
	}
	return m
}

// versionMetrics are the per-version children, resolved once at load so the
// hot path does no label lookups.
type versionMetrics struct {
	requests    prometheus.Counter
	duration    prometheus.Observer
	queue       prometheus.Observer
	compute     prometheus.Observer
	batchSize   prometheus.Observer
	inferences  prometheus.Counter
	executions  prometheus.Counter
	cacheHits   prometheus.Counter
	cacheMisses prometheus.Counter
	failures    *prometheus.CounterVec
	labels      prometheus.Labels
}

func (m *metrics) forVersion(model, version string) *versionMetrics {
	l := prometheus.Labels{"model": model, "version": version}
	return &versionMetrics{
		requests:    m.requests.With(l),
		duration:    m.duration.With(l),
		queue:       m.queue.With(l),
		compute:     m.compute.With(l),
		batchSize:   m.batchSize.With(l),
		inferences:  m.inferences.With(l),
		executions:  m.executions.With(l),
		cacheHits:   m.cacheHits.With(l),
		cacheMisses: m.cacheMiss.With(l),
		failures:    m.failures,
		labels:      l,
	}
}

func (vm *versionMetrics) fail(reason string) {
	vm.failures.With(prometheus.Labels{"model": vm.labels["model"], "version": vm.labels["version"], "reason": reason}).Inc()
}

func (m *metrics) setState(model, version string, s State) {
	for _, st := range []State{StateLoading, StateReady, StateUnavailable, StateUnloading} {
		v := 0.0
		if st == s {
			v = 1
		}
		m.state.With(prometheus.Labels{"model": model, "version": version, "state": string(st)}).Set(v)
	}
}

var pendingDesc = prometheus.NewDesc("kiln_inference_pending_requests",
	"Requests queued and not yet executing.", []string{"model", "version"}, nil)

// pendingCollector reports each served version's queue length at scrape
// time, so versions that unload simply disappear.
type pendingCollector struct{ m *Manager }

func (c pendingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- pendingDesc }

func (c pendingCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	models := make([]*model, 0, len(c.m.models))
	for _, e := range c.m.models {
		models = append(models, e)
	}
	c.m.mu.Unlock()
	for _, e := range models {
		for _, v := range e.snap.Load().versions {
			ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(v.batcher.QueueLen()), v.model, v.label)
		}
	}
}
