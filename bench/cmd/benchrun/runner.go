package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kilnai/kiln/bench/internal/machine"
	"github.com/kilnai/kiln/internal/loadgen"
)

// Report is everything one run measured; results.json holds it.
type Report struct {
	Quick    bool      `json:"quick"`
	Date     time.Time `json:"date"`
	Seconds  float64   `json:"seconds"`
	Command  string    `json:"command"`
	Machine  Machine   `json:"machine"`
	Versions Versions  `json:"versions"`
	Settings Settings  `json:"settings"`
	Plan     Plan      `json:"plan"`
	// QuietLimit and QuietWait: before each measurement the harness waited
	// up to QuietWait for other processes to use fewer than QuietLimit cores.
	QuietLimit float64       `json:"quiet_limit"`
	QuietWait  time.Duration `json:"quiet_wait"`
	Retries    int           `json:"retries"`
	// OpenRate is the open-loop request rate (requests/s).
	OpenRate float64     `json:"open_rate"`
	MLP      []Series    `json:"mlp"`
	ResNet   []Series    `json:"resnet"`
	Open     []Series    `json:"open"`
	Inproc   []InprocRun `json:"inproc"`
	// InprocRedone, when set, is when the in-process measurements were
	// repeated (--redo-inproc) for this run's batch mixes.
	InprocRedone time.Time `json:"inproc_redone,omitzero"`
	Wrk          *WrkCheck `json:"wrk,omitempty"`
	Ratios       []Ratio   `json:"ratios"`
	Errors       []string  `json:"errors,omitempty"`
}

// Series is one contender and protocol swept over levels.
type Series struct {
	Contender string           `json:"contender"`
	Protocol  loadgen.Protocol `json:"protocol"`
	Model     string           `json:"model"`
	Results   []loadgen.Result `json:"results"`
	// Server holds Kiln's statistics for each result.
	Server []ServerStats `json:"server,omitempty"`
	// CPU is the CPU use during each result (warm-up included).
	CPU []CPUUse `json:"cpu,omitempty"`
	// Request and response sizes of one request.
	RequestBytes  int `json:"request_bytes"`
	ResponseBytes int `json:"response_bytes"`
}

// Label is "kiln http-json".
func (s *Series) Label() string { return s.Contender + " " + string(s.Protocol) }

// index is the position of the result at concurrency level n, or -1.
func (s *Series) index(n int) int {
	for i := range s.Results {
		if s.Results[i].Mode == loadgen.ModeConcurrency && s.Results[i].Concurrency == n {
			return i
		}
	}
	return -1
}

// at returns the result and server statistics at concurrency level n.
func (s *Series) at(n int) (*loadgen.Result, *ServerStats) {
	i := s.index(n)
	if i < 0 {
		return nil, nil
	}
	var st *ServerStats
	if i < len(s.Server) {
		st = &s.Server[i]
	}
	return &s.Results[i], st
}

// InprocResult mirrors bench/peers/inproc's JSON output.
type InprocResult struct {
	Batch      int     `json:"batch"`
	Mix        string  `json:"mix,omitempty"`
	MeanBatch  float64 `json:"mean_batch"`
	Instances  int     `json:"instances"`
	IntraOp    int     `json:"intra_op_threads"`
	InterOp    int     `json:"inter_op_threads"`
	Calls      int64   `json:"calls"`
	Rows       int64   `json:"rows"`
	Seconds    float64 `json:"seconds"`
	RowsPerS   float64 `json:"rows_per_s"`
	CallsPerS  float64 `json:"calls_per_s"`
	CallP50US  float64 `json:"call_p50_us"`
	CallMeanUS float64 `json:"call_mean_us"`
}

// InprocRun is one in-process measurement and what it stands for.
type InprocRun struct {
	Key    string       `json:"key"`
	Label  string       `json:"label"`
	Model  string       `json:"model"`
	Result InprocResult `json:"result"`
}

// WrkCheck pairs wrk's run with loadgen's at the same point.
type WrkCheck struct {
	Target string         `json:"target"`
	Wrk    WrkResult      `json:"wrk"`
	Ours   loadgen.Result `json:"ours"`
}

