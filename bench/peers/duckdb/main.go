// Command duckdb is the DuckDB peer of the pipeline benchmark
// (bench/cmd/pipebench) and its output checker. It is its own Go module so
// that the cgo DuckDB dependency never enters Kiln's go.mod.
//
// run performs the benchmark task in one SQL statement: read a CSV with an
// explicit schema, keep the rows matching a filter, z-score some numeric
// columns (mean and population standard deviation of the filtered rows),
// replace a categorical column by int8 indicator columns for a fixed list
// of categories, and write Parquet (snappy):
//
//	duckdb run --input in.csv --output out.parquet --threads 2 \
//	  --columns id:BIGINT,ts:TIMESTAMP,... --timestamp-format %Y-%m-%dT%H:%M:%S \
//	  --filter "amount > 0 and active" --standardize amount,score \
//	  --one-hot country --categories AU,BR,... --prefix country_
//
// check reads files back (Parquet, or CSV by extension) and prints, as
// JSON, the row count and order-independent per-column checksums that
// the harness compares between contenders:
//
//	duckdb check out.parquet [more files...]
//
// version prints DuckDB's version.
package main

import (
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"
)

func main() {
	if err := mainErr(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "duckdb peer:", err)
		os.Exit(1)
	}
}

func mainErr(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: duckdb run|check|version [arguments]")
	}
	switch args[0] {
	case "run":
		return runCmd(args[1:])
	case "check":
		return checkCmd(args[1:])
	case "version":
		db, err := sql.Open("duckdb", "")
		if err != nil {
			return err
		}
		defer db.Close()
		var v string
		if err := db.QueryRow("SELECT version()").Scan(&v); err != nil {
			return err
		}
		fmt.Println(v)
		return nil
	default:
		return fmt.Errorf("unknown command %q (want run, check or version)", args[0])
	}
}

// runResult is what run prints, one JSON line.
type runResult struct {
	RowsOut int64   `json:"rows_out"`
	Seconds float64 `json:"seconds"`
	SQL     string  `json:"sql"`
}

func runCmd(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var t Task
	var columns, standardize, categories string
	fs.StringVar(&t.Input, "input", "", "CSV file to read")
	fs.StringVar(&t.Output, "output", "", "Parquet file to write")
	fs.StringVar(&columns, "columns", "", "explicit schema: name:TYPE,... (DuckDB types)")
	fs.StringVar(&t.TimestampFormat, "timestamp-format", "", "strptime format of TIMESTAMP columns")
	fs.StringVar(&t.Filter, "filter", "", "row filter (SQL expression)")
	fs.StringVar(&standardize, "standardize", "", "comma-separated columns to z-score")
	fs.StringVar(&t.OneHot, "one-hot", "", "categorical column to replace by indicators")
	fs.StringVar(&categories, "categories", "", "comma-separated categories of --one-hot")
	fs.StringVar(&t.Prefix, "prefix", "", "indicator column prefix (default: the column name and _)")
	fs.StringVar(&t.Compression, "compression", "snappy", "Parquet compression")
	fs.IntVar(&t.RowGroupSize, "row-group-size", 0, "Parquet row group size (0: DuckDB's default)")
	threads := fs.Int("threads", 2, "DuckDB threads")
	memLimit := fs.String("memory-limit", "", "DuckDB memory_limit (e.g. 1GB; default DuckDB's)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if t.Columns, err = parseColumns(columns); err != nil {
		return err
	}
	t.Standardize = splitList(standardize)
	t.Categories = splitList(categories)
	query, err := t.SQL()
	if err != nil {
		return err
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return err
	}
	defer db.Close()
	// One connection: SET applies to the session that runs the COPY.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(fmt.Sprintf("SET threads = %d", *threads)); err != nil {
		return fmt.Errorf("set threads: %w", err)
	}
	if *memLimit != "" {
		if _, err := db.Exec("SET memory_limit = " + quote(*memLimit)); err != nil {
			return fmt.Errorf("set memory_limit: %w", err)
		}
	}
	start := time.Now()
	res, err := db.Exec(query)
	if err != nil {
		return fmt.Errorf("task: %w", err)
	}
	rows, err := res.RowsAffected()
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(runResult{RowsOut: rows, Seconds: time.Since(start).Seconds(), SQL: query})
}

func checkCmd(args []string) error {
	if len(args) == 0 {
		return errors.New("check: no files")
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("SET threads = 2"); err != nil {
		return err
	}
	out := make([]Summary, 0, len(args))
	for _, path := range args {
		s, err := summarize(db, path)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, s)
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// summarize computes the Summary of one file.
func summarize(db *sql.DB, path string) (Summary, error) {
	from, err := readerFor(path)
	if err != nil {
		return Summary{}, err
	}
	rows, err := db.Query("DESCRIBE SELECT * FROM " + from)
	if err != nil {
		return Summary{}, fmt.Errorf("describe: %w", err)
	}
	var cols []describedColumn
	for rows.Next() {
		vals := make([]any, 6)
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			rows.Close()
			return Summary{}, err
		}
		cols = append(cols, describedColumn{Name: fmt.Sprint(vals[0]), Type: fmt.Sprint(vals[1])})
	}
	if err := rows.Close(); err != nil {
		return Summary{}, err
	}
	query, specs := checkSQL(from, cols)
	dest := make([]any, 0, 1+len(specs)*5)
	var count int64
	dest = append(dest, &count)
	vals := make([][]sql.NullString, len(specs))
	for i, c := range specs {
		vals[i] = make([]sql.NullString, len(c.aggs))
		for j := range c.aggs {
			dest = append(dest, &vals[i][j])
		}
	}
	if err := db.QueryRow(query).Scan(dest...); err != nil {
		return Summary{}, fmt.Errorf("checksums: %w", err)
	}
	s := Summary{Path: path, Rows: count}
	for i, c := range specs {
		s.Columns = append(s.Columns, c.summary(vals[i]))
	}
	return s, nil
}
