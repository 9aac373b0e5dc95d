// Command pipebench is the side-by-side pipeline benchmark: the same task
// (CSV → filter → standardize → one_hot → Parquet) run by Kiln
// (`kiln pipeline run`), by DuckDB (bench/peers/duckdb, the Go binding)
// and by pandas (bench/peers/pandas, Debian's python3-pandas), each as a
// separate process pinned to the same cores, on the same generated file.
//
// It generates a seeded CSV (8 mixed columns; cached under
// bench/out/pipebench/data), runs the contenders interleaved --runs times,
// measures wall time, user+system CPU and peak RSS (wait4's rusage), reads
// every output back with DuckDB and compares row counts and per-column
// checksums, then runs Kiln alone on an input of --mem-bytes (2 GiB: 4 ×
// the 512 MiB memory target) for its peak RSS. It prints a table with the
// issue's ratios and writes them as the "pipelines" section of
// docs/benchmarks.md (--quick: bench/out/benchmarks.md).
//
//	go run ./bench/cmd/pipebench [--quick] [--kiln BINARY] [--rows N] [--runs N]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kilnai/kiln/bench/internal/machine"
	"github.com/kilnai/kiln/bench/internal/mdsection"
)

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "pipebench:", err)
		os.Exit(1)
	}
}

// options are the harness's settings.
type options struct {
	quick      bool
	doc        string
	kiln       string
	rows       int64
	memBytes   int64
	runs       int
	seed       uint64
	cpus       string
	only       map[string]bool
	quiet      float64
	quietWait  time.Duration
	keep       bool
	memPeers   bool
	python     string
	outDir     string
	skipMemory bool
}

func mainErr() error {
	var (
		o        options
		only     string
		memBytes string
	)
	flag.BoolVar(&o.quick, "quick", false, "small sizes for iteration (200k rows, 256 MiB memory input, 1 run); writes bench/out/benchmarks.md")
	flag.StringVar(&o.doc, "doc", "", "report to write the pipelines section into (default docs/benchmarks.md; quick: bench/out/benchmarks.md)")
	flag.StringVar(&o.kiln, "kiln", "", "kiln binary to measure (default: built from the working tree into the work directory's bin/)")
	flag.Int64Var(&o.rows, "rows", 0, "rows of the main input (default 5000000; quick 200000)")
	flag.StringVar(&memBytes, "mem-bytes", "", "size of the memory run's input, e.g. 2GiB (default 4 × 512 MiB; quick 256MiB; 0 skips the memory run)")
	flag.IntVar(&o.runs, "runs", 0, "measured runs per contender, interleaved; the median is reported (default 3; quick 1)")
	flag.Uint64Var(&o.seed, "seed", 1, "generator seed")
	flag.StringVar(&o.cpus, "cpus", "", "CPU list every contender is pinned to with taskset (default the first min(nproc, 2) CPUs)")
	flag.StringVar(&only, "only", "", "comma-separated contenders (kiln,duckdb,pandas); default all")
	flag.Float64Var(&o.quiet, "quiet", 0.3, "before each run, wait until other processes use fewer than this many cores")
	flag.DurationVar(&o.quietWait, "quiet-wait", 0, "longest wait for quiet before each run (default 30s; quick 2s)")
	flag.BoolVar(&o.keep, "keep", false, "keep every output file (default: only the last of each contender)")
	flag.BoolVar(&o.memPeers, "mem-duckdb", true, "also run DuckDB once on the memory run's input, for comparison")
	flag.StringVar(&o.python, "python", "/usr/bin/python3", "python3 with pandas (Debian python3-pandas)")
	flag.StringVar(&o.outDir, "out", filepath.Join("bench", "out", "pipebench"), "work directory (generated data is cached in its data/)")
	render := flag.String("render", "", "only rewrite the report from this results.json (as written into the work directory)")
	flag.Parse()

	if _, err := os.Stat("go.mod"); err != nil {
		return errors.New("run from the repository root (go run ./bench/cmd/pipebench)")
	}
	if err := o.defaults(only, memBytes); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h := &harness{o: o, logf: func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, "pipebench: "+f+"\n", a...)
	}}
	var res *Results
	var err error
	if *render != "" {
		res, err = loadResults(*render)
	} else {
		res, err = h.run(ctx)
	}
	if err != nil {
		return err
	}
	md := renderMarkdown(res)
	fmt.Println(renderText(res))
	if err := mdsection.Replace(o.doc, "pipelines", md); err != nil {
		return err
	}
	h.logf("wrote the pipelines section of %s", o.doc)
	return nil
}

