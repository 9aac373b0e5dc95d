package httpapi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/kilnai/kiln/internal/tensor"
)

// This file holds the JSON scanner behind DecodeInferRequest: a single
// pass over the request text that builds no tree. Values the request
// schema does not use are skipped with full validation; tensor "data" is
// decoded straight into the tensor's little-endian storage.
//
// Acceptance is RFC 8259 JSON, with one deliberate leniency kept from the
// fastjson-based decoder this replaces: where the codec consumes a number
// (parameters, shapes, tensor elements), a token fastjson would have read
// as a number (NaN, Inf, 1-2, 01, ...) is read as one and then rejected
// with a message naming it, rather than as malformed JSON. Strings may
// hold any bytes but control characters (invalid UTF-8 included, as
// before; BYTES elements must be valid UTF-8). Lone UTF-16 surrogates in
// \u escapes decode to U+FFFD, as encoding/json does.

// maxDepth bounds the nesting of the JSON text. Skipping is iterative and
// only tensor data (at most maxRank levels) is walked recursively, so the
// bound is about sanity, not stack space; it leaves room for nested data
// of rank maxRank inside the request's own three levels.
const maxDepth = 128

// kind is the JSON kind of a value, judged from its first byte.
type kind uint8

const (
	kindNone kind = iota // end of input
	kindObject
	kindArray
	kindString
	kindNumber // numbers and what fastjson reads as one (NaN, Inf, ...)
	kindBool
	kindNull
)

// String returns the kind with its article, as error messages use it.
func (k kind) String() string {
	switch k {
	case kindObject:
		return "an object"
	case kindArray:
		return "an array"
	case kindString:
		return "a string"
	case kindNumber:
		return "a number"
	case kindBool:
		return "a boolean"
	case kindNull:
		return "a null"
	}
	return "nothing"
}

// scanner reads one JSON text. Its methods expect s.pos at the start of
// a value (whitespace skipped) unless they say otherwise.
type scanner struct {
	js  []byte
	pos int
	// values counts values as countValues does, 1 plus every '[', '{' and
	// ',' consumed; past maxValues scanning stops.
	values    int
	maxValues int
	depth     int
	tmp       []byte // unescaped string scratch, valid until the next str
}

// mark is a scanner position to come back to.
type mark struct{ pos, values, maxValues, depth int }

// mark returns the current position.
func (s *scanner) mark() mark { return mark{s.pos, s.values, s.maxValues, s.depth} }

// seek moves to start, which was scanned (and counted) before, to read it
// again without counting it twice. restore(m) returns.
func (s *scanner) seek(start int) mark {
	m := s.mark()
	s.pos = start
	s.maxValues = math.MaxInt
	return m
}

// restore returns to m.
func (s *scanner) restore(m mark) {
	s.pos, s.values, s.maxValues, s.depth = m.pos, m.values, m.maxValues, m.depth
}

// syntaxErr reports malformed JSON at offset off.
func (s *scanner) syntaxErr(off int, what string) error {
	return badf("malformed JSON: %s at offset %d", what, off)
}

// eof reports the end of the input where more was expected.
func (s *scanner) eof() error {
	return badf("malformed JSON: unexpected end of input at offset %d", len(s.js))
}

// unexpected reports the byte at s.pos (or the end of input).
func (s *scanner) unexpected(want string) error {
	if s.pos >= len(s.js) {
		return s.eof()
	}
	return badf("malformed JSON: expected %s, found %q at offset %d", want, s.js[s.pos], s.pos)
}

// count adds one value to the count.
func (s *scanner) count() error {
	s.values++
	if s.values > s.maxValues {
		return fmt.Errorf("%w: %w: the JSON request has about %d values, the limit is %d (send large tensors as binary data)", ErrBadRequest, tensor.ErrTooLarge, countValues(s.js), s.maxValues)
	}
	return nil
}

