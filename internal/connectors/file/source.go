// Package file provides the `file` pipeline source and sink: CSV, JSON
// (an array of objects), NDJSON and Parquet files, read as streams of Arrow
// record batches and written atomically (a temporary file renamed into
// place when the run succeeds). The CSV decoder is Kiln's own: it cuts a
// file into blocks of whole records and parses them in parallel straight
// into Arrow buffers.
package file

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/kilnai/kiln/internal/pipeline"
)

// File formats.
const (
	formatCSV     = "csv"
	formatJSON    = "json"
	formatNDJSON  = "ndjson"
	formatParquet = "parquet"
)

func init() {
	pipeline.RegisterSource(pipeline.SourceSpec{
		Spec: pipeline.Spec{
			Name: "file",
			Summary: "read CSV, JSON (an array of objects), NDJSON or Parquet files (a glob reads every match in sorted order); " +
				"the schema is explicit or inferred from a sample of rows spread through the files (the first rows, then windows at points through each file up to its end), " +
				"widening int64 → float64 → string where rows disagree; records that cannot be decoded are rejected (to on_error, with the file and line or record number). CSV is decoded in parallel blocks; " +
				"the source fingerprints every file (size, mtime, sha256) for the result cache and splits into one task per file " +
				"(Parquet: per row-group range) for distributed runs",
			Config: func() any { return defaultSourceConfig() },
			Scalar: "path",
			Examples: []string{
				"{path: data/customers.csv}",
				"{path: \"data/events-*.ndjson\", format: ndjson, infer_rows: 5000}",
				"{path: data/sales.csv, delimiter: \";\", null_values: [\"\", \"-\"],\n" +
					" schema: [{name: id, type: int64}, {name: amount, type: float64}, {name: sold_at, type: timestamp, layout: \"2006-01-02 15:04\"}, {name: day, type: date}]}",
				"{path: \"warehouse/part-*.parquet\", batch_size: 100000}",
			},
		},
		Build: func(_ context.Context, cfg any, env pipeline.Env) (pipeline.Source, error) {
			return newSource(cfg.(*SourceConfig), env)
		},
	})
}

// SourceConfig configures the file source.
type SourceConfig struct {
	Path       string   `yaml:"path" required:"true" doc:"file path or glob (data/part-*.csv); matches are read in sorted order"`
	Format     string   `yaml:"format" doc:"csv, json (an array of objects), ndjson or parquet; default: from the extension (.csv .tsv .json .ndjson .jsonl .parquet)"`
	Schema     []Field  `yaml:"schema" doc:"explicit columns (list of {name, type, layout}); CSV with a header and JSON match them by name and ignore other columns; default: inferred (not for parquet, which carries its own)"`
	InferRows  int      `yaml:"infer_rows" doc:"rows sampled to infer the schema: this many from the start of the first file and a quarter of it from the start of other files, plus every row of 64 KiB windows at eight points spread through each file (the last at its end)"`
	Header     bool     `yaml:"header" doc:"csv: the first record of each file names the columns (else columns are col_1, col_2, … or the schema's, by position)"`
	Delimiter  string   `yaml:"delimiter" doc:"csv: field delimiter, one character (default , and a tab for .tsv)"`
	Quote      string   `yaml:"quote" doc:"csv: quote character"`
	Comment    string   `yaml:"comment" doc:"csv: lines starting with this character are skipped (\"\" for none)"`
	NullValues []string `yaml:"null_values" doc:"csv: field texts read as null (an empty field is null unless \"\" is left out)"`
	BatchSize  int      `yaml:"batch_size" doc:"rows per Arrow batch (default: settings.batch_size, else 65536)"`
}

func defaultSourceConfig() *SourceConfig {
	return &SourceConfig{InferRows: 1000, Header: true, Quote: `"`, NullValues: []string{"", "NA", "N/A", "NULL", "null"}}
}

