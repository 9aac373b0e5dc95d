// Package sqlstore implements registry.Store on SQL databases: SQLite
// (modernc.org/sqlite, pure Go; the embedded default) and PostgreSQL (pgx).
// One implementation serves both dialects; the schema is versioned in the
// registry_schema_migrations table and migrated in a transaction at Open.
// Every write is one transaction, so a crash never leaves a partial version.
//
// All tables carry a registry_ prefix so the registry can share a database
// with other Kiln components.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/kilnai/kiln/internal/registry"
)

// Store is a registry.Store over SQLite or PostgreSQL.
type Store struct {
	// w runs write transactions; r runs reads. They are the same pool on
	// PostgreSQL; on SQLite w has one connection (one writer at a time, the
	// way SQLite works anyway, without SQLITE_BUSY between our goroutines)
	// and r has several (WAL lets readers run beside the writer).
	w, r    *sql.DB
	dialect dialect
	log     *slog.Logger
	// creates counts committed version creations; every optimizeEvery of
	// them SQLite refreshes its planner statistics
	creates atomic.Int64
	// imm keeps decoded immutable documents of recently read versions
	imm immCache
}

// optimizeEvery is how many version creations pass between SQLite's
// PRAGMA optimize runs (planner statistics; PostgreSQL's autovacuum does
// the same on its own).
const optimizeEvery = 1000

var _ registry.Store = (*Store)(nil)

type dialect int

const (
	dialectSQLite dialect = iota + 1
	dialectPostgres
)

// Open opens (creating if needed) and migrates a registry database. dsn is
// "sqlite:<path>", a bare file path, or a "postgres://" / "postgresql://"
// URL (pgx syntax; a search_path parameter selects the schema).
func Open(ctx context.Context, dsn string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{log: logger}
	switch {
	case strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://"):
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("open registry database: %w", err)
		}
		db.SetMaxOpenConns(16)
		db.SetMaxIdleConns(4)
		db.SetConnMaxIdleTime(5 * time.Minute)
		s.w, s.r, s.dialect = db, db, dialectPostgres
	default:
		path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite://"), "sqlite:")
		if path == "" {
			return nil, fmt.Errorf("open registry database: %w: empty SQLite path", registry.ErrInvalid)
		}
		if strings.ContainsAny(path, "?#") {
			return nil, fmt.Errorf("open registry database: %w: SQLite path %q must not contain '?' or '#'", registry.ErrInvalid, path)
		}
		if dir := filepath.Dir(path); dir != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("open registry database: %w", err)
			}
		}
		base := "file:" + (&url.URL{Path: path}).EscapedPath() +
			"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)" +
			"&_pragma=cache_size(-16384)&_pragma=mmap_size(268435456)&_pragma=analysis_limit(400)"
		w, err := sql.Open("sqlite", base+"&_txlock=immediate")
		if err != nil {
			return nil, fmt.Errorf("open registry database: %w", err)
		}
		w.SetMaxOpenConns(1)
		w.SetConnMaxIdleTime(0)
		r, err := sql.Open("sqlite", base+"&_pragma=query_only(1)")
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("open registry database: %w", err)
		}
		r.SetMaxOpenConns(8)
		r.SetMaxIdleConns(8)
		s.w, s.r, s.dialect = w, r, dialectSQLite
	}
	if err := s.w.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open registry database: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.Optimize(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Optimize refreshes the query planner's statistics where they are stale
// (SQLite's PRAGMA optimize; a no-op on PostgreSQL, whose autovacuum keeps
// them). Open runs it, and so does every optimizeEvery-th version creation.
func (s *Store) Optimize(ctx context.Context) error {
	if s.dialect != dialectSQLite {
		return nil
	}
	if _, err := s.w.ExecContext(ctx, `PRAGMA optimize=0x10002`); err != nil {
		return fmt.Errorf("optimize registry database: %w", err)
	}
	return nil
}

// Close closes the database pools.
func (s *Store) Close() error {
	err := s.w.Close()
	if s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	return err
}

// Dialect returns "sqlite" or "postgres".
func (s *Store) Dialect() string {
	if s.dialect == dialectPostgres {
		return "postgres"
	}
	return "sqlite"
}

// q rewrites '?' placeholders to PostgreSQL's $n. Statements here never
// hold a literal '?'.
func (s *Store) q(query string) string {
	if s.dialect != dialectPostgres {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// write runs fn in one write transaction.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// read runs fn in a read-only transaction (one consistent snapshot).
func (s *Store) read(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: s.dialect == dialectPostgres})
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// lockModel locks the model's row for the rest of the write transaction
// (PostgreSQL; SQLite's write transaction already excludes other writers)
// and returns its id; ErrNotFound if absent.
func (s *Store) lockModel(ctx context.Context, tx *sql.Tx, name string) (int64, error) {
	query := `SELECT id FROM registry_models WHERE name = ?`
	if s.dialect == dialectPostgres {
		query += ` FOR UPDATE`
	}
	var id int64
	err := tx.QueryRowContext(ctx, s.q(query), name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%w: model %q", registry.ErrNotFound, name)
	}
	if err != nil {
		return 0, fmt.Errorf("look up model %q: %w", name, err)
	}
	return id, nil
}

func (s *Store) modelID(ctx context.Context, q querier, name string) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, s.q(`SELECT id FROM registry_models WHERE name = ?`), name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%w: model %q", registry.ErrNotFound, name)
	}
	if err != nil {
		return 0, fmt.Errorf("look up model %q: %w", name, err)
	}
	return id, nil
}

// isUnique reports a unique-constraint violation.
func isUnique(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// isForeignKey reports a foreign-key violation.
func isForeignKey(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23503"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	}
	return false
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }
