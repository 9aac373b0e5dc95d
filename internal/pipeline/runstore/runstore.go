// Package runstore keeps pipeline run records in the registry database:
// SQLite (modernc.org/sqlite, the embedded default) or PostgreSQL (pgx).
// It owns its tables (pipeline_runs, pipeline_run_models) and its own
// migrations table, pipeline_schema_migrations, so it does not depend on
// the registry's schema.
package runstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"

	"github.com/kilnai/kiln/internal/pipeline"
)

// Store is a pipeline.RunStore on SQL.
type Store struct {
	db       *sql.DB
	postgres bool
}

var _ pipeline.RunStore = (*Store)(nil)

// DefaultDSN is the registry database inside a data directory.
func DefaultDSN(dataDir string) string {
	return "sqlite:" + filepath.Join(dataDir, "registry.db")
}

// Open connects to dsn — `postgres://...`, or SQLite as `sqlite:PATH` or a
// plain path (the registry setting's forms) — and applies the migrations.
func Open(ctx context.Context, dsn string) (*Store, error) {
	var s Store
	var err error
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		s.postgres = true
		s.db, err = sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("run store: %w", err)
		}
	case strings.HasPrefix(dsn, "sqlite:"), dsn != "" && !strings.Contains(dsn, "://"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		path = strings.TrimPrefix(path, "//")
		if path == "" {
			return nil, errors.New("run store: sqlite DSN without a path")
		}
		if dir := filepath.Dir(path); dir != "." {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("run store: %w", err)
			}
		}
		s.db, err = sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
		if err != nil {
			return nil, fmt.Errorf("run store: %w", err)
		}
	default:
		return nil, fmt.Errorf("run store: unsupported database %q (want sqlite:PATH or postgres://...)", redact(dsn))
	}
	if err := s.connect(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("run store: connect: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	return &s, nil
}

// connect opens the first connection. Processes opening a new SQLite
// file together race to switch it to WAL, and that switch answers
// SQLITE_BUSY at once instead of waiting for busy_timeout, so a busy
// answer is retried for a while.
func (s *Store) connect(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.db.PingContext(ctx)
		var se interface{ Code() int }
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqliteBusy || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// sqliteBusy is SQLite's primary result code SQLITE_BUSY.
const sqliteBusy = 5

// redact drops a DSN's password before it appears in a message.
func redact(dsn string) string {
	if at := strings.LastIndex(dsn, "@"); at > 0 {
		if i := strings.Index(dsn, "://"); i >= 0 && i < at {
			return dsn[:i+3] + "…" + dsn[at:]
		}
	}
	return dsn
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

var migrations = []string{
	`CREATE TABLE pipeline_runs (
		id TEXT PRIMARY KEY,
		pipeline TEXT NOT NULL,
		spec_digest TEXT NOT NULL,
		status TEXT NOT NULL,
		error TEXT NOT NULL DEFAULT '',
		started_ns BIGINT NOT NULL,
		finished_ns BIGINT NOT NULL DEFAULT 0,
		duration_ns BIGINT NOT NULL DEFAULT 0,
		rows_in BIGINT NOT NULL DEFAULT 0,
		rows_out BIGINT NOT NULL DEFAULT 0,
		rows_rejected BIGINT NOT NULL DEFAULT 0,
		cache_key TEXT NOT NULL DEFAULT '',
		stages TEXT NOT NULL DEFAULT '[]',
		params TEXT NOT NULL DEFAULT '{}'
	)`,
	`CREATE INDEX pipeline_runs_started ON pipeline_runs (started_ns DESC)`,
	`CREATE TABLE pipeline_run_models (
		run_id TEXT NOT NULL REFERENCES pipeline_runs(id) ON DELETE CASCADE,
		model TEXT NOT NULL,
		version TEXT NOT NULL,
		PRIMARY KEY (run_id, model, version)
	)`,
	`CREATE INDEX pipeline_run_models_model ON pipeline_run_models (model, version)`,
	// The process executing the run (JSON; '' before owners were recorded).
	`ALTER TABLE pipeline_runs ADD COLUMN owner TEXT NOT NULL DEFAULT ''`,
	`CREATE INDEX pipeline_runs_status ON pipeline_runs (status)`,
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

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS pipeline_schema_migrations (version INTEGER PRIMARY KEY, applied_ns BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("run store: migrations table: %w", err)
	}
	for i, m := range migrations {
		v := i + 1
		if err := s.apply(ctx, v, m); err != nil {
			return fmt.Errorf("run store: migration %d: %w", v, err)
		}
	}
	return nil
}

func (s *Store) apply(ctx context.Context, v int, stmt string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if s.postgres {
		// Serialise concurrent migrators (several replicas starting).
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7242851)`); err != nil {
			return err
		}
	}
	var n int
	if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM pipeline_schema_migrations WHERE version = ?`), v).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, stmt); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO pipeline_schema_migrations (version, applied_ns) VALUES (?, ?)`), v, time.Now().UnixNano()); err != nil {
		return err
	}
	return tx.Commit()
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// CreateRun inserts a run record.
func (s *Store) CreateRun(ctx context.Context, r *pipeline.RunRecord) error {
	stages, params, err := encode(r)
	if err != nil {
		return err
	}
	owner, err := encodeOwner(r)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO pipeline_runs
		(id, pipeline, spec_digest, status, error, started_ns, finished_ns, duration_ns, rows_in, rows_out, rows_rejected, cache_key, stages, params, owner)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		r.ID, r.Pipeline, r.SpecDigest, r.Status, r.Error, nanos(r.Started), nanos(r.Finished), int64(r.Duration),
		r.RowsIn, r.RowsOut, r.RowsRejected, r.CacheKey, stages, params, owner)
	if err != nil {
		return fmt.Errorf("insert run %s: %w", r.ID, err)
	}
	return nil
}

func encodeOwner(r *pipeline.RunRecord) (string, error) {
	if r.Owner == nil {
		return "", nil
	}
	b, err := json.Marshal(r.Owner)
	if err != nil {
		return "", fmt.Errorf("encode owner: %w", err)
	}
	return string(b), nil
}

func encode(r *pipeline.RunRecord) (string, string, error) {
	st := r.Stages
	if st == nil {
		st = []pipeline.StageStats{}
	}
	stages, err := json.Marshal(st)
	if err != nil {
		return "", "", fmt.Errorf("encode stages: %w", err)
	}
	p := r.Params
	if p == nil {
		p = map[string]map[string]any{}
	}
	params, err := json.Marshal(p)
	if err != nil {
		return "", "", fmt.Errorf("encode fitted parameters: %w", err)
	}
	return string(stages), string(params), nil
}

// UpdateRun replaces a run record (and its lineage) in one transaction.
func (s *Store) UpdateRun(ctx context.Context, r *pipeline.RunRecord) error {
	stages, params, err := encode(r)
	if err != nil {
		return err
	}
	owner, err := encodeOwner(r)
	if err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("update run %s: %w", r.ID, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, s.q(`UPDATE pipeline_runs SET pipeline = ?, spec_digest = ?, status = ?, error = ?, started_ns = ?,
		finished_ns = ?, duration_ns = ?, rows_in = ?, rows_out = ?, rows_rejected = ?, cache_key = ?, stages = ?, params = ?, owner = ? WHERE id = ?`),
		r.Pipeline, r.SpecDigest, r.Status, r.Error, nanos(r.Started), nanos(r.Finished), int64(r.Duration),
		r.RowsIn, r.RowsOut, r.RowsRejected, r.CacheKey, stages, params, owner, r.ID)
	if err != nil {
		return fmt.Errorf("update run %s: %w", r.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("update run %s: %w", r.ID, pipeline.ErrRunNotFound)
	}
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM pipeline_run_models WHERE run_id = ?`), r.ID); err != nil {
		return fmt.Errorf("update run %s lineage: %w", r.ID, err)
	}
	for _, m := range r.Lineage {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO pipeline_run_models (run_id, model, version) VALUES (?, ?, ?)`), r.ID, m.Model, m.Version); err != nil {
			return fmt.Errorf("update run %s lineage: %w", r.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("update run %s: %w", r.ID, err)
	}
	return nil
}

const cols = `id, pipeline, spec_digest, status, error, started_ns, finished_ns, duration_ns, rows_in, rows_out, rows_rejected, cache_key, stages, params, owner`

type scanner interface{ Scan(dest ...any) error }

func scanRun(sc scanner) (*pipeline.RunRecord, error) {
	var r pipeline.RunRecord
	var started, finished, dur int64
	var stages, params, owner string
	if err := sc.Scan(&r.ID, &r.Pipeline, &r.SpecDigest, &r.Status, &r.Error, &started, &finished, &dur,
		&r.RowsIn, &r.RowsOut, &r.RowsRejected, &r.CacheKey, &stages, &params, &owner); err != nil {
		return nil, err
	}
	if owner != "" {
		r.Owner = &pipeline.RunOwner{}
		if err := json.Unmarshal([]byte(owner), r.Owner); err != nil {
			return nil, fmt.Errorf("run %s: owner: %w", r.ID, err)
		}
	}
	r.Started, r.Finished, r.Duration = fromNanos(started), fromNanos(finished), time.Duration(dur)
	if err := json.Unmarshal([]byte(stages), &r.Stages); err != nil {
		return nil, fmt.Errorf("run %s: stages: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(params), &r.Params); err != nil {
		return nil, fmt.Errorf("run %s: params: %w", r.ID, err)
	}
	if len(r.Params) == 0 {
		r.Params = nil
	}
	return &r, nil
}

func (s *Store) lineage(ctx context.Context, r *pipeline.RunRecord) error {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT model, version FROM pipeline_run_models WHERE run_id = ? ORDER BY model, version`), r.ID)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var m pipeline.ModelRef
		if err := rows.Scan(&m.Model, &m.Version); err != nil {
			return err
		}
		r.Lineage = append(r.Lineage, m)
	}
	return rows.Err()
}

