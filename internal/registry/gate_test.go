package registry

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestGates(t *testing.T) {
	env := GateEnv{
		Candidate: map[string]Metric{
			"accuracy":    {Value: 0.90, Direction: HigherIsBetter},
			"latency_p99": {Value: 20, Direction: LowerIsBetter},
			"val/loss":    {Value: 0.3, Direction: LowerIsBetter},
			"f1":          {Value: 0.5, Direction: LowerIsBetter},
		},
		Holders: map[Stage]ModelVersion{
			StageProduction: {Version: 3, Metrics: map[string]Metric{
				"accuracy":    {Value: 0.905, Direction: HigherIsBetter},
				"latency_p99": {Value: 18, Direction: LowerIsBetter},
				"val/loss":    {Value: 0.35, Direction: LowerIsBetter},
				"f1":          {Value: 0.6, Direction: HigherIsBetter},
			}},
		},
	}
	cases := []struct {
		rule          string
		pass, skipped bool
		left, right   float64
	}{
		{"accuracy >= production.accuracy - 0.01", true, false, 0.90, 0.895},
		{"accuracy >= production.accuracy", false, false, 0.90, 0.905},
		{"accuracy > 0.8", true, false, 0.90, 0.8},
		{"latency_p99 <= 25", true, false, 20, 25},
		{"latency_p99 < 20", false, false, 20, 20},
		{"latency_p99 * 2 == 40", true, false, 40, 40},
		{"(accuracy - production.accuracy) / production.accuracy > -0.01", true, false, -0.005 / 0.905, -0.01},
		{"-latency_p99 != -20", false, false, -20, -20},
		{"candidate.accuracy >= staging.accuracy", true, true, 0, 0},
		{"accuracy >= production.recall", true, true, 0, 0},
		{"recall >= 0.5", false, false, 0, 0},
		{"accuracy / 0 > 1", false, false, 0, 0},
		{"`val/loss` <= production.`val/loss`", true, false, 0.3, 0.35},
		{"no_regression(accuracy, production, 0.01)", true, false, 0.90, 0.895},
		{"no_regression(accuracy, production)", false, false, 0.90, 0.905},
		{"no_regression(latency_p99, production, 2)", true, false, 20, 20},
		{"no_regression(latency_p99, production, 1)", false, false, 20, 19},
		{"improves(val/loss, production)", false, false, 0, 0}, // '/' is no name character without back-quotes
		{"improves(`val/loss`, production)", true, false, 0.3, 0.35},
		{"improves(`val/loss`, production, 0.1)", false, false, 0.3, 0.25},
		{"improves(accuracy, staging)", true, true, 0, 0},
		{"improves(recall, production)", false, false, 0, 0},
		{"no_regression(f1, production)", false, false, 0, 0}, // direction mismatch
	}
	for _, c := range cases {
		t.Run(c.rule, func(t *testing.T) {
			g, err := ParseGate(c.rule)
			if c.rule == "improves(val/loss, production)" {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("error = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := g.Eval(env)
			if r.Passed != c.pass || r.Skipped != c.skipped {
				t.Fatalf("result = %+v, want passed=%v skipped=%v", r, c.pass, c.skipped)
			}
			if r.Rule != c.rule || r.Detail == "" || !strings.HasPrefix(r.Detail, c.rule) {
				t.Fatalf("rule/detail = %q / %q", r.Rule, r.Detail)
			}
			if c.left != 0 || c.right != 0 {
				if math.Abs(r.Left-c.left) > 1e-9 || math.Abs(r.Right-c.right) > 1e-9 {
					t.Fatalf("sides = %v, %v; want %v, %v", r.Left, r.Right, c.left, c.right)
				}
			}
		})
	}
}

func TestParseGateErrors(t *testing.T) {
	for _, rule := range []string{
		"", "accuracy", "accuracy >", "> 1", "accuracy = 1", "accuracy >= 1 extra", "1 > 0",
		"accuracy >= live.accuracy", "accuracy >= production.", "no_regression(accuracy)", "no_regression(accuracy, live)",
		"no_regression(accuracy, production, -1)", "no_regression(accuracy, production, x)", "improves(accuracy, production) > 1",
		"accuracy >= (1", "accuracy >= 1)", "acc$ > 1", "`` > 1", "`x > 1", "accuracy >= 1e999", strings.Repeat("(", 40) + "a" + strings.Repeat(")", 40) + " > 1",
		strings.Repeat("a + ", 100) + "a > 1",
	} {
		if _, err := ParseGate(rule); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseGate(%q) error = %v, want ErrInvalid", rule, err)
		}
	}
}

func TestGateStages(t *testing.T) {
	g, err := ParseGate("accuracy >= production.accuracy + staging.accuracy - production.x")
	if err != nil {
		t.Fatal(err)
	}
	if got := g.Stages(); len(got) != 2 || got[0] != StageProduction || got[1] != StageStaging {
		t.Fatalf("stages = %v", got)
	}
}

// FuzzParseGate checks that parsing and evaluating arbitrary rules never
// panics and that errors wrap ErrInvalid.
func FuzzParseGate(f *testing.F) {
	for _, s := range []string{
		"accuracy >= production.accuracy - 0.01", "latency_p99 <= 25", "no_regression(accuracy, production, 0.01)",
		"improves(`val/loss`, staging)", "-(a * 2) / b != candidate.c", "a > 1e3",
	} {
		f.Add(s)
	}
	env := GateEnv{
		Candidate: map[string]Metric{"accuracy": {Value: 1, Direction: HigherIsBetter}, "a": {Value: 0, Direction: LowerIsBetter}},
		Holders:   map[Stage]ModelVersion{StageProduction: {Version: 1, Metrics: map[string]Metric{"accuracy": {Value: 2, Direction: HigherIsBetter}}}},
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := ParseGate(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		r := g.Eval(env)
		if r.Detail == "" {
			t.Fatalf("no detail for %q", s)
		}
		if _, err := ParseGate(g.String()); err != nil {
			t.Fatalf("rule %q does not reparse: %v", g.String(), err)
		}
	})
}
