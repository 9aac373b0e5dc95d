// Package jsonbatch converts between JSON records and Arrow record batches
// for the HTTP and NATS connectors: it decodes JSON objects keeping their
// key order, infers an Arrow schema over a sample of records (or takes an
// explicit one), builds batches of a fixed schema, and encodes batch rows
// back to JSON objects.
//
// Type rules (the same for every JSON-fed source): integral numbers are
// int64, other numbers float64 (a column with both is float64), true/false
// bool, strings string — unless every non-null sampled value parses as an
// RFC 3339 timestamp, then timestamp (µs, UTC), or as a YYYY-MM-DD date,
// then date; nested objects and arrays
// are kept as their JSON text in a string column; a column whose sampled
// values disagree otherwise (a number and a string) is string; a column
// with only nulls in the sample is string.
package jsonbatch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Field is one column of an explicit schema.
type Field struct {
	Name string `yaml:"name" json:"name" required:"true" doc:"column name (the record's key)"`
	Type string `yaml:"type" json:"type" required:"true" doc:"int64, float64, string, bool, timestamp (RFC 3339 text) or date (YYYY-MM-DD)"`
}

// Types are the column types a schema may name.
var Types = []string{"int64", "float64", "string", "bool", "timestamp", "date"}

var timestampType = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}

// DataType returns the Arrow type of a schema type name.
func DataType(name string) (arrow.DataType, error) {
	switch name {
	case "int64":
		return arrow.PrimitiveTypes.Int64, nil
	case "float64":
		return arrow.PrimitiveTypes.Float64, nil
	case "string":
		return arrow.BinaryTypes.String, nil
	case "bool":
		return arrow.FixedWidthTypes.Boolean, nil
	case "timestamp":
		return timestampType, nil
	case "date":
		return arrow.FixedWidthTypes.Date32, nil
	}
	return nil, fmt.Errorf("unknown type %q (want one of %s)", name, strings.Join(Types, ", "))
}

// Schema builds an Arrow schema from explicit fields.
func Schema(fields []Field) (*arrow.Schema, error) {
	if len(fields) == 0 {
		return nil, errors.New("schema has no fields")
	}
	seen := map[string]bool{}
	out := make([]arrow.Field, len(fields))
	for i, f := range fields {
		if f.Name == "" {
			return nil, fmt.Errorf("schema field %d has no name", i)
		}
		if seen[f.Name] {
			return nil, fmt.Errorf("schema names column %q twice", f.Name)
		}
		seen[f.Name] = true
		dt, err := DataType(f.Type)
		if err != nil {
			return nil, fmt.Errorf("schema field %q: %w", f.Name, err)
		}
		out[i] = arrow.Field{Name: f.Name, Type: dt, Nullable: true}
	}
	return arrow.NewSchema(out, nil), nil
}

// Record is one decoded JSON object: values are nil, bool, json.Number,
// string, or json.RawMessage (nested objects and arrays).
type Record map[string]any

// KeyOrder remembers the order in which keys were first seen.
type KeyOrder struct {
	seen map[string]bool
	Keys []string
}

// Add notes key (a no-op when it was seen before or k is nil).
func (k *KeyOrder) Add(key string) {
	if k == nil {
		return
	}
	if k.seen == nil {
		k.seen = map[string]bool{}
	}
	if !k.seen[key] {
		k.seen[key] = true
		k.Keys = append(k.Keys, key)
	}
}

// ParseObject decodes one JSON object into a Record, noting new keys in
// order (order may be nil).
func ParseObject(raw []byte, order *KeyOrder) (Record, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	rec, err := parseObject(dec, order)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the JSON object")
	}
	return rec, nil
}

func parseObject(dec *json.Decoder, order *KeyOrder) (Record, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("want a JSON object, got %s", describe(tok))
	}
	rec := Record{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		key, ok := kt.(string)
		if !ok {
			return nil, fmt.Errorf("invalid JSON: object key %v", kt)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("invalid JSON value of %q: %w", key, err)
		}
		v, err := scalar(raw)
		if err != nil {
			return nil, fmt.Errorf("value of %q: %w", key, err)
		}
		if _, dup := rec[key]; !dup {
			order.Add(key)
		}
		rec[key] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	return rec, nil
}

func describe(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "an array"
		}
		return string(t)
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", tok)
}

// scalar turns one raw JSON value into a Record value.
func scalar(raw json.RawMessage) (any, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return nil, errors.New("empty value")
	}
	switch t[0] {
	case '{', '[':
		// Kept as text for a utf8 column, which must hold valid UTF-8:
		// invalid bytes (JSON allows them only inside strings) become
		// U+FFFD, as encoding/json does when it decodes a string.
		if !utf8.Valid(t) {
			t = bytes.ToValidUTF8(t, []byte("\uFFFD"))
		}
		return json.RawMessage(t), nil
	case 'n':
		return nil, nil
	case 't':
		return true, nil
	case 'f':
		return false, nil
	case '"':
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return nil, err
		}
		return s, nil
	}
	return json.Number(t), nil
}

