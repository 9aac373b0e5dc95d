package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kilnai/kiln/internal/loadgen"
)

// Ratio is one of the targets, measured.
type Ratio struct {
	Name string `json:"name"`
	// Kind "ratio": Value must be ≥ Goal. Kind "overhead": Value (µs) must
	// be ≤ Goal (µs).
	Kind   string  `json:"kind"`
	Value  float64 `json:"value"`
	Goal   float64 `json:"goal"`
	Status string  `json:"status"` // pass, FAIL, n/a
	Detail string  `json:"detail"`
}

func find(series []Series, contender string, proto loadgen.Protocol) *Series {
	for i := range series {
		if series[i].Contender == contender && series[i].Protocol == proto {
			return &series[i]
		}
	}
	return nil
}

func resultAt(series []Series, contender string, proto loadgen.Protocol, level int) *loadgen.Result {
	s := find(series, contender, proto)
	if s == nil {
		return nil
	}
	r, _ := s.at(level)
	if r == nil || r.Requests == 0 {
		return nil
	}
	return r
}

func inprocOf(rep *Report, key string) *InprocResult {
	for i := range rep.Inproc {
		if rep.Inproc[i].Key == key {
			return &rep.Inproc[i].Result
		}
	}
	return nil
}

func ratio(name string, goal float64, num, den float64, unit string, ok bool) Ratio {
	r := Ratio{Name: name, Kind: "ratio", Goal: goal, Status: "n/a", Detail: "not measured in this run"}
	if !ok || den <= 0 {
		return r
	}
	r.Value = num / den
	r.Status = "FAIL"
	if r.Value >= goal {
		r.Status = "pass"
	}
	r.Detail = fmt.Sprintf("%s vs %s %s", fmtNum(num), fmtNum(den), unit)
	return r
}

