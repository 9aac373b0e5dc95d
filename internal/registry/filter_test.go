package registry

import (
	"errors"
	"testing"
	"time"
)

func TestParseFilter(t *testing.T) {
	cases := []struct {
		target Target
		in     string
		want   string // canonical form; "" with wantErr false means nil filter
		err    bool
	}{
		{TargetVersions, "", "", false},
		{TargetVersions, "   ", "", false},
		{TargetModels, "name = 'churn'", "name = 'churn'", false},
		{TargetModels, "name LIKE '%fraud%' AND tags.team = 'risk'", "name LIKE '%fraud%' AND tags.team = 'risk'", false},
		{TargetModels, `name ilike "Churn%"`, "name ILIKE 'Churn%'", false},
		{TargetModels, "attributes.name != 'x'", "name != 'x'", false},
		{TargetModels, "name <> 'x'", "name != 'x'", false},
		{TargetVersions, "version_number >= 3 and run_id IN ('a', 'b')", "version_number >= 3 AND run_id IN ('a', 'b')", false},
		{TargetVersions, "version = '7'", "version_number = 7", false},
		{TargetVersions, "tags.`my key` = 'v'", "tags.`my key` = 'v'", false},
		{TargetVersions, `tags."a""b" = 'v'`, "tags.`a\"b` = 'v'", false},
		{TargetVersions, "metric.accuracy > 0.9 OR (stage = 'Production' AND alias = 'champion')",
			"metrics.accuracy > 0.9 OR (stage = 'production' AND alias = 'champion')", false},
		{TargetVersions, "current_stage IN ('None', 'staging')", "stage IN ('development', 'staging')", false},
		{TargetVersions, "params.lr NOT LIKE '0.1%'", "params.lr NOT LIKE '0.1%'", false},
		{TargetVersions, "name NOT IN ('a')", "name NOT IN ('a')", false},
		{TargetVersions, "name = 'it''s'", "name = 'it''s'", false},
		{TargetVersions, `name = 'a\'b'`, "name = 'a''b'", false},
		{TargetVersions, "creation_timestamp > 1700000000000", "creation_timestamp > '2023-11-14T22:13:20Z'", false},
		{TargetVersions, "created_at <= '2026-01-02T03:04:05Z'", "creation_timestamp <= '2026-01-02T03:04:05Z'", false},
		{TargetVersions, "metrics.loss < -1.5e-3", "metrics.loss < -0.0015", false},
		{TargetVersions, "a = 1 AND b = 2 OR c = 3", "", true},
		{TargetModels, "version_number = 1", "", true},
		{TargetModels, "metrics.acc > 1", "", true},
		{TargetModels, "stage = 'production'", "", true},
		{TargetVersions, "name = 'a' AND", "", true},
		{TargetVersions, "name = 'a' name = 'b'", "", true},
		{TargetVersions, "(name = 'a'", "", true},
		{TargetVersions, "name = 'a')", "", true},
		{TargetVersions, "name = 'unterminated", "", true},
		{TargetVersions, "name > 'a'", "", true},
		{TargetVersions, "name = 3", "", true},
		{TargetVersions, "metrics.acc = 'abc'", "", true},
		{TargetVersions, `metrics.acc = "0.5"`, "", true},
		{TargetVersions, "metrics.acc LIKE '1'", "", true},
		{TargetVersions, "metrics.acc IN (1, 2)", "", true},
		{TargetVersions, "version_number = 1.5", "", true},
		{TargetVersions, "stage = 'live'", "", true},
		{TargetVersions, "stage LIKE 'prod%'", "", true},
		{TargetVersions, "tags. = 'x'", "", true},
		{TargetVersions, "tags.`x = 'y'", "", true},
		{TargetVersions, "foo.bar = 'x'", "", true},
		{TargetVersions, "name NOT = 'x'", "", true},
		{TargetVersions, "name IN 'x'", "", true},
		{TargetVersions, "name IN ('x' 'y')", "", true},
		{TargetVersions, "name = 'x' ; DROP TABLE", "", true},
		{TargetVersions, "creation_timestamp > 'yesterday'", "", true},
		{TargetVersions, "name ! 'x'", "", true},
		{TargetVersions, "1e999 = name", "", true},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			e, err := ParseFilter(c.target, c.in)
			if c.err {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("error = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := e.String(); got != c.want {
				t.Fatalf("canonical = %q, want %q", got, c.want)
			}
		})
	}
}

