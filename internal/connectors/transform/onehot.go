package transform

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/kilnai/kiln/internal/pipeline"
)

func init() {
	pipeline.RegisterTransform(pipeline.TransformSpec{
		Spec: pipeline.Spec{
			Name: "one_hot",
			Summary: "one indicator column per category of a column (<prefix><category>); categories given, " +
				"or learnt in a fitting pass (sorted) so that every batch has the same columns",
			Config: func() any {
				return &OneHotConfig{DropOriginal: true, Unknown: unknownIgnore, Type: "int8", MaxCategories: 1000}
			},
			Examples: []string{
				"{column: country}",
				"{column: country, categories: [DE, FR, GB], unknown: other, prefix: \"c_\", type: float64}",
			},
		},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Transform, error) {
			c := cfg.(*OneHotConfig)
			t := &oneHotT{cfg: c, prefix: c.Prefix}
			if t.prefix == "" {
				t.prefix = c.Column + "_"
			}
			if len(c.Categories) > 0 {
				t.setCategories(c.Categories)
			}
			return t, nil
		},
	})
	pipeline.RegisterTransform(pipeline.TransformSpec{
		Spec: pipeline.Spec{
			Name: "bucketize",
			Summary: "put a numeric column's values into buckets between boundaries: bucket i holds " +
				"boundaries[i-1] <= x < boundaries[i]; output the bucket number (int64) or its label",
			Config: func() any { return &BucketizeConfig{} },
			Examples: []string{
				"{column: age, boundaries: [18, 30, 50, 65]}",
				"{column: income, boundaries: [20000, 60000], labels: [low, mid, high], output: income_band}",
			},
		},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Transform, error) {
			c := cfg.(*BucketizeConfig)
			out := c.Output
			if out == "" {
				out = c.Column + "_bucket"
			}
			return &bucketizeT{cfg: c, output: out}, nil
		},
	})
}

// What one_hot does with a value outside its categories.
const (
	unknownIgnore = "ignore"
	unknownOther  = "other"
	unknownReject = "reject"
)

// OneHotConfig configures one_hot.
type OneHotConfig struct {
	Column        string   `yaml:"column" required:"true" doc:"the categorical column (string, integer or bool)"`
	Categories    []string `yaml:"categories" doc:"the categories, as written in the data; empty: learnt from the data in a fitting pass (sorted)"`
	Prefix        string   `yaml:"prefix" doc:"prefix of the indicator columns (default: the column name and _)"`
	DropOriginal  bool     `yaml:"drop_original" doc:"drop the categorical column"`
	Unknown       string   `yaml:"unknown" doc:"a value not among the categories: ignore (all indicators 0), other (an extra <prefix>other column), or reject (the row goes to on_error)"`
	Type          string   `yaml:"type" doc:"indicator type: int8, float64 or bool"`
	MaxCategories int      `yaml:"max_categories" doc:"most categories a fitting pass may learn (more is an error: probably not a categorical column)"`
}

// Validate checks the options.
func (c *OneHotConfig) Validate() error {
	if c.Column == "" {
		return errors.New("column must name the categorical column")
	}
	switch c.Unknown {
	case unknownIgnore, unknownOther, unknownReject:
	default:
		return fmt.Errorf("unknown must be ignore, other or reject, not %q", c.Unknown)
	}
	switch c.Type {
	case "int8", "float64", "bool":
	default:
		return fmt.Errorf("type must be int8, float64 or bool, not %q", c.Type)
	}
	if c.MaxCategories <= 0 {
		return errors.New("max_categories must be positive")
	}
	seen := map[string]bool{}
	for _, cat := range c.Categories {
		if seen[cat] {
			return fmt.Errorf("category %q is listed twice", cat)
		}
		seen[cat] = true
	}
	return nil
}

type oneHotT struct {
	cfg    *OneHotConfig
	prefix string

	mu      sync.Mutex // guards learnt while fitting
	learnt  map[string]bool
	cats    []string
	index   map[string]int
	short   *shortTable // index of categories when all are at most 7 bytes
	fitted  bool
	overCap bool
}

var (
	_ pipeline.Fitter      = (*oneHotT)(nil)
	_ pipeline.ParamLoader = (*oneHotT)(nil)
)

func (t *oneHotT) setCategories(cats []string) {
	t.cats = slices.Clone(cats)
	t.index = make(map[string]int, len(cats))
	for i, c := range cats {
		t.index[c] = i
	}
	t.short = newShortTable(cats)
	t.fitted = true
}

