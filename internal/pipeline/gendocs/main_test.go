package main

import (
	"bytes"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kilnai/kiln/internal/pipeline"
)

const root = "../../.."

// TestReferenceIsCurrent fails when docs/reference/pipelines.md is not
// what the registered components generate.
func TestReferenceIsCurrent(t *testing.T) {
	want, err := generate()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "docs", "reference", "pipelines.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("docs/reference/pipelines.md is out of date: run `go run ./internal/pipeline/gendocs` from the repository root")
	}
}

// TestEveryConnectorIsImported makes sure the generated reference (and the
// examples check) see every connector package of the repository.
func TestEveryConnectorIsImported(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	imported := map[string]bool{}
	for _, im := range f.Imports {
		p, _ := strconv.Unquote(im.Path.Value)
		imported[p] = true
	}
	dirs, err := filepath.Glob(filepath.Join(root, "internal", "connectors", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		srcs, _ := filepath.Glob(filepath.Join(d, "*.go"))
		hasCode := false
		for _, s := range srcs {
			if filepath.Ext(s) == ".go" && !bytes.HasSuffix([]byte(s), []byte("_test.go")) {
				hasCode = true
			}
		}
		if !hasCode {
			continue
		}
		pkg := "github.com/kilnai/kiln/internal/connectors/" + filepath.Base(d)
		if !imported[pkg] {
			t.Errorf("%s is not imported by internal/pipeline/gendocs", pkg)
		}
	}
}

// TestComponentExamples decodes and validates every example of every
// registered component.
func TestComponentExamples(t *testing.T) {
	for _, s := range pipeline.Specs() {
		t.Run(string(s.Kind)+"/"+s.Name, func(t *testing.T) {
			if s.Summary == "" {
				t.Error("no summary")
			}
			for i, ex := range s.Examples {
				if _, err := pipeline.DecodeComponent(s.Kind, s.Name, []byte(ex), exampleVars); err != nil {
					t.Errorf("example %d: %v", i, err)
				}
			}
			for _, f := range pipeline.ConfigFields(s.Config()) {
				if f.Doc == "" {
					t.Errorf("field %s has no doc tag", f.Key)
				}
			}
		})
	}
}

// exampleVars gives the ${VAR}s of component examples plausible values.
func exampleVars(name string) (string, bool) {
	switch {
	case strings.Contains(name, "DATABASE_URL"), strings.Contains(name, "POSTGRES"):
		return "postgres://kiln@127.0.0.1:5432/kiln?sslmode=disable", true
	case strings.Contains(name, "NATS"):
		return "nats://127.0.0.1:4222", true
	case strings.HasSuffix(name, "_URL"):
		return "http://127.0.0.1:8080/api", true
	default:
		return "example-value-of-" + name + "-0123456789abcdef", true
	}
}

// TestExamplesCoverEveryConnector parses every examples/pipelines/*.yaml
// and checks that each registered source and sink is used by at least one
// of them.
func TestExamplesCoverEveryConnector(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(root, "examples", "pipelines", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	used := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := pipeline.Parse(filepath.Base(f), b, exampleVars)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		used["source/"+plan.Source.Name] = true
		for _, s := range plan.Sinks {
			used["sink/"+s.Name] = true
		}
		if plan.OnError != nil {
			used["sink/"+plan.OnError.Name] = true
		}
	}
	for _, s := range pipeline.Specs() {
		if s.Kind == pipeline.KindTransform {
			continue
		}
		if !used[string(s.Kind)+"/"+s.Name] {
			t.Errorf("no example in examples/pipelines uses %s %q", s.Kind, s.Name)
		}
	}
}