func (o *options) defaults(only, memBytes string) error {
	if o.doc == "" {
		o.doc = filepath.Join("docs", "benchmarks.md")
		if o.quick {
			o.doc = filepath.Join("bench", "out", "benchmarks.md")
		}
	}
	if o.rows == 0 {
		o.rows = 5_000_000
		if o.quick {
			o.rows = 200_000
		}
	}
	if o.rows < 0 {
		return fmt.Errorf("--rows %d: want a positive count", o.rows)
	}
	switch memBytes {
	case "":
		o.memBytes = 4 * memTarget
		if o.quick {
			o.memBytes = 256 << 20
		}
	default:
		n, err := parseSize(memBytes)
		if err != nil {
			return fmt.Errorf("--mem-bytes: %w", err)
		}
		o.memBytes = n
	}
	o.skipMemory = o.memBytes == 0
	if o.runs == 0 {
		o.runs = 3
		if o.quick {
			o.runs = 1
		}
	}
	if o.runs < 0 {
		return fmt.Errorf("--runs %d: want a positive count", o.runs)
	}
	if o.quietWait == 0 {
		o.quietWait = 30 * time.Second
		if o.quick {
			o.quietWait = 2 * time.Second
		}
	}
	if o.cpus == "" {
		n := min(runtime.NumCPU(), 2)
		ids := make([]string, n)
		for i := range ids {
			ids[i] = strconv.Itoa(i)
		}
		o.cpus = strings.Join(ids, ",")
	}
	if _, err := cpuCount(o.cpus); err != nil {
		return fmt.Errorf("--cpus: %w", err)
	}
	o.only = map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if !slices.Contains(contenderNames, n) {
			return fmt.Errorf("--only: unknown contender %q (want %s)", n, strings.Join(contenderNames, ", "))
		}
		o.only[n] = true
	}
	return nil
}

// memTarget is the bound on Kiln's peak RSS; the memory run's
// input is 4 × larger.
const memTarget = 512 << 20

var contenderNames = []string{"kiln", "duckdb", "pandas"}

// parseSize reads a byte size: 2GiB, 512MiB, 64KiB, 1GB, 1000 (bytes).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	// !(v >= 0) also refuses NaN.
	if err != nil || !(v >= 0) || v*float64(mult) >= math.MaxInt64 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return int64(v * float64(mult)), nil
}

// cpuCount counts the CPUs of a taskset list such as 0,1 or 0-3,6.
func cpuCount(list string) (int, error) {
	n := 0
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return 0, fmt.Errorf("bad CPU list %q", list)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0, fmt.Errorf("bad CPU list %q", list)
			}
		}
		n += b - a + 1
	}
	return n, nil
}

// harness runs one benchmark.
type harness struct {
	o      options
	logf   func(string, ...any)
	work   string
	duckdb string // the DuckDB peer binary
	kiln   string
	r      *runner
}

