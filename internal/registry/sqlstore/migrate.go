package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// migration is one schema version. Statements may use {{id}} for an
// auto-incremented 64-bit primary key column and {{ctext}} for text compared
// byte by byte (PostgreSQL's "C" collation, SQLite's default), spelled per
// dialect, so both databases sort and page names the same way.
type migration struct {
	version    int
	statements []string
}

// migrations are applied in order; never edit one that has shipped, add a
// new one.
var migrations = []migration{
	{1, []string{
		`CREATE TABLE registry_models (
			id {{id}},
			name {{ctext}} NOT NULL UNIQUE,
			description TEXT NOT NULL DEFAULT '',
			gates TEXT NOT NULL DEFAULT '{}',
			next_version BIGINT NOT NULL DEFAULT 0,
			created_by TEXT NOT NULL,
			created_at BIGINT NOT NULL,
			updated_by TEXT NOT NULL,
			updated_at BIGINT NOT NULL
		)`,
		`CREATE INDEX registry_models_created ON registry_models (created_at)`,
		`CREATE INDEX registry_models_updated ON registry_models (updated_at)`,
		`CREATE TABLE registry_model_tags (
			model_id BIGINT NOT NULL REFERENCES registry_models (id) ON DELETE CASCADE,
			key TEXT NOT NULL,
			value TEXT NOT NULL,
			PRIMARY KEY (model_id, key)
		)`,
		`CREATE INDEX registry_model_tags_kv ON registry_model_tags (key, value)`,
		`CREATE TABLE registry_versions (
			id {{id}},
			model_id BIGINT NOT NULL REFERENCES registry_models (id) ON DELETE CASCADE,
			version BIGINT NOT NULL,
			artifact_digest TEXT NOT NULL,
			artifact_size BIGINT NOT NULL,
			artifact_format TEXT NOT NULL DEFAULT '',
			artifact_manifest INTEGER NOT NULL DEFAULT 0,
			signature TEXT NOT NULL DEFAULT '{}',
			lineage TEXT NOT NULL DEFAULT '{}',
			source TEXT NOT NULL DEFAULT '',
			run_id TEXT NOT NULL DEFAULT '',
			run_link TEXT NOT NULL DEFAULT '',
			status TEXT NOT NULL,
			status_message TEXT NOT NULL DEFAULT '',
			description TEXT NOT NULL DEFAULT '',
			stage TEXT NOT NULL,
			created_by TEXT NOT NULL,
			created_at BIGINT NOT NULL,
			updated_by TEXT NOT NULL,
			updated_at BIGINT NOT NULL,
			idempotency_key TEXT,
			content_digest TEXT NOT NULL DEFAULT '',
			UNIQUE (model_id, version)
		)`,
		`CREATE UNIQUE INDEX registry_versions_idem ON registry_versions (model_id, idempotency_key) WHERE idempotency_key IS NOT NULL`,
		`CREATE INDEX registry_versions_stage ON registry_versions (stage, model_id, version)`,
		`CREATE INDEX registry_versions_model_stage ON registry_versions (model_id, stage, version)`,
		`CREATE INDEX registry_versions_created ON registry_versions (created_at)`,
		`CREATE INDEX registry_versions_updated ON registry_versions (updated_at)`,
		`CREATE INDEX registry_versions_run ON registry_versions (run_id)`,
		`CREATE TABLE registry_version_tags (
			version_id BIGINT NOT NULL REFERENCES registry_versions (id) ON DELETE CASCADE,
			key TEXT NOT NULL,
			value TEXT NOT NULL,
			PRIMARY KEY (version_id, key)
		)`,
		`CREATE INDEX registry_version_tags_kv ON registry_version_tags (key, value, version_id)`,
		`CREATE TABLE registry_version_metrics (
			version_id BIGINT NOT NULL REFERENCES registry_versions (id) ON DELETE CASCADE,
			key TEXT NOT NULL,
			value DOUBLE PRECISION NOT NULL,
			direction TEXT NOT NULL,
			PRIMARY KEY (version_id, key)
		)`,
		`CREATE INDEX registry_version_metrics_kv ON registry_version_metrics (key, value, version_id)`,
		`CREATE TABLE registry_version_params (
			version_id BIGINT NOT NULL REFERENCES registry_versions (id) ON DELETE CASCADE,
			key TEXT NOT NULL,
			value TEXT NOT NULL,
			PRIMARY KEY (version_id, key)
		)`,
		`CREATE TABLE registry_aliases (
			model_id BIGINT NOT NULL REFERENCES registry_models (id) ON DELETE CASCADE,
			alias TEXT NOT NULL,
			version BIGINT NOT NULL,
			updated_by TEXT NOT NULL,
			updated_at BIGINT NOT NULL,
			PRIMARY KEY (model_id, alias),
			FOREIGN KEY (model_id, version) REFERENCES registry_versions (model_id, version)
		)`,
		`CREATE INDEX registry_aliases_version ON registry_aliases (model_id, version)`,
		`CREATE TABLE registry_transitions (
			id {{id}},
			model_id BIGINT NOT NULL REFERENCES registry_models (id) ON DELETE CASCADE,
			version BIGINT NOT NULL,
			from_stage TEXT NOT NULL,
			to_stage TEXT NOT NULL,
			actor TEXT NOT NULL,
			at BIGINT NOT NULL,
			reason TEXT NOT NULL DEFAULT ''
		)`,
		`CREATE INDEX registry_transitions_model ON registry_transitions (model_id, at, id)`,
		`CREATE TABLE registry_alias_events (
			id {{id}},
			model_id BIGINT NOT NULL REFERENCES registry_models (id) ON DELETE CASCADE,
			alias TEXT NOT NULL,
			from_version BIGINT NOT NULL,
			to_version BIGINT NOT NULL,
			actor TEXT NOT NULL,
			at BIGINT NOT NULL,
			reason TEXT NOT NULL DEFAULT ''
		)`,
		`CREATE INDEX registry_alias_events_model ON registry_alias_events (model_id, alias, at, id)`,
	}},
	// 2: versions carry their model's name, so searches sort and page on
	// one index without joining the models table
	{2, []string{
		`ALTER TABLE registry_versions ADD COLUMN model_name {{ctext}} NOT NULL DEFAULT ''`,
		`UPDATE registry_versions SET model_name = (SELECT name FROM registry_models WHERE registry_models.id = registry_versions.model_id)`,
		`CREATE INDEX registry_versions_name ON registry_versions (model_name, version DESC)`,
	}},
	// 3: alias lookups by name, and the stage in the name index so a
	// filter on stage is checked while walking the index
	{3, []string{
		`CREATE INDEX registry_aliases_alias ON registry_aliases (alias, model_id, version)`,
		`DROP INDEX registry_versions_name`,
		`CREATE INDEX registry_versions_name ON registry_versions (model_name, version DESC, stage)`,
	}},
	// 4: time-ordered searches break ties by name and version, in the
	// time's direction, so these indexes serve them without a sort
	{4, []string{
		`DROP INDEX registry_versions_created`,
		`DROP INDEX registry_versions_updated`,
		`CREATE INDEX registry_versions_created ON registry_versions (created_at, model_name, version)`,
		`CREATE INDEX registry_versions_updated ON registry_versions (updated_at, model_name, version)`,
		`DROP INDEX registry_models_created`,
		`DROP INDEX registry_models_updated`,
		`CREATE INDEX registry_models_created ON registry_models (created_at, name)`,
		`CREATE INDEX registry_models_updated ON registry_models (updated_at, name)`,
	}},
	// 5: a copy of the immutable metrics and params on the version row, so
	// reading a version needs no query per key/value table (the tables stay
	// for filtering; rows from before have an empty copy and use them)
	{5, []string{
		`ALTER TABLE registry_versions ADD COLUMN immutable_json TEXT NOT NULL DEFAULT ''`,
	}},
}

