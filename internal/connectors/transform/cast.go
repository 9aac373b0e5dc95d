package transform

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/goccy/go-yaml/ast"

	"github.com/kilnai/kiln/internal/pipeline"
)

func init() {
	pipeline.RegisterTransform(pipeline.TransformSpec{
		Spec: pipeline.Spec{
			Name:    "cast",
			Summary: "convert columns to another type: {column: type, ...}; values that do not convert are rejected (or null, or stop the run)",
			Config:  func() any { return &CastConfig{OnInvalid: "reject"} },
			Examples: []string{
				"{age: int64, income: float64, signup: timestamp}",
				"{columns: {zip: string, score: float32}, on_invalid: \"null\"}",
			},
		},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Transform, error) {
			c := cfg.(*CastConfig)
			t := &castT{cfg: c, to: map[string]arrow.DataType{}}
			for col, name := range c.Columns {
				dt, err := parseType(name)
				if err != nil {
					return nil, stageErr("cast", fmt.Errorf("column %q: %w", col, err))
				}
				t.to[col] = dt
			}
			t.order = orderedKeys(c.Columns, c.order)
			return t, nil
		},
	})
	pipeline.RegisterTransform(pipeline.TransformSpec{
		Spec: pipeline.Spec{
			Name:    "fill_null",
			Summary: "replace nulls with a value per column: {column: value, ...}",
			Config:  func() any { return &FillNullConfig{} },
			Examples: []string{
				"{income: 0, country: unknown}",
				"{columns: {active: false, score: 0.5}}",
			},
		},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Transform, error) {
			return &fillNullT{cfg: cfg.(*FillNullConfig)}, nil
		},
	})
}

// Type names cast accepts.
var typeNames = map[string]arrow.DataType{
	"int8": arrow.PrimitiveTypes.Int8, "int16": arrow.PrimitiveTypes.Int16,
	"int32": arrow.PrimitiveTypes.Int32, "int64": arrow.PrimitiveTypes.Int64,
	"uint8": arrow.PrimitiveTypes.Uint8, "uint16": arrow.PrimitiveTypes.Uint16,
	"uint32": arrow.PrimitiveTypes.Uint32, "uint64": arrow.PrimitiveTypes.Uint64,
	"float32": arrow.PrimitiveTypes.Float32, "float64": arrow.PrimitiveTypes.Float64,
	"bool": arrow.FixedWidthTypes.Boolean, "string": arrow.BinaryTypes.String,
	"timestamp": &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"},
	"date":      arrow.FixedWidthTypes.Date32,
}

func parseType(s string) (arrow.DataType, error) {
	dt, ok := typeNames[strings.ToLower(strings.TrimSpace(s))]
	if !ok {
		return nil, fmt.Errorf("unknown type %q (types: int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64, bool, string, timestamp, date)", s)
	}
	return dt, nil
}

// What cast does with a value that does not convert.
const (
	invalidReject = "reject"
	invalidNull   = "null"
	invalidError  = "error"
)

// CastConfig configures cast. The short form is the column mapping
// itself: `cast: {age: int64}`.
type CastConfig struct {
	Columns   map[string]string `yaml:"columns" doc:"column → type: int8..int64, uint8..uint64, float32, float64, bool, string, timestamp (UTC, µs), date (short form: the mapping itself)"`
	OnInvalid string            `yaml:"on_invalid" doc:"a value that does not convert: reject (the row goes to on_error), null, or error (stop the run)"`
	order     []string
}

type castLong struct {
	Columns   map[string]string `yaml:"columns"`
	OnInvalid string            `yaml:"on_invalid"`
}

// UnmarshalYAML accepts the long and the short form.
func (c *CastConfig) UnmarshalYAML(n ast.Node) error {
	long := castLong{OnInvalid: c.OnInvalid}
	var short map[string]string
	order, err := decodeMapForm(n, &long, []string{"columns", "on_invalid"}, "columns", &short)
	if err != nil {
		return err
	}
	if short != nil {
		c.Columns = short
	} else {
		c.Columns, c.OnInvalid = long.Columns, long.OnInvalid
	}
	c.order = order
	return nil
}

// Validate checks the types and the policy.
func (c *CastConfig) Validate() error {
	if len(c.Columns) == 0 {
		return errors.New("name at least one column to cast (column: type)")
	}
	for col, name := range c.Columns {
		if _, err := parseType(name); err != nil {
			return fmt.Errorf("column %q: %w", col, err)
		}
	}
	switch c.OnInvalid {
	case invalidReject, invalidNull, invalidError:
	default:
		return fmt.Errorf("on_invalid must be reject, null or error, not %q", c.OnInvalid)
	}
	return nil
}

