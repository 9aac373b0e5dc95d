package grpcapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"unsafe"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/kilnai/kiln/internal/batching"
	"github.com/kilnai/kiln/internal/config"
	pb "github.com/kilnai/kiln/internal/grpcapi/inferencepb"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/serving"
	"github.com/kilnai/kiln/internal/tensor"
)

func TestCodeOf(t *testing.T) {
	tests := []struct {
		err  error
		want codes.Code
	}{
		{inference.ErrInvalidInput, codes.InvalidArgument},
		{tensor.ErrInvalid, codes.InvalidArgument},
		{tensor.ErrTooLarge, codes.InvalidArgument},
		{batching.ErrTooLarge, codes.InvalidArgument},
		{batching.ErrInvalid, codes.InvalidArgument},
		{serving.ErrModelNotFound, codes.NotFound},
		{inference.ErrNotFound, codes.NotFound},
		{serving.ErrModelNotReady, codes.Unavailable},
		{inference.ErrUnavailable, codes.Unavailable},
		{inference.ErrClosed, codes.Unavailable},
		{batching.ErrClosed, codes.Unavailable},
		{batching.ErrQueueFull, codes.Unavailable},
		{fmt.Errorf("%w while queued: %w", batching.ErrDeadline, context.DeadlineExceeded), codes.DeadlineExceeded},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{fmt.Errorf("%w while executing: %w", batching.ErrCanceled, context.Canceled), codes.Canceled},
		{context.Canceled, codes.Canceled},
		{inference.ErrUnsupported, codes.Unimplemented},
		{errBadOutput, codes.Internal},
		{batching.ErrInternal, codes.Internal},
		{errors.New("boom"), codes.Internal},
	}
	for _, tc := range tests {
		t.Run(tc.err.Error(), func(t *testing.T) {
			if got := codeOf(fmt.Errorf("model %q: %w", "m", tc.err)); got != tc.want {
				t.Fatalf("codeOf(%v) = %s, want %s", tc.err, got, tc.want)
			}
		})
	}
}

// TestDecodeShares: raw contents and typed fields of native width become
// tensor data without a copy.
func TestDecodeShares(t *testing.T) {
	raw := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	fp := []float32{1, 2}
	tests := []struct {
		name string
		req  *pb.ModelInferRequest
		want unsafe.Pointer
	}{
		{"raw", &pb.ModelInferRequest{
			Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "a", Datatype: "FP32", Shape: []int64{2}}},
			RawInputContents: [][]byte{raw},
		}, unsafe.Pointer(&raw[0])},
		{"fp32_contents", &pb.ModelInferRequest{
			Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "a", Datatype: "FP32", Shape: []int64{2}, Contents: &pb.InferTensorContents{Fp32Contents: fp}}},
		}, unsafe.Pointer(&fp[0])},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sreq, _, err := decodeRequest(tc.req, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := unsafe.Pointer(unsafe.SliceData(sreq.Inputs[0].Data)); got != tc.want {
				t.Fatal("the tensor data is a copy")
			}
		})
	}
}

func TestDecodeParameters(t *testing.T) {
	tests := []struct {
		name     string
		params   map[string]*pb.InferParameter
		priority int
		timeout  string
		code     codes.Code
	}{
		{"none", nil, 0, "0s", codes.OK},
		{"priority int64", map[string]*pb.InferParameter{"priority": i64p(2)}, 2, "0s", codes.OK},
		{"priority uint64", map[string]*pb.InferParameter{"priority": u64p(3)}, 3, "0s", codes.OK},
		{"priority too large", map[string]*pb.InferParameter{"priority": u64p(1 << 40)}, 0, "", codes.InvalidArgument},
		{"priority bool", map[string]*pb.InferParameter{"priority": boolp(true)}, 0, "", codes.InvalidArgument},
		{"priority empty", map[string]*pb.InferParameter{"priority": {}}, 0, "", codes.InvalidArgument},
		{"timeout", map[string]*pb.InferParameter{"timeout": i64p(1500)}, 0, "1.5ms", codes.OK},
		{"timeout saturates", map[string]*pb.InferParameter{"timeout": u64p(1 << 62)}, 0, "2562047h47m16.854775s", codes.OK},
		{"timeout negative", map[string]*pb.InferParameter{"timeout": i64p(-1)}, 0, "", codes.InvalidArgument},
		{"timeout double", map[string]*pb.InferParameter{"timeout": {ParameterChoice: &pb.InferParameter_DoubleParam{DoubleParam: 1}}}, 0, "", codes.InvalidArgument},
		{"sequence start", map[string]*pb.InferParameter{"sequence_start": boolp(true)}, 0, "", codes.Unimplemented},
		{"string sequence id", map[string]*pb.InferParameter{"sequence_id": {ParameterChoice: &pb.InferParameter_StringParam{StringParam: "s1"}}}, 0, "", codes.Unimplemented},
		{"sequence end false", map[string]*pb.InferParameter{"sequence_end": boolp(false)}, 0, "0s", codes.OK},
		{"binary_data_output ignored", map[string]*pb.InferParameter{"binary_data_output": boolp(true)}, 0, "0s", codes.OK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sreq, _, err := decodeRequest(&pb.ModelInferRequest{ModelName: "m", Parameters: tc.params}, 0)
			if err != nil {
				if got := codeOf(err); got != tc.code {
					t.Fatalf("code %s, want %s (%v)", got, tc.code, err)
				}
				return
			}
			if tc.code != codes.OK {
				t.Fatalf("no error, want %s", tc.code)
			}
			if sreq.Priority != tc.priority || sreq.Timeout.String() != tc.timeout {
				t.Fatalf("priority %d timeout %v, want %d %s", sreq.Priority, sreq.Timeout, tc.priority, tc.timeout)
			}
		})
	}
}

