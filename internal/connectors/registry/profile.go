package registry

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/big"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/kilnai/kiln/internal/connectors/http/jsonbatch"
	"github.com/kilnai/kiln/internal/registry/dataset"
)

// Profile sizes.
const (
	reservoirSize = 10000 // numeric values sampled for quantiles and the histogram
	histBins      = 20
	topK          = 20   // categories reported
	catCapacity   = 2000 // categories counted exactly before Misra-Gries pruning
	hllBits       = 12   // 4096 HyperLogLog registers (≈1.6% standard error)
)

// profiler accumulates a Profile over batches.
type profiler struct {
	rows int64
	cols []*colAcc
}

type colAcc struct {
	p    dataset.Column
	kind int
	// numeric: Welford mean/variance, min/max, reservoir
	n, mean, m2, min, max float64
	seen                  int64
	res                   []float64
	rng                   *rand.Rand
	// categorical
	cats    map[string]int64
	pruned  bool
	hll     [1 << hllBits]uint8
	tmin    int64
	tmax    int64
	anyTime bool
}

const (
	kindNumeric = iota
	kindCategorical
	kindTemporal
)

func kindOf(dt arrow.DataType) int {
	switch dt.ID() {
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64,
		arrow.FLOAT16, arrow.FLOAT32, arrow.FLOAT64, arrow.DECIMAL128, arrow.DECIMAL256:
		return kindNumeric
	case arrow.TIMESTAMP, arrow.DATE32, arrow.DATE64:
		return kindTemporal
	}
	return kindCategorical
}

func (p *profiler) add(b arrow.RecordBatch) {
	if p.cols == nil {
		for i, f := range b.Schema().Fields() {
			k := kindOf(f.Type)
			c := &colAcc{kind: k, min: math.Inf(1), max: math.Inf(-1), rng: rand.New(rand.NewPCG(uint64(i)+1, 0x6b696c6e))}
			c.p = dataset.Column{Name: f.Name, Type: f.Type.String(), Kind: [...]string{"numeric", "categorical", "temporal"}[k]}
			if k == kindCategorical {
				c.cats = map[string]int64{}
			}
			p.cols = append(p.cols, c)
		}
	}
	n := int(b.NumRows())
	p.rows += int64(n)
	for ci, c := range p.cols {
		if ci >= int(b.NumCols()) {
			break
		}
		a := b.Column(ci)
		for r := range n {
			if a.IsNull(r) {
				c.p.Nulls++
				continue
			}
			c.p.Count++
			switch c.kind {
			case kindNumeric:
				if v, ok := numeric(a, r); ok {
					c.addNumber(v)
				}
			case kindTemporal:
				if t, ok := temporal(a, r); ok {
					us := t.UnixMicro()
					if !c.anyTime || us < c.tmin {
						c.tmin = us
					}
					if !c.anyTime || us > c.tmax {
						c.tmax = us
					}
					c.anyTime = true
				}
			default:
				if sa, ok := a.(*array.String); ok {
					c.addCategory(sa.Value(r))
				} else {
					c.addCategory(a.ValueStr(r))
				}
			}
		}
	}
}

func numeric(a arrow.Array, i int) (float64, bool) {
	switch t := a.(type) {
	case *array.Int64:
		return float64(t.Value(i)), true
	case *array.Int32:
		return float64(t.Value(i)), true
	case *array.Int16:
		return float64(t.Value(i)), true
	case *array.Int8:
		return float64(t.Value(i)), true
	case *array.Uint64:
		return float64(t.Value(i)), true
	case *array.Uint32:
		return float64(t.Value(i)), true
	case *array.Uint16:
		return float64(t.Value(i)), true
	case *array.Uint8:
		return float64(t.Value(i)), true
	case *array.Float64:
		v := t.Value(i)
		return v, !math.IsNaN(v) && !math.IsInf(v, 0)
	case *array.Float32:
		v := float64(t.Value(i))
		return v, !math.IsNaN(v) && !math.IsInf(v, 0)
	case *array.Float16:
		v := float64(t.Value(i).Float32())
		return v, !math.IsNaN(v) && !math.IsInf(v, 0)
	case *array.Decimal128:
		f, _ := new(big.Float).SetString(t.ValueStr(i))
		if f == nil {
			return 0, false
		}
		v, _ := f.Float64()
		return v, true
	case *array.Decimal256:
		f, _ := new(big.Float).SetString(t.ValueStr(i))
		if f == nil {
			return 0, false
		}
		v, _ := f.Float64()
		return v, true
	}
	return 0, false
}

