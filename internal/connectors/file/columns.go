package file

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// column accumulates the values of one output column straight into Arrow
// buffers: numbers are parsed from the byte slice, never via a string.
type column interface {
	// appendText parses one CSV field (not null).
	appendText(b []byte) error
	// appendJSON appends one decoded JSON value (not nil).
	appendJSON(v any) error
	appendNull()
	// finish returns the array of everything appended and resets.
	finish() arrow.Array
	len() int
	// truncate drops the values after the first n (what a record that
	// was refused halfway appended to the columns before the failing one).
	truncate(n int)
}

// newColumn returns the column builder of a schema field.
func newColumn(f Field, capacity int) (column, error) {
	switch f.Type {
	case typeInt64:
		return &fixedCol[int64]{dt: arrow.PrimitiveTypes.Int64, parse: parseIntText, conv: jsonInt, vals: make([]int64, 0, capacity)}, nil
	case typeFloat64:
		return &fixedCol[float64]{dt: arrow.PrimitiveTypes.Float64, parse: parseFloatText, conv: jsonFloat, vals: make([]float64, 0, capacity)}, nil
	case typeTimestamp:
		layout := timestampLayout(f)
		p := func(b []byte) (int64, error) { return parseTime(layout, b) }
		return &fixedCol[int64]{dt: timestampType, parse: p, conv: jsonText(p), vals: make([]int64, 0, capacity)}, nil
	case typeDate:
		layout := f.Layout
		if layout == "" {
			layout = layoutDate
		}
		p := func(b []byte) (int32, error) { return parseDate(layout, b) }
		return &fixedCol[int32]{dt: arrow.FixedWidthTypes.Date32, parse: p, conv: jsonText(p), vals: make([]int32, 0, capacity)}, nil
	case typeBool:
		return &boolCol{}, nil
	case typeString:
		return &stringCol{offsets: append(make([]int32, 0, capacity+1), 0)}, nil
	}
	return nil, fmt.Errorf("type %q: want int64, float64, string, bool, timestamp or date", f.Type)
}

// validity is a growing validity bitmap, materialised only once a null
// arrives (most columns have none, and then Arrow needs no bitmap).
type validity struct {
	bits  []byte
	n     int
	nulls int
}

func (v *validity) add(ok bool) {
	if ok && v.nulls == 0 {
		v.n++
		return
	}
	if v.nulls == 0 {
		// The first null: every earlier value was valid.
		v.bits = make([]byte, v.n/8+1, max(64, v.n/4+1))
		for i := range v.n / 8 {
			v.bits[i] = 0xff
		}
		for i := v.n &^ 7; i < v.n; i++ {
			v.bits[i>>3] |= 1 << (i & 7)
		}
	} else if v.n&7 == 0 {
		v.bits = append(v.bits, 0)
	}
	if ok {
		v.bits[v.n>>3] |= 1 << (v.n & 7)
	} else {
		v.nulls++
	}
	v.n++
}

// truncate keeps the first n entries.
func (v *validity) truncate(n int) {
	if n >= v.n {
		return
	}
	if v.nulls > 0 {
		for i := n; i < v.n; i++ {
			if v.bits[i>>3]&(1<<(i&7)) == 0 {
				v.nulls--
			}
		}
		v.bits = truncateBits(v.bits, n)
	}
	v.n = n
}

// truncateBits keeps the first n bits of bits (and clears the rest of the
// last byte, which later appends OR into).
func truncateBits(bits []byte, n int) []byte {
	bits = bits[:(n+7)/8]
	if n&7 != 0 {
		bits[n>>3] &= 1<<(n&7) - 1
	}
	return bits
}

// buffer returns the bitmap (nil without nulls) and resets.
func (v *validity) buffer() (*memory.Buffer, int) {
	nulls := v.nulls
	var b *memory.Buffer
	if nulls > 0 {
		b = memory.NewBufferBytes(v.bits)
	}
	*v = validity{}
	return b, nulls
}

// bitmap is a growing bitmap of values (for booleans).
type bitmap struct {
	bits []byte
	n    int
}

func (m *bitmap) add(on bool) {
	if m.n&7 == 0 {
		m.bits = append(m.bits, 0)
	}
	if on {
		m.bits[m.n>>3] |= 1 << (m.n & 7)
	}
	m.n++
}

