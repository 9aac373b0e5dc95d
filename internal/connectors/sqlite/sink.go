package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/kilnai/kiln/internal/pipeline"
)

func init() {
	pipeline.RegisterSink(pipeline.SinkSpec{
		Spec: pipeline.Spec{
			Name: "sqlite",
			Summary: "write rows to a SQLite table (the database file is created when missing), one transaction per batch " +
				"with a prepared statement: insert, or upsert on upsert_key (INSERT … ON CONFLICT DO UPDATE, so a re-run duplicates nothing). " +
				"The table is created from the first batch's schema when missing (timestamps stored as RFC 3339 text, dates as YYYY-MM-DD, " +
				"booleans as 0/1). Rows that violate a constraint go to the dead-letter sink; the others are written",
			Config: func() any { return defaultSinkConfig() },
			Examples: []string{
				"{path: out/scores.db, table: scores, upsert_key: [customer_id]}",
				"{path: out/events.db, table: events, mode: insert}",
			},
		},
		Build: func(_ context.Context, cfg any, env pipeline.Env) (pipeline.Sink, error) {
			return newSink(cfg.(*SinkConfig), env)
		},
	})
}

// Sink modes.
const (
	modeInsert = "insert"
	modeUpsert = "upsert"
)

// SinkConfig configures the sqlite sink.
type SinkConfig struct {
	Path        string   `yaml:"path" required:"true" doc:"database file (created with its directory when missing)"`
	Table       string   `yaml:"table" required:"true" doc:"table name"`
	Mode        string   `yaml:"mode" doc:"insert or upsert (needs upsert_key); default: upsert when upsert_key is set, else insert"`
	UpsertKey   []string `yaml:"upsert_key" doc:"columns of the table's primary key or a unique index: a row whose key exists replaces it"`
	CreateTable bool     `yaml:"create_table" doc:"create the table from the first batch's schema when it does not exist"`
}

func defaultSinkConfig() *SinkConfig { return &SinkConfig{CreateTable: true} }

// Validate checks the configuration and completes the mode.
func (c *SinkConfig) Validate() error {
	if c.Path == "" {
		return errors.New("path is empty")
	}
	if c.Table == "" {
		return errors.New("table is empty")
	}
	if c.Mode == "" {
		c.Mode = modeInsert
		if len(c.UpsertKey) > 0 {
			c.Mode = modeUpsert
		}
	}
	switch c.Mode {
	case modeInsert:
		if len(c.UpsertKey) > 0 {
			return errors.New("upsert_key needs mode upsert")
		}
	case modeUpsert:
		if len(c.UpsertKey) == 0 {
			return errors.New("mode upsert needs upsert_key")
		}
	default:
		return fmt.Errorf("mode %q: want insert or upsert", c.Mode)
	}
	seen := map[string]bool{}
	for _, k := range c.UpsertKey {
		if k == "" || seen[k] {
			return fmt.Errorf("upsert_key: empty or repeated column %q", k)
		}
		seen[k] = true
	}
	return nil
}

// quote quotes an SQL identifier.
func quote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

func quoteList(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = quote(n)
	}
	return strings.Join(out, ", ")
}

// sqliteType is the declared type a CREATE TABLE gives an Arrow type
// (chosen so that the sqlite source reads the same types back).
func sqliteType(dt arrow.DataType) string {
	switch dt.ID() {
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64:
		return "INTEGER"
	case arrow.FLOAT16, arrow.FLOAT32, arrow.FLOAT64:
		return "REAL"
	case arrow.BOOL:
		return "BOOLEAN"
	case arrow.TIMESTAMP:
		return "TIMESTAMP"
	case arrow.DATE32, arrow.DATE64:
		return "DATE"
	case arrow.BINARY, arrow.LARGE_BINARY, arrow.FIXED_SIZE_BINARY:
		return "BLOB"
	}
	return "TEXT"
}

type sink struct {
	cfg    *SinkConfig
	log    *slog.Logger
	db     *sql.DB
	schema *arrow.Schema
	stmt   string
	vals   []any
}

var _ pipeline.Sink = (*sink)(nil)

func newSink(cfg *SinkConfig, env pipeline.Env) (*sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &sink{cfg: cfg, log: log}, nil
}

