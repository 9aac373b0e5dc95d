package main

import (
	"slices"
	"testing"
)

func TestParseMix(t *testing.T) {
	tests := []struct {
		mix    string
		counts map[int]int
		err    bool
	}{
		{"1:10,8:30", map[int]int{1: 10, 8: 30}, false},
		// Scaled to 100 000 executions; a size too rare for that is left out.
		{"1:1000000,64:1", map[int]int{1: 100000}, false},
		{"1:200000,64:2", map[int]int{1: 99999, 64: 1}, false},
		{"4:0,2:3", map[int]int{2: 3}, false},
		{"", nil, true},
		{"1:0", nil, true},
		{"x:1", nil, true},
		{"0:5", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.mix, func(t *testing.T) {
			seq, _, err := parseMix(tt.mix)
			if tt.err {
				if err == nil {
					t.Fatalf("parseMix(%q) accepted", tt.mix)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[int]int{}
			for _, b := range seq {
				got[b]++
			}
			for b, n := range tt.counts {
				if got[b] != n {
					t.Errorf("size %d: %d executions, want %d (%v)", b, got[b], n, got)
				}
			}
			if len(got) != len(tt.counts) {
				t.Errorf("sizes %v, want %v", got, tt.counts)
			}
		})
	}
	a, _, _ := parseMix("1:5,2:5,3:5")
	b, _, _ := parseMix("1:5,2:5,3:5")
	if !slices.Equal(a, b) {
		t.Error("the shuffle is not deterministic")
	}
}
