// Command gendocs writes docs/reference/pipelines.md, the reference of
// every built-in pipeline component, from the specs the connector packages
// register. Run it from the repository root after changing a component:
//
//	go run ./internal/pipeline/gendocs
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"

	"github.com/kilnai/kiln/internal/pipeline"
	// The built-in connectors (the same set cmd/kiln imports).
	_ "github.com/kilnai/kiln/internal/connectors/file"
	_ "github.com/kilnai/kiln/internal/connectors/http"
	_ "github.com/kilnai/kiln/internal/connectors/kiln"
	_ "github.com/kilnai/kiln/internal/connectors/nats"
	_ "github.com/kilnai/kiln/internal/connectors/postgres"
	_ "github.com/kilnai/kiln/internal/connectors/registry"
	_ "github.com/kilnai/kiln/internal/connectors/sqlite"
	_ "github.com/kilnai/kiln/internal/connectors/transform"
)

func main() {
	out := flag.String("o", "docs/reference/pipelines.md", "file to write")
	flag.Parse()
	b, err := generate()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
}

func generate() ([]byte, error) {
	var buf bytes.Buffer
	if err := pipeline.WriteReference(&buf, nil, true); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
