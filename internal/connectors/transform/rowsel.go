package transform

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/cespare/xxhash/v2"

	"github.com/kilnai/kiln/internal/pipeline"
)

func init() {
	pipeline.RegisterTransform(pipeline.TransformSpec{
		Spec: pipeline.Spec{
			Name: "dedupe",
			Summary: "drop rows whose key (some columns, or the whole row) was seen before in the run, keeping the first; " +
				"remembers 128-bit hashes of the keys, at most max_keys of them",
			Config: func() any { return &DedupeConfig{MaxKeys: 1_000_000, OnFull: "error"} },
			Examples: []string{
				"{columns: [customer_id]}",
				"{max_keys: 5000000, on_full: forget}",
			},
		},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Transform, error) {
			return &dedupeT{cfg: cfg.(*DedupeConfig), seen: map[[2]uint64]struct{}{}}, nil
		},
	})
	pipeline.RegisterTransform(pipeline.TransformSpec{
		Spec: pipeline.Spec{
			Name: "sample",
			Summary: "keep a reproducible random sample of rows: a fraction, or exactly n rows; a row is picked by a seeded " +
				"hash of its content (or of the by columns), so a re-run picks the same rows",
			Config: func() any { return &SampleConfig{} },
			Examples: []string{
				"{fraction: 0.1, seed: 42}",
				"{n: 1000, seed: 7, by: [customer_id]}",
			},
		},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Transform, error) {
			return &sampleT{cfg: cfg.(*SampleConfig)}, nil
		},
	})
	pipeline.RegisterTransform(pipeline.TransformSpec{
		Spec: pipeline.Spec{
			Name: "split",
			Summary: "label rows train/test reproducibly: adds a column holding labels[0] for about fraction of the rows and labels[1] " +
				"for the rest, chosen by a seeded hash of the row (or of the by columns); route them with a filter on that column",
			Config: func() any {
				return &SplitConfig{Fraction: 0.8, Column: "split", Labels: []string{"train", "test"}}
			},
			Examples: []string{
				"{fraction: 0.8, seed: 1}",
				"{fraction: 0.7, seed: 1, by: [customer_id], column: fold, labels: [fit, holdout]}",
			},
		},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Transform, error) {
			return &splitT{cfg: cfg.(*SplitConfig)}, nil
		},
	})
}

// rowHasher hashes rows of a batch (some columns or all) with a seed.
type rowHasher struct {
	cols []arrow.Array
	buf  []byte
}

func newRowHasher(in pipeline.Batch, by []string) (*rowHasher, error) {
	h := &rowHasher{}
	if len(by) == 0 {
		h.cols = in.Columns()
		return h, nil
	}
	for _, c := range by {
		idx, err := columnIndex(in.Schema(), c)
		if err != nil {
			return nil, err
		}
		h.cols = append(h.cols, in.Column(idx))
	}
	return h, nil
}

// key encodes row i's values (type-tagged, length-prefixed).
func (h *rowHasher) key(i int) []byte {
	b := h.buf[:0]
	for _, a := range h.cols {
		if a.IsNull(i) {
			b = append(b, 0)
			continue
		}
		switch c := a.(type) {
		case *array.Int64:
			b = append(b, 1)
			b = binary.LittleEndian.AppendUint64(b, uint64(c.Value(i)))
		case *array.Float64:
			f := c.Value(i)
			if f == 0 {
				f = 0 // -0 and +0 are the same value
			}
			b = append(b, 2)
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
		case *array.String:
			s := c.Value(i)
			b = append(b, 3)
			b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
			b = append(b, s...)
		default:
			s := a.ValueStr(i)
			b = append(b, 4)
			b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
			b = append(b, s...)
		}
	}
	h.buf = b
	return b
}

// unit maps a seeded hash of row i to [0, 1).
func (h *rowHasher) unit(seed uint64, i int) float64 {
	d := xxhash.NewWithSeed(seed)
	_, _ = d.Write(h.key(i))
	return float64(d.Sum64()>>11) / (1 << 53)
}

// DedupeConfig configures dedupe.
type DedupeConfig struct {
	Columns []string `yaml:"columns" doc:"the key columns (default: the whole row)"`
	MaxKeys int      `yaml:"max_keys" doc:"most distinct keys remembered (16 bytes each plus map overhead, about 50 bytes per key)"`
	OnFull  string   `yaml:"on_full" doc:"when max_keys keys are remembered: error (stop the run) or forget (start remembering afresh; duplicates of forgotten keys then pass)"`
}

