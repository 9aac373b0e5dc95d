package transform

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/kilnai/kiln/internal/pipeline"
)

func init() {
	pipeline.RegisterTransform(pipeline.TransformSpec{
		Spec: pipeline.Spec{
			Name: "standardize",
			Summary: "z-score numeric columns: (x - mean) / std, with mean and population std (divisor n) fitted on the data " +
				"in a fitting pass, given as params, or taken from an earlier run (settings.params_from_run); output float64",
			Config: func() any { return &StandardizeConfig{} },
			Examples: []string{
				"{columns: [age, income]}",
				"{columns: [age], params: {age: {mean: 41.5, std: 12.25}}}",
			},
		},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Transform, error) {
			c := cfg.(*StandardizeConfig)
			t := &scaleT{name: "standardize", columns: c.Columns, stats: map[string]*colStats{}}
			for col, p := range c.Params {
				t.stats[col] = &colStats{mean: p.Mean, std: p.Std, given: true}
			}
			return t, nil
		},
	})
	pipeline.RegisterTransform(pipeline.TransformSpec{
		Spec: pipeline.Spec{
			Name: "min_max",
			Summary: "rescale numeric columns to a range (default [0, 1]) with min and max fitted on the data, " +
				"given as params, or taken from an earlier run; output float64",
			Config: func() any { return &MinMaxConfig{Range: []float64{0, 1}} },
			Examples: []string{
				"{columns: [age, income]}",
				"{columns: [score], params: {score: {min: 0, max: 850}}, range: [-1, 1]}",
			},
		},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Transform, error) {
			c := cfg.(*MinMaxConfig)
			t := &scaleT{name: "min_max", minmax: true, columns: c.Columns, lo: c.Range[0], hi: c.Range[1], stats: map[string]*colStats{}}
			for col, p := range c.Params {
				t.stats[col] = &colStats{min: p.Min, max: p.Max, given: true}
			}
			return t, nil
		},
	})
}

// MeanStd are standardize's parameters of one column.
type MeanStd struct {
	Mean float64 `yaml:"mean" json:"mean"`
	Std  float64 `yaml:"std" json:"std"`
}

// StandardizeConfig configures standardize.
type StandardizeConfig struct {
	Columns []string           `yaml:"columns" required:"true" doc:"numeric columns to standardize (replaced by float64 columns; nulls stay null)"`
	Params  map[string]MeanStd `yaml:"params" doc:"given mean and std per column (columns without them are fitted on the data)"`
}

// Validate checks columns and parameters.
func (c *StandardizeConfig) Validate() error {
	if err := checkColumns(c.Columns); err != nil {
		return err
	}
	for col, p := range c.Params {
		if !slices.Contains(c.Columns, col) {
			return fmt.Errorf("params for %q, which is not in columns", col)
		}
		if !finite(p.Mean) || !finite(p.Std) || p.Std < 0 {
			return fmt.Errorf("params for %q: mean must be finite and std finite and >= 0", col)
		}
	}
	return nil
}

// MinMax are min_max's parameters of one column.
type MinMax struct {
	Min float64 `yaml:"min" json:"min"`
	Max float64 `yaml:"max" json:"max"`
}

// MinMaxConfig configures min_max.
type MinMaxConfig struct {
	Columns []string          `yaml:"columns" required:"true" doc:"numeric columns to rescale (replaced by float64 columns; nulls stay null)"`
	Params  map[string]MinMax `yaml:"params" doc:"given min and max per column (columns without them are fitted on the data)"`
	Range   []float64         `yaml:"range" doc:"output range [low, high]"`
}

// Validate checks columns, parameters and range.
func (c *MinMaxConfig) Validate() error {
	if err := checkColumns(c.Columns); err != nil {
		return err
	}
	for col, p := range c.Params {
		if !slices.Contains(c.Columns, col) {
			return fmt.Errorf("params for %q, which is not in columns", col)
		}
		if !finite(p.Min) || !finite(p.Max) || p.Min > p.Max {
			return fmt.Errorf("params for %q: min and max must be finite with min <= max", col)
		}
	}
	if len(c.Range) != 2 || !finite(c.Range[0]) || !finite(c.Range[1]) || c.Range[0] >= c.Range[1] {
		return fmt.Errorf("range must be [low, high] with low < high, not %v", c.Range)
	}
	return nil
}

func checkColumns(cols []string) error {
	if len(cols) == 0 {
		return errors.New("columns must name at least one column")
	}
	seen := map[string]bool{}
	for _, c := range cols {
		if seen[c] {
			return fmt.Errorf("column %q is listed twice", c)
		}
		seen[c] = true
	}
	return nil
}

// colStats are one column's parameters, and while fitting its running
// statistics (Welford's algorithm for mean and variance).
type colStats struct {
	given    bool // from the config or an earlier run
	n        int64
	mean, m2 float64
	std      float64
	min, max float64
}

func (s *colStats) add(x float64) {
	if s.n == 0 {
		s.min, s.max = x, x
	}
	s.n++
	d := x - s.mean
	s.mean += d / float64(s.n)
	s.m2 += d * (x - s.mean)
	s.min = math.Min(s.min, x)
	s.max = math.Max(s.max, x)
}

// scaleT is standardize and min_max.
type scaleT struct {
	name    string
	minmax  bool
	columns []string
	lo, hi  float64

	mu     sync.Mutex // guards stats while fitting
	stats  map[string]*colStats
	fitted bool
}

var (
	_ pipeline.Fitter      = (*scaleT)(nil)
	_ pipeline.ParamLoader = (*scaleT)(nil)
)

