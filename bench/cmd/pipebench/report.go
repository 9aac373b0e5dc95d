package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kilnai/kiln/bench/internal/machine"
)

// Results is everything one benchmark run measured.
type Results struct {
	Date       string            `json:"date"`
	Command    string            `json:"command"`
	Machine    Machine           `json:"machine"`
	Versions   map[string]string `json:"versions"`
	Settings   Settings          `json:"settings"`
	Contenders []*Contender      `json:"contenders"`
	Memory     *MemoryRun        `json:"memory,omitempty"`
}

// Settings of the run.
type Settings struct {
	Input      string  `json:"input"`
	Rows       int64   `json:"rows"`
	InputBytes int64   `json:"input_bytes"`
	Kept       int64   `json:"kept"`
	Runs       int     `json:"runs"`
	Seed       uint64  `json:"seed"`
	CPUs       string  `json:"cpus"`
	Threads    int     `json:"threads"`
	Quick      bool    `json:"quick"`
	QuietLimit float64 `json:"quiet_limit"`
}

// Contender is one tool's measurements on the main input.
type Contender struct {
	Name           string   `json:"name"`
	Label          string   `json:"label"`
	Skipped        string   `json:"skipped,omitempty"`
	Runs           []Usage  `json:"runs"`
	Failures       []string `json:"failures,omitempty"`
	OutputBytes    int64    `json:"output_bytes"`
	OutputFormat   string   `json:"output_format"`
	Summary        *Summary `json:"summary,omitempty"`
	CheckedAgainst string   `json:"checked_against,omitempty"`
	Problems       []string `json:"problems,omitempty"`
}

// Median is the contender's median run (wall, CPU and RSS medians taken
// separately).
func (c *Contender) Median() (u Usage, ok bool) {
	if len(c.Runs) == 0 {
		return Usage{}, false
	}
	var walls, cpus []time.Duration
	var rss []int64
	other := 0.0
	for _, r := range c.Runs {
		walls = append(walls, r.Wall)
		cpus = append(cpus, r.CPU())
		rss = append(rss, r.MaxRSS)
		other = max(other, r.OtherCores)
	}
	u = Usage{Wall: median(walls), User: median(cpus), MaxRSS: medianInt(rss), OtherCores: other}
	return u, true
}

// minWall is the fastest run.
func (c *Contender) minWall() time.Duration {
	var m time.Duration
	for i, r := range c.Runs {
		if i == 0 || r.Wall < m {
			m = r.Wall
		}
	}
	return m
}

// MemoryRun is the large-input run.
type MemoryRun struct {
	Rows    int64          `json:"rows"`
	Bytes   int64          `json:"bytes"`
	Kept    int64          `json:"kept"`
	Target  int64          `json:"target_bytes"`
	Results []MemoryResult `json:"results"`
}

// MemoryResult is one tool's large-input run.
type MemoryResult struct {
	Name    string `json:"name"`
	Usage   Usage  `json:"usage"`
	Problem string `json:"problem,omitempty"`
}

// Ratio is one of the targets.
type Ratio struct {
	What   string
	Value  float64
	Target string
	Pass   bool
	Known  bool // false when a contender needed for it did not finish
}

// ratios computes the three targets.
func ratios(res *Results) []Ratio {
	// Same input rows for everyone: the rows/s ratio is the inverse ratio
	// of the median wall times.
	wall := map[string]float64{}
	for _, c := range res.Contenders {
		if u, ok := c.Median(); ok {
			wall[c.Name] = u.Wall.Seconds()
		}
	}
	kd, kp := 0.0, 0.0
	if wall["kiln"] > 0 {
		kd = wall["duckdb"] / wall["kiln"]
		kp = wall["pandas"] / wall["kiln"]
	}
	out := []Ratio{
		{What: "Kiln ÷ DuckDB rows/s", Value: kd, Target: "≥ 1.0", Pass: kd >= 1.0, Known: kd > 0},
		{What: "Kiln ÷ pandas rows/s", Value: kp, Target: "≥ 10", Pass: kp >= 10, Known: kp > 0},
	}
	mem := Ratio{What: fmt.Sprintf("Kiln peak RSS on the %s input (MiB)", "large"), Target: "≤ 512"}
	if res.Memory != nil {
		mem.What = fmt.Sprintf("Kiln peak RSS on the %s input (MiB)", humanBytes(res.Memory.Bytes))
		for _, r := range res.Memory.Results {
			if r.Name == "kiln" && r.Problem == "" {
				mem.Value = float64(r.Usage.MaxRSS) / (1 << 20)
				mem.Known = true
				mem.Pass = r.Usage.MaxRSS <= res.Memory.Target
			}
		}
	}
	return append(out, mem)
}

func passMark(r Ratio) string {
	switch {
	case !r.Known:
		return "not measured"
	case r.Pass:
		return "PASS"
	default:
		return "FAIL"
	}
}

func mib(b int64) string { return fmt.Sprintf("%.0f", float64(b)/(1<<20)) }