// SplitArray returns the elements of a JSON array (of records), each as
// its raw text.
func SplitArray(raw []byte) ([]json.RawMessage, error) {
	var items []json.RawMessage
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || t[0] != '[' {
		return nil, errors.New("want a JSON array of records")
	}
	if err := json.Unmarshal(t, &items); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	return items, nil
}

// ParseArray decodes a JSON array of objects.
func ParseArray(raw []byte, order *KeyOrder) ([]Record, error) {
	items, err := SplitArray(raw)
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(items))
	for i, it := range items {
		r, err := ParseObject(it, order)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// ParseNDJSON decodes newline-delimited JSON objects (blank lines skipped).
func ParseNDJSON(raw []byte, order *KeyOrder) ([]Record, error) {
	var out []Record
	for n, line := range bytes.Split(raw, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		r, err := ParseObject(line, order)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Lookup walks a dot path ("data.items") through nested JSON objects and
// returns the raw value there; ok is false when a step is missing. An
// empty path returns raw itself.
func Lookup(raw []byte, path string) (json.RawMessage, bool, error) {
	cur := json.RawMessage(raw)
	if path == "" {
		return cur, true, nil
	}
	for _, step := range strings.Split(path, ".") {
		t := bytes.TrimSpace(cur)
		if len(t) == 0 || t[0] != '{' {
			if bytes.Equal(t, []byte("null")) {
				return nil, false, nil
			}
			return nil, false, fmt.Errorf("path %q: %q is not inside an object", path, step)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(t, &m); err != nil {
			return nil, false, fmt.Errorf("invalid JSON: %w", err)
		}
		v, ok := m[step]
		if !ok {
			return nil, false, nil
		}
		cur = v
	}
	return cur, true, nil
}

// kind of a sampled value, from narrow to wide.
type kind int

const (
	kNull kind = iota
	kBool
	kInt
	kFloat
	kTime
	kDate
	kString
)

func kindOf(v any) kind {
	switch t := v.(type) {
	case nil:
		return kNull
	case bool:
		return kBool
	case json.Number:
		if _, err := strconv.ParseInt(string(t), 10, 64); err == nil {
			return kInt
		}
		if _, err := strconv.ParseFloat(string(t), 64); err == nil {
			return kFloat
		}
		return kString // out of float64's range: kept as its text
	case string:
		if _, err := time.Parse(time.RFC3339Nano, t); err == nil {
			return kTime
		}
		if _, err := time.Parse(time.DateOnly, t); err == nil {
			return kDate
		}
		return kString
	}
	return kString
}

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

// Infer returns the schema of a sample of records: columns in the order
// their keys were first seen, types by the package's rules.
func Infer(sample []Record, order []string) *arrow.Schema {
	kinds := make(map[string]kind, len(order))
	for _, r := range sample {
		for k, v := range r {
			kinds[k] = merge(kinds[k], kindOf(v))
		}
	}
	fields := make([]arrow.Field, 0, len(order))
	for _, k := range order {
		var dt arrow.DataType
		switch kinds[k] {
		case kBool:
			dt = arrow.FixedWidthTypes.Boolean
		case kInt:
			dt = arrow.PrimitiveTypes.Int64
		case kFloat:
			dt = arrow.PrimitiveTypes.Float64
		case kTime:
			dt = timestampType
		case kDate:
			dt = arrow.FixedWidthTypes.Date32
		default:
			dt = arrow.BinaryTypes.String
		}
		fields = append(fields, arrow.Field{Name: k, Type: dt, Nullable: true})
	}
	return arrow.NewSchema(fields, nil)
}

// Build converts records to a batch of the given schema (types from
// DataType or Infer). Keys that are not columns are ignored; missing keys
// are nulls. A value that does not fit its column's type is an error
// naming the record (offset by first, for messages) and the column.
func Build(mem memory.Allocator, schema *arrow.Schema, recs []Record, first int) (arrow.RecordBatch, error) {
	b := NewBuilder(mem, schema, len(recs))
	defer b.Release()
	for ri, r := range recs {
		if err := b.Append(r); err != nil {
			return nil, fmt.Errorf("record %d, %w", first+ri, err)
		}
	}
	return b.NewBatch(), nil
}

// Builder builds a batch of a fixed schema a record at a time. A record
// with a value that does not fit its column is refused whole: nothing of
// it is appended, so the caller can set it aside and go on.
type Builder struct {
	schema *arrow.Schema
	b      *array.RecordBuilder
	kinds  []colKind
	cells  []cell // converted values of the records being appended
}

// NewBuilder returns a Builder of schema with room for capacity records
// (mem nil: the default allocator). Release it when done.
func NewBuilder(mem memory.Allocator, schema *arrow.Schema, capacity int) *Builder {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	b := &Builder{schema: schema, b: array.NewRecordBuilder(mem, schema)}
	for i, f := range schema.Fields() {
		b.b.Field(i).Reserve(capacity)
		b.kinds = append(b.kinds, kindOfType(f.Type))
	}
	return b
}

// Append appends rec, or nothing and an error naming the column whose
// value does not fit.
func (b *Builder) Append(rec Record) error {
	return b.AppendAll([]Record{rec})
}

// AppendAll appends every record of recs, or none of them and an error
// naming the record (its index in recs, when there are several) and the
// column that does not fit.
func (b *Builder) AppendAll(recs []Record) error {
	fields := b.schema.Fields()
	b.cells = b.cells[:0]
	for ri, r := range recs {
		for ci, f := range fields {
			c, err := convert(b.kinds[ci], r[f.Name])
			if err != nil {
				if len(recs) > 1 {
					return fmt.Errorf("record %d, column %q: %w", ri, f.Name, err)
				}
				return fmt.Errorf("column %q: %w", f.Name, err)
			}
			b.cells = append(b.cells, c)
		}
	}
	for i, c := range b.cells {
		appendCell(b.b.Field(i%len(fields)), b.kinds[i%len(fields)], c)
	}
	return nil
}

// NewBatch returns what was appended as a batch and starts a new one.
func (b *Builder) NewBatch() arrow.RecordBatch { return b.b.NewRecordBatch() }

// Release frees the builder's buffers.
func (b *Builder) Release() { b.b.Release() }

// colKind is how a column takes values.
type colKind int

const (
	colInt colKind = iota
	colFloat
	colBool
	colTimestamp
	colDate
	colString
	colOther
)

func kindOfType(dt arrow.DataType) colKind {
	switch dt.ID() {
	case arrow.INT64:
		return colInt
	case arrow.FLOAT64:
		return colFloat
	case arrow.BOOL:
		return colBool
	case arrow.TIMESTAMP:
		return colTimestamp
	case arrow.DATE32:
		return colDate
	case arrow.STRING:
		return colString
	}
	return colOther
}

// cell is one converted value: i holds ints, timestamps (µs), dates
// (days) and booleans (0/1).
type cell struct {
	null bool
	i    int64
	f    float64
	s    string
}

// convert checks that v fits a column of kind k and converts it.
func convert(k colKind, v any) (cell, error) {
	if v == nil {
		return cell{null: true}, nil
	}
	switch k {
	case colInt:
		n, ok := v.(json.Number)
		if !ok {
			return cell{}, fmt.Errorf("%s is not an integer", show(v))
		}
		x, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			f, ferr := strconv.ParseFloat(string(n), 64)
			if ferr != nil || f != float64(int64(f)) {
				return cell{}, fmt.Errorf("%s is not an integer", n)
			}
			x = int64(f)
		}
		return cell{i: x}, nil
	case colFloat:
		n, ok := v.(json.Number)
		if !ok {
			return cell{}, fmt.Errorf("%s is not a number", show(v))
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil {
			return cell{}, fmt.Errorf("%s is not a number", n)
		}
		return cell{f: f}, nil
	case colBool:
		x, ok := v.(bool)
		if !ok {
			return cell{}, fmt.Errorf("%s is not a boolean", show(v))
		}
		if x {
			return cell{i: 1}, nil
		}
		return cell{}, nil
	case colTimestamp:
		s, ok := v.(string)
		if !ok {
			return cell{}, fmt.Errorf("%s is not an RFC 3339 timestamp", show(v))
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return cell{}, fmt.Errorf("%q is not an RFC 3339 timestamp", s)
		}
		return cell{i: t.UnixMicro()}, nil
	case colDate:
		s, ok := v.(string)
		if !ok {
			return cell{}, fmt.Errorf("%s is not a YYYY-MM-DD date", show(v))
		}
		t, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return cell{}, fmt.Errorf("%q is not a YYYY-MM-DD date", s)
		}
		return cell{i: int64(arrow.Date32FromTime(t))}, nil
	case colString:
		switch t := v.(type) {
		case string:
			return cell{s: t}, nil
		case json.Number:
			return cell{s: string(t)}, nil
		case json.RawMessage:
			return cell{s: string(t)}, nil
		case bool:
			return cell{s: strconv.FormatBool(t)}, nil
		}
		return cell{}, fmt.Errorf("unsupported value %v", v)
	}
	return cell{}, errors.New("unsupported column type")
}

// appendCell appends a converted value to a column of kind k.
func appendCell(fb array.Builder, k colKind, c cell) {
	if c.null {
		fb.AppendNull()
		return
	}
	switch k {
	case colInt:
		fb.(*array.Int64Builder).Append(c.i)
	case colFloat:
		fb.(*array.Float64Builder).Append(c.f)
	case colBool:
		fb.(*array.BooleanBuilder).Append(c.i != 0)
	case colTimestamp:
		fb.(*array.TimestampBuilder).Append(arrow.Timestamp(c.i))
	case colDate:
		fb.(*array.Date32Builder).Append(arrow.Date32(c.i))
	case colString:
		fb.(*array.StringBuilder).Append(c.s)
	}
}

func show(v any) string {
	switch t := v.(type) {
	case string:
		return strconv.Quote(t)
	case json.RawMessage:
		if len(t) > 0 && t[0] == '[' {
			return "an array"
		}
		return "an object"
	}
	return fmt.Sprint(v)
}
