package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	d := func(n ...int) []time.Duration {
		out := make([]time.Duration, len(n))
		for i, x := range n {
			out[i] = time.Duration(x)
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i + 1)
	}
	cases := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", d(7), 0.99, 7},
		{"median of odd", d(1, 2, 3, 4, 5), 0.5, 3},
		{"median of even (nearest rank, lower)", d(1, 2, 3, 4), 0.5, 2},
		{"p90 of 10", d(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.9, 9},
		{"p99 of 100", hundred, 0.99, 99},
		{"p100", hundred, 1, 100},
		{"tiny q", hundred, 0.0001, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := percentile(c.sorted, c.q); got != c.want {
				t.Fatalf("percentile = %d, want %d", got, c.want)
			}
		})
	}
}

func TestSummarizeAndReport(t *testing.T) {
	s := summarize(sample{kind: "k", desc: "a|b", durs: []time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond, 20 * time.Millisecond}})
	if s.N != 4 || s.P50 != 2*time.Millisecond || s.Max != 20*time.Millisecond || s.P99 != 20*time.Millisecond || s.Mean != 6500*time.Microsecond {
		t.Fatalf("summary = %+v", s)
	}
	var b bytes.Buffer
	m := meta{Date: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), Machine: "test box", Command: "registrybench", Models: 1, Versions: 4, Target: 10 * time.Millisecond, Load: "0.42"}
	if err := writeMarkdown(&b, m, []summary{s}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"2026-01-02 03:04 UTC", "test box", "≤ 10ms", "was 0.42", "`registrybench`", "| k | a\\|b | 4 | 2.000 | 20.000 | 20.000 | 20.000 | **no** |"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