// truncate keeps the first n bits.
func (m *bitmap) truncate(n int) {
	if n < m.n {
		m.bits = truncateBits(m.bits, n)
		m.n = n
	}
}

type fixedCol[T int64 | float64 | int32] struct {
	dt    arrow.DataType
	parse func([]byte) (T, error)
	conv  func(any) (T, error)
	vals  []T
	valid validity
}

func (c *fixedCol[T]) appendText(b []byte) error {
	v, err := c.parse(b)
	if err != nil {
		return err
	}
	c.vals = append(c.vals, v)
	c.valid.add(true)
	return nil
}

// appendValue appends a parsed value.
func (c *fixedCol[T]) appendValue(v T) {
	c.vals = append(c.vals, v)
	c.valid.add(true)
}

func (c *fixedCol[T]) appendJSON(x any) error {
	v, err := c.conv(x)
	if err != nil {
		return err
	}
	c.vals = append(c.vals, v)
	c.valid.add(true)
	return nil
}

func (c *fixedCol[T]) appendNull() {
	var zero T
	c.vals = append(c.vals, zero)
	c.valid.add(false)
}

func (c *fixedCol[T]) len() int { return len(c.vals) }

func (c *fixedCol[T]) truncate(n int) {
	if n < len(c.vals) {
		c.vals = c.vals[:n]
		c.valid.truncate(n)
	}
}

func (c *fixedCol[T]) finish() arrow.Array {
	n := len(c.vals)
	var data []byte
	if n > 0 {
		data = unsafe.Slice((*byte)(unsafe.Pointer(&c.vals[0])), n*int(unsafe.Sizeof(c.vals[0])))
	}
	bm, nulls := c.valid.buffer()
	d := array.NewData(c.dt, n, []*memory.Buffer{bm, memory.NewBufferBytes(data)}, nil, nulls, 0)
	defer d.Release()
	c.vals = make([]T, 0, cap(c.vals))
	return array.MakeFromData(d)
}

type boolCol struct {
	vals  bitmap
	valid validity
}

func (c *boolCol) add(v bool) {
	c.vals.add(v)
	c.valid.add(true)
}

func (c *boolCol) appendText(b []byte) error {
	v, ok := parseBool(b)
	if !ok {
		return fmt.Errorf("%q is not a bool", b)
	}
	c.add(v)
	return nil
}

func (c *boolCol) appendJSON(x any) error {
	switch v := x.(type) {
	case bool:
		c.add(v)
		return nil
	case string:
		return c.appendText([]byte(v))
	}
	return fmt.Errorf("%s is not a bool", showJSON(x))
}

func (c *boolCol) appendNull() {
	c.vals.add(false)
	c.valid.add(false)
}

func (c *boolCol) len() int { return c.valid.n }

func (c *boolCol) truncate(n int) {
	c.vals.truncate(n)
	c.valid.truncate(n)
}

func (c *boolCol) finish() arrow.Array {
	n := c.valid.n
	bits := c.vals.bits
	c.vals = bitmap{}
	bm, nulls := c.valid.buffer()
	d := array.NewData(arrow.FixedWidthTypes.Boolean, n, []*memory.Buffer{bm, memory.NewBufferBytes(bits)}, nil, nulls, 0)
	defer d.Release()
	return array.MakeFromData(d)
}

type stringCol struct {
	offsets []int32
	data    []byte
	valid   validity
}

func (c *stringCol) appendText(b []byte) error {
	if len(c.data)+len(b) > math.MaxInt32 {
		return fmt.Errorf("string column over 2 GiB in one batch")
	}
	c.data = append(c.data, b...)
	c.offsets = append(c.offsets, int32(len(c.data)))
	c.valid.add(true)
	return nil
}

func (c *stringCol) appendJSON(x any) error {
	switch v := x.(type) {
	case string:
		return c.appendText([]byte(v))
	case json.Number:
		return c.appendText([]byte(v))
	case bool:
		return c.appendText(strconv.AppendBool(nil, v))
	}
	b, err := json.Marshal(x)
	if err != nil {
		return err
	}
	return c.appendText(b)
}

func (c *stringCol) appendNull() {
	c.offsets = append(c.offsets, int32(len(c.data)))
	c.valid.add(false)
}

func (c *stringCol) len() int { return len(c.offsets) - 1 }