func computeRatios(rep *Report) []Ratio {
	var out []Ratio
	protoName := map[loadgen.Protocol]string{loadgen.HTTPJSON: "HTTP JSON", loadgen.HTTPBinary: "HTTP binary", loadgen.GRPC: "gRPC"}
	// ResNet-18 against the compute limit.
	for _, p := range []loadgen.Protocol{loadgen.HTTPBinary, loadgen.GRPC} {
		k := resultAt(rep.ResNet, "kiln", p, targetLevelResNet)
		in := inprocOf(rep, fmt.Sprintf("resnet18/%s/c%d", p, targetLevelResNet))
		var num, den float64
		if k != nil && in != nil {
			num, den = k.RowsPerSec, in.RowsPerS
		}
		out = append(out, ratio(fmt.Sprintf("ResNet-18 c=%d: Kiln %s ÷ in-process ORT at Kiln's batch sizes", targetLevelResNet, protoName[p]),
			0.90, num, den, "images/s", k != nil && in != nil))
	}
	// MLP against the protocol limit.
	for _, c := range []struct {
		p    loadgen.Protocol
		goal float64
	}{{loadgen.HTTPBinary, 0.50}, {loadgen.GRPC, 0.50}, {loadgen.HTTPJSON, 0.35}} {
		k := resultAt(rep.MLP, "kiln", c.p, targetLevelMLP)
		m := resultAt(rep.MLP, "minimal", c.p, targetLevelMLP)
		var num, den float64
		if k != nil && m != nil {
			num, den = k.Throughput, m.Throughput
		}
		out = append(out, ratio(fmt.Sprintf("MLP c=%d: Kiln %s ÷ minimal Go server (%s)", targetLevelMLP, protoName[c.p], protoName[c.p]),
			c.goal, num, den, "req/s", k != nil && m != nil))
	}
	// Against the Node and Python servers.
	for _, c := range []struct {
		peer, model string
		series      []Series
		goal        float64
	}{{"node", "MLP", rep.MLP, 1.5}, {"python", "MLP", rep.MLP, 3}, {"python", "ResNet-18", rep.ResNet, 1.5}} {
		k := resultAt(c.series, "kiln", loadgen.HTTPJSON, targetLevelPeers)
		p := resultAt(c.series, c.peer, loadgen.HTTPJSON, targetLevelPeers)
		var num, den float64
		if k != nil && p != nil {
			num, den = k.Throughput, p.Throughput
		}
		peer := map[string]string{"node": "Node.js onnxruntime-node server", "python": "seed-style Python server"}[c.peer]
		out = append(out, ratio(fmt.Sprintf("%s c=%d: Kiln HTTP JSON ÷ %s (JSON)", c.model, targetLevelPeers, peer),
			c.goal, num, den, "req/s", k != nil && p != nil))
	}
	// Kiln's own latency at concurrency 1.
	call := inprocOf(rep, "mlp/call")
	for _, c := range []struct {
		p     loadgen.Protocol
		allow float64
	}{{loadgen.HTTPJSON, 50}, {loadgen.HTTPBinary, 30}, {loadgen.GRPC, 30}} {
		r := Ratio{Name: fmt.Sprintf("MLP c=%d batch 1: Kiln %s p50 − (minimal p50 + in-process call)", targetLevelLatency, protoName[c.p]),
			Kind: "overhead", Goal: c.allow, Status: "n/a", Detail: "not measured in this run"}
		k := resultAt(rep.MLP, "kiln", c.p, targetLevelLatency)
		m := resultAt(rep.MLP, "minimal", c.p, targetLevelLatency)
		if k != nil && m != nil && call != nil {
			kp, mp := us(k.Latency.P50), us(m.Latency.P50)
			r.Value = kp - mp - call.CallP50US
			r.Status = "FAIL"
			if r.Value <= c.allow {
				r.Status = "pass"
			}
			r.Detail = fmt.Sprintf("Kiln p50 %.0f µs; minimal p50 %.0f µs + call %.1f µs", kp, mp, call.CallP50US)
		}
		out = append(out, r)
	}
	return out
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func fmtNum(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func (r Ratio) valueString() string {
	if r.Status == "n/a" {
		return "—"
	}
	if r.Kind == "overhead" {
		return fmt.Sprintf("%+.0f µs", r.Value)
	}
	return fmt.Sprintf("%.2f×", r.Value)
}

func (r Ratio) goalString() string {
	if r.Kind == "overhead" {
		return fmt.Sprintf("≤ %.0f µs", r.Goal)
	}
	return fmt.Sprintf("≥ %.2f×", r.Goal)
}

func printRatios(w io.Writer, rep *Report) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Targets (same run, same machine):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rep.Ratios {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", r.Status, r.valueString(), r.goalString(), r.Name, r.Detail)
	}
	tw.Flush()
	for _, e := range rep.Errors {
		fmt.Fprintln(w, "  error:", e)
	}
}

// Plot is one written PNG, referenced from the report.
type Plot struct {
	Title string
	Path  string
}

func ms(d time.Duration) string { return loadgen.FormatDuration(d) }

// levelsOf lists the concurrency levels present in any series.
func levelsOf(series []Series) []int {
	var out []int
	for _, s := range series {
		for _, r := range s.Results {
			if r.Mode == loadgen.ModeConcurrency && !slices.Contains(out, r.Concurrency) {
				out = append(out, r.Concurrency)
			}
		}
	}
	slices.Sort(out)
	return out
}

// sweepTable writes one metric of every series by level; cell gets the
// result and the CPU use measured with it (nil if none).
func sweepTable(w io.Writer, series []Series, levels []int, cell func(*loadgen.Result, *CPUUse) string) {
	fmt.Fprint(w, "| contender | protocol |")
	for _, l := range levels {
		fmt.Fprintf(w, " c=%d |", l)
	}
	fmt.Fprint(w, "\n|---|---|")
	for range levels {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
	for i := range series {
		s := &series[i]
		fmt.Fprintf(w, "| %s | %s |", s.Contender, s.Protocol)
		for _, l := range levels {
			j := s.index(l)
			if j < 0 {
				fmt.Fprint(w, " — |")
				continue
			}
			var cpu *CPUUse
			if j < len(s.CPU) {
				cpu = &s.CPU[j]
			}
			fmt.Fprintf(w, " %s |", cell(&s.Results[j], cpu))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

// interference lists the points where other processes kept more than
// limit cores busy.
func interference(rep *Report, limit float64) (worst float64, points []string) {
	for _, group := range [][]Series{rep.MLP, rep.ResNet, rep.Open} {
		for _, s := range group {
			for i, c := range s.CPU {
				worst = max(worst, c.Other)
				if c.Other > limit && i < len(s.Results) {
					points = append(points, fmt.Sprintf("%s %s %s (%.2f)", s.Label(), s.Model, s.Results[i].Level(), c.Other))
				}
			}
		}
	}
	return worst, points
}

func errorsOf(series []Series) []string {
	var out []string
	for _, s := range series {
		for _, r := range s.Results {
			if r.ErrorCount > 0 {
				out = append(out, fmt.Sprintf("%s %s %s: %d failed (%s)", s.Label(), s.Model, r.Level(), r.ErrorCount, r.ErrorSummary()))
			}
		}
	}
	return out
}

func writeMarkdown(w io.Writer, rep *Report, plots []Plot, notes string) error {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	plotOf := func(title string) {
		for _, pl := range plots {
			if pl.Title == title {
				p("![%s](%s)\n\n", pl.Title, pl.Path)
			}
		}
	}
	mode := "full"
	if rep.Quick {
		mode = "quick"
	}
	p("## Serving: Kiln beside its peers\n\n")
	p("<!-- Generated by bench/cmd/benchrun; rerun `make bench` to refresh. The analysis comes from bench/notes.md. -->\n\n")
	p("Side by side, in one run on one machine: Kiln against the compute limit (ONNX Runtime in-process), the protocol\n")
	p("limit (a Go server that decodes nothing), a Node.js server on the same ONNX Runtime, and a seed-style Python server.\n\n")
	p("- **Run:** %s UTC, %s mode, %s.\n", rep.Date.Format("2006-01-02 15:04"), mode, (time.Duration(rep.Seconds) * time.Second).String())
	p("- **Command:** `%s`\n", rep.Command)
	p("- **Machine:** %d × %s (nproc %d), %.1f GiB, Linux %s; load average (1 min) %s at the start, %s at the end.\n",
		rep.Machine.CPUs, rep.Machine.CPUModel, rep.Machine.CPUs, rep.Machine.MemoryGiB, rep.Machine.Kernel, rep.Machine.LoadStart, rep.Machine.LoadEnd)
	if worst, points := interference(rep, 0.25); len(points) > 0 {
		p("- **Interference:** other processes kept up to %.2f cores busy; points with more than 0.25 cores of outside load: %s.\n\n",
			worst, strings.Join(points, "; "))
	} else {
		p("- **Interference:** other processes kept at most %.2f cores busy during any measured point.\n\n", worst)
	}

	p("### Targets\n\n")
	p("| result | measured | goal | target | detail |\n|---|---:|---:|---|---|\n")
	for _, r := range rep.Ratios {
		status := r.Status
		if status == "pass" {
			status = "✅ pass"
		} else if status == "FAIL" {
			status = "❌ fail"
		}
		p("| %s | %s | %s | %s | %s |\n", status, r.valueString(), r.goalString(), r.Name, r.Detail)
	}
	p("\n")

	v := rep.Versions
	p("### Versions\n\n| component | version |\n|---|---|\n")
	p("| Go | %s |\n| Kiln | %s |\n", v.Go, v.Kiln)
	p("| ONNX Runtime | %s (`libonnxruntime.so.1` from the npm `onnxruntime-node` tarball, loaded by Kiln, the in-process peer and Node) |\n", v.ORT)
	p("| github.com/yalue/onnxruntime_go | %s |\n", v.ORTGo)
	p("| Node.js, onnxruntime-node | %s, %s |\n", v.Node, v.ORTNode)
	p("| Python, torch, torchvision, aiohttp | %s, %s, %s, %s (Debian packages) |\n", v.Python, v.Torch, v.Torchvision, v.Aiohttp)
	p("| wrk | %s |\n\n", v.Wrk)

	st := rep.Settings
	mlp, rn := st.kiln("mlp"), st.kiln("resnet18")
	p("### Method\n\n")
	p("- Every server runs on 127.0.0.1, pinned with `taskset -c %s` to the same %d CPU(s); the load generator runs in the harness\n", st.CPUs, st.ThreadBudget)
	p("  on the same machine and shares those CPUs (loopback numbers: the client's own cost is in every result).\n")
	p("- The load generator is `internal/loadgen`, the engine of `kiln bench`: pre-encoded requests (4 seeded random variants),\n")
	p("  one worker per outstanding request; HTTP through its own HTTP/1.1 client (one kept-alive connection per worker, no\n")
	p("  allocation per request), gRPC through grpc-go (up to 4 shared connections) sending pre-encoded messages.\n")
	p("  Closed loop: N workers, each sends its next request when its\n")
	p("  previous one is answered; a request counts when it completes inside the window. Open loop: a constant schedule, latency\n")
	p("  measured from each request's scheduled send time (no coordinated omission); *late* counts requests sent > 1 ms behind.\n")
	p("- Percentiles are exact nearest-rank values over every request of the window. Throughput is completed requests / window.\n")
	if rep.QuietWait > 0 {
		p("- Before each measurement the harness waited (up to %s) until processes other than the server and itself used fewer\n", rep.QuietWait)
		p("  than %.2f cores, and measured a level up to %d more times when outside load exceeded that, keeping the quietest\n", rep.QuietLimit, rep.Retries)
		p("  attempt; the CPU tables show the cores the server, the load generator and everything else used.\n")
	}
	p("- MLP: warm-up %s, window %s per level. ResNet-18: warm-up %s, window %s. Every request carries one row (batch 1); Kiln's\n",
		rep.Plan.MLPWarmup, rep.Plan.MLPDuration, rep.Plan.ResNetWarmup, rep.Plan.ResNetDuration)
	p("  dynamic batcher forms the batches. Models: `scripts/bench/gen_models.py` (seeded weights; ResNet-18 is torchvision's architecture).\n\n")
	p("| contender | MLP | ResNet-18 |\n|---|---|---|\n")
	p("| Kiln | %d instances × %d intra-op thread, max_batch_size %d, max_queue_delay %s, GOMAXPROCS %d | %d instances × %d intra-op thread, max_batch_size %d, max_queue_delay %s |\n",
		mlp.Instances, mlp.IntraOp, mlp.MaxBatchSize, mlp.MaxQueueDelay, st.GOMAXPROCS, rn.Instances, rn.IntraOp, rn.MaxBatchSize, rn.MaxQueueDelay)
	p("| in-process ORT (`bench/peers/inproc`) | %d sessions × %d intra-op thread, one goroutine each, replaying Kiln's batch sizes | same as Kiln |\n", mlp.Instances, mlp.IntraOp)
	p("| minimal Go server (`bench/peers/minimal`) | net/http and grpc-go, GOMAXPROCS %d, reads each request and answers Kiln's recorded answer bytes | — |\n", st.GOMAXPROCS)
	p("| Node.js (`bench/peers/node`) | one session, one `session.run` per request, intra-op %d | intra-op %d |\n", st.NodeIntraOp["mlp"], st.NodeIntraOp["resnet18"])
	p("| Python (`bench/peers/python`) | aiohttp, torch per request on the event loop, %d thread(s) | %d threads |\n\n", st.PyThreads["mlp"], st.PyThreads["resnet18"])
	p("Node's and Python's thread counts are each one's faster setting on this machine (a second, spinning ORT thread or\n")
	p("OpenBLAS thread slows the MLP down). Reproduce any point with `kiln bench`, e.g.\n")
	p("`kiln bench --url http://127.0.0.1:PORT --model mlp --protocol http-binary --concurrency 64 --warmup %s --duration %s`.\n\n", rep.Plan.MLPWarmup, rep.Plan.MLPDuration)

	if len(rep.MLP) > 0 {
		lv := levelsOf(rep.MLP)
		p("### MLP 64→256→256→10, one row per request (closed loop)\n\n")
		p("Throughput, requests/s:\n\n")
		sweepTable(w, rep.MLP, lv, func(r *loadgen.Result, _ *CPUUse) string { return fmt.Sprintf("%.0f", r.Throughput) })
		p("p50 latency, ms:\n\n")
		sweepTable(w, rep.MLP, lv, func(r *loadgen.Result, _ *CPUUse) string { return ms(r.Latency.P50) })
		p("p99 latency, ms:\n\n")
		sweepTable(w, rep.MLP, lv, func(r *loadgen.Result, _ *CPUUse) string { return ms(r.Latency.P99) })
		p("CPU cores used by the server process / requests per second per server core (the load generator used the rest):\n\n")
		sweepTable(w, rep.MLP, lv, func(r *loadgen.Result, c *CPUUse) string {
			if c == nil || c.Server <= 0 {
				return "—"
			}
			return fmt.Sprintf("%.2f / %.0f", c.Server, r.Throughput/c.Server)
		})
		plotOf("MLP throughput")
		plotOf("MLP latency")
		p("Request and answer sizes (bytes):")
		for _, s := range rep.MLP {
			p(" %s %d/%d;", s.Label(), s.RequestBytes, s.ResponseBytes)
		}
		p("\n\n")
		serverTable(w, rep.MLP)
	}

	if len(rep.Open) > 0 {
		p("### MLP open loop at %.0f requests/s\n\n", rep.OpenRate)
		p("%.0f%% of Kiln's lowest best closed-loop MLP throughput; latency from the scheduled send time.\n\n", rep.Plan.OpenFraction*100)
		p("| contender | protocol | achieved req/s | p50 ms | p90 ms | p99 ms | max ms | late | errors |\n|---|---|---:|---:|---:|---:|---:|---:|---|\n")
		for _, s := range rep.Open {
			for _, r := range s.Results {
				p("| %s | %s | %.0f | %s | %s | %s | %s | %d | %s |\n", s.Contender, s.Protocol, r.Throughput,
					ms(r.Latency.P50), ms(r.Latency.P90), ms(r.Latency.P99), ms(r.Latency.Max), r.Late, r.ErrorSummary())
			}
		}
		p("\n")
		plotOf("MLP open-loop latency")
	}

	if len(rep.ResNet) > 0 {
		lv := levelsOf(rep.ResNet)
		p("### ResNet-18, one 3×224×224 image per request (closed loop)\n\n")
		p("Throughput, images/s:\n\n")
		sweepTable(w, rep.ResNet, lv, func(r *loadgen.Result, _ *CPUUse) string { return fmtNum(r.RowsPerSec) })
		p("p50 / p99 latency, ms:\n\n")
		sweepTable(w, rep.ResNet, lv, func(r *loadgen.Result, _ *CPUUse) string {
			return fmt.Sprintf("%.1f / %.1f", us(r.Latency.P50)/1e3, us(r.Latency.P99)/1e3)
		})
		plotOf("ResNet-18 throughput")
		serverTable(w, rep.ResNet)
	}

	if len(rep.Inproc) > 0 {
		p("### Compute limit: ONNX Runtime in-process\n\n")
		if !rep.InprocRedone.IsZero() {
			p("Measured again on %s UTC (`--redo-inproc`) with this run's batch mixes.\n\n", rep.InprocRedone.Format("2006-01-02 15:04"))
		}
		p("| measurement | sessions | mean batch | rows/s | call p50 µs | call mean µs |\n|---|---:|---:|---:|---:|---:|\n")
		for _, in := range rep.Inproc {
			r := in.Result
			p("| %s | %d | %.1f | %s | %.1f | %.1f |\n", in.Label, r.Instances, r.MeanBatch, fmtNum(r.RowsPerS), r.CallP50US, r.CallMeanUS)
		}
		p("\n")
	}

	if rep.Wrk != nil {
		c := rep.Wrk
		p("### Cross-check with wrk\n\n")
		p("The same point (%s, c=%d, the same JSON body) measured by `kiln bench` and by wrk %s (`bench/wrk/post.lua`):\n\n", c.Target, c.Wrk.Connections, firstWord(rep.Versions.Wrk))
		p("| tool | req/s | p50 ms | p90 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|---|\n")
		p("| kiln bench (loadgen) | %.0f | %s | %s | %s | %s |\n", c.Ours.Throughput, ms(c.Ours.Latency.P50), ms(c.Ours.Latency.P90), ms(c.Ours.Latency.P99), c.Ours.ErrorSummary())
		wrkErr := fmt.Sprint(c.Wrk.Non2xx)
		if c.Wrk.SocketErr != "" {
			wrkErr += "; " + c.Wrk.SocketErr
		}
		p("| wrk, %d threads | %.0f | %.3f | %.3f | %.3f | %s |\n\n", c.Wrk.Threads, c.Wrk.RPS, c.Wrk.P50US/1e3, c.Wrk.P90US/1e3, c.Wrk.P99US/1e3, wrkErr)
		p("wrk: `%s`. wrk's latency percentiles come from its HdrHistogram, ours are exact; wrk runs for %s without warm-up right after our sweep.\n\n", c.Wrk.Command, time.Duration(c.Wrk.Seconds*float64(time.Second)))
	}

	if notes = strings.TrimSpace(notes); notes != "" {
		p("### Analysis\n\n%s\n\n", notes)
	}
	errs := append(append(errorsOf(rep.MLP), errorsOf(rep.ResNet)...), errorsOf(rep.Open)...)
	errs = append(errs, rep.Errors...)
	if len(errs) > 0 {
		p("### Errors\n\n")
		for _, e := range errs {
			p("- %s\n", e)
		}
		p("\n")
	}
	return nil
}

func firstWord(s string) string {
	f := strings.Fields(s)
	if len(f) > 1 {
		return f[1]
	}
	return s
}

// serverTable writes Kiln's statistics per level.
func serverTable(w io.Writer, series []Series) {
	var ks []*Series
	for i := range series {
		if series[i].Contender == "kiln" && len(series[i].Server) > 0 {
			ks = append(ks, &series[i])
		}
	}
	if len(ks) == 0 {
		return
	}
	fmt.Fprintf(w, "Kiln's own statistics (statistics extension) per level: the mean batch size its batcher formed; per request the\n")
	fmt.Fprintf(w, "mean server time (as Kiln's `success` duration counts it), queue wait and compute-infer time as Kiln attributes\n")
	fmt.Fprintf(w, "them; the mean duration of one model execution (from `batch_stats`); and the client's p50, all in µs:\n\n")
	fmt.Fprintf(w, "| protocol | level | mean batch | server µs | queue µs | compute infer µs | per execution µs | client p50 µs |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range ks {
		for i, r := range s.Results {
			if i >= len(s.Server) {
				break
			}
			st := s.Server[i]
			fmt.Fprintf(w, "| %s | %s | %.1f | %.0f | %.0f | %.0f | %.0f | %.0f |\n", s.Protocol, r.Level(), st.MeanBatch(), st.SuccessUS, st.QueueUS,
				st.ComputeInferUS, st.ComputeInferPerExecUS, us(r.Latency.P50))
		}
	}
	fmt.Fprintln(w)
}
