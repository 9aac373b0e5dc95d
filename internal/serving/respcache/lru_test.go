package respcache

import (
	"errors"
	"sync"
	"testing"

	"github.com/kilnai/kiln/internal/tensor"
)

// keyN returns a distinct valid key per n.
func keyN(n int) Key {
	return NewKey("m", 1, []tensor.Tensor{f32("x", tensor.Shape{1}, float32(n))}, nil)
}

// payload returns an output list of exactly size data bytes, tagged with n.
func payload(n, size int) []tensor.Tensor {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(n + i)
	}
	return []tensor.Tensor{{Name: "y", DataType: tensor.Uint8, Shape: tensor.Shape{int64(size)}, Data: data}}
}

func cost(ts []tensor.Tensor) int64 { return int64(EncodedSize(ts)) + EntryOverhead }

func mustSet(t testing.TB, c Cache, k Key, ts []tensor.Tensor) {
	t.Helper()
	if err := c.Set(t.Context(), k, ts); err != nil {
		t.Fatalf("Set: %v", err)
	}
}

// present reports which of keyN(0..n-1) the LRU holds, without touching
// recency or the hit counters.
func present(c *LRU, n int) []bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]bool, n)
	for i := range out {
		_, out[i] = c.items[keyN(i)]
	}
	return out
}