func (t *oneHotT) NeedsFit() bool { return !t.fitted }

func (t *oneHotT) Fit(_ context.Context, in pipeline.Batch) error {
	idx, err := columnIndex(in.Schema(), t.cfg.Column)
	if err != nil {
		return stageErr("one_hot", err)
	}
	a := in.Column(idx)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.learnt == nil {
		t.learnt = map[string]bool{}
	}
	err = eachCategory(a, func(_ int, v string) {
		if !t.learnt[v] {
			if len(t.learnt) >= t.cfg.MaxCategories {
				t.overCap = true
				return
			}
			t.learnt[strings.Clone(v)] = true
		}
	})
	if err != nil {
		return stageErr("one_hot", err)
	}
	if t.overCap {
		return stageErr("one_hot", fmt.Errorf("column %q has more than %d distinct values (max_categories)", t.cfg.Column, t.cfg.MaxCategories))
	}
	return nil
}

func (t *oneHotT) FitDone(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	cats := make([]string, 0, len(t.learnt))
	for c := range t.learnt {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	t.setCategories(cats)
	return nil
}

func (t *oneHotT) Params() map[string]any {
	return map[string]any{"categories": slices.Clone(t.cats)}
}

func (t *oneHotT) LoadParams(p map[string]any) error {
	raw, ok := p["categories"].([]any)
	if !ok {
		if s, isStrings := p["categories"].([]string); isStrings {
			t.setCategories(s)
			return nil
		}
		return errors.New("no categories in the parameters")
	}
	cats := make([]string, len(raw))
	for i, v := range raw {
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("category %d is %T, not a string", i, v)
		}
		cats[i] = s
	}
	t.setCategories(cats)
	return nil
}

// eachCategory calls fn with every non-null value of a as a string (the
// string is valid only during the call).
func eachCategory(a arrow.Array, fn func(i int, v string)) error {
	switch c := a.(type) {
	case *array.String:
		for i := range c.Len() {
			if c.IsValid(i) {
				fn(i, c.Value(i))
			}
		}
	case *array.LargeString:
		for i := range c.Len() {
			if c.IsValid(i) {
				fn(i, c.Value(i))
			}
		}
	case *array.Boolean:
		for i := range c.Len() {
			if c.IsValid(i) {
				fn(i, strconv.FormatBool(c.Value(i)))
			}
		}
	case *array.Dictionary:
		dict := c.Dictionary()
		names := make([]string, dict.Len())
		for j := range names {
			names[j] = dict.ValueStr(j)
		}
		for i := range c.Len() {
			if c.IsValid(i) {
				fn(i, names[c.GetValueIndex(i)])
			}
		}
	default:
		if columnKind(a.DataType()) != kInt {
			return fmt.Errorf("column of type %s is not categorical (string, integer or bool)", a.DataType())
		}
		ints, err := asInt64(a)
		if err != nil {
			return err
		}
		var buf []byte
		for i, v := range ints {
			if a.IsValid(i) {
				buf = strconv.AppendInt(buf[:0], v, 10)
				fn(i, string(buf))
			}
		}
	}
	return nil
}