// formatOf returns the format of path from its extension.
func formatOf(path string) (string, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv", ".tsv", ".txt":
		return formatCSV, nil
	case ".json":
		return formatJSON, nil
	case ".ndjson", ".jsonl":
		return formatNDJSON, nil
	case ".parquet", ".pq":
		return formatParquet, nil
	}
	return "", fmt.Errorf("cannot tell the format of %q from its extension: set format (csv, json, ndjson or parquet)", path)
}

func oneChar(name, v string, allowEmpty bool) (byte, error) {
	if v == "" && allowEmpty {
		return 0, nil
	}
	if len(v) != 1 || v[0] == '\n' || v[0] == '\r' {
		return 0, fmt.Errorf("%s %q: want one ASCII character other than a line break", name, v)
	}
	return v[0], nil
}

// Validate checks the configuration and completes the format.
func (c *SourceConfig) Validate() error {
	if c.Path == "" {
		return errors.New("path is empty")
	}
	if _, err := filepath.Match(c.Path, ""); err != nil {
		return fmt.Errorf("path %q: %w", c.Path, err)
	}
	if c.Format == "" {
		f, err := formatOf(c.Path)
		if err != nil {
			return err
		}
		c.Format = f
	}
	switch c.Format {
	case formatCSV, formatJSON, formatNDJSON:
	case formatParquet:
		if len(c.Schema) > 0 {
			return errors.New("schema: a parquet file carries its own schema")
		}
	default:
		return fmt.Errorf("format %q: want csv, json, ndjson or parquet", c.Format)
	}
	if c.Delimiter == "" {
		c.Delimiter = ","
		if strings.EqualFold(filepath.Ext(c.Path), ".tsv") {
			c.Delimiter = "\t"
		}
	}
	d, err := oneChar("delimiter", c.Delimiter, false)
	if err != nil {
		return err
	}
	q, err := oneChar("quote", c.Quote, false)
	if err != nil {
		return err
	}
	cm, err := oneChar("comment", c.Comment, true)
	if err != nil {
		return err
	}
	if d == q || (cm != 0 && (cm == d || cm == q)) {
		return errors.New("delimiter, quote and comment must differ")
	}
	if c.InferRows <= 0 || c.BatchSize < 0 {
		return errors.New("infer_rows must be positive and batch_size not negative")
	}
	return validateSchema(c.Schema)
}

type source struct {
	cfg     *SourceConfig
	log     *slog.Logger
	rows    int
	opt     csvOptions
	only    string // OpenTask: just this file
	groups  []int  // OpenTask: just these row groups
	fields  []Field
	done    atomic.Int64
	total   atomic.Int64
	workers int
	reject  pipeline.RejectFunc // nil: a record that cannot be decoded fails Read
}

var (
	_ pipeline.Source        = (*source)(nil)
	_ pipeline.Fingerprinter = (*source)(nil)
	_ pipeline.Splitter      = (*source)(nil)
	_ pipeline.Progresser    = (*source)(nil)
	_ pipeline.Rejecter      = (*source)(nil)
)

// SetReject makes Read hand the records it cannot decode to f (with the
// file's path and the record's line, or its number in a JSON array) and
// read on.
func (s *source) SetReject(f pipeline.RejectFunc) { s.reject = f }

// rejectFunc takes the records a decoder refused; nil makes the first of
// them fail the read.
type rejectFunc func(ctx context.Context, recs []pipeline.SourceReject) error

// rejected hands recs to reject, or returns the first as the read's error
// when reject is nil.
func rejected(ctx context.Context, reject rejectFunc, recs []pipeline.SourceReject) error {
	if len(recs) == 0 {
		return nil
	}
	if reject == nil {
		return recordError(recs[0])
	}
	return reject(ctx, recs)
}

// recordError is the error of a refused record (Read adds the path).
func recordError(r pipeline.SourceReject) error {
	if r.Line > 0 {
		return fmt.Errorf("line %d (record %d): %w", r.Line, r.Index, r.Err)
	}
	return fmt.Errorf("record %d: %w", r.Index, r.Err)
}

