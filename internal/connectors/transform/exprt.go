package transform

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/goccy/go-yaml/ast"

	"github.com/kilnai/kiln/internal/pipeline"
)

func init() {
	pipeline.RegisterTransform(pipeline.TransformSpec{
		Spec: pipeline.Spec{
			Name: "filter",
			Summary: "keep the rows for which an expression is true (expr language: columns by name, " +
				"arithmetic, comparisons, and/or/not, functions); a null condition drops the row",
			Config: func() any { return &FilterConfig{} },
			Scalar: "expr",
			Examples: []string{
				`"age >= 18"`,
				`{expr: "amount > 0 and country in [\"FR\", \"DE\"]"}`,
				`"email != nil and len(email) > 3"`,
			},
		},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Transform, error) {
			e, err := NewExpression(cfg.(*FilterConfig).Expr)
			if err != nil {
				return nil, stageErr("filter", err)
			}
			return &filterT{e: e}, nil
		},
	})
	pipeline.RegisterTransform(pipeline.TransformSpec{
		Spec: pipeline.Spec{
			Name: "derive",
			Summary: "add or replace columns computed by expressions: {name: expression, ...}, " +
				"in order (a later expression may use an earlier result)",
			Config: func() any { return &DeriveConfig{} },
			Examples: []string{
				`{income_k: "income / 1000", adult: "age >= 18"}`,
				`{columns: {bmi: "weight / (height * height)", name_upper: "upper(name)"}}`,
			},
		},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Transform, error) {
			c := cfg.(*DeriveConfig)
			t := &deriveT{}
			for _, name := range orderedKeys(c.Columns, c.order) {
				e, err := NewExpression(c.Columns[name])
				if err != nil {
					return nil, stageErr("derive", fmt.Errorf("column %q: %w", name, err))
				}
				t.names = append(t.names, name)
				t.exprs = append(t.exprs, e)
			}
			return t, nil
		},
	})
}

// FilterConfig configures filter.
type FilterConfig struct {
	Expr string `yaml:"expr" required:"true" doc:"the condition (short form: filter: \"age >= 18\")"`
}

// Validate checks the expression's syntax.
func (c *FilterConfig) Validate() error {
	_, err := NewExpression(c.Expr)
	return err
}

type filterT struct{ e *Expression }

func (t *filterT) Apply(_ context.Context, in pipeline.Batch) (pipeline.Batch, []pipeline.RowError, error) {
	b, err := t.e.bind(in.Schema())
	if err != nil {
		return nil, nil, stageErr("filter", err)
	}
	res, err := b.eval(in)
	if err != nil {
		return nil, nil, stageErr("filter", err)
	}
	keep, n, err := res.v.truth()
	if err != nil {
		return nil, nil, stageErr("filter", fmt.Errorf("%q: %w", t.e.src, err))
	}
	for _, r := range res.rej {
		if keep[r.Row] {
			keep[r.Row] = false
			n--
		}
	}
	out, err := keepRows(in, keep, n)
	if err != nil {
		return nil, nil, stageErr("filter", err)
	}
	return out, res.rej, nil
}

// DeriveConfig configures derive. The short form is the mapping itself:
// `derive: {income_k: "income / 1000"}`.
type DeriveConfig struct {
	Columns map[string]string `yaml:"columns" doc:"new column → expression, evaluated in the order written; an existing column of that name is replaced (short form: the mapping itself)"`
	order   []string
}

// UnmarshalYAML accepts the long and the short form.
func (c *DeriveConfig) UnmarshalYAML(n ast.Node) error {
	var long struct {
		Columns map[string]string `yaml:"columns"`
	}
	var short map[string]string
	order, err := decodeMapForm(n, &long, []string{"columns"}, "columns", &short)
	if err != nil {
		return err
	}
	c.Columns = short
	if short == nil {
		c.Columns = long.Columns
	}
	c.order = order
	return nil
}

// Validate checks every expression's syntax.
func (c *DeriveConfig) Validate() error {
	if len(c.Columns) == 0 {
		return errors.New("name at least one column to derive (name: expression)")
	}
	for _, name := range orderedKeys(c.Columns, c.order) {
		if name == "" {
			return errors.New("a derived column needs a name")
		}
		if _, err := NewExpression(c.Columns[name]); err != nil {
			return fmt.Errorf("column %q: %w", name, err)
		}
	}
	return nil
}

type deriveT struct {
	names []string
	exprs []*Expression
}

func (t *deriveT) Apply(_ context.Context, in pipeline.Batch) (pipeline.Batch, []pipeline.RowError, error) {
	cur := in
	var rej []pipeline.RowError
	var bad map[int]bool
	for j, e := range t.exprs {
		b, err := e.bind(cur.Schema())
		if err != nil {
			release(cur, in)
			return nil, nil, stageErr("derive", fmt.Errorf("column %q: %w", t.names[j], err))
		}
		res, err := b.eval(cur)
		if err != nil {
			release(cur, in)
			return nil, nil, stageErr("derive", fmt.Errorf("column %q: %w", t.names[j], err))
		}
		for _, r := range res.rej {
			if bad == nil {
				bad = map[int]bool{}
			}
			if !bad[r.Row] {
				bad[r.Row] = true
				rej = append(rej, pipeline.RowError{Row: r.Row, Err: fmt.Errorf("column %q: %w", t.names[j], r.Err)})
			}
		}
		res.v.n = int(cur.NumRows())
		col := res.v.array()
		next := setColumn(cur, t.names[j], col)
		release(cur, in)
		cur = next
	}
	if len(rej) == 0 {
		return cur, nil, nil
	}
	sortRowErrors(rej)
	out, err := withoutRows(cur, rej)
	if out != cur {
		release(cur, in)
	}
	if err != nil {
		return nil, nil, stageErr("derive", err)
	}
	return out, rej, nil
}

// release releases b unless it is the transform's input (owned by the
// engine).
func release(b, in pipeline.Batch) {
	if b != nil && b != in {
		b.Release()
	}
}

// setColumn returns b with column name replaced by col (or col appended),
// taking over the caller's reference to col.
func setColumn(b pipeline.Batch, name string, col arrow.Array) pipeline.Batch {
	f := arrow.Field{Name: name, Type: col.DataType(), Nullable: true}
	if idx := b.Schema().FieldIndices(name); len(idx) > 0 {
		return replaceColumns(b, map[int]arrow.Array{idx[0]: col}, nil, nil, nil)
	}
	return replaceColumns(b, nil, []arrow.Field{f}, []arrow.Array{col}, nil)
}

func sortRowErrors(rej []pipeline.RowError) {
	slices.SortFunc(rej, func(a, b pipeline.RowError) int { return a.Row - b.Row })
}
