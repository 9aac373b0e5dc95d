package respcache

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"

	"github.com/kilnai/kiln/internal/tensor"
)

// f32 builds an FP32 tensor.
func f32(name string, shape tensor.Shape, vals ...float32) tensor.Tensor {
	b := make([]byte, 0, 4*len(vals))
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return tensor.Tensor{Name: name, DataType: tensor.FP32, Shape: shape, Data: b}
}

// byteStrings builds a BYTES tensor in the length-prefixed layout.
func byteStrings(name string, shape tensor.Shape, elems ...string) tensor.Tensor {
	var b []byte
	for _, e := range elems {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e)))
		b = append(b, e...)
	}
	return tensor.Tensor{Name: name, DataType: tensor.Bytes, Shape: shape, Data: b}
}

// sampleOutputs covers fixed-width, BYTES (with an empty element), scalar
// and zero-element tensors.
func sampleOutputs() []tensor.Tensor {
	return []tensor.Tensor{
		f32("probs", tensor.Shape{2, 3}, 0.1, 0.2, 0.7, 1, 0, -2.5),
		byteStrings("labels", tensor.Shape{3}, "cat", "", "dog"),
		{Name: "scalar", DataType: tensor.Int64, Shape: tensor.Shape{}, Data: []byte{42, 0, 0, 0, 0, 0, 0, 0}},
		{Name: "empty", DataType: tensor.FP32, Shape: tensor.Shape{0, 4}},
		{Name: "empty_bytes", DataType: tensor.Bytes, Shape: tensor.Shape{2, 0}},
		{Name: "flags", DataType: tensor.Bool, Shape: tensor.Shape{1, 2}, Data: []byte{1, 0}},
	}
}

// assertTensorsEqual compares names, datatypes, shapes and data; nil and
// empty data (or shapes) count as equal.
func assertTensorsEqual(t *testing.T, got, want []tensor.Tensor) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d tensors, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := &got[i], &want[i]
		if g.Name != w.Name || g.DataType != w.DataType || !g.Shape.Equal(w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("tensor %d: got %s %s%v %x, want %s %s%v %x", i, g.Name, g.DataType, g.Shape, g.Data, w.Name, w.DataType, w.Shape, w.Data)
		}
	}
}
