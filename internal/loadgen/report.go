package loadgen

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// The load modes.
const (
	ModeConcurrency = "concurrency"
	ModeRate        = "rate"
)

// Result is one measured level.
type Result struct {
	Protocol Protocol `json:"protocol"`
	Model    string   `json:"model"`
	// Batch is the number of rows per request.
	Batch int `json:"batch"`
	// Mode is ModeConcurrency (closed loop, Concurrency workers) or
	// ModeRate (open loop at TargetRate requests per second).
	Mode        string  `json:"mode"`
	Concurrency int     `json:"concurrency,omitempty"`
	TargetRate  float64 `json:"target_rate,omitempty"`
	// WindowSeconds is the measurement window; an open-loop run whose
	// answers arrive after its schedule ends is measured until the last.
	WindowSeconds float64 `json:"window_s"`
	// Requests counts successful requests in the window, ErrorCount
	// failed ones, with Errors by kind (see ErrorKind).
	Requests   int64            `json:"requests"`
	ErrorCount int64            `json:"error_count"`
	Errors     map[string]int64 `json:"errors,omitempty"`
	// Throughput is successful requests per second; RowsPerSec is
	// Throughput × Batch.
	Throughput float64 `json:"throughput_rps"`
	RowsPerSec float64 `json:"rows_per_s"`
	// Latency of the successful requests.
	Latency LatencyStats `json:"latency"`
	// Late counts open-loop requests sent more than 1 ms behind schedule.
	Late int64 `json:"late,omitempty"`
}

// latencyJSON is LatencyStats with durations in microseconds.
type latencyJSON struct {
	Count  int64   `json:"count"`
	MinUS  float64 `json:"min_us"`
	MeanUS float64 `json:"mean_us"`
	P50US  float64 `json:"p50_us"`
	P90US  float64 `json:"p90_us"`
	P99US  float64 `json:"p99_us"`
	MaxUS  float64 `json:"max_us"`
}

func us(d time.Duration) float64     { return float64(d) / float64(time.Microsecond) }
func fromUS(f float64) time.Duration { return time.Duration(f * float64(time.Microsecond)) }

// MarshalJSON writes the durations as microseconds (min_us, p50_us, …).
func (l LatencyStats) MarshalJSON() ([]byte, error) {
	return json.Marshal(latencyJSON{l.Count, us(l.Min), us(l.Mean), us(l.P50), us(l.P90), us(l.P99), us(l.Max)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (l *LatencyStats) UnmarshalJSON(b []byte) error {
	var j latencyJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*l = LatencyStats{j.Count, fromUS(j.MinUS), fromUS(j.MeanUS), fromUS(j.P50US), fromUS(j.P90US), fromUS(j.P99US), fromUS(j.MaxUS)}
	return nil
}

// Level is "c=N" for a closed loop or "r=R/s" for an open loop.
func (r *Result) Level() string {
	if r.Mode == ModeRate {
		return "r=" + strconv.FormatFloat(r.TargetRate, 'f', -1, 64) + "/s"
	}
	return "c=" + strconv.Itoa(r.Concurrency)
}

// ErrorSummary lists the error counts by kind ("http_503:12 timeout:1"),
// or "0".
func (r *Result) ErrorSummary() string {
	if r.ErrorCount == 0 {
		return "0"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
		parts = append(parts, k+":"+strconv.FormatInt(r.Errors[k], 10))
	}
	return strings.Join(parts, " ")
}

// FormatDuration prints a latency in milliseconds with microsecond
// precision.
func FormatDuration(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64)
}

// WriteTable writes results as an aligned text table; latencies in ms.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "protocol\tmodel\tbatch\tload\treq/s\trows/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tmean ms\tok\terrors\t")
	for i := range results {
		r := &results[i]
		l := r.Latency
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t\n",
			r.Protocol, r.Model, r.Batch, r.Level(), r.Throughput, r.RowsPerSec,
			FormatDuration(l.P50), FormatDuration(l.P90), FormatDuration(l.P99), FormatDuration(l.Max), FormatDuration(l.Mean),
			r.Requests, r.ErrorSummary())
	}
	return tw.Flush()
}

// WriteJSON writes results as an indented JSON array.
func WriteJSON(w io.Writer, results []Result) error {
	if results == nil {
		results = []Result{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(results)
}

// CSVHeader is the first row WriteCSV writes.
var CSVHeader = []string{"protocol", "model", "batch", "mode", "concurrency", "target_rate", "window_s",
	"requests", "errors", "throughput_rps", "rows_per_s", "p50_us", "p90_us", "p99_us", "max_us", "mean_us", "min_us", "late", "error_kinds"}

// WriteCSV writes results as CSV with a header row; latencies in µs.
func WriteCSV(w io.Writer, results []Result) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	d := func(v time.Duration) string { return strconv.FormatFloat(us(v), 'f', 1, 64) }
	for i := range results {
		r := &results[i]
		l := r.Latency
		kinds := ""
		if r.ErrorCount > 0 {
			kinds = r.ErrorSummary()
		}
		row := []string{string(r.Protocol), r.Model, strconv.Itoa(r.Batch), r.Mode, strconv.Itoa(r.Concurrency), f(r.TargetRate),
			f(r.WindowSeconds), strconv.FormatInt(r.Requests, 10), strconv.FormatInt(r.ErrorCount, 10),
			strconv.FormatFloat(r.Throughput, 'f', 2, 64), strconv.FormatFloat(r.RowsPerSec, 'f', 2, 64),
			d(l.P50), d(l.P90), d(l.P99), d(l.Max), d(l.Mean), d(l.Min), strconv.FormatInt(r.Late, 10), kinds}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// Write writes results in format "table", "json" or "csv".
func Write(w io.Writer, format string, results []Result) error {
	switch format {
	case "table", "":
		return WriteTable(w, results)
	case "json":
		return WriteJSON(w, results)
	case "csv":
		return WriteCSV(w, results)
	}
	return fmt.Errorf("unknown format %q: want table, json or csv", format)
}
