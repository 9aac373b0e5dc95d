package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kilnai/kiln/internal/catalog"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/pipeline"
	"github.com/kilnai/kiln/internal/pipeline/runstore"
	"github.com/kilnai/kiln/internal/serving"
)

// DistributedRun runs a plan as tasks on a NATS JetStream work queue
// (`kiln pipeline run --distributed`). The distributed package sets it from
// the cli package (internal/cli/worker.go); nil means distributed runs are
// not built in.
var DistributedRun func(ctx context.Context, plan *pipeline.Plan, eng *pipeline.Engine, o DistributedOptions) (*pipeline.RunRecord, error)

// DistributedOptions are the choices of `kiln pipeline run --distributed`.
type DistributedOptions struct {
	// NATSURL is the NATS server holding the work queue.
	NATSURL string
	// Queue names the work queue ("": the default queue); workers must
	// use the same (`kiln worker --queue`).
	Queue string
	// Progress receives the progress display.
	Progress io.Writer
}

func newPipeline() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pipeline",
		Short: "Validate and run data pipelines, list components and runs",
		Long: `Data pipelines are YAML specs: one source, transforms, sinks, an optional
result cache and a dead-letter sink. See docs/pipelines.md.`,
	}
	cmd.AddCommand(newPipelineValidate(), newPipelineRun(), newPipelineComponents(), newPipelineRuns())
	return cmd
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// varsLookup resolves ${VAR}: --set NAME=VALUE first, then the environment.
func varsLookup(sets []string) (pipeline.LookupFunc, error) {
	m := map[string]string{}
	for _, s := range sets {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--set %q: want NAME=VALUE", s)
		}
		m[k] = v
	}
	return func(name string) (string, bool) {
		if v, ok := m[name]; ok {
			return v, true
		}
		return os.LookupEnv(name)
	}, nil
}

func parseFile(path string, lookup pipeline.LookupFunc) (*pipeline.Plan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return pipeline.Parse(path, b, lookup)
}