func (t *oneHotT) Apply(_ context.Context, in pipeline.Batch) (pipeline.Batch, []pipeline.RowError, error) {
	if !t.fitted {
		return nil, nil, stageErr("one_hot", errors.New("categories were neither given nor fitted"))
	}
	idx, err := columnIndex(in.Schema(), t.cfg.Column)
	if err != nil {
		return nil, nil, stageErr("one_hot", err)
	}
	a := in.Column(idx)
	n := a.Len()
	k := len(t.cats)
	other := t.cfg.Unknown == unknownOther
	if other {
		k++
	}
	// which[i] is row i's category (-1: none).
	which := make([]int32, n)
	for i := range which {
		which[i] = -1
	}
	var rej []pipeline.RowError
	unknown := func(i int, v string) {
		switch {
		case other:
			which[i] = int32(len(t.cats))
		case t.cfg.Unknown == unknownReject:
			rej = append(rej, pipeline.RowError{Row: i, Err: fmt.Errorf("one_hot: column %q: %q is not a known category", t.cfg.Column, v)})
		}
	}
	if s, ok := a.(*array.String); ok {
		// The common case, without a call per row.
		offs, data := s.ValueOffsets(), s.ValueBytes()
		base := offs[0]
		for i := range n {
			if s.IsNull(i) {
				continue
			}
			v := data[offs[i]-base : offs[i+1]-base]
			if t.short != nil {
				if j := t.short.lookup(v); j >= 0 {
					which[i] = j
				} else {
					unknown(i, string(v))
				}
				continue
			}
			if j, ok := t.index[string(v)]; ok {
				which[i] = int32(j)
			} else {
				unknown(i, string(v))
			}
		}
	} else {
		err = eachCategory(a, func(i int, v string) {
			if j, ok := t.index[v]; ok {
				which[i] = int32(j)
			} else {
				unknown(i, v)
			}
		})
	}
	if err != nil {
		return nil, nil, stageErr("one_hot", err)
	}
	fields := make([]arrow.Field, k)
	var cols []arrow.Array
	if t.cfg.Type == "int8" {
		cols = int8Indicators(which, k)
	} else {
		for j := range k {
			cols = append(cols, indicator(t.cfg.Type, which, int32(j)))
		}
	}
	for j := range k {
		name := t.prefix
		if j < len(t.cats) {
			name += t.cats[j]
		} else {
			name += "other"
		}
		fields[j] = arrow.Field{Name: name, Type: cols[j].DataType()}
	}
	var drop map[int]bool
	if t.cfg.DropOriginal {
		drop = map[int]bool{idx: true}
	}
	out := replaceColumns(in, nil, fields, cols, drop)
	if len(rej) == 0 {
		return out, nil, nil
	}
	kept, err := withoutRows(out, rej)
	if kept != out {
		out.Release()
	}
	if err != nil {
		return nil, nil, stageErr("one_hot", err)
	}
	return kept, rej, nil
}

// int8Indicators builds the k int8 indicator columns in one pass over
// the rows' categories.
func int8Indicators(which []int32, k int) []arrow.Array {
	n := len(which)
	buf := make([]byte, k*n)
	for i, w := range which {
		if w >= 0 {
			buf[int(w)*n+i] = 1
		}
	}
	cols := make([]arrow.Array, k)
	for j := range k {
		cols[j] = makeArray(arrow.PrimitiveTypes.Int8, n, []*memory.Buffer{nil, memory.NewBufferBytes(buf[j*n : (j+1)*n : (j+1)*n])}, 0)
	}
	return cols
}

// indicator builds the column that is 1 (true) where which == j.
func indicator(typ string, which []int32, j int32) arrow.Array {
	n := len(which)
	switch typ {
	case "float64":
		vals := make([]float64, n)
		for i, w := range which {
			if w == j {
				vals[i] = 1
			}
		}
		return float64Array(vals, nil)
	case "bool":
		bits := make([]byte, bitutil.BytesForBits(int64(n)))
		for i, w := range which {
			if w == j {
				bitutil.SetBit(bits, i)
			}
		}
		return makeArray(arrow.FixedWidthTypes.Boolean, n, []*memory.Buffer{nil, memory.NewBufferBytes(bits)}, 0)
	}
	vals := make([]int8, n)
	for i, w := range which {
		if w == j {
			vals[i] = 1
		}
	}
	return makeArray(arrow.PrimitiveTypes.Int8, n, []*memory.Buffer{nil, memory.NewBufferBytes(bytesOf(vals))}, 0)
}

// BucketizeConfig configures bucketize.
type BucketizeConfig struct {
	Column     string    `yaml:"column" required:"true" doc:"the numeric column"`
	Boundaries []float64 `yaml:"boundaries" required:"true" doc:"increasing boundaries; n boundaries make n+1 buckets"`
	Labels     []string  `yaml:"labels" doc:"a label per bucket (n+1 of them): the output is then a string column"`
	Output     string    `yaml:"output" doc:"output column (default <column>_bucket; may be the column itself to replace it)"`
}

// Validate checks the boundaries and labels.
func (c *BucketizeConfig) Validate() error {
	if c.Column == "" {
		return errors.New("column must name the numeric column")
	}
	if len(c.Boundaries) == 0 {
		return errors.New("boundaries must list at least one boundary")
	}
	for i, b := range c.Boundaries {
		if math.IsNaN(b) {
			return errors.New("boundaries must be numbers")
		}
		if i > 0 && b <= c.Boundaries[i-1] {
			return fmt.Errorf("boundaries must increase: %v comes after %v", b, c.Boundaries[i-1])
		}
	}
	if len(c.Labels) > 0 && len(c.Labels) != len(c.Boundaries)+1 {
		return fmt.Errorf("%d boundaries make %d buckets, but %d labels are given", len(c.Boundaries), len(c.Boundaries)+1, len(c.Labels))
	}
	return nil
}