// migrate brings the schema to the newest version in one transaction.
// A database written by a newer Kiln (higher version) is refused.
func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS registry_schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("create registry_schema_migrations: %w", err)
	}
	id, ctext := "INTEGER PRIMARY KEY", "TEXT"
	if s.dialect == dialectPostgres {
		id, ctext = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", `TEXT COLLATE "C"`
	}
	expand := strings.NewReplacer("{{id}}", id, "{{ctext}}", ctext)
	return s.write(ctx, func(tx *sql.Tx) error {
		if s.dialect == dialectPostgres {
			// concurrent replicas starting together migrate one at a time
			if _, err := tx.ExecContext(ctx, `LOCK TABLE registry_schema_migrations IN EXCLUSIVE MODE`); err != nil {
				return fmt.Errorf("lock registry_schema_migrations: %w", err)
			}
		}
		var cur int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM registry_schema_migrations`).Scan(&cur); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		latest := migrations[len(migrations)-1].version
		if cur > latest {
			return fmt.Errorf("registry database schema is version %d, newer than this Kiln knows (%d); upgrade Kiln", cur, latest)
		}
		for _, m := range migrations {
			if m.version <= cur {
				continue
			}
			for _, st := range m.statements {
				if _, err := tx.ExecContext(ctx, expand.Replace(st)); err != nil {
					return fmt.Errorf("registry schema migration %d: %w", m.version, err)
				}
			}
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO registry_schema_migrations (version, applied_at) VALUES (?, ?)`),
				m.version, time.Now().UnixMicro()); err != nil {
				return fmt.Errorf("record registry schema migration %d: %w", m.version, err)
			}
			s.log.Info("registry schema migrated", "version", m.version, "dialect", s.Dialect())
		}
		return nil
	})
}

// SchemaVersion returns the database's schema version.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM registry_schema_migrations`).Scan(&v)
	return v, err
}