// ws skips whitespace.
func (s *scanner) ws() {
	for s.pos < len(s.js) {
		switch s.js[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// kind returns the kind of the value at s.pos.
func (s *scanner) kind() kind {
	if s.pos >= len(s.js) {
		return kindNone
	}
	switch s.js[s.pos] {
	case '{':
		return kindObject
	case '[':
		return kindArray
	case '"':
		return kindString
	case 't', 'f':
		return kindBool
	case 'n':
		if s.hasPrefix("null") {
			return kindNull
		}
	}
	return kindNumber
}

// wrongKind validates and skips the value at s.pos, of a kind the caller
// did not expect, and returns its kind: malformed JSON is reported as
// such, not as a value of the wrong kind.
func (s *scanner) wrongKind() (kind, error) {
	k := s.kind()
	if err := s.skip(true); err != nil {
		return 0, err
	}
	return k, nil
}

// open consumes the '[' or '{' at s.pos.
func (s *scanner) open() error {
	s.pos++
	s.depth++
	if s.depth > maxDepth {
		return badf("the JSON request nests deeper than %d levels", maxDepth)
	}
	return s.count()
}

// next is called after an array element or object member, or with first
// set right after the opening bracket: it consumes the ',' before another
// item (true) or the closing bracket (false).
func (s *scanner) next(closing byte, first bool) (bool, error) {
	s.ws()
	if s.pos >= len(s.js) {
		return false, s.eof()
	}
	switch c := s.js[s.pos]; {
	case c == closing:
		s.pos++
		s.depth--
		return false, nil
	case first:
		return true, nil
	case c == ',':
		s.pos++
		s.ws()
		if s.pos >= len(s.js) {
			return false, s.eof()
		}
		return true, s.count()
	}
	return false, s.unexpected("',' or '" + string(closing) + "'")
}

// key reads an object member's key and the ':' after it, and skips to the
// value. The key is valid until the next str.
func (s *scanner) key() ([]byte, error) {
	if s.pos >= len(s.js) || s.js[s.pos] != '"' {
		return nil, s.unexpected("a string key")
	}
	k, err := s.str()
	if err != nil {
		return nil, err
	}
	s.ws()
	if s.pos >= len(s.js) || s.js[s.pos] != ':' {
		return nil, s.unexpected("':'")
	}
	s.pos++
	s.ws()
	return k, nil
}

// hasPrefix reports whether the text at s.pos starts with word.
func (s *scanner) hasPrefix(word string) bool {
	return len(s.js)-s.pos >= len(word) && string(s.js[s.pos:s.pos+len(word)]) == word
}

// literal consumes the word (true, false or null) at s.pos.
func (s *scanner) literal(word string) error {
	if !s.hasPrefix(word) {
		return s.unexpected(word)
	}
	s.pos += len(word)
	return nil
}

// boolean consumes true or false.
func (s *scanner) boolean() (bool, error) {
	if s.js[s.pos] == 't' {
		return true, s.literal("true")
	}
	return false, s.literal("false")
}

// isNumberByte holds the bytes fastjson lets a number token run over.
var isNumberByte = [256]bool{'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true, '7': true, '8': true, '9': true,
	'.': true, '-': true, '+': true, 'e': true, 'E': true}

// number consumes a number token as fastjson delimits one: a run of
// digits, signs, dots and exponent letters, or an optional sign followed
// by inf or nan in any case. Callers check the token with
// tensor.ScanJSONNumber (or tensor.ParseJSONInt): a token that is not an
// RFC 8259 number is an error where it appears.
func (s *scanner) number() ([]byte, error) {
	js, p := s.js, s.pos
	i := p
	for i < len(js) && isNumberByte[js[i]] {
		i++
	}
	if i < len(js) && (i == p || i == p+1 && (js[p] == '-' || js[p] == '+')) {
		if len(js)-i < 3 {
			return nil, s.unexpected("a value")
		}
		w := unsafe.String(&js[i], 3)
		if !strings.EqualFold(w, "inf") && !strings.EqualFold(w, "nan") {
			return nil, s.unexpected("a value")
		}
		i += 3
	}
	s.pos = i
	return js[p:i], nil
}

// decNumber is an RFC 8259 number split into sign, decimal mantissa and
// power of ten, as parseNumber reads it. It has at most four fields, so
// the compiler keeps it in registers.
type decNumber struct {
	end   int    // offset after the number
	mant  uint64 // the first 19 significant digits
	exp   int    // power of ten to scale mant by
	flags uint8
}

// decNumber flags.
const (
	numNeg     = 1 << iota
	numInteger // no fraction or exponent
	numInexact // nonzero digits beyond the 19th were dropped
)

// neg, integer and inexact report the flags.
func (n decNumber) neg() bool     { return n.flags&numNeg != 0 }
func (n decNumber) integer() bool { return n.flags&numInteger != 0 }
func (n decNumber) inexact() bool { return n.flags&numInexact != 0 }

// parseNumber reads the RFC 8259 number at js[p:] in one pass. It fails
// when there is none, or when a byte fastjson would have taken into the
// token follows it ("1-2", "01"): the slow path reports those.
func parseNumber(js []byte, p int) (decNumber, bool) {
	// Locals rather than the result's fields keep the loops in registers.
	var (
		mant          uint64
		exp, digits   int // digits: significant digits in mant
		neg, inexact  bool
		integer, fail bool
	)
	i := p
	if i < len(js) && js[i] == '-' {
		neg = true
		i++
	}
	switch {
	case i < len(js) && js[i] == '0':
		i++
	case i < len(js) && js[i] >= '1' && js[i] <= '9':
		for ; i < len(js) && js[i] >= '0' && js[i] <= '9'; i++ {
			if digits < 19 {
				mant = mant*10 + uint64(js[i]-'0')
				digits++
			} else {
				exp++
				inexact = inexact || js[i] != '0'
			}
		}
	default:
		return decNumber{}, false
	}
	integer = true
	if i < len(js) && js[i] == '.' {
		integer = false
		i++
		start := i
		for ; i < len(js) && js[i] >= '0' && js[i] <= '9'; i++ {
			switch {
			case digits == 0 && js[i] == '0':
				exp--
			case digits < 19:
				mant = mant*10 + uint64(js[i]-'0')
				digits++
				exp--
			default:
				inexact = inexact || js[i] != '0'
			}
		}
		fail = i == start
	}
	if i < len(js) && (js[i] == 'e' || js[i] == 'E') && !fail {
		integer = false
		i++
		eneg := false
		if i < len(js) && (js[i] == '+' || js[i] == '-') {
			eneg = js[i] == '-'
			i++
		}
		start, e := i, 0
		for ; i < len(js) && js[i] >= '0' && js[i] <= '9'; i++ {
			if e < 1<<20 {
				e = e*10 + int(js[i]-'0')
			}
		}
		fail = i == start
		if eneg {
			e = -e
		}
		exp += e
	}
	if fail || i < len(js) && isNumberByte[js[i]] {
		return decNumber{}, false
	}
	var flags uint8
	if neg {
		flags |= numNeg
	}
	if integer {
		flags |= numInteger
	}
	if inexact {
		flags |= numInexact
	}
	return decNumber{end: i, mant: mant, exp: exp, flags: flags}, true
}

// Exact powers of ten, for the fast path of float.
var (
	pow10f64 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}
	pow10f32 = [...]float32{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10}
)

// exactFloat converts n to the nearest float of bitSize when a single
// rounding does it: mantissa and power of ten are both exact in that
// format (Clinger's fast path), so the result equals strconv.ParseFloat's.
func (n decNumber) exactFloat(bitSize int) (float64, bool) {
	if n.inexact() {
		return 0, false
	}
	var f float64
	switch {
	case n.mant == 0:
	case bitSize == 32 && n.mant <= 1<<24 && n.exp >= -10 && n.exp <= 10:
		f32 := float32(n.mant)
		if n.exp < 0 {
			f32 /= pow10f32[-n.exp]
		} else {
			f32 *= pow10f32[n.exp]
		}
		f = float64(f32)
	case n.mant <= 1<<53 && n.exp >= -22 && n.exp <= 22:
		f = float64(n.mant)
		if n.exp < 0 {
			f /= pow10f64[-n.exp]
		} else {
			f *= pow10f64[n.exp]
		}
		if bitSize == 32 {
			// f is the value rounded once, to float64. Rounding that to
			// float32 rounds the value once too, unless f lies halfway
			// between two float32s (rounding is monotonic, so it cannot
			// carry a value across such a midpoint, only onto it). The
			// magnitudes here are all normal float32s, whose midpoints
			// have these low 29 bits in float64.
			if math.Float64bits(f)&(1<<29-1) == 1<<28 {
				return 0, false
			}
			f = float64(float32(f))
		}
	default:
		return 0, false
	}
	if n.neg() {
		f = -f
	}
	return f, true
}

// isPlain marks the string bytes that need no attention: not a quote, a
// backslash or a control character.
var isPlain = func() (t [256]bool) {
	for c := range t {
		t[c] = c >= 0x20 && c != '"' && c != '\\'
	}
	return t
}()

// scanString validates the string at s.pos and moves past it, returning
// its raw content and whether that holds escapes.
func (s *scanner) scanString() ([]byte, bool, error) {
	js := s.js
	start := s.pos + 1
	escaped := false
	for i := start; i < len(js); {
		c := js[i]
		if isPlain[c] {
			i++
			continue
		}
		switch c {
		case '"':
			s.pos = i + 1
			return js[start:i], escaped, nil
		case '\\':
			escaped = true
			if i+1 >= len(js) {
				return nil, false, s.eof()
			}
			switch js[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if _, ok := hex4(js[i+2:]); !ok {
					return nil, false, s.syntaxErr(i, `invalid \u escape`)
				}
				i += 6
			default:
				return nil, false, s.syntaxErr(i, fmt.Sprintf("invalid escape %q", js[i:i+2]))
			}
		default:
			return nil, false, s.syntaxErr(i, fmt.Sprintf("control character %q in a string", c))
		}
	}
	return nil, false, s.eof()
}

// str reads the string at s.pos and returns its content with escapes
// decoded: a view of the JSON text or of s.tmp, valid until the next str.
func (s *scanner) str() ([]byte, error) {
	raw, escaped, err := s.scanString()
	if err != nil || !escaped {
		return raw, err
	}
	s.tmp = unescape(s.tmp[:0], raw)
	return s.tmp, nil
}

// hex4 decodes the four hex digits at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// unescape appends the content of a string that scanString validated to
// dst with its escapes decoded. A \u escape of a surrogate that is not
// half of a pair becomes U+FFFD.
func unescape(dst, raw []byte) []byte {
	for {
		i := bytes.IndexByte(raw, '\\')
		if i < 0 {
			return append(dst, raw...)
		}
		dst = append(dst, raw[:i]...)
		raw = raw[i:]
		if len(raw) < 2 {
			return dst // not reached for validated content
		}
		c := raw[1]
		raw = raw[2:]
		switch c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(raw)
			raw = raw[min(4, len(raw)):]
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if r < 0xdc00 && len(raw) >= 6 && raw[0] == '\\' && raw[1] == 'u' {
					r2, ok = hex4(raw[2:])
				}
				if ok && r2 >= 0xdc00 && r2 < 0xe000 {
					r = utf16.DecodeRune(r, r2)
					raw = raw[6:]
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, c)
		}
	}
}

// skip validates and skips the value at s.pos. With lenient set, number
// tokens are only delimited (see number), for values a consumer checks
// again; otherwise they must be RFC 8259 numbers. Nesting is tracked
// without recursion.
func (s *scanner) skip(lenient bool) error {
	base := s.depth
	var objects [maxDepth/64 + 1]uint64 // bit per level: an object, not an array
	for {
		// A value starts here.
		s.ws()
		if s.pos >= len(s.js) {
			return s.eof()
		}
		switch c := s.js[s.pos]; c {
		case '{', '[':
			if err := s.open(); err != nil {
				return err
			}
			level := s.depth - base - 1
			closing := byte(']')
			if c == '{' {
				objects[level/64] |= 1 << (level % 64)
				closing = '}'
			} else {
				objects[level/64] &^= 1 << (level % 64)
			}
			s.ws()
			if s.pos < len(s.js) && s.js[s.pos] == closing {
				s.pos++
				s.depth--
				break
			}
			if c == '{' {
				if err := s.skipKey(); err != nil {
					return err
				}
			}
			continue
		case '"':
			if _, _, err := s.scanString(); err != nil {
				return err
			}
		case 't':
			if err := s.literal("true"); err != nil {
				return err
			}
		case 'f':
			if err := s.literal("false"); err != nil {
				return err
			}
		default:
			if s.kind() == kindNull {
				s.pos += len("null")
				break
			}
			start := s.pos
			tok, err := s.number()
			if err != nil {
				return err
			}
			if valid, _ := tensor.ScanJSONNumber(tok); !valid && !lenient {
				return s.syntaxErr(start, fmt.Sprintf("invalid number %q", tok))
			}
		}
		// A value ended: close containers until another item follows.
		for {
			if s.depth == base {
				return nil
			}
			level := s.depth - base - 1
			closing := byte(']')
			if objects[level/64]&(1<<(level%64)) != 0 {
				closing = '}'
			}
			more, err := s.next(closing, false)
			if err != nil {
				return err
			}
			if more {
				if closing == '}' {
					if err := s.skipKey(); err != nil {
						return err
					}
				}
				break
			}
		}
	}
}

// skipKey validates and skips an object key and the ':' after it.
func (s *scanner) skipKey() error {
	s.ws()
	if s.pos >= len(s.js) || s.js[s.pos] != '"' {
		return s.unexpected("a string key")
	}
	if _, _, err := s.scanString(); err != nil {
		return err
	}
	s.ws()
	if s.pos >= len(s.js) || s.js[s.pos] != ':' {
		return s.unexpected("':'")
	}
	s.pos++
	return nil
}

// dataDecoder decodes one tensor's "data" value into its storage form,
// with the conventions and error messages of tensor.DecodeJSON: a flat
// array, arrays nested exactly in the shape, or a scalar when the shape
// has one element. Errors about the data wrap tensor.ErrInvalid; malformed
// JSON and the value limit wrap ErrBadRequest.
type dataDecoder struct {
	// s is a copy of the request's scanner, written back when done: a
	// pointer here would make the scanner escape to the heap along with
	// out.
	s     scanner
	dt    tensor.DataType
	shape tensor.Shape
	n     int // elements the shape holds
	lim   int // elements out has room for (fixed-size types)
	out   []byte
	idx   int  // flat index of the next element
	fast  bool // fastRun handles d.dt
	// BYTES elements take two passes: sizing validates them and adds up
	// size, the storage size; the second appends them to out.
	sizing bool
	size   int
}

// decodeData decodes the data value at s.pos for a tensor of dt and
// shape, which has n elements (already checked against the limit); the
// value lies within the next avail bytes.
//
// Storage is sized from the shape before the elements are read, and a
// value with more elements than the shape is rejected at the first extra
// one. An array needs two bytes per element, so the buffer is never sized
// beyond what avail bytes could fill: a short request cannot make the
// decoder allocate a large buffer for a large claimed shape.
func (s *scanner) decodeData(dt tensor.DataType, shape tensor.Shape, n int64, avail int) ([]byte, error) {
	d := dataDecoder{s: *s, dt: dt, shape: shape, n: int(n), lim: int(n)}
	d.fast = dt != tensor.Bool && dt != tensor.Bytes
	out, err := d.decode(avail)
	*s = d.s
	return out, err
}

// decode decodes the data value at d.s.pos (see decodeData).
func (d *dataDecoder) decode(avail int) ([]byte, error) {
	s := &d.s
	if d.dt == tensor.Bytes {
		d.sizing = true
		begin := s.mark()
		if err := d.run(); err != nil {
			return nil, err
		}
		end := s.seek(begin.pos)
		d.sizing, d.idx = false, 0
		d.out = make([]byte, 0, d.size)
		err := d.run() // the sizing pass validated everything
		s.restore(end)
		if err != nil {
			return nil, err
		}
		return d.out, nil
	}
	if most := (avail + 1) / 2; most < d.lim {
		d.lim = most
	}
	d.out = make([]byte, d.lim*d.dt.Size())
	if err := d.run(); err != nil {
		return nil, err
	}
	return d.out, nil
}

// run walks the data value at d.s.pos once, decoding (or sizing) its
// elements.
func (d *dataDecoder) run() error {
	s := &d.s
	switch s.kind() {
	case kindArray:
		if len(d.shape) >= 2 && d.firstIsArray() {
			return d.nested(0)
		}
		return d.flat()
	case kindObject, kindNull:
		k, err := s.wrongKind()
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: data must be an array, got %s", tensor.ErrInvalid, k)
	case kindNone:
		return s.eof()
	}
	if d.n != 1 {
		if err := s.skip(true); err != nil {
			return err
		}
		return fmt.Errorf("%w: a scalar data value needs a shape with one element, shape %v has %d", tensor.ErrInvalid, d.shape.String(), d.n)
	}
	return d.elem()
}

// firstIsArray reports whether the array at s.pos starts with an array.
func (d *dataDecoder) firstIsArray() bool {
	js := d.s.js
	for i := d.s.pos + 1; i < len(js); i++ {
		switch js[i] {
		case ' ', '\t', '\n', '\r':
		default:
			return js[i] == '['
		}
	}
	return false
}

// flat decodes a flat array of all the elements.
func (d *dataDecoder) flat() error {
	s := &d.s
	if err := s.open(); err != nil {
		return err
	}
	for more, err := s.next(']', true); more || err != nil; more, err = s.next(']', false) {
		if err != nil {
			return err
		}
		if d.fast {
			if _, after := d.fastRun(d.lim - d.idx); after {
				continue
			}
		}
		if s.js[s.pos] == '[' {
			if err := s.skip(true); err != nil {
				return err
			}
			return fmt.Errorf("%w: element %d is an array; data must be a flat array or nested exactly in shape %v", tensor.ErrInvalid, d.idx, d.shape.String())
		}
		if err := d.elem(); err != nil {
			return err
		}
	}
	if d.idx != d.n {
		return fmt.Errorf("%w: expected %d elements, got %d", tensor.ErrInvalid, d.n, d.idx)
	}
	return nil
}

// nested decodes the array at s.pos, found at dimension dim of data
// nested in the shape.
func (d *dataDecoder) nested(dim int) error {
	s := &d.s
	if err := s.open(); err != nil {
		return err
	}
	want, last := d.shape[dim], dim == len(d.shape)-1
	var got int64
	for more, err := s.next(']', true); more || err != nil; more, err = s.next(']', false) {
		if err != nil {
			return err
		}
		if last && d.fast && got < want {
			k, after := d.fastRun(int(min(want-got, int64(d.lim-d.idx))))
			got += int64(k)
			if after {
				continue
			}
		}
		isArray := s.js[s.pos] == '['
		switch {
		case got >= want:
			return fmt.Errorf("%w: expected %d elements at dimension %d, got at least %d", tensor.ErrInvalid, want, dim, want+1)
		case last && isArray:
			if err := s.skip(true); err != nil {
				return err
			}
			return fmt.Errorf("%w: data is nested deeper than shape %v", tensor.ErrInvalid, d.shape.String())
		case !last && !isArray:
			k, err := s.wrongKind()
			if err != nil {
				return err
			}
			return fmt.Errorf("%w: expected an array at dimension %d, got %s", tensor.ErrInvalid, dim+1, k)
		case last:
			err = d.elem()
		default:
			err = d.nested(dim + 1)
		}
		if err != nil {
			return err
		}
		got++
	}
	if got != want {
		return fmt.Errorf("%w: expected %d elements at dimension %d, got %d", tensor.ErrInvalid, want, dim, got)
	}
	return nil
}

// fastRun decodes, in one loop, the run of elements starting at s.pos
// that are plain numbers the fast paths convert exactly and that fit
// d.dt, each but the last followed by a ',' and another element; it
// decodes at most max. It returns how many it decoded, and whether it
// stopped after an element (s.pos before what follows it) rather than at
// the start of one (which the general path then decodes, or reports).
func (d *dataDecoder) fastRun(max int) (decoded int, after bool) {
	s := &d.s
	js, pos, idx, end := s.js, s.pos, d.idx, d.idx+max
	size := d.dt.Size()
	var minInt, maxInt uint64 // magnitude bounds of negative and other integers
	if d.dt >= tensor.Uint8 && d.dt <= tensor.Int64 {
		bits := uint(size * 8)
		switch {
		case d.dt >= tensor.Int8:
			minInt, maxInt = 1<<(bits-1), 1<<(bits-1)-1
		case bits < 64:
			maxInt = 1<<bits - 1
		default:
			maxInt = math.MaxUint64
		}
	}
	out, dt := d.out, d.dt
	for idx < end {
		n, ok := parseNumber(js, pos)
		if !ok {
			break
		}
		p := out[idx*size:]
		switch dt {
		case tensor.FP32:
			// The common case inline: a short mantissa and a small power
			// of ten are exact in float32, so one operation rounds once.
			if !n.inexact() && n.mant <= 1<<24 && uint(n.exp+10) <= 20 {
				f := float32(n.mant)
				if n.exp < 0 {
					f /= pow10f32[-n.exp]
				} else {
					f *= pow10f32[n.exp]
				}
				if n.neg() {
					f = -f
				}
				binary.LittleEndian.PutUint32(p, math.Float32bits(f))
			} else if f, exact := n.exactFloat(32); exact {
				binary.LittleEndian.PutUint32(p, math.Float32bits(float32(f)))
			} else {
				ok = false
			}
		case tensor.FP64:
			if f, exact := n.exactFloat(64); exact {
				binary.LittleEndian.PutUint64(p, math.Float64bits(f))
			} else {
				ok = false
			}
		case tensor.FP16, tensor.BF16:
			f, exact := n.exactFloat(64)
			switch {
			case !exact || math.Abs(f) >= 65504: // FP16 max; out of range or near it: the general path
				ok = false
			case dt == tensor.FP16:
				binary.LittleEndian.PutUint16(p, tensor.Float16Bits(roundToOdd32(f)))
			default:
				binary.LittleEndian.PutUint16(p, tensor.BFloat16Bits(roundToOdd32(f)))
			}
		default: // integers
			u := n.mant
			switch {
			case !n.integer() || n.exp != 0, n.neg() && u > minInt, !n.neg() && u > maxInt:
				ok = false
			case n.neg():
				u = -u
			}
			if ok {
				switch size {
				case 1:
					p[0] = byte(u)
				case 2:
					binary.LittleEndian.PutUint16(p, uint16(u))
				case 4:
					binary.LittleEndian.PutUint32(p, uint32(u))
				default:
					binary.LittleEndian.PutUint64(p, u)
				}
			}
		}
		if !ok {
			break
		}
		idx++
		pos = n.end
		for pos < len(js) && (js[pos] == ' ' || js[pos] == '\n' || js[pos] == '\t' || js[pos] == '\r') {
			pos++
		}
		if pos >= len(js) || js[pos] != ',' || s.values >= s.maxValues {
			after = true // next reports what follows, or the value limit
			break
		}
		q := pos + 1
		for q < len(js) && (js[q] == ' ' || js[q] == '\n' || js[q] == '\t' || js[q] == '\r') {
			q++
		}
		if q >= len(js) {
			after = true
			break
		}
		s.values++
		pos = q
	}
	decoded = idx - d.idx
	s.pos, d.idx = pos, idx
	return decoded, after
}

// elem decodes the element at s.pos as element d.idx.
func (d *dataDecoder) elem() error {
	i := d.idx
	if i >= d.lim {
		if i >= d.n {
			return fmt.Errorf("%w: expected %d elements, got at least %d", tensor.ErrInvalid, d.n, d.n+1)
		}
		// An array of more than d.lim elements cannot fit the bytes it
		// was found in; this is not reached.
		return fmt.Errorf("%w: data holds more elements than its length allows", tensor.ErrInvalid)
	}
	var err error
	out := d.out
	switch d.dt {
	case tensor.FP32:
		var f float64
		if f, err = d.float(32); err == nil {
			binary.LittleEndian.PutUint32(out[i*4:], math.Float32bits(float32(f)))
		}
	case tensor.FP64:
		var f float64
		if f, err = d.float(64); err == nil {
			binary.LittleEndian.PutUint64(out[i*8:], math.Float64bits(f))
		}
	case tensor.FP16, tensor.BF16:
		var f float64
		if f, err = d.float(64); err == nil {
			err = d.putHalf(i, f)
		}
	case tensor.Bool:
		var b byte
		if b, err = d.bool(); err == nil {
			out[i] = b
		}
	case tensor.Bytes:
		err = d.bytes()
	default:
		var u uint64
		if u, err = d.int(); err == nil {
			size := d.dt.Size()
			switch p := out[i*size:]; size {
			case 1:
				p[0] = byte(u)
			case 2:
				binary.LittleEndian.PutUint16(p, uint16(u))
			case 4:
				binary.LittleEndian.PutUint32(p, uint32(u))
			default:
				binary.LittleEndian.PutUint64(p, u)
			}
		}
	}
	if err != nil {
		if errors.Is(err, ErrBadRequest) {
			return err // malformed JSON, not a bad element
		}
		return fmt.Errorf("%w: element %d: %w", tensor.ErrInvalid, i, err)
	}
	d.idx++
	return nil
}

// putHalf stores f as FP16 or BF16 element i, rounding once.
func (d *dataDecoder) putHalf(i int, f float64) error {
	conv, limit := tensor.Float16Bits, 65520.0 // FP16 max + half an ulp
	if d.dt == tensor.BF16 {
		conv, limit = tensor.BFloat16Bits, 0x1.ffp127 // BF16 max + half an ulp
	}
	if !math.IsInf(f, 0) && math.Abs(f) >= limit {
		return fmt.Errorf("%v is out of range for %s", f, d.dt)
	}
	binary.LittleEndian.PutUint16(d.out[i*2:], conv(roundToOdd32(f)))
	return nil
}

// float reads a number, or one of the strings for NaN and the
// infinities, rounding once to bitSize.
func (d *dataDecoder) float(bitSize int) (float64, error) {
	s := &d.s
	if n, ok := parseNumber(s.js, s.pos); ok {
		f, exact := n.exactFloat(bitSize)
		if !exact {
			tok := s.js[s.pos:n.end]
			var err error
			if f, err = strconv.ParseFloat(unsafe.String(unsafe.SliceData(tok), len(tok)), bitSize); err != nil {
				return 0, fmt.Errorf("%s is out of range for a %d-bit float", tok, bitSize)
			}
		}
		s.pos = n.end
		return f, nil
	}
	switch s.kind() {
	case kindNumber:
	case kindString:
		b, err := s.str()
		if err != nil {
			return 0, err
		}
		if f, ok := nonFinite(b); ok {
			return f, nil
		}
		return 0, fmt.Errorf(`expected a number, got the string %q (only "NaN", "Infinity" and "-Infinity" are allowed)`, b)
	default:
		k, err := s.wrongKind()
		if err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("expected a number, got %s", k)
	}
	tok, err := s.number()
	if err != nil {
		return 0, err
	}
	if valid, _ := tensor.ScanJSONNumber(tok); !valid {
		return 0, fmt.Errorf(`malformed number %q (write non-finite values as the strings "NaN", "Infinity", "-Infinity")`, tok)
	}
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(tok), len(tok)), bitSize)
	if err != nil {
		return 0, fmt.Errorf("%s is out of range for a %d-bit float", tok, bitSize)
	}
	return f, nil
}

