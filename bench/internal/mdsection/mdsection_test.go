package mdsection

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSplice(t *testing.T) {
	tests := []struct {
		name, doc, section, body string
		want                     string
	}{
		{"new document", "", "a", "A1", Preamble + "<!-- begin section: a -->\nA1\n<!-- end section: a -->\n"},
		{"append", "# T\n\n", "b", "B\n", "# T\n\n<!-- begin section: b -->\nB\n<!-- end section: b -->\n"},
		{"replace keeps neighbours",
			"# T\n<!-- begin section: a -->\nold\n<!-- end section: a -->\nmid\n<!-- begin section: b -->\nB\n<!-- end section: b -->\n",
			"a", "new",
			"# T\n<!-- begin section: a -->\nnew\n<!-- end section: a -->\nmid\n<!-- begin section: b -->\nB\n<!-- end section: b -->\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Splice([]byte(tc.doc), tc.section, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
	if _, err := Splice([]byte("x\n<!-- begin section: a -->\nno end"), "a", "b"); err == nil {
		t.Fatal("a section without its end marker was accepted")
	}
}

func TestReplaceTwoTools(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docs", "benchmarks.md")
	for _, step := range []struct{ name, body string }{{"serving", "S1"}, {"pipelines", "P1"}, {"serving", "S2"}} {
		if err := Replace(path, step.name, step.body); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	if !strings.Contains(doc, "S2") || strings.Contains(doc, "S1") || !strings.Contains(doc, "P1") {
		t.Fatalf("unexpected document:\n%s", doc)
	}
	if strings.Index(doc, "S2") > strings.Index(doc, "P1") {
		t.Fatalf("the serving section moved:\n%s", doc)
	}
}
