package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

// WrkResult is one wrk run.
type WrkResult struct {
	Command     string  `json:"command"`
	Threads     int     `json:"threads"`
	Connections int     `json:"connections"`
	Seconds     float64 `json:"seconds"`
	Requests    int64   `json:"requests"`
	RPS         float64 `json:"rps"`
	P50US       float64 `json:"p50_us"`
	P90US       float64 `json:"p90_us"`
	P99US       float64 `json:"p99_us"`
	Non2xx      int64   `json:"non_2xx"`
	SocketErr   string  `json:"socket_errors,omitempty"`
}

var (
	wrkRPS      = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	wrkTotal    = regexp.MustCompile(`(\d+) requests in`)
	wrkPct      = regexp.MustCompile(`(?m)^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	wrkSockErrs = regexp.MustCompile(`Socket errors:[^\n]*`)
)

// runWrk posts body to url with wrk and parses its report.
func (h *harness) runWrk(ctx context.Context, url string, body []byte, conns int, d time.Duration) (WrkResult, error) {
	bodyFile := filepath.Join(h.work, "wrk-body.json")
	if err := os.WriteFile(bodyFile, body, 0o644); err != nil {
		return WrkResult{}, err
	}
	threads := min(2, conns)
	script := filepath.Join(h.root, "bench", "wrk", "post.lua")
	secs := strconv.Itoa(max(1, int(d.Seconds())))
	args := []string{"wrk", "-t" + strconv.Itoa(threads), "-c" + strconv.Itoa(conns), "-d" + secs + "s", "--latency", "-s", script, url}
	out, err := run(ctx, h.root, []string{"WRK_BODY_FILE=" + bodyFile}, args...)
	if err != nil {
		return WrkResult{}, err
	}
	r, err := parseWrk(out)
	if err != nil {
		return r, err
	}
	r.Command = fmt.Sprintf("WRK_BODY_FILE=body.json wrk -t%d -c%d -d%ss --latency -s bench/wrk/post.lua http://127.0.0.1:PORT/v2/models/mlp/infer", threads, conns, secs)
	r.Threads, r.Connections, r.Seconds = threads, conns, d.Seconds()
	return r, nil
}

// parseWrk reads wrk's report (run with --latency).
func parseWrk(out string) (WrkResult, error) {
	var r WrkResult
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk: no Requests/sec in its output:\n%s", out)
	}
	r.RPS, _ = strconv.ParseFloat(m[1], 64)
	if m := wrkTotal.FindStringSubmatch(out); m != nil {
		r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	for _, m := range wrkPct.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		switch m[3] {
		case "ms":
			v *= 1e3
		case "s":
			v *= 1e6
		}
		switch m[1] {
		case "50":
			r.P50US = v
		case "90":
			r.P90US = v
		case "99":
			r.P99US = v
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	r.SocketErr = wrkSockErrs.FindString(out)
	return r, nil
}