func temporal(a arrow.Array, i int) (time.Time, bool) {
	switch t := a.(type) {
	case *array.Timestamp:
		return t.Value(i).ToTime(t.DataType().(*arrow.TimestampType).Unit), true
	case *array.Date32:
		return t.Value(i).ToTime(), true
	case *array.Date64:
		return t.Value(i).ToTime(), true
	}
	return time.Time{}, false
}

func (c *colAcc) addNumber(v float64) {
	c.n++
	d := v - c.mean
	c.mean += d / c.n
	c.m2 += d * (v - c.mean)
	c.min = math.Min(c.min, v)
	c.max = math.Max(c.max, v)
	// Reservoir sampling (algorithm R) with a seeded generator: the same
	// input in the same order gives the same profile.
	c.seen++
	if len(c.res) < reservoirSize {
		c.res = append(c.res, v)
	} else if j := c.rng.Int64N(c.seen); j < reservoirSize {
		c.res[j] = v
	}
}

func (c *colAcc) addCategory(v string) {
	// FNV-1a, inline (no allocation per value).
	h := uint64(14695981039346656037)
	for i := 0; i < len(v); i++ {
		h ^= uint64(v[i])
		h *= 1099511628211
	}
	x := mix(h)
	idx := x >> (64 - hllBits)
	rank := uint8(bits.LeadingZeros64(x<<hllBits|1<<(hllBits-1)) + 1)
	if rank > c.hll[idx] {
		c.hll[idx] = rank
	}
	if n, ok := c.cats[v]; ok {
		c.cats[v] = n + 1
		return
	}
	if len(c.cats) < catCapacity {
		// v may point into the batch's memory: keep a copy.
		c.cats[strings.Clone(v)] = 1
		return
	}
	// Misra-Gries: a new value with the table full decrements every
	// count; counts that reach zero leave.
	c.pruned = true
	for k, n := range c.cats {
		if n <= 1 {
			delete(c.cats, k)
		} else {
			c.cats[k] = n - 1
		}
	}
}

// mix is splitmix64's finaliser (spreads FNV's bits for HyperLogLog).
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func (c *colAcc) distinct() int64 {
	const m = 1 << hllBits
	sum, zeros := 0.0, 0
	for _, r := range c.hll {
		sum += math.Ldexp(1, -int(r))
		if r == 0 {
			zeros++
		}
	}
	alpha := 0.7213 / (1 + 1.079/m)
	e := alpha * m * m / sum
	if e <= 2.5*m && zeros > 0 {
		e = m * math.Log(float64(m)/float64(zeros))
	}
	if !c.pruned && int64(len(c.cats)) < int64(catCapacity) {
		return int64(len(c.cats)) // exact
	}
	return int64(math.Round(e))
}

// profile finishes the statistics.
func (p *profiler) profile() *dataset.Profile {
	out := &dataset.Profile{Rows: p.rows, Columns: []*dataset.Column{}}
	for _, c := range p.cols {
		cp := c.p
		switch c.kind {
		case kindNumeric:
			if c.n > 0 {
				mean, std, lo, hi := c.mean, math.Sqrt(c.m2/c.n), c.min, c.max
				cp.Mean, cp.Std, cp.Min, cp.Max = &mean, &std, &lo, &hi
				s := slices.Clone(c.res)
				sort.Float64s(s)
				cp.Quantiles = map[string]float64{}
				for _, q := range []float64{0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99} {
					cp.Quantiles[qName(q)] = quantile(s, q)
				}
				cp.Histogram = histogram(s, lo, hi)
			}
		case kindTemporal:
			if c.anyTime {
				cp.First = time.UnixMicro(c.tmin).UTC().Format(time.RFC3339Nano)
				cp.Last = time.UnixMicro(c.tmax).UTC().Format(time.RFC3339Nano)
			}
		default:
			if cp.Count > 0 {
				cp.Distinct = c.distinct()
			}
			for v, n := range c.cats {
				cp.Top = append(cp.Top, dataset.Category{Value: v, Count: n})
			}
			sort.Slice(cp.Top, func(i, j int) bool {
				if cp.Top[i].Count != cp.Top[j].Count {
					return cp.Top[i].Count > cp.Top[j].Count
				}
				return cp.Top[i].Value < cp.Top[j].Value
			})
			if len(cp.Top) > topK {
				cp.Top = cp.Top[:topK]
			}
			cp.TopIsApprox = c.pruned
		}
		out.Columns = append(out.Columns, &cp)
	}
	return out
}

