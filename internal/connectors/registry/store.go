package registry

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"

	"github.com/kilnai/kiln/internal/registry/dataset"
)

// Store keeps dataset records in the registry database, in its own table
// (pipeline_datasets), so it does not depend on the registry's schema.
type Store struct {
	db       *sql.DB
	postgres bool
}

// OpenStore connects to dsn — postgres://..., or SQLite as sqlite:PATH or
// a plain path — and creates the table when missing.
func OpenStore(ctx context.Context, dsn string) (*Store, error) {
	s := &Store{}
	var err error
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		s.postgres = true
		s.db, err = sql.Open("pgx", dsn)
	case strings.HasPrefix(dsn, "sqlite:"), dsn != "" && !strings.Contains(dsn, "://"):
		path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "//")
		if path == "" {
			return nil, errors.New("dataset store: sqlite DSN without a path")
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("dataset store: %w", err)
		}
		s.db, err = sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_txlock=immediate")
	default:
		return nil, fmt.Errorf("dataset store: unsupported database %q (want sqlite:PATH or postgres://...)", redact(dsn))
	}
	if err != nil {
		return nil, fmt.Errorf("dataset store: %w", err)
	}
	if err := s.db.PingContext(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("dataset store: connect to %s: %w", redact(dsn), err)
	}
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("dataset store: %w", err)
	}
	return s, nil
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	return u.Redacted()
}

const createTable = `CREATE TABLE IF NOT EXISTS pipeline_datasets (
	run_id TEXT NOT NULL,
	task TEXT NOT NULL,
	model TEXT NOT NULL,
	version BIGINT NOT NULL,
	dataset TEXT NOT NULL,
	role TEXT NOT NULL,
	digest TEXT NOT NULL,
	digest_kind TEXT NOT NULL,
	rows_count BIGINT NOT NULL,
	profile TEXT NOT NULL,
	created_ns BIGINT NOT NULL,
	PRIMARY KEY (run_id, task, model, version, dataset)
)`

func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if s.postgres {
		// Serialise concurrent creators.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7242852)`); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, createTable); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS pipeline_datasets_model ON pipeline_datasets (model, version)`); err != nil {
		return err
	}
	return tx.Commit()
}

func (s *Store) q(query string) string {
	if !s.postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Close releases the connection.
func (s *Store) Close() error { return s.db.Close() }

// Record stores d, replacing an earlier record of the same run, task,
// model version and dataset (a retried task records once).
func (s *Store) Record(ctx context.Context, d dataset.Record) error {
	prof, err := json.Marshal(d.Profile)
	if err != nil {
		return fmt.Errorf("dataset store: %w", err)
	}
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO pipeline_datasets
		(run_id, task, model, version, dataset, role, digest, digest_kind, rows_count, profile, created_ns)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (run_id, task, model, version, dataset) DO UPDATE SET
		role = excluded.role, digest = excluded.digest, digest_kind = excluded.digest_kind,
		rows_count = excluded.rows_count, profile = excluded.profile, created_ns = excluded.created_ns`),
		d.RunID, d.Task, d.Model, d.Version, d.Name, d.Role, d.Digest, d.DigestKind, d.Rows, string(prof), d.Created.UnixNano())
	if err != nil {
		return fmt.Errorf("dataset store: recording %s for %s version %d: %w", d.Name, d.Model, d.Version, err)
	}
	return nil
}

// Datasets lists the records of a model version, newest first.
func (s *Store) Datasets(ctx context.Context, model string, version int64) ([]dataset.Record, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT run_id, task, model, version, dataset, role, digest, digest_kind, rows_count, profile, created_ns
		FROM pipeline_datasets WHERE model = ? AND version = ? ORDER BY created_ns DESC, dataset, task`), model, version)
	if err != nil {
		return nil, fmt.Errorf("dataset store: %w", err)
	}
	defer rows.Close()
	var out []dataset.Record
	for rows.Next() {
		var d dataset.Record
		var prof string
		var ns int64
		if err := rows.Scan(&d.RunID, &d.Task, &d.Model, &d.Version, &d.Name, &d.Role, &d.Digest, &d.DigestKind, &d.Rows, &prof, &ns); err != nil {
			return nil, fmt.Errorf("dataset store: %w", err)
		}
		if prof != "null" {
			d.Profile = &dataset.Profile{}
			if err := json.Unmarshal([]byte(prof), d.Profile); err != nil {
				return nil, fmt.Errorf("dataset store: profile of %s: %w", d.Name, err)
			}
		}
		d.Created = time.Unix(0, ns).UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}
