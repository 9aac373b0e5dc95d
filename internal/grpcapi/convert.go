package grpcapi

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"time"

	pb "github.com/kilnai/kiln/internal/grpcapi/inferencepb"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/serving"
	"github.com/kilnai/kiln/internal/tensor"
)

// decodeRequest converts a ModelInferRequest into a serving.Request (ID
// left empty). raw reports whether the inputs came as raw_input_contents.
//
// Every shape is validated against maxElements before any buffer is sized
// from it, and the element count of each input must equal what its data
// holds. Raw contents and the typed fields INT32, INT64, UINT32, UINT64,
// FP32, FP64 and BOOL become tensor data without copying (the tensors
// alias req); INT8, INT16, UINT8 and UINT16 are narrowed with range checks
// and BYTES elements are length-prefixed, which copies. Which inputs and
// outputs the model has is the manager's to check.
func decodeRequest(req *pb.ModelInferRequest, maxElements int64) (sreq *serving.Request, raw bool, err error) {
	sreq = &serving.Request{}
	for name, p := range req.GetParameters() {
		if err := requestParam(sreq, name, p); err != nil {
			return nil, false, err
		}
	}
	ins, rawList := req.GetInputs(), req.GetRawInputContents()
	raw = len(rawList) > 0
	if raw && len(rawList) != len(ins) {
		return nil, false, fmt.Errorf("%w: raw_input_contents has %d entries for %d inputs (one per input, in order)", inference.ErrInvalidInput, len(rawList), len(ins))
	}
	sreq.Inputs = make([]tensor.Tensor, len(ins))
	for i, in := range ins {
		if in == nil {
			return nil, false, fmt.Errorf("%w: input %d is empty", inference.ErrInvalidInput, i)
		}
		if err := tensorParams("input", in.Name, in.Parameters); err != nil {
			return nil, false, err
		}
		dt, err := tensor.ParseDataType(in.Datatype)
		if err != nil {
			return nil, false, fmt.Errorf("input %q: %w", in.Name, err)
		}
		shape := tensor.Shape(in.Shape)
		n, err := shape.Elements(maxElements)
		if err != nil {
			return nil, false, fmt.Errorf("input %q: %w", in.Name, err)
		}
		var data []byte
		if raw {
			if hasContents(in.Contents) {
				return nil, false, fmt.Errorf("%w: input %q sets contents in a request that uses raw_input_contents (use one or the other for all inputs)", inference.ErrInvalidInput, in.Name)
			}
			data = rawList[i]
			if err := checkRaw(in.Name, dt, shape, n, data, maxElements); err != nil {
				return nil, false, err
			}
		} else if data, err = fromContents(in.Name, dt, shape, n, in.Contents); err != nil {
			return nil, false, err
		}
		if data == nil {
			data = []byte{}
		}
		sreq.Inputs[i] = tensor.Tensor{Name: in.Name, DataType: dt, Shape: shape, Data: data}
	}
	if outs := req.GetOutputs(); len(outs) > 0 {
		sreq.Outputs = make([]string, len(outs))
		for i, o := range outs {
			if o == nil {
				return nil, false, fmt.Errorf("%w: requested output %d is empty", inference.ErrInvalidInput, i)
			}
			if err := tensorParams("output", o.Name, o.Parameters); err != nil {
				return nil, false, err
			}
			sreq.Outputs[i] = o.Name
		}
	}
	return sreq, raw, nil
}

// requestParam applies one request-level parameter. Kiln honours the
// schedule_policy extension's priority and timeout (µs); sequence batching
// is not offered, so a request that asks for it is refused rather than
// silently served statelessly. Other parameters are ignored, as the
// protocol's custom parameters may be.
func requestParam(sreq *serving.Request, name string, p *pb.InferParameter) error {
	switch name {
	case "priority":
		n, err := intParam(name, p)
		if err != nil {
			return err
		}
		if n > math.MaxInt32 {
			return fmt.Errorf("%w: parameter priority %d is out of range", inference.ErrInvalidInput, n)
		}
		sreq.Priority = int(n)
	case "timeout":
		n, err := intParam(name, p)
		if err != nil {
			return err
		}
		if n > math.MaxInt64/int64(time.Microsecond) {
			n = math.MaxInt64 / int64(time.Microsecond)
		}
		sreq.Timeout = time.Duration(n) * time.Microsecond
	case "sequence_id", "sequence_start", "sequence_end":
		if paramSet(p) {
			return fmt.Errorf("%w: parameter %s: sequence batching is not supported", inference.ErrUnsupported, name)
		}
	}
	return nil
}

