package main

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Column is one column of the CSV's explicit schema.
type Column struct {
	Name string
	Type string // a DuckDB type: BIGINT, DOUBLE, VARCHAR, BOOLEAN, TIMESTAMP, ...
}

// Task is the benchmark task, as the harness describes it.
type Task struct {
	Input, Output   string
	Columns         []Column
	TimestampFormat string
	Filter          string   // SQL condition on the input columns
	Standardize     []string // columns replaced by (x - mean) / stddev_pop, fitted on the filtered rows
	OneHot          string   // column replaced by one TINYINT indicator per category
	Categories      []string
	Prefix          string // indicator names: Prefix + category (default OneHot + "_")
	Compression     string
	RowGroupSize    int
}

// SQL is the single COPY statement that performs the task.
func (t *Task) SQL() (string, error) {
	if t.Input == "" || t.Output == "" {
		return "", errors.New("--input and --output are required")
	}
	if len(t.Columns) == 0 {
		return "", errors.New("--columns is required")
	}
	known := map[string]bool{}
	for _, c := range t.Columns {
		known[c.Name] = true
	}
	for _, s := range t.Standardize {
		if !known[s] {
			return "", fmt.Errorf("--standardize: no column %q", s)
		}
	}
	if t.OneHot != "" {
		if !known[t.OneHot] {
			return "", fmt.Errorf("--one-hot: no column %q", t.OneHot)
		}
		if len(t.Categories) == 0 {
			return "", errors.New("--one-hot needs --categories")
		}
	}
	prefix := t.Prefix
	if prefix == "" {
		prefix = t.OneHot + "_"
	}

	var b strings.Builder
	b.WriteString("COPY (\n  WITH src AS (\n    SELECT * FROM read_csv(")
	b.WriteString(quote(t.Input))
	b.WriteString(", header = true, delim = ',', quote = '\"', escape = '\"', auto_detect = false, columns = {")
	for i, c := range t.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quote(c.Name) + ": " + quote(c.Type))
	}
	b.WriteString("}")
	if t.TimestampFormat != "" {
		b.WriteString(", timestampformat = " + quote(t.TimestampFormat))
	}
	b.WriteString(")")
	if t.Filter != "" {
		b.WriteString("\n    WHERE " + t.Filter)
	}
	b.WriteString("\n  )")
	if len(t.Standardize) > 0 {
		b.WriteString(",\n  stats AS (\n    SELECT ")
		for i, s := range t.Standardize {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "avg(%s) AS m%d, stddev_pop(%s) AS s%d", ident(s), i, ident(s), i)
		}
		b.WriteString(" FROM src\n  )")
	}
	b.WriteString("\n  SELECT ")
	first := true
	sep := func() {
		if !first {
			b.WriteString(", ")
		}
		first = false
	}
	for _, c := range t.Columns {
		if c.Name == t.OneHot {
			for _, cat := range t.Categories {
				sep()
				fmt.Fprintf(&b, "CAST(%s = %s AS TINYINT) AS %s", ident(c.Name), quote(cat), ident(prefix+cat))
			}
			continue
		}
		sep()
		if i := indexOf(t.Standardize, c.Name); i >= 0 {
			fmt.Fprintf(&b, "(%s - m%d) / s%d AS %s", ident(c.Name), i, i, ident(c.Name))
			continue
		}
		b.WriteString(ident(c.Name))
	}
	b.WriteString("\n  FROM src")
	if len(t.Standardize) > 0 {
		b.WriteString(" CROSS JOIN stats")
	}
	b.WriteString("\n) TO " + quote(t.Output) + " (FORMAT parquet")
	if t.Compression != "" {
		b.WriteString(", COMPRESSION " + quote(t.Compression))
	}
	if t.RowGroupSize > 0 {
		b.WriteString(", ROW_GROUP_SIZE " + strconv.Itoa(t.RowGroupSize))
	}
	b.WriteString(")")
	return b.String(), nil
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// quote is a SQL string literal.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// ident is a quoted SQL identifier.
func ident(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// parseColumns reads name:TYPE,name:TYPE.
func parseColumns(s string) ([]Column, error) {
	var cols []Column
	for _, part := range splitList(s) {
		name, typ, ok := strings.Cut(part, ":")
		if !ok || name == "" || typ == "" {
			return nil, fmt.Errorf("--columns: %q is not name:TYPE", part)
		}
		cols = append(cols, Column{Name: name, Type: typ})
	}
	return cols, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// readerFor is the table function reading path, chosen by extension.
func readerFor(path string) (string, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".parquet":
		return "read_parquet(" + quote(path) + ")", nil
	case ".csv":
		return "read_csv(" + quote(path) + ", header = true)", nil
	default:
		return "", fmt.Errorf("unknown output format %q (want .parquet or .csv)", filepath.Ext(path))
	}
}

// Summary is what check prints for one file: its row count and, per
// column, checksums that do not depend on row order.
type Summary struct {
	Path    string          `json:"path"`
	Rows    int64           `json:"rows"`
	Columns []ColumnSummary `json:"columns"`
}

// ColumnSummary holds a column's checksums. Numeric columns (any integer
// or floating type) have Sum, SumSq, Min and Max as float64 (compare with
// a tolerance); the others have Exact: for booleans the number of true
// values, for timestamps the sum of microseconds since the epoch, for
// strings the sum of DuckDB's hash of each value.
type ColumnSummary struct {
	Name  string  `json:"name"`
	Type  string  `json:"type"`
	Class string  `json:"class"`
	Count int64   `json:"count"`
	Sum   float64 `json:"sum"`
	SumSq float64 `json:"sum_sq"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	Exact string  `json:"exact,omitempty"`
}

type describedColumn struct{ Name, Type string }

// colCheck is a column's class and the aggregates computed for it.
type colCheck struct {
	name, typ, class string
	aggs             []string
}

// classOf maps a DuckDB type to numeric, bool, timestamp, string or other.
func classOf(typ string) string {
	t := strings.ToUpper(typ)
	switch {
	case strings.HasPrefix(t, "DECIMAL"):
		return "numeric"
	case strings.HasPrefix(t, "TIMESTAMP"), t == "DATE":
		return "timestamp"
	}
	switch t {
	case "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
		"UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE":
		return "numeric"
	case "BOOLEAN":
		return "bool"
	case "VARCHAR":
		return "string"
	}
	return "other"
}

// checkSQL is one aggregate query over every column; every aggregate is
// cast to VARCHAR so that the Go side parses one kind of value.
func checkSQL(from string, cols []describedColumn) (string, []colCheck) {
	var b strings.Builder
	b.WriteString("SELECT count(*)")
	specs := make([]colCheck, 0, len(cols))
	for _, c := range cols {
		id := ident(c.Name)
		cc := colCheck{name: c.Name, typ: c.Type, class: classOf(c.Type)}
		cc.aggs = []string{"count(" + id + ")"}
		switch cc.class {
		case "numeric":
			d := id + "::DOUBLE"
			cc.aggs = append(cc.aggs, "fsum("+d+")", "fsum("+d+" * "+d+")", "min("+d+")", "max("+d+")")
		case "bool":
			cc.aggs = append(cc.aggs, "sum("+id+"::INTEGER)")
		case "timestamp":
			cc.aggs = append(cc.aggs, "sum(epoch_us("+id+"::TIMESTAMP)::HUGEINT)")
		case "string":
			cc.aggs = append(cc.aggs, "sum(hash("+id+")::HUGEINT)")
		}
		for _, a := range cc.aggs {
			b.WriteString(", CAST(" + a + " AS VARCHAR)")
		}
		specs = append(specs, cc)
	}
	b.WriteString(" FROM " + from)
	return b.String(), specs
}

// summary turns the aggregate values (in the order of c.aggs) into a
// ColumnSummary; NULL aggregates (no non-null value) stay zero.
func (c colCheck) summary(vals []sql.NullString) ColumnSummary {
	s := ColumnSummary{Name: c.name, Type: c.typ, Class: c.class}
	get := func(i int) string {
		if i < len(vals) && vals[i].Valid {
			return vals[i].String
		}
		return ""
	}
	s.Count, _ = strconv.ParseInt(get(0), 10, 64)
	switch c.class {
	case "numeric":
		s.Sum, _ = strconv.ParseFloat(get(1), 64)
		s.SumSq, _ = strconv.ParseFloat(get(2), 64)
		s.Min, _ = strconv.ParseFloat(get(3), 64)
		s.Max, _ = strconv.ParseFloat(get(4), 64)
	case "bool", "timestamp", "string":
		s.Exact = get(1)
		if s.Exact == "" {
			s.Exact = "0"
		}
	}
	return s
}