// redoInproc measures the in-process limit again for a saved report.
func (h *harness) redoInproc(ctx context.Context, rep *Report) error {
	h.rep = rep
	h.only = map[string]bool{"inproc": true}
	if err := h.prepare(ctx); err != nil {
		return err
	}
	rep.Inproc = nil
	rep.InprocRedone = time.Now().UTC()
	return h.runInproc(ctx)
}

func (h *harness) run(ctx context.Context) (*Report, error) {
	h.rep = &Report{Quick: h.quick, Date: time.Now().UTC(), Machine: machine.Read(), Plan: h.plan,
		Settings: settings(h.cpus, h.budget), Command: commandLine(h.quick), QuietLimit: h.quietLimit, QuietWait: h.quietWait, Retries: h.retries}
	started := time.Now()
	defer func() {
		h.rep.Seconds = time.Since(started).Seconds()
		h.rep.Machine.LoadEnd = machine.LoadAvg()
	}()
	if err := h.prepare(ctx); err != nil {
		return nil, err
	}
	h.collectVersions(ctx)
	if v := h.inprocVersion(ctx); v != "" {
		h.rep.Versions.ORT = v
	}

	answers := ""
	if h.enabled("kiln") {
		var err error
		if answers, err = h.runKiln(ctx); err != nil {
			h.fail("kiln", err)
		}
	}
	if ctx.Err() != nil {
		return h.rep, ctx.Err()
	}
	if h.enabled("minimal") {
		if err := h.runMinimal(ctx, answers); err != nil {
			h.fail("minimal", err)
		}
	}
	if h.enabled("node") {
		if err := h.runNode(ctx); err != nil {
			h.fail("node", err)
		}
	}
	if h.enabled("python") {
		if err := h.runPython(ctx); err != nil {
			h.fail("python", err)
		}
	}
	if h.enabled("inproc") {
		if err := h.runInproc(ctx); err != nil {
			h.fail("inproc", err)
		}
	}
	return h.rep, ctx.Err()
}

// commandLine is how this run was invoked, without paths of the machine.
func commandLine(quick bool) string {
	args := []string{"go", "run", "./bench/cmd/benchrun"}
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "/") || strings.Contains(a, "=/") {
			continue // an absolute path names this machine
		}
		args = append(args, a)
	}
	make := "make bench"
	if quick {
		make = "make bench-quick"
	}
	return make + " (" + strings.Join(args, " ") + ")"
}

// prepare fetches, generates and builds what the run needs.
func (h *harness) prepare(ctx context.Context) error {
	if err := h.ensureORT(ctx); err != nil {
		return err
	}
	var err error
	if h.python, err = findPython(ctx); err != nil {
		h.logf("%v; the Python peer is skipped", err)
	}
	if err := h.ensureModels(ctx); err != nil {
		return err
	}
	if h.enabled("node") {
		if err := h.ensureNode(ctx); err != nil {
			h.fail("node setup", err)
			delete(h.onlyMap(), "node")
		}
	}
	build := func(out, pkg string) (string, error) {
		p := filepath.Join(h.work, out)
		_, err := run(ctx, h.root, nil, "go", "build", "-o", p, pkg)
		return p, err
	}
	if h.kilnBin == "" {
		h.logf("building kiln")
		if h.kilnBin, err = build("kiln", "./cmd/kiln"); err != nil {
			return err
		}
	} else if h.kilnBin, err = filepath.Abs(h.kilnBin); err != nil {
		return err
	}
	h.logf("building the Go peers")
	if h.minimalBin, err = build("minimal", "./bench/peers/minimal"); err != nil {
		return err
	}
	if h.inprocBin, err = build("inproc", "./bench/peers/inproc"); err != nil {
		return err
	}
	return nil
}

// onlyMap makes the contender filter explicit so one can be dropped.
func (h *harness) onlyMap() map[string]bool {
	if h.only == nil {
		h.only = map[string]bool{"kiln": true, "minimal": true, "node": true, "python": true, "inproc": true, "wrk": true}
	}
	return h.only
}

func (h *harness) goEnv() []string {
	return []string{"GOMAXPROCS=" + strconv.Itoa(h.budget), "KILN_ORT_LIB=" + h.ortLib}
}