func TestParseFilterLimits(t *testing.T) {
	deep := ""
	for i := 0; i < 40; i++ {
		deep += "("
	}
	deep += "name = 'a'"
	for i := 0; i < 40; i++ {
		deep += ")"
	}
	many := "name = 'a'"
	for i := 0; i < 70; i++ {
		many += " OR name = 'a'"
	}
	long := make([]byte, MaxFilterLen+1)
	for i := range long {
		long[i] = ' '
	}
	for name, in := range map[string]string{"deep": deep, "many": many, "long": string(long)} {
		if _, err := ParseFilter(TargetVersions, in); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: error = %v, want ErrInvalid", name, err)
		}
	}
}

func TestParseFilterTime(t *testing.T) {
	e, err := ParseFilter(TargetVersions, "last_updated_timestamp >= 1767322800000")
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC); !e.Cond.Time.Equal(want) || e.Cond.Field.Kind != FieldUpdatedAt {
		t.Fatalf("cond = %+v, want time %v", e.Cond, want)
	}
}

func TestParseOrder(t *testing.T) {
	cases := []struct {
		target Target
		in     []string
		want   string
		err    bool
	}{
		{TargetModels, nil, "name", false},
		{TargetModels, []string{"last_updated_timestamp DESC"}, "last_updated_timestamp desc, name desc", false},
		{TargetVersions, []string{"last_updated_timestamp"}, "last_updated_timestamp, name, version_number", false},
		{TargetModels, []string{"name desc", "creation_timestamp"}, "name desc", false},
		{TargetVersions, nil, "name, version_number desc", false},
		{TargetVersions, []string{"version_number"}, "version_number, name", false},
		{TargetVersions, []string{"creation_timestamp DESC"}, "creation_timestamp desc, name desc, version_number desc", false},
		{TargetVersions, []string{"name", "version_number", "creation_timestamp"}, "name, version_number", false},
		{TargetModels, []string{"version_number"}, "", true},
		{TargetVersions, []string{"run_id"}, "", true},
		{TargetVersions, []string{"name sideways"}, "", true},
		{TargetVersions, []string{"name", "name"}, "", true},
		{TargetVersions, []string{""}, "", true},
		{TargetVersions, []string{"a", "b", "c", "d", "e"}, "", true},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			keys, err := ParseOrder(c.target, c.in)
			if c.err {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("error = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			for i, k := range keys {
				if i > 0 {
					got += ", "
				}
				got += k.Field.String()
				if k.Desc {
					got += " desc"
				}
			}
			if got != c.want {
				t.Fatalf("order = %q, want %q", got, c.want)
			}
		})
	}
}

// FuzzParseFilter checks that the parser never panics, that errors wrap
// ErrInvalid, and that the canonical form of a parsed filter parses to the
// same canonical form.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		"name = 'churn'", "name LIKE '%a%' AND tags.team = 'x'", "version_number IN (1, 2, 3)",
		"metrics.acc >= 0.9 OR (stage = 'production' AND alias = 'champion')", "tags.`a b` != 'c'",
		`tags."q""k" = 'v'`, "creation_timestamp > 1700000000000", "name NOT ILIKE 'x\\'y'", "run_id NOT IN ('a')",
		"((name = 'a'))", "params.lr = '0.1'", "created_at < '2026-01-01T00:00:00Z'",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, versions bool) {
		target := TargetModels
		if versions {
			target = TargetVersions
		}
		e, err := ParseFilter(target, s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if e == nil {
			return
		}
		canon := e.String()
		e2, err := ParseFilter(target, canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, s, err)
		}
		if got := e2.String(); got != canon {
			t.Fatalf("canonical form is not stable: %q -> %q", canon, got)
		}
	})
}
