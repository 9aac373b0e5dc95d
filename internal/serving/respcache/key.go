package respcache

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"slices"

	"github.com/kilnai/kiln/internal/tensor"
)

// Key identifies one cacheable request: a SHA-256 over the model name, the
// model version, every input tensor and the requested output names.
// The zero Key is invalid and is refused by every Cache.
type Key [32]byte

// keyDomain separates these hashes from any other use of SHA-256 and
// versions the key layout: change it when the layout changes.
const keyDomain = "kiln/respcache/key/v1\x00"

// NewKey returns the cache key of a request for version of model.
//
// version must be the resolved version that will serve (or served) the
// request, never the requested one: a request for "latest" must be keyed
// with the concrete version number, so that a response of one version is
// never served for another. Versions are positive; for version < 1 NewKey
// returns the zero Key, on which Get and Set fail with ErrInvalidKey, so an
// unresolved version can never produce a hit.
//
// Inputs are hashed canonically, sorted by name (name, datatype, shape and
// data each count), so their order in the request does not matter. Output
// names are hashed in request order; nil or empty means all outputs. Every
// variable-length field is length-prefixed, so no two different requests
// share an encoding.
func NewKey(model string, version int64, inputs []tensor.Tensor, outputs []string) Key {
	if version < 1 {
		return Key{}
	}
	w := keyWriter{h: sha256.New()}
	w.raw(keyDomain)
	w.str(model)
	w.u64(uint64(version))

	var small [8]int
	order := small[:0]
	for i := range inputs {
		order = append(order, i)
	}
	if len(order) > 1 {
		slices.SortFunc(order, func(a, b int) int { return compareInputs(&inputs[a], &inputs[b]) })
	}

	w.u64(uint64(len(inputs)))
	for _, i := range order {
		t := &inputs[i]
		w.str(t.Name)
		w.u64(uint64(t.DataType))
		w.u64(uint64(len(t.Shape)))
		for _, d := range t.Shape {
			w.u64(uint64(d))
		}
		w.u64(uint64(len(t.Data)))
		w.bytes(t.Data)
	}
	w.u64(uint64(len(outputs)))
	for _, o := range outputs {
		w.str(o)
	}
	w.flush()
	var k Key
	w.h.Sum(k[:0])
	return k
}

// compareInputs orders inputs by name; the remaining fields only break ties
// between duplicate names, so that the key never depends on request order.
func compareInputs(a, b *tensor.Tensor) int {
	if c := cmp.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	if c := cmp.Compare(a.DataType, b.DataType); c != 0 {
		return c
	}
	if c := slices.Compare(a.Shape, b.Shape); c != 0 {
		return c
	}
	return bytes.Compare(a.Data, b.Data)
}

// keyWriter batches the many small fields of the preimage into one
// buffer, so the hash sees few large writes.
type keyWriter struct {
	h   hash.Hash
	n   int
	buf [512]byte
}

func (w *keyWriter) flush() {
	w.h.Write(w.buf[:w.n])
	w.n = 0
}

func (w *keyWriter) u64(v uint64) {
	if w.n+8 > len(w.buf) {
		w.flush()
	}
	binary.LittleEndian.PutUint64(w.buf[w.n:], v)
	w.n += 8
}

// raw appends s without a length prefix.
func (w *keyWriter) raw(s string) {
	for len(s) > 0 {
		if w.n == len(w.buf) {
			w.flush()
		}
		c := copy(w.buf[w.n:], s)
		w.n += c
		s = s[c:]
	}
}

func (w *keyWriter) str(s string) {
	w.u64(uint64(len(s)))
	w.raw(s)
}

// bytes appends b without a length prefix; large slices go straight to
// the hash.
func (w *keyWriter) bytes(b []byte) {
	if len(b) > len(w.buf)-w.n {
		w.flush()
		if len(b) >= len(w.buf) {
			w.h.Write(b)
			return
		}
	}
	w.n += copy(w.buf[w.n:], b)
}

// IsZero reports whether k is the zero (invalid) Key.
func (k Key) IsZero() bool { return k == Key{} }

// String returns k in lowercase hexadecimal.
func (k Key) String() string { return hex.EncodeToString(k[:]) }
