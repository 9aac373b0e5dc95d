// Package app builds Kiln's object graph from a server configuration and
// runs its long-lived parts (model manager, HTTP API) together until the
// context ends, then shuts them down gracefully.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"

	"github.com/kilnai/kiln/internal/artifact"
	"github.com/kilnai/kiln/internal/catalog"
	"github.com/kilnai/kiln/internal/config"
	regsink "github.com/kilnai/kiln/internal/connectors/registry"
	"github.com/kilnai/kiln/internal/gctune"
	"github.com/kilnai/kiln/internal/grpcapi"
	"github.com/kilnai/kiln/internal/httpapi"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/pipeline"
	"github.com/kilnai/kiln/internal/pipeline/runstore"
	"github.com/kilnai/kiln/internal/proctune"
	"github.com/kilnai/kiln/internal/registry"
	"github.com/kilnai/kiln/internal/registry/sqlstore"
	"github.com/kilnai/kiln/internal/serving"
	"github.com/kilnai/kiln/internal/serving/respcache"
)

// Version is Kiln's version, set at build time with -ldflags.
var Version = "dev"

// App is a configured Kiln server.
type App struct {
	cfg      config.Server
	log      *slog.Logger
	reg      *prometheus.Registry
	manager  *serving.Manager
	cache    respcache.Cache
	http     *httpapi.Server
	httpLn   net.Listener
	ready    chan struct{}
	httpAddr string
	grpc     *grpcapi.Server
	grpcSrv  *grpc.Server
	grpcLn   net.Listener
	grpcAddr string
	debugLn  net.Listener
	runs     *runstore.Store
	pipes    *pipeline.Service
	regStore *sqlstore.Store
	datasets *regsink.Store
	blobs    *artifact.Store
	registry *registry.Service
	procs    *proctune.Tuner // nil unless adaptive_procs
}

// New wires a server from cfg. It opens listeners (so a port conflict
// fails here, before anything loads) but serves nothing until Run.
func New(cfg config.Server, log *slog.Logger) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
	}
	if st, err := os.Stat(cfg.ModelRepository); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("model repository %q is not a directory", cfg.ModelRepository)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var backends []inference.Backend
	for _, name := range inference.RegisteredBackends() {
		b, err := inference.NewBackend(name, inference.BackendOptions{
			Logger:   log.With("backend", name),
			Settings: map[string]string{"ort_lib": cfg.ORTLib, "max_elements": strconv.FormatInt(cfg.MaxElements, 10)},
		})
		if err != nil {
			return nil, fmt.Errorf("backend %s: %w", name, err)
		}
		backends = append(backends, b)
	}
	cache, err := respcache.Open(context.Background(), cfg.Cache, int64(cfg.CacheSize))
	if err != nil {
		return nil, fmt.Errorf("response cache: %w", err)
	}
	var procs *proctune.Tuner
	var load serving.LoadObserver // stays a nil interface without a tuner
	if cfg.AdaptiveProcs {
		procs = proctune.New(log.With("component", "proctune"))
		load = procs
	}
	mgr := serving.New(serving.Options{
		Load:        load,
		Cache:       cache,
		Catalog:     catalog.NewRepository(cfg.ModelRepository),
		Backends:    backends,
		Logger:      log.With("component", "serving"),
		Registerer:  reg,
		MaxElements: cfg.MaxElements,
	})
	a := &App{cfg: cfg, log: log, reg: reg, manager: mgr, cache: cache, procs: procs, ready: make(chan struct{})}
	if err := a.openPipelines(); err != nil {
		return nil, err
	}
	if err := a.openRegistry(); err != nil {
		return nil, err
	}
	if cfg.HTTP != "" {
		a.http = httpapi.New(httpapi.Options{
			Pipelines:      a.pipelines(),
			Registry:       a.registryAPI(),
			Datasets:       a.datasetsAPI(),
			Artifacts:      a.artifactsAPI(),
			MaxUploadSize:  int64(cfg.MaxUploadSize),
			Manager:        mgr,
			Logger:         log.With("component", "http"),
			Gatherer:       reg,
			Registerer:     reg,
			ServerVersion:  Version,
			MaxRequestSize: int64(cfg.MaxRequestSize),
			MaxElements:    cfg.MaxElements,
		})
		ln, err := net.Listen("tcp", cfg.HTTP)
		if err != nil {
			return nil, fmt.Errorf("http listener: %w", err)
		}
		a.httpLn = ln
		a.httpAddr = ln.Addr().String()
	}
	if cfg.GRPC != "" {
		a.grpc = grpcapi.New(grpcapi.Options{
			Manager:       mgr,
			Logger:        log.With("component", "grpc"),
			ServerVersion: Version,
			MaxElements:   cfg.MaxElements,
			Extensions:    httpapi.Extensions,
		})
		a.grpcSrv = grpcapi.NewGRPCServer(int64(cfg.MaxRequestSize))
		a.grpc.Register(a.grpcSrv)
		ln, err := net.Listen("tcp", cfg.GRPC)
		if err != nil {
			if a.httpLn != nil {
				a.httpLn.Close()
			}
			return nil, fmt.Errorf("grpc listener: %w", err)
		}
		a.grpcLn = ln
		a.grpcAddr = ln.Addr().String()
	}
	if cfg.DebugAddr != "" {
		ln, err := net.Listen("tcp", cfg.DebugAddr)
		if err != nil {
			for _, l := range []net.Listener{a.httpLn, a.grpcLn} {
				if l != nil {
					l.Close()
				}
			}
			return nil, fmt.Errorf("debug listener: %w", err)
		}
		a.debugLn = ln
	}
	return a, nil
}

