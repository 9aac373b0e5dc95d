package main

import (
	"strings"
	"testing"
)

func TestTaskSQL(t *testing.T) {
	base := Task{
		Input: "in's.csv", Output: "out.parquet",
		Columns:     []Column{{"id", "BIGINT"}, {"country", "VARCHAR"}, {"amount", "DOUBLE"}},
		Filter:      "amount > 0",
		Standardize: []string{"amount"},
		OneHot:      "country", Categories: []string{"DE", "FR"},
		Compression: "snappy",
	}
	q, err := base.SQL()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`read_csv('in''s.csv'`,
		`columns = {'id': 'BIGINT', 'country': 'VARCHAR', 'amount': 'DOUBLE'}`,
		"WHERE amount > 0",
		`avg("amount") AS m0, stddev_pop("amount") AS s0`,
		`SELECT "id", CAST("country" = 'DE' AS TINYINT) AS "country_DE", CAST("country" = 'FR' AS TINYINT) AS "country_FR", ("amount" - m0) / s0 AS "amount"`,
		"CROSS JOIN stats",
		`TO 'out.parquet' (FORMAT parquet, COMPRESSION 'snappy')`,
	} {
		if !strings.Contains(q, want) {
			t.Errorf("SQL lacks %q:\n%s", want, q)
		}
	}

	bad := []struct {
		name string
		edit func(*Task)
	}{
		{"no input", func(t *Task) { t.Input = "" }},
		{"no columns", func(t *Task) { t.Columns = nil }},
		{"unknown standardize", func(t *Task) { t.Standardize = []string{"nope"} }},
		{"unknown one-hot", func(t *Task) { t.OneHot = "nope" }},
		{"no categories", func(t *Task) { t.Categories = nil }},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			tk := base
			tt.edit(&tk)
			if _, err := tk.SQL(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestParseColumns(t *testing.T) {
	cols, err := parseColumns("id:BIGINT, ts:TIMESTAMP")
	if err != nil || len(cols) != 2 || cols[1] != (Column{"ts", "TIMESTAMP"}) {
		t.Fatalf("got %v, %v", cols, err)
	}
	for _, s := range []string{"id", ":BIGINT", "id:"} {
		if _, err := parseColumns(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestClassOf(t *testing.T) {
	for typ, want := range map[string]string{
		"BIGINT": "numeric", "TINYINT": "numeric", "DOUBLE": "numeric", "DECIMAL(18,3)": "numeric",
		"BOOLEAN": "bool", "TIMESTAMP": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamp", "TIMESTAMP_NS": "timestamp",
		"VARCHAR": "string", "BLOB": "other",
	} {
		if got := classOf(typ); got != want {
			t.Errorf("classOf(%q) = %s, want %s", typ, got, want)
		}
	}
}
