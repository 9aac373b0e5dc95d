package pipeline

import (
	"context"
	"fmt"
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
