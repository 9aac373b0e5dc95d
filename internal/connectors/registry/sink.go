// Package registry provides the pipeline's `registry` sink: it computes a
// digest and a feature profile of the rows a run writes and records them
// for a model version (which dataset trained, validated or scored it), in
// the registry database, and reports the version as the run's lineage. It
// registers itself in init().
//
// The digest is "sha256:<hex>" over the rows in a canonical encoding (each
// row as a JSON object with keys in column order, the schema's names and
// types included). digest: unordered (the default) is independent of row
// order — a sum modulo 2^256 of every row's SHA-256 with the row count —
// so parallel transform workers, which may deliver batches in any order,
// give the same digest for the same rows; digest: ordered hashes the rows
// in the order written (use settings.ordered for a stable order).
//
// The profile has, per numeric column, count, nulls, mean, population std,
// min and max (exact), quantiles p1…p99 and a 20-bin equal-width histogram
// over [min, max] (from a seeded uniform reservoir sample of 10,000
// values); per string (and bool) column, count, nulls, a distinct-count
// estimate (exact below 2,000 values, else HyperLogLog with 4,096
// registers) and the 20 most frequent values (exact counts below 2,000
// distinct values, else Misra-Gries estimates, flagged top_approximate);
// per timestamp or date column, count, nulls, first and last.
package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"time"

	"github.com/kilnai/kiln/internal/pipeline"
)

func init() {
	pipeline.RegisterSink(pipeline.SinkSpec{
		Spec: pipeline.Spec{
			Name: "registry",
			Summary: "record a digest and a feature profile of the rows written for a model version (its training, " +
				"validation or scoring dataset) in the registry database, and link the run to that version (lineage); " +
				"see the package documentation for the digest's canonical form and the profile's statistics",
			Config: func() any { return &SinkConfig{Role: "training", Profile: true, Digest: "unordered"} },
			Examples: []string{
				"{model: churn, version: 3, dataset: customers-2026-11, role: training}",
				"{model: fraud, version: 12, dataset: scoring-daily, role: scoring, profile: false, registry: \"${REGISTRY_DSN}\"}",
			},
		},
		Build: func(ctx context.Context, cfg any, env pipeline.Env) (pipeline.Sink, error) {
			return newSink(ctx, cfg.(*SinkConfig), env)
		},
	})
}

// Dataset roles.
var roles = []string{"training", "validation", "test", "scoring"}

// SinkConfig configures the registry sink.
type SinkConfig struct {
	Model    string `yaml:"model" required:"true" doc:"registered model name"`
	Version  int64  `yaml:"version" required:"true" doc:"model version number"`
	Dataset  string `yaml:"dataset" required:"true" doc:"name of the dataset (for example customers-2026-11)"`
	Role     string `yaml:"role" doc:"what the data is to the version: training, validation, test or scoring"`
	Profile  bool   `yaml:"profile" doc:"compute the feature profile (per-column statistics); false records the digest only"`
	Digest   string `yaml:"digest" doc:"unordered (independent of row order) or ordered (rows in the order written)"`
	Registry string `yaml:"registry" doc:"registry database: sqlite:PATH or postgres://... (default: registry.db in the data directory, as kiln serve uses)"`
}

// Validate checks the configuration.
func (c *SinkConfig) Validate() error {
	if c.Model == "" || c.Dataset == "" {
		return errors.New("model and dataset must not be empty")
	}
	if c.Version <= 0 {
		return fmt.Errorf("version %d: want a version number (1, 2, ...)", c.Version)
	}
	ok := false
	for _, r := range roles {
		ok = ok || r == c.Role
	}
	if !ok {
		return fmt.Errorf("role %q: want training, validation, test or scoring", c.Role)
	}
	if c.Digest != "ordered" && c.Digest != "unordered" {
		return fmt.Errorf("digest %q: want ordered or unordered", c.Digest)
	}
	return nil
}

type sink struct {
	cfg   *SinkConfig
	env   pipeline.Env
	log   *slog.Logger
	store *Store
	prof  *profiler
	dig   *digester
}

var _ pipeline.Sink = (*sink)(nil)

func newSink(ctx context.Context, cfg *SinkConfig, env pipeline.Env) (*sink, error) {
	dsn := cfg.Registry
	if dsn == "" {
		dsn = "sqlite:" + filepath.Join(env.DataDir, "registry.db")
	}
	st, err := OpenStore(ctx, dsn)
	if err != nil {
		return nil, err
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &sink{cfg: cfg, env: env, log: log, store: st, dig: newDigester(cfg.Digest == "ordered")}
	if cfg.Profile {
		s.prof = &profiler{}
	}
	return s, nil
}

// Write folds the batch into the digest and the profile.
func (s *sink) Write(_ context.Context, b pipeline.Batch) ([]pipeline.RowError, error) {
	if s.dig.schema != "" && b.NumCols() > 0 {
		// Every batch must have the schema the digest started with.
		var sch string
		for _, f := range b.Schema().Fields() {
			sch += f.Name + ":" + f.Type.String() + "\n"
		}
		if sch != s.dig.schema {
			return nil, fmt.Errorf("registry sink: a batch's columns differ from the first batch's (%q vs %q)", sch, s.dig.schema)
		}
	}
	s.dig.add(b)
	if s.prof != nil {
		s.prof.add(b)
	}
	return nil, nil
}

// Close records the dataset when the run succeeded; a failed run records
// nothing.
func (s *sink) Close(ctx context.Context, runErr error) error {
	defer s.store.Close()
	if runErr != nil {
		return nil
	}
	d := Dataset{
		Model: s.cfg.Model, Version: s.cfg.Version, Name: s.cfg.Dataset, Role: s.cfg.Role,
		RunID: s.env.RunID, Task: s.env.Task, Digest: s.dig.digest(), DigestKind: s.cfg.Digest, Rows: s.dig.rows,
		Created: time.Now().UTC(),
	}
	if s.prof != nil {
		d.Profile = s.prof.profile()
	}
	if err := s.store.Record(ctx, d); err != nil {
		return err
	}
	if s.env.Lineage != nil {
		s.env.Lineage.UsedModel(s.cfg.Model, strconv.FormatInt(s.cfg.Version, 10))
	}
	s.log.Info("dataset recorded for the model version", "model", s.cfg.Model, "version", s.cfg.Version,
		"dataset", s.cfg.Dataset, "role", s.cfg.Role, "digest", d.Digest, "rows", d.Rows)
	return nil
}