// renderText is the table printed on stdout.
func renderText(res *Results) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\npipelines: %d rows (%s) → %d kept, median of %d runs, %s thread(s) on CPUs %s\n",
		res.Settings.Rows, humanBytes(res.Settings.InputBytes), res.Settings.Kept, res.Settings.Runs, strconv.Itoa(res.Settings.Threads), res.Settings.CPUs)
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "contender\twall s\tmin s\trows/s\tCPU s\tpeak RSS MiB\toutput\tcheck")
	for _, c := range res.Contenders {
		u, ok := c.Median()
		if !ok {
			why := c.Skipped
			if why == "" && len(c.Failures) > 0 {
				why = "failed: " + firstLine(c.Failures[0])
			}
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t%s\n", c.Name, why)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.0f\t%.2f\t%s\t%s %s\t%s\n", c.Name, u.Wall.Seconds(), c.minWall().Seconds(),
			rowsPerSec(res.Settings.Rows, u.Wall), u.User.Seconds(), mib(u.MaxRSS), humanBytes(c.OutputBytes), c.OutputFormat, checkText(c))
	}
	tw.Flush()
	if m := res.Memory; m != nil {
		fmt.Fprintf(&b, "memory run: %d rows (%s)\n", m.Rows, humanBytes(m.Bytes))
		for _, r := range m.Results {
			fmt.Fprintf(&b, "  %s: %.2f s wall, %s MiB peak RSS %s\n", r.Name, r.Usage.Wall.Seconds(), mib(r.Usage.MaxRSS), r.Problem)
		}
	}
	for _, r := range ratios(res) {
		fmt.Fprintf(&b, "%s: %.2f (target %s) %s\n", r.What, r.Value, r.Target, passMark(r))
	}
	return b.String()
}

func checkText(c *Contender) string {
	switch {
	case len(c.Problems) > 0:
		return fmt.Sprintf("%d problem(s): %s", len(c.Problems), c.Problems[0])
	case c.Summary == nil:
		return "not checked"
	case c.CheckedAgainst != "":
		return "ok (= " + c.CheckedAgainst + ")"
	default:
		return "ok (reference)"
	}
}

