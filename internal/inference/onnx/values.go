package onnx

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/tensor"
)

// element is a Go type both the wrapper and package tensor know.
type element interface {
	ort.TensorData
	tensor.Element
}

// value converts a wrapper constructor's result to an ort.Value that is
// nil on error (a nil *T in an interface would not be).
func value[V ort.Value](v V, err error) (ort.Value, error) {
	if err != nil {
		return nil, err
	}
	return v, nil
}

// alignedBytes returns n zero bytes aligned for any element type.
func alignedBytes(n int) []byte {
	return tensor.AsBytes(make([]uint64, (n+7)/8))[:n]
}

// emptyData backs tensors with no elements: the wrapper's custom tensors
// refuse an empty slice, and ORT reads nothing from it.
func emptyData() []byte { return alignedBytes(8) }

func ortShape(s tensor.Shape) ort.Shape { return ort.NewShape(s...) }

// inputValue wraps a validated request tensor as an ORT value. Numeric
// tensors share the request's bytes when they are suitably aligned.
func inputValue(t *tensor.Tensor) (ort.Value, error) {
	if t.DataType == tensor.Bytes {
		return stringInput(t)
	}
	if len(t.Shape) == 0 {
		return scalarInput(t)
	}
	data := t.Data
	size := t.DataType.Size()
	if len(data) == 0 {
		data = emptyData()
	} else if uintptr(unsafe.Pointer(unsafe.SliceData(data)))%uintptr(size) != 0 {
		data = copyAligned(t.Data)
	}
	if t.DataType == tensor.Bool {
		data = normalizeBools(data)
	}
	v, err := ort.NewCustomDataTensor(ortShape(t.Shape), data, elementTypes[t.DataType])
	if err != nil {
		return nil, fmt.Errorf("onnx: input %q: %w", t.Name, err)
	}
	return v, nil
}

// normalizeBools returns b, or a copy with every non-zero byte set to 1
// when b holds other values than 0 and 1 (ONNX bools are 0 or 1).
func normalizeBools(b []byte) []byte {
	for _, v := range b {
		if v > 1 {
			norm := alignedBytes(len(b))
			for i, v := range b {
				if v != 0 {
					norm[i] = 1
				}
			}
			return norm
		}
	}
	return b
}

func copyAligned(b []byte) []byte {
	out := alignedBytes(len(b))
	copy(out, b)
	return out
}

// stringInput builds an ORT string tensor. The wrapper passes C strings,
// which end at the first NUL byte, so elements holding one are refused
// rather than silently truncated.
func stringInput(t *tensor.Tensor) (ort.Value, error) {
	n, err := t.Shape.Elements(0)
	if err != nil {
		return nil, err
	}
	strs := make([]string, 0, n)
	b := t.Data
	for len(b) >= 4 {
		l := uint64(binary.LittleEndian.Uint32(b))
		if l > uint64(len(b)-4) {
			return nil, fmt.Errorf("%w: input %q: truncated BYTES element %d", inference.ErrInvalidInput, t.Name, len(strs))
		}
		e := b[4 : 4+l]
		if bytes.IndexByte(e, 0) >= 0 {
			return nil, fmt.Errorf("%w: input %q: element %d contains a NUL byte, which ONNX Runtime string tensors cannot carry through onnxruntime_go",
				inference.ErrInvalidInput, t.Name, len(strs))
		}
		strs = append(strs, string(e))
		b = b[4+l:]
	}
	v, err := ort.NewStringTensor(ortShape(t.Shape))
	if err != nil {
		return nil, fmt.Errorf("onnx: input %q: %w", t.Name, err)
	}
	if err := v.SetContents(strs); err != nil {
		_ = v.Destroy()
		return nil, fmt.Errorf("onnx: input %q: %w", t.Name, err)
	}
	return v, nil
}

// scalarInput builds a 0-d value (the wrapper's tensors need a dimension).
func scalarInput(t *tensor.Tensor) (ort.Value, error) {
	switch t.DataType {
	case tensor.Bool:
		return value(ort.NewScalar(t.Data[0] != 0))
	case tensor.Uint8:
		return newScalar[uint8](t.Data)
	case tensor.Uint16:
		return newScalar[uint16](t.Data)
	case tensor.Uint32:
		return newScalar[uint32](t.Data)
	case tensor.Uint64:
		return newScalar[uint64](t.Data)
	case tensor.Int8:
		return newScalar[int8](t.Data)
	case tensor.Int16:
		return newScalar[int16](t.Data)
	case tensor.Int32:
		return newScalar[int32](t.Data)
	case tensor.Int64:
		return newScalar[int64](t.Data)
	case tensor.FP32:
		return newScalar[float32](t.Data)
	case tensor.FP64:
		return newScalar[float64](t.Data)
	}
	return nil, fmt.Errorf("%w: 0-d %s input %q", inference.ErrUnsupported, t.DataType, t.Name)
}

