package pipeline

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// spillLeft lists what is left in the spill directory of dataDir.
func spillLeft(t *testing.T, dataDir string) []string {
	t.Helper()
	es, err := os.ReadDir(spillDir(dataDir))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// TestRunPasses: two fitters separated by a filter make three passes; the
// source is read once, every transform sees every row once (its rejected
// rows are dead-lettered once, its counters are not doubled), the fitters
// are fitted on what reaches them, and no spill is left behind.
func TestRunPasses(t *testing.T) {
	id, st := newTestState(t)
	dir := t.TempDir()
	src := fmt.Sprintf(`source: {test_mem: {state: %[1]s, rows: 100, batch: 7}}
transforms: [test_filter: {mod: 3, reject: 5}, test_center: {}, test_filter: {mod: 4, reject: 1000, fail: 1000, panic: 1000}, test_center: {}]
sinks: [{test_sink: {state: %[1]s, id: a}}]
on_error: {test_sink: {state: %[1]s, id: dlq, dlq: true}}
settings: {parallelism: 3}
`, id)
	runs := &memRuns{}
	rec, err := (&Engine{DataDir: dir, Runs: runs}).Run(context.Background(), mustParse(t, src), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// The same computation, by hand.
	center := func(v []int64) ([]int64, float64) {
		var sum float64
		for _, x := range v {
			sum += float64(x)
		}
		mean := sum / float64(len(v))
		out := make([]int64, len(v))
		for i, x := range v {
			out[i] = x - int64(mean)
		}
		return out, mean
	}
	a := seq(0, 100, func(i int) bool { return i%3 != 0 && i != 5 })
	b, mean1 := center(a)
	var c []int64
	for _, x := range b {
		if x%4 != 0 {
			c = append(c, x)
		}
	}
	want, mean2 := center(c)

	if got := sorted(st.rows["a"]); !slices.Equal(got, sorted(want)) {
		t.Errorf("rows = %v, want %v", got, sorted(want))
	}
	if n := st.reads.Load(); n != 1 {
		t.Errorf("source read %d times, want once", n)
	}
	if !slices.Equal(st.dlq, []string{"transforms[0].test_filter|bad value 5|5"}) {
		t.Errorf("dead letters = %q, want one", st.dlq)
	}
	if got := rec.Params["transforms[1].test_center"]["mean"]; got != mean1 {
		t.Errorf("first mean = %v, want %v", got, mean1)
	}
	if got := rec.Params["transforms[3].test_center"]["mean"]; got != mean2 {
		t.Errorf("second mean = %v, want %v", got, mean2)
	}

	type counts struct{ in, out, rejected int64 }
	wantStages := map[string]counts{
		"source":                    {0, 100, 0},
		"transforms[0].test_filter": {100, int64(len(a)), 1},
		"transforms[1].test_center": {int64(len(a)), int64(len(b)), 0},
		"transforms[2].test_filter": {int64(len(b)), int64(len(c)), 0},
		"transforms[3].test_center": {int64(len(c)), int64(len(want)), 0},
		"sinks[0].test_sink":        {int64(len(want)), int64(len(want)), 0},
		"on_error.test_sink":        {1, 1, 0},
	}
	var names []string
	for _, s := range rec.Stages {
		names = append(names, s.Stage)
		w, ok := wantStages[s.Stage]
		if !ok {
			t.Errorf("unexpected stage %q", s.Stage)
			continue
		}
		if got := (counts{s.RowsIn, s.RowsOut, s.RowsRejected}); got != w {
			t.Errorf("%s: in/out/rejected = %v, want %v", s.Stage, got, w)
		}
	}
	if len(names) != len(wantStages) || names[0] != "source" || names[len(names)-1] != "on_error.test_sink" {
		t.Errorf("stages = %v", names)
	}
	if rec.RowsIn != 100 || rec.RowsOut != int64(len(want)) || rec.RowsRejected != 1 {
		t.Errorf("totals in %d out %d rejected %d", rec.RowsIn, rec.RowsOut, rec.RowsRejected)
	}
	stored, err := runs.GetRun(context.Background(), rec.ID)
	if err != nil || len(stored.Stages) != len(rec.Stages) {
		t.Errorf("stored record: %v, %v", stored, err)
	}
	if left := spillLeft(t, dir); len(left) != 0 {
		t.Errorf("spill left behind: %v", left)
	}
}

// TestRunPassesFail: a run that fails in a fitting pass or after one
// leaves no spill, discards the sink and reports the error.
func TestRunPassesFail(t *testing.T) {
	cases := []struct {
		name, transforms, sink, want string
	}{
		{"in the fitting pass", "[test_filter: {fail: 50}, test_center: {}]", "", "fitting pass of transforms[1].test_center: transforms[0].test_filter: cannot transform 50"},
		{"in a later pass", "[test_filter: 2, test_center: {}, test_filter: {fail: 7, reject: 1000, panic: 1000}]", "", "transforms[2].test_filter: cannot transform 7"},
		{"in the sink", "[test_center: {}]", ", fail: 3", "sinks[0].test_sink: sink cannot write 3"},
		{"fitting nothing", "[test_filter: 1, test_center: {}]", "", "transforms[1].test_center: no rows to fit on"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, st := newTestState(t)
			dir := t.TempDir()
			src := fmt.Sprintf(`source: {test_mem: {state: %[1]s, rows: 200, batch: 9}}
transforms: %[2]s
sinks: [{test_sink: {state: %[1]s, id: a%[3]s}}]
`, id, c.transforms, c.sink)
			rec, err := (&Engine{DataDir: dir}).Run(context.Background(), mustParse(t, src), RunOptions{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if rec.Status != StatusFailed || !st.discarded["a"] || st.committed["a"] {
				t.Errorf("status %s, committed %v, discarded %v", rec.Status, st.committed, st.discarded)
			}
			if left := spillLeft(t, dir); len(left) != 0 {
				t.Errorf("spill left behind: %v", left)
			}
		})
	}
}

// TestRunPassesCancelled: cancelling a run during a fitting pass stops it
// and leaves no spill.
func TestRunPassesCancelled(t *testing.T) {
	id, _ := newTestState(t)
	dir := t.TempDir()
	plan := mustParse(t, fmt.Sprintf(`source: {test_mem: {state: %[1]s, rows: 100000000, batch: 100}}
transforms: [test_center: {}]
sinks: [{test_sink: {state: %[1]s, id: a}}]
`, id))
	ctx, cancel := context.WithCancel(context.Background())
	runs := &memRuns{}
	done := make(chan error, 1)
	go func() {
		_, err := (&Engine{DataDir: dir, Runs: runs}).Run(ctx, plan, RunOptions{ID: "fit", RecordEvery: time.Millisecond})
		done <- err
	}()
	// The live record shows the fitting pass's progress.
	for {
		r, err := runs.GetRun(context.Background(), "fit")
		if err == nil && r.RowsIn > 1000 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("err = %v", err)
	}
	if left := spillLeft(t, dir); len(left) != 0 {
		t.Errorf("spill left behind: %v", left)
	}
}

func int64Batch(t *testing.T, name string, vals ...int64) Batch {
	t.Helper()
	b := array.NewInt64Builder(memory.DefaultAllocator)
	defer b.Release()
	b.AppendValues(vals, nil)
	col := b.NewArray()
	defer col.Release()
	return array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: name, Type: arrow.PrimitiveTypes.Int64}}, nil), []arrow.Array{col}, int64(col.Len()))
}