// sweep runs cfg at each level; statsFn, when set, snapshots the server's
// statistics around each level.
func (h *harness) sweep(ctx context.Context, contender string, pid int, cfg loadgen.Config, levels []int,
	statsFn func(context.Context) (modelStats, error)) (Series, *loadgen.Generator, error) {
	s := Series{Contender: contender, Protocol: cfg.Protocol, Model: cfg.Model}
	cfg.MaxConcurrency = max(cfg.MaxConcurrency, levels[len(levels)-1])
	cfg.Seed = 1
	g, err := loadgen.New(ctx, cfg)
	if err != nil {
		return s, nil, err
	}
	p := g.Probe()
	s.RequestBytes, s.ResponseBytes = p.RequestBytes, p.ResponseBytes
	for _, n := range levels {
		var best *point
		for attempt := 0; attempt <= h.retries; attempt++ {
			pt, err := h.measure(ctx, g, pid, n, statsFn)
			if err != nil {
				g.Close()
				return s, nil, err
			}
			if attempt > 0 {
				h.logf("  (measured again: other processes used %.2f cores the time before)", best.cpu.Other)
			}
			h.logPoint(contender, cfg, n, pt, statsFn != nil)
			if best == nil || pt.cpu.Other < best.cpu.Other {
				best = &pt
			}
			if best.cpu.Other <= h.quietLimit || h.quietWait <= 0 {
				break
			}
		}
		s.Results = append(s.Results, best.r)
		s.CPU = append(s.CPU, best.cpu)
		if statsFn != nil {
			s.Server = append(s.Server, best.st)
		}
	}
	return s, g, nil
}

// point is one measured level.
type point struct {
	r   loadgen.Result
	cpu CPUUse
	st  ServerStats
}

// measure runs one closed-loop level after waiting for quiet, with the
// server's statistics around it when statsFn is set.
func (h *harness) measure(ctx context.Context, g *loadgen.Generator, pid, n int, statsFn func(context.Context) (modelStats, error)) (point, error) {
	var pt point
	var before modelStats
	var err error
	h.quiet(ctx, pid)
	if statsFn != nil {
		if before, err = statsFn(ctx); err != nil {
			return pt, err
		}
	}
	c0 := sampleCPU(pid)
	if pt.r, err = g.RunConcurrency(ctx, n); err != nil {
		return pt, err
	}
	pt.cpu = sampleCPU(pid).since(c0)
	if statsFn != nil {
		after, err := statsFn(ctx)
		if err != nil {
			return pt, err
		}
		pt.st = diffStats(before, after)
	}
	return pt, nil
}

func (h *harness) logPoint(contender string, cfg loadgen.Config, n int, pt point, withStats bool) {
	r, cpu, st := pt.r, pt.cpu, pt.st
	line := fmt.Sprintf("  %s %s %s c=%d: %.0f req/s p50 %s p99 %s ms, errors %s; cores server %.2f client %.2f other %.2f",
		contender, cfg.Model, cfg.Protocol, n, r.Throughput, loadgen.FormatDuration(r.Latency.P50),
		loadgen.FormatDuration(r.Latency.P99), r.ErrorSummary(), cpu.Server, cpu.Client, cpu.Other)
	if withStats {
		line += fmt.Sprintf("; mean batch %.1f, queue %.0f µs", st.MeanBatch(), st.QueueUS)
	}
	h.logf("%s", line)
}

// openLoop runs one open-loop level.
func (h *harness) openLoop(ctx context.Context, contender string, pid int, cfg loadgen.Config, rate float64) (Series, error) {
	s := Series{Contender: contender, Protocol: cfg.Protocol, Model: cfg.Model}
	cfg.Warmup, cfg.Duration, cfg.Seed = h.plan.OpenWarmup, h.plan.OpenDuration, 1
	g, err := loadgen.New(ctx, cfg)
	if err != nil {
		return s, err
	}
	defer g.Close()
	p := g.Probe()
	s.RequestBytes, s.ResponseBytes = p.RequestBytes, p.ResponseBytes
	h.quiet(ctx, pid)
	c0 := sampleCPU(pid)
	r, err := g.RunRate(ctx, rate)
	if err != nil {
		return s, err
	}
	s.CPU = append(s.CPU, sampleCPU(pid).since(c0))
	h.logf("  %s %s %s rate %.0f/s: p50 %s p90 %s p99 %s ms, late %d, errors %s", contender, cfg.Model, cfg.Protocol, rate,
		loadgen.FormatDuration(r.Latency.P50), loadgen.FormatDuration(r.Latency.P90), loadgen.FormatDuration(r.Latency.P99), r.Late, r.ErrorSummary())
	s.Results = append(s.Results, r)
	return s, nil
}