type bucketizeT struct {
	cfg    *BucketizeConfig
	output string
}

func (t *bucketizeT) Apply(_ context.Context, in pipeline.Batch) (pipeline.Batch, []pipeline.RowError, error) {
	idx, err := columnIndex(in.Schema(), t.cfg.Column)
	if err != nil {
		return nil, nil, stageErr("bucketize", err)
	}
	a := in.Column(idx)
	vals, err := asFloat64(a)
	if err != nil {
		return nil, nil, stageErr("bucketize", fmt.Errorf("column %q: %w", t.cfg.Column, err))
	}
	bounds := t.cfg.Boundaries
	buckets := make([]int64, len(vals))
	nulls := nullsOf(a)
	for i, x := range vals {
		if math.IsNaN(x) {
			if nulls == nil {
				nulls = make(nullMask, len(vals))
			}
			nulls[i] = true
			continue
		}
		// Number of boundaries <= x.
		lo, hi := 0, len(bounds)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if bounds[m] <= x {
				lo = m + 1
			} else {
				hi = m
			}
		}
		buckets[i] = int64(lo)
	}
	var col arrow.Array
	if len(t.cfg.Labels) > 0 {
		b := array.NewStringBuilder(memory.DefaultAllocator)
		b.Reserve(len(vals))
		for i, k := range buckets {
			if nulls != nil && nulls[i] {
				b.AppendNull()
			} else {
				b.Append(t.cfg.Labels[k])
			}
		}
		col = b.NewArray()
		b.Release()
	} else {
		col = int64Array(buckets, nulls)
	}
	return setColumn(in, t.output, col), nil, nil
}

// shortTable finds categories of at most 7 bytes by packing them into a
// uint64 (bytes and length) in an open-addressing table: faster than a
// string map on the hot path of one_hot.
type shortTable struct {
	keys  []uint64
	vals  []int32
	shift uint
}

func packShort(v []byte) (uint64, bool) {
	if len(v) > 7 {
		return 0, false
	}
	k := uint64(len(v)) << 56
	for i, b := range v {
		k |= uint64(b) << (8 * i)
	}
	return k, true
}

func newShortTable(cats []string) *shortTable {
	size := 16
	for size < 4*len(cats) {
		size *= 2
	}
	t := &shortTable{keys: make([]uint64, size), vals: make([]int32, size), shift: uint(64 - bitsOf(size))}
	for i := range t.vals {
		t.vals[i] = -1
	}
	for i, c := range cats {
		k, ok := packShort([]byte(c))
		if !ok {
			return nil
		}
		h := (k * 0x9E3779B97F4A7C15) >> t.shift
		for t.vals[h] >= 0 {
			h = (h + 1) & uint64(size-1)
		}
		t.keys[h], t.vals[h] = k, int32(i)
	}
	return t
}

func bitsOf(size int) int {
	n := 0
	for 1<<n < size {
		n++
	}
	return n
}

// lookup returns v's category index, or -1.
func (t *shortTable) lookup(v []byte) int32 {
	k, ok := packShort(v)
	if !ok {
		return -1
	}
	mask := uint64(len(t.keys) - 1)
	for h := (k * 0x9E3779B97F4A7C15) >> t.shift; ; h = (h + 1) & mask {
		switch {
		case t.vals[h] < 0:
			return -1
		case t.keys[h] == k:
			return t.vals[h]
		}
	}
}

// Columns reports the column one_hot reads and what it writes: the
// indicator columns (every name with its prefix, as the categories may not
// be known yet) and the original column when it is dropped.
func (t *oneHotT) Columns() (reads, writes []string) {
	writes = []string{t.prefix + "*"}
	if t.cfg.DropOriginal {
		writes = append(writes, t.cfg.Column)
	}
	return []string{t.cfg.Column}, writes
}

// KeepsRows is true unless unknown values are rejected: categories fitted
// on the data know every value in it, given ones may not.
func (t *oneHotT) KeepsRows() bool { return t.cfg.Unknown != unknownReject || !t.fitted }