func (c *stringCol) truncate(n int) {
	if n < c.len() {
		c.offsets = c.offsets[:n+1]
		c.data = c.data[:c.offsets[n]]
		c.valid.truncate(n)
	}
}

func (c *stringCol) finish() arrow.Array {
	n := len(c.offsets) - 1
	offs := unsafe.Slice((*byte)(unsafe.Pointer(&c.offsets[0])), len(c.offsets)*4)
	bm, nulls := c.valid.buffer()
	d := array.NewData(arrow.BinaryTypes.String, n, []*memory.Buffer{bm, memory.NewBufferBytes(offs), memory.NewBufferBytes(c.data)}, nil, nulls, 0)
	defer d.Release()
	c.offsets = append(make([]int32, 0, cap(c.offsets)), 0)
	c.data = make([]byte, 0, cap(c.data))
	return array.MakeFromData(d)
}

func parseIntText(b []byte) (int64, error) {
	v, ok := parseInt(b)
	if !ok {
		return 0, fmt.Errorf("%q is not an int64", b)
	}
	return v, nil
}

var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseSimpleFloat parses [-+]digits[.digits] with at most 15 digits:
// the mantissa and the power of ten are exact float64 values, so one
// division rounds correctly (the fast path strconv also takes).
func parseSimpleFloat(b []byte) (float64, bool) {
	i, neg := 0, false
	if b[0] == '-' || b[0] == '+' {
		neg = b[0] == '-'
		i = 1
	}
	var mant uint64
	start := i
	for i < len(b) && b[i]-'0' < 10 {
		mant = mant*10 + uint64(b[i]-'0')
		i++
	}
	digits, frac := i-start, 0
	if i < len(b) && b[i] == '.' {
		i++
		fs := i
		for i < len(b) && b[i]-'0' < 10 {
			mant = mant*10 + uint64(b[i]-'0')
			i++
		}
		frac = i - fs
		digits += frac
	}
	if i != len(b) || digits == 0 || digits > 15 {
		return 0, false
	}
	f := float64(mant)
	if frac > 0 {
		f /= pow10[frac]
	}
	if neg {
		f = -f
	}
	return f, true
}

// parseFloat parses a float64 from bytes without copying them.
func parseFloat(b []byte) (float64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	if f, ok := parseSimpleFloat(b); ok {
		return f, true
	}
	v, err := strconv.ParseFloat(unsafe.String(&b[0], len(b)), 64)
	if err != nil {
		// Out of range values come back as ±Inf with ErrRange: keep them.
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return v, true
		}
		return 0, false
	}
	return v, true
}

func parseFloatText(b []byte) (float64, error) {
	v, ok := parseFloat(b)
	if !ok {
		return 0, fmt.Errorf("%q is not a float64", b)
	}
	return v, nil
}

// timestampLayout is the layout of a timestamp field (RFC 3339 by default).
func timestampLayout(f Field) string {
	if f.Layout == "" {
		return time.RFC3339Nano
	}
	return f.Layout
}

// timeLayout is a layout fastTime parses: date, a 'T' or ' ', the time of
// day, an optional fraction, and a 'Z' where the layout has a zone.
type timeLayout struct {
	sep  byte
	zone bool
}

// fastLayouts are the layouts fastTime parses.
var fastLayouts = map[string]timeLayout{
	time.RFC3339:          {'T', true},
	time.RFC3339Nano:      {'T', true},
	"2006-01-02T15:04:05": {'T', false},
	"2006-01-02 15:04:05": {' ', false},
	layoutT:               {'T', false},
	layoutSpace:           {' ', false},
}

// fastTime parses YYYY-MM-DD?HH:MM:SS[.fraction][Z] into Unix microseconds
// without time.Parse (the common machine-written timestamp); ok is false
// for anything else, which then goes through time.Parse.
func fastTime(layout string, b []byte) (int64, bool) {
	f, known := fastLayouts[layout]
	if !known {
		return 0, false
	}
	return f.parse(b)
}

// parse is fastTime for this layout.
func (f timeLayout) parse(b []byte) (int64, bool) { return f.parseCached(b, nil) }

// dateCache remembers the last date a column parsed: consecutive
// timestamps mostly share their day.
type dateCache struct {
	text [10]byte
	days int32
	ok   bool
}