func newPipelineValidate() *cobra.Command {
	var sets []string
	cmd := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check pipeline specs; errors are printed as FILE:LINE:COLUMN: message",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lookup, err := varsLookup(sets)
			if err != nil {
				return &exitError{2, err}
			}
			bad := 0
			for _, f := range args {
				plan, err := parseFile(f, lookup)
				if err != nil {
					bad++
					fmt.Fprintln(cmd.ErrOrStderr(), err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (pipeline %s: %s → %d transforms → %s)\n", f, plan.Name, plan.Source.Name, len(plan.Transforms), sinkNames(plan))
			}
			if bad > 0 {
				return &exitError{1, fmt.Errorf("%d of %d specs invalid", bad, len(args))}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&sets, "set", nil, "set a ${VAR} of the spec (NAME=VALUE; overrides the environment)")
	return cmd
}

// reapRuns marks the runs of dead processes of this host failed before
// they are shown; a failure is a warning (the records are shown as they
// are).
func reapRuns(ctx context.Context, store pipeline.RunStore, stderr io.Writer) {
	if _, err := pipeline.ReapRuns(ctx, store, nil); err != nil {
		fmt.Fprintf(stderr, "warning: marking runs of exited processes failed: %v\n", err)
	}
}

func sinkNames(p *pipeline.Plan) string {
	names := make([]string, len(p.Sinks))
	for i, s := range p.Sinks {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

type storeFlags struct {
	dataDir  string
	registry string
}

func (s *storeFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.dataDir, "data-dir", envOr("KILN_DATA_DIR", "data"), "Kiln's data directory: result cache and, by default, the registry database (env KILN_DATA_DIR)")
	cmd.Flags().StringVar(&s.registry, "registry", os.Getenv("KILN_REGISTRY"), "registry database where runs are recorded: sqlite:PATH or postgres://... (default sqlite in the data dir; env KILN_REGISTRY)")
}

func (s *storeFlags) open(ctx context.Context) (*runstore.Store, error) {
	dsn := s.registry
	if dsn == "" {
		dsn = runstore.DefaultDSN(s.dataDir)
	}
	return runstore.Open(ctx, dsn)
}

func newPipelineRun() *cobra.Command {
	var (
		sf          storeFlags
		noCache     bool
		sets        []string
		modelRepo   string
		distributed bool
		natsURL     string
		queue       string
		progress    string
		progEvery   time.Duration
		logLevel    string
		asJSON      bool
	)
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Run a pipeline here and print a summary of its stages",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			stderr := cmd.ErrOrStderr()
			lookup, err := varsLookup(sets)
			if err != nil {
				return &exitError{2, err}
			}
			plan, err := parseFile(args[0], lookup)
			if err != nil {
				return &exitError{1, err}
			}
			log := newLogger(stderr, logLevel, "auto")
			store, err := sf.open(ctx)
			if err != nil {
				return err
			}
			defer store.Close()
			eng := &pipeline.Engine{Logger: log, DataDir: sf.dataDir, Registry: sf.registry, Runs: store}
			if _, err := pipeline.ReapRuns(ctx, store, log); err != nil {
				log.Warn("marking runs of exited processes failed", "err", err)
			}
			if err := eng.PruneCache(log); err != nil {
				log.Warn("pruning the result cache", "err", err)
			}
			if modelRepo != "" {
				mgr, stop, err := startModels(ctx, modelRepo, log)
				if err != nil {
					return err
				}
				defer stop()
				eng.Models = mgr
			}
			var rec *pipeline.RunRecord
			if distributed {
				if DistributedRun == nil {
					return &exitError{2, errors.New("--distributed: distributed runs are not built into this binary")}
				}
				rec, err = DistributedRun(ctx, plan, eng, DistributedOptions{NATSURL: natsURL, Queue: queue, Progress: stderr})
			} else {
				opts := pipeline.RunOptions{NoCache: noCache, ProgressEvery: progEvery}
				switch progress {
				case "auto":
					if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
						opts.Progress = stderr
					}
				case "bar":
					opts.Progress = stderr
				case "log":
				default:
					return &exitError{2, fmt.Errorf("--progress %q: want auto, bar or log", progress)}
				}
				rec, err = eng.Run(ctx, plan, opts)
			}
			if rec != nil {
				if asJSON {
					if jerr := writeJSONOut(cmd.OutOrStdout(), rec); jerr != nil && err == nil {
						err = jerr
					}
				} else {
					printSummary(cmd.OutOrStdout(), rec)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	sf.bind(cmd)
	f.BoolVar(&noCache, "no-cache", false, "run even when the result cache holds this spec's output for the same input")
	f.StringArrayVar(&sets, "set", nil, "set a ${VAR} of the spec (NAME=VALUE; overrides the environment)")
	f.StringVar(&modelRepo, "model-repository", os.Getenv("KILN_MODEL_REPOSITORY"), "load this model repository in-process so predict steps run here (env KILN_MODEL_REPOSITORY)")
	f.BoolVar(&distributed, "distributed", false, "split the source into tasks on a NATS JetStream work queue processed by `kiln worker`")
	f.StringVar(&natsURL, "nats", envOr("KILN_NATS", "nats://127.0.0.1:4222"), "NATS server for --distributed (env KILN_NATS)")
	f.StringVar(&queue, "queue", os.Getenv("KILN_QUEUE"), "work queue for --distributed, the same as the workers' `kiln worker --queue` (env KILN_QUEUE; default kiln)")
	f.StringVar(&progress, "progress", "auto", "progress display: auto (a bar on a terminal, log lines otherwise), bar or log")
	f.BoolVar(&asJSON, "json", false, "print the run record as JSON instead of the summary table")
	f.DurationVar(&progEvery, "progress-every", 10*time.Second, "interval of progress log lines (--progress log)")
	f.StringVar(&logLevel, "log-level", envOr("KILN_LOG_LEVEL", "info"), "debug, info, warn or error")
	return cmd
}

// startModels loads a model repository into an in-process model manager
// for predict steps.
func startModels(ctx context.Context, repo string, log *slog.Logger) (*serving.Manager, func(), error) {
	if st, err := os.Stat(repo); err != nil || !st.IsDir() {
		return nil, nil, fmt.Errorf("model repository %q is not a directory", repo)
	}
	var backends []inference.Backend
	for _, name := range inference.RegisteredBackends() {
		b, err := inference.NewBackend(name, inference.BackendOptions{
			Logger:   log.With("backend", name),
			Settings: map[string]string{"ort_lib": os.Getenv("KILN_ORT_LIB")},
		})
		if err != nil {
			return nil, nil, fmt.Errorf("backend %s: %w", name, err)
		}
		backends = append(backends, b)
	}
	mgr := serving.New(serving.Options{Catalog: catalog.NewRepository(repo), Backends: backends, Logger: log.With("component", "serving")})
	if err := mgr.LoadAll(ctx); err != nil {
		_ = mgr.Close(context.WithoutCancel(ctx))
		return nil, nil, fmt.Errorf("loading models: %w", err)
	}
	return mgr, func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = mgr.Close(cctx)
	}, nil
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// roundDuration keeps three significant digits or so (1.23s, 45ms, 310µs).
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

func printSummary(w io.Writer, r *pipeline.RunRecord) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "STAGE\tROWS IN\tROWS OUT\tREJECTED\tBYTES\tTIME\t")
	for _, s := range r.Stages {
		in := strconv.FormatInt(s.RowsIn, 10)
		if s.Stage == "source" {
			in = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t\n", s.Stage+" ("+s.Component+")", in, s.RowsOut, s.RowsRejected, humanBytes(s.Bytes), roundDuration(s.Duration))
	}
	tw.Flush()
	fmt.Fprintf(w, "run %s %s in %s: %d rows in, %d out, %d rejected\n", r.ID, r.Status, r.Duration.Round(time.Millisecond), r.RowsIn, r.RowsOut, r.RowsRejected)
	if r.Error != "" {
		fmt.Fprintf(w, "error: %s\n", r.Error)
	}
}

func newPipelineComponents() *cobra.Command {
	var markdown bool
	cmd := &cobra.Command{
		Use:   "components [NAME]",
		Short: "Describe the registered sources, transforms and sinks (keys, types, defaults, examples)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var specs []pipeline.Spec
			if len(args) == 1 {
				specs = pipeline.LookupSpec(args[0])
				if len(specs) == 0 {
					return &exitError{1, fmt.Errorf("no component named %q", args[0])}
				}
			}
			return pipeline.WriteReference(cmd.OutOrStdout(), specs, markdown)
		},
	}
	cmd.Flags().BoolVar(&markdown, "markdown", false, "write Markdown (as docs/reference/pipelines.md)")
	return cmd
}

func newPipelineRuns() *cobra.Command {
	var (
		sf     storeFlags
		limit  int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "runs",
		Short: "List recorded pipeline runs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, err := sf.open(cmd.Context())
			if err != nil {
				return err
			}
			defer store.Close()
			reapRuns(cmd.Context(), store, cmd.ErrOrStderr())
			runs, err := store.ListRuns(cmd.Context(), limit)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if runs == nil {
					runs = []*pipeline.RunRecord{}
				}
				return writeJSONOut(out, runs)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tPIPELINE\tSTATUS\tROWS IN\tROWS OUT\tREJECTED\tSTARTED\tDURATION")
			for _, r := range runs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", r.ID, r.Pipeline, r.Status, r.RowsIn, r.RowsOut, r.RowsRejected,
					r.Started.Local().Format(time.DateTime), r.Duration.Round(time.Millisecond))
			}
			return tw.Flush()
		},
	}
	sf.bind(cmd)
	cmd.Flags().IntVar(&limit, "limit", 20, "most runs to list")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var showJSON bool
	var showSF storeFlags
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one run: stages, fitted parameters, lineage",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := showSF.open(cmd.Context())
			if err != nil {
				return err
			}
			defer store.Close()
			reapRuns(cmd.Context(), store, cmd.ErrOrStderr())
			r, err := store.GetRun(cmd.Context(), args[0])
			if err != nil {
				return &exitError{1, err}
			}
			out := cmd.OutOrStdout()
			if showJSON {
				return writeJSONOut(out, r)
			}
			fmt.Fprintf(out, "run %s\npipeline %s\nspec digest %s\nstatus %s\nstarted %s\nduration %s\n", r.ID, r.Pipeline, r.SpecDigest, r.Status,
				r.Started.Local().Format(time.DateTime), r.Duration.Round(time.Millisecond))
			if r.CacheKey != "" {
				fmt.Fprintf(out, "cache key %s\n", r.CacheKey)
			}
			fmt.Fprintln(out)
			printSummary(out, r)
			if len(r.Params) > 0 {
				fmt.Fprintln(out, "\nfitted parameters:")
				stages := make([]string, 0, len(r.Params))
				for s := range r.Params {
					stages = append(stages, s)
				}
				sort.Strings(stages)
				for _, s := range stages {
					b, _ := json.Marshal(r.Params[s])
					fmt.Fprintf(out, "  %s: %s\n", s, b)
				}
			}
			if len(r.Lineage) > 0 {
				fmt.Fprintln(out, "\nmodels fed:")
				for _, m := range r.Lineage {
					fmt.Fprintf(out, "  %s version %s\n", m.Model, m.Version)
				}
			}
			return nil
		},
	}
	showSF.bind(show)
	show.Flags().BoolVar(&showJSON, "json", false, "print JSON")
	cmd.AddCommand(show)
	return cmd
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