func (h *harness) run(ctx context.Context) (*Results, error) {
	o := h.o
	threads, _ := cpuCount(o.cpus)
	res := &Results{
		Date:    time.Now().UTC().Format("2006-01-02 15:04 MST"),
		Command: commandLine(),
		Machine: machine.Read(),
		Settings: Settings{
			Rows: o.rows, Runs: o.runs, Seed: o.seed, CPUs: o.cpus, Threads: threads, Quick: o.quick,
			QuietLimit: o.quiet,
		},
		Versions: map[string]string{"go": runtime.Version()},
	}
	h.work = filepath.Join(o.outDir, "work")
	if err := os.RemoveAll(h.work); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(h.work, 0o755); err != nil {
		return nil, err
	}
	h.r = &runner{dir: h.work, cpus: o.cpus, logf: h.logf}
	if err := h.build(ctx); err != nil {
		return nil, err
	}
	h.versions(ctx, res)

	input, st, err := ensureData(filepath.Join(o.outDir, "data"), o.seed, o.rows, 0, h.logf)
	if err != nil {
		return nil, err
	}
	res.Settings.InputBytes, res.Settings.Kept = st.Bytes, st.Kept
	res.Settings.Input = input

	contenders := h.contenders(res)
	if err := warm(input); err != nil {
		return nil, err
	}
	for run := 1; run <= o.runs; run++ {
		for _, c := range contenders {
			if c.Skipped != "" {
				continue
			}
			h.measureOnce(ctx, c, run, input, st)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
	}
	h.checkAgainstReference(contenders)
	res.Contenders = contenders

	if !o.skipMemory && h.selected("kiln") {
		mem, err := h.memoryRun(ctx)
		if err != nil {
			return nil, err
		}
		res.Memory = mem
	}
	res.Machine.LoadEnd = machine.LoadAvg()
	if b, err := json.MarshalIndent(res, "", "  "); err == nil {
		_ = os.WriteFile(filepath.Join(o.outDir, "results.json"), append(b, '\n'), 0o644)
	}
	return res, nil
}

func (h *harness) selected(name string) bool { return len(h.o.only) == 0 || h.o.only[name] }

// build builds the DuckDB peer (always: it also checks every output) and
// Kiln from the working tree when no binary was given.
func (h *harness) build(ctx context.Context) error {
	bin, err := filepath.Abs(filepath.Join(h.o.outDir, "bin"))
	if err != nil {
		return err
	}
	h.duckdb = filepath.Join(bin, "duckdb-peer")
	h.logf("building the DuckDB peer (cgo; the first build takes minutes)")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", h.duckdb, ".")
	cmd.Dir = filepath.Join("bench", "peers", "duckdb")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the DuckDB peer: %w\n%s", err, out)
	}
	h.kiln = h.o.kiln
	if h.kiln == "" {
		// Built from the working tree every time: a bin/kiln left by an
		// earlier build may be older than the code being measured.
		h.kiln = filepath.Join(bin, "kiln")
		h.logf("building kiln into %s", h.kiln)
		// Stamped with the version as make build stamps it.
		version := "dev"
		if out, err := exec.CommandContext(ctx, "git", "describe", "--tags", "--always", "--dirty").Output(); err == nil {
			version = strings.TrimSpace(string(out))
		}
		ldflags := "-X github.com/kilnai/kiln/internal/app.Version=" + version
		if out, err := exec.CommandContext(ctx, "go", "build", "-ldflags", ldflags, "-o", h.kiln, "./cmd/kiln").CombinedOutput(); err != nil {
			return fmt.Errorf("building kiln: %w\n%s", err, out)
		}
	}
	if _, err := os.Stat(h.kiln); err != nil && h.selected("kiln") {
		return fmt.Errorf("--kiln: %w", err)
	}
	return nil
}

func (h *harness) versions(ctx context.Context, res *Results) {
	if out, err := exec.CommandContext(ctx, h.kiln, "version").Output(); err == nil {
		res.Versions["kiln"] = firstLine(string(out))
	}
	if out, err := exec.CommandContext(ctx, h.duckdb, "version").Output(); err == nil {
		res.Versions["duckdb"] = firstLine(string(out)) + " (github.com/duckdb/duckdb-go/v2 v2.10506.0)"
	}
	if out, err := exec.CommandContext(ctx, h.o.python, "-c",
		"import sys, pandas, importlib.util as u; print(sys.version.split()[0], pandas.__version__, next((n for n in ('pyarrow', 'fastparquet') if u.find_spec(n)), '-'))").Output(); err == nil {
		if f := strings.Fields(firstLine(string(out))); len(f) == 3 {
			res.Versions["python"], res.Versions["pandas"], res.Versions["pandas_parquet_engine"] = f[0], f[1], f[2]
		}
	}
}

