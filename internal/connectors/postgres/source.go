// Package postgres provides the `postgres` pipeline source (a query whose
// rows are streamed off the wire into Arrow batches, so memory stays
// bounded however many rows it returns) and sink (COPY for inserts; COPY
// into a temporary table then INSERT … ON CONFLICT DO UPDATE for upserts,
// one transaction per batch, so a re-run after a crash duplicates nothing).
package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kilnai/kiln/internal/pipeline"
	"github.com/kilnai/kiln/internal/pipeline/keyrange"
)

func init() {
	pipeline.RegisterSource(pipeline.SourceSpec{
		Spec: pipeline.Spec{
			Name: "postgres",
			Summary: "run a query on PostgreSQL and stream its rows (read off the wire as they arrive, never all in memory) into Arrow batches; " +
				"bool, integers, floats, numeric, timestamp(tz), date and text map to bool, int64, float64, timestamp (µs, UTC), date and string; " +
				"other types arrive as their text. The cache fingerprint is the query, its arguments and the result of fingerprint_query",
			Config: func() any { return &SourceConfig{SplitTasks: 8} },
			Examples: []string{
				"{url: \"${DATABASE_URL}\", query: \"select id, age, income, country from customers\"}",
				"{url: \"${DATABASE_URL}\", query: \"select * from events where day >= $1 and kind = $2\", args: [\"2026-01-01\", click],\n" +
					" fingerprint_query: \"select max(updated_at), count(*) from events\", batch_size: 50000}",
				"{url: \"${DATABASE_URL}\", query: \"select * from orders\", split_column: id, split_tasks: 16}",
			},
		},
		Build: func(_ context.Context, cfg any, env pipeline.Env) (pipeline.Source, error) {
			return newSource(cfg.(*SourceConfig), env)
		},
	})
}

// SourceConfig configures the postgres source.
type SourceConfig struct {
	URL              string `yaml:"url" required:"true" doc:"connection URL, postgres://user:password@host:5432/db?sslmode=... (put it in an environment variable: \"${DATABASE_URL}\")"`
	Query            string `yaml:"query" required:"true" doc:"SQL query; $1, $2, … refer to args"`
	Args             []any  `yaml:"args" doc:"query parameters (strings, numbers, booleans)"`
	BatchSize        int    `yaml:"batch_size" doc:"rows per batch (default: settings.batch_size, else 65536)"`
	FingerprintQuery string `yaml:"fingerprint_query" doc:"a cheap query whose result changes when the data does (select max(updated_at) from t); its result joins the cache fingerprint. Without it the fingerprint is the query text and args only: set a cache ttl"`
	SplitColumn      string `yaml:"split_column" doc:"distributed runs: an integer column of the query's result whose range [min, max] is cut into split_tasks key ranges, one task each (rows with a null key go to the first); empty: the whole query is one task"`
	SplitTasks       int    `yaml:"split_tasks" doc:"distributed runs: how many key ranges split_column is cut into"`
}

// Validate checks the configuration.
func (c *SourceConfig) Validate() error {
	if err := checkURL(c.URL); err != nil {
		return err
	}
	if strings.TrimSpace(c.Query) == "" {
		return errors.New("query is empty")
	}
	if c.BatchSize < 0 {
		return errors.New("batch_size must not be negative")
	}
	if c.SplitTasks == 0 {
		c.SplitTasks = 8
	}
	if c.SplitTasks < 0 {
		return errors.New("split_tasks must be positive")
	}
	for i, a := range c.Args {
		switch a.(type) {
		case nil, string, bool, int, int64, uint64, float64:
		default:
			return fmt.Errorf("args[%d]: %T is not a string, number or boolean", i, a)
		}
	}
	return nil
}

func checkURL(u string) error {
	if u == "" {
		return errors.New("url is empty")
	}
	if _, err := pgconn.ParseConfig(u); err != nil {
		return fmt.Errorf("url: %s", redactErr(err, u))
	}
	return nil
}

// redactErr returns err's text without the URL's password.
func redactErr(err error, u string) string {
	s := err.Error()
	if p, perr := url.Parse(u); perr == nil && p.User != nil {
		if pw, ok := p.User.Password(); ok && pw != "" {
			s = strings.ReplaceAll(s, pw, "xxxxx")
		}
	}
	return s
}

// redactURL drops the password of a URL.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "postgres"
	}
	if p.User != nil {
		p.User = url.User(p.User.Username())
	}
	return p.String()
}

type source struct {
	cfg  *SourceConfig
	log  *slog.Logger
	rows int
	read atomic.Int64
	part *keyrange.Range // a distributed task's part of the query (nil: all)
}

