package registry

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateNames(t *testing.T) {
	cases := []struct {
		kind, in string
		ok       bool
	}{
		{"model", "churn", true},
		{"model", "Churn-EU_v2.onnx", true},
		{"model", "9lives", true},
		{"model", "", false},
		{"model", "-x", false},
		{"model", "a/b", false},
		{"model", "a@b", false},
		{"model", "a b", false},
		{"model", strings.Repeat("a", MaxNameLen), true},
		{"model", strings.Repeat("a", MaxNameLen+1), false},
		{"alias", "champion", true},
		{"alias", "_x-1", true},
		{"alias", "latest", false},
		{"alias", "LATEST", false},
		{"alias", "v12", false},
		{"alias", "v12a", true},
		{"alias", "1st", false},
		{"alias", "a.b", false},
		{"alias", "", false},
		{"digest", "sha256:" + strings.Repeat("ab", 32), true},
		{"digest", "sha256:" + strings.Repeat("AB", 32), false},
		{"digest", "sha256:" + strings.Repeat("ab", 31), false},
		{"digest", "md5:" + strings.Repeat("ab", 32), false},
		{"key", "team", true},
		{"key", "mlflow.source/type: x", true},
		{"key", "", false},
		{"key", "a\nb", false},
		{"key", strings.Repeat("k", MaxTagKeyLen+1), false},
	}
	for _, c := range cases {
		t.Run(c.kind+"/"+c.in, func(t *testing.T) {
			var err error
			switch c.kind {
			case "model":
				err = ValidateModelName(c.in)
			case "alias":
				err = ValidateAlias(c.in)
			case "digest":
				err = ValidateDigest(c.in)
			case "key":
				err = ValidateKey("tag", c.in)
			}
			if c.ok != (err == nil) {
				t.Fatalf("ok = %v, err = %v", c.ok, err)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestStages(t *testing.T) {
	cases := map[string]Stage{"None": StageDevelopment, "development": StageDevelopment, "Staging": StageStaging,
		"PRODUCTION": StageProduction, " archived ": StageArchived}
	for in, want := range cases {
		got, err := ParseStage(in)
		if err != nil || got != want {
			t.Errorf("ParseStage(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseStage("live"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseStage(live) error = %v", err)
	}
	names := map[Stage]string{StageDevelopment: "None", StageStaging: "Staging", StageProduction: "Production", StageArchived: "Archived"}
	for st, want := range names {
		if got := st.MLflowName(); got != want {
			t.Errorf("%s.MLflowName() = %q, want %q", st, got, want)
		}
		back, err := ParseStage(want)
		if err != nil || back != st {
			t.Errorf("ParseStage(%q) = %q, %v", want, back, err)
		}
	}
	for _, in := range []string{"higher", "lower", "max", "min"} {
		if _, err := ParseDirection(in); err != nil {
			t.Errorf("ParseDirection(%q): %v", in, err)
		}
	}
	if _, err := ParseDirection("up-ish"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseDirection(up-ish) error = %v", err)
	}
	if !HigherIsBetter.Better(2, 1) || HigherIsBetter.Better(1, 1) || !LowerIsBetter.Better(1, 2) || LowerIsBetter.Better(2, 1) {
		t.Error("Direction.Better is wrong")
	}
}
