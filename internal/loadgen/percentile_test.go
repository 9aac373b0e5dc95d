package loadgen

import (
	"math/rand/v2"
	"testing"
	"time"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// seq returns 1..n milliseconds in a shuffled order.
func seq(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = ms(i + 1)
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(n, func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"1..100 p50", seq(100), 50, ms(50)},
		{"1..100 p90", seq(100), 90, ms(90)},
		{"1..100 p99", seq(100), 99, ms(99)},
		{"1..100 p100 is the max", seq(100), 100, ms(100)},
		{"1..100 p0 is the min", seq(100), 0, ms(1)},
		{"1..100 p29 (float guard)", seq(100), 29, ms(29)},
		{"1..100 p99.5 rounds up", seq(100), 99.5, ms(100)},
		{"1..10 p90", seq(10), 90, ms(9)},
		{"1..10 p99", seq(10), 99, ms(10)},
		{"1..10 p50", seq(10), 50, ms(5)},
		{"1..1000 p99.9", seq(1000), 99.9, ms(999)},
		{"1..1000 p50", seq(1000), 50, ms(500)},
		{"single", []time.Duration{ms(7)}, 99, ms(7)},
		{"two p50", []time.Duration{ms(2), ms(1)}, 50, ms(1)},
		{"two p51", []time.Duration{ms(2), ms(1)}, 51, ms(2)},
		{"empty", nil, 50, 0},
		{"constant", []time.Duration{ms(3), ms(3), ms(3), ms(3)}, 90, ms(3)},
		// 90 fast, 10 slow: p90 still fast, p91 slow.
		{"bimodal p90", append(repeat(ms(1), 90), repeat(ms(100), 10)...), 90, ms(1)},
		{"bimodal p91", append(repeat(ms(1), 90), repeat(ms(100), 10)...), 91, ms(100)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sorted := append([]time.Duration(nil), tt.in...)
			Summarize(sorted)
			if got := Percentile(sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(p%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		in   []time.Duration
		want LatencyStats
	}{
		{"1..100 ms", seq(100), LatencyStats{Count: 100, Min: ms(1), Mean: 50500 * time.Microsecond, P50: ms(50), P90: ms(90), P99: ms(99), Max: ms(100)}},
		{"uniform 1..1000 ms", seq(1000), LatencyStats{Count: 1000, Min: ms(1), Mean: 500500 * time.Microsecond, P50: ms(500), P90: ms(900), P99: ms(990), Max: ms(1000)}},
		{"one", []time.Duration{ms(4)}, LatencyStats{Count: 1, Min: ms(4), Mean: ms(4), P50: ms(4), P90: ms(4), P99: ms(4), Max: ms(4)}},
		{"none", nil, LatencyStats{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Summarize(tt.in); got != tt.want {
				t.Errorf("Summarize = %+v, want %+v", got, tt.want)
			}
		})
	}
}