// int reads an integer element of d.dt and returns its two's-complement
// bits.
func (d *dataDecoder) int() (uint64, error) {
	s := &d.s
	if n, ok := parseNumber(s.js, s.pos); ok && n.integer() && n.exp == 0 {
		raw := s.js[s.pos:n.end]
		s.pos = n.end
		return d.intRange(raw, n.neg(), n.mant)
	}
	if s.kind() != kindNumber {
		k, err := s.wrongKind()
		if err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("expected an integer, got %s", k)
	}
	raw, err := s.number()
	if err != nil {
		return 0, err
	}
	neg, mag, err := tensor.ParseJSONInt(raw)
	if err != nil {
		return 0, err
	}
	return d.intRange(raw, neg, mag)
}

// intRange checks that the integer literal raw, of sign neg and magnitude
// mag, fits d.dt, and returns its two's-complement bits.
func (d *dataDecoder) intRange(raw []byte, neg bool, mag uint64) (uint64, error) {
	bits := uint(d.dt.Size() * 8)
	signed := d.dt >= tensor.Int8 && d.dt <= tensor.Int64
	switch {
	case !signed && neg && mag != 0,
		!signed && bits < 64 && mag >= 1<<bits,
		signed && !neg && mag >= 1<<(bits-1),
		signed && neg && mag > 1<<(bits-1):
		return 0, fmt.Errorf("%s is out of range for %s", raw, d.dt)
	}
	if neg {
		return -mag, nil
	}
	return mag, nil
}