// runKiln measures Kiln and returns the directory of its recorded MLP
// answers for the minimal server.
func (h *harness) runKiln(ctx context.Context) (string, error) {
	repo := filepath.Join(h.work, "repository")
	if err := writeRepository(repo, h.models, h.rep.Settings.Kiln); err != nil {
		return "", err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return "", err
	}
	grpcAddr, err := freeAddr()
	if err != nil {
		return "", err
	}
	h.logf("kiln: starting (%s)", h.rep.Versions.Kiln)
	p, err := startProc("kiln", h.work, h.cpus, h.goEnv(), h.kilnBin, "serve", "--model-repository", repo,
		"--http", httpAddr, "--grpc", grpcAddr, "--log-format", "json")
	if err != nil {
		return "", err
	}
	defer p.stop()
	base := "http://" + httpAddr
	for _, m := range []string{"mlp", "resnet18"} {
		if err := p.waitHTTP(ctx, base+"/v2/models/"+m+"/ready", 120*time.Second); err != nil {
			return "", err
		}
	}
	statsOf := func(model string) func(context.Context) (modelStats, error) {
		return func(ctx context.Context) (modelStats, error) { return fetchStats(ctx, base, model) }
	}
	cfg := func(proto loadgen.Protocol, model string) loadgen.Config {
		c := loadgen.Config{Protocol: proto, URL: base, GRPCAddr: grpcAddr, Model: model, Batch: 1}
		if model == "mlp" {
			c.Warmup, c.Duration = h.plan.MLPWarmup, h.plan.MLPDuration
		} else {
			c.Warmup, c.Duration, c.Timeout = h.plan.ResNetWarmup, h.plan.ResNetDuration, 2*time.Minute
		}
		return c
	}

	answers := filepath.Join(h.work, "answers")
	if err := os.MkdirAll(answers, 0o755); err != nil {
		return "", err
	}
	if err := saveMetadata(ctx, base, "mlp", filepath.Join(answers, "metadata.json")); err != nil {
		return "", err
	}
	for _, proto := range allProtocols {
		s, g, err := h.sweep(ctx, "kiln", p.pid(), cfg(proto, "mlp"), h.plan.MLPLevels, statsOf("mlp"))
		if err != nil {
			h.fail("kiln mlp "+string(proto), err)
			continue
		}
		h.rep.MLP = append(h.rep.MLP, s)
		if err := saveAnswer(g.Probe(), answers); err != nil {
			g.Close()
			return "", err
		}
		g.Close()
		if proto == loadgen.HTTPJSON && h.enabled("wrk") {
			if err := h.crossCheck(ctx, base, &s); err != nil {
				h.fail("wrk cross-check", err)
			}
		}
	}
	h.rep.OpenRate = h.openRate()
	if h.rep.OpenRate > 0 {
		for _, proto := range h.plan.OpenProtocols {
			s, err := h.openLoop(ctx, "kiln", p.pid(), cfg(proto, "mlp"), h.rep.OpenRate)
			if err != nil {
				h.fail("kiln open loop "+string(proto), err)
				continue
			}
			h.rep.Open = append(h.rep.Open, s)
		}
	}
	for _, proto := range h.plan.ResNetKiln {
		s, g, err := h.sweep(ctx, "kiln", p.pid(), cfg(proto, "resnet18"), h.plan.ResNetLevels, statsOf("resnet18"))
		if err != nil {
			h.fail("kiln resnet18 "+string(proto), err)
			continue
		}
		g.Close()
		h.rep.ResNet = append(h.rep.ResNet, s)
	}
	return answers, nil
}

// openRate is OpenFraction of Kiln's lowest best MLP throughput over its
// protocols, rounded down to a multiple of 100 requests/s.
func (h *harness) openRate() float64 {
	best := math.Inf(1)
	for _, s := range h.rep.MLP {
		if s.Contender != "kiln" {
			continue
		}
		top := 0.0
		for _, r := range s.Results {
			top = max(top, r.Throughput)
		}
		best = min(best, top)
	}
	if math.IsInf(best, 1) || best <= 0 {
		return 0
	}
	return max(100, math.Floor(best*h.plan.OpenFraction/100)*100)
}

