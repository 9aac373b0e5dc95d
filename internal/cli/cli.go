// Package cli implements the kiln command line: serve, infer, models and
// version. Each subcommand parses its flags, builds what it needs and
// reports errors on stderr with a non-zero exit code.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/kilnai/kiln/internal/app"
)

// Main runs the kiln command line and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "kiln:", err)
		var ce *exitError
		if errors.As(err, &ce) {
			return ce.code
		}
		return 1
	}
	return 0
}

type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "kiln",
		Short:         "Kiln serves models over the Open Inference Protocol v2",
		Long:          "Kiln is one binary that serves ONNX models over the Open Inference Protocol v2 (HTTP and gRPC,\nwire-compatible with Triton's clients) with a dynamic batcher.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newServe(), newInfer(), newModels(), newVersion())
	root.AddCommand(newBench())
	root.AddCommand(newPipeline())
	root.AddCommand(newRegistry())
	root.AddCommand(newWorker())
	return root
}

func newVersion() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Kiln's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "kiln %s\n", app.Version)
			return nil
		},
	}
}

// newLogger builds the process logger: text on a terminal, JSON otherwise
// (format "auto"), or as configured.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
