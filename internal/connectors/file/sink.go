package file

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/kilnai/kiln/internal/pipeline"
)

func init() {
	pipeline.RegisterSink(pipeline.SinkSpec{
		Spec: pipeline.Spec{
			Name: "file",
			Summary: "write CSV, JSON (an array of objects), NDJSON or Parquet; atomic: rows go to a hidden temporary file " +
				"in the same directory, which is fsynced and renamed over `path` only when the run succeeds, so a failed or killed run " +
				"leaves the previous output untouched. `{task}` in the path names a distributed task's own output, `{run}` the run id",
			Config: func() any { return defaultSinkConfig() },
			Scalar: "path",
			Examples: []string{
				"{path: out/scores.parquet}",
				"{path: out/scores.csv, format: csv, delimiter: \";\"}",
				"{path: out/events.ndjson}",
				"{path: \"out/part-{task}.parquet\", compression: zstd, row_group_rows: 500000, dictionary: true}",
			},
		},
		Build: func(_ context.Context, cfg any, env pipeline.Env) (pipeline.Sink, error) {
			return newSink(cfg.(*SinkConfig), env)
		},
	})
}

// SinkConfig configures the file sink.
type SinkConfig struct {
	Path         string `yaml:"path" required:"true" doc:"output file; {task} is replaced by the distributed task id, {run} by the run id; parent directories are created"`
	Format       string `yaml:"format" doc:"csv, json (one array of objects), ndjson (one object per line) or parquet; default: from the extension"`
	Compression  string `yaml:"compression" doc:"parquet: snappy, zstd, gzip or none"`
	RowGroupRows int    `yaml:"row_group_rows" doc:"parquet: rows per row group"`
	Dictionary   bool   `yaml:"dictionary" doc:"parquet: dictionary-encode string columns (smaller files when they hold categories, about twice the encoding CPU); numbers are always plain-encoded"`
	Delimiter    string `yaml:"delimiter" doc:"csv: field delimiter, one character (default , and a tab for .tsv)"`
	Header       bool   `yaml:"header" doc:"csv: write a header line with the column names"`
}

func defaultSinkConfig() *SinkConfig {
	return &SinkConfig{Compression: "snappy", RowGroupRows: 1 << 18, Header: true}
}

// Validate checks the configuration and completes the format.
func (c *SinkConfig) Validate() error {
	if c.Path == "" {
		return errors.New("path is empty")
	}
	if c.Format == "" {
		f, err := formatOf(strings.NewReplacer("{task}", "", "{run}", "").Replace(c.Path))
		if err != nil {
			return err
		}
		c.Format = f
	}
	switch c.Format {
	case formatCSV, formatJSON, formatNDJSON, formatParquet:
	default:
		return fmt.Errorf("format %q: want csv, json, ndjson or parquet", c.Format)
	}
	if _, err := codec(c.Compression); err != nil {
		return err
	}
	if c.RowGroupRows <= 0 {
		return errors.New("row_group_rows must be positive")
	}
	if c.Delimiter == "" {
		c.Delimiter = ","
		if strings.EqualFold(filepath.Ext(c.Path), ".tsv") {
			c.Delimiter = "\t"
		}
	}
	if _, err := oneChar("delimiter", c.Delimiter, false); err != nil {
		return err
	}
	if c.Delimiter == `"` {
		return errors.New(`delimiter " is the quote character`)
	}
	return nil
}

func codec(name string) (compress.Compression, error) {
	switch name {
	case "snappy":
		return compress.Codecs.Snappy, nil
	case "zstd":
		return compress.Codecs.Zstd, nil
	case "gzip":
		return compress.Codecs.Gzip, nil
	case "none", "":
		return compress.Codecs.Uncompressed, nil
	}
	return 0, fmt.Errorf("compression %q: want snappy, zstd, gzip or none", name)
}

// resolvePath fills the {task} and {run} placeholders.
func resolvePath(path string, env pipeline.Env) (string, error) {
	if strings.Contains(path, "{task}") {
		switch {
		case env.Task != "":
			path = strings.ReplaceAll(path, "{task}", sanitize(env.Task))
		case env.RunID != "":
			return "", fmt.Errorf("path %q has {task} but the run is not a distributed task", path)
		}
	}
	if strings.Contains(path, "{run}") && env.RunID != "" {
		path = strings.ReplaceAll(path, "{run}", sanitize(env.RunID))
	}
	return path, nil
}