// query returns the SQL and args that read the source's part.
func (s *source) query() (string, []any) {
	p := s.part
	if p == nil || p.All {
		return s.cfg.Query, s.cfg.Args
	}
	n := len(s.cfg.Args)
	cond := p.Where(pgx.Identifier{s.cfg.SplitColumn}.Sanitize(), func(i int) string { return fmt.Sprintf("$%d", n+i) })
	args := append(append([]any(nil), s.cfg.Args...), p.Lo, p.Hi)
	return "select * from (" + s.cfg.Query + ") kiln_part where " + cond, args
}

var _ pipeline.Splitter = (*source)(nil)

// Split cuts the range of split_column into split_tasks key ranges (one
// task for the whole query without split_column, or when it holds only
// nulls).
func (s *source) Split(ctx context.Context) ([]pipeline.Task, error) {
	one := func() ([]pipeline.Task, error) { return keyrange.Whole(), nil }
	if s.cfg.SplitColumn == "" {
		return one()
	}
	conn, err := pgx.Connect(ctx, s.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %s", redactErr(err, s.cfg.URL))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	col := pgx.Identifier{s.cfg.SplitColumn}.Sanitize()
	var lo, hi *int64
	q := "select min(" + col + ")::bigint, max(" + col + ")::bigint from (" + s.cfg.Query + ") kiln_split"
	if err := conn.QueryRow(ctx, q, s.cfg.Args...).Scan(&lo, &hi); err != nil {
		return nil, fmt.Errorf("postgres: split on %s: %w", s.cfg.SplitColumn, err)
	}
	if lo == nil || hi == nil {
		return one()
	}
	return keyrange.Tasks(s.cfg.SplitColumn, *lo, *hi, s.cfg.SplitTasks)
}

// OpenTask returns a source reading one key range.
func (s *source) OpenTask(_ context.Context, t pipeline.Task) (pipeline.Source, error) {
	kr, err := keyrange.Decode(t, "postgres", s.cfg.SplitColumn)
	if err != nil {
		return nil, err
	}
	return &source{cfg: s.cfg, log: s.log, rows: s.rows, part: kr}, nil
}

var (
	_ pipeline.Source        = (*source)(nil)
	_ pipeline.Fingerprinter = (*source)(nil)
	_ pipeline.Progresser    = (*source)(nil)
)

func newSource(cfg *SourceConfig, env pipeline.Env) (*source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := cfg.BatchSize
	if n == 0 {
		n = env.BatchSize
	}
	if n <= 0 {
		n = 1 << 16
	}
	return &source{cfg: cfg, log: log, rows: n}, nil
}

// Progress reports rows read (the total is unknown).
func (s *source) Progress() (done, total int64) { return s.read.Load(), 0 }

// Close releases nothing: Read closes its connection.
func (s *source) Close() error { return nil }

// Fingerprint is the server (without password), query and args, plus the
// first row of fingerprint_query.
func (s *source) Fingerprint(ctx context.Context) (string, error) {
	h := sha256.New()
	query, qargs := s.query()
	args, _ := json.Marshal(qargs)
	fmt.Fprintf(h, "postgres\x00%s\x00%s\x00%s\x00", redactURL(s.cfg.URL), query, args)
	if s.cfg.FingerprintQuery != "" {
		conn, err := pgx.Connect(ctx, s.cfg.URL)
		if err != nil {
			return "", fmt.Errorf("postgres: connect: %s", redactErr(err, s.cfg.URL))
		}
		defer conn.Close(context.WithoutCancel(ctx))
		rows, err := conn.Query(ctx, s.cfg.FingerprintQuery, pgx.QueryResultFormats{pgx.TextFormatCode})
		if err != nil {
			return "", fmt.Errorf("postgres: fingerprint_query: %w", err)
		}
		if rows.Next() {
			for _, v := range rows.RawValues() {
				fmt.Fprintf(h, "%d:%s\x00", len(v), v)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return "", fmt.Errorf("postgres: fingerprint_query: %w", err)
		}
	}
	return "postgres:" + hex.EncodeToString(h.Sum(nil)), nil
}

// PostgreSQL type OIDs the source decodes in binary.
const (
	oidBool        = 16
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidOID         = 26
	oidFloat4      = 700
	oidFloat8      = 701
	oidNumeric     = 1700
	oidDate        = 1082
	oidTimestamp   = 1114
	oidTimestamptz = 1184
)

var timestampType = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}

// pgEpochMicros is 2000-01-01 (PostgreSQL's epoch) in Unix microseconds.
const (
	pgEpochMicros = 946684800000000
	pgEpochDays   = 10957
)

// colPlan says how one result column is requested and decoded.
type colPlan struct {
	oid    uint32
	format int16
	dt     arrow.DataType
}

func planFor(oid uint32) colPlan {
	switch oid {
	case oidBool:
		return colPlan{oid, pgx.BinaryFormatCode, arrow.FixedWidthTypes.Boolean}
	case oidInt2, oidInt4, oidInt8, oidOID:
		return colPlan{oid, pgx.BinaryFormatCode, arrow.PrimitiveTypes.Int64}
	case oidFloat4, oidFloat8:
		return colPlan{oid, pgx.BinaryFormatCode, arrow.PrimitiveTypes.Float64}
	case oidNumeric:
		return colPlan{oid, pgx.TextFormatCode, arrow.PrimitiveTypes.Float64}
	case oidDate:
		return colPlan{oid, pgx.BinaryFormatCode, arrow.FixedWidthTypes.Date32}
	case oidTimestamp, oidTimestamptz:
		return colPlan{oid, pgx.BinaryFormatCode, timestampType}
	}
	return colPlan{oid, pgx.TextFormatCode, arrow.BinaryTypes.String}
}

// Read runs the query and emits its rows in batches.
func (s *source) Read(ctx context.Context, emit pipeline.EmitFunc) error {
	conn, err := pgx.Connect(ctx, s.cfg.URL)
	if err != nil {
		return fmt.Errorf("postgres: connect: %s", redactErr(err, s.cfg.URL))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	query, qargs := s.query()
	sd, err := conn.Prepare(ctx, "", query)
	if err != nil {
		return fmt.Errorf("postgres: query: %w", err)
	}
	plans := make([]colPlan, len(sd.Fields))
	formats := make(pgx.QueryResultFormats, len(sd.Fields))
	fields := make([]arrow.Field, len(sd.Fields))
	seen := map[string]int{}
	for i, f := range sd.Fields {
		plans[i] = planFor(f.DataTypeOID)
		formats[i] = plans[i].format
		name := f.Name
		if n := seen[name]; n > 0 {
			name = fmt.Sprintf("%s_%d", name, n+1)
		}
		seen[f.Name]++
		fields[i] = arrow.Field{Name: name, Type: plans[i].dt, Nullable: true}
	}
	schema := arrow.NewSchema(fields, nil)
	args := append([]any{formats}, qargs...)
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("postgres: query: %w", err)
	}
	defer rows.Close()
	bld := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer bld.Release()
	n := 0
	flush := func() error {
		b := bld.NewRecordBatch()
		defer b.Release()
		s.read.Add(int64(n))
		n = 0
		return emit(ctx, b, nil)
	}
	for rows.Next() {
		for i, v := range rows.RawValues() {
			if err := appendRaw(bld.Field(i), plans[i], v); err != nil {
				return fmt.Errorf("postgres: row %d column %q: %w", s.read.Load()+int64(n)+1, fields[i].Name, err)
			}
		}
		n++
		if n >= s.rows {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: query: %w", err)
	}
	if n > 0 {
		return flush()
	}
	return nil
}

// appendRaw decodes one wire value (binary for numbers, dates and
// timestamps; text otherwise).
func appendRaw(b array.Builder, p colPlan, v []byte) error {
	if v == nil {
		b.AppendNull()
		return nil
	}
	switch bb := b.(type) {
	case *array.BooleanBuilder:
		if len(v) != 1 {
			return errors.New("bad bool")
		}
		bb.Append(v[0] != 0)
	case *array.Int64Builder:
		switch len(v) {
		case 2:
			bb.Append(int64(int16(binary.BigEndian.Uint16(v))))
		case 4:
			if p.oid == oidOID {
				bb.Append(int64(binary.BigEndian.Uint32(v)))
			} else {
				bb.Append(int64(int32(binary.BigEndian.Uint32(v))))
			}
		case 8:
			bb.Append(int64(binary.BigEndian.Uint64(v)))
		default:
			return errors.New("bad integer")
		}
	case *array.Float64Builder:
		if p.format == pgx.TextFormatCode {
			f, err := strconv.ParseFloat(unsafe.String(&v[0], len(v)), 64)
			if err != nil {
				return fmt.Errorf("numeric %q: %w", v, err)
			}
			bb.Append(f)
			return nil
		}
		switch len(v) {
		case 4:
			bb.Append(float64(math.Float32frombits(binary.BigEndian.Uint32(v))))
		case 8:
			bb.Append(math.Float64frombits(binary.BigEndian.Uint64(v)))
		default:
			return errors.New("bad float")
		}
	case *array.Date32Builder:
		if len(v) != 4 {
			return errors.New("bad date")
		}
		d := int32(binary.BigEndian.Uint32(v))
		if d == math.MaxInt32 || d == math.MinInt32 {
			b.AppendNull() // ±infinity has no Arrow date
			return nil
		}
		bb.Append(arrow.Date32(d + pgEpochDays))
	case *array.TimestampBuilder:
		if len(v) != 8 {
			return errors.New("bad timestamp")
		}
		us := int64(binary.BigEndian.Uint64(v))
		if us == math.MaxInt64 || us == math.MinInt64 {
			b.AppendNull()
			return nil
		}
		bb.Append(arrow.Timestamp(us + pgEpochMicros))
	case *array.StringBuilder:
		bb.BinaryBuilder.Append(v)
	default:
		return fmt.Errorf("unexpected builder %T", b)
	}
	return nil
}
