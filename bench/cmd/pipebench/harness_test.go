package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kilnai/kiln/internal/pipeline"

	// The components the benchmark spec uses.
	_ "github.com/kilnai/kiln/internal/connectors/file"
	_ "github.com/kilnai/kiln/internal/connectors/transform"
)

func TestUsageOf(t *testing.T) {
	ru := &syscall.Rusage{
		Utime:  syscall.Timeval{Sec: 3, Usec: 250000},
		Stime:  syscall.Timeval{Sec: 0, Usec: 500000},
		Maxrss: 524288, // KiB on Linux
	}
	u := usageOf(ru, 2*time.Second)
	if u.User != 3250*time.Millisecond || u.Sys != 500*time.Millisecond || u.CPU() != 3750*time.Millisecond {
		t.Fatalf("times %+v", u)
	}
	if u.MaxRSS != 512<<20 {
		t.Fatalf("MaxRSS %d, want %d", u.MaxRSS, 512<<20)
	}
	if u.Wall != 2*time.Second {
		t.Fatalf("wall %v", u.Wall)
	}
	if z := usageOf(nil, time.Second); z.MaxRSS != 0 || z.Wall != time.Second {
		t.Fatalf("nil rusage: %+v", z)
	}
}

func TestMeasureChild(t *testing.T) {
	// A real child: its usage comes from wait4, its failure carries the log.
	r := &runner{dir: t.TempDir(), logf: t.Logf}
	u, out, err := r.measure(t.Context(), "ok", nil, "/bin/sh", "-c", "echo hi; echo to-log >&2")
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "hi\n" || u.Wall <= 0 || u.MaxRSS <= 0 {
		t.Fatalf("stdout %q, usage %+v", out, u)
	}
	if b, _ := os.ReadFile(filepath.Join(r.dir, "ok.log")); string(b) != "to-log\n" {
		t.Fatalf("log %q", b)
	}
	_, _, err = r.measure(t.Context(), "bad", nil, "/bin/sh", "-c", "echo boom >&2; exit 3")
	if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("failure error %v", err)
	}
}

func TestBusyFromStat(t *testing.T) {
	// user nice system idle iowait irq softirq steal: busy = 100+5+50+1+2+3 ticks.
	got := busyFromStat("cpu  100 5 50 9999 77 1 2 3 0 0")
	if got != 161*time.Second/clockTicks {
		t.Fatalf("busy %v", got)
	}
	if busyFromStat("cpu0 1 2 3 4 5") != 0 || busyFromStat("") != 0 {
		t.Fatal("accepted a line that is not the total")
	}
	if c := otherCores(3*time.Second, time.Second, 2*time.Second); c != 1 {
		t.Fatalf("otherCores %v, want 1", c)
	}
	if c := otherCores(time.Second, 2*time.Second, time.Second); c != 0 {
		t.Fatalf("otherCores below zero: %v", c)
	}
}

func TestMedianAndRatios(t *testing.T) {
	s := time.Second
	if m := median([]time.Duration{5 * s, 1 * s, 3 * s}); m != 3*s {
		t.Fatalf("median %v", m)
	}
	if m := median([]time.Duration{4 * s, 1 * s}); m != 1*s {
		t.Fatalf("even median %v (lower middle)", m)
	}
	if median(nil) != 0 || medianInt(nil) != 0 {
		t.Fatal("empty median")
	}
	if r := rowsPerSec(1000, 2*s); r != 500 {
		t.Fatalf("rowsPerSec %v", r)
	}
	res := &Results{
		Settings: Settings{Rows: 1_000_000},
		Contenders: []*Contender{
			{Name: "kiln", Runs: []Usage{{Wall: 2 * s}, {Wall: 4 * s}, {Wall: 3 * s}}},      // median 3 s
			{Name: "duckdb", Runs: []Usage{{Wall: 2 * s}}},                                  // 2 s
			{Name: "pandas", Runs: []Usage{{Wall: 40 * s}, {Wall: 20 * s}, {Wall: 30 * s}}}, // 30 s
		},
		Memory: &MemoryRun{Target: memTarget, Results: []MemoryResult{{Name: "kiln", Usage: Usage{MaxRSS: 600 << 20}}}},
	}
	got := ratios(res)
	want := []struct {
		v    float64
		pass bool
	}{{2.0 / 3, false}, {10, true}, {600, false}}
	for i, w := range want {
		if math.Abs(got[i].Value-w.v) > 1e-9 || got[i].Pass != w.pass || !got[i].Known {
			t.Errorf("ratio %d (%s) = %v pass %v, want %v pass %v", i, got[i].What, got[i].Value, got[i].Pass, w.v, w.pass)
		}
	}
	res.Contenders = res.Contenders[:1]
	res.Memory.Results[0].Problem = "crashed"
	for _, r := range ratios(res) {
		if r.Known {
			t.Errorf("%s known without its contender", r.What)
		}
	}
	if thousands(1234567.4) != "1,234,567" || thousands(999) != "999" {
		t.Fatalf("thousands: %s %s", thousands(1234567.4), thousands(999))
	}
}

func TestCompareSummaries(t *testing.T) {
	ref := Summary{Rows: 100, Columns: []ColumnSummary{
		{Name: "amount", Class: "numeric", Count: 100, Sum: 1e-12, SumSq: 100, Min: -1.5, Max: 2.5},
		{Name: "note", Class: "string", Count: 100, Exact: "123456789"},
		{Name: "country_FR", Class: "numeric", Count: 100, Sum: 7, SumSq: 7, Max: 1},
	}}
	same := ref
	same.Columns = slices.Clone(ref.Columns)
	same.Columns[0].Sum = -3e-12 // both ~0: within the count-scaled tolerance
	same.Columns[0].SumSq = 100.0000000001
	if d := compareSummaries(ref, same); len(d) != 0 {
		t.Fatalf("equal within tolerance, got %v", d)
	}
	tests := []struct {
		name string
		edit func(*Summary)
		want string
	}{
		{"rows", func(s *Summary) { s.Rows = 99 }, "rows: 99, want 100"},
		{"sum", func(s *Summary) { s.Columns[0].SumSq = 101 }, "amount: sum of squares"},
		{"checksum", func(s *Summary) { s.Columns[1].Exact = "1" }, "note: checksum"},
		{"class", func(s *Summary) { s.Columns[2].Class = "string" }, "country_FR: "},
		{"missing", func(s *Summary) { s.Columns = s.Columns[:2] }, "column country_FR missing"},
		{"extra", func(s *Summary) { s.Columns = append(s.Columns, ColumnSummary{Name: "x"}) }, "extra column x"},
		{"nulls", func(s *Summary) { s.Columns[1].Count = 90 }, "note: 90 non-null values"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ref
			got.Columns = slices.Clone(ref.Columns)
			tt.edit(&got)
			d := compareSummaries(ref, got)
			if len(d) == 0 || !strings.Contains(strings.Join(d, "; "), tt.want) {
				t.Fatalf("diffs %v, want one containing %q", d, tt.want)
			}
		})
	}
}