// Validate checks the options.
func (c *DedupeConfig) Validate() error {
	if c.MaxKeys <= 0 {
		return errors.New("max_keys must be positive")
	}
	if c.OnFull != "error" && c.OnFull != "forget" {
		return fmt.Errorf("on_full must be error or forget, not %q", c.OnFull)
	}
	return nil
}

type dedupeT struct {
	cfg  *DedupeConfig
	mu   sync.Mutex
	seen map[[2]uint64]struct{}
}

// Ordered: which duplicate is first depends on the order of batches.
func (t *dedupeT) Ordered() bool { return true }

func (t *dedupeT) Apply(_ context.Context, in pipeline.Batch) (pipeline.Batch, []pipeline.RowError, error) {
	h, err := newRowHasher(in, t.cfg.Columns)
	if err != nil {
		return nil, nil, stageErr("dedupe", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := int(in.NumRows())
	keep := make([]bool, n)
	count := 0
	for i := range n {
		k := h.key(i)
		sum := [2]uint64{xxhash.Sum64(k), 0}
		d := xxhash.NewWithSeed(0x9e3779b97f4a7c15)
		_, _ = d.Write(k)
		sum[1] = d.Sum64()
		if _, dup := t.seen[sum]; dup {
			continue
		}
		if len(t.seen) >= t.cfg.MaxKeys {
			if t.cfg.OnFull == "error" {
				return nil, nil, stageErr("dedupe", fmt.Errorf("more than max_keys (%d) distinct keys; raise max_keys or set on_full: forget", t.cfg.MaxKeys))
			}
			clear(t.seen)
		}
		t.seen[sum] = struct{}{}
		keep[i] = true
		count++
	}
	out, err := keepRows(in, keep, count)
	if err != nil {
		return nil, nil, stageErr("dedupe", err)
	}
	return out, nil, nil
}

// SampleConfig configures sample.
type SampleConfig struct {
	Fraction float64  `yaml:"fraction" doc:"keep about this fraction of the rows (0 < fraction <= 1)"`
	N        int      `yaml:"n" doc:"keep n rows (all, if fewer; more only when rows with equal hashed values straddle the cut): needs a fitting pass over the source"`
	Seed     uint64   `yaml:"seed" doc:"the seed; another seed picks another sample"`
	By       []string `yaml:"by" doc:"hash only these columns (rows with equal values are kept or dropped together); default: the whole row"`
}

// Validate checks that exactly one of fraction and n is set.
func (c *SampleConfig) Validate() error {
	switch {
	case c.Fraction != 0 && c.N != 0:
		return errors.New("set fraction or n, not both")
	case c.Fraction == 0 && c.N == 0:
		return errors.New("set fraction (0 < fraction <= 1) or n (rows)")
	case c.N < 0:
		return errors.New("n must be positive")
	case c.N == 0 && !(c.Fraction > 0 && c.Fraction <= 1):
		return fmt.Errorf("fraction must be in (0, 1], not %v", c.Fraction)
	}
	return nil
}

// sampleT keeps rows whose hash falls under a threshold: fraction, or for
// n rows the n-th smallest hash of the data, found in the fitting pass.
type sampleT struct {
	cfg *SampleConfig

	mu        sync.Mutex
	heap      []float64 // the n smallest hashes seen while fitting (max-heap)
	fitted    bool
	threshold float64
}

var _ pipeline.Fitter = (*sampleT)(nil)

func (t *sampleT) NeedsFit() bool { return t.cfg.N > 0 && !t.fitted }

func (t *sampleT) Fit(_ context.Context, in pipeline.Batch) error {
	h, err := newRowHasher(in, t.cfg.By)
	if err != nil {
		return stageErr("sample", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range int(in.NumRows()) {
		u := h.unit(t.cfg.Seed, i)
		if len(t.heap) < t.cfg.N {
			t.heap = append(t.heap, u)
			siftUp(t.heap, len(t.heap)-1)
		} else if u < t.heap[0] {
			t.heap[0] = u
			siftDown(t.heap, 0)
		}
	}
	return nil
}

func (t *sampleT) FitDone(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fitted = true
	if len(t.heap) < t.cfg.N {
		t.threshold = math.Inf(1) // fewer rows than n: keep all
		return nil
	}
	t.threshold = t.heap[0]
	t.heap = nil
	return nil
}

func (t *sampleT) Params() map[string]any {
	if t.cfg.N == 0 {
		return nil
	}
	return map[string]any{"threshold": t.threshold}
}

func siftUp(h []float64, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p] >= h[i] {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func siftDown(h []float64, i int) {
	for {
		l, big := 2*i+1, i
		if l < len(h) && h[l] > h[big] {
			big = l
		}
		if r := l + 1; r < len(h) && h[r] > h[big] {
			big = r
		}
		if big == i {
			return
		}
		h[i], h[big] = h[big], h[i]
		i = big
	}
}

func (t *sampleT) Apply(_ context.Context, in pipeline.Batch) (pipeline.Batch, []pipeline.RowError, error) {
	if t.NeedsFit() {
		return nil, nil, stageErr("sample", errors.New("n rows need a fitting pass, which did not run"))
	}
	h, err := newRowHasher(in, t.cfg.By)
	if err != nil {
		return nil, nil, stageErr("sample", err)
	}
	n := int(in.NumRows())
	keep := make([]bool, n)
	count := 0
	if t.cfg.N == 0 {
		for i := range n {
			if h.unit(t.cfg.Seed, i) < t.cfg.Fraction {
				keep[i] = true
				count++
			}
		}
	} else {
		for i := range n {
			if h.unit(t.cfg.Seed, i) <= t.threshold {
				keep[i] = true
				count++
			}
		}
	}
	out, err := keepRows(in, keep, count)
	if err != nil {
		return nil, nil, stageErr("sample", err)
	}
	return out, nil, nil
}

// SplitConfig configures split.
type SplitConfig struct {
	Fraction float64  `yaml:"fraction" doc:"share of rows labelled labels[0] (0 < fraction < 1)"`
	Seed     uint64   `yaml:"seed" doc:"the seed; another seed gives another split"`
	Column   string   `yaml:"column" doc:"the label column added (or replaced)"`
	Labels   []string `yaml:"labels" doc:"the two labels: [first, rest]"`
	By       []string `yaml:"by" doc:"hash only these columns (rows with equal values, e.g. one customer's, land on the same side); default: the whole row"`
}

// Validate checks the options.
func (c *SplitConfig) Validate() error {
	if !(c.Fraction > 0 && c.Fraction < 1) {
		return fmt.Errorf("fraction must be between 0 and 1, not %v", c.Fraction)
	}
	if c.Column == "" {
		return errors.New("column must not be empty")
	}
	if len(c.Labels) != 2 || c.Labels[0] == c.Labels[1] {
		return fmt.Errorf("labels must be two different labels, not %v", c.Labels)
	}
	return nil
}

type splitT struct{ cfg *SplitConfig }

func (t *splitT) Apply(_ context.Context, in pipeline.Batch) (pipeline.Batch, []pipeline.RowError, error) {
	h, err := newRowHasher(in, t.cfg.By)
	if err != nil {
		return nil, nil, stageErr("split", err)
	}
	n := int(in.NumRows())
	a, b := t.cfg.Labels[0], t.cfg.Labels[1]
	offs := make([]int32, n+1)
	data := make([]byte, 0, n*max(len(a), len(b)))
	for i := range n {
		if h.unit(t.cfg.Seed, i) < t.cfg.Fraction {
			data = append(data, a...)
		} else {
			data = append(data, b...)
		}
		offs[i+1] = int32(len(data))
	}
	col := makeArray(arrow.BinaryTypes.String, n, []*memory.Buffer{nil, memory.NewBufferBytes(bytesOf(offs)), memory.NewBufferBytes(data)}, 0)
	return setColumn(in, t.cfg.Column, col), nil, nil
}

var _ pipeline.ParamLoader = (*sampleT)(nil)

// LoadParams takes the threshold an earlier run fitted.
func (t *sampleT) LoadParams(p map[string]any) error {
	if t.cfg.N == 0 {
		return nil
	}
	f, ok := toFloat(p["threshold"])
	if !ok || math.IsNaN(f) {
		return errors.New("no threshold in the parameters")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.threshold, t.fitted = f, true
	return nil
}

// Columns reports what sample hashes (by, or the whole row) and that it
// writes no column.
func (t *sampleT) Columns() (reads, writes []string) {
	if len(t.cfg.By) == 0 {
		return []string{"*"}, []string{}
	}
	return slices.Clone(t.cfg.By), []string{}
}