func i64p(v int64) *pb.InferParameter {
	return &pb.InferParameter{ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: v}}
}

func u64p(v uint64) *pb.InferParameter {
	return &pb.InferParameter{ParameterChoice: &pb.InferParameter_Uint64Param{Uint64Param: v}}
}

func boolp(v bool) *pb.InferParameter {
	return &pb.InferParameter{ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: v}}
}

func TestEncodeResponse(t *testing.T) {
	fp32 := tensor.Tensor{Name: "a", DataType: tensor.FP32, Shape: tensor.Shape{2}, Data: le([]float32{1.5, -2})}
	fp16 := tensor.Tensor{Name: "h", DataType: tensor.FP16, Shape: tensor.Shape{1}, Data: []byte{0x00, 0x3c}}
	i8 := tensor.Tensor{Name: "b", DataType: tensor.Int8, Shape: tensor.Shape{2}, Data: []byte{0xff, 0x7f}}
	boolean := tensor.Tensor{Name: "c", DataType: tensor.Bool, Shape: tensor.Shape{2}, Data: []byte{0, 5}}
	str := tensor.Tensor{Name: "s", DataType: tensor.Bytes, Shape: tensor.Shape{2}, Data: []byte{1, 0, 0, 0, 'x', 0, 0, 0, 0}}
	tests := []struct {
		name    string
		outs    []tensor.Tensor
		raw     bool
		wantRaw bool
		want    []*pb.InferTensorContents // typed responses
		code    codes.Code
	}{
		{"typed", []tensor.Tensor{fp32, i8, boolean, str}, false, false, []*pb.InferTensorContents{
			{Fp32Contents: []float32{1.5, -2}}, {IntContents: []int32{-1, 127}}, {BoolContents: []bool{false, true}},
			{BytesContents: [][]byte{[]byte("x"), {}}},
		}, codes.OK},
		{"raw asked", []tensor.Tensor{fp32, i8}, true, true, nil, codes.OK},
		{"FP16 makes every output raw", []tensor.Tensor{fp32, fp16}, false, true, nil, codes.OK},
		{"no outputs", nil, false, false, nil, codes.OK},
		{"malformed output", []tensor.Tensor{{Name: "bad", DataType: tensor.FP32, Shape: tensor.Shape{2}, Data: []byte{1, 2, 3}}}, false, false, nil, codes.Internal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := encodeResponse(&serving.Response{Model: "m", Version: 3, Outputs: tc.outs}, "id-1", tc.raw)
			if tc.code != codes.OK {
				if got := codeOf(err); got != tc.code {
					t.Fatalf("code %s, want %s (%v)", got, tc.code, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.ModelName != "m" || resp.ModelVersion != "3" || resp.Id != "id-1" || len(resp.Outputs) != len(tc.outs) {
				t.Fatalf("response %v", resp)
			}
			for i, o := range resp.Outputs {
				in := tc.outs[i]
				if o.Name != in.Name || o.Datatype != in.DataType.String() || !in.Shape.Equal(o.Shape) {
					t.Fatalf("output %d header %v", i, o)
				}
				if tc.wantRaw {
					if o.Contents != nil || len(resp.RawOutputContents) != len(tc.outs) || !bytes.Equal(resp.RawOutputContents[i], in.Data) {
						t.Fatalf("output %d: want raw %v, got %v / %v", i, in.Data, o.Contents, resp.RawOutputContents)
					}
					continue
				}
				if len(resp.RawOutputContents) != 0 || !proto.Equal(o.Contents, tc.want[i]) {
					t.Fatalf("output %d: contents %v, want %v", i, o.Contents, tc.want[i])
				}
			}
		})
	}
}

func TestModelConfigWarmupAndCache(t *testing.T) {
	mbs := 4
	c := &config.Model{
		Name: "w", Backend: "onnx", MaxBatchSize: &mbs,
		Inputs:        []config.TensorConfig{{Name: "a", DataType: "FP32", Dims: []int64{-1}}, {Name: "b", DataType: "BYTES", Dims: []int64{1}}},
		Outputs:       []config.TensorConfig{{Name: "o", DataType: "FP32", Dims: []int64{-1}}},
		VersionPolicy: &config.VersionPolicy{Specific: []int64{1, 3}},
		Warmup: []config.Warmup{{Name: "s", BatchSize: 2, Count: 3, Inputs: map[string]config.WarmupInput{
			"a": {Dims: []int64{5}, RandomData: true},
			"b": {InputDataFile: "b.bin"},
		}}},
		ResponseCache: true,
	}
	want := &pb.ModelConfig{
		Name: "w", Backend: "onnxruntime", Platform: "onnxruntime_onnx", MaxBatchSize: 4,
		VersionPolicy: &pb.ModelVersionPolicy{PolicyChoice: &pb.ModelVersionPolicy_Specific_{Specific: &pb.ModelVersionPolicy_Specific{Versions: []int64{1, 3}}}},
		Input:         []*pb.ModelInput{{Name: "a", DataType: pb.DataType_TYPE_FP32, Dims: []int64{-1}}, {Name: "b", DataType: pb.DataType_TYPE_STRING, Dims: []int64{1}}},
		Output:        []*pb.ModelOutput{{Name: "o", DataType: pb.DataType_TYPE_FP32, Dims: []int64{-1}}},
		InstanceGroup: []*pb.ModelInstanceGroup{{Name: "w", Kind: pb.ModelInstanceGroup_KIND_CPU, Count: 1}},
		ModelWarmup: []*pb.ModelWarmup{{Name: "s", BatchSize: 2, Count: 3, Inputs: map[string]*pb.ModelWarmup_Input{
			"a": {DataType: pb.DataType_TYPE_FP32, Dims: []int64{5}, InputDataType: &pb.ModelWarmup_Input_RandomData{RandomData: true}},
			"b": {DataType: pb.DataType_TYPE_STRING, Dims: []int64{1}, InputDataType: &pb.ModelWarmup_Input_InputDataFile{InputDataFile: "b.bin"}},
		}}},
		ResponseCache: &pb.ModelResponseCache{Enable: true},
	}
	if got := modelConfig(c); !proto.Equal(got, want) {
		t.Fatalf("config\n got %v\nwant %v", got, want)
	}
}

// fuzzSeeds are valid and nearly valid requests for the fuzzer to mutate.
func fuzzSeeds() []*pb.ModelInferRequest {
	var seeds []*pb.ModelInferRequest
	for _, dt := range typedTypes {
		s := samples(dt)
		in := func() *pb.ModelInferRequest_InferInputTensor {
			return &pb.ModelInferRequest_InferInputTensor{Name: inName(dt), Datatype: dt.String(), Shape: []int64{1, 3}}
		}
		typed := in()
		typed.Contents = s.contents
		seeds = append(seeds,
			&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{typed}},
			&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{in()}, RawInputContents: [][]byte{s.raw}})
	}
	seeds = append(seeds,
		&pb.ModelInferRequest{ModelName: "m", Id: "x", Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "h", Datatype: "FP16", Shape: []int64{3}}, {Name: "b", Datatype: "BF16", Shape: []int64{0, 2}},
		}, RawInputContents: [][]byte{samples(tensor.FP16).raw, {}},
			Parameters: map[string]*pb.InferParameter{"priority": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 1}}},
			Outputs:    []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "o"}}},
		&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "big", Datatype: "INT8", Shape: []int64{1 << 31, 1 << 31, 0}},
		}},
	)
	return seeds
}

