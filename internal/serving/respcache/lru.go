package respcache

import (
	"context"
	"sync"

	"github.com/kilnai/kiln/internal/tensor"
)

// EntryOverhead is the bookkeeping cost, in bytes, that the LRU charges
// each entry on top of its encoded size (EncodedSize): the list node, the
// map slot, the key and the tensor headers.
const EntryOverhead = 192

// MaxEntryFraction bounds a single LRU entry: one whose cost (encoded size
// plus EntryOverhead) exceeds maxBytes/MaxEntryFraction is not stored, so a
// few huge responses cannot flush everything else.
const MaxEntryFraction = 8

// Stats is a snapshot of an LRU's counters.
type Stats struct {
	Entries   int
	Bytes     int64 // charged bytes: encoded sizes plus EntryOverhead each
	MaxBytes  int64
	Hits      uint64
	Misses    uint64
	Evictions uint64 // entries dropped to make room
	Rejected  uint64 // Sets not stored because the entry was over the size limit
}

// LRU is an in-process Cache bounded in bytes that evicts the least
// recently used entries. Get and Set are O(1) in the number of entries
// (plus the copy Set makes); it is safe for concurrent use.
//
// Set stores one private copy of the outputs. Get returns new Tensor values
// whose Data share that copy read-only: the caller may keep them for as long
// as it likes (eviction never reuses the memory) but must not write to
// Data. Shapes are the caller's own, and appending to a returned Data never
// overwrites cached bytes.
type LRU struct {
	maxBytes int64
	maxEntry int64

	mu                                sync.Mutex
	items                             map[Key]*lruEntry
	root                              lruEntry // sentinel: root.next is most recent, root.prev least
	bytes                             int64
	closed                            bool
	hits, misses, evictions, rejected uint64
}

type lruEntry struct {
	prev, next *lruEntry
	key        Key
	outputs    []tensor.Tensor // immutable once stored
	cost       int64
}

var _ Cache = (*LRU)(nil)

// NewLRU returns an empty LRU holding at most maxBytes charged bytes. With
// maxBytes <= 0 it stores nothing (every Get misses).
func NewLRU(maxBytes int64) *LRU {
	if maxBytes < 0 {
		maxBytes = 0
	}
	c := &LRU{
		maxBytes: maxBytes,
		maxEntry: maxBytes / MaxEntryFraction,
		items:    make(map[Key]*lruEntry),
	}
	c.root.next, c.root.prev = &c.root, &c.root
	return c
}

// Get returns the outputs stored under k and marks them most recently used.
// ctx is not consulted: Get never blocks on anything but a short lock.
func (c *LRU) Get(_ context.Context, k Key) ([]tensor.Tensor, bool, error) {
	if k.IsZero() {
		return nil, false, ErrInvalidKey
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, false, ErrClosed
	}
	e := c.items[k]
	if e == nil {
		c.misses++
		c.mu.Unlock()
		return nil, false, nil
	}
	c.hits++
	c.unlink(e)
	c.pushFront(e)
	stored := e.outputs
	c.mu.Unlock()
	return shareOutputs(stored), true, nil
}

// Set stores a copy of outputs under k, replacing any previous value, and
// evicts least recently used entries until the cache fits its budget. An
// entry over the size limit (see MaxEntryFraction) is not stored, any older
// value under k is dropped, and Set returns nil: being too big to cache is
// not a failure. Invalid tensors are refused with an error.
func (c *LRU) Set(_ context.Context, k Key, outputs []tensor.Tensor) error {
	if k.IsZero() {
		return ErrInvalidKey
	}
	if err := validateAll(outputs); err != nil {
		return err
	}
	cost := int64(EncodedSize(outputs)) + EntryOverhead
	var e *lruEntry
	if cost <= c.maxEntry {
		e = &lruEntry{key: k, outputs: copyOutputs(outputs), cost: cost}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if old := c.items[k]; old != nil {
		c.remove(old)
	}
	if e == nil {
		c.rejected++
		return nil
	}
	c.items[k] = e
	c.pushFront(e)
	c.bytes += cost
	for c.bytes > c.maxBytes {
		c.remove(c.root.prev)
		c.evictions++
	}
	return nil
}

// Close drops every entry; later calls to Get and Set fail with ErrClosed.
func (c *LRU) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.items = nil
	c.root.next, c.root.prev = &c.root, &c.root
	c.bytes = 0
	return nil
}

// Stats returns a snapshot of the counters.
func (c *LRU) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{
		Entries:   len(c.items),
		Bytes:     c.bytes,
		MaxBytes:  c.maxBytes,
		Hits:      c.hits,
		Misses:    c.misses,
		Evictions: c.evictions,
		Rejected:  c.rejected,
	}
}

func (c *LRU) remove(e *lruEntry) {
	c.unlink(e)
	delete(c.items, e.key)
	c.bytes -= e.cost
}

func (c *LRU) unlink(e *lruEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *LRU) pushFront(e *lruEntry) {
	e.prev, e.next = &c.root, c.root.next
	c.root.next.prev = e
	c.root.next = e
}

// copyOutputs deep-copies ts into one data buffer and one shape buffer.
// Each tensor's Data and Shape are capped at their length, so an append
// through one can never write into its neighbour.
func copyOutputs(ts []tensor.Tensor) []tensor.Tensor {
	var nData, nDims int
	for i := range ts {
		nData += len(ts[i].Data)
		nDims += len(ts[i].Shape)
	}
	data := make([]byte, 0, nData)
	dims := make([]int64, 0, nDims)
	out := make([]tensor.Tensor, len(ts))
	for i := range ts {
		t := &ts[i]
		d0, s0 := len(data), len(dims)
		data = append(data, t.Data...)
		dims = append(dims, t.Shape...)
		out[i] = tensor.Tensor{
			Name:     t.Name,
			DataType: t.DataType,
			Shape:    tensor.Shape(dims[s0:len(dims):len(dims)]),
			Data:     data[d0:len(data):len(data)],
		}
	}
	return out
}

// shareOutputs returns fresh Tensor values for stored outputs with private
// shapes and Data shared read-only with the cache.
func shareOutputs(stored []tensor.Tensor) []tensor.Tensor {
	var nDims int
	for i := range stored {
		nDims += len(stored[i].Shape)
	}
	dims := make([]int64, 0, nDims)
	out := make([]tensor.Tensor, len(stored))
	for i := range stored {
		s0 := len(dims)
		dims = append(dims, stored[i].Shape...)
		out[i] = stored[i]
		out[i].Shape = tensor.Shape(dims[s0:len(dims):len(dims)])
	}
	return out
}
