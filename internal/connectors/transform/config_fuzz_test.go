package transform

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/kilnai/kiln/internal/pipeline"
)

// FuzzTransformConfig decodes arbitrary bodies for every transform of
// this package (short and long forms) and applies what builds to a small
// batch: errors are fine, panics are not.
func FuzzTransformConfig(f *testing.F) {
	for _, s := range pipeline.Specs() {
		if s.Kind != pipeline.KindTransform || s.Name == "predict" {
			continue
		}
		for _, ex := range s.Examples {
			f.Add(s.Name, ex)
		}
	}
	f.Add("rename", "{columns: {a: b}, x: y}")
	f.Add("cast", "{on_invalid: null}")
	f.Add("derive", "!!map {a: b}")
	in := mkBatch(f, c("age", 1, nil, 30), c("country", "FR", "DE", nil), c("income", 1.5, 2.5, nil), c("email", "a@b.c", nil, "x"))
	f.Fuzz(func(t *testing.T, name, body string) {
		if len(body) > 512 {
			return
		}
		if _, ok := pipeline.LookupTransform(name); !ok || name == "predict" || strings.HasPrefix(name, "transformtest") {
			return
		}
		tr, err := tryBuild(name, body)
		if err != nil {
			return
		}
		if f, ok := tr.(pipeline.Fitter); ok && f.NeedsFit() {
			if f.Fit(context.Background(), in) != nil || f.FitDone(context.Background()) != nil {
				return
			}
		}
		out, _, err := tr.Apply(context.Background(), in)
		if err == nil && out != nil && out != in {
			out.Release()
		}
	})
}

// FuzzCastString casts arbitrary text to every type: no panics, and an
// integer cast agrees with strconv.
func FuzzCastString(f *testing.F) {
	for _, s := range []string{"12", " -7 ", "1e3", "3.5", "true", "x", "2024-01-02", "2024-01-02T03:04:05Z", "18446744073709551615", "-9223372036854775808", ""} {
		f.Add(s)
	}
	casts := map[string]pipeline.Transform{}
	for name := range typeNames {
		casts[name] = build(f, "cast", "{columns: {v: "+name+"}, on_invalid: \"null\"}")
	}
	f.Fuzz(func(t *testing.T, s string) {
		in := mkBatch(t, c("v", s))
		for name, tr := range casts {
			out, _, err := tr.Apply(context.Background(), in)
			if err != nil {
				t.Fatalf("cast %q to %s: %v", s, name, err)
			}
			if name == "int64" {
				col := out.Column(0).(*array.Int64)
				if want, perr := strconv.ParseInt(strings.TrimSpace(s), 10, 64); perr == nil && (col.IsNull(0) || col.Value(0) != want) {
					t.Fatalf("cast %q to int64 = %v, strconv says %d", s, col, want)
				}
			}
			if out != in {
				out.Release()
			}
		}
	})
}