// intParam reads a non-negative integer parameter (int64 or uint64).
func intParam(name string, p *pb.InferParameter) (int64, error) {
	switch v := p.GetParameterChoice().(type) {
	case *pb.InferParameter_Int64Param:
		if v.Int64Param < 0 {
			return 0, fmt.Errorf("%w: parameter %s must not be negative, got %d", inference.ErrInvalidInput, name, v.Int64Param)
		}
		return v.Int64Param, nil
	case *pb.InferParameter_Uint64Param:
		if v.Uint64Param > math.MaxInt64 {
			return 0, fmt.Errorf("%w: parameter %s is out of range", inference.ErrInvalidInput, name)
		}
		return int64(v.Uint64Param), nil
	default:
		return 0, fmt.Errorf("%w: parameter %s must be an integer (int64_param)", inference.ErrInvalidInput, name)
	}
}

// paramSet reports whether p holds a value other than its type's zero.
func paramSet(p *pb.InferParameter) bool {
	switch v := p.GetParameterChoice().(type) {
	case *pb.InferParameter_BoolParam:
		return v.BoolParam
	case *pb.InferParameter_Int64Param:
		return v.Int64Param != 0
	case *pb.InferParameter_Uint64Param:
		return v.Uint64Param != 0
	case *pb.InferParameter_StringParam:
		return v.StringParam != ""
	case *pb.InferParameter_DoubleParam:
		return v.DoubleParam != 0
	default:
		return false
	}
}

// tensorParams refuses tensor parameters that change what the client
// expects and that Kiln does not implement: shared memory and
// classification. Others (binary_data, ...) are ignored.
func tensorParams(kind, name string, params map[string]*pb.InferParameter) error {
	for k := range params {
		switch k {
		case "shared_memory_region", "shared_memory_offset", "shared_memory_byte_size":
			return fmt.Errorf("%w: %s %q: shared memory is not supported; send the data in the request", inference.ErrUnsupported, kind, name)
		case "classification":
			return fmt.Errorf("%w: %s %q: the classification extension is not supported", inference.ErrUnsupported, kind, name)
		}
	}
	return nil
}

func hasContents(c *pb.InferTensorContents) bool {
	return c != nil && (len(c.BoolContents) > 0 || len(c.IntContents) > 0 || len(c.Int64Contents) > 0 ||
		len(c.UintContents) > 0 || len(c.Uint64Contents) > 0 || len(c.Fp32Contents) > 0 ||
		len(c.Fp64Contents) > 0 || len(c.BytesContents) > 0)
}

// checkRaw checks that raw data holds exactly n elements of dt.
func checkRaw(name string, dt tensor.DataType, shape tensor.Shape, n int64, data []byte, maxElements int64) error {
	if dt == tensor.Bytes {
		count, err := tensor.CountBytesElements(data)
		if err != nil {
			return fmt.Errorf("input %q: %w", name, err)
		}
		if count != n {
			return fmt.Errorf("%w: input %q has %d BYTES elements in raw_input_contents, shape %v needs %d", inference.ErrInvalidInput, name, count, shape, n)
		}
		return nil
	}
	size, err := tensor.ByteSize(dt, shape, maxElements)
	if err != nil {
		return fmt.Errorf("input %q: %w", name, err)
	}
	if int64(len(data)) != size {
		return fmt.Errorf("%w: input %q has %d bytes in raw_input_contents, %s%v needs %d", inference.ErrInvalidInput, name, len(data), dt, shape, size)
	}
	return nil
}

// contentsField names the InferTensorContents field that carries dt.
func contentsField(dt tensor.DataType) string {
	switch dt {
	case tensor.Bool:
		return "bool_contents"
	case tensor.Int8, tensor.Int16, tensor.Int32:
		return "int_contents"
	case tensor.Int64:
		return "int64_contents"
	case tensor.Uint8, tensor.Uint16, tensor.Uint32:
		return "uint_contents"
	case tensor.Uint64:
		return "uint64_contents"
	case tensor.FP32:
		return "fp32_contents"
	case tensor.FP64:
		return "fp64_contents"
	case tensor.Bytes:
		return "bytes_contents"
	default: // FP16, BF16
		return ""
	}
}