func TestKilnSpecParses(t *testing.T) {
	var b bytes.Buffer
	if err := WriteKilnSpec(&b, kilnPaths{Input: "in dir/data.csv", Output: "out/x.parquet"}); err != nil {
		t.Fatal(err)
	}
	plan, err := pipeline.Parse("bench.yaml", b.Bytes(), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("Kiln rejects the benchmark spec: %v\n%s", err, b.String())
	}
	if plan.Source.Name != "file" || len(plan.Transforms) != 3 || len(plan.Sinks) != 1 || plan.Sinks[0].Name != "file" {
		t.Fatalf("plan %+v", plan)
	}
	var names []string
	for _, tr := range plan.Transforms {
		names = append(names, tr.Name)
	}
	if strings.Join(names, ",") != "filter,standardize,one_hot" {
		t.Fatalf("transforms %v", names)
	}
	for _, want := range []string{`path: "in dir/data.csv"`, "compression: snappy", "row_group_rows: 122880", `null_values: [""]`, `layout: "2006-01-02T15:04:05"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("spec lacks %q", want)
		}
	}
}

func TestPeerArgsAgree(t *testing.T) {
	d := strings.Join(duckdbArgs("in.csv", "out.parquet", 2), " ")
	p := strings.Join(pandasArgs("in.csv", "out"), " ")
	for _, want := range []string{"--filter " + Filter, "--standardize amount,score", "--one-hot country", "--categories " + strings.Join(Countries, ",")} {
		if !strings.Contains(d, want) || !strings.Contains(p, want) {
			t.Errorf("peers disagree on %q:\nduckdb: %s\npandas: %s", want, d, p)
		}
	}
	if !strings.Contains(d, "--threads 2") || !strings.Contains(d, "--row-group-size 122880") {
		t.Errorf("duckdb args %s", d)
	}
}

func TestParseSizeAndCPUs(t *testing.T) {
	for in, want := range map[string]int64{"2GiB": 2 << 30, "512MiB": 512 << 20, "1.5KiB": 1536, "1GB": 1e9, "100": 100, "0": 0} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1MiB", "MiB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
	for in, want := range map[string]int{"0,1": 2, "0-3": 4, "0-1,4": 3, "2": 1} {
		if got, err := cpuCount(in); err != nil || got != want {
			t.Errorf("cpuCount(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a", "3-1", "1,,2"} {
		if _, err := cpuCount(bad); err == nil {
			t.Errorf("cpuCount(%q) accepted", bad)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"2GiB", "512MiB", "1.5KiB", "1GB", "100", "0", "-1", "x", "1e400GiB", "NaNMiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err == nil && n < 0 {
			t.Fatalf("parseSize(%q) = %d, a negative size", s, n)
		}
	})
}

func FuzzCPUCount(f *testing.F) {
	for _, s := range []string{"0,1", "0-3", "0-1,4", "", "3-1", "a", "-1", "0-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := cpuCount(s)
		if err == nil && n <= 0 {
			t.Fatalf("cpuCount(%q) = %d without an error", s, n)
		}
	})
}

func TestRenderFromSavedResults(t *testing.T) {
	s := time.Second
	res := &Results{
		Date: "2026-01-01 00:00 UTC", Command: "go run ./bench/cmd/pipebench",
		Machine:  Machine{CPUs: 2},
		Settings: Settings{Rows: 2_000_000, Kept: 1_200_000, Runs: 1, QuietLimit: 0.3},
		Contenders: []*Contender{
			{Name: "kiln", Label: "Kiln", Runs: []Usage{{Wall: 4 * s, User: 6 * s, OtherCores: 0.9}}, OutputFormat: "parquet"},
			{Name: "duckdb", Label: "DuckDB", Runs: []Usage{{Wall: 2 * s, User: 3 * s}}, OutputFormat: "parquet"},
			{Name: "pandas", Label: "pandas", Skipped: "no pandas"},
		},
	}
	path := filepath.Join(t.TempDir(), "results.json")
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := loadResults(path)
	if err != nil {
		t.Fatal(err)
	}
	md := renderMarkdown(got)
	for _, want := range []string{
		"| Kiln | 4.00 | 4.00 | 500,000 | 6.00 |",
		"| Kiln ÷ DuckDB rows/s | 0.50 | ≥ 1.0 | FAIL |",
		"| Kiln ÷ pandas rows/s | — | ≥ 10 | not measured |",
		"| pandas | — |", "no pandas",
		"up to 0.90 cores",
		"Kiln 3.00 s, DuckDB 1.50 s (Kiln ÷ DuckDB 2.00)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if _, err := loadResults(filepath.Join(t.TempDir(), "none.json")); err == nil {
		t.Error("a missing file loaded")
	}
}
