package respcache

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/kilnai/kiln/internal/tensor"
)

type keyRequest struct {
	model   string
	version int64
	inputs  []tensor.Tensor
	outputs []string
}

func (r keyRequest) key() Key { return NewKey(r.model, r.version, r.inputs, r.outputs) }

func baseRequest() keyRequest {
	return keyRequest{
		model:   "resnet",
		version: 3,
		inputs: []tensor.Tensor{
			f32("a", tensor.Shape{1, 2}, 1, 2),
			byteStrings("b", tensor.Shape{2}, "x", "yz"),
			f32("c", tensor.Shape{2}, 3, 4),
		},
		outputs: []string{"out0", "out1"},
	}
}

func TestKeyStable(t *testing.T) {
	base := baseRequest()
	want := base.key()
	if want.IsZero() {
		t.Fatal("key of a valid request is zero")
	}
	same := baseRequest() // equal content in fresh memory
	if got := same.key(); got != want {
		t.Errorf("key not deterministic: %s vs %s", got, want)
	}
	if got := NewKey("resnet", 3, base.inputs, base.outputs); got != want {
		t.Errorf("second call: %s, want %s", got, want)
	}
}

// TestKeyLayout pins the hashed layout, spelled out by hand: the key is
// shared across replicas and restarts (Redis keeps it), so a change must be
// deliberate and come with a new keyDomain.
func TestKeyLayout(t *testing.T) {
	var pre []byte
	u64 := func(v uint64) { pre = binary.LittleEndian.AppendUint64(pre, v) }
	str := func(s string) { u64(uint64(len(s))); pre = append(pre, s...) }
	pre = append(pre, "kiln/respcache/key/v1\x00"...)
	str("m")
	u64(7)
	u64(2) // inputs, sorted by name: "a" before "b"
	str("a")
	u64(uint64(tensor.Uint8))
	u64(1)
	u64(2)
	u64(2)
	pre = append(pre, 5, 6)
	str("b")
	u64(uint64(tensor.Int8))
	u64(0)
	u64(1)
	pre = append(pre, 9)
	u64(1) // outputs
	str("out")
	want := Key(sha256.Sum256(pre))

	inputs := []tensor.Tensor{
		{Name: "b", DataType: tensor.Int8, Shape: tensor.Shape{}, Data: []byte{9}},
		{Name: "a", DataType: tensor.Uint8, Shape: tensor.Shape{2}, Data: []byte{5, 6}},
	}
	if got := NewKey("m", 7, inputs, []string{"out"}); got != want {
		t.Errorf("key %s, want %s", got, want)
	}
}