// sanitize keeps an id usable in a file name.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 || r == ':' {
			return '_'
		}
		return r
	}, s)
}

// batchWriter encodes batches to the temporary file.
type batchWriter interface {
	write(b arrow.RecordBatch) error
	// finish writes what remains (a footer, a closing bracket).
	finish() error
}

type sink struct {
	cfg    *SinkConfig
	log    *slog.Logger
	path   string
	tmp    *os.File
	buf    *bufio.Writer
	w      batchWriter
	schema *arrow.Schema
	rows   int64
}

var _ pipeline.Sink = (*sink)(nil)

func newSink(cfg *SinkConfig, env pipeline.Env) (*sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	path, err := resolvePath(cfg.Path, env)
	if err != nil {
		return nil, err
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &sink{cfg: cfg, log: log, path: path}, nil
}

// open creates the temporary file next to the output.
func (s *sink) open(schema *arrow.Schema) error {
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(s.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	s.tmp, s.buf, s.schema = f, bufio.NewWriterSize(&writeback{f: f}, 1<<20), schema
	switch s.cfg.Format {
	case formatCSV:
		s.w = newCSVWriter(s.buf, schema, s.cfg.Delimiter[0], s.cfg.Header)
	case formatJSON, formatNDJSON:
		s.w = &jsonWriter{w: s.buf, array: s.cfg.Format == formatJSON}
	case formatParquet:
		c, _ := codec(s.cfg.Compression)
		// Dictionary encoding hashes every value: for numbers it mostly
		// falls back to plain anyway, for strings it is optional.
		opts := []parquet.WriterProperty{parquet.WithCompression(c), parquet.WithMaxRowGroupLength(int64(s.cfg.RowGroupRows)),
			parquet.WithDictionaryDefault(false)}
		if s.cfg.Dictionary {
			for _, f := range schema.Fields() {
				if f.Type.ID() == arrow.STRING || f.Type.ID() == arrow.LARGE_STRING {
					opts = append(opts, parquet.WithDictionaryFor(f.Name, true))
				}
			}
		}
		props := parquet.NewWriterProperties(opts...)
		arrProps := pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema())
		if flatParquet(schema) {
			pw, err := newParallelParquet(schema, s.buf, props, arrProps, parquetWorkers())
			if err != nil {
				s.discard()
				return fmt.Errorf("file sink: parquet: %w", err)
			}
			s.w = pw
			break
		}
		pw, err := pqarrow.NewFileWriter(schema, s.buf, props, arrProps)
		if err != nil {
			s.discard()
			return fmt.Errorf("file sink: parquet: %w", err)
		}
		s.w = &parquetWriter{w: pw}
	}
	return nil
}

// Write appends a batch to the temporary file.
func (s *sink) Write(_ context.Context, b pipeline.Batch) ([]pipeline.RowError, error) {
	if s.tmp == nil {
		if err := s.open(b.Schema()); err != nil {
			return nil, err
		}
	} else if !b.Schema().Equal(s.schema) && s.cfg.Format != formatJSON && s.cfg.Format != formatNDJSON {
		return nil, fmt.Errorf("file sink %s: batch schema %s differs from the first batch's %s", s.path, b.Schema(), s.schema)
	}
	if b.NumRows() == 0 {
		return nil, nil
	}
	if err := s.w.write(b); err != nil {
		return nil, fmt.Errorf("file sink %s: %w", s.path, err)
	}
	s.rows += b.NumRows()
	return nil, nil
}

// Close commits the output (runErr nil) or removes the temporary file.
func (s *sink) Close(_ context.Context, runErr error) error {
	if runErr != nil {
		s.discard()
		return nil
	}
	if s.tmp == nil {
		// No batch arrived: the output is an empty file of the format.
		if err := s.open(arrow.NewSchema(nil, nil)); err != nil {
			return err
		}
	}
	err := s.w.finish()
	if err == nil {
		err = s.buf.Flush()
	}
	if err == nil {
		// CreateTemp made it private; the output gets ordinary permissions.
		err = s.tmp.Chmod(0o644)
	}
	if err == nil {
		err = s.tmp.Sync()
	}
	if cerr := s.tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(s.tmp.Name(), s.path)
	}
	if err != nil {
		_ = os.Remove(s.tmp.Name())
		s.tmp = nil
		return fmt.Errorf("file sink %s: %w", s.path, err)
	}
	s.tmp = nil
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		_ = d.Sync() // make the rename durable
		d.Close()
	}
	s.log.Debug("file sink: written", "path", s.path, "rows", s.rows)
	return nil
}

