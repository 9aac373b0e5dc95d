package file

import (
	"bytes"
	"errors"
	"fmt"
)

// dialect is a CSV dialect, decoded from CSVOptions.
type dialect struct {
	delim   byte
	comment byte // 0: none
	nulls   [][]byte
	header  bool
}

func newDialect(o CSVOptions) dialect {
	d := dialect{delim: o.Delimiter[0], header: o.Header}
	if o.Comment != "" {
		d.comment = o.Comment[0]
	}
	for _, n := range o.NullValues {
		d.nulls = append(d.nulls, []byte(n))
	}
	return d
}

// isNull reports whether an unquoted field is one of the null texts.
func (d *dialect) isNull(f []byte) bool {
	for _, n := range d.nulls {
		if len(n) == len(f) && bytes.Equal(n, f) {
			return true
		}
	}
	return false
}

var errUnterminatedQuote = errors.New("a quoted field is not terminated")

// field is one parsed CSV field.
type field struct {
	b      []byte
	quoted bool
}

// nextRecord parses the record starting at data[pos:] into fields (reused)
// and returns the position after it. Blank lines and comment lines are
// skipped (reported as a nil fields slice with the position after them).
// Unescaped quoted fields may live in scratch, which is returned grown.
// eof says data ends the input (a final record needs no line break).
func (d *dialect) nextRecord(data []byte, pos int, fields []field, scratch []byte) (int, []field, []byte, error) {
	fields = fields[:0]
	n := len(data)
	if pos < n {
		c := data[pos]
		if c == '\n' {
			return pos + 1, nil, scratch, nil
		}
		if c == '\r' && pos+1 < n && data[pos+1] == '\n' {
			return pos + 2, nil, scratch, nil
		}
		if d.comment != 0 && c == d.comment {
			if i := bytes.IndexByte(data[pos:], '\n'); i >= 0 {
				return pos + i + 1, nil, scratch, nil
			}
			return n, nil, scratch, nil
		}
	}
	delim := d.delim
	for {
		if pos < n && data[pos] == '"' {
			// Quoted field: up to the closing quote; "" is an escaped quote.
			start := pos + 1
			i := start
			escaped := false
			for {
				j := bytes.IndexByte(data[i:], '"')
				if j < 0 {
					return pos, fields, scratch, errUnterminatedQuote
				}
				i += j
				if i+1 < n && data[i+1] == '"' {
					escaped = true
					i += 2
					continue
				}
				break
			}
			f := data[start:i]
			if escaped {
				off := len(scratch)
				for k := 0; k < len(f); k++ {
					scratch = append(scratch, f[k])
					if f[k] == '"' {
						k++ // skip the second quote of the pair
					}
				}
				f = scratch[off:len(scratch):len(scratch)]
			}
			fields = append(fields, field{b: f, quoted: true})
			pos = i + 1
			switch {
			case pos >= n:
				return pos, fields, scratch, nil
			case data[pos] == delim:
				pos++
				continue
			case data[pos] == '\n':
				return pos + 1, fields, scratch, nil
			case data[pos] == '\r' && pos+1 < n && data[pos+1] == '\n':
				return pos + 2, fields, scratch, nil
			case data[pos] == '\r' && pos+1 == n:
				return n, fields, scratch, nil
			}
			return pos, fields, scratch, fmt.Errorf("unexpected %q after a closing quote", data[pos])
		}
		// Unquoted field: up to the delimiter or the end of the line.
		i := pos
		for i < n {
			c := data[i]
			if c == delim || c == '\n' {
				break
			}
			i++
		}
		f := data[pos:i]
		if i >= n || data[i] == '\n' {
			if len(f) > 0 && f[len(f)-1] == '\r' {
				f = f[:len(f)-1]
			}
			fields = append(fields, field{b: f})
			if i >= n {
				return n, fields, scratch, nil
			}
			return i + 1, fields, scratch, nil
		}
		fields = append(fields, field{b: f})
		pos = i + 1
		if pos >= n {
			// A trailing delimiter ends with an empty last field.
			fields = append(fields, field{})
			return pos, fields, scratch, nil
		}
	}
}

// lastRecordEnd returns the length of the longest prefix of b that holds
// only whole records (it ends just after a line break outside quotes), or 0
// when b holds no line break outside quotes. Quote state toggles at every
// quote, which also handles doubled ("") quotes inside quoted fields.
func lastRecordEnd(b []byte) int {
	last := 0
	i := 0
	for {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			if nl := bytes.LastIndexByte(b[i:], '\n'); nl >= 0 {
				return i + nl + 1
			}
			return last
		}
		if nl := bytes.LastIndexByte(b[i:i+q], '\n'); nl >= 0 {
			last = i + nl + 1
		}
		i += q + 1
		e := bytes.IndexByte(b[i:], '"')
		if e < 0 {
			return last
		}
		i += e + 1
	}
}