// prepare opens the database and makes sure the table exists.
func (s *sink) prepare(ctx context.Context, schema *arrow.Schema) error {
	if err := os.MkdirAll(filepath.Dir(s.cfg.Path), 0o755); err != nil {
		return fmt.Errorf("sqlite sink: %w", err)
	}
	db, err := sql.Open("sqlite", "file:"+s.cfg.Path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
	if err != nil {
		return fmt.Errorf("sqlite sink: %w", err)
	}
	db.SetMaxOpenConns(1)
	s.db, s.schema = db, schema
	var cols []string
	for _, f := range schema.Fields() {
		cols = append(cols, f.Name)
	}
	for _, k := range s.cfg.UpsertKey {
		if schema.FieldIndices(k) == nil {
			return fmt.Errorf("sqlite sink: upsert_key column %q is not in the data (columns: %s)", k, strings.Join(cols, ", "))
		}
	}
	var n int
	if err := db.QueryRowContext(ctx, "select count(*) from sqlite_master where type = 'table' and name = ?", s.cfg.Table).Scan(&n); err != nil {
		return fmt.Errorf("sqlite sink: %w", err)
	}
	if n == 0 {
		if !s.cfg.CreateTable {
			return fmt.Errorf("sqlite sink: table %s does not exist (set create_table: true to create it)", s.cfg.Table)
		}
		var defs []string
		for _, f := range schema.Fields() {
			defs = append(defs, quote(f.Name)+" "+sqliteType(f.Type))
		}
		if len(s.cfg.UpsertKey) > 0 {
			defs = append(defs, "PRIMARY KEY ("+quoteList(s.cfg.UpsertKey)+")")
		}
		if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+quote(s.cfg.Table)+" ("+strings.Join(defs, ", ")+")"); err != nil {
			return fmt.Errorf("sqlite sink: create table %s: %w", s.cfg.Table, err)
		}
		s.log.Info("sqlite sink: created table", "table", s.cfg.Table, "path", s.cfg.Path)
	}
	ph := strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ")
	s.stmt = "INSERT INTO " + quote(s.cfg.Table) + " (" + quoteList(cols) + ") VALUES (" + ph + ")"
	if s.cfg.Mode == modeUpsert {
		isKey := map[string]bool{}
		for _, k := range s.cfg.UpsertKey {
			isKey[k] = true
		}
		var set []string
		for _, c := range cols {
			if !isKey[c] {
				set = append(set, quote(c)+" = excluded."+quote(c))
			}
		}
		action := "DO NOTHING"
		if len(set) > 0 {
			action = "DO UPDATE SET " + strings.Join(set, ", ")
		}
		s.stmt += " ON CONFLICT (" + quoteList(s.cfg.UpsertKey) + ") " + action
	}
	s.vals = make([]any, len(cols))
	return nil
}

// rowFault reports whether err is about the row's data (a constraint or a
// type mismatch) rather than the database.
func rowFault(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_TOOBIG:
		return true
	}
	return false
}

// Write stores one batch in one transaction; rows the database refuses
// for their data are returned, the others committed.
func (s *sink) Write(ctx context.Context, b pipeline.Batch) ([]pipeline.RowError, error) {
	if s.db == nil {
		if err := s.prepare(ctx, b.Schema()); err != nil {
			return nil, err
		}
	} else if !b.Schema().Equal(s.schema) {
		return nil, fmt.Errorf("sqlite sink %s: batch schema %s differs from the first batch's %s", s.cfg.Table, b.Schema(), s.schema)
	}
	if b.NumRows() == 0 {
		return nil, nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite sink %s: %w", s.cfg.Table, err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	st, err := tx.PrepareContext(ctx, s.stmt)
	if err != nil {
		return nil, fmt.Errorf("sqlite sink %s: %w", s.cfg.Table, err)
	}
	defer st.Close()
	var rej []pipeline.RowError
	cols := b.Columns()
	for r := range int(b.NumRows()) {
		for c, a := range cols {
			s.vals[c] = value(a, r)
		}
		if _, err := st.ExecContext(ctx, s.vals...); err != nil {
			if !rowFault(err) {
				return nil, fmt.Errorf("sqlite sink %s: %w", s.cfg.Table, err)
			}
			// SQLite undid just this statement; the transaction goes on.
			rej = append(rej, pipeline.RowError{Row: r, Err: fmt.Errorf("sqlite: %w", err)})
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlite sink %s: %w", s.cfg.Table, err)
	}
	return rej, nil
}

// Close closes the database; batches already committed stay (with
// upsert_key a re-run replaces them rather than duplicating them).
func (s *sink) Close(context.Context, error) error {
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	return err
}

// value returns the SQLite value of row i of a column (nil for null).
func value(a arrow.Array, i int) any {
	if a.IsNull(i) {
		return nil
	}
	switch c := a.(type) {
	case *array.Int64:
		return c.Value(i)
	case *array.Int32:
		return int64(c.Value(i))
	case *array.Int16:
		return int64(c.Value(i))
	case *array.Int8:
		return int64(c.Value(i))
	case *array.Uint8:
		return int64(c.Value(i))
	case *array.Uint16:
		return int64(c.Value(i))
	case *array.Uint32:
		return int64(c.Value(i))
	case *array.Uint64:
		return c.Value(i)
	case *array.Float64:
		return c.Value(i)
	case *array.Float32:
		return float64(c.Value(i))
	case *array.Boolean:
		if c.Value(i) {
			return int64(1)
		}
		return int64(0)
	case *array.String:
		return c.Value(i)
	case *array.LargeString:
		return c.Value(i)
	case *array.Binary:
		return c.Value(i)
	case *array.Timestamp:
		return c.Value(i).ToTime(c.DataType().(*arrow.TimestampType).Unit).UTC().Format(time.RFC3339Nano)
	case *array.Date32:
		return c.Value(i).ToTime().Format("2006-01-02")
	case *array.Date64:
		return c.Value(i).ToTime().Format("2006-01-02")
	}
	return a.ValueStr(i)
}