// fromContents turns typed contents into tensor data holding n elements.
func fromContents(name string, dt tensor.DataType, shape tensor.Shape, n int64, c *pb.InferTensorContents) ([]byte, error) {
	var have int
	total := 0
	if c != nil {
		total = len(c.BoolContents) + len(c.IntContents) + len(c.Int64Contents) + len(c.UintContents) +
			len(c.Uint64Contents) + len(c.Fp32Contents) + len(c.Fp64Contents) + len(c.BytesContents)
	}
	if total == 0 && n == 0 {
		return []byte{}, nil
	}
	field := contentsField(dt)
	switch dt {
	case tensor.Bool:
		have = len(c.GetBoolContents())
	case tensor.Int8, tensor.Int16, tensor.Int32:
		have = len(c.GetIntContents())
	case tensor.Int64:
		have = len(c.GetInt64Contents())
	case tensor.Uint8, tensor.Uint16, tensor.Uint32:
		have = len(c.GetUintContents())
	case tensor.Uint64:
		have = len(c.GetUint64Contents())
	case tensor.FP32:
		have = len(c.GetFp32Contents())
	case tensor.FP64:
		have = len(c.GetFp64Contents())
	case tensor.Bytes:
		have = len(c.GetBytesContents())
	default:
		return nil, fmt.Errorf("%w: input %q is %s, which has no typed contents field: send it in raw_input_contents", inference.ErrInvalidInput, name, dt)
	}
	if total == 0 {
		return nil, fmt.Errorf("%w: input %q has no data: set contents.%s or raw_input_contents", inference.ErrInvalidInput, name, field)
	}
	if have != total {
		return nil, fmt.Errorf("%w: input %q is %s, so its data belongs in contents.%s, but other contents fields are set", inference.ErrInvalidInput, name, dt, field)
	}
	if int64(have) != n {
		return nil, fmt.Errorf("%w: input %q has %d elements in contents.%s, shape %v needs %d", inference.ErrInvalidInput, name, have, field, shape, n)
	}
	switch dt {
	case tensor.Bool:
		return tensor.AsBytes(c.BoolContents), nil
	case tensor.Int8:
		return narrow[int8](name, dt, c.IntContents, math.MinInt8, math.MaxInt8)
	case tensor.Int16:
		return narrow[int16](name, dt, c.IntContents, math.MinInt16, math.MaxInt16)
	case tensor.Int32:
		return tensor.AsBytes(c.IntContents), nil
	case tensor.Int64:
		return tensor.AsBytes(c.Int64Contents), nil
	case tensor.Uint8:
		return narrow[uint8](name, dt, c.UintContents, 0, math.MaxUint8)
	case tensor.Uint16:
		return narrow[uint16](name, dt, c.UintContents, 0, math.MaxUint16)
	case tensor.Uint32:
		return tensor.AsBytes(c.UintContents), nil
	case tensor.Uint64:
		return tensor.AsBytes(c.Uint64Contents), nil
	case tensor.FP32:
		return tensor.AsBytes(c.Fp32Contents), nil
	case tensor.FP64:
		return tensor.AsBytes(c.Fp64Contents), nil
	default: // tensor.Bytes
		return packBytes(name, c.BytesContents)
	}
}

// narrow converts 32-bit protocol integers to a narrower element type,
// failing on values outside [lo, hi].
func narrow[T int8 | int16 | uint8 | uint16, S int32 | uint32](name string, dt tensor.DataType, src []S, lo, hi int64) ([]byte, error) {
	out := make([]T, len(src))
	for i, v := range src {
		if int64(v) < lo || int64(v) > hi {
			return nil, fmt.Errorf("%w: input %q element %d is %d, out of range for %s", inference.ErrInvalidInput, name, i, v, dt)
		}
		out[i] = T(v)
	}
	return tensor.AsBytes(out), nil
}

