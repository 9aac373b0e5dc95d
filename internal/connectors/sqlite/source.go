// Package sqlite provides the `sqlite` pipeline source (a query whose rows
// are streamed through a cursor into Arrow batches) and sink (rows inserted
// or upserted in one transaction per batch with a prepared statement;
// rows that violate a constraint go to the dead-letter sink). It uses the
// pure-Go modernc.org/sqlite driver.
package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/kilnai/kiln/internal/pipeline"
	"github.com/kilnai/kiln/internal/pipeline/keyrange"
)

func init() {
	pipeline.RegisterSource(pipeline.SourceSpec{
		Spec: pipeline.Spec{
			Name: "sqlite",
			Summary: "run a query on a SQLite database file (opened read-only) and stream its rows through a cursor into Arrow batches; " +
				"column types come from the declared types (INTEGER → int64, REAL/FLOAT/DOUBLE/NUMERIC → float64, TEXT → string, " +
				"BOOLEAN → bool, DATE → date, DATETIME/TIMESTAMP → timestamp) and, for expressions and untyped columns, " +
				"from the values of the first batch. The cache fingerprint is the query, its args and the database file's (and WAL's) size and mtime",
			Config: func() any { return &SourceConfig{SplitTasks: 8} },
			Examples: []string{
				"{path: data/shop.db, query: \"select id, amount, country from orders\"}",
				"{path: data/shop.db, query: \"select * from orders where amount > ? and country = ?\", args: [100, NL], batch_size: 10000}",
				"{path: data/shop.db, query: \"select * from orders\", split_column: id, split_tasks: 4}",
			},
		},
		Build: func(_ context.Context, cfg any, env pipeline.Env) (pipeline.Source, error) {
			return newSource(cfg.(*SourceConfig), env)
		},
	})
}

// SourceConfig configures the sqlite source.
type SourceConfig struct {
	Path        string `yaml:"path" required:"true" doc:"database file (it must exist; it is opened read-only)"`
	Query       string `yaml:"query" required:"true" doc:"SQL query; ? or ?1, ?2 … refer to args"`
	Args        []any  `yaml:"args" doc:"query parameters (strings, numbers, booleans)"`
	BatchSize   int    `yaml:"batch_size" doc:"rows per batch (default: settings.batch_size, else 65536)"`
	SplitColumn string `yaml:"split_column" doc:"distributed runs: an integer column of the query's result whose range [min, max] is cut into split_tasks key ranges, one task each (rows with a null key go to the first); empty: the whole query is one task"`
	SplitTasks  int    `yaml:"split_tasks" doc:"distributed runs: how many key ranges split_column is cut into"`
}

