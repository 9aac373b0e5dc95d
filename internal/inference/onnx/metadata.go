package onnx

import (
	"fmt"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/tensor"
)

// dataTypes maps ONNX element types to Kiln datatypes; other element
// types (complex, float8, int4, ...) are unsupported.
var dataTypes = map[ort.TensorElementDataType]tensor.DataType{
	ort.TensorElementDataTypeFloat:    tensor.FP32,
	ort.TensorElementDataTypeDouble:   tensor.FP64,
	ort.TensorElementDataTypeFloat16:  tensor.FP16,
	ort.TensorElementDataTypeBFloat16: tensor.BF16,
	ort.TensorElementDataTypeInt8:     tensor.Int8,
	ort.TensorElementDataTypeInt16:    tensor.Int16,
	ort.TensorElementDataTypeInt32:    tensor.Int32,
	ort.TensorElementDataTypeInt64:    tensor.Int64,
	ort.TensorElementDataTypeUint8:    tensor.Uint8,
	ort.TensorElementDataTypeUint16:   tensor.Uint16,
	ort.TensorElementDataTypeUint32:   tensor.Uint32,
	ort.TensorElementDataTypeUint64:   tensor.Uint64,
	ort.TensorElementDataTypeBool:     tensor.Bool,
	ort.TensorElementDataTypeString:   tensor.Bytes,
}

// elementTypes is the inverse of dataTypes.
var elementTypes = func() map[tensor.DataType]ort.TensorElementDataType {
	m := make(map[tensor.DataType]ort.TensorElementDataType, len(dataTypes))
	for k, v := range dataTypes {
		m[v] = k
	}
	return m
}()

func isHalf(dt tensor.DataType) bool { return dt == tensor.FP16 || dt == tensor.BF16 }

// static reports whether every dimension is fixed.
func static(s tensor.Shape) bool {
	for _, d := range s {
		if d < 0 {
			return false
		}
	}
	return true
}

// spec converts one ORT input or output description, rejecting what the
// backend cannot serve.
func toSpec(kind string, info ort.InputOutputInfo) (inference.TensorSpec, error) {
	if info.OrtValueType != ort.ONNXTypeTensor {
		return inference.TensorSpec{}, fmt.Errorf("%w: %s %q has type %v, not a tensor", inference.ErrUnsupported, kind, info.Name, info.OrtValueType)
	}
	dt, ok := dataTypes[info.DataType]
	if !ok {
		return inference.TensorSpec{}, fmt.Errorf("%w: %s %q has element type %v, which has no Kiln datatype", inference.ErrUnsupported, kind, info.Name, info.DataType)
	}
	shape := make(tensor.Shape, len(info.Dimensions))
	for i, d := range info.Dimensions {
		shape[i] = max(d, -1) // symbolic and unknown dimensions are -1
	}
	return inference.TensorSpec{Name: info.Name, DataType: dt, Shape: shape}, nil
}

// metadata builds the model's metadata from ORT's description, merges the
// configured tensors of spec and checks what the wrapper can handle.
func metadata(ins, outs []ort.InputOutputInfo, spec inference.LoadSpec) (inference.Metadata, error) {
	md := inference.Metadata{Platform: Platform}
	for _, info := range ins {
		s, err := toSpec("input", info)
		if err != nil {
			return md, err
		}
		md.Inputs = append(md.Inputs, s)
	}
	for _, info := range outs {
		s, err := toSpec("output", info)
		if err != nil {
			return md, err
		}
		md.Outputs = append(md.Outputs, s)
	}
	if len(md.Outputs) == 0 {
		return md, fmt.Errorf("%w: the model has no outputs", inference.ErrUnsupported)
	}
	if err := mergeConfigured("input", md.Inputs, spec.Inputs); err != nil {
		return md, err
	}
	if err := mergeConfigured("output", md.Outputs, spec.Outputs); err != nil {
		return md, err
	}
	md.BatchDim = true
	for _, s := range append(append([]inference.TensorSpec(nil), md.Inputs...), md.Outputs...) {
		if len(s.Shape) == 0 || s.Shape[0] != -1 {
			md.BatchDim = false
		}
	}

	for _, s := range md.Inputs {
		if err := checkScalar("input", s); err != nil {
			return md, err
		}
	}
	for _, s := range md.Outputs {
		if err := checkScalar("output", s); err != nil {
			return md, err
		}
		if len(md.Inputs) == 0 && !static(s.Shape) {
			return md, fmt.Errorf("%w: the model has no inputs and output %q has dynamic shape %v; outputs of input-less models must have fixed shapes (or fix them in the model config)",
				inference.ErrUnsupported, s.Name, s.Shape)
		}
		if isHalf(s.DataType) && !static(s.Shape) && !(md.BatchDim && static(s.Shape[1:])) {
			return md, fmt.Errorf("%w: output %q is %s with shape %v; onnxruntime_go cannot return %s outputs that ONNX Runtime allocates, "+
				"and Kiln pre-allocates them only when dimension 0 is the batch dimension and the others are fixed (fix them in the model config)",
				inference.ErrUnsupported, s.Name, s.DataType, s.Shape, s.DataType)
		}
	}
	return md, nil
}

// checkScalar rejects 0-d tensors the wrapper cannot create or read.
func checkScalar(kind string, s inference.TensorSpec) error {
	if len(s.Shape) != 0 {
		return nil
	}
	switch {
	case s.DataType == tensor.Bytes:
		return fmt.Errorf("%w: %s %q is a 0-d (or unknown-rank) BYTES tensor; onnxruntime_go cannot create or read string scalars", inference.ErrUnsupported, kind, s.Name)
	case isHalf(s.DataType):
		return fmt.Errorf("%w: %s %q is a 0-d (or unknown-rank) %s tensor; onnxruntime_go cannot create %s scalars", inference.ErrUnsupported, kind, s.Name, s.DataType, s.DataType)
	}
	return nil
}

// mergeConfigured checks configured tensors against the model's and
// copies dimensions the configuration fixes where the model has -1.
func mergeConfigured(kind string, model []inference.TensorSpec, configured []inference.TensorSpec) error {
	for _, c := range configured {
		i := -1
		for j := range model {
			if model[j].Name == c.Name {
				i = j
			}
		}
		if i < 0 {
			return fmt.Errorf("configured %s %q is not an %s of the model", kind, c.Name, kind)
		}
		m := &model[i]
		if c.DataType != m.DataType {
			return fmt.Errorf("configured %s %q is %s, the model's is %s", kind, c.Name, c.DataType, m.DataType)
		}
		if len(c.Shape) != len(m.Shape) {
			return fmt.Errorf("configured %s %q has shape %v, the model's is %v (ranks differ)", kind, c.Name, c.Shape, m.Shape)
		}
		merged := m.Shape.Clone()
		for d := range merged {
			switch {
			case c.Shape[d] < 0:
			case merged[d] < 0:
				merged[d] = c.Shape[d]
			case merged[d] != c.Shape[d]:
				return fmt.Errorf("configured %s %q has shape %v, the model's is %v", kind, c.Name, c.Shape, m.Shape)
			}
		}
		m.Shape = merged
	}
	return nil
}
