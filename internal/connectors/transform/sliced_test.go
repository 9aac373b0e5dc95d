package transform

import (
	"testing"
)

// TestSlicedInputs applies every transform to a slice of a batch (non-zero
// array offsets) and to a fresh batch of the same rows: same results.
func TestSlicedInputs(t *testing.T) {
	ages := []any{5, nil, 30, 41, 17, nil, 65, 22, 90, 33}
	incomes := []any{1.0, 2.0, nil, 4.0, 5.0, 6.0, nil, 8.0, 9.0, 10.0}
	countries := []any{"FR", "DE", nil, "GB", "FR", "IT", "DE", nil, "GB", "FR"}
	flags := []any{true, false, nil, true, true, false, true, false, nil, true}
	full := mkBatch(t, col{"age", ages}, col{"income", incomes}, col{"country", countries}, col{"flag", flags})
	sliced := full.NewSlice(3, 9)
	defer sliced.Release()
	fresh := mkBatch(t, col{"age", ages[3:9]}, col{"income", incomes[3:9]}, col{"country", countries[3:9]}, col{"flag", flags[3:9]})
	bodies := [][2]string{
		{"filter", `"age > 20 and flag"`},
		{"filter", `"len(country) == 2 or income > 5"`},
		{"derive", `{x: "income * 2", y: "country + \"!\""}`},
		{"fill_null", "{age: 0, country: none, flag: false}"},
		{"standardize", "{columns: [income], params: {income: {mean: 5, std: 2}}}"},
		{"min_max", "{columns: [age], params: {age: {min: 0, max: 100}}}"},
		{"one_hot", "{column: country, categories: [FR, DE, GB]}"},
		{"bucketize", "{column: age, boundaries: [18, 65]}"},
		{"hash", "{columns: [country, age], salt: 0123456789abcdef}"},
		{"mask", "{columns: [country], keep_last: 1}"},
		{"cast", "{age: string, flag: int8}"},
		{"dedupe", "{columns: [country]}"},
		{"sample", "{fraction: 0.5, seed: 3}"},
		{"split", "{fraction: 0.5, seed: 3}"},
		{"select", "{columns: [flag, \"a*\"]}"},
	}
	for _, b := range bodies {
		t.Run(b[0]+" "+b[1], func(t *testing.T) {
			got, rejGot := apply(t, build(t, b[0], b[1]), sliced)
			want, rejWant := apply(t, build(t, b[0], b[1]), fresh)
			eq(t, "rejected rows", rowsOf(rejGot), rowsOf(rejWant))
			if (got == nil) != (want == nil) {
				t.Fatalf("got %v, want %v", got, want)
			}
			if got == nil {
				return
			}
			eq(t, "columns", names(got), names(want))
			for _, n := range names(want) {
				eq(t, n, values(t, got, n), values(t, want, n))
			}
		})
	}
}