func (s *sink) discard() {
	if s.tmp != nil {
		s.tmp.Close()
		_ = os.Remove(s.tmp.Name())
		s.tmp = nil
	}
}

type parquetWriter struct{ w *pqarrow.FileWriter }

func (p *parquetWriter) write(b arrow.RecordBatch) error { return p.w.WriteBuffered(b) }
func (p *parquetWriter) finish() error                   { return p.w.Close() }

// formatter appends column value i as text (the value is not null).
type formatter func(dst []byte, i int) []byte

// textFormatter returns how to print the values of a column; quoted
// reports whether the text may need CSV quoting.
func textFormatter(a arrow.Array) (f formatter, quoted bool) {
	switch c := a.(type) {
	case *array.Int64:
		return func(d []byte, i int) []byte { return strconv.AppendInt(d, c.Value(i), 10) }, false
	case *array.Int32:
		return func(d []byte, i int) []byte { return strconv.AppendInt(d, int64(c.Value(i)), 10) }, false
	case *array.Int16:
		return func(d []byte, i int) []byte { return strconv.AppendInt(d, int64(c.Value(i)), 10) }, false
	case *array.Int8:
		return func(d []byte, i int) []byte { return strconv.AppendInt(d, int64(c.Value(i)), 10) }, false
	case *array.Uint64:
		return func(d []byte, i int) []byte { return strconv.AppendUint(d, c.Value(i), 10) }, false
	case *array.Uint32:
		return func(d []byte, i int) []byte { return strconv.AppendUint(d, uint64(c.Value(i)), 10) }, false
	case *array.Uint16:
		return func(d []byte, i int) []byte { return strconv.AppendUint(d, uint64(c.Value(i)), 10) }, false
	case *array.Uint8:
		return func(d []byte, i int) []byte { return strconv.AppendUint(d, uint64(c.Value(i)), 10) }, false
	case *array.Float64:
		return func(d []byte, i int) []byte { return strconv.AppendFloat(d, c.Value(i), 'g', -1, 64) }, false
	case *array.Float32:
		return func(d []byte, i int) []byte { return strconv.AppendFloat(d, float64(c.Value(i)), 'g', -1, 32) }, false
	case *array.Boolean:
		return func(d []byte, i int) []byte { return strconv.AppendBool(d, c.Value(i)) }, false
	case *array.String:
		return func(d []byte, i int) []byte { return append(d, c.Value(i)...) }, true
	case *array.LargeString:
		return func(d []byte, i int) []byte { return append(d, c.Value(i)...) }, true
	case *array.Timestamp:
		unit := c.DataType().(*arrow.TimestampType).Unit
		return func(d []byte, i int) []byte {
			return c.Value(i).ToTime(unit).UTC().AppendFormat(d, time.RFC3339Nano)
		}, false
	case *array.Date32:
		return func(d []byte, i int) []byte { return c.Value(i).ToTime().AppendFormat(d, layoutDate) }, false
	case *array.Date64:
		return func(d []byte, i int) []byte { return c.Value(i).ToTime().AppendFormat(d, layoutDate) }, false
	}
	return func(d []byte, i int) []byte { return append(d, a.ValueStr(i)...) }, true
}

type csvWriter struct {
	w      *bufio.Writer
	delim  byte
	header bool
	names  []string
	line   []byte
}

func newCSVWriter(w *bufio.Writer, schema *arrow.Schema, delim byte, header bool) *csvWriter {
	c := &csvWriter{w: w, delim: delim, header: header}
	for _, f := range schema.Fields() {
		c.names = append(c.names, f.Name)
	}
	return c
}

func (c *csvWriter) field(dst []byte, v []byte) []byte {
	need := false
	for _, ch := range v {
		if ch == c.delim || ch == '"' || ch == '\n' || ch == '\r' {
			need = true
			break
		}
	}
	if !need && (len(v) == 0 || v[0] != '#') {
		return append(dst, v...)
	}
	dst = append(dst, '"')
	for _, ch := range v {
		if ch == '"' {
			dst = append(dst, '"')
		}
		dst = append(dst, ch)
	}
	return append(dst, '"')
}

func (c *csvWriter) writeHeader() error {
	c.header = false
	line := c.line[:0]
	for i, n := range c.names {
		if i > 0 {
			line = append(line, c.delim)
		}
		line = c.field(line, []byte(n))
	}
	line = append(line, '\n')
	c.line = line
	_, err := c.w.Write(line)
	return err
}