func saveMetadata(ctx context.Context, base, model, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/models/"+model, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var v json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return fmt.Errorf("model metadata: %w", err)
	}
	return os.WriteFile(path, v, 0o644)
}

// saveAnswer records Kiln's answer for the minimal server.
func saveAnswer(p loadgen.Probe, dir string) error {
	switch p.Protocol {
	case loadgen.HTTPJSON:
		return os.WriteFile(filepath.Join(dir, "http-json.body"), p.Body, 0o644)
	case loadgen.HTTPBinary:
		if err := os.WriteFile(filepath.Join(dir, "http-binary.header"), []byte(p.Header.Get(loadgen.HeaderContentLength)), 0o644); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "http-binary.body"), p.Body, 0o644)
	case loadgen.GRPC:
		return os.WriteFile(filepath.Join(dir, "grpc.body"), p.Body, 0o644)
	}
	return nil
}

// crossCheck runs wrk at the JSON target level against the same URL and
// body and pairs it with loadgen's result there.
func (h *harness) crossCheck(ctx context.Context, base string, s *Series) error {
	ours, _ := s.at(targetLevelMLP)
	if ours == nil {
		return fmt.Errorf("no kiln bench result at c=%d", targetLevelMLP)
	}
	md, err := loadgen.FetchMetadataHTTP(ctx, http.DefaultClient, base, "mlp", "")
	if err != nil {
		return err
	}
	shapes, _, err := loadgen.RequestShapes(md.Inputs, 1, nil)
	if err != nil {
		return err
	}
	ts, err := loadgen.RandomInputs(md.Inputs, shapes, 1)
	if err != nil {
		return err
	}
	body, err := loadgen.EncodeJSON(ts)
	if err != nil {
		return err
	}
	w, err := h.runWrk(ctx, base+"/v2/models/mlp/infer", body, targetLevelMLP, h.plan.WrkDuration)
	if err != nil {
		return err
	}
	h.logf("  wrk kiln mlp http-json c=%d: %.0f req/s p50 %.0f µs p99 %.0f µs (kiln bench: %.0f req/s p50 %s ms)",
		targetLevelMLP, w.RPS, w.P50US, w.P99US, ours.Throughput, loadgen.FormatDuration(ours.Latency.P50))
	h.rep.Wrk = &WrkCheck{Target: "kiln mlp http-json", Wrk: w, Ours: *ours}
	return nil
}

// runMinimal measures the protocol limit with Kiln's recorded answers
// (synthesised from the model's shapes if Kiln did not run).
func (h *harness) runMinimal(ctx context.Context, answers string) error {
	httpAddr, err := freeAddr()
	if err != nil {
		return err
	}
	grpcAddr, err := freeAddr()
	if err != nil {
		return err
	}
	args := []string{h.minimalBin, "--http", httpAddr, "--grpc", grpcAddr, "--model", "mlp",
		"--input", "input:FP32:-1,64", "--output", "output:FP32:-1,10"}
	if answers != "" {
		args = append(args, "--responses", answers)
	}
	h.logf("minimal: starting")
	p, err := startProc("minimal", h.work, h.cpus, h.goEnv(), args...)
	if err != nil {
		return err
	}
	defer p.stop()
	base := "http://" + httpAddr
	if err := p.waitHTTP(ctx, base+"/v2/health/ready", 30*time.Second); err != nil {
		return err
	}
	for _, proto := range allProtocols {
		c := loadgen.Config{Protocol: proto, URL: base, GRPCAddr: grpcAddr, Model: "mlp", Batch: 1,
			Warmup: h.plan.MLPWarmup, Duration: h.plan.MLPDuration}
		s, g, err := h.sweep(ctx, "minimal", p.pid(), c, h.plan.MLPLevels, nil)
		if err != nil {
			h.fail("minimal "+string(proto), err)
			continue
		}
		g.Close()
		h.rep.MLP = append(h.rep.MLP, s)
	}
	if h.rep.OpenRate > 0 {
		for _, proto := range h.plan.OpenProtocols {
			c := loadgen.Config{Protocol: proto, URL: base, GRPCAddr: grpcAddr, Model: "mlp", Batch: 1}
			s, err := h.openLoop(ctx, "minimal", p.pid(), c, h.rep.OpenRate)
			if err != nil {
				h.fail("minimal open loop "+string(proto), err)
				continue
			}
			h.rep.Open = append(h.rep.Open, s)
		}
	}
	return nil
}

