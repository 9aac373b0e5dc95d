package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kilnai/kiln/internal/pipeline"
)

func init() {
	pipeline.RegisterSink(pipeline.SinkSpec{
		Spec: pipeline.Spec{
			Name: "postgres",
			Summary: "write rows to a PostgreSQL table, one transaction per batch: insert with COPY, or upsert on upsert_key " +
				"(COPY into a temporary table, then INSERT … ON CONFLICT (key) DO UPDATE; the last row of a batch wins for a repeated key), " +
				"so re-running a run after a crash duplicates nothing. The table is created from the batch schema when missing " +
				"(with upsert_key as its primary key). A batch the server refuses for its data is retried row by row and the " +
				"refused rows go to the dead-letter sink with the server's message",
			Config: func() any { return defaultSinkConfig() },
			Examples: []string{
				"{url: \"${DATABASE_URL}\", table: churn_scores, upsert_key: [customer_id]}",
				"{url: \"${DATABASE_URL}\", table: analytics.events, mode: insert, create_table: false}",
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

// SinkConfig configures the postgres sink.
type SinkConfig struct {
	URL         string   `yaml:"url" required:"true" doc:"connection URL (put it in an environment variable: \"${DATABASE_URL}\")"`
	Table       string   `yaml:"table" required:"true" doc:"table name, optionally schema-qualified (analytics.scores)"`
	Mode        string   `yaml:"mode" doc:"insert (COPY) or upsert (needs upsert_key); default: upsert when upsert_key is set, else insert"`
	UpsertKey   []string `yaml:"upsert_key" doc:"columns of the table's primary key or a unique index: a row whose key exists replaces it"`
	CreateTable bool     `yaml:"create_table" doc:"create the table from the first batch's schema when it does not exist"`
}

func defaultSinkConfig() *SinkConfig { return &SinkConfig{CreateTable: true} }

// Validate checks the configuration and completes the mode.
func (c *SinkConfig) Validate() error {
	if err := checkURL(c.URL); err != nil {
		return err
	}
	if _, err := tableIdent(c.Table); err != nil {
		return err
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

func tableIdent(t string) (pgx.Identifier, error) {
	parts := strings.Split(t, ".")
	if t == "" || len(parts) > 2 {
		return nil, fmt.Errorf("table %q: want name or schema.name", t)
	}
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("table %q: empty name part", t)
		}
	}
	return pgx.Identifier(parts), nil
}

type sink struct {
	cfg    *SinkConfig
	log    *slog.Logger
	table  pgx.Identifier
	conn   *pgx.Conn
	schema *arrow.Schema
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
	t, _ := tableIdent(cfg.Table)
	return &sink{cfg: cfg, log: log, table: t}, nil
}

// pgType is the column type a CREATE TABLE gives an Arrow type.
func pgType(dt arrow.DataType) string {
	switch dt.ID() {
	case arrow.INT64, arrow.UINT32:
		return "BIGINT"
	case arrow.INT32, arrow.UINT16:
		return "INTEGER"
	case arrow.INT16, arrow.INT8, arrow.UINT8:
		return "SMALLINT"
	case arrow.UINT64:
		return "NUMERIC(20)"
	case arrow.FLOAT64:
		return "DOUBLE PRECISION"
	case arrow.FLOAT32, arrow.FLOAT16:
		return "REAL"
	case arrow.BOOL:
		return "BOOLEAN"
	case arrow.TIMESTAMP:
		return "TIMESTAMPTZ"
	case arrow.DATE32, arrow.DATE64:
		return "DATE"
	case arrow.BINARY, arrow.LARGE_BINARY, arrow.FIXED_SIZE_BINARY:
		return "BYTEA"
	}
	return "TEXT"
}

// prepare connects and makes sure the table exists.
func (s *sink) prepare(ctx context.Context, schema *arrow.Schema) error {
	conn, err := pgx.Connect(ctx, s.cfg.URL)
	if err != nil {
		return fmt.Errorf("postgres sink: connect: %s", redactErr(err, s.cfg.URL))
	}
	s.conn, s.schema = conn, schema
	for _, k := range s.cfg.UpsertKey {
		if schema.FieldIndices(k) == nil {
			return fmt.Errorf("postgres sink: upsert_key column %q is not in the data (columns: %s)", k, names(schema))
		}
	}
	var exists bool
	if err := conn.QueryRow(ctx, "select to_regclass($1) is not null", s.table.Sanitize()).Scan(&exists); err != nil {
		return fmt.Errorf("postgres sink: %w", err)
	}
	if exists {
		return nil
	}
	if !s.cfg.CreateTable {
		return fmt.Errorf("postgres sink: table %s does not exist (set create_table: true to create it)", s.cfg.Table)
	}
	var cols []string
	for _, f := range schema.Fields() {
		cols = append(cols, pgx.Identifier{f.Name}.Sanitize()+" "+pgType(f.Type))
	}
	if len(s.cfg.UpsertKey) > 0 {
		cols = append(cols, "PRIMARY KEY ("+identList(s.cfg.UpsertKey)+")")
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+s.table.Sanitize()+" ("+strings.Join(cols, ", ")+")"); err != nil {
		return fmt.Errorf("postgres sink: create table %s: %w", s.cfg.Table, err)
	}
	s.log.Info("postgres sink: created table", "table", s.cfg.Table)
	return nil
}

func names(sc *arrow.Schema) string {
	var out []string
	for _, f := range sc.Fields() {
		out = append(out, f.Name)
	}
	return strings.Join(out, ", ")
}

func identList(cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(out, ", ")
}

// Write stores one batch in its own transaction.
func (s *sink) Write(ctx context.Context, b pipeline.Batch) ([]pipeline.RowError, error) {
	if s.conn == nil {
		if err := s.prepare(ctx, b.Schema()); err != nil {
			return nil, err
		}
	}
	if b.NumRows() == 0 {
		return nil, nil
	}
	cols := make([]string, b.NumCols())
	for i, f := range b.Schema().Fields() {
		cols[i] = f.Name
	}
	rows := s.selectRows(b)
	err := s.writeBatch(ctx, b, cols, rows)
	if err == nil {
		return nil, nil
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || (!strings.HasPrefix(pe.Code, "22") && !strings.HasPrefix(pe.Code, "23")) {
		return nil, fmt.Errorf("postgres sink %s: %w", s.cfg.Table, err)
	}
	// The server refused the batch for its data: find the rows, one by one.
	s.log.Debug("postgres sink: batch refused, retrying row by row", "table", s.cfg.Table, "error", err)
	return s.writeRows(ctx, b, cols, rows)
}

// selectRows returns the rows to write: all, or for an upsert the last row
// of each key (PostgreSQL refuses to update one row twice in a statement).
func (s *sink) selectRows(b arrow.RecordBatch) []int {
	n := int(b.NumRows())
	rows := make([]int, 0, n)
	if s.cfg.Mode != modeUpsert {
		for i := range n {
			rows = append(rows, i)
		}
		return rows
	}
	keyCols := make([]arrow.Array, len(s.cfg.UpsertKey))
	for i, k := range s.cfg.UpsertKey {
		idx := b.Schema().FieldIndices(k)
		if idx == nil {
			return nil
		}
		keyCols[i] = b.Column(idx[0])
	}
	last := make(map[string]int, n)
	var key strings.Builder
	for r := range n {
		key.Reset()
		for _, c := range keyCols {
			if c.IsNull(r) {
				key.WriteString("\x01")
			} else {
				key.WriteString(c.ValueStr(r))
			}
			key.WriteByte(0)
		}
		last[key.String()] = r
	}
	for r := range n {
		key.Reset()
		for _, c := range keyCols {
			if c.IsNull(r) {
				key.WriteString("\x01")
			} else {
				key.WriteString(c.ValueStr(r))
			}
			key.WriteByte(0)
		}
		if last[key.String()] == r {
			rows = append(rows, r)
		}
	}
	return rows
}

// upsertSQL is INSERT INTO table (cols) SELECT cols FROM src ON CONFLICT …
func (s *sink) upsertSQL(cols []string, from string) string {
	isKey := map[string]bool{}
	for _, k := range s.cfg.UpsertKey {
		isKey[k] = true
	}
	var set []string
	for _, c := range cols {
		if !isKey[c] {
			q := pgx.Identifier{c}.Sanitize()
			set = append(set, q+" = EXCLUDED."+q)
		}
	}
	action := "DO NOTHING"
	if len(set) > 0 {
		action = "DO UPDATE SET " + strings.Join(set, ", ")
	}
	return "INSERT INTO " + s.table.Sanitize() + " (" + identList(cols) + ") " + from +
		" ON CONFLICT (" + identList(s.cfg.UpsertKey) + ") " + action
}

func (s *sink) writeBatch(ctx context.Context, b arrow.RecordBatch, cols []string, rows []int) error {
	tx, err := s.conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it is a no-op
	src := s.copySource(b, rows)
	if s.cfg.Mode == modeInsert {
		if _, err := tx.CopyFrom(ctx, s.table, cols, src); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	if _, err := tx.Exec(ctx, "CREATE TEMP TABLE kiln_stage (LIKE "+s.table.Sanitize()+" INCLUDING DEFAULTS) ON COMMIT DROP"); err != nil {
		return err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"kiln_stage"}, cols, src); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, s.upsertSQL(cols, "SELECT "+identList(cols)+" FROM kiln_stage")); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// writeRows writes rows one at a time under savepoints, in one
// transaction; the rows the server refuses are returned.
func (s *sink) writeRows(ctx context.Context, b arrow.RecordBatch, cols []string, rows []int) ([]pipeline.RowError, error) {
	ph := make([]string, len(cols))
	for i := range cols {
		ph[i] = fmt.Sprintf("$%d", i+1)
	}
	values := "VALUES (" + strings.Join(ph, ", ") + ")"
	stmt := "INSERT INTO " + s.table.Sanitize() + " (" + identList(cols) + ") " + values
	if s.cfg.Mode == modeUpsert {
		stmt = s.upsertSQL(cols, values)
	}
	tx, err := s.conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres sink %s: %w", s.cfg.Table, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it is a no-op
	var rej []pipeline.RowError
	src := s.copySource(b, rows)
	for src.Next() {
		r := rows[src.i-1]
		vals, err := src.Values()
		if err != nil {
			rej = append(rej, pipeline.RowError{Row: r, Err: err})
			continue
		}
		if _, err := tx.Exec(ctx, "SAVEPOINT kiln_row"); err != nil {
			return nil, fmt.Errorf("postgres sink %s: %w", s.cfg.Table, err)
		}
		if _, err := tx.Exec(ctx, stmt, vals...); err != nil {
			var pe *pgconn.PgError
			if !errors.As(err, &pe) {
				return nil, fmt.Errorf("postgres sink %s: %w", s.cfg.Table, err)
			}
			rej = append(rej, pipeline.RowError{Row: r, Err: fmt.Errorf("postgres: %s (SQLSTATE %s)", pe.Message, pe.Code)})
			if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT kiln_row"); err != nil {
				return nil, fmt.Errorf("postgres sink %s: %w", s.cfg.Table, err)
			}
			continue
		}
		if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT kiln_row"); err != nil {
			return nil, fmt.Errorf("postgres sink %s: %w", s.cfg.Table, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("postgres sink %s: %w", s.cfg.Table, err)
	}
	return rej, nil
}

// Close closes the connection; batches already committed stay (with
// upsert_key a re-run replaces them rather than duplicating them).
func (s *sink) Close(ctx context.Context, _ error) error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close(context.WithoutCancel(ctx))
	s.conn = nil
	return err
}

// rowSource feeds the chosen rows of a batch to CopyFrom.
type rowSource struct {
	b    arrow.RecordBatch
	rows []int
	i    int
	vals []any
}

func (s *sink) copySource(b arrow.RecordBatch, rows []int) *rowSource {
	return &rowSource{b: b, rows: rows, vals: make([]any, b.NumCols())}
}

func (r *rowSource) Next() bool {
	r.i++
	return r.i <= len(r.rows)
}

func (r *rowSource) Values() ([]any, error) {
	row := r.rows[r.i-1]
	for c := range int(r.b.NumCols()) {
		r.vals[c] = value(r.b.Column(c), row)
	}
	return r.vals, nil
}

func (r *rowSource) Err() error { return nil }

// value returns a Go value pgx encodes for row i of a column (nil for
// null).
func value(a arrow.Array, i int) any {
	if a.IsNull(i) {
		return nil
	}
	switch c := a.(type) {
	case *array.Int64:
		return c.Value(i)
	case *array.Int32:
		return c.Value(i)
	case *array.Int16:
		return c.Value(i)
	case *array.Int8:
		return int16(c.Value(i))
	case *array.Uint8:
		return int16(c.Value(i))
	case *array.Uint16:
		return int32(c.Value(i))
	case *array.Uint32:
		return int64(c.Value(i))
	case *array.Uint64:
		return fmt.Sprint(c.Value(i))
	case *array.Float64:
		return c.Value(i)
	case *array.Float32:
		return c.Value(i)
	case *array.Boolean:
		return c.Value(i)
	case *array.String:
		return c.Value(i)
	case *array.LargeString:
		return c.Value(i)
	case *array.Binary:
		return c.Value(i)
	case *array.Timestamp:
		return c.Value(i).ToTime(c.DataType().(*arrow.TimestampType).Unit).UTC()
	case *array.Date32:
		return c.Value(i).ToTime()
	case *array.Date64:
		return c.Value(i).ToTime()
	}
	return a.ValueStr(i)
}
