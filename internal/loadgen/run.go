package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/kilnai/kiln/internal/grpcapi/inferencepb"
	"github.com/kilnai/kiln/internal/tensor"
)

// Config says what to load and how.
type Config struct {
	Protocol Protocol
	// URL is the HTTP base address (http://host:port), used by the HTTP
	// protocols, and for model metadata when set.
	URL string
	// GRPCAddr is host:port of the gRPC server (protocol grpc).
	GRPCAddr string
	Model    string
	Version  string

	// Batch is the number of rows per request (the leading batch
	// dimension); default 1.
	Batch int
	// Shapes override request shapes by input name (full shapes, batch
	// dimension included), for inputs with variable non-batch dimensions.
	Shapes map[string][]int64
	// Inputs, when set, is the request to send (e.g. from ReadRequestFile);
	// Batch, Shapes and Metadata are then not used.
	Inputs []tensor.Tensor
	// Metadata, when set, replaces the metadata otherwise read from the
	// server (HTTP GET /v2/models/{m}, or gRPC ModelMetadata).
	Metadata *Metadata
	// Seed seeds the random inputs; Variants is how many different random
	// requests are encoded and sent in turn (default 4).
	Seed     uint64
	Variants int

	// Warmup is run before each level and not recorded; Duration is the
	// measurement window (default 5s); Timeout bounds each request
	// (default 30s).
	Warmup   time.Duration
	Duration time.Duration
	Timeout  time.Duration
	// MinRequests extends a closed-loop window until at least this many
	// requests (successful or not) completed in it, like perf_analyzer's
	// count windows; the window is then measured to its last completion.
	MinRequests int

	// MaxConcurrency sizes the connection pool; at least the largest level
	// that will be run (default 128).
	MaxConcurrency int
	// MaxInFlight bounds the outstanding requests of an open-loop run
	// (default 256).
	MaxInFlight int
	// GRPCConns is the number of gRPC connections the workers share
	// round-robin (default: one per 16 workers, at most 4).
	GRPCConns int
	// NetHTTP sends HTTP requests with net/http's client instead of the
	// built-in HTTP/1.1 client (one kept-alive connection per worker,
	// no allocations per request).
	NetHTTP bool
}