func TestKeyInputOrderIrrelevant(t *testing.T) {
	base := baseRequest()
	want := base.key()
	in := base.inputs
	perms := [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	for _, p := range perms {
		r := base
		r.inputs = []tensor.Tensor{in[p[0]], in[p[1]], in[p[2]]}
		if got := r.key(); got != want {
			t.Errorf("order %v: key %s, want %s", p, got, want)
		}
	}
	// Duplicate names are ordered by content, so they commute too.
	d1 := f32("a", tensor.Shape{1}, 1)
	d2 := f32("a", tensor.Shape{1}, 2)
	if NewKey("m", 1, []tensor.Tensor{d1, d2}, nil) != NewKey("m", 1, []tensor.Tensor{d2, d1}, nil) {
		t.Error("order of duplicate-name inputs changes the key")
	}
}

func TestKeySensitive(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(r *keyRequest)
	}{
		{"model name", func(r *keyRequest) { r.model = "resnet2" }},
		{"model version", func(r *keyRequest) { r.version = 4 }},
		{"input name", func(r *keyRequest) { r.inputs[0].Name = "a2" }},
		{"input datatype", func(r *keyRequest) { r.inputs[0].DataType = tensor.Int32 }},
		{"input shape", func(r *keyRequest) { r.inputs[0].Shape = tensor.Shape{2, 1} }},
		{"input rank", func(r *keyRequest) { r.inputs[0].Shape = tensor.Shape{1, 1, 2} }},
		{"input data", func(r *keyRequest) { r.inputs[0] = f32("a", tensor.Shape{1, 2}, 1, 2.0000002) }},
		{"bytes element boundary", func(r *keyRequest) { r.inputs[1] = byteStrings("b", tensor.Shape{2}, "xy", "z") }},
		{"data moved between inputs", func(r *keyRequest) {
			r.inputs[0] = f32("a", tensor.Shape{1, 2}, 1, 2, 3)
			r.inputs[2] = f32("c", tensor.Shape{2}, 4)
		}},
		{"input dropped", func(r *keyRequest) { r.inputs = r.inputs[:2] }},
		{"input added", func(r *keyRequest) { r.inputs = append(r.inputs, f32("d", tensor.Shape{1}, 0)) }},
		{"output order", func(r *keyRequest) { r.outputs = []string{"out1", "out0"} }},
		{"output dropped", func(r *keyRequest) { r.outputs = []string{"out0"} }},
		{"all outputs", func(r *keyRequest) { r.outputs = nil }},
		{"output name split", func(r *keyRequest) { r.outputs = []string{"out", "0out1"} }},
		{"output name joined", func(r *keyRequest) { r.outputs = []string{"out0out1"} }},
		{"model/input boundary", func(r *keyRequest) { r.model = "resneta"; r.inputs[0].Name = "" }},
	}
	want := baseRequest().key()
	seen := map[Key]string{want: "base"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := baseRequest()
			tt.mutate(&r)
			got := r.key()
			if got == want {
				t.Fatalf("key unchanged: %s", got)
			}
			if prev, dup := seen[got]; dup {
				t.Errorf("same key as %q", prev)
			}
			seen[got] = tt.name
		})
	}
}

func TestKeyEmptyOutputsMeanAll(t *testing.T) {
	r := baseRequest()
	if NewKey(r.model, r.version, r.inputs, nil) != NewKey(r.model, r.version, r.inputs, []string{}) {
		t.Error("nil and empty output lists differ")
	}
}

func TestKeyUnresolvedVersion(t *testing.T) {
	r := baseRequest()
	for _, v := range []int64{0, -1} {
		if k := NewKey(r.model, v, r.inputs, r.outputs); !k.IsZero() {
			t.Errorf("version %d: key %s, want the zero key", v, k)
		}
	}
}

func TestVersionsNeverShareEntries(t *testing.T) {
	r := baseRequest()
	k1 := NewKey(r.model, 1, r.inputs, r.outputs)
	k2 := NewKey(r.model, 2, r.inputs, r.outputs)
	c := NewLRU(1 << 20)
	ctx := t.Context()
	if err := c.Set(ctx, k1, sampleOutputs()); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.Get(ctx, k2); ok || err != nil {
		t.Fatalf("version 2 lookup: ok=%v err=%v, want a clean miss", ok, err)
	}
	if _, ok, _ := c.Get(ctx, k1); !ok {
		t.Fatal("version 1 lookup missed")
	}
	// An unresolved version never hits, even if something was stored.
	k0 := NewKey(r.model, 0, r.inputs, r.outputs)
	if err := c.Set(ctx, k0, sampleOutputs()); err == nil {
		t.Error("Set with an unresolved version succeeded")
	}
	if _, ok, err := c.Get(ctx, k0); ok || err == nil {
		t.Errorf("Get with an unresolved version: ok=%v err=%v", ok, err)
	}
}

func BenchmarkNewKey(b *testing.B) {
	vals := make([]float32, 64)
	for i := range vals {
		vals[i] = float32(i) / 7
	}
	inputs := []tensor.Tensor{f32("input", tensor.Shape{1, 64}, vals...)}
	outputs := []string{"output"}
	b.ReportAllocs()
	for b.Loop() {
		NewKey("model", 1, inputs, outputs)
	}
}
