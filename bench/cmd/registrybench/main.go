// Command registrybench measures registry search and list latency on the
// embedded SQLite store: it builds a registry of --versions versions spread
// over --models models (with tags, metrics, params, stages and aliases)
// through registry.Service, then runs each query kind --iterations times
// (by name, tag, stage, metric, combined filters, model listing, deep
// pagination, point lookups) and prints p50/p90/p99/max per kind. --out
// writes the table as a Markdown fragment for docs/benchmarks.md; --doc
// replaces the "registry" section of such a document in place.
//
//	go run ./bench/cmd/registrybench [--versions 10000] [--models 100] [--out FILE]
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/kilnai/kiln/bench/internal/machine"
	"github.com/kilnai/kiln/bench/internal/mdsection"
	"github.com/kilnai/kiln/internal/registry"
	"github.com/kilnai/kiln/internal/registry/sqlstore"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "registrybench:", err)
		os.Exit(1)
	}
}

type options struct {
	db         string
	models     int
	versions   int
	iterations int
	page       int
	seed       uint64
	out        string
	doc        string
	target     time.Duration
	strict     bool
	cpuprofile string
	only       string
}

func run() error {
	var o options
	flag.StringVar(&o.db, "db", "", "SQLite file to build the registry in (default: a temporary directory, removed afterwards)")
	flag.IntVar(&o.models, "models", 100, "registered models")
	flag.IntVar(&o.versions, "versions", 10000, "versions in total, spread evenly over the models")
	flag.IntVar(&o.iterations, "iterations", 300, "measured runs of each query kind")
	flag.IntVar(&o.page, "page", 50, "page size (max_results) of the searches")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the generated metrics, tags and query parameters")
	flag.StringVar(&o.out, "out", "", "write the report as a Markdown fragment to this file")
	flag.StringVar(&o.doc, "doc", "", "replace the \"registry\" section of this Markdown document (e.g. docs/benchmarks.md)")
	flag.DurationVar(&o.target, "target", 10*time.Millisecond, "p99 target per query kind")
	flag.BoolVar(&o.strict, "strict", false, "exit with status 2 when a query kind misses the p99 target")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the measured queries to this file")
	flag.StringVar(&o.only, "only", "", "comma-separated query kinds to run (default all)")
	flag.Parse()
	if o.models < 1 || o.versions < o.models || o.iterations < 1 || o.page < 1 || o.page > registry.MaxModelPage {
		return fmt.Errorf("need --models >= 1, --versions >= --models, --iterations >= 1 and 1 <= --page <= %d", registry.MaxModelPage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	path := o.db
	if path == "" {
		dir, err := os.MkdirTemp("", "registrybench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, "registry.db")
	} else if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s exists; give a new file (the benchmark builds its own registry)", path)
	}
	store, err := sqlstore.Open(ctx, "sqlite:"+path, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	svc := registry.NewService(store, registry.Options{})

	load := machine.LoadAvg()
	rng := rand.New(rand.NewPCG(o.seed, 7))
	start := time.Now()
	if err := populate(ctx, svc, o, rng); err != nil {
		return err
	}
	populated := time.Since(start)
	fmt.Fprintf(os.Stderr, "populated %d versions over %d models in %s\n", o.versions, o.models, populated.Round(time.Millisecond))

	samples, err := measure(ctx, svc, o, rng)
	if err != nil {
		return err
	}
	rows := make([]summary, len(samples))
	missed := false
	for i, s := range samples {
		rows[i] = summarize(s)
		if rows[i].P99 > o.target {
			missed = true
		}
	}
	if err := writeText(os.Stdout, rows, o.target); err != nil {
		return err
	}
	m := meta{Date: time.Now(), Machine: machine.Read().Summary(), Command: commandLine(), Models: o.models, Versions: o.versions, Target: o.target, Populate: populated, Load: load}
	if o.out != "" {
		f, err := os.Create(o.out)
		if err != nil {
			return err
		}
		if err := writeMarkdown(f, m, rows); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if o.doc != "" {
		var b strings.Builder
		if err := writeMarkdown(&b, m, rows); err != nil {
			return err
		}
		if err := mdsection.Replace(o.doc, "registry", b.String()); err != nil {
			return err
		}
	}
	if missed && o.strict {
		fmt.Fprintf(os.Stderr, "registrybench: a query kind missed the p99 target of %s\n", o.target)
		os.Exit(2)
	}
	return nil
}

func modelName(i int) string { return fmt.Sprintf("model-%03d", i) }

var teams = []string{"growth", "risk", "search", "ads", "vision"}

// populate registers the versions round-robin over the models, so versions
// of one model are spread over the creation timeline, and moves some of
// them through the stages and aliases.
func populate(ctx context.Context, svc *registry.Service, o options, rng *rand.Rand) error {
	for i := 0; i < o.models; i++ {
		_, err := svc.CreateModel(ctx, "bench", registry.CreateModelInput{
			Name: modelName(i), Description: "benchmark model",
			Tags: map[string]string{"team": teams[i%len(teams)], "tier": fmt.Sprint(i % 3)},
		})
		if err != nil {
			return err
		}
	}
	for n := 0; n < o.versions; n++ {
		model := modelName(n % o.models)
		env := "dev"
		if rng.IntN(4) == 0 {
			env = "prod"
		}
		digest := fmt.Sprintf("sha256:%064x", n+1)
		_, _, err := svc.CreateVersion(ctx, "bench", registry.CreateVersionInput{
			Model:    model,
			Artifact: registry.Artifact{Digest: digest, Size: int64(1000 + rng.IntN(1_000_000)), Format: "onnx"},
			Signature: registry.Signature{
				Inputs:  []registry.TensorSpec{{Name: "features", Datatype: "FP32", Shape: []int64{-1, 16}}},
				Outputs: []registry.TensorSpec{{Name: "probability", Datatype: "FP32", Shape: []int64{-1, 1}}},
			},
			Metrics: map[string]registry.Metric{
				"accuracy":       {Value: 0.5 + rng.Float64()/2, Direction: registry.HigherIsBetter},
				"latency_p99_ms": {Value: 1 + rng.Float64()*50, Direction: registry.LowerIsBetter},
				"f1":             {Value: rng.Float64(), Direction: registry.HigherIsBetter},
			},
			Params:  map[string]string{"lr": fmt.Sprint([]float64{0.1, 0.01, 0.001}[rng.IntN(3)]), "epochs": fmt.Sprint(5 + rng.IntN(50))},
			Tags:    map[string]string{"env": env, "git": fmt.Sprintf("%07x", rng.Uint32()>>4)},
			Lineage: registry.Lineage{PipelineRunID: fmt.Sprintf("run-%d", n)},
			RunID:   fmt.Sprintf("run-%d", n),
		})
		if err != nil {
			return err
		}
	}
	perModel := int64(o.versions / o.models)
	for i := 0; i < o.models; i++ {
		m := modelName(i)
		moves := []struct {
			v  int64
			to registry.Stage
		}{{1, registry.StageArchived}, {perModel - 2, registry.StageStaging}, {perModel - 1, registry.StageProduction}, {perModel, registry.StageStaging}}
		for _, mv := range moves {
			if mv.v < 1 {
				continue
			}
			if _, err := svc.Transition(ctx, "bench", registry.TransitionInput{Model: m, Version: mv.v, To: mv.to}); err != nil {
				return err
			}
		}
		if perModel >= 1 {
			if _, err := svc.SetAlias(ctx, "bench", registry.SetAliasInput{Model: m, Alias: "champion", Version: max(1, perModel-1)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// measure runs every query kind o.iterations times, interleaved so that
// background noise spreads over all kinds alike.
func measure(ctx context.Context, svc *registry.Service, o options, rng *rand.Rand) ([]sample, error) {
	type kind struct {
		name, desc string
		run        func() error
	}
	versions := func(filter string, order ...string) func() error {
		return func() error {
			f := strings.ReplaceAll(filter, "{model}", modelName(rng.IntN(o.models)))
			_, err := svc.SearchVersions(ctx, registry.SearchQuery{Filter: f, OrderBy: order, MaxResults: o.page})
			return err
		}
	}
	// deep pagination: each run fetches the next page of a walk over all
	// versions, restarting at the end
	var tok string
	walk := func() error {
		p, err := svc.SearchVersions(ctx, registry.SearchQuery{MaxResults: 100, PageToken: tok})
		if err != nil {
			return err
		}
		tok = p.NextPageToken
		return nil
	}
	var mtok string
	modelWalk := func() error {
		p, err := svc.SearchModels(ctx, registry.SearchQuery{MaxResults: 10, PageToken: mtok})
		if err != nil {
			return err
		}
		mtok = p.NextPageToken
		return nil
	}
	perModel := o.versions / o.models
	kinds := []kind{
		{"list-models", fmt.Sprintf("first page of models (%d, with latest versions per stage)", o.page), func() error {
			_, err := svc.SearchModels(ctx, registry.SearchQuery{MaxResults: o.page})
			return err
		}},
		{"models-by-tag", "models with `tags.team = 'risk'`", func() error {
			_, err := svc.SearchModels(ctx, registry.SearchQuery{Filter: "tags.team = 'risk'", MaxResults: o.page})
			return err
		}},
		{"models-paged", "next page of 10 models, walking all models", modelWalk},
		{"list-versions", "first page of all versions", versions("")},
		{"by-name", "`name = '<random model>'`", versions("name = '{model}'")},
		{"by-name-like", "`name LIKE 'model-0%'`", versions("name LIKE 'model-0%'")},
		{"by-tag", "`tags.env = 'prod'`", versions("tags.env = 'prod'")},
		{"by-stage", "`stage = 'production'`", versions("stage = 'production'")},
		{"by-metric", "`metrics.accuracy > 0.9`", versions("metrics.accuracy > 0.9")},
		{"by-metric-sorted", "`metrics.accuracy > 0.9`, newest first", versions("metrics.accuracy > 0.9", "creation_timestamp DESC")},
		{"combined", "`name = '<m>' AND tags.env = 'prod' AND metrics.latency_p99_ms < 25`",
			versions("name = '{model}' AND tags.env = 'prod' AND metrics.latency_p99_ms < 25")},
		{"or-filter", "`stage = 'production' OR alias = 'champion'`", versions("stage = 'production' OR alias = 'champion'")},
		{"versions-paged", "next page of 100 versions, walking all versions", walk},
		{"get-version", "one version by model and number", func() error {
			_, err := svc.GetVersion(ctx, modelName(rng.IntN(o.models)), int64(1+rng.IntN(perModel)))
			return err
		}},
		{"get-model", "one model with aliases and latest versions", func() error {
			_, err := svc.GetModel(ctx, modelName(rng.IntN(o.models)))
			return err
		}},
	}
	if o.only != "" {
		want := strings.Split(o.only, ",")
		kinds = slices.DeleteFunc(kinds, func(k kind) bool { return !slices.Contains(want, k.name) })
		if len(kinds) == 0 {
			return nil, fmt.Errorf("--only %q names no query kind", o.only)
		}
	}
	samples := make([]sample, len(kinds))
	for i, k := range kinds {
		samples[i] = sample{kind: k.name, desc: k.desc}
		if err := k.run(); err != nil { // warm-up, and a check that the query works
			return nil, fmt.Errorf("%s: %w", k.name, err)
		}
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	for it := 0; it < o.iterations; it++ {
		for i, k := range kinds {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			t0 := time.Now()
			if err := k.run(); err != nil {
				return nil, fmt.Errorf("%s: %w", k.name, err)
			}
			samples[i].durs = append(samples[i].durs, time.Since(t0))
		}
	}
	return samples, nil
}

func commandLine() string {
	args := []string{"go run ./bench/cmd/registrybench"}
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "out" || f.Name == "doc" || f.Name == "db" || f.Name == "cpuprofile" {
			return
		}
		args = append(args, "--"+f.Name+"="+f.Value.String())
	})
	return strings.Join(args, " ")
}
