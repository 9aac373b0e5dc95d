// Package mdsection keeps docs/benchmarks.md as one document written by
// several benchmark tools: each tool replaces only its own named section,
// delimited by HTML comment markers, and leaves the others as they are.
package mdsection

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Preamble starts a document that does not exist yet.
const Preamble = "# Kiln benchmarks\n\n" +
	"Every section below is written by its own tool (`make bench` runs them all); each says when and how it was measured.\n\n"

func markers(name string) (begin, end string) {
	return "<!-- begin section: " + name + " -->\n", "<!-- end section: " + name + " -->\n"
}

// Replace sets the body of section name in the Markdown file at path,
// creating the file (with Preamble) or appending the section when it is
// missing. The file is replaced atomically.
func Replace(path, name, body string) error {
	if name == "" || strings.ContainsAny(name, "\n>") {
		return fmt.Errorf("mdsection: bad section name %q", name)
	}
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	out, err := Splice(old, name, body)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Splice returns doc with section name's body replaced (or the section
// appended; an empty doc gets the Preamble first).
func Splice(doc []byte, name, body string) ([]byte, error) {
	begin, end := markers(name)
	if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	section := begin + body + end
	if len(bytes.TrimSpace(doc)) == 0 {
		return []byte(Preamble + section), nil
	}
	i := bytes.Index(doc, []byte(begin))
	if i < 0 {
		out := append([]byte(nil), doc...)
		if !bytes.HasSuffix(out, []byte("\n\n")) {
			out = append(out, '\n')
		}
		return append(out, section...), nil
	}
	j := bytes.Index(doc[i:], []byte(end))
	if j < 0 {
		return nil, fmt.Errorf("section %q has a begin marker but no end marker", name)
	}
	var out bytes.Buffer
	out.Write(doc[:i])
	out.WriteString(section)
	out.Write(doc[i+j+len(end):])
	return out.Bytes(), nil
}