// Validate checks the configuration.
func (c *SourceConfig) Validate() error {
	if c.Path == "" {
		return errors.New("path is empty")
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
	return checkArgs(c.Args)
}

func checkArgs(args []any) error {
	for i, a := range args {
		switch a.(type) {
		case nil, string, bool, int, int64, uint64, float64:
		default:
			return fmt.Errorf("args[%d]: %T is not a string, number or boolean", i, a)
		}
	}
	return nil
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
	cond := p.Where(quote(s.cfg.SplitColumn), func(int) string { return "?" })
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
	db, err := openRO(s.cfg.Path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	col := quote(s.cfg.SplitColumn)
	var lo, hi sql.NullInt64
	q := "select min(" + col + "), max(" + col + ") from (" + s.cfg.Query + ") kiln_split"
	if err := db.QueryRowContext(ctx, q, s.cfg.Args...).Scan(&lo, &hi); err != nil {
		return nil, fmt.Errorf("sqlite: split on %s: %w", s.cfg.SplitColumn, err)
	}
	if !lo.Valid || !hi.Valid {
		return one()
	}
	return keyrange.Tasks(s.cfg.SplitColumn, lo.Int64, hi.Int64, s.cfg.SplitTasks)
}

// OpenTask returns a source reading one key range.
func (s *source) OpenTask(_ context.Context, t pipeline.Task) (pipeline.Source, error) {
	kr, err := keyrange.Decode(t, "sqlite", s.cfg.SplitColumn)
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

// Close releases nothing: Read closes the database.
func (s *source) Close() error { return nil }

// Fingerprint is the query, its args and the size and modification time
// of the database file and of its write-ahead log.
func (s *source) Fingerprint(context.Context) (string, error) {
	h := sha256.New()
	query, qargs := s.query()
	args, _ := json.Marshal(qargs)
	fmt.Fprintf(h, "sqlite\x00%s\x00%s\x00", query, args)
	for i, p := range []string{s.cfg.Path, s.cfg.Path + "-wal"} {
		st, err := os.Stat(p)
		if err != nil {
			if i == 0 {
				return "", fmt.Errorf("sqlite: %w", err)
			}
			fmt.Fprint(h, "-\x00")
			continue
		}
		fmt.Fprintf(h, "%d\x00%d\x00", st.Size(), st.ModTime().UnixNano())
	}
	return "sqlite:" + hex.EncodeToString(h.Sum(nil)), nil
}

// openRO opens an existing database read-only.
func openRO(path string) (*sql.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
}

// colKind is the Arrow type chosen for a result column.
type colKind uint8

const (
	kUnknown colKind = iota // decided from the first batch's values
	kInt
	kFloat
	kString
	kBool
	kDate
	kTimestamp
	kBlob
)

// declared maps a declared column type to a kind (SQLite's affinity rules,
// plus the conventional BOOLEAN, DATE and DATETIME/TIMESTAMP names).
func declared(t string) colKind {
	t = strings.ToUpper(t)
	switch {
	case t == "":
		return kUnknown
	case strings.Contains(t, "BOOL"):
		return kBool
	case strings.Contains(t, "INT"):
		return kInt
	case strings.Contains(t, "CHAR"), strings.Contains(t, "CLOB"), strings.Contains(t, "TEXT"):
		return kString
	case strings.Contains(t, "BLOB"):
		return kBlob
	case strings.Contains(t, "DATETIME"), strings.Contains(t, "TIMESTAMP"):
		return kTimestamp
	case t == "DATE":
		return kDate
	case strings.Contains(t, "REAL"), strings.Contains(t, "FLOA"), strings.Contains(t, "DOUB"),
		strings.Contains(t, "NUMERIC"), strings.Contains(t, "DECIMAL"):
		return kFloat
	}
	return kUnknown
}

func (k colKind) dataType() arrow.DataType {
	switch k {
	case kInt:
		return arrow.PrimitiveTypes.Int64
	case kFloat:
		return arrow.PrimitiveTypes.Float64
	case kBool:
		return arrow.FixedWidthTypes.Boolean
	case kDate:
		return arrow.FixedWidthTypes.Date32
	case kTimestamp:
		return &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	case kBlob:
		return arrow.BinaryTypes.Binary
	}
	return arrow.BinaryTypes.String
}

// valueKind is the kind of one scanned value (kUnknown for NULL).
func valueKind(v any) colKind {
	switch v.(type) {
	case int64:
		return kInt
	case float64:
		return kFloat
	case []byte:
		return kBlob
	case time.Time:
		return kTimestamp
	case bool:
		return kBool
	case nil:
		return kUnknown
	}
	return kString
}

func widen(a, b colKind) colKind {
	switch {
	case a == b || b == kUnknown:
		return a
	case a == kUnknown:
		return b
	case (a == kInt && b == kFloat) || (a == kFloat && b == kInt):
		return kFloat
	}
	return kString
}

// Read runs the query and emits its rows in batches.
func (s *source) Read(ctx context.Context, emit pipeline.EmitFunc) error {
	db, err := openRO(s.cfg.Path)
	if err != nil {
		return err
	}
	defer db.Close()
	query, args := s.query()
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("sqlite: query: %w", err)
	}
	defer rows.Close()
	cts, err := rows.ColumnTypes()
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	kinds := make([]colKind, len(cts))
	names := make([]string, len(cts))
	seen := map[string]int{}
	undecided := false
	for i, ct := range cts {
		kinds[i] = declared(ct.DatabaseTypeName())
		undecided = undecided || kinds[i] == kUnknown
		names[i] = ct.Name()
		if n := seen[names[i]]; n > 0 {
			names[i] = fmt.Sprintf("%s_%d", names[i], n+1)
		}
		seen[ct.Name()]++
	}
	vals := make([]any, len(cts))
	ptrs := make([]any, len(cts))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	// The first batch is buffered when a column's type must be inferred.
	var pending [][]any
	var bld *array.RecordBuilder
	n := 0
	start := func() {
		for i, k := range kinds {
			if k == kUnknown {
				kinds[i] = kString // all NULL
			}
		}
		fields := make([]arrow.Field, len(kinds))
		for i, k := range kinds {
			fields[i] = arrow.Field{Name: names[i], Type: k.dataType(), Nullable: true}
		}
		bld = array.NewRecordBuilder(memory.DefaultAllocator, arrow.NewSchema(fields, nil))
	}
	appendRow := func(row []any) error {
		for i, v := range row {
			if err := appendValue(bld.Field(i), kinds[i], v); err != nil {
				return fmt.Errorf("sqlite: row %d column %q: %w", s.read.Load()+int64(n)+1, names[i], err)
			}
		}
		n++
		return nil
	}
	flush := func() error {
		b := bld.NewRecordBatch()
		defer b.Release()
		s.read.Add(int64(n))
		n = 0
		return emit(ctx, b, nil)
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("sqlite: %w", err)
		}
		if bld == nil && undecided {
			row := make([]any, len(vals))
			for i, v := range vals {
				if b, ok := v.([]byte); ok {
					v = append([]byte(nil), b...)
				}
				row[i] = v
				if declared(cts[i].DatabaseTypeName()) == kUnknown {
					kinds[i] = widen(kinds[i], valueKind(v))
				}
			}
			pending = append(pending, row)
			if len(pending) < s.rows {
				continue
			}
		}
		if bld == nil {
			start()
			defer bld.Release()
			for _, r := range pending {
				if err := appendRow(r); err != nil {
					return err
				}
			}
			if pending != nil {
				pending = nil
				if n >= s.rows {
					if err := flush(); err != nil {
						return err
					}
				}
				continue
			}
		}
		if err := appendRow(vals); err != nil {
			return err
		}
		if n >= s.rows {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: query: %w", err)
	}
	if bld == nil {
		if len(pending) == 0 {
			return nil
		}
		start()
		defer bld.Release()
		for _, r := range pending {
			if err := appendRow(r); err != nil {
				return err
			}
		}
	}
	if n > 0 {
		return flush()
	}
	return nil
}

// Layouts a TEXT date or timestamp is read in.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02"}

func parseTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date or timestamp", s)
}

// appendValue appends one scanned value to a builder of the column's kind.
func appendValue(b array.Builder, k colKind, v any) error {
	if v == nil {
		b.AppendNull()
		return nil
	}
	mismatch := func() error {
		return fmt.Errorf("value %v (%T) does not fit the column's type %s (CAST it in the query)", v, v, k.dataType())
	}
	switch k {
	case kInt:
		switch x := v.(type) {
		case int64:
			b.(*array.Int64Builder).Append(x)
		case float64:
			if x != math.Trunc(x) || math.Abs(x) >= 1<<63 {
				return mismatch()
			}
			b.(*array.Int64Builder).Append(int64(x))
		case bool:
			b.(*array.Int64Builder).Append(map[bool]int64{false: 0, true: 1}[x])
		case string:
			i, err := strconv.ParseInt(x, 10, 64)
			if err != nil {
				return mismatch()
			}
			b.(*array.Int64Builder).Append(i)
		default:
			return mismatch()
		}
	case kFloat:
		switch x := v.(type) {
		case int64:
			b.(*array.Float64Builder).Append(float64(x))
		case float64:
			b.(*array.Float64Builder).Append(x)
		case string:
			f, err := strconv.ParseFloat(x, 64)
			if err != nil {
				return mismatch()
			}
			b.(*array.Float64Builder).Append(f)
		default:
			return mismatch()
		}
	case kBool:
		switch x := v.(type) {
		case int64:
			b.(*array.BooleanBuilder).Append(x != 0)
		case bool:
			b.(*array.BooleanBuilder).Append(x)
		case string:
			bv, err := strconv.ParseBool(x)
			if err != nil {
				return mismatch()
			}
			b.(*array.BooleanBuilder).Append(bv)
		default:
			return mismatch()
		}
	case kDate, kTimestamp:
		var t time.Time
		switch x := v.(type) {
		case time.Time:
			t = x
		case string:
			var err error
			if t, err = parseTime(x); err != nil {
				return err
			}
		case []byte:
			var err error
			if t, err = parseTime(string(x)); err != nil {
				return err
			}
		case int64:
			t = time.Unix(x, 0) // Unix seconds
		default:
			return mismatch()
		}
		if k == kDate {
			b.(*array.Date32Builder).Append(arrow.Date32FromTime(t))
		} else {
			b.(*array.TimestampBuilder).Append(arrow.Timestamp(t.UnixMicro()))
		}
	case kBlob:
		switch x := v.(type) {
		case []byte:
			b.(*array.BinaryBuilder).Append(x)
		case string:
			b.(*array.BinaryBuilder).Append([]byte(x))
		default:
			return mismatch()
		}
	default:
		sb := b.(*array.StringBuilder)
		switch x := v.(type) {
		case string:
			sb.Append(x)
		case []byte:
			sb.BinaryBuilder.Append(x)
		case int64:
			sb.Append(strconv.FormatInt(x, 10))
		case float64:
			sb.Append(strconv.FormatFloat(x, 'g', -1, 64))
		case time.Time:
			sb.Append(x.UTC().Format(time.RFC3339Nano))
		case bool:
			sb.Append(strconv.FormatBool(x))
		default:
			sb.Append(fmt.Sprint(x))
		}
	}
	return nil
}
