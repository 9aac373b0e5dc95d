package main

import (
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/internal/loadgen"
)

func TestParseWrk(t *testing.T) {
	out := `Running 1s test @ http://127.0.0.1:9100/v2/models/mlp/infer
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.83ms   30.07ms 231.84ms   95.15%
    Req/Sec    21.19k     5.79k   30.81k    80.95%
  Latency Distribution
     50%  129.00us
     75%  381.00us
     90%    2.35ms
     99%    1.02s
  44918 requests in 1.28s, 14.26MB read
  Non-2xx or 3xx responses: 12
Requests/sec:  35107.14
Transfer/sec:     11.15MB
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	want := WrkResult{RPS: 35107.14, Requests: 44918, P50US: 129, P90US: 2350, P99US: 1.02e6, Non2xx: 12}
	if r != want {
		t.Errorf("parseWrk = %+v, want %+v", r, want)
	}
	if _, err := parseWrk("garbage"); err == nil {
		t.Error("garbage parsed")
	}
}

func TestCPUCount(t *testing.T) {
	tests := []struct {
		list string
		want int
	}{{"0-1", 2}, {"0", 1}, {"0,2,4", 3}, {"0-3,8", 5}, {"", 1}}
	for _, tt := range tests {
		if got := cpuCount(tt.list); got != tt.want {
			t.Errorf("cpuCount(%q) = %d, want %d", tt.list, got, tt.want)
		}
	}
}

func stats(success, queue uint64, batches map[uint64][2]uint64) modelStats {
	var s modelStats
	s.InferenceStats = map[string]statDuration{"success": {Count: success, NS: success * 100_000}, "queue": {Count: success, NS: queue}}
	for b, cn := range batches {
		s.BatchStats = append(s.BatchStats, struct {
			BatchSize    uint64       `json:"batch_size"`
			ComputeInfer statDuration `json:"compute_infer"`
		}{b, statDuration{Count: cn[0], NS: cn[1]}})
		s.ExecutionCount += cn[0]
		s.InferenceCount += b * cn[0]
	}
	return s
}

func TestDiffStats(t *testing.T) {
	a := stats(10, 1000, map[uint64][2]uint64{1: {10, 10_000}})
	b := stats(110, 21000, map[uint64][2]uint64{1: {30, 30_000}, 4: {20, 80_000}})
	d := diffStats(a, b)
	if d.Mix[1] != 20 || d.Mix[4] != 20 || len(d.Mix) != 2 {
		t.Errorf("mix %v", d.Mix)
	}
	if got := d.MeanBatch(); got != 2.5 {
		t.Errorf("mean batch %v, want 2.5", got)
	}
	if d.MixString() != "1:20,4:20" {
		t.Errorf("mix string %q", d.MixString())
	}
	// 20 executions, 20 µs + 80 µs in all: 2.5 µs per execution.
	if d.ComputeInferPerExecUS != 2.5 {
		t.Errorf("per execution %v µs", d.ComputeInferPerExecUS)
	}
	if d.QueueUS != 0.2 || d.SuccessUS != 100 {
		t.Errorf("queue %v µs, success %v µs", d.QueueUS, d.SuccessUS)
	}
}

func series(contender string, p loadgen.Protocol, levels map[int]float64, p50 time.Duration) Series {
	s := Series{Contender: contender, Protocol: p, Model: "mlp"}
	for c, rps := range levels {
		s.Results = append(s.Results, loadgen.Result{Mode: loadgen.ModeConcurrency, Concurrency: c, Requests: 100,
			Throughput: rps, RowsPerSec: rps, Latency: loadgen.LatencyStats{P50: p50}})
	}
	return s
}

func TestComputeRatios(t *testing.T) {
	rep := &Report{
		MLP: []Series{
			series("kiln", loadgen.HTTPBinary, map[int]float64{1: 8000, 64: 30000}, 100*time.Microsecond),
			series("minimal", loadgen.HTTPBinary, map[int]float64{1: 15000, 64: 40000}, 60*time.Microsecond),
			series("kiln", loadgen.HTTPJSON, map[int]float64{32: 30000, 64: 10000}, time.Millisecond),
			series("minimal", loadgen.HTTPJSON, map[int]float64{64: 40000}, time.Millisecond),
			series("node", loadgen.HTTPJSON, map[int]float64{32: 25000}, time.Millisecond),
		},
		Inproc: []InprocRun{{Key: "mlp/call", Result: InprocResult{CallP50US: 5}}},
	}
	got := map[string]Ratio{}
	for _, r := range computeRatios(rep) {
		got[r.Name] = r
	}
	tests := []struct {
		prefix string
		status string
		value  float64
	}{
		{"MLP c=64: Kiln HTTP binary", "pass", 0.75},
		{"MLP c=64: Kiln HTTP JSON", "FAIL", 0.25},
		{"MLP c=64: Kiln gRPC", "n/a", 0},
		{"MLP c=32: Kiln HTTP JSON ÷ Node", "FAIL", 1.2},
		{"MLP c=32: Kiln HTTP JSON ÷ seed", "n/a", 0},
		{"MLP c=1 batch 1: Kiln HTTP binary", "FAIL", 35}, // 100 − 60 − 5
		{"ResNet-18 c=64: Kiln HTTP binary", "n/a", 0},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			var r *Ratio
			for name, x := range got {
				if strings.HasPrefix(name, tt.prefix) {
					r = &x
				}
			}
			if r == nil {
				t.Fatalf("no ratio named %q…", tt.prefix)
			}
			if r.Status != tt.status || (tt.status != "n/a" && (r.Value < tt.value-1e-9 || r.Value > tt.value+1e-9)) {
				t.Errorf("%+v, want %s %v", *r, tt.status, tt.value)
			}
		})
	}
}