// runNode measures the Node.js peer, one process per model.
func (h *harness) runNode(ctx context.Context) error {
	models := []string{"mlp"}
	if h.plan.ResNetPeers {
		models = append(models, "resnet18")
	}
	for _, m := range models {
		port, err := freePort()
		if err != nil {
			return err
		}
		intra := h.rep.Settings.NodeIntraOp[m]
		h.logf("node: starting %s (intra-op %d)", m, intra)
		p, err := startProc("node-"+m, h.work, h.cpus, nil, "node", filepath.Join(h.root, "bench", "peers", "node", "server.js"),
			"--model", m, "--model-path", filepath.Join(h.models, m+".onnx"), "--port", strconv.Itoa(port),
			"--intra-op", strconv.Itoa(intra), "--inter-op", "1")
		if err != nil {
			return err
		}
		err = h.peerSweep(ctx, p, "node", m, "http://127.0.0.1:"+strconv.Itoa(port))
		p.stop()
		if err != nil {
			h.fail("node "+m, err)
		}
	}
	return nil
}

// runPython measures the seed-style Python peer, one process per model.
func (h *harness) runPython(ctx context.Context) error {
	if h.python == "" {
		return errSkipped
	}
	models := []string{"mlp"}
	if h.plan.ResNetPeers {
		models = append(models, "resnet18")
	}
	weights := map[string]string{"mlp": "mlp.npz", "resnet18": "resnet18_state_dict.pt"}
	for _, m := range models {
		port, err := freePort()
		if err != nil {
			return err
		}
		threads := h.rep.Settings.PyThreads[m]
		h.logf("python: starting %s (%d torch threads)", m, threads)
		p, err := startProc("python-"+m, h.work, h.cpus, nil, h.python, filepath.Join(h.root, "bench", "peers", "python", "server.py"),
			"--model", m, "--weights", filepath.Join(h.models, weights[m]), "--port", strconv.Itoa(port),
			"--threads", strconv.Itoa(threads))
		if err != nil {
			return err
		}
		err = h.peerSweep(ctx, p, "python", m, "http://127.0.0.1:"+strconv.Itoa(port))
		p.stop()
		if err != nil {
			h.fail("python "+m, err)
		}
	}
	return nil
}

// peerSweep waits for a JSON-only peer and sweeps it.
func (h *harness) peerSweep(ctx context.Context, p *proc, contender, model, base string) error {
	if err := p.waitHTTP(ctx, base+"/v2/health/ready", 60*time.Second); err != nil {
		return err
	}
	c := loadgen.Config{Protocol: loadgen.HTTPJSON, URL: base, Model: model, Batch: 1}
	levels := h.plan.MLPLevels
	if model == "mlp" {
		c.Warmup, c.Duration = h.plan.MLPWarmup, h.plan.MLPDuration
	} else {
		c.Warmup, c.Duration, c.Timeout = h.plan.ResNetWarmup, h.plan.ResNetDuration, 2*time.Minute
		levels = h.plan.ResNetLevels
	}
	s, g, err := h.sweep(ctx, contender, p.pid(), c, levels, nil)
	if err != nil {
		return err
	}
	g.Close()
	if model == "mlp" {
		h.rep.MLP = append(h.rep.MLP, s)
	} else {
		h.rep.ResNet = append(h.rep.ResNet, s)
	}
	return nil
}

