package transform

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnai/kiln/internal/pipeline"
)

func TestFilter(t *testing.T) {
	in := func(t *testing.T) pipeline.Batch {
		return mkBatch(t,
			c("age", 10, 20, nil, 40, 18),
			c("income", 1.5, nil, 3.0, 4.0, 0.0),
			c("country", "FR", "DE", "FR", nil, "GB"),
			c("active", true, false, true, nil, true),
		)
	}
	cases := []struct {
		expr string
		want []any // ages kept
		rej  []int
	}{
		{"age >= 18", []any{int64(20), int64(40), int64(18)}, nil},
		{"18 <= age", []any{int64(20), int64(40), int64(18)}, nil},
		{"age > 15 and income > 1", []any{int64(40)}, nil},
		{"age > 15 or income > 1", []any{int64(10), int64(20), nil, int64(40), int64(18)}, nil},
		{"not active", []any{int64(20)}, nil},
		{"active and country == \"FR\"", []any{int64(10), nil}, nil},
		{"country != \"FR\"", []any{int64(20), int64(18)}, nil},
		{"country < \"FR\"", []any{int64(20)}, nil},
		{"age == nil", []any{nil}, nil},
		{"country != nil && age != nil", []any{int64(10), int64(20), int64(18)}, nil},
		{"age * 2 + 1 > 40", []any{int64(20), int64(40)}, nil},
		{"age / 4 == 2.5", []any{int64(10)}, nil},
		{"income - 1 >= 0.5", []any{int64(10), nil, int64(40)}, nil},
		{"-age < -15", []any{int64(20), int64(40), int64(18)}, nil},
		{"age % 20 == 0", []any{int64(20), int64(40)}, nil},
		{"age % (age - 18) == 0", []any{int64(20)}, []int{4}},
		{"true", []any{int64(10), int64(20), nil, int64(40), int64(18)}, nil},
		{"nil", nil, nil},
		// row-by-row path
		{"country in [\"FR\", \"GB\"]", []any{int64(10), nil, int64(18)}, nil},
		{"len(country) == 2 and country startsWith \"G\"", []any{int64(18)}, nil},
		{"(age ?? 0) > 15", []any{int64(20), int64(40), int64(18)}, nil},
		{"abs(income) > 2", []any{nil, int64(40)}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.expr, func(t *testing.T) {
			tr := build(t, "filter", strconvQuote(tc.expr))
			out, rej := apply(t, tr, in(t))
			eq(t, "rejected rows", rowsOf(rej), tc.rej)
			eq(t, "kept ages", values(t, out, "age"), tc.want)
		})
	}
}

func strconvQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func TestExprErrors(t *testing.T) {
	cases := []struct {
		expr   string
		offset int
		msg    string
	}{
		{"age >= ", 6, "unexpected"},
		{"age >= 18 and (", 14, "unexpected"},
		{"a ** ** b", 5, "unexpected"},
	}
	for _, tc := range cases {
		t.Run(tc.expr, func(t *testing.T) {
			_, err := NewExpression(tc.expr)
			var ee *ExprError
			if !errors.As(err, &ee) {
				t.Fatalf("err = %v, want an ExprError", err)
			}
			if ee.Offset != tc.offset || !strings.Contains(ee.Msg, tc.msg) {
				t.Errorf("got offset %d msg %q, want offset %d and %q", ee.Offset, ee.Msg, tc.offset, tc.msg)
			}
		})
	}
}

func TestExprTimesAndOddNames(t *testing.T) {
	in := mkBatch(t, c("my col", 1, 5, nil), c("when", "2025-01-02", "2025-08-01", nil))
	cast := build(t, "cast", "{when: timestamp}")
	b, _ := apply(t, cast, in)
	out, rej := apply(t, build(t, "filter", `'$env["my col"] > 2 or when > date("2025-06-01")'`), b)
	eq(t, "rejected", rowsOf(rej), []int(nil))
	eq(t, "kept", values(t, out, "my col"), []any{int64(5)})
	d, _ := apply(t, build(t, "derive", `{next: 'when + duration("24h")', y: 'when.Year()'}`), b)
	eq(t, "next", values(t, d, "next"), []any{"2025-01-03T00:00:00Z", "2025-08-02T00:00:00Z", nil})
	eq(t, "year", values(t, d, "y"), []any{int64(2025), int64(2025), nil})
}