// TestSpill: batches come back in order, with their schemas (a change of
// schema starts a new part), as often as the spill is read; release
// leaves nothing behind.
func TestSpill(t *testing.T) {
	dir := t.TempDir()
	sp := newSpill(dir)
	in := []Batch{int64Batch(t, "x", 1, 2, 3), int64Batch(t, "x", 4), int64Batch(t, "y", 5, 6), int64Batch(t, "x", 7)}
	for _, b := range in {
		if _, err := sp.Write(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Close(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Write(context.Background(), in[0]); err == nil {
		t.Error("write after close accepted")
	}
	if len(sp.parts) != 3 || sp.rows != 7 {
		t.Errorf("%d parts, %d rows", len(sp.parts), sp.rows)
	}
	src := sp.source(false)
	for range 2 {
		var got []string
		err := src.Read(context.Background(), func(_ context.Context, b Batch, _ AckFunc) error {
			got = append(got, fmt.Sprintf("%s=%v", b.Schema().Field(0).Name, b.Column(0).(*array.Int64).Int64Values()))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"x=[1 2 3]", "x=[4]", "y=[5 6]", "x=[7]"}; !slices.Equal(got, want) {
			t.Errorf("replayed %v, want %v", got, want)
		}
		if done, total := src.Progress(); done != total || total == 0 {
			t.Errorf("progress %d of %d", done, total)
		}
	}
	// A consuming source closes each part once read: it reads once.
	consumed := 0
	if err := sp.source(true).Read(context.Background(), func(context.Context, Batch, AckFunc) error { consumed++; return nil }); err != nil || consumed != 4 {
		t.Fatalf("consuming read: %d batches, %v", consumed, err)
	}
	for _, p := range sp.parts {
		if p.f != nil {
			t.Error("part left open after a consuming read")
		}
	}
	sp.release()
	if err := src.Read(context.Background(), func(context.Context, Batch, AckFunc) error { return nil }); err == nil {
		t.Error("read after release")
	}
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 0 {
		t.Errorf("left behind: %v", es)
	}
}
