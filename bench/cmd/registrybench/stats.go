package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// sample is the latencies of one query kind.
type sample struct {
	kind string
	desc string
	durs []time.Duration
}

// summary is a sample's distribution.
type summary struct {
	Kind, Desc         string
	N                  int
	P50, P90, P99, Max time.Duration
	Mean               time.Duration
}

// percentile returns the q-quantile (0 < q <= 1) of sorted by the
// nearest-rank method: the smallest value with at least q·n values at or
// below it.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

func summarize(s sample) summary {
	d := slices.Clone(s.durs)
	slices.Sort(d)
	out := summary{Kind: s.kind, Desc: s.desc, N: len(d)}
	if len(d) == 0 {
		return out
	}
	var total time.Duration
	for _, x := range d {
		total += x
	}
	out.P50, out.P90, out.P99, out.Max = percentile(d, 0.50), percentile(d, 0.90), percentile(d, 0.99), d[len(d)-1]
	out.Mean = total / time.Duration(len(d))
	return out
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }

// meta describes the run for the report.
type meta struct {
	Date     time.Time
	Machine  string
	Command  string
	Models   int
	Versions int
	Target   time.Duration
	Populate time.Duration
	Load     string // 1-minute load average at the start ("unknown" if unreadable)
}

// writeMarkdown writes the report as a Markdown fragment.
func writeMarkdown(w io.Writer, m meta, rows []summary) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## Registry search and list (SQLite)\n\n")
	fmt.Fprintf(&b, "Measured %s on %s with `%s`: a SQLite registry with %d versions over %d models (tags, metrics, params, stages, aliases; populated through the registry service in %s), then each query kind run repeatedly through `registry.Service` (filter parsing, keyset pagination, whole objects with tags, metrics and aliases). Latencies in milliseconds; target p99 ≤ %s. The load average when the run started was %s.\n\n",
		m.Date.UTC().Format("2006-01-02 15:04 MST"), m.Machine, m.Command, m.Versions, m.Models, m.Populate.Round(time.Millisecond), m.Target, m.Load)
	fmt.Fprintf(&b, "| query | what | n | p50 | p90 | p99 | max | p99 ≤ target |\n|---|---|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rows {
		ok := "yes"
		if r.P99 > m.Target {
			ok = "**no**"
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %s |\n", r.Kind, strings.ReplaceAll(r.Desc, "|", `\|`), r.N, ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max), ok)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeText writes the report as an aligned table for a terminal.
func writeText(w io.Writer, rows []summary, target time.Duration) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%-18s %6s %9s %9s %9s %9s  %s\n", "query", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "p99<=target")
	for _, r := range rows {
		ok := "yes"
		if r.P99 > target {
			ok = "NO"
		}
		fmt.Fprintf(&b, "%-18s %6d %9s %9s %9s %9s  %s\n", r.Kind, r.N, ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max), ok)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
