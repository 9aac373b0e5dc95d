package file

import (
	"fmt"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
)

// Field is one column of an explicit schema.
type Field struct {
	Name   string `yaml:"name" json:"name" required:"true" doc:"column name (matched against the CSV header or the JSON key)"`
	Type   string `yaml:"type" json:"type" required:"true" doc:"int64, float64, string, bool, timestamp or date"`
	Layout string `yaml:"layout" json:"layout,omitempty" doc:"timestamp/date: Go time layout of the text (default RFC 3339 for timestamp, 2006-01-02 for date)"`
}

// Column types a schema may name.
const (
	typeInt64     = "int64"
	typeFloat64   = "float64"
	typeString    = "string"
	typeBool      = "bool"
	typeTimestamp = "timestamp"
	typeDate      = "date"
)

// timestampType is the Arrow type of timestamp columns: microseconds, UTC.
var timestampType = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}

// dataType returns the Arrow type of a schema type name.
func dataType(name string) (arrow.DataType, error) {
	switch name {
	case typeInt64:
		return arrow.PrimitiveTypes.Int64, nil
	case typeFloat64:
		return arrow.PrimitiveTypes.Float64, nil
	case typeString:
		return arrow.BinaryTypes.String, nil
	case typeBool:
		return arrow.FixedWidthTypes.Boolean, nil
	case typeTimestamp:
		return timestampType, nil
	case typeDate:
		return arrow.FixedWidthTypes.Date32, nil
	}
	return nil, fmt.Errorf("type %q: want int64, float64, string, bool, timestamp or date", name)
}

// validateSchema checks an explicit schema: known types, unique non-empty
// names.
func validateSchema(fields []Field) error {
	seen := map[string]bool{}
	for i, f := range fields {
		if f.Name == "" {
			return fmt.Errorf("schema[%d]: empty name", i)
		}
		if seen[f.Name] {
			return fmt.Errorf("schema: duplicate column %q", f.Name)
		}
		seen[f.Name] = true
		if _, err := dataType(f.Type); err != nil {
			return fmt.Errorf("schema column %q: %w", f.Name, err)
		}
		if f.Layout != "" && f.Type != typeTimestamp && f.Type != typeDate {
			return fmt.Errorf("schema column %q: layout is only for timestamp and date", f.Name)
		}
	}
	return nil
}

// arrowSchema builds the Arrow schema of fields (all nullable).
func arrowSchema(fields []Field) (*arrow.Schema, error) {
	out := make([]arrow.Field, len(fields))
	for i, f := range fields {
		dt, err := dataType(f.Type)
		if err != nil {
			return nil, err
		}
		out[i] = arrow.Field{Name: f.Name, Type: dt, Nullable: true}
	}
	return arrow.NewSchema(out, nil), nil
}

// kind is what a sampled text value looks like; inference merges the kinds
// of a column's values (the widening lattice).
type kind uint8

const (
	kNull kind = iota
	kBool
	kInt
	kFloat
	kDate
	kTimestamp   // RFC 3339 (with zone)
	kTimestampSp // 2006-01-02 15:04:05[.fff] (no zone, UTC)
	kTimestampT  // 2006-01-02T15:04:05[.fff] (no zone, UTC)
	kString
)

// Timestamp layouts recognised by inference.
const (
	layoutSpace = "2006-01-02 15:04:05.999999999"
	layoutT     = "2006-01-02T15:04:05.999999999"
	layoutDate  = "2006-01-02"
)

// merge widens two kinds: equal kinds stay, null gives way to anything,
// int and float make float, anything else becomes string.
func merge(a, b kind) kind {
	switch {
	case a == b:
		return a
	case a == kNull:
		return b
	case b == kNull:
		return a
	case (a == kInt && b == kFloat) || (a == kFloat && b == kInt):
		return kFloat
	}
	return kString
}