func TestLRUGetSet(t *testing.T) {
	c := NewLRU(1 << 20)
	ctx := t.Context()
	k := keyN(1)
	if _, ok, err := c.Get(ctx, k); ok || err != nil {
		t.Fatalf("empty cache: ok=%v err=%v", ok, err)
	}
	want := sampleOutputs()
	mustSet(t, c, k, want)
	got, ok, err := c.Get(ctx, k)
	if !ok || err != nil {
		t.Fatalf("after Set: ok=%v err=%v", ok, err)
	}
	assertTensorsEqual(t, got, want)
	st := c.Stats()
	if st.Entries != 1 || st.Bytes != cost(want) || st.Hits != 1 || st.Misses != 1 || st.Evictions != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestLRUEvictsByBytes(t *testing.T) {
	small := payload(0, 100)
	big := payload(0, 900)
	sc, bc := cost(small), cost(big)
	max := MaxEntryFraction * bc // big is exactly the largest storable entry
	c := NewLRU(max)

	// Fill with small entries until the next would not fit.
	n := int(max / sc)
	for i := range n {
		mustSet(t, c, keyN(i), payload(i, 100))
	}
	if st := c.Stats(); st.Entries != n || st.Bytes != int64(n)*sc || st.Evictions != 0 {
		t.Fatalf("after filling: %+v, want %d entries of %d bytes", st, n, sc)
	}

	// One big entry evicts as many of the oldest small ones as its bytes need.
	evict := 0
	for int64(n-evict)*sc+bc > max {
		evict++
	}
	if evict < 2 {
		t.Fatalf("test setup: big entry should displace several small ones, displaces %d", evict)
	}
	mustSet(t, c, keyN(n), big)
	st := c.Stats()
	if st.Evictions != uint64(evict) || st.Entries != n-evict+1 || st.Bytes != int64(n-evict)*sc+bc {
		t.Errorf("after big Set: %+v, want %d evictions", st, evict)
	}
	if st.Bytes > max {
		t.Errorf("holding %d bytes, budget %d", st.Bytes, max)
	}
	for i, ok := range present(c, n+1) {
		if want := i >= evict; ok != want {
			t.Errorf("key %d present=%v, want %v", i, ok, want)
		}
	}
}

func TestLRURecency(t *testing.T) {
	e := payload(0, 64)
	const capacity = 8
	c := NewLRU(capacity * cost(e))
	ctx := t.Context()
	for i := range capacity {
		mustSet(t, c, keyN(i), payload(i, 64))
	}
	// Touch the two oldest; the next two inserts must evict 2 and 3.
	for _, i := range []int{0, 1} {
		if _, ok, _ := c.Get(ctx, keyN(i)); !ok {
			t.Fatalf("key %d missing", i)
		}
	}
	mustSet(t, c, keyN(capacity), payload(capacity, 64))
	// 2 was evicted and 3 is the oldest; overwriting it refreshes it, so
	// the next insert evicts 4.
	mustSet(t, c, keyN(3), payload(3, 64))
	mustSet(t, c, keyN(capacity+1), payload(capacity+1, 64))
	want := []bool{true, true, false, true, false, true, true, true, true, true}
	got := present(c, capacity+2)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("key %d present=%v, want %v", i, got[i], want[i])
		}
	}
	if st := c.Stats(); st.Entries != capacity || st.Evictions != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestLRUSizeLimits(t *testing.T) {
	tests := []struct {
		name     string
		maxBytes int64
		size     int // data bytes of the entry
		stored   bool
	}{
		{"exactly the entry limit", 8 * cost(payload(0, 500)), 500, true},
		{"one byte over the entry limit", 8*cost(payload(0, 500)) - 1, 500, false},
		{"far over", 1 << 10, 1 << 12, false},
		{"zero budget", 0, 1, false},
		{"negative budget", -5, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewLRU(tt.maxBytes)
			k := keyN(1)
			mustSet(t, c, k, payload(1, tt.size))
			_, ok, err := c.Get(t.Context(), k)
			if err != nil || ok != tt.stored {
				t.Fatalf("Get: ok=%v err=%v, want ok=%v", ok, err, tt.stored)
			}
			st := c.Stats()
			wantEntries, wantRejected := 1, uint64(0)
			if !tt.stored {
				wantEntries, wantRejected = 0, 1
			}
			if st.Entries != wantEntries || st.Rejected != wantRejected {
				t.Errorf("stats %+v, want %d entries and %d rejected", st, wantEntries, wantRejected)
			}
		})
	}
	t.Run("oversize replacement drops the old value", func(t *testing.T) {
		c := NewLRU(8 * cost(payload(0, 100)))
		k := keyN(1)
		mustSet(t, c, k, payload(1, 100))
		mustSet(t, c, k, payload(1, 200))
		if _, ok, _ := c.Get(t.Context(), k); ok {
			t.Error("stale value served after an oversize Set")
		}
		if st := c.Stats(); st.Entries != 0 || st.Bytes != 0 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestLRUCopies(t *testing.T) {
	c := NewLRU(1 << 20)
	ctx := t.Context()
	k := keyN(1)
	in := []tensor.Tensor{
		{Name: "a", DataType: tensor.Uint8, Shape: tensor.Shape{2}, Data: []byte{1, 2}},
		{Name: "b", DataType: tensor.Uint8, Shape: tensor.Shape{1, 2}, Data: []byte{3, 4}},
	}
	want := []tensor.Tensor{
		{Name: "a", DataType: tensor.Uint8, Shape: tensor.Shape{2}, Data: []byte{1, 2}},
		{Name: "b", DataType: tensor.Uint8, Shape: tensor.Shape{1, 2}, Data: []byte{3, 4}},
	}
	mustSet(t, c, k, in)
	// The caller reuses its buffers after Set.
	in[0].Data[0], in[0].Shape[0], in[1].Name = 99, 99, "changed"

	got, ok, err := c.Get(ctx, k)
	if !ok || err != nil {
		t.Fatalf("ok=%v err=%v", ok, err)
	}
	assertTensorsEqual(t, got, want)

	// Shapes are the caller's own; appending to Data never reaches into
	// the neighbouring tensor's cached bytes.
	got[0].Shape[0] = 7
	got[0].Shape = append(got[0].Shape, 1)
	_ = append(got[0].Data, 0xee, 0xee)
	got2, _, _ := c.Get(ctx, k)
	assertTensorsEqual(t, got2, want)
}

func TestLRUClosedAndInvalidKey(t *testing.T) {
	c := NewLRU(1 << 20)
	ctx := t.Context()
	if _, _, err := c.Get(ctx, Key{}); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Get zero key: %v", err)
	}
	if err := c.Set(ctx, Key{}, sampleOutputs()); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Set zero key: %v", err)
	}
	bad := []tensor.Tensor{{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{2}, Data: []byte{1}}}
	if err := c.Set(ctx, keyN(1), bad); !errors.Is(err, tensor.ErrInvalid) {
		t.Errorf("Set invalid tensor: %v", err)
	}
	mustSet(t, c, keyN(1), sampleOutputs())
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.Get(ctx, keyN(1)); ok || !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: ok=%v err=%v", ok, err)
	}
	if err := c.Set(ctx, keyN(1), sampleOutputs()); !errors.Is(err, ErrClosed) {
		t.Errorf("Set after Close: %v", err)
	}
	if st := c.Stats(); st.Entries != 0 || st.Bytes != 0 {
		t.Errorf("stats after Close %+v", st)
	}
}

