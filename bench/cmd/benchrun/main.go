// Command benchrun runs Kiln's side-by-side benchmarks and writes
// docs/benchmarks.md with PNG plots; `make bench` and `make bench-quick`
// call it.
//
// In one run, on one machine, it starts each contender in turn on
// 127.0.0.1 with random ports, pinned with taskset to the same CPUs and
// thread budget, and drives it with internal/loadgen (the engine of
// `kiln bench`):
//
//   - Kiln (HTTP JSON, HTTP binary, gRPC) serving the MLP and ResNet-18
//     from a model repository written to a temporary directory;
//   - the protocol limit: bench/peers/minimal, answering Kiln's recorded
//     answers without decoding anything;
//   - a Node.js server on onnxruntime-node (bench/peers/node);
//   - the seed's approach, aiohttp + torch (bench/peers/python);
//   - the compute limit: bench/peers/inproc, ONNX Runtime in-process at
//     the batch sizes Kiln's batcher formed (read from its statistics).
//
// One point is cross-checked with wrk. The ratios the performance issue
// sets are computed with pass/fail.
//
//	go run ./bench/cmd/benchrun [--quick] [--kiln bin/kiln]
//	go run ./bench/cmd/benchrun --render docs/benchmarks/results.json   # rewrite the report only
//	go run ./bench/cmd/benchrun --redo-inproc docs/benchmarks/results.json  # measure the in-process limit again
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/kilnai/kiln/bench/internal/mdsection"
)

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	var (
		quick  = flag.Bool("quick", false, "quick mode: fewer points and shorter windows (under 3 minutes)")
		doc    = flag.String("doc", "", "report to write (default docs/benchmarks.md; quick: bench/out/benchmarks.md)")
		assets = flag.String("assets", "", "directory for plots and results.json (default docs/benchmarks; quick: bench/out)")
		models = flag.String("models", filepath.Join("bench", "models"), "benchmark models directory (generated when missing)")
		kiln   = flag.String("kiln", "", "kiln binary to measure (default: build ./cmd/kiln)")
		ortLib = flag.String("ort-lib", "", "libonnxruntime.so.1 (default $KILN_ORT_LIB or third_party/onnxruntime/libonnxruntime.so.1)")
		cpus   = flag.String("cpus", "", "CPU list every server is pinned to with taskset (default: the first min(nproc, 2) CPUs)")
		only   = flag.String("only", "", "comma-separated contenders to run (kiln,minimal,node,python,inproc,wrk); default all")
		keep   = flag.Bool("keep", false, "keep the temporary work directory (logs, model repository)")
		render = flag.String("render", "", "only rewrite the report and plots from this results.json")
		redo   = flag.String("redo-inproc", "", "measure the in-process limit again for this results.json (same batch mixes) and rewrite the report")
		qLimit = flag.Float64("quiet", 0.3, "before each measurement, wait until other processes use fewer than this many cores")
		qWait  = flag.Duration("quiet-wait", 0, "longest wait for quiet before each measurement (default 30s; quick 5s; 0s disables)")
		retry  = flag.Int("retries", -1, "measure a level again (up to this many times) when other processes used more than --quiet cores (default 2; quick 0)")
	)
	flag.Parse()
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return errors.New("run from the repository root (make bench)")
	}
	if *doc == "" {
		*doc = filepath.Join("docs", "benchmarks.md")
		if *quick {
			*doc = filepath.Join("bench", "out", "benchmarks.md")
		}
	}
	if *assets == "" {
		*assets = filepath.Join("docs", "benchmarks")
		if *quick {
			*assets = filepath.Join("bench", "out")
		}
	}
	if *render != "" {
		b, err := os.ReadFile(*render)
		if err != nil {
			return err
		}
		var rep Report
		if err := json.Unmarshal(b, &rep); err != nil {
			return fmt.Errorf("%s: %w", *render, err)
		}
		rep.Ratios = computeRatios(&rep)
		return writeOutputs(&rep, root, *doc, *assets, false)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	h := &harness{root: root, quick: *quick, log: os.Stderr, kilnBin: *kiln, ortLib: *ortLib, cpus: *cpus}
	h.models, _ = filepath.Abs(*models)
	if h.ortLib == "" {
		h.ortLib = os.Getenv("KILN_ORT_LIB")
	}
	if h.ortLib == "" {
		h.ortLib = filepath.Join(root, "third_party", "onnxruntime", "libonnxruntime.so.1")
	}
	h.ortLib, _ = filepath.Abs(h.ortLib)
	if h.cpus == "" {
		n := min(runtime.NumCPU(), 2)
		h.cpus = "0"
		if n > 1 {
			h.cpus = fmt.Sprintf("0-%d", n-1)
		}
	}
	h.budget = cpuCount(h.cpus)
	if *only != "" {
		h.only = map[string]bool{}
		for s := range strings.SplitSeq(*only, ",") {
			h.only[strings.TrimSpace(s)] = true
		}
	}
	h.plan = fullPlan()
	h.quietLimit, h.quietWait = *qLimit, 30*time.Second
	if *quick {
		h.plan = quickPlan()
		h.quietWait = 5 * time.Second
	}
	h.retries = 2
	if *quick {
		h.retries = 0
	}
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "quiet-wait":
			h.quietWait = *qWait
		case "retries":
			h.retries = max(0, *retry)
		}
	})
	if h.work, err = os.MkdirTemp("", "kiln-bench-"); err != nil {
		return err
	}
	if *keep {
		h.logf("work directory: %s", h.work)
	} else {
		defer os.RemoveAll(h.work)
	}
	start := time.Now()
	var rep *Report
	if *redo != "" {
		b, rerr := os.ReadFile(*redo)
		if rerr != nil {
			return rerr
		}
		rep = &Report{}
		if rerr := json.Unmarshal(b, rep); rerr != nil {
			return fmt.Errorf("%s: %w", *redo, rerr)
		}
		err = h.redoInproc(ctx, rep)
	} else {
		rep, err = h.run(ctx)
	}
	if ctx.Err() != nil {
		h.logf("interrupted: the report was not written")
		return err
	}
	if rep != nil {
		rep.Ratios = computeRatios(rep)
		printRatios(os.Stdout, rep)
		if werr := writeOutputs(rep, root, *doc, *assets, true); werr != nil {
			err = errors.Join(err, werr)
		} else {
			h.logf("wrote %s and plots in %s (%s)", *doc, *assets, time.Since(start).Round(time.Second))
		}
	}
	return err
}