type castT struct {
	cfg   *CastConfig
	to    map[string]arrow.DataType
	order []string
}

func (t *castT) Apply(_ context.Context, in pipeline.Batch) (pipeline.Batch, []pipeline.RowError, error) {
	s := in.Schema()
	repl := map[int]arrow.Array{}
	var bad map[int]error
	for _, col := range t.order {
		idx, err := columnIndex(s, col)
		if err != nil {
			releaseMap(repl)
			return nil, nil, stageErr("cast", err)
		}
		src := in.Column(idx)
		to := t.to[col]
		if arrow.TypeEqual(src.DataType(), to) {
			continue
		}
		if !castable(src.DataType(), to) {
			releaseMap(repl)
			return nil, nil, stageErr("cast", fmt.Errorf("column %q: cannot convert %s to %s", col, src.DataType(), to))
		}
		b := array.NewBuilder(memory.DefaultAllocator, to)
		b.Reserve(src.Len())
		for i := range src.Len() {
			c, null := readCell(src, i)
			if null {
				b.AppendNull()
				continue
			}
			if err := appendCell(b, c); err != nil {
				err = fmt.Errorf("column %q: %w", col, err)
				switch t.cfg.OnInvalid {
				case invalidError:
					b.Release()
					releaseMap(repl)
					return nil, nil, stageErr("cast", fmt.Errorf("row %d: %w", i, err))
				case invalidReject:
					if bad == nil {
						bad = map[int]error{}
					}
					if _, seen := bad[i]; !seen {
						bad[i] = err
					}
				}
				b.AppendNull()
			}
		}
		repl[idx] = b.NewArray()
		b.Release()
	}
	if len(repl) == 0 {
		return in, nil, nil
	}
	out := replaceColumns(in, repl, nil, nil, nil)
	if len(bad) == 0 {
		return out, nil, nil
	}
	rej := make([]pipeline.RowError, 0, len(bad))
	for i := range int(in.NumRows()) {
		if err, ok := bad[i]; ok {
			rej = append(rej, pipeline.RowError{Row: i, Err: err})
		}
	}
	kept, err := withoutRows(out, rej)
	if kept != out {
		out.Release()
	}
	if err != nil {
		return nil, nil, stageErr("cast", err)
	}
	return kept, rej, nil
}

func releaseMap(m map[int]arrow.Array) {
	for _, a := range m {
		a.Release()
	}
}

// cell is one value read from a column.
type cell struct {
	kind vkind
	i    int64
	u    uint64
	uns  bool
	f    float64
	b    bool
	s    string
	t    time.Time
	date bool
}

func castable(from, to arrow.DataType) bool {
	if k := columnKind(from); k == kNull {
		return false
	}
	return columnKind(to) != kNull
}

// readCell reads row i of a (null reports a null value).
func readCell(a arrow.Array, i int) (cell, bool) {
	if a.IsNull(i) {
		return cell{}, true
	}
	switch c := a.(type) {
	case *array.Uint64:
		return cell{kind: kInt, u: c.Value(i), uns: true, i: int64(c.Value(i))}, false
	case *array.Date32:
		return cell{kind: kTime, t: c.Value(i).ToTime().UTC(), date: true}, false
	case *array.Date64:
		return cell{kind: kTime, t: c.Value(i).ToTime().UTC(), date: true}, false
	}
	v := rowValue(a, i)
	switch x := v.(type) {
	case int:
		return cell{kind: kInt, i: int64(x)}, false
	case float64:
		return cell{kind: kFloat, f: x}, false
	case bool:
		return cell{kind: kBool, b: x}, false
	case string:
		return cell{kind: kString, s: x}, false
	case time.Time:
		return cell{kind: kTime, t: x}, false
	}
	return cell{}, true
}

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05.999999999", "2006-01-02 15:04:05", "2006-01-02"}

func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time (RFC 3339, \"2006-01-02 15:04:05\" or \"2006-01-02\")", s)
}

// cellInt converts a cell to an integer within [lo, hi].
func cellInt(c cell, lo, hi float64) (int64, uint64, error) {
	switch c.kind {
	case kInt:
		if c.uns {
			if float64(c.u) > hi {
				return 0, 0, fmt.Errorf("%d is out of range", c.u)
			}
			return int64(c.u), c.u, nil
		}
		if float64(c.i) < lo || float64(c.i) > hi {
			return 0, 0, fmt.Errorf("%d is out of range", c.i)
		}
		return c.i, uint64(c.i), nil
	case kFloat:
		if c.f != math.Trunc(c.f) || c.f < lo || c.f > hi {
			return 0, 0, fmt.Errorf("%v is not an integer in range", c.f)
		}
		return int64(c.f), uint64(c.f), nil
	case kBool:
		if c.b {
			return 1, 1, nil
		}
		return 0, 0, nil
	case kString:
		s := strings.TrimSpace(c.s)
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return cellInt(cell{kind: kInt, i: i}, lo, hi)
		}
		if u, err := strconv.ParseUint(s, 10, 64); err == nil {
			return cellInt(cell{kind: kInt, u: u, uns: true}, lo, hi)
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return cellInt(cell{kind: kFloat, f: f}, lo, hi)
		}
		return 0, 0, fmt.Errorf("%q is not an integer", c.s)
	case kTime:
		return c.t.UnixMicro(), uint64(c.t.UnixMicro()), nil
	}
	return 0, 0, errors.New("no value")
}

