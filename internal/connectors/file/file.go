// Package file provides the `file` source and sink of Kiln pipelines: CSV,
// JSON (an array of objects), NDJSON and Parquet files, read as Arrow
// record batches (CSV is decoded in parallel blocks straight into Arrow
// builders) and written atomically (a temporary file renamed into place
// when the run succeeds).
package file

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kilnai/kiln/internal/connectors/http/jsonbatch"
	"github.com/kilnai/kiln/internal/pipeline"
)

// Formats.
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
			Summary: "read CSV, JSON (an array of objects), NDJSON or Parquet files (a path or a glob; several files are read in sorted order); " +
				"CSV is decoded in parallel blocks; the schema is explicit or inferred from rows sampled at the start, middle and end of the first file",
			Config: func() any { return defaultSourceConfig() },
			Examples: []string{
				"{path: \"data/customers-*.csv\", format: csv}",
				"{path: data/events.ndjson, infer_rows: 5000}",
				"{path: data/scores.csv, csv: {delimiter: \";\", null_values: [\"\", NA]},\n" +
					" schema: [{name: id, type: int64}, {name: score, type: float64}, {name: seen, type: timestamp}]}",
				"{path: data/features.parquet}",
			},
		},
		Build: func(_ context.Context, cfg any, env pipeline.Env) (pipeline.Source, error) {
			return newSource(cfg.(*SourceConfig), env)
		},
	})
	pipeline.RegisterSink(pipeline.SinkSpec{
		Spec: pipeline.Spec{
			Name: "file",
			Summary: "write CSV, JSON, NDJSON or Parquet; atomic: rows go to a temporary file in the same directory that is " +
				"fsynced and renamed over `path` only when the run succeeds (a failed or killed run leaves the previous output untouched)",
			Config: func() any { return defaultSinkConfig() },
			Examples: []string{
				"{path: out/scores.parquet}",
				"{path: out/scores.csv, format: csv}",
				"{path: \"out/part-{task}.parquet\", compression: zstd}",
				"{path: out/rejected.ndjson}",
			},
		},
		Build: func(_ context.Context, cfg any, env pipeline.Env) (pipeline.Sink, error) {
			return newSink(cfg.(*SinkConfig), env)
		},
	})
}

// CSVOptions are the CSV dialect.
type CSVOptions struct {
	Delimiter  string   `yaml:"delimiter" doc:"field separator (one character)"`
	Header     bool     `yaml:"header" doc:"the first line names the columns (else columns are col_1, col_2, …, or the schema's names)"`
	NullValues []string `yaml:"null_values" doc:"field texts read as null (for every type; a string column keeps other texts as they are)"`
	Comment    string   `yaml:"comment" doc:"lines starting with this character are skipped (\"\": none)"`
}

// SourceConfig configures the file source.
type SourceConfig struct {
	Path      string            `yaml:"path" required:"true" doc:"file path or glob (data/part-*.csv); files are read in sorted order"`
	Format    string            `yaml:"format" doc:"csv, json, ndjson or parquet (default: from the file extension)"`
	Schema    []jsonbatch.Field `yaml:"schema" doc:"explicit columns (list of {name, type}; types int64, float64, string, bool, timestamp); default: inferred (Parquet files carry their own)"`
	InferRows int               `yaml:"infer_rows" doc:"rows sampled for schema inference: half from the start of the first file, a quarter each from its middle and its end"`
	CSV       CSVOptions        `yaml:"csv" doc:"CSV dialect"`
	OnInvalid string            `yaml:"on_invalid" doc:"a CSV value that does not parse as its column's type: error (stop, naming file, line and column) or null"`
	BatchSize int               `yaml:"batch_size" doc:"rows per batch (default: settings.batch_size, else 65536)"`
}

func defaultSourceConfig() *SourceConfig {
	return &SourceConfig{
		InferRows: 1000,
		CSV:       CSVOptions{Delimiter: ",", Header: true, NullValues: []string{""}},
		OnInvalid: "error",
	}
}

// Validate checks what types cannot.
func (c *SourceConfig) Validate() error {
	if c.Format != "" {
		switch c.Format {
		case formatCSV, formatJSON, formatNDJSON, formatParquet:
		default:
			return fmt.Errorf("format %q: want csv, json, ndjson or parquet", c.Format)
		}
	}
	if len(c.CSV.Delimiter) != 1 || c.CSV.Delimiter == "\"" || c.CSV.Delimiter == "\n" || c.CSV.Delimiter == "\r" {
		return fmt.Errorf("csv.delimiter %q: want one character other than a quote or a line break", c.CSV.Delimiter)
	}
	if len(c.CSV.Comment) > 1 {
		return fmt.Errorf("csv.comment %q: want one character", c.CSV.Comment)
	}
	if c.OnInvalid != "error" && c.OnInvalid != "null" {
		return fmt.Errorf("on_invalid %q: want error or null", c.OnInvalid)
	}
	if c.InferRows < 1 {
		return fmt.Errorf("infer_rows %d: want at least 1", c.InferRows)
	}
	if c.BatchSize < 0 {
		return fmt.Errorf("batch_size %d: want a positive number", c.BatchSize)
	}
	if len(c.Schema) > 0 {
		if _, err := jsonbatch.Schema(c.Schema); err != nil {
			return fmt.Errorf("schema: %w", err)
		}
	}
	return nil
}

// formatOf returns the configured format or the one the extension names.
func formatOf(configured, path string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	ext := strings.ToLower(filepath.Ext(strings.TrimSuffix(path, ".tmp")))
	switch ext {
	case ".csv", ".tsv", ".txt":
		return formatCSV, nil
	case ".json":
		return formatJSON, nil
	case ".ndjson", ".jsonl":
		return formatNDJSON, nil
	case ".parquet", ".pq":
		return formatParquet, nil
	}
	return "", fmt.Errorf("cannot tell the format of %q from its extension; set format: csv, json, ndjson or parquet", path)
}

// expand lists the files a path or glob names, sorted.
func expand(pattern string) ([]string, error) {
	if !strings.ContainsAny(pattern, "*?[") {
		st, err := os.Stat(pattern)
		if err != nil {
			return nil, err
		}
		if st.IsDir() {
			return nil, fmt.Errorf("%s is a directory; name files (a glob such as %s)", pattern, filepath.Join(pattern, "*.csv"))
		}
		return []string{pattern}, nil
	}
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return nil, fmt.Errorf("glob %q: %w", pattern, err)
	}
	files := matches[:0]
	for _, m := range matches {
		if st, err := os.Stat(m); err == nil && st.Mode().IsRegular() {
			files = append(files, m)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no file matches %q", pattern)
	}
	sort.Strings(files)
	return files, nil
}

// fingerprint identifies the files' contents: path, size, modification time
// and sha256 of every file.
func fingerprint(ctx context.Context, files []string) (string, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return "", err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return "", err
		}
		fh := sha256.New()
		for {
			if err := ctx.Err(); err != nil {
				f.Close()
				return "", err
			}
			n, rerr := f.Read(buf)
			fh.Write(buf[:n])
			if errors.Is(rerr, io.EOF) {
				break
			}
			if rerr != nil {
				f.Close()
				return "", rerr
			}
		}
		f.Close()
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00%x\n", name, st.Size(), st.ModTime().UnixNano(), fh.Sum(nil))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