// TestLRUConcurrent hammers a small cache from many goroutines (run it with
// -race) and checks that every hit carries the value stored for its key and
// that the counters add up.
func TestLRUConcurrent(t *testing.T) {
	const (
		keys       = 64
		workers    = 8
		iterations = 2000
		size       = 32
	)
	c := NewLRU(16 * cost(payload(0, size))) // room for a quarter of the keys
	ctx := t.Context()
	var gets sync.Map // worker -> number of Gets
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			n := 0
			for i := range iterations {
				k := (w*13 + i*7) % keys
				if i%4 == 0 {
					if err := c.Set(ctx, keyN(k), payload(k, size)); err != nil {
						t.Errorf("Set: %v", err)
						return
					}
					continue
				}
				n++
				got, ok, err := c.Get(ctx, keyN(k))
				if err != nil {
					t.Errorf("Get: %v", err)
					return
				}
				if ok && (len(got) != 1 || got[0].Data[0] != byte(k) || got[0].Data[size-1] != byte(k+size-1)) {
					t.Errorf("key %d: wrong value %v", k, got)
					return
				}
			}
			gets.Store(w, n)
		})
	}
	wg.Wait()
	var total uint64
	gets.Range(func(_, v any) bool { total += uint64(v.(int)); return true })
	st := c.Stats()
	if st.Hits+st.Misses != total {
		t.Errorf("hits %d + misses %d != %d gets", st.Hits, st.Misses, total)
	}
	if st.Bytes > st.MaxBytes || st.Bytes != int64(st.Entries)*cost(payload(0, size)) {
		t.Errorf("inconsistent stats %+v", st)
	}
	if st.Hits == 0 || st.Evictions == 0 {
		t.Errorf("workload did not exercise hits and evictions: %+v", st)
	}
}

func BenchmarkLRU(b *testing.B) {
	out := []tensor.Tensor{f32("y", tensor.Shape{1, 10}, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)}
	const keys = 1024
	ks := make([]Key, keys)
	for i := range ks {
		ks[i] = keyN(i)
	}
	b.Run("Get", func(b *testing.B) {
		c := NewLRU(1 << 30)
		for _, k := range ks {
			mustSet(b, c, k, out)
		}
		ctx := b.Context()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, ok, _ := c.Get(ctx, ks[i%keys]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
	b.Run("Set", func(b *testing.B) {
		// A budget of ~256 entries, so Sets keep evicting.
		c := NewLRU(256 * cost(out))
		ctx := b.Context()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := c.Set(ctx, ks[i%keys], out); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("GetParallel", func(b *testing.B) {
		c := NewLRU(1 << 30)
		for _, k := range ks {
			mustSet(b, c, k, out)
		}
		ctx := b.Context()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				c.Get(ctx, ks[i%keys])
				i++
			}
		})
	})
}
