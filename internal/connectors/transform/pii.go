package transform

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/kilnai/kiln/internal/pipeline"
)

func init() {
	pipeline.RegisterTransform(pipeline.TransformSpec{
		Spec: pipeline.Spec{
			Name: "hash",
			Summary: "pseudonymise columns: replace each value by a keyed hash (HMAC) of it with a secret salt; " +
				"equal values give equal pseudonyms, which cannot be reversed or recomputed without the salt",
			Config: func() any { return &HashConfig{Algorithm: "hmac-sha256", Encoding: "hex"} },
			Examples: []string{
				`{columns: [email, phone], salt: "${PII_SALT}"}`,
				`{columns: [customer_id], salt: "${PII_SALT}", algorithm: hmac-sha512, encoding: base64, truncate: 16}`,
			},
		},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Transform, error) {
			return &hashT{cfg: cfg.(*HashConfig)}, nil
		},
	})
	pipeline.RegisterTransform(pipeline.TransformSpec{
		Spec: pipeline.Spec{
			Name:    "mask",
			Summary: "hide parts of string columns: replace characters by a mask character, keeping some at the ends or by pattern",
			Config:  func() any { return &MaskConfig{Char: "*", Pattern: "all"} },
			Examples: []string{
				"{columns: [card_number], keep_last: 4}",
				"{columns: [email], pattern: email}",
				"{columns: [phone], pattern: digits, keep_last: 2, char: \"#\"}",
			},
		},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Transform, error) {
			c := cfg.(*MaskConfig)
			r, _ := utf8.DecodeRuneInString(c.Char)
			return &maskT{cfg: c, char: r}, nil
		},
	})
}

// HashConfig configures hash.
type HashConfig struct {
	Columns   []string `yaml:"columns" required:"true" doc:"columns to pseudonymise (any type; the value's text form is hashed; nulls stay null; the output is a string column)"`
	Salt      string   `yaml:"salt" required:"true" doc:"the secret key, at least 16 characters; pass it from the environment (\"${PII_SALT}\"), never in the file"`
	Algorithm string   `yaml:"algorithm" doc:"hmac-sha256 or hmac-sha512"`
	Encoding  string   `yaml:"encoding" doc:"hex or base64 (URL-safe, unpadded)"`
	Truncate  int      `yaml:"truncate" doc:"keep only the first N characters of the encoded hash (0: all)"`
}

// minSaltLen is the shortest salt hash accepts: a short key makes the
// pseudonyms of low-entropy values (phone numbers) guessable.
const minSaltLen = 16

// Validate checks the options.
func (c *HashConfig) Validate() error {
	if err := checkColumns(c.Columns); err != nil {
		return err
	}
	if len(c.Salt) < minSaltLen {
		return fmt.Errorf("salt must have at least %d characters (use a random secret from the environment, e.g. \"${PII_SALT}\")", minSaltLen)
	}
	switch c.Algorithm {
	case "hmac-sha256", "hmac-sha512":
	default:
		return fmt.Errorf("algorithm must be hmac-sha256 or hmac-sha512, not %q", c.Algorithm)
	}
	switch c.Encoding {
	case "hex", "base64":
	default:
		return fmt.Errorf("encoding must be hex or base64, not %q", c.Encoding)
	}
	if c.Truncate < 0 {
		return errors.New("truncate must be >= 0")
	}
	return nil
}

type hashT struct{ cfg *HashConfig }

func (t *hashT) Apply(_ context.Context, in pipeline.Batch) (pipeline.Batch, []pipeline.RowError, error) {
	s := in.Schema()
	newHash := sha256.New
	if t.cfg.Algorithm == "hmac-sha512" {
		newHash = sha512.New
	}
	mac := hmac.New(newHash, []byte(t.cfg.Salt))
	repl := map[int]arrow.Array{}
	for _, col := range t.cfg.Columns {
		idx, err := columnIndex(s, col)
		if err != nil {
			releaseMap(repl)
			return nil, nil, stageErr("hash", err)
		}
		repl[idx] = t.hashColumn(mac, in.Column(idx))
	}
	return replaceColumns(in, repl, nil, nil, nil), nil, nil
}

func (t *hashT) hashColumn(mac hash.Hash, a arrow.Array) arrow.Array {
	n := a.Len()
	offs := make([]int32, n+1)
	size := mac.Size() * 2
	if t.cfg.Encoding == "base64" {
		size = base64.RawURLEncoding.EncodedLen(mac.Size())
	}
	if t.cfg.Truncate > 0 && t.cfg.Truncate < size {
		size = t.cfg.Truncate
	}
	data := make([]byte, 0, (n-a.NullN())*size)
	var sum, enc []byte
	var text []byte
	for i := range n {
		if a.IsNull(i) {
			offs[i+1] = int32(len(data))
			continue
		}
		text = appendText(text[:0], a, i)
		mac.Reset()
		mac.Write(text)
		sum = mac.Sum(sum[:0])
		if t.cfg.Encoding == "base64" {
			enc = base64.RawURLEncoding.AppendEncode(enc[:0], sum)
		} else {
			enc = hex.AppendEncode(enc[:0], sum)
		}
		data = append(data, enc[:size]...)
		offs[i+1] = int32(len(data))
	}
	v, nulls := validityOf(a)
	return makeArray(arrow.BinaryTypes.String, n, []*memory.Buffer{v, memory.NewBufferBytes(bytesOf(offs)), memory.NewBufferBytes(data)}, nulls)
}

