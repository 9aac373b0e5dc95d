package keyrange

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kilnai/kiln/internal/pipeline"
)

func TestTasksCoverTheRangeOnce(t *testing.T) {
	tests := []struct {
		lo, hi int64
		n      int
	}{
		{1, 100, 4}, {1, 100, 3}, {0, 0, 5}, {-10, 10, 7}, {5, 7, 10}, {1, 1000, 1},
	}
	for _, tc := range tests {
		tasks, err := Tasks("id", tc.lo, tc.hi, tc.n)
		if err != nil {
			t.Fatal(err)
		}
		if len(tasks) == 0 || len(tasks) > tc.n {
			t.Fatalf("[%d,%d]/%d: %d tasks", tc.lo, tc.hi, tc.n, len(tasks))
		}
		covered := map[int64]int{}
		for i, task := range tasks {
			r, err := Decode(task, "test", "id")
			if err != nil {
				t.Fatal(err)
			}
			if r.First != (i == 0) || r.Last != (i == len(tasks)-1) {
				t.Fatalf("task %d: first %v last %v", i, r.First, r.Last)
			}
			for k := r.Lo; k < r.Hi || (r.Last && k == r.Hi); k++ {
				covered[k]++
			}
		}
		for k := tc.lo; k <= tc.hi; k++ {
			if covered[k] != 1 {
				t.Fatalf("[%d,%d]/%d: key %d read %d times", tc.lo, tc.hi, tc.n, k, covered[k])
			}
		}
		if len(covered) != int(tc.hi-tc.lo+1) {
			t.Fatalf("[%d,%d]/%d: keys outside the range are read", tc.lo, tc.hi, tc.n)
		}
	}
	if _, err := Tasks("id", 5, 1, 2); err == nil {
		t.Fatal("an empty range was accepted")
	}
}

func TestDecodeAndWhere(t *testing.T) {
	if _, err := Decode(pipeline.Task{ID: "x", Spec: []byte("{")}, "sqlite", "id"); err == nil || !strings.Contains(err.Error(), "sqlite task x") {
		t.Fatalf("bad spec: %v", err)
	}
	b, _ := json.Marshal(Range{Lo: 3, Hi: 1})
	if _, err := Decode(pipeline.Task{ID: "y", Spec: b}, "postgres", "id"); err == nil {
		t.Fatal("lo > hi was accepted")
	}
	if r, err := Decode(Whole()[0], "sqlite", ""); err != nil || !r.All {
		t.Fatalf("whole: %v %v", r, err)
	}
	r := Range{Lo: 1, Hi: 9, First: true, Last: true}
	got := r.Where(`"id"`, func(i int) string { return "$" + string(rune('0'+i)) })
	if want := `(("id" >= $1 and "id" <= $2) or "id" is null)`; got != want {
		t.Fatalf("Where = %s, want %s", got, want)
	}
}