// contenders lists the selected contenders; a missing tool marks its
// contender skipped with the reason (and how to install it).
func (h *harness) contenders(res *Results) []*Contender {
	var cs []*Contender
	if h.selected("kiln") {
		cs = append(cs, &Contender{Name: "kiln", Label: "Kiln `pipeline run`"})
	}
	if h.selected("duckdb") {
		cs = append(cs, &Contender{Name: "duckdb", Label: "DuckDB " + strings.Fields(res.Versions["duckdb"] + " ?")[0] + " (Go binding, one COPY statement)"})
	}
	if h.selected("pandas") {
		c := &Contender{Name: "pandas", Label: "pandas " + res.Versions["pandas"]}
		if res.Versions["pandas"] == "" {
			c.Skipped = fmt.Sprintf("%s cannot import pandas: install it with `apt-get install -y python3-pandas` (scripts/bench/setup.sh does)", h.o.python)
			h.logf("skipping pandas: %s", c.Skipped)
		}
		cs = append(cs, c)
	}
	return cs
}

// warm reads the input once so that every contender starts with it in the
// page cache (the runs are warm-cache runs).
func warm(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// measureOnce runs contender c once on input and records the run; the
// first successful output is read back for the correctness check.
func (h *harness) measureOnce(ctx context.Context, c *Contender, run int, input string, st GenStats) {
	other := waitQuiet(ctx, h.o.quiet, h.o.quietWait)
	if other >= h.o.quiet {
		h.logf("machine not quiet before %s run %d: other processes use %.2f cores", c.Name, run, other)
	}
	name := fmt.Sprintf("%s-%d", c.Name, run)
	u, output, err := h.execute(ctx, c.Name, name, input)
	if err != nil {
		h.logf("%s run %d failed: %v", c.Name, run, err)
		c.Failures = append(c.Failures, err.Error())
		return
	}
	c.Runs = append(c.Runs, u)
	h.logf("%s run %d: %.2fs wall, %.2fs CPU, %s peak RSS, other load %.2f cores",
		c.Name, run, u.Wall.Seconds(), u.CPU().Seconds(), humanBytes(u.MaxRSS), u.OtherCores)
	if size, err := fileSize(output); err == nil {
		c.OutputBytes = size
	}
	c.OutputFormat = strings.TrimPrefix(filepath.Ext(output), ".")
	if c.Summary == nil {
		s, err := readBack(ctx, h.duckdb, output)
		if err != nil {
			c.Problems = append(c.Problems, err.Error())
		} else {
			c.Summary = &s
			if s.Rows != st.Kept {
				c.Problems = append(c.Problems, fmt.Sprintf("%d rows out, the filter keeps %d", s.Rows, st.Kept))
			}
		}
	}
	if !h.o.keep && run < h.o.runs {
		_ = os.RemoveAll(output)
	}
}

// execute runs one contender on input; it returns the usage and the
// output path.
func (h *harness) execute(ctx context.Context, contender, name, input string) (Usage, string, error) {
	threads, _ := cpuCount(h.o.cpus)
	goEnv := []string{"GOMAXPROCS=" + strconv.Itoa(threads)}
	switch contender {
	case "kiln":
		out := filepath.Join(h.work, name+".parquet")
		spec := filepath.Join(h.work, name+".yaml")
		f, err := os.Create(spec)
		if err != nil {
			return Usage{}, "", err
		}
		err = WriteKilnSpec(f, kilnPaths{Input: input, Output: out})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return Usage{}, "", err
		}
		u, _, err := h.r.measure(ctx, name, goEnv, kilnArgs(h.kiln, spec, filepath.Join(h.work, "kiln-data"))...)
		return u, out, err
	case "duckdb":
		out := filepath.Join(h.work, name+".parquet")
		u, _, err := h.r.measure(ctx, name, goEnv, append([]string{h.duckdb}, duckdbArgs(input, out, threads)...)...)
		return u, out, err
	case "pandas":
		base := filepath.Join(h.work, name)
		env := []string{"OMP_NUM_THREADS=" + strconv.Itoa(threads), "OPENBLAS_NUM_THREADS=" + strconv.Itoa(threads)}
		argv := append([]string{h.o.python, filepath.Join("bench", "peers", "pandas", "task.py")}, pandasArgs(input, base)...)
		u, stdout, err := h.r.measure(ctx, name, env, argv...)
		if err != nil {
			return u, "", err
		}
		var pr struct {
			Output string `json:"output"`
		}
		if err := json.Unmarshal(stdout, &pr); err != nil || pr.Output == "" {
			return u, "", fmt.Errorf("pandas peer: unexpected output %q", stdout)
		}
		return u, pr.Output, nil
	}
	return Usage{}, "", fmt.Errorf("unknown contender %q", contender)
}