// runInproc measures the compute limit: the MLP's single call at batch 1
// (for the latency target) and both models at the batch mixes Kiln
// formed at the target levels.
func (h *harness) runInproc(ctx context.Context) error {
	res, err := h.inproc(ctx, "mlp", []string{"--instances", "1", "--intra-op", "1", "--inter-op", "1", "--batches", "1"})
	if err != nil {
		return err
	}
	h.rep.Inproc = append(h.rep.Inproc, InprocRun{Key: "mlp/call", Label: "MLP, batch 1, one session, one caller (call time)", Model: "mlp", Result: res})
	mixes := func(series []Series, level int) {
		for i := range series {
			s := &series[i]
			if s.Contender != "kiln" {
				continue
			}
			_, st := s.at(level)
			if st == nil || len(st.Mix) == 0 {
				continue
			}
			ms := h.rep.Settings.kiln(s.Model)
			res, err := h.inproc(ctx, s.Model, []string{"--instances", strconv.Itoa(ms.Instances), "--intra-op", strconv.Itoa(ms.IntraOp),
				"--inter-op", strconv.Itoa(ms.InterOp), "--mix", st.MixString()})
			if err != nil {
				h.fail("inproc "+s.Label(), err)
				continue
			}
			key := fmt.Sprintf("%s/%s/c%d", s.Model, s.Protocol, level)
			h.rep.Inproc = append(h.rep.Inproc, InprocRun{Key: key, Model: s.Model, Result: res,
				Label: fmt.Sprintf("%s at the batch sizes Kiln %s formed at c=%d (mean %.1f)", s.Model, s.Protocol, level, st.MeanBatch())})
		}
	}
	mixes(h.rep.MLP, targetLevelMLP)
	mixes(h.rep.ResNet, targetLevelResNet)
	return nil
}

func (h *harness) inproc(ctx context.Context, model string, args []string) (InprocResult, error) {
	warm, dur := h.plan.InprocWarmup, h.plan.InprocDuration
	if model != "mlp" {
		warm, dur = 2*warm, 2*dur
	}
	argv := append([]string{h.inprocBin, "--model", filepath.Join(h.models, model+".onnx"), "--ort-lib", h.ortLib,
		"--warmup", warm.String(), "--duration", dur.String()}, args...)
	if ts, err := exec.LookPath("taskset"); err == nil && h.cpus != "" {
		argv = append([]string{ts, "-c", h.cpus}, argv...)
	}
	var best InprocResult
	bestOther := math.Inf(1)
	for attempt := 0; attempt <= h.retries; attempt++ {
		h.quiet(ctx, 0)
		c0 := sampleCPU(0)
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Dir, cmd.Env = h.root, append(os.Environ(), h.goEnv()...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return InprocResult{}, fmt.Errorf("inproc: %w\n%s", err, stderr.String())
		}
		use := sampleCPU(0).since(c0)
		// The peer's own CPU time is counted in "other" here: take it out.
		secs := 0.0
		if st := cmd.ProcessState; st != nil {
			secs = (st.UserTime() + st.SystemTime()).Seconds() / max(time.Since(c0.at).Seconds(), 1e-9)
		}
		other := max(0, use.Other-secs)
		var rs []InprocResult
		if err := json.Unmarshal(out, &rs); err != nil || len(rs) == 0 {
			return InprocResult{}, fmt.Errorf("inproc output: %v\n%s", err, out)
		}
		h.logf("  inproc %s %s: %.0f rows/s, call p50 %.1f µs (mean batch %.1f); other processes %.2f cores",
			model, strings.Join(args, " "), rs[0].RowsPerS, rs[0].CallP50US, rs[0].MeanBatch, other)
		if other < bestOther {
			best, bestOther = rs[0], other
		}
		if bestOther <= h.quietLimit || h.quietWait <= 0 {
			break
		}
	}
	return best, nil
}

// inprocVersion asks the in-process peer for ONNX Runtime's version.
func (h *harness) inprocVersion(ctx context.Context) string {
	out, err := run(ctx, h.root, h.goEnv(), h.inprocBin, "--version", "--ort-lib", h.ortLib)
	if err != nil {
		return ""
	}
	return firstLine(out)
}

// quiet waits (up to the configured time) for outside CPU load to fall
// below the threshold before a measurement.
func (h *harness) quiet(ctx context.Context, pid int) {
	if h.quietWait <= 0 {
		return
	}
	if ok, other := waitQuiet(ctx, pid, h.quietLimit, h.quietWait); !ok && ctx.Err() == nil {
		h.logf("  (other processes still use %.2f cores after waiting %v; measuring anyway)", other, h.quietWait)
	}
}