func (c *csvWriter) write(b arrow.RecordBatch) error {
	if c.header {
		if err := c.writeHeader(); err != nil {
			return err
		}
	}
	cols := b.Columns()
	fs := make([]formatter, len(cols))
	qs := make([]bool, len(cols))
	for i, a := range cols {
		fs[i], qs[i] = textFormatter(a)
	}
	var scratch []byte
	line := c.line[:0]
	for r := range int(b.NumRows()) {
		for i, a := range cols {
			if i > 0 {
				line = append(line, c.delim)
			}
			if a.IsNull(r) {
				continue
			}
			if qs[i] {
				scratch = fs[i](scratch[:0], r)
				line = c.field(line, scratch)
			} else {
				line = fs[i](line, r)
			}
		}
		line = append(line, '\n')
		if len(line) > 1<<16 {
			if _, err := c.w.Write(line); err != nil {
				return err
			}
			line = line[:0]
		}
	}
	_, err := c.w.Write(line)
	c.line = line[:0]
	return err
}

func (c *csvWriter) finish() error {
	if c.header && len(c.names) > 0 {
		return c.writeHeader()
	}
	return nil
}

type jsonWriter struct {
	w     *bufio.Writer
	array bool
	rows  int64
	line  []byte
}

func (j *jsonWriter) write(b arrow.RecordBatch) error {
	cols := b.Columns()
	keys := make([][]byte, len(cols))
	fs := make([]func([]byte, int) []byte, len(cols))
	for i, a := range cols {
		keys[i] = appendJSONString(nil, b.Schema().Field(i).Name)
		keys[i] = append(keys[i], ':')
		fs[i] = jsonFormatter(a)
	}
	line := j.line[:0]
	for r := range int(b.NumRows()) {
		switch {
		case j.array && j.rows == 0:
			line = append(line, "[\n"...)
		case j.array:
			line = append(line, ",\n"...)
		}
		j.rows++
		line = append(line, '{')
		for i, a := range cols {
			if i > 0 {
				line = append(line, ',')
			}
			line = append(line, keys[i]...)
			if a.IsNull(r) {
				line = append(line, "null"...)
				continue
			}
			line = fs[i](line, r)
		}
		line = append(line, '}')
		if !j.array {
			line = append(line, '\n')
		}
		if len(line) > 1<<16 {
			if _, err := j.w.Write(line); err != nil {
				return err
			}
			line = line[:0]
		}
	}
	_, err := j.w.Write(line)
	j.line = line[:0]
	return err
}

func (j *jsonWriter) finish() error {
	if !j.array {
		return nil
	}
	end := "\n]\n"
	if j.rows == 0 {
		end = "[]\n"
	}
	_, err := j.w.WriteString(end)
	return err
}

// jsonFormatter appends a non-null value of a column as JSON.
func jsonFormatter(a arrow.Array) func([]byte, int) []byte {
	switch c := a.(type) {
	case *array.Float64:
		return func(d []byte, i int) []byte { return appendJSONFloat(d, c.Value(i), 64) }
	case *array.Float32:
		return func(d []byte, i int) []byte { return appendJSONFloat(d, float64(c.Value(i)), 32) }
	case *array.Int64, *array.Int32, *array.Int16, *array.Int8, *array.Uint64, *array.Uint32, *array.Uint16, *array.Uint8, *array.Boolean:
		f, _ := textFormatter(a)
		return f
	}
	f, _ := textFormatter(a)
	var scratch []byte
	return func(d []byte, i int) []byte {
		scratch = f(scratch[:0], i)
		return appendJSONString(d, string(scratch))
	}
}

func appendJSONFloat(d []byte, v float64, bits int) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(d, "null"...)
	}
	return strconv.AppendFloat(d, v, 'g', -1, bits)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string (invalid UTF-8 becomes
// U+FFFD, as encoding/json does).
func appendJSONString(d []byte, s string) []byte {
	d = append(d, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				d = append(d, '\\', c)
			case c == '\n':
				d = append(d, '\\', 'n')
			case c == '\r':
				d = append(d, '\\', 'r')
			case c == '\t':
				d = append(d, '\\', 't')
			case c < 0x20:
				d = append(d, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
			default:
				d = append(d, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			d = append(d, `\ufffd`...)
		} else {
			d = append(d, s[i:i+size]...)
		}
		i += size
	}
	return append(d, '"')
}
