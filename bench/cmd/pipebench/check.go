package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"sort"
)

// Summary is the DuckDB peer's read-back of one output file
// (bench/peers/duckdb, `check`): row count and order-independent
// checksums per column.
type Summary struct {
	Path    string          `json:"path"`
	Rows    int64           `json:"rows"`
	Columns []ColumnSummary `json:"columns"`
}

// ColumnSummary is one column's checksums: numeric columns have Sum,
// SumSq, Min and Max; bool, timestamp and string columns have Exact (count
// of true values, sum of epoch microseconds, sum of value hashes).
type ColumnSummary struct {
	Name  string  `json:"name"`
	Type  string  `json:"type"`
	Class string  `json:"class"`
	Count int64   `json:"count"`
	Sum   float64 `json:"sum"`
	SumSq float64 `json:"sum_sq"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	Exact string  `json:"exact,omitempty"`
}

// readBack runs the DuckDB peer's check on path.
func readBack(ctx context.Context, duckdb, path string) (Summary, error) {
	out, err := exec.CommandContext(ctx, duckdb, "check", path).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return Summary{}, fmt.Errorf("reading back %s: %w: %s", path, err, ee.Stderr)
		}
		return Summary{}, fmt.Errorf("reading back %s: %w", path, err)
	}
	var s []Summary
	if err := json.Unmarshal(out, &s); err != nil || len(s) != 1 {
		return Summary{}, fmt.Errorf("reading back %s: bad checker output %q", path, out)
	}
	return s[0], nil
}

// closeEnough compares two float checksums over count values: a relative
// tolerance for large values and an absolute one, growing with the count,
// for sums that should be near zero (a z-scored column sums to ~0).
func closeEnough(a, b float64, count int64) bool {
	if a == b {
		return true
	}
	if math.IsNaN(a) || math.IsNaN(b) {
		return false
	}
	tol := 1e-7*math.Max(math.Abs(a), math.Abs(b)) + 1e-9*float64(max(count, 1))
	return math.Abs(a-b) <= tol
}

// compareSummaries lists how got differs from want (nil when they agree):
// the row count, the set of column names, and per column its class, the
// non-null count and the checksums.
func compareSummaries(want, got Summary) []string {
	var diffs []string
	if want.Rows != got.Rows {
		diffs = append(diffs, fmt.Sprintf("rows: %d, want %d", got.Rows, want.Rows))
	}
	gotCols := map[string]ColumnSummary{}
	for _, c := range got.Columns {
		gotCols[c.Name] = c
	}
	seen := map[string]bool{}
	for _, w := range want.Columns {
		seen[w.Name] = true
		g, ok := gotCols[w.Name]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("column %s missing", w.Name))
			continue
		}
		if g.Class != w.Class {
			diffs = append(diffs, fmt.Sprintf("column %s: %s (%s), want %s (%s)", w.Name, g.Type, g.Class, w.Type, w.Class))
			continue
		}
		if g.Count != w.Count {
			diffs = append(diffs, fmt.Sprintf("column %s: %d non-null values, want %d", w.Name, g.Count, w.Count))
		}
		if w.Class == "numeric" {
			for _, f := range []struct {
				what      string
				got, want float64
			}{{"sum", g.Sum, w.Sum}, {"sum of squares", g.SumSq, w.SumSq}, {"min", g.Min, w.Min}, {"max", g.Max, w.Max}} {
				if !closeEnough(f.got, f.want, w.Count) {
					diffs = append(diffs, fmt.Sprintf("column %s: %s %.17g, want %.17g", w.Name, f.what, f.got, f.want))
				}
			}
		} else if g.Exact != w.Exact {
			diffs = append(diffs, fmt.Sprintf("column %s: checksum %s, want %s", w.Name, g.Exact, w.Exact))
		}
	}
	var extra []string
	for name := range gotCols {
		if !seen[name] {
			extra = append(extra, name)
		}
	}
	sort.Strings(extra)
	for _, name := range extra {
		diffs = append(diffs, fmt.Sprintf("extra column %s", name))
	}
	return diffs
}