// kilnArgs is Kiln's command line for a spec: no result cache (every run
// does the work), runs recorded in a data directory of the work dir,
// progress as log lines (stderr is a file).
func kilnArgs(kiln, spec, dataDir string) []string {
	return []string{kiln, "pipeline", "run", spec, "--no-cache", "--data-dir", dataDir, "--progress", "log", "--log-level", "warn"}
}

// checkAgainstReference compares every contender's read-back with
// DuckDB's (else the first contender's).
func (h *harness) checkAgainstReference(cs []*Contender) {
	var ref *Contender
	for _, c := range cs {
		if c.Summary != nil && (ref == nil || c.Name == "duckdb") {
			ref = c
		}
	}
	if ref == nil {
		return
	}
	for _, c := range cs {
		if c == ref || c.Summary == nil {
			continue
		}
		for _, d := range compareSummaries(*ref.Summary, *c.Summary) {
			c.Problems = append(c.Problems, "vs "+ref.Name+": "+d)
		}
		c.CheckedAgainst = ref.Name
	}
}

// memoryRun runs Kiln (and, with --mem-duckdb, DuckDB) once on the large
// input and checks the row count of the output.
func (h *harness) memoryRun(ctx context.Context) (*MemoryRun, error) {
	input, st, err := ensureData(filepath.Join(h.o.outDir, "data"), h.o.seed, 0, h.o.memBytes, h.logf)
	if err != nil {
		return nil, err
	}
	m := &MemoryRun{Rows: st.Rows, Bytes: st.Bytes, Kept: st.Kept, Target: memTarget}
	names := []string{"kiln"}
	if h.o.memPeers && h.selected("duckdb") {
		names = append(names, "duckdb")
	}
	for _, n := range names {
		waitQuiet(ctx, h.o.quiet, h.o.quietWait)
		u, output, err := h.execute(ctx, n, "mem-"+n, input)
		r := MemoryResult{Name: n, Usage: u}
		if err != nil {
			r.Problem = err.Error()
		} else if s, err := readBack(ctx, h.duckdb, output); err != nil {
			r.Problem = err.Error()
		} else if s.Rows != st.Kept {
			r.Problem = fmt.Sprintf("%d rows out, the filter keeps %d", s.Rows, st.Kept)
		}
		h.logf("memory run %s: %.2fs wall, %s peak RSS %s", n, u.Wall.Seconds(), humanBytes(u.MaxRSS), r.Problem)
		if !h.o.keep {
			_ = os.RemoveAll(output)
		}
		m.Results = append(m.Results, r)
	}
	return m, nil
}

func commandLine() string {
	args := make([]string, 0, len(os.Args))
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " \t'\"") {
			a = strconv.Quote(a)
		}
		args = append(args, a)
	}
	return strings.TrimSpace("go run ./bench/cmd/pipebench " + strings.Join(args, " "))
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}

// loadResults reads a results.json written by an earlier run.
func loadResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(res.Contenders) == 0 {
		return nil, fmt.Errorf("%s: no contenders", path)
	}
	return &res, nil
}