func (c *Config) setDefaults() {
	if c.Batch == 0 {
		c.Batch = 1
	}
	if c.Variants <= 0 {
		c.Variants = 4
	}
	if c.Duration <= 0 {
		c.Duration = 5 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.MaxConcurrency <= 0 {
		c.MaxConcurrency = 128
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 256
	}
}

// Generator sends one model's pre-encoded requests with one protocol.
// Its Run methods must not be called concurrently.
type Generator struct {
	cfg     Config
	rows    int
	probe   Probe
	hc      *http.Client
	conns   []*grpc.ClientConn
	bodies  [][]byte
	hdrLen  int
	callers []caller
}

// New prepares a generator: it reads the model metadata unless given,
// builds and encodes the requests, connects, and sends one probe request
// whose answer it checks in full.
func New(ctx context.Context, cfg Config) (*Generator, error) {
	cfg.setDefaults()
	if cfg.Model == "" {
		return nil, errors.New("no model given")
	}
	g := &Generator{cfg: cfg, hdrLen: -1}
	switch cfg.Protocol {
	case HTTPJSON, HTTPBinary:
		if cfg.URL == "" {
			return nil, fmt.Errorf("protocol %s needs an HTTP URL", cfg.Protocol)
		}
	case GRPC:
		if cfg.GRPCAddr == "" {
			return nil, errors.New("protocol grpc needs a gRPC address")
		}
	default:
		return nil, fmt.Errorf("unknown protocol %q", cfg.Protocol)
	}
	if cfg.URL != "" {
		g.hc = newHTTPClient(max(cfg.MaxConcurrency, cfg.MaxInFlight))
	}
	if cfg.Protocol == GRPC {
		n := cfg.GRPCConns
		if n <= 0 {
			n = min(4, max(1, (max(cfg.MaxConcurrency, 1)+15)/16))
		}
		for range n {
			cc, err := dialGRPC(cfg.GRPCAddr)
			if err != nil {
				g.Close()
				return nil, err
			}
			g.conns = append(g.conns, cc)
		}
	}
	if err := g.prepare(ctx); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// prepare builds the request variants and probes the server.
func (g *Generator) prepare(ctx context.Context) error {
	cfg := &g.cfg
	var variants [][]tensor.Tensor
	if cfg.Inputs != nil {
		variants = [][]tensor.Tensor{cfg.Inputs}
		g.rows = 1
		if s := cfg.Inputs[0].Shape; len(s) > 0 {
			g.rows = int(s[0])
		}
	} else {
		md := cfg.Metadata
		if md == nil {
			var m Metadata
			var err error
			if cfg.URL != "" {
				m, err = FetchMetadataHTTP(ctx, g.hc, cfg.URL, cfg.Model, cfg.Version)
			} else {
				m, err = FetchMetadataGRPC(ctx, inferencepb.NewGRPCInferenceServiceClient(g.conns[0]), cfg.Model, cfg.Version)
			}
			if err != nil {
				return err
			}
			md = &m
		}
		shapes, rows, err := RequestShapes(md.Inputs, cfg.Batch, cfg.Shapes)
		if err != nil {
			return err
		}
		g.rows = rows
		for i := range cfg.Variants {
			ts, err := RandomInputs(md.Inputs, shapes, cfg.Seed+uint64(i))
			if err != nil {
				return err
			}
			variants = append(variants, ts)
		}
	}
	for _, ts := range variants {
		var body []byte
		var err error
		switch cfg.Protocol {
		case HTTPJSON:
			body, err = EncodeJSON(ts)
		case HTTPBinary:
			body, g.hdrLen = EncodeBinary(ts)
		case GRPC:
			body, err = EncodeGRPC(cfg.Model, cfg.Version, ts)
		}
		if err != nil {
			return err
		}
		g.bodies = append(g.bodies, body)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var err error
	if cfg.Protocol == GRPC {
		g.probe, err = probeGRPC(pctx, g.conns[0], g.bodies[0])
	} else {
		g.probe, err = probeHTTP(pctx, g.hc, inferURL(cfg.URL, cfg.Model, cfg.Version), g.bodies[0], g.hdrLen)
	}
	return err
}

// Probe returns the checked answer to the first request.
func (g *Generator) Probe() Probe { return g.probe }

// Rows is the number of rows each request carries.
func (g *Generator) Rows() int { return g.rows }

// Close releases connections.
func (g *Generator) Close() error {
	var errs []error
	for _, cc := range g.conns {
		errs = append(errs, cc.Close())
	}
	if g.hc != nil {
		g.hc.CloseIdleConnections()
	}
	for _, c := range g.callers {
		if r, ok := c.(*rawHTTPCaller); ok {
			r.close()
		}
	}
	return errors.Join(errs...)
}

// ensureCallers makes sure workers 0..n-1 have a caller.
func (g *Generator) ensureCallers(n int) error {
	for i := len(g.callers); i < n; i++ {
		body := g.bodies[i%len(g.bodies)]
		var c caller
		u := inferURL(g.cfg.URL, g.cfg.Model, g.cfg.Version)
		var err error
		switch {
		case g.cfg.Protocol == GRPC:
			c = &grpcCaller{cc: g.conns[i%len(g.conns)], req: rawMsg{b: body}}
		case g.cfg.NetHTTP || !strings.HasPrefix(u, "http://"):
			c, err = newHTTPCaller(g.hc, u, body, g.hdrLen)
		default:
			c, err = newRawHTTPCaller(u, body, g.hdrLen, g.cfg.Timeout)
		}
		if err != nil {
			return err
		}
		g.callers = append(g.callers, c)
	}
	return nil
}

func (g *Generator) do(ctx context.Context, c caller) error {
	if r, ok := c.(*rawHTTPCaller); ok {
		return r.call(ctx) // connection deadlines bound it
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	return c.call(ctx)
}

// abortOnCancel makes a caller that blocks outside any context (the
// built-in HTTP client) return when ctx is cancelled; call the returned
// function when the worker ends.
func abortOnCancel(ctx context.Context, c caller) func() {
	if r, ok := c.(*rawHTTPCaller); ok {
		stop := context.AfterFunc(ctx, r.abort)
		return func() { stop() }
	}
	return func() {}
}

// recorder collects one worker's results.
type recorder struct {
	lat      []time.Duration
	errs     map[string]int64
	late     int64
	lastDone time.Time
}

func (r *recorder) add(lat time.Duration, err error) {
	if err != nil {
		if r.errs == nil {
			r.errs = map[string]int64{}
		}
		r.errs[ErrorKind(err)]++
		return
	}
	r.lat = append(r.lat, lat)
}

// RunConcurrency runs a closed loop of n workers, each sending its next
// request as soon as its previous one is answered. A request counts in the
// window if it completes inside it (as perf_analyzer counts); its latency
// is from send to the end of the answer.
func (g *Generator) RunConcurrency(ctx context.Context, n int) (Result, error) {
	if n < 1 {
		return Result{}, fmt.Errorf("concurrency %d: want at least 1", n)
	}
	if err := g.ensureCallers(n); err != nil {
		return Result{}, err
	}
	recs := make([]*recorder, n)
	start := time.Now()
	mStart := start.Add(g.cfg.Warmup)
	mEnd := mStart.Add(g.cfg.Duration)
	minReq := int64(g.cfg.MinRequests)
	var completed atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		r := &recorder{lat: make([]time.Duration, 0, 1024)}
		recs[i] = r
		c := g.callers[i]
		wg.Go(func() {
			defer abortOnCancel(ctx, c)()
			for ctx.Err() == nil {
				t0 := time.Now()
				err := g.do(ctx, c)
				t1 := time.Now()
				if t1.After(mEnd) && completed.Load() >= minReq {
					return
				}
				if t1.Before(mStart) {
					continue
				}
				completed.Add(1)
				r.add(t1.Sub(t0), err)
				r.lastDone = t1
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	window := g.cfg.Duration
	for _, r := range recs {
		window = max(window, r.lastDone.Sub(mStart))
	}
	res := g.result(recs, window)
	res.Mode, res.Concurrency = ModeConcurrency, n
	return res, nil
}

// lateAfter is how far behind its schedule an open-loop request may be
// sent before it counts as late.
const lateAfter = time.Millisecond

// RunRate runs an open loop: request k is scheduled at start + k/rate and
// its latency is measured from that scheduled time, so time spent waiting
// for a free worker (because the server is slow) is part of it. Requests
// scheduled during the warm-up are sent but not recorded. Requests sent
// more than a millisecond behind schedule are counted as late.
func (g *Generator) RunRate(ctx context.Context, rate float64) (Result, error) {
	if rate <= 0 || math.IsInf(rate, 0) || math.IsNaN(rate) {
		return Result{}, fmt.Errorf("rate %v: want a positive number of requests per second", rate)
	}
	workers := g.cfg.MaxInFlight
	if err := g.ensureCallers(workers); err != nil {
		return Result{}, err
	}
	interval := float64(time.Second) / rate
	first := int64(math.Ceil(g.cfg.Warmup.Seconds() * rate))
	total := first + int64(math.Ceil(g.cfg.Duration.Seconds()*rate))
	start := time.Now()
	mStart := start.Add(time.Duration(float64(first) * interval))
	var next atomic.Int64
	recs := make([]*recorder, workers)
	var wg sync.WaitGroup
	for i := range workers {
		r := &recorder{lat: make([]time.Duration, 0, 256)}
		recs[i] = r
		c := g.callers[i]
		wg.Go(func() {
			defer abortOnCancel(ctx, c)()
			timer := time.NewTimer(time.Hour)
			defer timer.Stop()
			for ctx.Err() == nil {
				k := next.Add(1) - 1
				if k >= total {
					return
				}
				sched := start.Add(time.Duration(float64(k) * interval))
				if d := time.Until(sched); d > 0 {
					timer.Reset(d)
					select {
					case <-timer.C:
					case <-ctx.Done():
						return
					}
				}
				sent := time.Now()
				err := g.do(ctx, c)
				done := time.Now()
				if k < first {
					continue
				}
				r.add(done.Sub(sched), err)
				if sent.Sub(sched) > lateAfter {
					r.late++
				}
				if done.After(r.lastDone) {
					r.lastDone = done
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	window := g.cfg.Duration
	for _, r := range recs {
		window = max(window, r.lastDone.Sub(mStart))
	}
	res := g.result(recs, window)
	res.Mode, res.TargetRate = ModeRate, rate
	for _, r := range recs {
		res.Late += r.late
	}
	return res, nil
}

func (g *Generator) result(recs []*recorder, window time.Duration) Result {
	n := 0
	for _, r := range recs {
		n += len(r.lat)
	}
	all := make([]time.Duration, 0, n)
	res := Result{
		Protocol: g.cfg.Protocol, Model: g.cfg.Model, Batch: g.rows,
		WindowSeconds: window.Seconds(),
	}
	for _, r := range recs {
		all = append(all, r.lat...)
		for k, v := range r.errs {
			if res.Errors == nil {
				res.Errors = map[string]int64{}
			}
			res.Errors[k] += v
			res.ErrorCount += v
		}
	}
	res.Latency = Summarize(all)
	res.Requests = int64(len(all))
	res.Throughput = float64(res.Requests) / window.Seconds()
	res.RowsPerSec = res.Throughput * float64(g.rows)
	return res
}

// Run runs cfg against its server: an open loop at each of rates if any,
// else a closed loop at each concurrency level (default 1). each, if not
// nil, is called after every level.
func Run(ctx context.Context, cfg Config, levels []int, rates []float64, each func(Result)) ([]Result, error) {
	if len(levels) == 0 && len(rates) == 0 {
		levels = []int{1}
	}
	for _, n := range levels {
		cfg.MaxConcurrency = max(cfg.MaxConcurrency, n)
	}
	g, err := New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer g.Close()
	var out []Result
	emit := func(r Result) {
		out = append(out, r)
		if each != nil {
			each(r)
		}
	}
	for _, rate := range rates {
		r, err := g.RunRate(ctx, rate)
		if err != nil {
			return out, err
		}
		emit(r)
	}
	if len(rates) == 0 {
		for _, n := range levels {
			r, err := g.RunConcurrency(ctx, n)
			if err != nil {
				return out, err
			}
			emit(r)
		}
	}
	return out, nil
}