// cpuCount counts the CPUs of a taskset list such as "0-1" or "0,2,4".
func cpuCount(list string) int {
	n := 0
	for part := range strings.SplitSeq(list, ",") {
		var a, b int
		if _, err := fmt.Sscanf(part, "%d-%d", &a, &b); err == nil && b >= a {
			n += b - a + 1
		} else if part != "" {
			n++
		}
	}
	return max(n, 1)
}

func writeOutputs(rep *Report, root, doc, assets string, withJSON bool) error {
	docAbs := filepath.Join(root, doc)
	assetsAbs := filepath.Join(root, assets)
	if err := os.MkdirAll(filepath.Dir(docAbs), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(assetsAbs, 0o755); err != nil {
		return err
	}
	plots, err := writePlots(rep, assetsAbs)
	if err != nil {
		return fmt.Errorf("plots: %w", err)
	}
	rel, err := filepath.Rel(filepath.Dir(docAbs), assetsAbs)
	if err != nil {
		return err
	}
	for i := range plots {
		plots[i].Path = filepath.ToSlash(filepath.Join(rel, plots[i].Path))
	}
	notes, _ := os.ReadFile(filepath.Join(root, "bench", "notes.md"))
	var md strings.Builder
	if err := writeMarkdown(&md, rep, plots, string(notes)); err != nil {
		return err
	}
	if err := mdsection.Replace(docAbs, "serving", md.String()); err != nil {
		return err
	}
	if withJSON {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(assetsAbs, "results.json"), append(b, '\n'), 0o644)
	}
	return nil
}

// harness runs the contenders and collects the report.
type harness struct {
	root, models, work string
	kilnBin            string
	minimalBin         string
	inprocBin          string
	ortLib, python     string
	cpus               string
	budget             int
	only               map[string]bool
	quick              bool
	quietLimit         float64
	quietWait          time.Duration
	retries            int
	plan               Plan
	rep                *Report
	log                io.Writer
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.log, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (h *harness) enabled(name string) bool { return h.only == nil || h.only[name] }

// rel names a path relative to the repository root when it is inside it.
func (h *harness) rel(p string) string {
	if r, err := filepath.Rel(h.root, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

// fail records a contender's failure in the report and the log.
func (h *harness) fail(what string, err error) {
	msg := fmt.Sprintf("%s: %v", what, err)
	h.logf("FAILED %s", msg)
	h.rep.Errors = append(h.rep.Errors, msg)
}