func cellFloat(c cell) (float64, error) {
	switch c.kind {
	case kInt:
		if c.uns {
			return float64(c.u), nil
		}
		return float64(c.i), nil
	case kFloat:
		return c.f, nil
	case kBool:
		if c.b {
			return 1, nil
		}
		return 0, nil
	case kString:
		f, err := strconv.ParseFloat(strings.TrimSpace(c.s), 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", c.s)
		}
		return f, nil
	}
	return 0, fmt.Errorf("a %s is not a number", c.kind)
}

func cellString(c cell) string {
	switch c.kind {
	case kInt:
		if c.uns {
			return strconv.FormatUint(c.u, 10)
		}
		return strconv.FormatInt(c.i, 10)
	case kFloat:
		return strconv.FormatFloat(c.f, 'g', -1, 64)
	case kBool:
		return strconv.FormatBool(c.b)
	case kTime:
		if c.date {
			return c.t.Format("2006-01-02")
		}
		return c.t.Format(time.RFC3339Nano)
	}
	return c.s
}

// appendCell converts c to the builder's type and appends it; a value
// that does not convert is an error and nothing is appended.
func appendCell(b array.Builder, c cell) error {
	switch bb := b.(type) {
	case *array.Int8Builder:
		return appendInt(c, math.MinInt8, math.MaxInt8, func(i int64, _ uint64) { bb.Append(int8(i)) })
	case *array.Int16Builder:
		return appendInt(c, math.MinInt16, math.MaxInt16, func(i int64, _ uint64) { bb.Append(int16(i)) })
	case *array.Int32Builder:
		return appendInt(c, math.MinInt32, math.MaxInt32, func(i int64, _ uint64) { bb.Append(int32(i)) })
	case *array.Int64Builder:
		return appendInt(c, math.MinInt64, math.MaxInt64, func(i int64, _ uint64) { bb.Append(i) })
	case *array.Uint8Builder:
		return appendInt(c, 0, math.MaxUint8, func(_ int64, u uint64) { bb.Append(uint8(u)) })
	case *array.Uint16Builder:
		return appendInt(c, 0, math.MaxUint16, func(_ int64, u uint64) { bb.Append(uint16(u)) })
	case *array.Uint32Builder:
		return appendInt(c, 0, math.MaxUint32, func(_ int64, u uint64) { bb.Append(uint32(u)) })
	case *array.Uint64Builder:
		return appendInt(c, 0, math.MaxUint64, func(_ int64, u uint64) { bb.Append(u) })
	case *array.Float32Builder:
		f, err := cellFloat(c)
		if err != nil {
			return err
		}
		bb.Append(float32(f))
		return nil
	case *array.Float64Builder:
		f, err := cellFloat(c)
		if err != nil {
			return err
		}
		bb.Append(f)
		return nil
	case *array.BooleanBuilder:
		switch c.kind {
		case kBool:
			bb.Append(c.b)
		case kInt, kFloat:
			f, _ := cellFloat(c)
			bb.Append(f != 0)
		case kString:
			v, err := strconv.ParseBool(strings.TrimSpace(c.s))
			if err != nil {
				return fmt.Errorf("%q is not a boolean", c.s)
			}
			bb.Append(v)
		default:
			return fmt.Errorf("a %s is not a boolean", c.kind)
		}
		return nil
	case *array.StringBuilder:
		bb.Append(cellString(c))
		return nil
	case *array.TimestampBuilder:
		t, err := cellTime(c)
		if err != nil {
			return err
		}
		ts, err := arrow.TimestampFromTime(t, bb.Type().(*arrow.TimestampType).Unit)
		if err != nil {
			return fmt.Errorf("%s is out of range", t)
		}
		bb.Append(ts)
		return nil
	case *array.Date32Builder:
		t, err := cellTime(c)
		if err != nil {
			return err
		}
		bb.Append(arrow.Date32FromTime(t))
		return nil
	case *array.Date64Builder:
		t, err := cellTime(c)
		if err != nil {
			return err
		}
		bb.Append(arrow.Date64FromTime(t))
		return nil
	}
	return fmt.Errorf("cannot convert to %s", b.Type())
}