func newSource(cfg *SourceConfig, env pipeline.Env) (*source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rows := cfg.BatchSize
	if rows == 0 {
		rows = env.BatchSize
	}
	if rows <= 0 {
		rows = 1 << 16
	}
	s := &source{cfg: cfg, log: log, rows: rows, fields: cfg.Schema, workers: defaultWorkers()}
	cm, _ := oneChar("comment", cfg.Comment, true)
	s.opt = csvOptions{delim: cfg.Delimiter[0], quote: cfg.Quote[0], comment: cm, header: cfg.Header, nulls: newNullSet(cfg.NullValues)}
	return s, nil
}

// paths lists the files the source reads, sorted.
func (s *source) paths() ([]string, error) {
	if s.only != "" {
		return []string{s.only}, nil
	}
	m, err := filepath.Glob(s.cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("path %q: %w", s.cfg.Path, err)
	}
	var out []string
	for _, p := range m {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("path %q: no such file", s.cfg.Path)
	}
	sort.Strings(out)
	return out, nil
}

// Progress reports bytes read of the total size (rows for Parquet).
func (s *source) Progress() (done, total int64) { return s.done.Load(), s.total.Load() }

// Close releases nothing: files are closed as they are read.
func (s *source) Close() error { return nil }

// schemaFor returns the fields to read (explicit or inferred).
func (s *source) schemaFor(paths []string) ([]Field, error) {
	if len(s.fields) > 0 {
		return s.fields, nil
	}
	var fields []Field
	var err error
	switch s.cfg.Format {
	case formatCSV:
		fields, err = sampleCSV(paths, s.opt, s.cfg.InferRows)
	case formatJSON, formatNDJSON:
		fields, err = sampleJSON(paths, s.cfg.Format == formatJSON, s.cfg.InferRows)
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inferring the schema: %w", err)
	}
	s.fields = fields
	s.log.Debug("file source: inferred schema", "path", s.cfg.Path, "fields", fields)
	return fields, nil
}

