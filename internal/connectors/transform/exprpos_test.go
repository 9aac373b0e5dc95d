package transform

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kilnai/kiln/internal/pipeline"
)

// TestExprErrorPositions: a bad expression is reported at the line and
// column, in the spec file, of the character the expression parser
// stopped at.
func TestExprErrorPositions(t *testing.T) {
	head := "source: {transformtest_gen: {}}\nsinks: [transformtest_collect: {}]\ntransforms:\n"
	cases := []struct {
		name       string
		transforms string
		line, col  int
		char       string // at line:col in the spec ("" at the end of the scalar)
	}{
		{"plain", `  - filter: amount > > 3`, 4, 22, ">"},
		{"double-quoted", `  - filter: "amount > > 3"`, 4, 23, ">"},
		{"double-quoted with escapes", `  - filter: "\u00e9 + \t) 1"`, 4, 25, ")"},
		{"single-quoted with a quote", `  - filter: 'x == ''a'' ++ @'`, 4, 28, "@"},
		{"multibyte before", `  - filter: "é + ) 1"`, 4, 18, ")"},
		{"long form", `  - filter: {expr: "x + (y"}`, 4, 26, "y"},
		{"derive, second column", `  - derive: {a: "x + 1", b: 'foo('}`, 4, 33, "("},
		{"derive, block form", "  - derive:\n      ok: x * 2\n      bad: x == 'a' ++ @", 6, 24, "@"},
		{"literal block", "  - filter: |\n      a\n        & b", 6, 9, "&"},
		{"after another transform", "  - filter: \"x > 0\"\n  - filter: \"x > > 1\"", 5, 18, ">"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := head + c.transforms + "\n"
			_, err := pipeline.Parse("p.yaml", []byte(spec), nil)
			var se pipeline.SpecErrors
			if !errors.As(err, &se) || len(se) != 1 {
				t.Fatalf("err = %v, want one spec error", err)
			}
			if got, want := se[0].Pos.String(), fmt.Sprintf("p.yaml:%d:%d", c.line, c.col); got != want {
				t.Errorf("at %s, want %s (%v)", got, want, err)
			}
			line := []rune(strings.Split(spec, "\n")[c.line-1])
			if c.col-1 >= len(line) || string(line[c.col-1]) != c.char {
				t.Errorf("the test is wrong: %q is not at column %d of %q", c.char, c.col, string(line))
			}
			if !strings.Contains(err.Error(), "unexpected") && !strings.Contains(err.Error(), "unrecognized") {
				t.Errorf("message %q", err)
			}
		})
	}
}

// TestExprErrorPositionFallback: an expression that cannot be found in
// the text as written (built by interpolation) is reported at its scalar.
func TestExprErrorPositionFallback(t *testing.T) {
	spec := "source: {transformtest_gen: {}}\nsinks: [transformtest_collect: {}]\ntransforms:\n  - filter: \"x > ${OP} 1\"\n"
	_, err := pipeline.Parse("p.yaml", []byte(spec), func(string) (string, bool) { return ">", true })
	var se pipeline.SpecErrors
	if !errors.As(err, &se) || len(se) != 1 {
		t.Fatalf("err = %v, want one spec error", err)
	}
	if got := se[0].Pos.String(); got != "p.yaml:4:13" {
		t.Errorf("at %s, want the scalar, p.yaml:4:13 (%v)", got, err)
	}
}

// FuzzExprErrorPosition: whatever the expression and however it is
// quoted, parsing never panics and an error's position is inside the file.
func FuzzExprErrorPosition(f *testing.F) {
	for _, s := range []string{"amount > > 3", "x + (y", "é + ) 1", "a\n  & b", "'a' ++ @", `"\t"`, ""} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(1))
		f.Add(s, uint8(2))
		f.Add(s, uint8(3))
	}
	f.Fuzz(func(t *testing.T, expr string, style uint8) {
		var v string
		switch style % 4 {
		case 0:
			v = expr
		case 1:
			v = fmt.Sprintf("%q", expr)
		case 2:
			v = "'" + strings.ReplaceAll(expr, "'", "''") + "'"
		default:
			v = "|\n      " + strings.ReplaceAll(expr, "\n", "\n      ")
		}
		spec := "source: {transformtest_gen: {}}\nsinks: [transformtest_collect: {}]\ntransforms:\n  - filter: " + v + "\n"
		_, err := pipeline.Parse("p.yaml", []byte(spec), nil)
		var se pipeline.SpecErrors
		if errors.As(err, &se) {
			// YAML breaks lines at \r\n, \r and \n alike.
			lines := strings.Split(strings.ReplaceAll(strings.ReplaceAll(spec, "\r\n", "\n"), "\r", "\n"), "\n")
			for _, e := range se {
				if e.Pos.Line > len(lines) || e.Pos.Line > 0 && e.Pos.Col > len([]rune(lines[e.Pos.Line-1]))+1 {
					t.Fatalf("error %v outside the file %q", e, spec)
				}
			}
		}
	})
}