// renderMarkdown is the "pipelines" section of docs/benchmarks.md.
func renderMarkdown(res *Results) string {
	var b strings.Builder
	s := res.Settings
	b.WriteString("## Pipelines: CSV → filter → standardize → one_hot → Parquet\n\n")
	fmt.Fprintf(&b, "Measured %s by `%s`", res.Date, res.Command)
	if s.Quick {
		b.WriteString(" (quick mode: small sizes, indicative only)")
	}
	b.WriteString(".\n\n")
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %.1f GiB RAM, Linux %s; 1-minute load %s at the start, %s at the end. ",
		res.Machine.CPUs, res.Machine.CPUModel, res.Machine.MemoryGiB, res.Machine.Kernel, res.Machine.LoadStart, res.Machine.LoadEnd)
	b.WriteString("Versions: ")
	for i, k := range []struct{ key, label string }{
		{"kiln", "Kiln"}, {"go", "Go"}, {"duckdb", "DuckDB"}, {"python", "Python"}, {"pandas", "pandas"}, {"pandas_parquet_engine", "pandas Parquet engine"},
	} {
		if i > 0 {
			b.WriteString(", ")
		}
		v := res.Versions[k.key]
		if v == "" || v == "-" {
			v = "none"
		}
		fmt.Fprintf(&b, "%s %s", k.label, strings.TrimPrefix(strings.TrimPrefix(v, "kiln "), "go"))
	}
	b.WriteString(".\n\n")
	fmt.Fprintf(&b, "**Task**, the same for every contender: read a generated CSV (seed %d, %d rows, %s, 8 columns: "+
		"id int64, ts timestamp text, qty int64, country (12 values), amount float64, active bool, note short string, score float64) "+
		"with the same explicit schema; keep the rows where `%s` (%d rows); z-score `%s` with the mean and the population "+
		"standard deviation (divisor n) of the kept rows; replace `%s` by one int8 indicator column per category of a fixed "+
		"sorted list; write Parquet with snappy compression. Every contender is a separate process pinned with `taskset` to "+
		"CPUs %s with a budget of %d threads (Kiln `GOMAXPROCS=%d`; DuckDB `SET threads=%d`; pandas is single-threaded). "+
		"Warm page cache (the input is read once before the runs). Runs per contender: %d, interleaved; the table shows the median "+
		"(rows/s = input rows ÷ median wall time, process start-up included), the fastest run, user+system CPU and peak RSS "+
		"(`wait4` rusage). Every output is read back with DuckDB and compared with DuckDB's: row count, and per column the "+
		"non-null count and sum, sum of squares, min and max (numbers, relative tolerance 1e-7) or an exact checksum "+
		"(timestamps, strings, booleans).\n\n",
		s.Seed, s.Rows, humanBytes(s.InputBytes), Filter, s.Kept, strings.Join(Standardized, "` and `"), OneHot,
		s.CPUs, s.Threads, s.Threads, s.Threads, s.Runs)

	b.WriteString("| contender | median wall s | fastest s | rows/s | CPU s (user+sys) | peak RSS MiB | output | max other load (cores) | output check |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---|---:|---|\n")
	for _, c := range res.Contenders {
		u, ok := c.Median()
		if !ok {
			why := c.Skipped
			if why == "" && len(c.Failures) > 0 {
				why = "failed: " + mdEscape(firstLine(c.Failures[0]))
			}
			fmt.Fprintf(&b, "| %s | — | — | — | — | — | — | — | %s |\n", c.Label, why)
			continue
		}
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %s | %.2f | %s | %s %s | %.2f | %s |\n", c.Label, u.Wall.Seconds(), c.minWall().Seconds(),
			thousands(rowsPerSec(s.Rows, u.Wall)), u.User.Seconds(), mib(u.MaxRSS), humanBytes(c.OutputBytes), c.OutputFormat,
			u.OtherCores, mdEscape(checkText(c)))
	}
	b.WriteString("\n")
	if m := res.Memory; m != nil {
		fmt.Fprintf(&b, "**Bounded memory**: the same task on a larger input from the same generator: %d rows, %s "+
			"(≥ 4 × the 512 MiB target), one run each, same settings.\n\n", m.Rows, humanBytes(m.Bytes))
		b.WriteString("| contender | wall s | rows/s | CPU s | peak RSS MiB | output check |\n|---|---:|---:|---:|---:|---|\n")
		for _, r := range m.Results {
			check := "ok (" + strconv.FormatInt(m.Kept, 10) + " rows)"
			if r.Problem != "" {
				check = mdEscape(firstLine(r.Problem))
			}
			fmt.Fprintf(&b, "| %s | %.2f | %s | %.2f | %s | %s |\n", r.Name, r.Usage.Wall.Seconds(),
				thousands(rowsPerSec(m.Rows, r.Usage.Wall)), r.Usage.CPU().Seconds(), mib(r.Usage.MaxRSS), check)
		}
		b.WriteString("\n")
	}
	if other := maxOtherLoad(res); other > s.QuietLimit {
		fmt.Fprintf(&b, "Other processes kept up to %.2f cores of this %d-CPU machine busy during the runs (column *max other load*), "+
			"so the wall times, and the rows/s derived from them, are pessimistic for every contender; CPU seconds are the "+
			"steadier comparison.\n\n", other, res.Machine.CPUs)
	}
	if k, d := cpuPerRow(res, "kiln"), cpuPerRow(res, "duckdb"); k > 0 && d > 0 {
		fmt.Fprintf(&b, "CPU per million input rows: Kiln %.2f s, DuckDB %.2f s (Kiln ÷ DuckDB %.2f)", k, d, k/d)
		if p := cpuPerRow(res, "pandas"); p > 0 {
			fmt.Fprintf(&b, ", pandas %.2f s", p)
		}
		b.WriteString(".\n\n")
	}
	b.WriteString("| target (issue #6) | measured | target | result |\n|---|---:|---|---|\n")
	for _, r := range ratios(res) {
		v := "—"
		if r.Known {
			v = fmt.Sprintf("%.2f", r.Value)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.What, v, r.Target, passMark(r))
	}
	b.WriteString("\n")
	if m := res.Memory; m != nil && len(m.Results) > 1 {
		b.WriteString("DuckDB runs with its default `memory_limit` (80 % of RAM) in the memory run: its peak RSS shows what it chose to use, not what it needs.\n")
	}
	for _, c := range res.Contenders {
		if c.Name == "pandas" && c.OutputFormat == "csv" {
			b.WriteString("pandas wrote CSV, not Parquet: no Parquet engine (pyarrow or fastparquet) is installable from Debian " +
				"on this machine, so its time includes `to_csv` instead of `to_parquet`.\n")
		}
		for _, p := range c.Problems {
			fmt.Fprintf(&b, "- %s: %s\n", c.Name, mdEscape(p))
		}
	}
	return b.String()
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// thousands formats a rate with thousands separators.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Machine describes where the benchmark ran.
type Machine = machine.Info

// maxOtherLoad is the most cores other processes kept busy during any
// measured run.
func maxOtherLoad(res *Results) float64 {
	m := 0.0
	for _, c := range res.Contenders {
		for _, r := range c.Runs {
			m = max(m, r.OtherCores)
		}
	}
	if res.Memory != nil {
		for _, r := range res.Memory.Results {
			m = max(m, r.Usage.OtherCores)
		}
	}
	return m
}

// cpuPerRow is a contender's median CPU seconds per million input rows
// (0 when it has no run).
func cpuPerRow(res *Results, name string) float64 {
	for _, c := range res.Contenders {
		if u, ok := c.Median(); ok && c.Name == name && res.Settings.Rows > 0 {
			return u.CPU().Seconds() / (float64(res.Settings.Rows) / 1e6)
		}
	}
	return 0
}
