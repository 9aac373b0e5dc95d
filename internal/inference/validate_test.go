package inference_test

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/tensor"
)

func f32(vals ...float32) []byte {
	b := make([]byte, 0, 4*len(vals))
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func bytesData(elems ...string) []byte {
	var b []byte
	for _, e := range elems {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e)))
		b = append(b, e...)
	}
	return b
}

var md = inference.Metadata{
	Inputs: []inference.TensorSpec{
		{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{-1, 2}},
		{Name: "s", DataType: tensor.Bytes, Shape: tensor.Shape{-1}},
		{Name: "k", DataType: tensor.FP32, Shape: tensor.Shape{}},
	},
	Outputs: []inference.TensorSpec{
		{Name: "a", DataType: tensor.FP32, Shape: tensor.Shape{-1, 2}},
		{Name: "b", DataType: tensor.Bytes, Shape: tensor.Shape{-1}},
		{Name: "c", DataType: tensor.FP32, Shape: tensor.Shape{}},
	},
}

func valid() []tensor.Tensor {
	return []tensor.Tensor{
		{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{2, 2}, Data: f32(1, 2, 3, 4)},
		{Name: "s", DataType: tensor.Bytes, Shape: tensor.Shape{2}, Data: bytesData("ab", "")},
		{Name: "k", DataType: tensor.FP32, Shape: tensor.Shape{}, Data: f32(7)},
	}
}

func TestValidateInputs(t *testing.T) {
	tests := []struct {
		name   string
		mutate func([]tensor.Tensor) []tensor.Tensor
		// wantIn is a fragment the error must contain; "" means no error.
		wantIn string
	}{
		{"valid", func(in []tensor.Tensor) []tensor.Tensor { return in }, ""},
		{"any order", func(in []tensor.Tensor) []tensor.Tensor { slices.Reverse(in); return in }, ""},
		{"zero rows", func(in []tensor.Tensor) []tensor.Tensor {
			in[0].Shape, in[0].Data = tensor.Shape{0, 2}, nil
			return in
		}, ""},
		{"missing", func(in []tensor.Tensor) []tensor.Tensor { return in[:2] }, `missing input "k"`},
		{"unknown", func(in []tensor.Tensor) []tensor.Tensor {
			return append(in, tensor.Tensor{Name: "zz", DataType: tensor.FP32, Shape: tensor.Shape{1}, Data: f32(1)})
		}, `unknown input "zz"`},
		{"duplicate", func(in []tensor.Tensor) []tensor.Tensor { return append(in, in[0]) }, `input "x" given more than once`},
		{"wrong datatype", func(in []tensor.Tensor) []tensor.Tensor {
			in[0].DataType = tensor.Int32
			return in
		}, `input "x" has datatype INT32, model expects FP32`},
		{"wrong rank", func(in []tensor.Tensor) []tensor.Tensor {
			in[0].Shape = tensor.Shape{4}
			return in
		}, `input "x" has shape [4], model expects [-1,2]`},
		{"wrong fixed dim", func(in []tensor.Tensor) []tensor.Tensor {
			in[0].Shape = tensor.Shape{1, 4}
			return in
		}, `input "x" has shape [1,4]`},
		{"scalar given a dim", func(in []tensor.Tensor) []tensor.Tensor {
			in[2].Shape = tensor.Shape{1}
			return in
		}, `input "k" has shape [1], model expects []`},
		{"short data", func(in []tensor.Tensor) []tensor.Tensor {
			in[0].Data = in[0].Data[:15]
			return in
		}, `input "x"`},
		{"long data", func(in []tensor.Tensor) []tensor.Tensor {
			in[0].Data = append(in[0].Data, 0, 0, 0, 0)
			return in
		}, `input "x"`},
		{"bytes count mismatch", func(in []tensor.Tensor) []tensor.Tensor {
			in[1].Data = bytesData("ab")
			return in
		}, `input "s"`},
		{"bytes truncated", func(in []tensor.Tensor) []tensor.Tensor {
			in[1].Data = in[1].Data[:5]
			return in
		}, `input "s"`},
		{"negative dim", func(in []tensor.Tensor) []tensor.Tensor {
			in[0].Shape = tensor.Shape{-1, 2}
			return in
		}, `input "x"`},
		{"too many elements", func(in []tensor.Tensor) []tensor.Tensor {
			in[0].Shape = tensor.Shape{1 << 20, 2}
			return in
		}, `input "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := inference.ValidateInputs(md, tt.mutate(valid()), 1024)
			if tt.wantIn == "" {
				if err != nil {
					t.Fatalf("ValidateInputs: unexpected error %v", err)
				}
				return
			}
			if !errors.Is(err, inference.ErrInvalidInput) {
				t.Fatalf("ValidateInputs error = %v, want one wrapping ErrInvalidInput", err)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("ValidateInputs error = %q, want it to contain %q", err, tt.wantIn)
			}
		})
	}
}

func TestValidateInputsKeepsTensorErrors(t *testing.T) {
	in := valid()
	in[0].Shape = tensor.Shape{1 << 20, 2}
	err := inference.ValidateInputs(md, in, 1024)
	if !errors.Is(err, tensor.ErrTooLarge) || !errors.Is(err, inference.ErrInvalidInput) {
		t.Fatalf("error = %v, want both ErrTooLarge and ErrInvalidInput", err)
	}
}

func TestResolveOutputs(t *testing.T) {
	tests := []struct {
		name    string
		names   []string
		want    []int
		wantErr error
	}{
		{"all by default", nil, []int{0, 1, 2}, nil},
		{"empty slice", []string{}, []int{0, 1, 2}, nil},
		{"order asked", []string{"c", "a"}, []int{2, 0}, nil},
		{"one", []string{"b"}, []int{1}, nil},
		{"unknown", []string{"a", "nope"}, nil, inference.ErrNotFound},
		{"duplicate", []string{"a", "b", "a"}, nil, inference.ErrInvalidInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := inference.ResolveOutputs(md, tt.names)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ResolveOutputs(%q) error = %v, want %v", tt.names, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolveOutputs(%q): %v", tt.names, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ResolveOutputs(%q) = %v, want %v", tt.names, got, tt.want)
			}
		})
	}
}

func TestResolveOutputsNamesUnknown(t *testing.T) {
	_, err := inference.ResolveOutputs(md, []string{"nope"})
	if err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("error = %v, want it to name the output", err)
	}
}