// FuzzModelInferRequest decodes arbitrary bytes as a ModelInferRequest and
// converts it as ModelInfer does. The conversion must not panic, must
// refuse with a client error (never INTERNAL), and what it accepts must be
// valid tensors that survive the trip through the response encoder and
// back unchanged.
func FuzzModelInferRequest(f *testing.F) {
	for _, s := range fuzzSeeds() {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	const limit = 1 << 12
	f.Fuzz(func(t *testing.T, data []byte) {
		var req pb.ModelInferRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		sreq, raw, err := decodeRequest(&req, limit)
		if err != nil {
			if c := codeOf(err); c != codes.InvalidArgument && c != codes.Unimplemented {
				t.Fatalf("refused with %s: %v", c, err)
			}
			return
		}
		for i := range sreq.Inputs {
			if err := sreq.Inputs[i].Validate(limit); err != nil {
				t.Fatalf("accepted an invalid tensor: %v", err)
			}
		}
		resp, err := encodeResponse(&serving.Response{Model: "m", Version: 1, Outputs: sreq.Inputs}, "id", raw)
		if err != nil {
			t.Fatalf("encoding accepted tensors: %v", err)
		}
		back := &pb.ModelInferRequest{ModelName: "m", RawInputContents: resp.RawOutputContents}
		for _, o := range resp.Outputs {
			back.Inputs = append(back.Inputs, &pb.ModelInferRequest_InferInputTensor{Name: o.Name, Datatype: o.Datatype, Shape: o.Shape, Contents: o.Contents})
		}
		again, _, err := decodeRequest(back, limit)
		if err != nil {
			t.Fatalf("decoding the encoded response: %v", err)
		}
		for i := range sreq.Inputs {
			a, b := sreq.Inputs[i], again.Inputs[i]
			if a.Name != b.Name || a.DataType != b.DataType || !a.Shape.Equal(b.Shape) || !bytes.Equal(a.Data, b.Data) {
				t.Fatalf("input %d changed in the round trip:\n%+v\n%+v", i, a, b)
			}
		}
	})
}
