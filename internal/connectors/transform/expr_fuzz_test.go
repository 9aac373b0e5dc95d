package transform

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/internal/pipeline"
)

// fuzzBatch has every kind the column-wise path handles, with nulls.
func fuzzBatch(t testing.TB) pipeline.Batch {
	return mkBatch(t,
		c("a", 1, -2, 0, nil, 7, math.MaxInt64, math.MinInt64),
		c("b", 0.5, -1.25, 0.0, 3.0, nil, math.Inf(1), math.NaN()),
		c("s", "x", "", "yy", "x", nil, "zz", "é"),
		c("p", true, false, nil, true, false, true, false),
		c("i", int32(3), int32(-3), int32(0), int32(1), int32(2), nil, int32(5)),
		c("t", day(2024, 1, 2), day(2025, 6, 1), nil, day(1999, 12, 31), day(2024, 1, 2), day(2030, 1, 1), day(2025, 6, 1)),
	)
}

func day(y int, m time.Month, d int) time.Time {
	return time.Date(y, m, d, 12, 0, 0, 0, time.UTC)
}

// norm returns row i of v as a comparable Go value (nil for null).
func norm(v vec, i int) any {
	if v.konst {
		v = v.broadcast()
	}
	if v.isNull(i) {
		return nil
	}
	switch v.kind {
	case kBool:
		return v.b[i]
	case kInt:
		return v.i[i]
	case kFloat:
		f := v.f[i]
		if math.IsNaN(f) {
			return "NaN"
		}
		return f
	case kString:
		return v.s[i]
	case kTime:
		return v.t[i]
	}
	return nil
}

// checkPaths evaluates src both column-wise and row by row and compares
// the rows whose inputs are not null and that neither path rejected.
func checkPaths(t *testing.T, in pipeline.Batch, src string) {
	e, err := NewExpression(src)
	if err != nil {
		return
	}
	b, err := e.bind(in.Schema())
	if err != nil || b.root == nil {
		return
	}
	fast, err := b.eval(in)
	if err != nil {
		t.Fatalf("%q: column-wise: %v", src, err)
	}
	slow, err := b.evalRows(in)
	if err != nil {
		return // e.g. mixed result types the row path cannot store
	}
	rejected := map[int]bool{}
	for _, r := range fast.rej {
		rejected[r.Row] = true
	}
	for _, r := range slow.rej {
		rejected[r.Row] = true
	}
	usesNil := strings.Contains(src, "nil")
	for i := range int(in.NumRows()) {
		if rejected[i] {
			continue
		}
		nullIn := false
		for _, c := range b.cols {
			if c.ref && in.Column(c.idx).IsNull(i) {
				nullIn = true
			}
		}
		if nullIn || usesNil {
			continue
		}
		got, want := norm(fast.v, i), norm(slow.v, i)
		if g, ok := got.(int64); ok {
			if w, ok := want.(float64); ok && float64(g) == w {
				continue
			}
		}
		if got != want {
			t.Errorf("%q row %d: column-wise %#v (%s), row by row %#v (%s)", src, i, got, fast.v.kind, want, slow.v.kind)
		}
	}
}

var exprSeeds = []string{
	"a + 1", "a - b", "a * 2 - i", "a / 2", "b / 0", "a % 3", "a % i", "i % 2 == 1",
	"-a", "-b + a", "a > b", "a >= 1 and p", "p or a < 0", "not p", "!(a == 1)",
	"s == \"x\"", "s < \"y\"", "s != s", "b != b", "a == b", "i * i > 4", "a + i + 1",
	"p == true", "p != false", "(a + 1) * (b - 2) >= 0 || s > \"a\"", "a == nil", "1 + 2 * 3",
	"2.5 * a", "a < 2.5", "i / a", "0 - a", "a * a",
	"len(s) == 2", "abs(a) > 1", "abs(b)", "s in [\"x\", \"zz\"]", "a in [1, 7, -2]", "b in [0.5, 3]", "i in [3, 5.0]",
	"s startsWith \"x\"", "s endsWith s", "s contains \"y\"", "p ? a : i", "a > 0 ? s : \"neg\"", "p ? b : nil",
	"(a > 0 ? a : -a) == abs(a)",
	"t > date(\"2024-06-01\")", "t == t", "date(\"2000-01-01\") <= t and p", "t != nil", "len(\"abc\") + a",
}

func TestVectorMatchesVM(t *testing.T) {
	for _, src := range exprSeeds {
		t.Run(src, func(t *testing.T) {
			e, err := NewExpression(src)
			if err != nil {
				t.Fatal(err)
			}
			b, err := e.bind(fuzzBatch(t).Schema())
			if err != nil {
				t.Fatal(err)
			}
			if b.root == nil {
				t.Fatalf("%q should run column-wise", src)
			}
			checkPaths(t, fuzzBatch(t), src)
		})
	}
}

// FuzzExpression compiles arbitrary expressions against a fixed schema:
// no panics, and both evaluation paths agree.
func FuzzExpression(f *testing.F) {
	for _, s := range exprSeeds {
		f.Add(s)
	}
	f.Add("len(s) > 1 and s matches \"^x\"")
	f.Add("a ?? 0")
	in := fuzzBatch(f)
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > 256 {
			return
		}
		checkPaths(t, in, src)
	})
}