func (t *scaleT) NeedsFit() bool {
	if t.fitted {
		return false
	}
	for _, c := range t.columns {
		if s := t.stats[c]; s == nil || !s.given {
			return true
		}
	}
	return false
}

func (t *scaleT) Fit(_ context.Context, in pipeline.Batch) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, col := range t.columns {
		s := t.stats[col]
		if s != nil && s.given {
			continue
		}
		if s == nil {
			s = &colStats{}
			t.stats[col] = s
		}
		idx, err := columnIndex(in.Schema(), col)
		if err != nil {
			return stageErr(t.name, err)
		}
		a := in.Column(idx)
		vals, err := asFloat64(a)
		if err != nil {
			return stageErr(t.name, fmt.Errorf("column %q: %w", col, err))
		}
		for i, x := range vals {
			if (a.NullN() > 0 && a.IsNull(i)) || !finite(x) {
				continue
			}
			s.add(x)
		}
	}
	return nil
}

func (t *scaleT) FitDone(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, col := range t.columns {
		s := t.stats[col]
		if s == nil || s.given {
			continue
		}
		if s.n == 0 {
			return stageErr(t.name, fmt.Errorf("column %q has no non-null finite values to fit on", col))
		}
		s.std = math.Sqrt(s.m2 / float64(s.n))
		s.given = true
	}
	t.fitted = true
	return nil
}

func (t *scaleT) Params() map[string]any {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]any{}
	for _, col := range t.columns {
		s := t.stats[col]
		if s == nil || !s.given {
			continue
		}
		if t.minmax {
			out[col] = map[string]any{"min": s.min, "max": s.max}
		} else {
			m := map[string]any{"mean": s.mean, "std": s.std}
			if s.n > 0 {
				m["count"] = s.n
			}
			out[col] = m
		}
	}
	return out
}

// LoadParams takes what Params returned in an earlier run (possibly
// through JSON: numbers as float64).
func (t *scaleT) LoadParams(p map[string]any) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, col := range t.columns {
		raw, ok := p[col]
		if !ok {
			if s := t.stats[col]; s != nil && s.given {
				continue
			}
			return fmt.Errorf("no parameters for column %q", col)
		}
		m, ok := raw.(map[string]any)
		if !ok {
			return fmt.Errorf("parameters of column %q are %T, not a mapping", col, raw)
		}
		num := func(k string) (float64, error) {
			f, ok := toFloat(m[k])
			if !ok || !finite(f) {
				return 0, fmt.Errorf("parameter %s of column %q is missing or not a finite number", k, col)
			}
			return f, nil
		}
		s := &colStats{given: true}
		var err error
		if t.minmax {
			if s.min, err = num("min"); err != nil {
				return err
			}
			if s.max, err = num("max"); err != nil {
				return err
			}
		} else {
			if s.mean, err = num("mean"); err != nil {
				return err
			}
			if s.std, err = num("std"); err != nil {
				return err
			}
		}
		t.stats[col] = s
	}
	t.fitted = true
	return nil
}

func (t *scaleT) Apply(_ context.Context, in pipeline.Batch) (pipeline.Batch, []pipeline.RowError, error) {
	if t.NeedsFit() {
		return nil, nil, stageErr(t.name, errors.New("parameters were neither given nor fitted"))
	}
	s := in.Schema()
	repl := map[int]arrow.Array{}
	for _, col := range t.columns {
		idx, err := columnIndex(s, col)
		if err != nil {
			releaseMap(repl)
			return nil, nil, stageErr(t.name, err)
		}
		a := in.Column(idx)
		vals, err := asFloat64(a)
		if err != nil {
			releaseMap(repl)
			return nil, nil, stageErr(t.name, fmt.Errorf("column %q: %w", col, err))
		}
		st := t.stats[col]
		out := make([]float64, len(vals))
		if t.minmax {
			span := st.max - st.min
			if span == 0 {
				for i := range out {
					out[i] = t.lo
				}
			} else {
				k := (t.hi - t.lo) / span
				base := t.lo - st.min*k
				for i, x := range vals {
					out[i] = x*k + base
				}
			}
		} else {
			if st.std == 0 {
				// A constant column: every value is the mean.
				clear(out)
			} else {
				inv := 1 / st.std
				m := st.mean
				for i, x := range vals {
					out[i] = (x - m) * inv
				}
			}
		}
		repl[idx] = float64Like(a, out)
	}
	return replaceColumns(in, repl, nil, nil, nil), nil, nil
}

// float64Like wraps vals as a Float64 array with the validity of a.
func float64Like(a arrow.Array, vals []float64) arrow.Array {
	v, nulls := validityOf(a)
	return makeArray(arrow.PrimitiveTypes.Float64, len(vals), []*memory.Buffer{v, memory.NewBufferBytes(bytesOf(vals))}, nulls)
}

// validityOf returns a validity buffer for a's nulls at offset 0 (shared
// with a when possible) and the null count.
func validityOf(a arrow.Array) (*memory.Buffer, int) {
	if a.NullN() == 0 {
		return nil, 0
	}
	d := a.Data()
	src := d.Buffers()[0]
	if d.Offset() == 0 {
		return src, a.NullN()
	}
	out := make([]byte, bitutil.BytesForBits(int64(d.Len())))
	bitutil.CopyBitmap(src.Bytes(), d.Offset(), d.Len(), out, 0)
	return memory.NewBufferBytes(out), a.NullN()
}

// Columns reports that standardize and min_max replace their columns.
func (t *scaleT) Columns() (reads, writes []string) {
	return slices.Clone(t.columns), slices.Clone(t.columns)
}

// KeepsRows is true: scaling keeps every row.
func (t *scaleT) KeepsRows() bool { return true }