// bool reads a BOOL element: true, false, 0 or 1.
func (d *dataDecoder) bool() (byte, error) {
	s := &d.s
	switch s.kind() {
	case kindBool:
		b, err := s.boolean()
		if b {
			return 1, err
		}
		return 0, err
	case kindNumber:
		raw, err := s.number()
		if err != nil {
			return 0, err
		}
		switch string(raw) {
		case "0":
			return 0, nil
		case "1":
			return 1, nil
		}
		return 0, fmt.Errorf("expected a boolean (or 0 or 1), got %s", raw)
	}
	k, err := s.wrongKind()
	if err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("expected a boolean, got %s", k)
}

// bytes sizes (first pass) or appends (second pass) a BYTES element.
func (d *dataDecoder) bytes() error {
	s := &d.s
	if s.kind() != kindString {
		k, err := s.wrongKind()
		if err != nil {
			return err
		}
		return fmt.Errorf("expected a string, got %s", k)
	}
	b, err := s.str()
	if err != nil {
		return err
	}
	if !d.sizing {
		d.out = binary.LittleEndian.AppendUint32(d.out, uint32(len(b)))
		d.out = append(d.out, b...)
		return nil
	}
	if !utf8.Valid(b) {
		return fmt.Errorf("string is not valid UTF-8 (send binary content with the binary tensor extension)")
	}
	if uint64(len(b)) > math.MaxUint32 {
		return fmt.Errorf("string of %d bytes exceeds the BYTES element limit", len(b))
	}
	d.size += 4 + len(b)
	return nil
}