// appendText appends the text form of row i of a (strings as they are,
// other types as Arrow formats them).
func appendText(dst []byte, a arrow.Array, i int) []byte {
	type stringer interface{ Value(int) string }
	switch c := a.(type) {
	case stringer:
		if _, isStr := a.DataType().(arrow.BinaryDataType); isStr {
			return append(dst, c.Value(i)...)
		}
	}
	return append(dst, a.ValueStr(i)...)
}

// MaskConfig configures mask.
type MaskConfig struct {
	Columns   []string `yaml:"columns" required:"true" doc:"string columns to mask (nulls stay null)"`
	KeepFirst int      `yaml:"keep_first" doc:"characters left visible at the start"`
	KeepLast  int      `yaml:"keep_last" doc:"characters left visible at the end"`
	Char      string   `yaml:"char" doc:"the mask character"`
	Pattern   string   `yaml:"pattern" doc:"what is masked: all (every character but the kept ones), digits (only digits, keeping separators), or email (the local part but its first character; the domain stays)"`
}

// Validate checks the options.
func (c *MaskConfig) Validate() error {
	if err := checkColumns(c.Columns); err != nil {
		return err
	}
	if c.KeepFirst < 0 || c.KeepLast < 0 {
		return errors.New("keep_first and keep_last must be >= 0")
	}
	if utf8.RuneCountInString(c.Char) != 1 {
		return fmt.Errorf("char must be one character, not %q", c.Char)
	}
	switch c.Pattern {
	case "all", "digits", "email":
	default:
		return fmt.Errorf("pattern must be all, digits or email, not %q", c.Pattern)
	}
	return nil
}

type maskT struct {
	cfg  *MaskConfig
	char rune
}

func (t *maskT) Apply(_ context.Context, in pipeline.Batch) (pipeline.Batch, []pipeline.RowError, error) {
	s := in.Schema()
	repl := map[int]arrow.Array{}
	for _, col := range t.cfg.Columns {
		idx, err := columnIndex(s, col)
		if err != nil {
			releaseMap(repl)
			return nil, nil, stageErr("mask", err)
		}
		a := in.Column(idx)
		if k := columnKind(a.DataType()); k != kString {
			releaseMap(repl)
			return nil, nil, stageErr("mask", fmt.Errorf("column %q is %s, not a string column (hash it instead, or cast it to string first)", col, a.DataType()))
		}
		n := a.Len()
		offs := make([]int32, n+1)
		var data []byte
		var text []byte
		for i := range n {
			if a.IsValid(i) {
				text = appendText(text[:0], a, i)
				data = t.mask(data, string(text))
			}
			offs[i+1] = int32(len(data))
		}
		v, nulls := validityOf(a)
		repl[idx] = makeArray(arrow.BinaryTypes.String, n, []*memory.Buffer{v, memory.NewBufferBytes(bytesOf(offs)), memory.NewBufferBytes(data)}, nulls)
	}
	return replaceColumns(in, repl, nil, nil, nil), nil, nil
}

// mask appends the masked form of s to dst.
func (t *maskT) mask(dst []byte, s string) []byte {
	switch t.cfg.Pattern {
	case "email":
		at := strings.LastIndexByte(s, '@')
		if at < 0 {
			return t.maskRange(dst, s, 1, 0, false)
		}
		dst = t.maskRange(dst, s[:at], max(1, t.cfg.KeepFirst), 0, false)
		return append(dst, s[at:]...)
	case "digits":
		return t.maskRange(dst, s, t.cfg.KeepFirst, t.cfg.KeepLast, true)
	}
	return t.maskRange(dst, s, t.cfg.KeepFirst, t.cfg.KeepLast, false)
}

// maskRange masks the characters of s except the first keepFirst and the
// last keepLast (counting only digits when digitsOnly).
func (t *maskT) maskRange(dst []byte, s string, keepFirst, keepLast int, digitsOnly bool) []byte {
	total := 0
	for _, r := range s {
		if !digitsOnly || isDigit(r) {
			total++
		}
	}
	k := 0
	for _, r := range s {
		if digitsOnly && !isDigit(r) {
			dst = utf8.AppendRune(dst, r)
			continue
		}
		if k < keepFirst || k >= total-keepLast {
			dst = utf8.AppendRune(dst, r)
		} else {
			dst = utf8.AppendRune(dst, t.char)
		}
		k++
	}
	return dst
}

func isDigit(r rune) bool { return r >= '0' && r <= '9' }
