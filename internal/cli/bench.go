package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/kilnai/kiln/internal/loadgen"
)

func newBench() *cobra.Command {
	var (
		cfg      loadgen.Config
		protocol string
		levels   []int
		rates    []float64
		input    string
		shapes   []string
		format   string
		output   string
		seed     uint64
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test a model over OIP v2 (HTTP JSON, HTTP binary or gRPC)",
		Long: `Load-test a model served over the Open Inference Protocol v2, in the spirit of
Triton's perf_analyzer.

Closed loop (default): for each --concurrency level, N workers each keep one
request outstanding. Open loop (--rate): requests are scheduled at a constant
rate and each latency is measured from its scheduled send time, so queueing
in a slow server is not hidden (no coordinated omission).

Each level runs --warmup (not recorded), then a --duration measurement window.
Inputs are random (seeded, --batch rows, shapes from the model's metadata) or
the request in --input (an OIP JSON inference request). Percentiles are exact
nearest-rank values over every request of the window.`,
		Example: `  kiln bench --model mlp --concurrency 1,4,16,64
  kiln bench --model mlp --protocol grpc --grpc-addr 127.0.0.1:8001 --batch 8
  kiln bench --model resnet18 --protocol http-binary --rate 40 --duration 30s --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := loadgen.ParseProtocol(protocol)
			if err != nil {
				return &exitError{2, err}
			}
			cfg.Protocol, cfg.Seed = p, seed
			if cfg.Model == "" {
				return &exitError{2, errors.New("--model is required")}
			}
			if len(rates) > 0 && cmd.Flags().Changed("concurrency") {
				return &exitError{2, errors.New("--rate (open loop) and --concurrency (closed loop) exclude each other")}
			}
			if format != "table" && format != "json" && format != "csv" {
				return &exitError{2, fmt.Errorf("--format %q: want table, json or csv", format)}
			}
			if cfg.Shapes, err = loadgen.ParseShapes(shapes); err != nil {
				return &exitError{2, err}
			}
			if input != "" {
				if cfg.Inputs, err = loadgen.ReadRequestFile(input); err != nil {
					return &exitError{2, err}
				}
			}
			if p == loadgen.GRPC && !cmd.Flags().Changed("url") {
				cfg.URL = "" // read metadata over gRPC unless an HTTP URL was given
			}
			if len(rates) > 0 {
				levels = nil
			}
			stderr := cmd.ErrOrStderr()
			res, err := loadgen.Run(cmd.Context(), cfg, levels, rates, func(r loadgen.Result) {
				fmt.Fprintf(stderr, "%s %s: %.1f req/s, %.1f rows/s, p50 %s ms, p99 %s ms, errors %s\n",
					r.Protocol, r.Level(), r.Throughput, r.RowsPerSec,
					loadgen.FormatDuration(r.Latency.P50), loadgen.FormatDuration(r.Latency.P99), r.ErrorSummary())
			})
			if err != nil && len(res) == 0 {
				return err
			}
			var w io.Writer = cmd.OutOrStdout()
			if output != "" {
				f, ferr := os.Create(output)
				if ferr != nil {
					return errors.Join(err, ferr)
				}
				defer f.Close()
				w = f
			}
			if werr := loadgen.Write(w, format, res); werr != nil {
				return errors.Join(err, werr)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.URL, "url", defaultURL(), "HTTP base URL of the server (env KILN_URL); with --protocol grpc, used for metadata only if set")
	f.StringVar(&cfg.GRPCAddr, "grpc-addr", "127.0.0.1:8001", "gRPC address host:port (protocol grpc)")
	f.StringVar(&cfg.Model, "model", "", "model name (required)")
	f.StringVar(&cfg.Version, "model-version", "", "model version (default: the server's choice)")
	f.StringVar(&protocol, "protocol", string(loadgen.HTTPJSON), "http-json, http-binary (binary tensor extension) or grpc (raw_input_contents)")
	f.IntSliceVar(&levels, "concurrency", []int{1}, "closed-loop concurrency levels to sweep, e.g. 1,2,4,8")
	f.Float64SliceVar(&rates, "rate", nil, "open-loop request rates (requests/s) to run instead of a concurrency sweep")
	f.DurationVar(&cfg.Duration, "duration", 5*time.Second, "measurement window per level")
	f.DurationVar(&cfg.Warmup, "warmup", time.Second, "warm-up per level, not recorded")
	f.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "timeout of one request")
	f.IntVar(&cfg.MinRequests, "min-requests", 0, "extend each closed-loop window until this many requests completed")
	f.IntVar(&cfg.Batch, "batch", 1, "rows per request (the batch dimension)")
	f.StringVar(&input, "input", "", "send this OIP JSON inference request instead of random inputs")
	f.StringArrayVar(&shapes, "shape", nil, "request shape of an input with variable dimensions, name=d1,d2,... (batch included; repeatable)")
	f.Uint64Var(&seed, "seed", 1, "seed of the random inputs")
	f.IntVar(&cfg.Variants, "variants", 4, "number of different random requests sent in turn")
	f.IntVar(&cfg.MaxInFlight, "max-inflight", 256, "open loop: most requests outstanding at once")
	f.BoolVar(&cfg.NetHTTP, "net-http", false, "use Go's net/http client instead of the built-in HTTP/1.1 client")
	f.IntVar(&cfg.GRPCConns, "grpc-conns", 0, "gRPC connections shared by the workers (default: one per 16 workers, at most 4)")
	f.StringVar(&format, "format", "table", "output format: table, json or csv")
	f.StringVarP(&output, "output", "o", "", "write the results to this file instead of stdout")
	return cmd
}