func appendInt(c cell, lo, hi float64, add func(int64, uint64)) error {
	i, u, err := cellInt(c, lo, hi)
	if err != nil {
		return err
	}
	add(i, u)
	return nil
}

func cellTime(c cell) (time.Time, error) {
	switch c.kind {
	case kTime:
		return c.t, nil
	case kString:
		return parseTime(c.s)
	}
	return time.Time{}, fmt.Errorf("a %s is not a time", c.kind)
}

// FillNullConfig configures fill_null. The short form is the column
// mapping itself: `fill_null: {income: 0}`.
type FillNullConfig struct {
	Columns map[string]any `yaml:"columns" doc:"column → value to put where the column is null; the value is converted to the column's type (short form: the mapping itself)"`
	order   []string
}

// UnmarshalYAML accepts the long and the short form.
func (c *FillNullConfig) UnmarshalYAML(n ast.Node) error {
	var long struct {
		Columns map[string]any `yaml:"columns"`
	}
	var short map[string]any
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

// Validate checks the values.
func (c *FillNullConfig) Validate() error {
	if len(c.Columns) == 0 {
		return errors.New("name at least one column to fill (column: value)")
	}
	for col, v := range c.Columns {
		if _, ok := cellOf(v); !ok {
			return fmt.Errorf("column %q: the fill value must be a number, string or boolean, not %T", col, v)
		}
	}
	return nil
}

// cellOf converts a YAML scalar to a cell.
func cellOf(v any) (cell, bool) {
	switch x := v.(type) {
	case string:
		return cell{kind: kString, s: x}, true
	case bool:
		return cell{kind: kBool, b: x}, true
	case float64:
		return cell{kind: kFloat, f: x}, true
	case float32:
		return cell{kind: kFloat, f: float64(x)}, true
	case uint64:
		return cell{kind: kInt, u: x, uns: true, i: int64(x)}, true
	}
	if i, ok := toInt(v); ok {
		return cell{kind: kInt, i: i}, true
	}
	return cell{}, false
}

type fillNullT struct{ cfg *FillNullConfig }

func (t *fillNullT) Apply(_ context.Context, in pipeline.Batch) (pipeline.Batch, []pipeline.RowError, error) {
	s := in.Schema()
	repl := map[int]arrow.Array{}
	for _, col := range orderedKeys(t.cfg.Columns, t.cfg.order) {
		idx, err := columnIndex(s, col)
		if err != nil {
			releaseMap(repl)
			return nil, nil, stageErr("fill_null", err)
		}
		src := in.Column(idx)
		if src.NullN() == 0 {
			continue
		}
		fillv, _ := cellOf(t.cfg.Columns[col])
		a, err := fillColumn(src, fillv)
		if err != nil {
			releaseMap(repl)
			return nil, nil, stageErr("fill_null", fmt.Errorf("column %q: %w", col, err))
		}
		repl[idx] = a
	}
	if len(repl) == 0 {
		return in, nil, nil
	}
	return replaceColumns(in, repl, nil, nil, nil), nil, nil
}

// fillColumn returns src with its nulls replaced by v (converted to
// src's type).
func fillColumn(src arrow.Array, v cell) (arrow.Array, error) {
	switch c := src.(type) {
	case *array.Float64:
		f, err := cellFloat(v)
		if err != nil {
			return nil, err
		}
		out := make([]float64, c.Len())
		copy(out, c.Float64Values())
		for i := range out {
			if c.IsNull(i) {
				out[i] = f
			}
		}
		return float64Array(out, nil), nil
	case *array.Int64:
		i64, _, err := cellInt(v, math.MinInt64, math.MaxInt64)
		if err != nil {
			return nil, err
		}
		out := make([]int64, c.Len())
		copy(out, c.Int64Values())
		for i := range out {
			if c.IsNull(i) {
				out[i] = i64
			}
		}
		return int64Array(out, nil), nil
	}
	if !castable(src.DataType(), src.DataType()) {
		return nil, fmt.Errorf("columns of type %s cannot be filled", src.DataType())
	}
	b := array.NewBuilder(memory.DefaultAllocator, src.DataType())
	defer b.Release()
	probe := array.NewBuilder(memory.DefaultAllocator, src.DataType())
	defer probe.Release()
	if err := appendCell(probe, v); err != nil {
		return nil, fmt.Errorf("fill value: %w", err)
	}
	b.Reserve(src.Len())
	for i := range src.Len() {
		c, null := readCell(src, i)
		if null {
			c = v
		}
		if err := appendCell(b, c); err != nil {
			return nil, err
		}
	}
	return b.NewArray(), nil
}