// GetRun returns one run (pipeline.ErrRunNotFound if there is none).
func (s *Store) GetRun(ctx context.Context, id string) (*pipeline.RunRecord, error) {
	r, err := scanRun(s.db.QueryRowContext(ctx, s.q(`SELECT `+cols+` FROM pipeline_runs WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("run %q: %w", id, pipeline.ErrRunNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get run %s: %w", id, err)
	}
	if err := s.lineage(ctx, r); err != nil {
		return nil, fmt.Errorf("get run %s lineage: %w", id, err)
	}
	return r, nil
}

// ListRuns returns the newest runs first (limit ≤ 0: 50).
func (s *Store) ListRuns(ctx context.Context, limit int) ([]*pipeline.RunRecord, error) {
	if limit <= 0 {
		limit = 50
	}
	return s.list(ctx, s.q(`SELECT `+cols+` FROM pipeline_runs ORDER BY started_ns DESC, id DESC LIMIT ?`), limit)
}

// RunningRuns returns the runs recorded as running, newest first.
func (s *Store) RunningRuns(ctx context.Context) ([]*pipeline.RunRecord, error) {
	return s.list(ctx, s.q(`SELECT `+cols+` FROM pipeline_runs WHERE status = ? ORDER BY started_ns DESC, id DESC`), pipeline.StatusRunning)
}

func (s *Store) list(ctx context.Context, query string, args ...any) ([]*pipeline.RunRecord, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	var out []*pipeline.RunRecord
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("list runs: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return nil, fmt.Errorf("list runs: %w", err)
	}
	rows.Close()
	for _, r := range out {
		if err := s.lineage(ctx, r); err != nil {
			return nil, fmt.Errorf("list runs lineage: %w", err)
		}
	}
	return out, nil
}

// RunsForModel returns the ids of the runs that fed a model version
// (lineage), newest first.
func (s *Store) RunsForModel(ctx context.Context, model, version string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT r.id FROM pipeline_run_models m JOIN pipeline_runs r ON r.id = m.run_id
		WHERE m.model = ? AND m.version = ? ORDER BY r.started_ns DESC`), model, version)
	if err != nil {
		return nil, fmt.Errorf("runs for %s/%s: %w", model, version, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