func qName(q float64) string {
	return "p" + big.NewFloat(q*100).Text('f', -1)
}

// quantile of sorted s by linear interpolation.
func quantile(s []float64, q float64) float64 {
	if len(s) == 1 {
		return s[0]
	}
	pos := q * float64(len(s)-1)
	i := int(pos)
	if i >= len(s)-1 {
		return s[len(s)-1]
	}
	f := pos - float64(i)
	return s[i]*(1-f) + s[i+1]*f
}

// histogram of sorted sample s over [lo, hi] in histBins equal bins.
func histogram(s []float64, lo, hi float64) *dataset.Histogram {
	bins := histBins
	if hi == lo {
		return &dataset.Histogram{Edges: []float64{lo, hi}, Fractions: []float64{1}}
	}
	h := &dataset.Histogram{Edges: make([]float64, bins+1), Fractions: make([]float64, bins)}
	w := (hi - lo) / float64(bins)
	for i := range h.Edges {
		h.Edges[i] = lo + w*float64(i)
	}
	h.Edges[bins] = hi
	for _, v := range s {
		b := int((v - lo) / w)
		b = min(max(b, 0), bins-1)
		h.Fractions[b]++
	}
	for i := range h.Fractions {
		h.Fractions[i] /= float64(len(s))
	}
	return h
}

// digester computes a dataset digest over canonical rows: every row is
// its JSON object (keys in column order, the jsonbatch encoding) and the
// schema (names and types) is part of the digest. Ordered digests hash
// the rows in the order written; unordered digests add up each row's
// SHA-256 modulo 2^256 (a multiset hash: the same rows in any order, as
// parallel transform workers may deliver them, give the same digest).
type digester struct {
	ordered bool
	schema  string
	h       interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
	}
	sum  [4]uint64 // little-endian limbs of the 256-bit sum
	rows int64
	buf  []byte
}

func newDigester(ordered bool) *digester {
	return &digester{ordered: ordered, h: sha256.New()}
}

func (d *digester) add(b arrow.RecordBatch) {
	if d.schema == "" {
		for _, f := range b.Schema().Fields() {
			d.schema += f.Name + ":" + f.Type.String() + "\n"
		}
		if d.ordered {
			_, _ = d.h.Write([]byte(d.schema))
		}
	}
	for r := range int(b.NumRows()) {
		d.buf = jsonbatch.AppendRow(d.buf[:0], b, r)
		d.buf = append(d.buf, '\n')
		d.rows++
		if d.ordered {
			_, _ = d.h.Write(d.buf)
			continue
		}
		rh := sha256.Sum256(d.buf)
		var carry uint64
		for i := range d.sum {
			limb := binary.LittleEndian.Uint64(rh[i*8:])
			d.sum[i], carry = bits.Add64(d.sum[i], limb, carry)
		}
	}
}

// digest returns "sha256:<hex>".
func (d *digester) digest() string {
	if d.ordered {
		return "sha256:" + hex.EncodeToString(d.h.Sum(nil))
	}
	h := sha256.New()
	h.Write([]byte("kiln-dataset-unordered-v1\n" + d.schema))
	var b [40]byte
	for i, l := range d.sum {
		binary.LittleEndian.PutUint64(b[i*8:], l)
	}
	binary.LittleEndian.PutUint64(b[32:], uint64(d.rows))
	h.Write(b[:])
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