// packBytes encodes BYTES elements as 4-byte little-endian lengths followed
// by the bytes. Elements are opaque: they need not be UTF-8.
func packBytes(name string, elems [][]byte) ([]byte, error) {
	size := 0
	for i, e := range elems {
		if uint64(len(e)) > math.MaxUint32 {
			return nil, fmt.Errorf("%w: input %q element %d is larger than 4 GiB", inference.ErrInvalidInput, name, i)
		}
		size += 4 + len(e)
	}
	out := make([]byte, 0, size)
	for _, e := range elems {
		out = binary.LittleEndian.AppendUint32(out, uint32(len(e)))
		out = append(out, e...)
	}
	return out, nil
}

// typedField reports whether dt has an InferTensorContents field.
func typedField(dt tensor.DataType) bool { return contentsField(dt) != "" }

// encodeResponse builds a ModelInferResponse. Outputs travel as
// raw_output_contents when raw is set or when any output has no typed
// field (FP16, BF16): the protocol allows raw contents only for all
// outputs of a message or none. Raw outputs and the typed fields of
// 32- and 64-bit types share the outputs' data without copying.
func encodeResponse(resp *serving.Response, id string, raw bool) (*pb.ModelInferResponse, error) {
	out := &pb.ModelInferResponse{ModelName: resp.Model, ModelVersion: strconv.FormatInt(resp.Version, 10), Id: id}
	for i := range resp.Outputs {
		if !typedField(resp.Outputs[i].DataType) {
			raw = true
			break
		}
	}
	n := len(resp.Outputs)
	tensors := make([]pb.ModelInferResponse_InferOutputTensor, n)
	out.Outputs = make([]*pb.ModelInferResponse_InferOutputTensor, n)
	if raw {
		out.RawOutputContents = make([][]byte, n)
	}
	for i := range resp.Outputs {
		t := &resp.Outputs[i]
		// The model made this tensor, so a problem is the model's
		// (INTERNAL), not the client's. A valid tensor has at most one
		// element per data byte, which bounds the element count without a
		// configured limit.
		if err := t.Validate(int64(len(t.Data)) + 1); err != nil {
			return nil, fmt.Errorf("%w: output %q: %v", errBadOutput, t.Name, err)
		}
		o := &tensors[i]
		o.Name, o.Datatype, o.Shape = t.Name, t.DataType.String(), []int64(t.Shape)
		if raw {
			out.RawOutputContents[i] = t.Data
		} else {
			o.Contents = toContents(t)
		}
		out.Outputs[i] = o
	}
	return out, nil
}

// toContents puts a validated tensor's data into its typed field.
func toContents(t *tensor.Tensor) *pb.InferTensorContents {
	c := &pb.InferTensorContents{}
	d := t.Data
	switch t.DataType {
	case tensor.Bool:
		c.BoolContents = make([]bool, len(d))
		for i, b := range d {
			c.BoolContents[i] = b != 0
		}
	case tensor.Int8:
		c.IntContents = widen[int32](tensor.View[int8](d))
	case tensor.Int16:
		c.IntContents = widen[int32](tensor.View[int16](d))
	case tensor.Int32:
		c.IntContents = tensor.View[int32](d)
	case tensor.Int64:
		c.Int64Contents = tensor.View[int64](d)
	case tensor.Uint8:
		c.UintContents = widen[uint32](d)
	case tensor.Uint16:
		c.UintContents = widen[uint32](tensor.View[uint16](d))
	case tensor.Uint32:
		c.UintContents = tensor.View[uint32](d)
	case tensor.Uint64:
		c.Uint64Contents = tensor.View[uint64](d)
	case tensor.FP32:
		c.Fp32Contents = tensor.View[float32](d)
	case tensor.FP64:
		c.Fp64Contents = tensor.View[float64](d)
	case tensor.Bytes:
		c.BytesContents = splitBytes(d)
	}
	return c
}

func widen[T int32 | uint32, S int8 | int16 | uint8 | uint16](src []S) []T {
	out := make([]T, len(src))
	for i, v := range src {
		out[i] = T(v)
	}
	return out
}

// splitBytes returns the elements of validated BYTES data, sharing it.
func splitBytes(d []byte) [][]byte {
	n, _ := tensor.CountBytesElements(d)
	out := make([][]byte, 0, n)
	for len(d) >= 4 {
		l := binary.LittleEndian.Uint32(d)
		d = d[4:]
		if uint64(l) > uint64(len(d)) {
			break // cannot happen after Validate
		}
		out = append(out, d[:l:l])
		d = d[l:]
	}
	return out
}
