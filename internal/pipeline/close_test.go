package pipeline

import (
	"context"
	"fmt"
	"testing"
)

// TestRunClosesTransforms: transforms that hold resources (io.Closer) are
// closed once at the end of every run, whatever its outcome. A fitting pass
// runs the transforms before the fitter once (the next pass replays its
// spill), so it builds no copies of them.
func TestRunClosesTransforms(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name       string
		transforms string
		extra      string
		wantErr    bool
		wantBuilt  int64
	}{
		{"success", "[test_closer: {state: %[1]s}, test_filter: 3]", "", false, 1},
		{"failing transform", "[test_closer: {state: %[1]s}, test_filter: {fail: 5}]", "", true, 1},
		{"fitting pass", "[test_closer: {state: %[1]s}, test_center: {}]", "", false, 1},
		{"unknown params_from_run", "[test_closer: {state: %[1]s}, test_center: {}]", "settings: {params_from_run: nope}\n", true, 1},
		{"cache miss then hit", "[test_closer: {state: %[1]s}]", "cache: {ttl: 1h}\n", false, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, st := newTestState(t)
			src := fmt.Sprintf("source: {test_mem: {state: %[1]s, rows: 20, batch: 4}}\ntransforms: "+c.transforms+"\nsinks: [{test_sink: {state: %[1]s, id: a}}]\n"+c.extra, id)
			runs := 1
			if c.name == "cache miss then hit" {
				runs = 2
			}
			for range runs {
				_, err := (&Engine{DataDir: dir, Runs: &memRuns{}}).Run(context.Background(), mustParse(t, src), RunOptions{})
				if (err != nil) != c.wantErr {
					t.Fatalf("err = %v, want error: %v", err, c.wantErr)
				}
			}
			if b, cl := st.built.Load(), st.closed.Load(); b != c.wantBuilt*int64(runs) || cl != b {
				t.Errorf("built %d, closed %d; want %d built, all closed", b, cl, c.wantBuilt*int64(runs))
			}
		})
	}
}