// Read emits every file's batches in order.
func (s *source) Read(ctx context.Context, emit pipeline.EmitFunc) error {
	paths, err := s.paths()
	if err != nil {
		return err
	}
	s.done.Store(0)
	var total int64
	for _, p := range paths {
		if s.cfg.Format == formatParquet {
			n, err := parquetRows(p, s.groups)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			total += n
		} else if st, err := os.Stat(p); err == nil {
			total += st.Size()
		}
	}
	s.total.Store(total)
	fields, err := s.schemaFor(paths)
	if err != nil {
		return err
	}
	send := func(ctx context.Context, b arrow.RecordBatch) error { return emit(ctx, b, nil) }
	var reject rejectFunc
	if f := s.reject; f != nil {
		reject = func(ctx context.Context, recs []pipeline.SourceReject) error { return f(ctx, recs, nil) }
	}
	var schema *arrow.Schema
	if fields != nil {
		if schema, err = arrowSchema(fields); err != nil {
			return err
		}
	}
	for _, p := range paths {
		if err := s.readFile(ctx, p, fields, schema, reject, send); err != nil {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return err
			}
			return fmt.Errorf("%s: %w", p, err)
		}
		if s.cfg.Format == formatParquet && schema == nil {
			// Later files must match the first.
			if schema, err = parquetSchema(p); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *source) readFile(ctx context.Context, p string, fields []Field, schema *arrow.Schema, reject rejectFunc, emit func(context.Context, arrow.RecordBatch) error) error {
	add := func(n int64) { s.done.Add(n) }
	switch s.cfg.Format {
	case formatCSV:
		plan := &csvReadPlan{opt: s.opt, fields: fields, schema: schema, rows: s.rows, workers: s.workers, progress: add}
		plan.blockSize = min(16<<20, max(256<<10, s.rows*64))
		return readCSV(ctx, p, plan, len(s.cfg.Schema) > 0, reject, emit)
	case formatJSON, formatNDJSON:
		return readJSON(ctx, p, s.cfg.Format == formatJSON, fields, schema, s.rows, &countingReader{add: add}, reject, emit)
	default:
		return readParquet(ctx, p, s.groups, s.rows, schema, add, emit)
	}
}

// sampleCSV infers fields from the first rows of the files and from rows
// in the middle and at the end of each. Records that cannot be parsed or
// have the wrong number of fields are left out (reading rejects them);
// the first of them is the error when no record was left.
func sampleCSV(paths []string, opt csvOptions, n int) ([]Field, error) {
	var in *inferrer
	var names []string
	var firstBad error
	good := 0
	p := csvParser{opt: opt}
	for fi, path := range paths {
		if fi >= 8 {
			break
		}
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		head := n
		if fi > 0 {
			head = max(1, n/4)
		}
		data, err := readHead(f, head)
		if err != nil {
			f.Close()
			return nil, err
		}
		pos, recs := 0, 0
		for recs <= head {
			next, ok, err := p.record(data, pos)
			if err != nil && in != nil {
				// A bad record: on at the next record boundary.
				if firstBad == nil {
					firstBad = fmt.Errorf("%s: record %d: %w", path, recs+1, err)
				}
				pos = recordEnd(data, p.skip(data, pos), opt.quote)
				recs++
				continue
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("%s: record %d: %w", path, recs+1, err)
			}
			if !ok {
				break
			}
			pos = next
			if in == nil {
				if opt.header {
					names = make([]string, len(p.fields))
					for i, h := range p.fields {
						names[i] = headerName(i, h)
					}
				} else {
					for i := range p.fields {
						names = append(names, fmt.Sprintf("col_%d", i+1))
					}
				}
				if err := uniqueNames(names); err != nil {
					f.Close()
					return nil, fmt.Errorf("%s: header: %w", path, err)
				}
				in = newInferrer(names, opt.nulls)
				if opt.header {
					continue
				}
			} else if opt.header && recs == 0 && fi > 0 {
				recs++ // a later file's header
				continue
			}
			if len(p.fields) != len(names) {
				if firstBad == nil {
					firstBad = fmt.Errorf("%s: record %d: %d fields, want %d", path, recs+1, len(p.fields), len(names))
				}
				recs++
				continue
			}
			for i, v := range p.fields {
				in.add(i, v)
			}
			good++
			recs++
		}
		for _, w := range sampleWindows(f) {
			pos := 0
			for {
				next, ok, err := p.record(w, pos)
				if err != nil || !ok {
					break // a window may start inside a quoted field: stop there
				}
				pos = next
				if len(p.fields) != len(names) {
					continue
				}
				for i, v := range p.fields {
					in.add(i, v)
				}
				good++
			}
		}
		f.Close()
	}
	if good == 0 && firstBad != nil {
		return nil, firstBad
	}
	if in == nil {
		return nil, errors.New("no records to infer a schema from (give an explicit schema)")
	}
	return in.fields(), nil
}

func uniqueNames(names []string) error {
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			return fmt.Errorf("duplicate column %q", n)
		}
		seen[n] = true
	}
	return nil
}

// readHead reads whole lines from the start of f: enough for about n
// records (at most 64 MiB).
func readHead(f *os.File, n int) ([]byte, error) {
	r := bufio.NewReaderSize(f, 1<<16)
	var out []byte
	eof := false
	for lines := 0; lines <= n+1 && len(out) < 64<<20; lines++ {
		line, err := r.ReadSlice('\n')
		out = append(out, line...)
		if err == bufio.ErrBufferFull {
			lines--
			continue
		}
		if err == io.EOF {
			eof = true
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if eof {
		return out, nil
	}
	// Cut at the last complete record so that a quoted field is never split.
	return out[:lastRecordEnd(out, '"', 0)], nil
}

// Fingerprint identifies the input: for every file its path, size,
// modification time and the sha256 of its contents (streamed).
func (s *source) Fingerprint(ctx context.Context) (string, error) {
	paths, err := s.paths()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "file\x00%s\x00", s.cfg.Format)
	buf := make([]byte, 1<<20)
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return "", err
		}
		c := sha256.New()
		_, err = io.CopyBuffer(c, f, buf)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("%s: %w", p, err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00%x\x00", p, st.Size(), st.ModTime().UnixNano(), c.Sum(nil))
		if s.groups != nil {
			fmt.Fprintf(h, "%v\x00", s.groups)
		}
	}
	return "file:" + hex.EncodeToString(h.Sum(nil)), nil
}

