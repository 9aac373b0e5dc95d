// Command kiln is Kiln's single binary: model server and command-line client.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kilnai/kiln/internal/cli"

	// Built-in backends.
	_ "github.com/kilnai/kiln/internal/inference/onnx"

	// Built-in pipeline components.
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
