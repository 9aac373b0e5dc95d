package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// column is one column of the generated CSV with its type as each
// contender is told it (every contender gets the same explicit schema).
type column struct {
	Name   string
	Kiln   string // file source schema type
	DuckDB string // read_csv column type
	Pandas string // bench/peers/pandas/task.py type
}

// Schema is the generated CSV's schema.
var Schema = []column{
	{"id", "int64", "BIGINT", "int64"},
	{"ts", "timestamp", "TIMESTAMP", "timestamp"},
	{"qty", "int64", "BIGINT", "int64"},
	{"country", "string", "VARCHAR", "string"},
	{"amount", "float64", "DOUBLE", "float64"},
	{"active", "bool", "BOOLEAN", "bool"},
	{"note", "string", "VARCHAR", "string"},
	{"score", "float64", "DOUBLE", "float64"},
}

// The task, identical for every contender: keep the rows matching
// Filter (the text is valid in Kiln's expression language, in SQL and in
// pandas' DataFrame.query); z-score Standardized with the mean and the
// population standard deviation (divisor n) of the kept rows; replace
// OneHot by one int8 indicator column per category of Countries (sorted,
// fixed), named OneHot + "_" + category; write Parquet with snappy.
const (
	Filter = "amount > 0 and active"
	OneHot = "country"
)

// RowGroupRows is the Parquet row group size every contender writes
// (DuckDB's default).
const RowGroupRows = 122880

// Standardized are the columns the task z-scores.
var Standardized = []string{"amount", "score"}

// Paths of the Kiln run.
type kilnPaths struct {
	Input, Output string
}

// WriteKilnSpec writes the task as a Kiln pipeline spec.
func WriteKilnSpec(w io.Writer, p kilnPaths) error {
	var b strings.Builder
	b.WriteString("# Written by bench/cmd/pipebench: the pipeline benchmark task.\n")
	b.WriteString("name: pipebench\n")
	b.WriteString("source:\n  file:\n")
	fmt.Fprintf(&b, "    path: %s\n", yamlString(p.Input))
	// Only an empty field is null, as for DuckDB (nullstr '') and pandas
	// (na_filter=False): Kiln's default also reads NA, N/A, NULL and null
	// as null, and the note column holds the word "null" now and then.
	b.WriteString("    format: csv\n    header: true\n    null_values: [\"\"]\n    schema:\n")
	for _, c := range Schema {
		fmt.Fprintf(&b, "      - {name: %s, type: %s", c.Name, c.Kiln)
		if c.Kiln == "timestamp" {
			fmt.Fprintf(&b, ", layout: %s", yamlString(TimestampLayout))
		}
		b.WriteString("}\n")
	}
	b.WriteString("transforms:\n")
	fmt.Fprintf(&b, "  - filter: %s\n", yamlString(Filter))
	fmt.Fprintf(&b, "  - standardize: {columns: [%s]}\n", strings.Join(Standardized, ", "))
	fmt.Fprintf(&b, "  - one_hot: {column: %s, categories: [%s], type: int8}\n", OneHot, strings.Join(Countries, ", "))
	b.WriteString("sinks:\n")
	fmt.Fprintf(&b, "  - file: {path: %s, format: parquet, compression: snappy, row_group_rows: %d}\n", yamlString(p.Output), RowGroupRows)
	_, err := io.WriteString(w, b.String())
	return err
}

// yamlString is a double-quoted YAML scalar (Go's quoting is valid YAML
// for the printable text used here).
func yamlString(s string) string { return strconv.Quote(s) }

// duckdbArgs are the DuckDB peer's arguments for the task.
func duckdbArgs(input, output string, threads int) []string {
	cols := make([]string, len(Schema))
	for i, c := range Schema {
		cols[i] = c.Name + ":" + c.DuckDB
	}
	return []string{"run",
		"--input", input, "--output", output,
		"--threads", strconv.Itoa(threads),
		"--columns", strings.Join(cols, ","),
		"--timestamp-format", "%Y-%m-%dT%H:%M:%S",
		"--filter", Filter,
		"--standardize", strings.Join(Standardized, ","),
		"--one-hot", OneHot, "--categories", strings.Join(Countries, ","),
		"--compression", "snappy",
		"--row-group-size", strconv.Itoa(RowGroupRows),
	}
}

// pandasArgs are the pandas peer's arguments (after the script path);
// outputBase has no extension: the peer appends .parquet or .csv.
func pandasArgs(input, outputBase string) []string {
	cols := make([]string, len(Schema))
	for i, c := range Schema {
		cols[i] = c.Name + ":" + c.Pandas
	}
	return []string{
		"--input", input, "--output", outputBase,
		"--columns", strings.Join(cols, ","),
		"--timestamp-format", "%Y-%m-%dT%H:%M:%S",
		"--filter", Filter,
		"--standardize", strings.Join(Standardized, ","),
		"--one-hot", OneHot, "--categories", strings.Join(Countries, ","),
	}
}
