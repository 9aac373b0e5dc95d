// Package registry provides the pipeline's `registry` sink: it computes a
// digest and a feature profile of the rows a run writes and records them
// for a registered model version (which dataset trained, validated or
// scored it): the full record (profile included) in the registry
// database's pipeline_datasets table, a summary as tags of the version
// (kiln.dataset.ROLE = name, .digest, .rows, .run), and the version in the
// run's lineage. It registers itself in init(). Store reads the records
// back (kiln serve answers GET /api/v1/models/{model}/versions/{version}/datasets
// with it); their shapes are in internal/registry/dataset.
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
	"strings"
	"time"

	"github.com/kilnai/kiln/internal/pipeline"
	kreg "github.com/kilnai/kiln/internal/registry"
	"github.com/kilnai/kiln/internal/registry/dataset"
	"github.com/kilnai/kiln/internal/registry/sqlstore"
)

func init() {
	pipeline.RegisterSink(pipeline.SinkSpec{
		Spec: pipeline.Spec{
			Name: "registry",
			Summary: "record a digest and a feature profile of the rows written for a registered model version (its training, " +
				"validation or scoring dataset) in the registry database, tag the version with the dataset's name, digest, rows " +
				"and run, and link the run to the version (lineage); see docs/streams.md for the digest's canonical form and the " +
				"profile's statistics",
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

// SinkConfig configures the registry sink.
type SinkConfig struct {
	Model    string `yaml:"model" required:"true" doc:"registered model name"`
	Version  int64  `yaml:"version" required:"true" doc:"model version number (it must exist when the run starts)"`
	Dataset  string `yaml:"dataset" required:"true" doc:"name of the dataset (for example customers-2026-11)"`
	Role     string `yaml:"role" doc:"what the data is to the version: training, validation, test or scoring"`
	Profile  bool   `yaml:"profile" doc:"compute the feature profile (per-column statistics); false records the digest only"`
	Digest   string `yaml:"digest" doc:"unordered (independent of row order) or ordered (rows in the order written)"`
	Registry string `yaml:"registry" doc:"registry database: sqlite:PATH or postgres://... (default: the one the process running the pipeline uses, i.e. the --registry of kiln serve, kiln pipeline run or kiln worker, else registry.db in the data directory)"`
}

// Validate checks the configuration.
func (c *SinkConfig) Validate() error {
	if c.Model == "" || c.Dataset == "" {
		return errors.New("model and dataset must not be empty")
	}
	if c.Version <= 0 {
		return fmt.Errorf("version %d: want a version number (1, 2, ...)", c.Version)
	}
	if !dataset.ValidRole(c.Role) {
		return fmt.Errorf("role %q: want training, validation, test or scoring", c.Role)
	}
	if c.Digest != "ordered" && c.Digest != "unordered" {
		return fmt.Errorf("digest %q: want ordered or unordered", c.Digest)
	}
	return nil
}

// versions is what the sink needs of the model registry
// (*registry.Service).
type versions interface {
	GetVersion(ctx context.Context, model string, version int64) (kreg.ModelVersion, error)
	UpdateVersion(ctx context.Context, actor, model string, version int64, upd kreg.VersionUpdate) (kreg.ModelVersion, error)
}

type sink struct {
	cfg      *SinkConfig
	env      pipeline.Env
	log      *slog.Logger
	store    *Store
	reg      versions
	regStore interface{ Close() error }
	prof     *profiler
	dig      *digester
}

var _ pipeline.Sink = (*sink)(nil)

func newSink(ctx context.Context, cfg *SinkConfig, env pipeline.Env) (*sink, error) {
	dsn := cfg.Registry
	if dsn == "" {
		dsn = env.Registry
	}
	if dsn == "" {
		dsn = "sqlite:" + filepath.Join(env.DataDir, "registry.db")
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !validDSN(dsn) {
		return nil, fmt.Errorf("registry sink: unsupported database %q (want sqlite:PATH or postgres://...)", redact(dsn))
	}
	rs, err := sqlstore.Open(ctx, dsn, log)
	if err != nil {
		return nil, fmt.Errorf("registry sink: %w", err)
	}
	svc := kreg.NewService(rs, kreg.Options{Logger: log})
	if _, err := svc.GetVersion(ctx, cfg.Model, cfg.Version); err != nil {
		rs.Close()
		return nil, fmt.Errorf("registry sink: model %s version %d: %w", cfg.Model, cfg.Version, err)
	}
	st, err := OpenStore(ctx, dsn)
	if err != nil {
		rs.Close()
		return nil, err
	}
	s := &sink{cfg: cfg, env: env, log: log, store: st, reg: svc, regStore: rs, dig: newDigester(cfg.Digest == "ordered")}
	if cfg.Profile {
		s.prof = &profiler{}
	}
	return s, nil
}

// validDSN accepts the registry setting's forms: postgres:// (or
// postgresql://) URLs, sqlite:PATH, or a plain path.
func validDSN(dsn string) bool {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"), strings.HasPrefix(dsn, "sqlite:"):
		return true
	}
	return dsn != "" && !strings.Contains(dsn, "://")
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
	defer s.regStore.Close()
	if runErr != nil {
		return nil
	}
	d := dataset.Record{
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
	prefix := "kiln.dataset." + s.cfg.Role
	tags := map[string]string{
		prefix:             s.cfg.Dataset,
		prefix + ".digest": d.Digest,
		prefix + ".rows":   strconv.FormatInt(d.Rows, 10),
		prefix + ".run":    s.env.RunID,
	}
	if s.env.Task != "" {
		// A task's part of the data: the tags name the last task recorded;
		// pipeline_datasets holds every task's record.
		tags[prefix+".task"] = s.env.Task
	}
	if _, err := s.reg.UpdateVersion(ctx, "pipeline "+s.env.RunID, s.cfg.Model, s.cfg.Version, kreg.VersionUpdate{SetTags: tags}); err != nil {
		return fmt.Errorf("registry sink: tagging model %s version %d: %w", s.cfg.Model, s.cfg.Version, err)
	}
	if s.env.Lineage != nil {
		s.env.Lineage.UsedModel(s.cfg.Model, strconv.FormatInt(s.cfg.Version, 10))
	}
	s.log.Info("dataset recorded for the model version", "model", s.cfg.Model, "version", s.cfg.Version,
		"dataset", s.cfg.Dataset, "role", s.cfg.Role, "digest", d.Digest, "rows", d.Rows)
	return nil
}