// taskSpec is a file source task: one file, optionally some row groups,
// and the schema every task reads with (inferred once, when splitting).
type taskSpec struct {
	Path      string  `json:"path"`
	RowGroups []int   `json:"row_groups,omitempty"`
	Schema    []Field `json:"schema,omitempty"`
}

// rowGroupsPerTask bounds the Parquet rows of one task.
const rowsPerTask = 1 << 20

// Split returns one task per file; Parquet files split further into
// ranges of row groups of about a million rows.
func (s *source) Split(ctx context.Context) ([]pipeline.Task, error) {
	paths, err := s.paths()
	if err != nil {
		return nil, err
	}
	fields, err := s.schemaFor(paths)
	if err != nil {
		return nil, err
	}
	var tasks []pipeline.Task
	add := func(ts taskSpec, weight int64) error {
		b, err := json.Marshal(ts)
		if err != nil {
			return err
		}
		id := filepath.Base(ts.Path)
		if ts.RowGroups != nil {
			id = fmt.Sprintf("%s#rg%d-%d", id, ts.RowGroups[0], ts.RowGroups[len(ts.RowGroups)-1])
		}
		tasks = append(tasks, pipeline.Task{ID: fmt.Sprintf("%04d-%s", len(tasks), id), Spec: b, Weight: weight})
		return nil
	}
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if s.cfg.Format != formatParquet {
			st, err := os.Stat(p)
			if err != nil {
				return nil, err
			}
			if err := add(taskSpec{Path: p, Schema: fields}, st.Size()); err != nil {
				return nil, err
			}
			continue
		}
		pf, _, err := openParquet(p, 1024)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		var groups []int
		var rows int64
		for g := range pf.NumRowGroups() {
			groups = append(groups, g)
			rows += pf.MetaData().RowGroup(g).NumRows()
			if rows >= rowsPerTask {
				if err := add(taskSpec{Path: p, RowGroups: groups}, rows); err != nil {
					pf.Close()
					return nil, err
				}
				groups, rows = nil, 0
			}
		}
		pf.Close()
		if len(groups) > 0 {
			if err := add(taskSpec{Path: p, RowGroups: groups}, rows); err != nil {
				return nil, err
			}
		}
	}
	return tasks, nil
}

// OpenTask returns a source reading one task's file (and row groups).
func (s *source) OpenTask(_ context.Context, t pipeline.Task) (pipeline.Source, error) {
	var ts taskSpec
	if err := json.Unmarshal(t.Spec, &ts); err != nil {
		return nil, fmt.Errorf("file task %s: %w", t.ID, err)
	}
	if ts.Path == "" {
		return nil, fmt.Errorf("file task %s: no path", t.ID)
	}
	if len(ts.Schema) > 0 {
		if err := validateSchema(ts.Schema); err != nil {
			return nil, fmt.Errorf("file task %s: %w", t.ID, err)
		}
	}
	return &source{cfg: s.cfg, log: s.log, rows: s.rows, opt: s.opt, only: ts.Path, groups: ts.RowGroups, fields: ts.Schema, workers: s.workers}, nil
}

// parquetRows counts the rows of a file (of some row groups).
func parquetRows(path string, groups []int) (int64, error) {
	pf, _, err := openParquet(path, 1024)
	if err != nil {
		return 0, err
	}
	defer pf.Close()
	if groups == nil {
		return pf.NumRows(), nil
	}
	var n int64
	for _, g := range groups {
		if g >= 0 && g < pf.NumRowGroups() {
			n += pf.MetaData().RowGroup(g).NumRows()
		}
	}
	return n, nil
}