// debugHandler serves Go's runtime profiles under /debug/pprof/.
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// GRPCAddr is the address the gRPC API listens on ("" if disabled).
func (a *App) GRPCAddr() string { return a.grpcAddr }

// HTTPAddr is the address the HTTP API listens on ("" if disabled).
func (a *App) HTTPAddr() string { return a.httpAddr }

// Ready is closed once the initial models have been loaded.
func (a *App) Ready() <-chan struct{} { return a.ready }

// Run serves until ctx ends, then shuts down: readiness turns false, the
// listeners close, in-flight requests finish (bounded by a timeout) and
// models are unloaded.
func (a *App) Run(ctx context.Context) error {
	// Serving allocates request and response buffers at a high rate and
	// keeps little alive: the collector runs less often while serving
	// (gctune; GOGC or GOMEMLIMIT in the environment win).
	releaseGC := gctune.Acquire()
	defer releaseGC()
	errc := make(chan error, 1)
	var srv *http.Server
	if a.http != nil {
		srv = &http.Server{
			Handler:           a.http,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		}
		go func() {
			if err := srv.Serve(a.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("http server: %w", err)
			}
		}()
		a.log.Info("HTTP API listening", "addr", a.httpAddr)
	}
	var debugSrv *http.Server
	if a.debugLn != nil {
		debugSrv = &http.Server{Handler: debugHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := debugSrv.Serve(a.debugLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Warn("debug server", "err", err)
			}
		}()
		a.log.Info("runtime profiles listening", "addr", a.debugLn.Addr().String()+"/debug/pprof/")
	}
	if a.grpcSrv != nil {
		go func() {
			if err := a.grpcSrv.Serve(a.grpcLn); err != nil {
				errc <- fmt.Errorf("grpc server: %w", err)
			}
		}()
		a.log.Info("gRPC API listening", "addr", a.grpcAddr)
	}
	repo, _ := filepath.Abs(a.cfg.ModelRepository)
	a.log.Info("loading models", "repository", repo)
	if err := a.manager.LoadAll(ctx); err != nil {
		a.log.Error("model repository", "err", err)
	}
	if a.http != nil {
		a.http.SetStarted()
	}
	if a.grpc != nil {
		a.grpc.SetStarted()
	}
	a.log.Info("kiln is ready", "http", a.httpAddr, "grpc", a.grpcAddr)
	close(a.ready)
	// At low load, Go code runs on one processor (fewer cross-core
	// wake-ups per request); see internal/proctune.
	a.procs.Start()
	defer a.procs.Stop()
	pollCtx, stopPoll := context.WithCancel(context.Background())
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		if every := a.cfg.RepositoryPoll.D(); every > 0 {
			a.log.Info("polling the model repository", "every", every)
			a.manager.Poll(pollCtx, every)
		}
	}()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	stopPoll()
	<-pollDone
	a.log.Info("shutting down: readiness is now 503", "drain_delay", a.cfg.DrainDelay.D(), "exit_timeout", a.cfg.ExitTimeout.D())
	if a.http != nil {
		a.http.SetDraining()
	}
	if a.grpc != nil {
		a.grpc.SetDraining()
	}
	if runErr == nil {
		// Load balancers see readiness fail and stop sending; requests that
		// still arrive meanwhile are served.
		time.Sleep(a.cfg.DrainDelay.D())
	}
	sctx, cancel := context.WithTimeout(context.Background(), max(a.cfg.ExitTimeout.D(), time.Millisecond))
	defer cancel()
	// Listeners close; in-flight and queued requests finish.
	grpcDone := make(chan struct{})
	go func() {
		defer close(grpcDone)
		if a.grpcSrv != nil {
			a.grpcSrv.GracefulStop()
		}
	}()
	if debugSrv != nil {
		debugSrv.Close() // profiles in progress are cut
	}
	if srv != nil {
		if err := srv.Shutdown(sctx); err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("http shutdown: %w", err))
		}
	}
	select {
	case <-grpcDone:
	case <-sctx.Done():
		if a.grpcSrv != nil {
			a.grpcSrv.Stop()
		}
		<-grpcDone
		runErr = errors.Join(runErr, errors.New("grpc shutdown: exit timeout reached; open streams were cut"))
	}
	if a.pipes != nil {
		// Runs in progress are cancelled (recorded as such) before models go.
		if err := a.pipes.Close(sctx); err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("pipeline runs: %w", err))
		}
		if err := a.runs.Close(); err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("pipeline run store: %w", err))
		}
	}
	if a.regStore != nil {
		if err := a.regStore.Close(); err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("registry: %w", err))
		}
		if err := a.datasets.Close(); err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("dataset records: %w", err))
		}
	}
	if err := a.manager.Close(sctx); err != nil {
		runErr = errors.Join(runErr, err)
	}
	if err := a.cache.Close(); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("response cache: %w", err))
	}
	a.log.Info("stopped")
	return runErr
}

