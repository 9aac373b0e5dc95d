package transform

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/goccy/go-yaml/ast"

	"github.com/kilnai/kiln/internal/pipeline"
)

func init() {
	pipeline.RegisterTransform(pipeline.TransformSpec{
		Spec: pipeline.Spec{
			Name:    "select",
			Summary: "keep only the named columns, in the order given (glob patterns such as country_* allowed)",
			Config:  func() any { return &SelectConfig{} },
			Scalar:  "",
			Examples: []string{
				"{columns: [id, age, income]}",
				"{columns: [id, \"country_*\"]}",
			},
		},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Transform, error) {
			return &selectT{cfg: cfg.(*SelectConfig)}, nil
		},
	})
	pipeline.RegisterTransform(pipeline.TransformSpec{
		Spec: pipeline.Spec{
			Name:    "rename",
			Summary: "rename columns: {old: new, ...}",
			Config:  func() any { return &RenameConfig{} },
			Examples: []string{
				"{cust_id: customer_id, dob: birth_date}",
				"{columns: {cust_id: customer_id}}",
			},
		},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Transform, error) {
			return &renameT{cfg: cfg.(*RenameConfig)}, nil
		},
	})
}

// SelectConfig configures select.
type SelectConfig struct {
	Columns []string `yaml:"columns" required:"true" doc:"columns to keep, in output order; a name may be a glob (* ? [..]) matching several, in batch order"`
}

// Validate checks the patterns.
func (c *SelectConfig) Validate() error {
	if len(c.Columns) == 0 {
		return errors.New("columns must name at least one column")
	}
	for _, p := range c.Columns {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("bad column pattern %q: %w", p, err)
		}
	}
	return nil
}

type selectT struct{ cfg *SelectConfig }

func isGlob(p string) bool {
	for _, r := range p {
		if r == '*' || r == '?' || r == '[' || r == '\\' {
			return true
		}
	}
	return false
}

// matchColumns expands names and globs against a schema: indexes in the
// order of the patterns (a glob's matches in schema order), each column
// once. A name or glob matching nothing is an error.
func matchColumns(s *arrow.Schema, patterns []string) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for _, p := range patterns {
		found := false
		if !isGlob(p) {
			for _, i := range s.FieldIndices(p) {
				found = true
				if !seen[i] {
					seen[i] = true
					out = append(out, i)
				}
			}
		} else {
			for i, f := range s.Fields() {
				if ok, _ := path.Match(p, f.Name); ok {
					found = true
					if !seen[i] {
						seen[i] = true
						out = append(out, i)
					}
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("no column matches %q (columns: %s)", p, columnNames(s))
		}
	}
	return out, nil
}

func (t *selectT) Apply(_ context.Context, in pipeline.Batch) (pipeline.Batch, []pipeline.RowError, error) {
	idx, err := matchColumns(in.Schema(), t.cfg.Columns)
	if err != nil {
		return nil, nil, stageErr("select", err)
	}
	fields := make([]arrow.Field, len(idx))
	cols := make([]arrow.Array, len(idx))
	for j, i := range idx {
		fields[j] = in.Schema().Field(i)
		cols[j] = in.Column(i)
	}
	md := in.Schema().Metadata()
	return array.NewRecordBatch(arrow.NewSchema(fields, &md), cols, in.NumRows()), nil, nil
}

// RenameConfig configures rename. The short form is the column mapping
// itself: `rename: {old: new}`.
type RenameConfig struct {
	Columns map[string]string `yaml:"columns" doc:"old name → new name (short form: the mapping itself, rename: {old: new})"`
}

type renameLong RenameConfig

// UnmarshalYAML accepts the long and the short form.
func (c *RenameConfig) UnmarshalYAML(n ast.Node) error {
	var long renameLong
	var short map[string]string
	if _, err := decodeMapForm(n, &long, []string{"columns"}, "columns", &short); err != nil {
		return err
	}
	if short != nil {
		c.Columns = short
	} else {
		*c = RenameConfig(long)
	}
	return nil
}

// Validate checks the mapping.
func (c *RenameConfig) Validate() error {
	if len(c.Columns) == 0 {
		return errors.New("name at least one column to rename (old: new)")
	}
	seen := map[string]string{}
	for from, to := range c.Columns {
		if to == "" {
			return fmt.Errorf("column %q: the new name is empty", from)
		}
		if prev, dup := seen[to]; dup {
			return fmt.Errorf("columns %q and %q are both renamed to %q", prev, from, to)
		}
		seen[to] = from
	}
	return nil
}

type renameT struct{ cfg *RenameConfig }

func (t *renameT) Apply(_ context.Context, in pipeline.Batch) (pipeline.Batch, []pipeline.RowError, error) {
	s := in.Schema()
	for from := range t.cfg.Columns {
		if len(s.FieldIndices(from)) == 0 {
			return nil, nil, stageErr("rename", fmt.Errorf("no column %q (columns: %s)", from, columnNames(s)))
		}
	}
	fields := slices.Clone(s.Fields())
	names := map[string]bool{}
	for i := range fields {
		if to, ok := t.cfg.Columns[fields[i].Name]; ok {
			fields[i].Name = to
		}
		if names[fields[i].Name] {
			return nil, nil, stageErr("rename", fmt.Errorf("two columns would be named %q", fields[i].Name))
		}
		names[fields[i].Name] = true
	}
	md := s.Metadata()
	return array.NewRecordBatch(arrow.NewSchema(fields, &md), in.Columns(), in.NumRows()), nil, nil
}