// nonFinite parses the JSON conventions for non-finite floats: "NaN",
// "Infinity", "-Infinity", also "Inf", "+Inf", "+Infinity", in any case
// (as tensor.DecodeJSON does; a signed NaN is not accepted).
func nonFinite(b []byte) (float64, bool) {
	s := unsafe.String(unsafe.SliceData(b), len(b))
	sign := 1
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		if s[0] == '-' {
			sign = -1
		}
		s = s[1:]
		if strings.EqualFold(s, "nan") {
			return 0, false
		}
	}
	switch {
	case strings.EqualFold(s, "nan"):
		return math.NaN(), true
	case strings.EqualFold(s, "inf"), strings.EqualFold(s, "infinity"):
		return math.Inf(sign), true
	}
	return 0, false
}

// roundToOdd32 rounds f to float32 with the round-to-odd rule, so that
// rounding the result again to FP16 or BF16 equals rounding f once (as
// the tensor package does for its JSON decoding).
func roundToOdd32(f float64) float32 {
	r := float32(f)
	if float64(r) == f || f != f || math.Float32bits(r)&1 == 1 {
		return r
	}
	if float64(r) < f {
		return math.Nextafter32(r, float32(math.Inf(1)))
	}
	return math.Nextafter32(r, float32(math.Inf(-1)))
}