// openPipelines opens the pipeline run store (the registry database:
// the registry setting, else SQLite in the data dir) and the service that runs
// specs submitted over the API with the in-process models. Without a data
// dir, pipelines are not served.
func (a *App) openPipelines() error {
	if a.cfg.DataDir == "" {
		return nil
	}
	dsn := a.cfg.Registry
	if dsn == "" {
		dsn = runstore.DefaultDSN(a.cfg.DataDir)
	}
	runs, err := runstore.Open(context.Background(), dsn)
	if err != nil {
		return fmt.Errorf("pipelines: %w", err)
	}
	a.runs = runs
	eng := &pipeline.Engine{Logger: a.log.With("component", "pipeline"), DataDir: a.cfg.DataDir, Registry: a.cfg.Registry, Runs: runs, Models: a.manager}
	if err := eng.PruneCache(eng.Logger); err != nil {
		eng.Logger.Warn("pruning the pipeline result cache", "err", err)
	}
	a.pipes = pipeline.NewService(eng, pipeline.AllowedVars(os.Getenv("KILN_PIPELINE_VARS"), os.LookupEnv), 0)
	return nil
}

// pipelines is the pipeline service as the HTTP API's interface (nil when
// there is none, so that the API leaves the routes out).
func (a *App) pipelines() httpapi.Pipelines {
	if a.pipes == nil {
		return nil
	}
	return a.pipes
}

// openRegistry opens the artifact store (<data dir>/blobs), the model
// registry (the registry setting, else SQLite at <data dir>/registry.db)
// and, in the same database, the dataset records that pipelines' registry
// sinks write. Without a data dir, the registry is not served.
func (a *App) openRegistry() error {
	if a.cfg.DataDir == "" {
		return nil
	}
	blobs, err := artifact.Open(filepath.Join(a.cfg.DataDir, "blobs"), a.log.With("component", "artifacts"))
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	dsn := a.cfg.Registry
	if dsn == "" {
		dsn = "sqlite:" + filepath.Join(a.cfg.DataDir, "registry.db")
	}
	store, err := sqlstore.Open(context.Background(), dsn, a.log.With("component", "registry"))
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	datasets, err := regsink.OpenStore(context.Background(), dsn)
	if err != nil {
		store.Close()
		return fmt.Errorf("registry: %w", err)
	}
	a.blobs, a.regStore, a.datasets = blobs, store, datasets
	a.registry = registry.NewService(store, registry.Options{Blobs: blobChecker{blobs}, Logger: a.log.With("component", "registry")})
	return nil
}

// blobChecker lets the registry refuse versions whose blob is missing.
type blobChecker struct{ s *artifact.Store }

func (b blobChecker) Has(ctx context.Context, digest string) (bool, error) {
	return b.s.Has(ctx, artifact.Digest(digest))
}

// registryAPI and artifactsAPI are nil (routes left out) without a registry.
func (a *App) registryAPI() httpapi.Registry {
	if a.registry == nil {
		return nil
	}
	return a.registry
}

// datasetsAPI is nil (the route answers 404) without a dataset store.
func (a *App) datasetsAPI() httpapi.DatasetRecords {
	if a.datasets == nil {
		return nil
	}
	return a.datasets
}

func (a *App) artifactsAPI() httpapi.Artifacts {
	if a.blobs == nil {
		return nil
	}
	return a.blobs
}
