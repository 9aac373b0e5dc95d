package transform

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/kilnai/kiln/internal/pipeline"
)

func TestSpecExamplesDecode(t *testing.T) {
	for _, s := range pipeline.Specs() {
		if s.Kind != pipeline.KindTransform {
			continue
		}
		for _, ex := range s.Examples {
			t.Run(s.Name+"/"+ex, func(t *testing.T) {
				if _, err := tryBuild(s.Name, ex); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func TestBadConfigs(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"select", "{columns: []}", "at least one"},
		{"select", "{columns: [\"[x\"]}", "bad column pattern"},
		{"select", "{colums: [a]}", "unknown key"},
		{"rename", "{a: b, c: b}", "both renamed"},
		{"cast", "{a: int128}", "unknown type"},
		{"cast", "{columns: {a: int8}, on_invalid: skip}", "on_invalid"},
		{"filter", "'age >= '", "unexpected token"},
		{"filter", "{}", "missing required field expr"},
		{"derive", "{x: 'a +* 2'}", "column \"x\""},
		{"fill_null", "{a: [1, 2]}", "number, string or boolean"},
		{"standardize", "{columns: [a], params: {b: {mean: 0, std: 1}}}", "not in columns"},
		{"standardize", "{columns: [a, a]}", "twice"},
		{"min_max", "{columns: [a], range: [1, 0]}", "range"},
		{"one_hot", "{column: c, unknown: keep}", "unknown must be"},
		{"one_hot", "{column: c, categories: [x, x]}", "twice"},
		{"bucketize", "{column: a, boundaries: [3, 1]}", "increase"},
		{"bucketize", "{column: a, boundaries: [1], labels: [x]}", "labels"},
		{"hash", "{columns: [e], salt: short}", "at least 16"},
		{"hash", "{columns: [e], salt: 0123456789abcdef, algorithm: md5}", "algorithm"},
		{"mask", "{columns: [e], char: \"**\"}", "one character"},
		{"mask", "{columns: [e], pattern: iban}", "pattern"},
		{"dedupe", "{on_full: drop}", "on_full"},
		{"sample", "{fraction: 0.5, n: 3}", "not both"},
		{"sample", "{fraction: 1.5}", "fraction"},
		{"sample", "{}", "set fraction"},
		{"split", "{fraction: 1}", "between 0 and 1"},
		{"split", "{labels: [a, a]}", "two different"},
	}
	for _, tc := range cases {
		t.Run(tc.name+" "+tc.body, func(t *testing.T) {
			_, err := tryBuild(tc.name, tc.body)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if !errors.Is(err, pipeline.ErrInvalidSpec) {
				t.Errorf("err = %v is not ErrInvalidSpec", err)
			}
		})
	}
}

func TestSelect(t *testing.T) {
	in := mkBatch(t, c("id", 1, 2), c("country_FR", 1, 0), c("age", 30, 40), c("country_DE", 0, 1))
	cases := []struct {
		body string
		want []string
		err  string
	}{
		{"{columns: [age, id]}", []string{"age", "id"}, ""},
		{"{columns: [id, \"country_*\"]}", []string{"id", "country_FR", "country_DE"}, ""},
		{"{columns: [\"*\", id]}", []string{"id", "country_FR", "age", "country_DE"}, ""},
		{"{columns: [nope]}", nil, "no column matches \"nope\""},
	}
	for _, tc := range cases {
		t.Run(tc.body, func(t *testing.T) {
			out, _, err := build(t, "select", tc.body).Apply(context.Background(), in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer out.Release()
			eq(t, "columns", names(out), tc.want)
			eq(t, "ids", values(t, out, "id"), []any{int64(1), int64(2)})
		})
	}
}

func TestRename(t *testing.T) {
	in := mkBatch(t, c("a", 1, nil), c("b", "x", "y"))
	for _, body := range []string{"{a: alpha}", "{columns: {a: alpha}}"} {
		out, _ := apply(t, build(t, "rename", body), in)
		eq(t, "columns", names(out), []string{"alpha", "b"})
		eq(t, "values", values(t, out, "alpha"), []any{int64(1), nil})
	}
	if _, _, err := build(t, "rename", "{a: b}").Apply(context.Background(), in); err == nil || !strings.Contains(err.Error(), "two columns") {
		t.Errorf("renaming onto an existing column: err = %v", err)
	}
	if _, _, err := build(t, "rename", "{zz: b2}").Apply(context.Background(), in); err == nil || !strings.Contains(err.Error(), "no column") {
		t.Errorf("renaming a missing column: err = %v", err)
	}
}

func TestCast(t *testing.T) {
	in := mkBatch(t,
		c("s", "12", " 7 ", "x", nil, "3.0"),
		c("f", 1.5, 2.0, -3.0, nil, 1e20),
		c("n", 1, 0, 300, nil, -1),
		c("ts", "2024-01-02T03:04:05Z", "2024-01-02", "soon", nil, "2024-01-02 03:04:05"),
	)
	cases := []struct {
		body, col string
		want      []any
		rej       []int
		err       string
	}{
		{"{s: int64}", "s", []any{int64(12), int64(7), nil, int64(3)}, []int{2}, ""},
		{"{columns: {s: int64}, on_invalid: \"null\"}", "s", []any{int64(12), int64(7), nil, nil, int64(3)}, nil, ""},
		{"{columns: {s: int64}, on_invalid: error}", "s", nil, nil, "row 2"},
		{"{f: int64}", "f", []any{int64(2), int64(-3), nil}, []int{0, 4}, ""},
		{"{f: string}", "f", []any{"1.5", "2", "-3", nil, "1e+20"}, nil, ""},
		{"{n: int8}", "n", []any{int8(1), int8(0), nil, int8(-1)}, []int{2}, ""},
		{"{n: bool}", "n", []any{true, false, true, nil, true}, nil, ""},
		{"{n: float64}", "n", []any{1.0, 0.0, 300.0, nil, -1.0}, nil, ""},
		{"{ts: timestamp}", "ts", []any{"2024-01-02T03:04:05Z", "2024-01-02T00:00:00Z", nil, "2024-01-02T03:04:05Z"}, []int{2}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.body, func(t *testing.T) {
			out, rej, err := build(t, "cast", tc.body).Apply(context.Background(), in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer out.Release()
			eq(t, "rejected", rowsOf(rej), tc.rej)
			eq(t, "values", values(t, out, tc.col), tc.want)
		})
	}
}

func TestFillNull(t *testing.T) {
	in := mkBatch(t, c("f", 1.5, nil), c("i", nil, 2), c("s", nil, "x"), c("b", nil, true), c("k", float32(1), nil))
	out, _ := apply(t, build(t, "fill_null", "{f: 0, i: 7, s: unknown, b: false, k: 2.5}"), in)
	eq(t, "f", values(t, out, "f"), []any{1.5, 0.0})
	eq(t, "i", values(t, out, "i"), []any{int64(7), int64(2)})
	eq(t, "s", values(t, out, "s"), []any{"unknown", "x"})
	eq(t, "b", values(t, out, "b"), []any{false, true})
	eq(t, "k", values(t, out, "k"), []any{"1", "2.5"})
	if _, _, err := build(t, "fill_null", "{i: abc}").Apply(context.Background(), in); err == nil {
		t.Error("filling an int column with text: no error")
	}
}

func TestDerive(t *testing.T) {
	in := mkBatch(t, c("w", 80.0, 60.0, nil), c("h", 2.0, 0.0, 1.5), c("name", "ann", "bob", nil), c("k", 4, 0, 2))
	tr := build(t, "derive", `{bmi: "w / (h * h)", tall: "h > 1.8", upper: "upper(name)", big: "bmi > 100", m: "10 % k", h: "h * 100"}`)
	out, rej := apply(t, tr, in)
	eq(t, "rejected", rowsOf(rej), []int{1})
	eq(t, "columns", names(out), []string{"w", "h", "name", "k", "bmi", "tall", "upper", "big", "m"})
	eq(t, "bmi", values(t, out, "bmi"), []any{20.0, nil})
	eq(t, "tall", values(t, out, "tall"), []any{true, false})
	eq(t, "upper", values(t, out, "upper"), []any{"ANN", nil})
	eq(t, "big", values(t, out, "big"), []any{false, nil})
	eq(t, "m", values(t, out, "m"), []any{int64(2), int64(0)})
	eq(t, "h replaced", values(t, out, "h"), []any{200.0, 150.0})
	if !strings.Contains(rej[0].Err.Error(), "divide by zero") {
		t.Errorf("rejection reason %v", rej[0].Err)
	}
	_, _, err := build(t, "derive", `{x: "nosuch + 1"}`).Apply(context.Background(), in)
	var ee *ExprError
	if !errors.As(err, &ee) || !strings.Contains(err.Error(), "unknown name nosuch") || !strings.Contains(err.Error(), "columns: w, h, name, k") {
		t.Errorf("unknown column: err = %v", err)
	}
}

func TestStandardize(t *testing.T) {
	b1 := mkBatch(t, c("x", 1.0, 2.0, nil), c("n", 10, 20, 30))
	b2 := mkBatch(t, c("x", 3.0, 4.0, math.NaN()), c("n", 40, 50, 60))
	tr := build(t, "standardize", "{columns: [x, n]}")
	f := tr.(pipeline.Fitter)
	if !f.NeedsFit() {
		t.Fatal("no params given, but NeedsFit is false")
	}
	fit(t, tr, b1, b2)
	mean, std := 2.5, math.Sqrt(1.25)
	p := f.Params()
	if got := p["x"].(map[string]any); got["mean"] != mean || got["std"] != std || got["count"] != int64(4) {
		t.Errorf("params x = %v", got)
	}
	out, _ := apply(t, tr, b1)
	eq(t, "x", values(t, out, "x"), []any{(1 - mean) / std, (2 - mean) / std, nil})
	if out.Schema().Field(1).Type.ID() != arrow.FLOAT64 {
		t.Errorf("n is %s, want float64", out.Schema().Field(1).Type)
	}

	// Scoring with the parameters of the run above.
	scorer := build(t, "standardize", "{columns: [x, n]}")
	if err := scorer.(pipeline.ParamLoader).LoadParams(map[string]any{"x": map[string]any{"mean": 2.5, "std": std}, "n": map[string]any{"mean": 35.0, "std": 1.0}}); err != nil {
		t.Fatal(err)
	}
	if scorer.(pipeline.Fitter).NeedsFit() {
		t.Error("NeedsFit after LoadParams")
	}
	out2, _ := apply(t, scorer, b2)
	eq(t, "n scored", values(t, out2, "n"), []any{5.0, 15.0, 25.0})
	if err := build(t, "standardize", "{columns: [x]}").(pipeline.ParamLoader).LoadParams(map[string]any{"x": map[string]any{"mean": "a"}}); err == nil {
		t.Error("LoadParams took a string mean")
	}

	given := build(t, "standardize", "{columns: [x], params: {x: {mean: 1, std: 0}}}")
	if given.(pipeline.Fitter).NeedsFit() {
		t.Error("params given, but NeedsFit is true")
	}
	out3, _ := apply(t, given, b1)
	eq(t, "constant column", values(t, out3, "x"), []any{0.0, 0.0, nil})
}

func TestMinMax(t *testing.T) {
	in := mkBatch(t, c("x", 2.0, 4.0, nil, 6.0))
	tr := build(t, "min_max", "{columns: [x], range: [-1, 1]}")
	fit(t, tr, in)
	eq(t, "params", tr.(pipeline.Fitter).Params(), map[string]any{"x": map[string]any{"min": 2.0, "max": 6.0}})
	out, _ := apply(t, tr, in)
	eq(t, "x", values(t, out, "x"), []any{-1.0, 0.0, nil, 1.0})
	given := build(t, "min_max", "{columns: [x], params: {x: {min: 0, max: 8}}}")
	out2, _ := apply(t, given, in)
	eq(t, "x given", values(t, out2, "x"), []any{0.25, 0.5, nil, 0.75})
}

func TestOneHot(t *testing.T) {
	in := mkBatch(t, c("id", 1, 2, 3, 4), c("country", "FR", "DE", nil, "IT"))
	t.Run("fitted", func(t *testing.T) {
		tr := build(t, "one_hot", "{column: country}")
		fit(t, tr, in)
		eq(t, "params", tr.(pipeline.Fitter).Params(), map[string]any{"categories": []string{"DE", "FR", "IT"}})
		out, _ := apply(t, tr, in)
		eq(t, "columns", names(out), []string{"id", "country_DE", "country_FR", "country_IT"})
		eq(t, "FR", values(t, out, "country_FR"), []any{int8(1), int8(0), int8(0), int8(0)})
	})
	t.Run("given, other", func(t *testing.T) {
		tr := build(t, "one_hot", "{column: country, categories: [FR, DE], unknown: other, prefix: c_, drop_original: false, type: float64}")
		out, _ := apply(t, tr, in)
		eq(t, "columns", names(out), []string{"id", "country", "c_FR", "c_DE", "c_other"})
		eq(t, "other", values(t, out, "c_other"), []any{0.0, 0.0, 0.0, 1.0})
	})
	t.Run("reject", func(t *testing.T) {
		tr := build(t, "one_hot", "{column: country, categories: [FR, DE], unknown: reject, type: bool}")
		out, rej := apply(t, tr, in)
		eq(t, "rejected", rowsOf(rej), []int{3})
		eq(t, "DE", values(t, out, "country_DE"), []any{false, true, false})
	})
	t.Run("integers", func(t *testing.T) {
		tr := build(t, "one_hot", "{column: id, categories: [\"1\", \"3\"]}")
		out, _ := apply(t, tr, in)
		eq(t, "id_3", values(t, out, "id_3"), []any{int8(0), int8(0), int8(1), int8(0)})
	})
	t.Run("max_categories", func(t *testing.T) {
		tr := build(t, "one_hot", "{column: country, max_categories: 2}")
		if err := tr.(pipeline.Fitter).Fit(context.Background(), in); err == nil || !strings.Contains(err.Error(), "max_categories") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestBucketize(t *testing.T) {
	in := mkBatch(t, c("age", 5, 18, 29, nil, 30, 70))
	out, _ := apply(t, build(t, "bucketize", "{column: age, boundaries: [18, 30, 65]}"), in)
	eq(t, "buckets", values(t, out, "age_bucket"), []any{int64(0), int64(1), int64(1), nil, int64(2), int64(3)})
	out2, _ := apply(t, build(t, "bucketize", "{column: age, boundaries: [18], labels: [minor, adult], output: age}"), in)
	eq(t, "labels", values(t, out2, "age"), []any{"minor", "adult", "adult", nil, "adult", "adult"})
}

func TestHash(t *testing.T) {
	const salt = "0123456789abcdef-salt"
	in := mkBatch(t, c("email", "a@x.io", nil, "a@x.io"), c("id", 42, 7, 42))
	out, _ := apply(t, build(t, "hash", "{columns: [email, id], salt: "+salt+"}"), in)
	mac := hmac.New(sha256.New, []byte(salt))
	mac.Write([]byte("a@x.io"))
	want := hex.EncodeToString(mac.Sum(nil))
	eq(t, "email", values(t, out, "email"), []any{want, nil, want})
	ids := values(t, out, "id")
	if ids[0] != ids[2] || ids[0] == ids[1] || len(ids[0].(string)) != 64 {
		t.Errorf("ids %v: equal values must hash equal, others differ", ids)
	}
	other, _ := apply(t, build(t, "hash", "{columns: [email], salt: another-salt-0123456}"), in)
	if values(t, other, "email")[0] == want {
		t.Error("another salt gives the same pseudonym")
	}
	short, _ := apply(t, build(t, "hash", "{columns: [email], salt: "+salt+", algorithm: hmac-sha512, encoding: base64, truncate: 10}"), in)
	if s := values(t, short, "email")[0].(string); len(s) != 10 {
		t.Errorf("truncated to %q", s)
	}
}

func TestMask(t *testing.T) {
	in := mkBatch(t, c("v", "4111-1111-1111-1234", "jane.doe@example.com", nil, "é1"))
	cases := []struct {
		body string
		want []any
	}{
		{"{columns: [v], keep_last: 4}", []any{"***************1234", "****************.com", nil, "é1"}},
		{"{columns: [v], pattern: digits, keep_last: 4, char: \"#\"}", []any{"####-####-####-1234", "jane.doe@example.com", nil, "é1"}},
		{"{columns: [v], pattern: email}", []any{"4******************", "j*******@example.com", nil, "é*"}},
		{"{columns: [v], keep_first: 1}", []any{"4******************", "j*******************", nil, "é*"}},
	}
	for _, tc := range cases {
		t.Run(tc.body, func(t *testing.T) {
			out, _ := apply(t, build(t, "mask", tc.body), in)
			eq(t, "masked", values(t, out, "v"), tc.want)
		})
	}
	if _, _, err := build(t, "mask", "{columns: [n]}").Apply(context.Background(), mkBatch(t, c("n", 1))); err == nil {
		t.Error("masking an int column: no error")
	}
}

func TestDedupe(t *testing.T) {
	b1 := mkBatch(t, c("k", 1, 2, 1, nil, nil), c("v", "a", "b", "c", "d", "d"))
	b2 := mkBatch(t, c("k", 2, 3), c("v", "b", "e"))
	tr := build(t, "dedupe", "{columns: [k]}")
	if !tr.(pipeline.Ordered).Ordered() {
		t.Error("dedupe must be ordered")
	}
	out1, _ := apply(t, tr, b1)
	eq(t, "first batch", values(t, out1, "v"), []any{"a", "b", "d"})
	out2, _ := apply(t, tr, b2)
	eq(t, "second batch", values(t, out2, "v"), []any{"e"})

	whole := build(t, "dedupe", "{}")
	out3, _ := apply(t, whole, b1)
	eq(t, "whole rows", values(t, out3, "v"), []any{"a", "b", "c", "d"})

	full := build(t, "dedupe", "{columns: [v], max_keys: 2}")
	if _, _, err := full.Apply(context.Background(), b1); err == nil || !strings.Contains(err.Error(), "max_keys") {
		t.Errorf("beyond max_keys: err = %v", err)
	}
	forget := build(t, "dedupe", "{columns: [v], max_keys: 2, on_full: forget}")
	out4, _ := apply(t, forget, b1)
	eq(t, "forgetting", values(t, out4, "v"), []any{"a", "b", "c", "d"})
}

func seq(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func TestSample(t *testing.T) {
	in := mkBatch(t, col{"id", seq(2000)})
	a, _ := apply(t, build(t, "sample", "{fraction: 0.25, seed: 3}"), in)
	b, _ := apply(t, build(t, "sample", "{fraction: 0.25, seed: 3}"), in)
	other, _ := apply(t, build(t, "sample", "{fraction: 0.25, seed: 4}"), in)
	if n := a.NumRows(); n < 400 || n > 600 {
		t.Errorf("fraction 0.25 of 2000 kept %d rows", n)
	}
	eq(t, "same seed, same rows", values(t, a, "id"), values(t, b, "id"))
	if equalAny(values(t, a, "id"), values(t, other, "id")) {
		t.Error("another seed picked the same rows")
	}

	tr := build(t, "sample", "{n: 100, seed: 1}")
	half1 := mkBatch(t, col{"id", seq(2000)[:1000]})
	half2 := mkBatch(t, col{"id", seq(2000)[1000:]})
	fit(t, tr, half1, half2)
	o1, _ := apply(t, tr, half1)
	o2, _ := apply(t, tr, half2)
	if got := rowsIn(o1) + rowsIn(o2); got != 100 {
		t.Errorf("n: 100 kept %d rows", got)
	}
	few := build(t, "sample", "{n: 10}")
	small := mkBatch(t, c("id", 1, 2, 3))
	fit(t, few, small)
	o3, _ := apply(t, few, small)
	eq(t, "fewer rows than n", rowsIn(o3), 3)
}

func rowsIn(b pipeline.Batch) int {
	if b == nil {
		return 0
	}
	return int(b.NumRows())
}

func equalAny(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSplit(t *testing.T) {
	in := mkBatch(t, col{"id", seq(1000)}, col{"cust", func() []any {
		out := make([]any, 1000)
		for i := range out {
			out[i] = i % 10
		}
		return out
	}()})
	out, _ := apply(t, build(t, "split", "{fraction: 0.8, seed: 9}"), in)
	labels := values(t, out, "split")
	train := 0
	for _, l := range labels {
		if l == "train" {
			train++
		}
	}
	if train < 740 || train > 860 {
		t.Errorf("fraction 0.8 put %d of 1000 rows in train", train)
	}
	again, _ := apply(t, build(t, "split", "{fraction: 0.8, seed: 9}"), in)
	eq(t, "reproducible", values(t, again, "split"), labels)

	byCust, _ := apply(t, build(t, "split", "{fraction: 0.5, seed: 2, by: [cust], column: fold, labels: [a, b]}"), in)
	side := map[any]any{}
	for i, l := range values(t, byCust, "fold") {
		k := values(t, in, "cust")[i]
		if prev, ok := side[k]; ok && prev != l {
			t.Fatalf("customer %v is on both sides", k)
		}
		side[k] = l
	}
}

func TestMixedForms(t *testing.T) {
	_, err := tryBuild("rename", "{columns: {a: b}, extra: c}")
	if err == nil || !strings.Contains(err.Error(), `"extra" is not one of them`) {
		t.Errorf("err = %v", err)
	}
	// A column literally named like a long-form key, in the short form.
	tr := build(t, "rename", "{columns: cols, a: b}")
	out, _ := apply(t, tr, mkBatch(t, c("columns", 1), c("a", 2)))
	eq(t, "names", names(out), []string{"cols", "b"})
}
