package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
)

func TestColumnsOverlap(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{"x", "x", true},
		{"x", "y", false},
		{"c_*", "c_DE", true},
		{"c_DE", "c_*", true},
		{"c_*", "d_DE", false},
		{"*", "anything", true},
		{"c_*", "c_D*", true},
		{"c_*", "d*", false},
		{"c_", "c_*", true},
		{"c", "c_*", false},
	}
	for _, c := range cases {
		t.Run(c.a+"/"+c.b, func(t *testing.T) {
			if got := ColumnsOverlap(c.a, c.b); got != c.want {
				t.Errorf("ColumnsOverlap(%q, %q) = %v", c.a, c.b, got)
			}
		})
	}
}

// colFitter is a Fitter that says which columns it reads and writes.
type colFitter struct {
	reads, writes []string
	keeps, known  bool
	fitted        bool
}

func (f *colFitter) Apply(_ context.Context, in Batch) (Batch, []RowError, error) {
	in.Retain()
	return in, nil, nil
}
func (f *colFitter) NeedsFit() bool                   { return !f.fitted }
func (f *colFitter) Fit(context.Context, Batch) error { return nil }
func (f *colFitter) FitDone(context.Context) error    { return nil }
func (f *colFitter) Params() map[string]any           { return nil }
func (f *colFitter) KeepsRows() bool                  { return f.keeps }
func (f *colFitter) Columns() (reads, writes []string) {
	if !f.known {
		return nil, nil
	}
	return f.reads, f.writes
}

// plainFitter says nothing about its columns.
type plainFitter struct{ colFitter }

func (plainFitter) Columns() {}

func TestFitGroups(t *testing.T) {
	scale := func(cols ...string) Transform { return &colFitter{reads: cols, writes: cols, keeps: true, known: true} }
	given := &colFitter{fitted: true, known: true, keeps: true}
	cases := []struct {
		name string
		ts   []Transform
		want string
	}{
		{"independent", []Transform{scale("a"), scale("b"), &colFitter{reads: []string{"c"}, writes: []string{"c_*", "c"}, keeps: true, known: true}}, "[[0 1 2]]"},
		{"reads what the one before writes", []Transform{scale("a"), scale("a")}, "[[0] [1]]"},
		{"reads what an earlier one writes", []Transform{scale("a"), scale("b"), scale("a")}, "[[0 1] [2]]"},
		{"prefix written", []Transform{&colFitter{reads: []string{"c"}, writes: []string{"c_*"}, keeps: true, known: true}, scale("c_DE")}, "[[0] [1]]"},
		{"drops rows", []Transform{&colFitter{reads: []string{"a"}, writes: []string{}, known: true}, scale("b")}, "[[0] [1]]"},
		{"drops rows, last", []Transform{scale("b"), &colFitter{reads: []string{"a"}, writes: []string{}, known: true}}, "[[0 1]]"},
		{"unknown columns", []Transform{&colFitter{keeps: true}, scale("b"), &colFitter{keeps: true}}, "[[0] [1] [2]]"},
		{"not a ColumnUser", []Transform{&plainFitter{}, scale("b")}, "[[0] [1]]"},
		{"separated by a fitted one", []Transform{scale("a"), given, scale("b")}, "[[0] [2]]"},
		{"separated by a plain transform", []Transform{scale("a"), &filterT{}, scale("b")}, "[[0] [2]]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := fmt.Sprint(fitGroups(c.ts)); got != c.want {
				t.Errorf("fitGroups = %s, want %s", got, c.want)
			}
		})
	}
}

// orderFitter records the first x of every batch it is fitted on.
type orderFitter struct {
	colFitter
	firsts []int64
}

func (f *orderFitter) Fit(_ context.Context, in Batch) error {
	if v := xs(in); len(v) > 0 {
		f.firsts = append(f.firsts, v[0])
	}
	return nil
}

// TestFitPassInOrder: fitters see the batches in source order even with
// parallel workers and no settings.ordered, so fitted parameters do not
// depend on scheduling.
func TestFitPassInOrder(t *testing.T) {
	id, st := newTestState(t)
	plan := mustParse(t, fmt.Sprintf(`source: {test_mem: {state: %[1]s, rows: 3000, batch: 10}}
transforms: [test_filter: {mod: 1000}]
sinks: [{test_sink: {state: %[1]s, id: a}}]
settings: {parallelism: 4}
`, id))
	f := &orderFitter{colFitter: colFitter{known: true, keeps: true}}
	b := &built{source: &memSource{cfg: &memSourceConfig{State: id, Rows: 3000, Batch: 10}, st: st}, transforms: []Transform{&filterT{cfg: &filterConfig{Mod: 1000, Reject: -1, Fail: -1, Panic: -1}}, f}}
	plan.Transforms = append(plan.Transforms, Component{Kind: KindTransform, Name: "order", Stage: "transforms[1].order"})
	if _, _, err := (&Engine{DataDir: t.TempDir()}).passes(context.Background(), plan, Env{Logger: slog.New(slog.DiscardHandler)}, b, nil, RunOptions{}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if len(f.firsts) != 300 {
		t.Fatalf("fitted on %d batches, want 300", len(f.firsts))
	}
	for i, v := range f.firsts {
		want := int64(i * 10)
		if want%1000 == 0 {
			want++ // the filter dropped x = 0, 1000, 2000
		}
		if v != want {
			t.Fatalf("batch %d starts at %d, want %d: not in source order", i, v, want)
		}
	}
}