func newScalar[T element](b []byte) (ort.Value, error) {
	return value(ort.NewScalar(tensor.View[T](b)[0]))
}

// outputValue pre-allocates an output of a known shape.
func outputValue(spec inference.TensorSpec, shape tensor.Shape) (ort.Value, error) {
	if len(shape) == 0 {
		switch spec.DataType {
		case tensor.Bool:
			return value(ort.NewEmptyScalar[bool]())
		case tensor.Uint8:
			return value(ort.NewEmptyScalar[uint8]())
		case tensor.Uint16:
			return value(ort.NewEmptyScalar[uint16]())
		case tensor.Uint32:
			return value(ort.NewEmptyScalar[uint32]())
		case tensor.Uint64:
			return value(ort.NewEmptyScalar[uint64]())
		case tensor.Int8:
			return value(ort.NewEmptyScalar[int8]())
		case tensor.Int16:
			return value(ort.NewEmptyScalar[int16]())
		case tensor.Int32:
			return value(ort.NewEmptyScalar[int32]())
		case tensor.Int64:
			return value(ort.NewEmptyScalar[int64]())
		case tensor.FP32:
			return value(ort.NewEmptyScalar[float32]())
		case tensor.FP64:
			return value(ort.NewEmptyScalar[float64]())
		}
		return nil, fmt.Errorf("%w: 0-d %s output", inference.ErrUnsupported, spec.DataType)
	}
	n, err := shape.Elements(0)
	if err != nil {
		return nil, err
	}
	data := emptyData()
	if n > 0 {
		data = alignedBytes(int(n) * spec.DataType.Size())
	}
	return value(ort.NewCustomDataTensor(ortShape(shape), data, elementTypes[spec.DataType]))
}

// fromValue converts an output value to a tensor named after spec. The
// data of pre-allocated and wrapper-copied values is Go memory and is
// used without another copy.
func fromValue(spec inference.TensorSpec, v ort.Value) (tensor.Tensor, error) {
	out := tensor.Tensor{Name: spec.Name, DataType: spec.DataType}
	if v == nil {
		return out, fmt.Errorf("no value")
	}
	shape := v.GetShape()
	out.Shape = make(tensor.Shape, len(shape))
	copy(out.Shape, shape)
	n, err := out.Shape.Elements(0)
	if err != nil {
		return out, err
	}
	switch v := v.(type) {
	case *ort.CustomDataTensor:
		size := int64(spec.DataType.Size())
		if int64(len(v.GetData())) < n*size {
			return out, fmt.Errorf("value holds %d bytes, shape %v needs %d", len(v.GetData()), shape, n*size)
		}
		out.Data = v.GetData()[:n*size]
		return out, nil
	case *ort.StringTensor:
		strs, err := v.GetContents()
		if err != nil {
			return out, err
		}
		size := 0
		for _, s := range strs {
			size += 4 + len(s)
		}
		out.Data = make([]byte, 0, size)
		for _, s := range strs {
			out.Data = binary.LittleEndian.AppendUint32(out.Data, uint32(len(s)))
			out.Data = append(out.Data, s...)
		}
		return out, nil
	}
	var ok bool
	switch spec.DataType {
	case tensor.Bool:
		out.Data, ok = typedData[bool](v)
	case tensor.Uint8:
		out.Data, ok = typedData[uint8](v)
	case tensor.Uint16:
		out.Data, ok = typedData[uint16](v)
	case tensor.Uint32:
		out.Data, ok = typedData[uint32](v)
	case tensor.Uint64:
		out.Data, ok = typedData[uint64](v)
	case tensor.Int8:
		out.Data, ok = typedData[int8](v)
	case tensor.Int16:
		out.Data, ok = typedData[int16](v)
	case tensor.Int32:
		out.Data, ok = typedData[int32](v)
	case tensor.Int64:
		out.Data, ok = typedData[int64](v)
	case tensor.FP32:
		out.Data, ok = typedData[float32](v)
	case tensor.FP64:
		out.Data, ok = typedData[float64](v)
	}
	if !ok {
		return out, fmt.Errorf("ONNX Runtime returned a %T (element type %v), the model declares %s", v, v.DataType(), spec.DataType)
	}
	return out, nil
}

// typedData returns the element bytes of a wrapper Tensor[T] or Scalar[T]
// without copying.
func typedData[T element](v ort.Value) ([]byte, bool) {
	switch v := v.(type) {
	case *ort.Tensor[T]:
		return tensor.AsBytes(v.GetData()), true
	case *ort.Scalar[T]:
		return tensor.AsBytes([]T{v.GetData()}), true
	}
	return nil, false
}