// kindOf classifies one non-null text value.
func kindOf(s []byte) kind {
	if len(s) == 0 {
		return kNull
	}
	if _, ok := parseInt(s); ok {
		return kInt
	}
	if isFloat(s) {
		return kFloat
	}
	if _, ok := parseBool(s); ok {
		return kBool
	}
	// Dates and timestamps start with four digits and a dash.
	if len(s) >= 10 && s[4] == '-' && s[7] == '-' && isDigits(s[:4]) {
		str := string(s)
		if len(s) == 10 {
			if _, err := time.Parse(layoutDate, str); err == nil {
				return kDate
			}
			return kString
		}
		if _, err := time.Parse(time.RFC3339Nano, str); err == nil {
			return kTimestamp
		}
		if _, err := time.Parse(layoutSpace, str); err == nil {
			return kTimestampSp
		}
		if _, err := time.Parse(layoutT, str); err == nil {
			return kTimestampT
		}
	}
	return kString
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// field returns the schema field a kind infers.
func (k kind) field(name string) Field {
	switch k {
	case kBool:
		return Field{Name: name, Type: typeBool}
	case kInt:
		return Field{Name: name, Type: typeInt64}
	case kFloat:
		return Field{Name: name, Type: typeFloat64}
	case kDate:
		return Field{Name: name, Type: typeDate}
	case kTimestamp:
		return Field{Name: name, Type: typeTimestamp}
	case kTimestampSp:
		return Field{Name: name, Type: typeTimestamp, Layout: layoutSpace}
	case kTimestampT:
		return Field{Name: name, Type: typeTimestamp, Layout: layoutT}
	}
	return Field{Name: name, Type: typeString}
}

// inferrer accumulates the kinds of sampled values per column.
type inferrer struct {
	names []string
	kinds []kind
	nulls nullSet
}

func newInferrer(names []string, nulls nullSet) *inferrer {
	return &inferrer{names: names, kinds: make([]kind, len(names)), nulls: nulls}
}

// add merges one sampled text value of column i.
func (in *inferrer) add(i int, v []byte) {
	if i < 0 || i >= len(in.kinds) || in.kinds[i] == kString || in.nulls.is(v) {
		return
	}
	in.kinds[i] = merge(in.kinds[i], kindOf(v))
}

// fields returns the inferred schema; all-null columns are strings.
func (in *inferrer) fields() []Field {
	out := make([]Field, len(in.names))
	for i, n := range in.names {
		out[i] = in.kinds[i].field(n)
	}
	return out
}

// nullSet holds the texts read as null.
type nullSet struct {
	empty  bool // "" is null
	values []string
	maxLen int
}

func newNullSet(values []string) nullSet {
	var s nullSet
	for _, v := range values {
		if v == "" {
			s.empty = true
			continue
		}
		s.values = append(s.values, v)
		s.maxLen = max(s.maxLen, len(v))
	}
	return s
}

func (s nullSet) is(v []byte) bool {
	if len(v) == 0 {
		return s.empty
	}
	if len(v) > s.maxLen {
		return false
	}
	for _, n := range s.values {
		if string(v) == n {
			return true
		}
	}
	return false
}

// parseInt parses a base-10 int64 from bytes without allocating.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	neg := false
	switch b[0] {
	case '-':
		neg = true
		b = b[1:]
	case '+':
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		d := c - '0'
		if d > 9 {
			return 0, false
		}
		n = n*10 + uint64(d)
	}
	if neg {
		if n > 1<<63 {
			return 0, false
		}
		return -int64(n), true
	}
	if n > 1<<63-1 {
		return 0, false
	}
	return int64(n), true
}

// isFloat reports whether b is a decimal float (digits, optional point,
// optional exponent) or inf/nan.
func isFloat(b []byte) bool {
	_, ok := parseFloat(b)
	return ok
}

// parseBool accepts true/false in any case and t/f.
func parseBool(b []byte) (bool, bool) {
	switch len(b) {
	case 1:
		switch b[0] {
		case 't', 'T':
			return true, true
		case 'f', 'F':
			return false, true
		}
	case 4:
		if string(b) == "true" || strings.EqualFold(string(b), "true") {
			return true, true
		}
	case 5:
		if string(b) == "false" || strings.EqualFold(string(b), "false") {
			return false, true
		}
	}
	return false, false
}
