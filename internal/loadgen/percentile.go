package loadgen

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, an ascending slice: the element at 1-based rank ceil(p/100 × n).
// It is the smallest value such that at least p% of the values are less
// than or equal to it, so for the latencies 1, 2, …, 100 ms the 50th, 90th
// and 99th percentiles are 50, 90 and 99 ms, and the 100th is the maximum.
// p <= 0 gives the minimum. An empty slice gives 0.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if p <= 0 {
		return sorted[0]
	}
	// Guard the product against float error: 0.29 × 100 is 28.999999999999996.
	rank := int(math.Ceil(p/100*float64(n) - 1e-9))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// LatencyStats summarises the latencies of one measurement window.
type LatencyStats struct {
	Count int64
	Min   time.Duration
	Mean  time.Duration
	P50   time.Duration
	P90   time.Duration
	P99   time.Duration
	Max   time.Duration
}

// Summarize sorts lat in place and returns its statistics.
func Summarize(lat []time.Duration) LatencyStats {
	if len(lat) == 0 {
		return LatencyStats{}
	}
	slices.Sort(lat)
	var sum float64
	for _, d := range lat {
		sum += float64(d)
	}
	return LatencyStats{
		Count: int64(len(lat)),
		Min:   lat[0],
		Mean:  time.Duration(sum / float64(len(lat))),
		P50:   Percentile(lat, 50),
		P90:   Percentile(lat, 90),
		P99:   Percentile(lat, 99),
		Max:   lat[len(lat)-1],
	}
}
