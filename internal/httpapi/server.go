package httpapi

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kilnai/kiln/internal/config"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/serving"
)

// Extensions are the OIP extensions Kiln's HTTP API implements, as
// advertised by GET /v2.
var Extensions = []string{"binary_tensor_data", "model_repository", "model_configuration", "statistics", "schedule_policy"}

// Manager is what the HTTP API needs from the model manager.
type Manager interface {
	Infer(ctx context.Context, name, ver string, req *serving.Request) (*serving.Response, error)
	Metadata(name, ver string) (*serving.ModelInfo, error)
	Ready(name, ver string) (bool, error)
	AllReady() bool
	Config(name, ver string) (*config.Model, error)
	Index(ctx context.Context, readyOnly bool) ([]serving.IndexEntry, error)
	Load(ctx context.Context, name string) error
	Unload(ctx context.Context, name string) error
	Statistics(name, ver string) ([]serving.Stats, error)
}

// Options configure the HTTP API.
type Options struct {
	Manager        Manager
	Logger         *slog.Logger
	Gatherer       prometheus.Gatherer // served at /metrics (nil: none)
	Registerer     prometheus.Registerer
	ServerName     string
	ServerVersion  string
	MaxRequestSize int64
	MaxElements    int64
	// Middleware wraps the API handler (authentication, rate limits, ...).
	Middleware []func(http.Handler) http.Handler
	// Pipelines serves /api/v1/pipelines (nil: not served).
	Pipelines Pipelines
	// Registry and Artifacts serve the model registry under /api/v1 and
	// the MLflow-compatible API under /api/2.0/mlflow (nil: not served).
	Registry  Registry
	Artifacts Artifacts
	// Datasets serves the dataset records of versions (the pipeline
	// registry sink's); nil answers that route with 404.
	Datasets DatasetRecords
	// MaxUploadSize bounds an artifact upload (default 4 GiB).
	MaxUploadSize int64
	// Actor names who makes a registry change (default: the X-Kiln-Actor
	// header, else "anonymous"); authentication plugs in here.
	Actor func(*http.Request) string
}

// Server serves Kiln's HTTP API.
type Server struct {
	opts     Options
	log      *slog.Logger
	mgr      Manager
	limits   Limits
	draining atomic.Bool
	started  atomic.Bool
	handler  http.Handler
	idPrefix string
	idSeq    atomic.Uint64
	reqs     *prometheus.CounterVec
}

// New builds the HTTP API.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxRequestSize <= 0 {
		opts.MaxRequestSize = 64 << 20
	}
	if opts.MaxUploadSize <= 0 {
		opts.MaxUploadSize = 4 << 30
	}
	if opts.ServerName == "" {
		opts.ServerName = "kiln"
	}
	s := &Server{opts: opts, log: opts.Logger, mgr: opts.Manager, limits: Limits{MaxElements: opts.MaxElements}, idPrefix: newIDPrefix()}
	s.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kiln_http_requests_total", Help: "HTTP requests by route and status code.",
	}, []string{"route", "code"})
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(s.reqs)
	}
	mux := http.NewServeMux()
	route := func(pattern, name string, h http.HandlerFunc) {
		mux.Handle(pattern, s.count(name, h))
	}
	route("GET /v2/health/live", "health_live", s.live)
	route("GET /v2/health/ready", "health_ready", s.ready)
	route("GET /v2", "server_metadata", s.serverMetadata)
	route("GET /v2/models/{model}", "model_metadata", s.modelMetadata)
	route("GET /v2/models/{model}/versions/{version}", "model_metadata", s.modelMetadata)
	route("GET /v2/models/{model}/ready", "model_ready", s.modelReady)
	route("GET /v2/models/{model}/versions/{version}/ready", "model_ready", s.modelReady)
	route("POST /v2/models/{model}/infer", "infer", s.infer)
	route("POST /v2/models/{model}/versions/{version}/infer", "infer", s.infer)
	route("GET /v2/models/{model}/config", "model_config", s.modelConfig)
	route("GET /v2/models/{model}/versions/{version}/config", "model_config", s.modelConfig)
	route("GET /v2/models/stats", "model_stats", s.stats)
	route("GET /v2/models/{model}/stats", "model_stats", s.stats)
	route("GET /v2/models/{model}/versions/{version}/stats", "model_stats", s.stats)
	route("POST /v2/repository/index", "repository_index", s.repoIndex)
	route("POST /v2/repository/models/{model}/load", "repository_load", s.repoLoad)
	route("POST /v2/repository/models/{model}/unload", "repository_unload", s.repoUnload)
	s.registerPipelines(route)
	s.registerRegistry(route)
	if opts.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(opts.Logger.Handler(), slog.LevelError)}))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.reqs.WithLabelValues("unknown", "404").Inc()
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
	})
	var h http.Handler = mux
	for i := len(opts.Middleware) - 1; i >= 0; i-- {
		h = opts.Middleware[i](h)
	}
	s.handler = h
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// SetStarted marks start-up (initial model loading) as finished.
func (s *Server) SetStarted() { s.started.Store(true) }