// parseCached is parse, looking the date up in c (when not nil) first.
func (f timeLayout) parseCached(b []byte, c *dateCache) (int64, bool) {
	if len(b) < 19 || b[10] != f.sep || b[13] != ':' || b[16] != ':' {
		return 0, false
	}
	if f.zone {
		if b[len(b)-1] != 'Z' {
			return 0, false
		}
		b = b[:len(b)-1]
	}
	var days int32
	if c != nil && c.ok && string(b[:10]) == string(c.text[:]) {
		days = c.days
	} else {
		d, ok := fastDate(b[:10])
		if !ok {
			return 0, false
		}
		days = d
		if c != nil {
			copy(c.text[:], b[:10])
			c.days, c.ok = d, true
		}
	}
	h, ok1 := twoDigits(b[11:13])
	m, ok2 := twoDigits(b[14:16])
	sec, ok3 := twoDigits(b[17:19])
	if !ok1 || !ok2 || !ok3 || h > 23 || m > 59 || sec > 59 {
		return 0, false
	}
	var micros int64
	if rest := b[19:]; len(rest) > 0 {
		if rest[0] != '.' || len(rest) < 2 || len(rest) > 10 {
			return 0, false
		}
		scale := int64(100000)
		for _, c := range rest[1:] {
			if c < '0' || c > '9' {
				return 0, false
			}
			micros += int64(c-'0') * scale
			scale /= 10
		}
	}
	return ((int64(days)*24+h)*60+m)*60*1_000_000 + sec*1_000_000 + micros, true
}

// twoDigits parses two decimal digits.
func twoDigits(s []byte) (int64, bool) {
	if s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9' {
		return 0, false
	}
	return int64(s[0]-'0')*10 + int64(s[1]-'0'), true
}

func parseTime(layout string, b []byte) (int64, error) {
	if us, ok := fastTime(layout, b); ok {
		return us, nil
	}
	t, err := time.Parse(layout, string(b))
	if err != nil {
		return 0, fmt.Errorf("%q is not a timestamp in layout %q", b, layout)
	}
	return t.UnixMicro(), nil
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic
// Gregorian date (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int) int {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// fastDate parses YYYY-MM-DD without time.Parse.
func fastDate(b []byte) (int32, bool) {
	if len(b) != 10 || b[4] != '-' || b[7] != '-' {
		return 0, false
	}
	num := func(s []byte) (int, bool) {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	y, ok1 := num(b[:4])
	m, ok2 := num(b[5:7])
	d, ok3 := num(b[8:])
	if !ok1 || !ok2 || !ok3 || m < 1 || m > 12 || d < 1 || d > daysIn(m, y) {
		return 0, false
	}
	return int32(daysFromCivil(y, m, d)), true
}

func daysIn(m, y int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

func parseDate(layout string, b []byte) (int32, error) {
	if layout == layoutDate {
		if d, ok := fastDate(b); ok {
			return d, nil
		}
	}
	t, err := time.Parse(layout, string(b))
	if err != nil {
		return 0, fmt.Errorf("%q is not a date in layout %q", b, layout)
	}
	sec := t.Unix()
	days := sec / 86400
	if sec%86400 < 0 {
		days-- // floor for dates before 1970
	}
	return int32(days), nil
}

func jsonInt(x any) (int64, error) {
	switch v := x.(type) {
	case json.Number:
		if n, ok := parseInt([]byte(v)); ok {
			return n, nil
		}
		if f, err := v.Float64(); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<63 {
			return int64(f), nil
		}
	case string:
		return parseIntText([]byte(v))
	}
	return 0, fmt.Errorf("%s is not an int64", showJSON(x))
}

func jsonFloat(x any) (float64, error) {
	switch v := x.(type) {
	case json.Number:
		return parseFloatText([]byte(v))
	case string:
		return parseFloatText([]byte(v))
	}
	return 0, fmt.Errorf("%s is not a float64", showJSON(x))
}

func jsonText[T any](p func([]byte) (T, error)) func(any) (T, error) {
	return func(x any) (T, error) {
		if s, ok := x.(string); ok {
			return p([]byte(s))
		}
		var zero T
		return zero, fmt.Errorf("%s is not a string", showJSON(x))
	}
}

func showJSON(x any) string {
	b, err := json.Marshal(x)
	if err != nil || len(b) > 64 {
		return fmt.Sprintf("%T value", x)
	}
	return string(b)
}