// SetDraining makes readiness fail from now on (graceful shutdown).
func (s *Server) SetDraining() { s.draining.Store(true) }

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (s *Server) count(route string, h http.HandlerFunc) http.Handler {
	// Pre-resolve the common children so the hot path does no map lookups.
	ok := s.reqs.WithLabelValues(route, "200")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h(sw, r)
		if sw.code == http.StatusOK {
			ok.Inc()
		} else {
			s.reqs.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
		}
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encoding response: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	b := AppendError(nil, msg)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := statusOf(err)
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if code >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	} else {
		s.log.Debug("request rejected", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	}
	writeError(w, code, msg)
}

func (s *Server) live(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"live": true})
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ok := s.started.Load() && !s.draining.Load() && s.mgr.AllReady()
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]bool{"ready": ok})
}

func (s *Server) serverMetadata(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"name": s.opts.ServerName, "version": s.opts.ServerVersion, "extensions": Extensions})
}

type tensorMD struct {
	Name     string  `json:"name"`
	DataType string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

func (s *Server) modelMetadata(w http.ResponseWriter, r *http.Request) {
	info, err := s.mgr.Metadata(r.PathValue("model"), r.PathValue("version"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	conv := func(in []inference.TensorSpec) []tensorMD {
		out := make([]tensorMD, len(in))
		for i, t := range in {
			out[i] = tensorMD{Name: t.Name, DataType: t.DataType.String(), Shape: t.Shape}
		}
		return out
	}
	versions := info.Versions
	if r.PathValue("version") != "" {
		versions = []string{info.Version}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name": info.Name, "versions": versions, "platform": info.Platform,
		"inputs": conv(info.Inputs), "outputs": conv(info.Outputs),
	})
}

func (s *Server) modelReady(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("model")
	ok, err := s.mgr.Ready(name, r.PathValue("version"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"name": name, "ready": ok})
}

func (s *Server) modelConfig(w http.ResponseWriter, r *http.Request) {
	cfg, err := s.mgr.Config(r.PathValue("model"), r.PathValue("version"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, tritonConfig(cfg))
}

type indexRow struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	State   string `json:"state"`
	Reason  string `json:"reason"`
}

func (s *Server) repoIndex(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Ready bool `json:"ready"`
	}
	if err := decodeSmallJSON(r, &body); err != nil {
		s.fail(w, r, err)
		return
	}
	entries, err := s.mgr.Index(r.Context(), body.Ready)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rows := make([]indexRow, len(entries))
	for i, e := range entries {
		rows[i] = indexRow{Name: e.Name, Version: e.Version, State: string(e.State), Reason: e.Reason}
	}
	writeJSON(w, http.StatusOK, rows)
}

func (s *Server) repoLoad(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Parameters map[string]any `json:"parameters"`
	}
	if err := decodeSmallJSON(r, &body); err != nil {
		s.fail(w, r, err)
		return
	}
	for k := range body.Parameters {
		// Overriding config or files through the request is not offered:
		// the repository directory is the single source of truth.
		s.fail(w, r, fmt.Errorf("%w: load parameter %q is not supported (edit the model repository and load again)", ErrBadRequest, k))
		return
	}
	if err := s.mgr.Load(r.Context(), r.PathValue("model")); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) repoUnload(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Parameters map[string]any `json:"parameters"`
	}
	if err := decodeSmallJSON(r, &body); err != nil {
		s.fail(w, r, err)
		return
	}
	for k, v := range body.Parameters {
		if k == "unload_dependents" {
			if _, ok := v.(bool); !ok {
				s.fail(w, r, fmt.Errorf("%w: parameter unload_dependents must be a boolean", ErrBadRequest))
				return
			}
			continue // Kiln has no ensembles yet, so there are no dependents
		}
		s.fail(w, r, fmt.Errorf("%w: unload parameter %q is not supported", ErrBadRequest, k))
		return
	}
	if err := s.mgr.Unload(r.Context(), r.PathValue("model")); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// decodeSmallJSON decodes an optional small JSON body strictly.
func decodeSmallJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil {
		return fmt.Errorf("%w: reading body: %w", ErrBadRequest, err)
	}
	if len(body) > 1<<20 {
		return fmt.Errorf("%w: body larger than 1 MiB", ErrBadRequest)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: malformed JSON body: %w", ErrBadRequest, err)
	}
	return nil
}

type statDuration struct {
	Count uint64 `json:"count"`
	NS    uint64 `json:"ns"`
}

func sd(d serving.Duration) statDuration { return statDuration{Count: d.Count, NS: d.NS} }

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	list, err := s.mgr.Statistics(r.PathValue("model"), r.PathValue("version"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	type batchStat struct {
		BatchSize     uint64       `json:"batch_size"`
		ComputeInput  statDuration `json:"compute_input"`
		ComputeInfer  statDuration `json:"compute_infer"`
		ComputeOutput statDuration `json:"compute_output"`
	}
	type memUsage struct {
		Type     string `json:"type"`
		ID       int64  `json:"id"`
		ByteSize uint64 `json:"byte_size"`
	}
	type modelStat struct {
		Name           string                  `json:"name"`
		Version        string                  `json:"version"`
		LastInference  uint64                  `json:"last_inference"`
		InferenceCount uint64                  `json:"inference_count"`
		ExecutionCount uint64                  `json:"execution_count"`
		InferenceStats map[string]statDuration `json:"inference_stats"`
		BatchStats     []batchStat             `json:"batch_stats"`
		MemoryUsage    []memUsage              `json:"memory_usage"`
	}
	out := make([]modelStat, 0, len(list))
	for _, st := range list {
		ms := modelStat{
			Name: st.Name, Version: st.Version, LastInference: st.LastInference,
			InferenceCount: st.InferenceCount, ExecutionCount: st.ExecutionCount,
			InferenceStats: map[string]statDuration{
				"success": sd(st.Success), "fail": sd(st.Fail), "queue": sd(st.Queue),
				"compute_input": sd(st.ComputeInput), "compute_infer": sd(st.ComputeInfer), "compute_output": sd(st.ComputeOutput),
				"cache_hit": sd(st.CacheHit), "cache_miss": sd(st.CacheMiss),
			},
			BatchStats:  []batchStat{},
			MemoryUsage: []memUsage{{Type: "CPU", ByteSize: st.MemoryBytes}},
		}
		for _, b := range st.Batches {
			ms.BatchStats = append(ms.BatchStats, batchStat{BatchSize: b.BatchSize, ComputeInput: sd(b.ComputeInput), ComputeInfer: sd(b.ComputeInfer), ComputeOutput: sd(b.ComputeOutput)})
		}
		out = append(out, ms)
	}
	writeJSON(w, http.StatusOK, map[string]any{"model_stats": out})
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readBody reads a request body within the size limit, decompressing
// gzip/deflate when Content-Encoding says so.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer) error {
	limit := s.opts.MaxRequestSize
	if r.ContentLength > limit {
		return fmt.Errorf("%w: body of %d bytes exceeds the limit of %d", errTooLarge, r.ContentLength, limit)
	}
	var src io.Reader = http.MaxBytesReader(w, r.Body, limit)
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			return fmt.Errorf("%w: gzip body: %w", ErrBadRequest, err)
		}
		defer zr.Close()
		src = zr
	case "deflate":
		fr := flate.NewReader(src)
		defer fr.Close()
		src = fr
	default:
		return fmt.Errorf("%w: unsupported Content-Encoding %q (use gzip or deflate)", ErrBadRequest, enc)
	}
	if r.ContentLength > 0 && r.Header.Get("Content-Encoding") == "" {
		buf.Grow(int(r.ContentLength))
	}
	// Bound decompressed size too.
	n, err := buf.ReadFrom(io.LimitReader(src, limit+1))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return fmt.Errorf("%w: body exceeds the limit of %d bytes", errTooLarge, limit)
	case err != nil:
		return fmt.Errorf("%w: reading body: %w", ErrBadRequest, err)
	case n > limit:
		return fmt.Errorf("%w: decompressed body exceeds the limit of %d bytes", errTooLarge, limit)
	}
	return nil
}

func newIDPrefix() string {
	return strconv.FormatInt(time.Now().UnixNano()&0xffffffffff, 36)
}

func (s *Server) newID() string {
	return s.idPrefix + "-" + strconv.FormatUint(s.idSeq.Add(1), 36)
}
