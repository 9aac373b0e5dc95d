package inferencepb

import (
	"math"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The helpers below build protobuf wire bytes by hand, field by field, so the
// tests check the generated types against the protocol's published field
// numbers rather than against themselves. A field appends one encoded field;
// msg concatenates fields into a message body.
type field func([]byte) []byte

func msg(fields ...field) []byte {
	b := []byte{}
	for _, f := range fields {
		b = f(b)
	}
	return b
}

// bytesField writes a length-delimited field: string, bytes, packed list or message.
func bytesField(n protowire.Number, v []byte) field {
	return func(b []byte) []byte {
		b = protowire.AppendTag(b, n, protowire.BytesType)
		return protowire.AppendBytes(b, v)
	}
}

func str(n protowire.Number, s string) field { return bytesField(n, []byte(s)) }

func raw(n protowire.Number, v []byte) field { return bytesField(n, v) }

// sub writes a nested message field.
func sub(n protowire.Number, fields ...field) field { return bytesField(n, msg(fields...)) }

// entry writes one entry of a map<string, Message> field: key = 1, value = 2.
func entry(n protowire.Number, key string, value ...field) field {
	return sub(n, str(1, key), sub(2, value...))
}

func varint(n protowire.Number, v uint64) field {
	return func(b []byte) []byte {
		b = protowire.AppendTag(b, n, protowire.VarintType)
		return protowire.AppendVarint(b, v)
	}
}

// sint writes an int32/int64 varint field (negative values take ten bytes).
func sint(n protowire.Number, v int64) field { return varint(n, uint64(v)) }

func fixed64(n protowire.Number, v uint64) field {
	return func(b []byte) []byte {
		b = protowire.AppendTag(b, n, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, v)
	}
}

// packed writes a packed repeated varint field (proto3's default encoding).
func packed(n protowire.Number, vs ...int64) field {
	var body []byte
	for _, v := range vs {
		body = protowire.AppendVarint(body, uint64(v))
	}
	return bytesField(n, body)
}

// packedFloats writes a packed repeated float field.
func packedFloats(n protowire.Number, vs ...float32) field {
	var body []byte
	for _, v := range vs {
		body = protowire.AppendFixed32(body, math.Float32bits(v))
	}
	return bytesField(n, body)
}

// packedDoubles writes a packed repeated double field.
func packedDoubles(n protowire.Number, vs ...float64) field {
	var body []byte
	for _, v := range vs {
		body = protowire.AppendFixed64(body, math.Float64bits(v))
	}
	return bytesField(n, body)
}

func TestWireCompatibility(t *testing.T) {
	tests := []struct {
		name string
		wire []byte
		got  proto.Message // empty message to decode into
		want proto.Message
	}{
		{
			name: "ModelInferRequest with typed contents",
			wire: msg(
				str(1, "iris"),                       // model_name
				str(2, "1"),                          // model_version
				str(3, "req-7"),                      // id
				entry(4, "priority", varint(2, 2)),   // parameters: int64_param
				entry(4, "timeout", varint(5, 1500)), // parameters: uint64_param
				sub(5, // inputs
					str(1, "input"),                       // name
					str(2, "FP32"),                        // datatype
					packed(3, 2, 4),                       // shape
					entry(4, "binary_data", varint(1, 0)), // parameters: bool_param
					sub(5, packedFloats(6, 5.1, 3.5, 1.4, 0.2, 6.3, 3.4, 5.6, 2.4)), // contents.fp32_contents
				),
				sub(6, str(1, "label")), // outputs
				sub(6, // outputs
					str(1, "probabilities"),
					entry(2, "binary_data", varint(1, 1)), // parameters
				),
			),
			got: &ModelInferRequest{},
			want: &ModelInferRequest{
				ModelName:    "iris",
				ModelVersion: "1",
				Id:           "req-7",
				Parameters: map[string]*InferParameter{
					"priority": {ParameterChoice: &InferParameter_Int64Param{Int64Param: 2}},
					"timeout":  {ParameterChoice: &InferParameter_Uint64Param{Uint64Param: 1500}},
				},
				Inputs: []*ModelInferRequest_InferInputTensor{{
					Name:     "input",
					Datatype: "FP32",
					Shape:    []int64{2, 4},
					Parameters: map[string]*InferParameter{
						"binary_data": {ParameterChoice: &InferParameter_BoolParam{BoolParam: false}},
					},
					Contents: &InferTensorContents{
						Fp32Contents: []float32{5.1, 3.5, 1.4, 0.2, 6.3, 3.4, 5.6, 2.4},
					},
				}},
				Outputs: []*ModelInferRequest_InferRequestedOutputTensor{
					{Name: "label"},
					{Name: "probabilities", Parameters: map[string]*InferParameter{
						"binary_data": {ParameterChoice: &InferParameter_BoolParam{BoolParam: true}},
					}},
				},
			},
		},
		{
			name: "ModelInferRequest with raw_input_contents and unpacked shape",
			wire: msg(
				str(1, "digits"),
				sub(5, str(1, "pixels"), str(2, "FP32"), varint(3, 1), varint(3, 64)), // shape unpacked, one element per tag
				sub(5, str(1, "mask"), str(2, "BOOL"), packed(3, 1, 2)),
				raw(7, []byte{0x00, 0x00, 0x80, 0x3f}), // raw_input_contents[0]
				raw(7, []byte{0x01, 0x00}),             // raw_input_contents[1]
			),
			got: &ModelInferRequest{},
			want: &ModelInferRequest{
				ModelName: "digits",
				Inputs: []*ModelInferRequest_InferInputTensor{
					{Name: "pixels", Datatype: "FP32", Shape: []int64{1, 64}},
					{Name: "mask", Datatype: "BOOL", Shape: []int64{1, 2}},
				},
				RawInputContents: [][]byte{{0x00, 0x00, 0x80, 0x3f}, {0x01, 0x00}},
			},
		},
		{
			name: "ModelInferResponse",
			wire: msg(
				str(1, "iris"),
				str(2, "1"),
				str(3, "req-7"),
				entry(4, "sequence_end", str(3, "yes")), // parameters: string_param
				sub(5, str(1, "probabilities"), str(2, "FP32"), packed(3, 1, 3)),
				sub(5, str(1, "label"), str(2, "INT64"), packed(3, 1), entry(4, "binary_data_size", varint(2, 8))),
				raw(6, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}), // raw_output_contents[0]
				raw(6, []byte{2, 0, 0, 0, 0, 0, 0, 0}),                // raw_output_contents[1]
			),
			got: &ModelInferResponse{},
			want: &ModelInferResponse{
				ModelName:    "iris",
				ModelVersion: "1",
				Id:           "req-7",
				Parameters: map[string]*InferParameter{
					"sequence_end": {ParameterChoice: &InferParameter_StringParam{StringParam: "yes"}},
				},
				Outputs: []*ModelInferResponse_InferOutputTensor{
					{Name: "probabilities", Datatype: "FP32", Shape: []int64{1, 3}},
					{Name: "label", Datatype: "INT64", Shape: []int64{1}, Parameters: map[string]*InferParameter{
						"binary_data_size": {ParameterChoice: &InferParameter_Int64Param{Int64Param: 8}},
					}},
				},
				RawOutputContents: [][]byte{
					{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
					{2, 0, 0, 0, 0, 0, 0, 0},
				},
			},
		},
		{
			name: "ModelInferResponse typed output contents",
			wire: msg(
				sub(5, str(1, "label"), str(2, "INT64"), packed(3, 2),
					sub(5, packed(3, 7, -1)), // contents.int64_contents
				),
			),
			got: &ModelInferResponse{},
			want: &ModelInferResponse{Outputs: []*ModelInferResponse_InferOutputTensor{{
				Name: "label", Datatype: "INT64", Shape: []int64{2},
				Contents: &InferTensorContents{Int64Contents: []int64{7, -1}},
			}}},
		},
		{
			name: "ModelStreamInferResponse",
			wire: msg(
				str(1, "model 'x' is not ready"),  // error_message
				sub(2, str(1, "x"), str(3, "s1")), // infer_response
			),
			got: &ModelStreamInferResponse{},
			want: &ModelStreamInferResponse{
				ErrorMessage:  "model 'x' is not ready",
				InferResponse: &ModelInferResponse{ModelName: "x", Id: "s1"},
			},
		},
		{
			name: "InferTensorContents every field",
			wire: msg(
				packed(1, 1, 0),                  // bool_contents
				packed(2, -8, 16),                // int_contents (int32)
				packed(3, -64, 1<<40),            // int64_contents
				packed(4, 8, 4000000000),         // uint_contents (uint32)
				packed(5, 1<<62),                 // uint64_contents
				packedFloats(6, 0.5, -2),         // fp32_contents
				packedDoubles(7, 0.25, 1e300),    // fp64_contents
				raw(8, []byte("a")), raw(8, nil), // bytes_contents
			),
			got: &InferTensorContents{},
			want: &InferTensorContents{
				BoolContents:   []bool{true, false},
				IntContents:    []int32{-8, 16},
				Int64Contents:  []int64{-64, 1 << 40},
				UintContents:   []uint32{8, 4000000000},
				Uint64Contents: []uint64{1 << 62},
				Fp32Contents:   []float32{0.5, -2},
				Fp64Contents:   []float64{0.25, 1e300},
				BytesContents:  [][]byte{[]byte("a"), {}},
			},
		},
		{
			name: "InferParameter bool_param",
			wire: msg(varint(1, 1)),
			got:  &InferParameter{},
			want: &InferParameter{ParameterChoice: &InferParameter_BoolParam{BoolParam: true}},
		},
		{
			name: "InferParameter int64_param negative",
			wire: msg(sint(2, -5)),
			got:  &InferParameter{},
			want: &InferParameter{ParameterChoice: &InferParameter_Int64Param{Int64Param: -5}},
		},
		{
			name: "InferParameter string_param",
			wire: msg(str(3, "high")),
			got:  &InferParameter{},
			want: &InferParameter{ParameterChoice: &InferParameter_StringParam{StringParam: "high"}},
		},
		{
			name: "InferParameter double_param",
			wire: msg(fixed64(4, math.Float64bits(0.125))),
			got:  &InferParameter{},
			want: &InferParameter{ParameterChoice: &InferParameter_DoubleParam{DoubleParam: 0.125}},
		},
		{
			name: "InferParameter uint64_param",
			wire: msg(varint(5, math.MaxUint64)),
			got:  &InferParameter{},
			want: &InferParameter{ParameterChoice: &InferParameter_Uint64Param{Uint64Param: math.MaxUint64}},
		},
		{
			name: "ModelStatisticsResponse",
			wire: msg(sub(1, // model_stats
				str(1, "iris"),               // name
				str(2, "1"),                  // version
				varint(3, 1_750_000_000_123), // last_inference (ms)
				varint(4, 96),                // inference_count
				varint(5, 3),                 // execution_count
				sub(6, // inference_stats
					sub(1, varint(1, 3), varint(2, 9000)), // success{count, ns}
					sub(2, varint(1, 1), varint(2, 10)),   // fail
					sub(3, varint(1, 3), varint(2, 300)),  // queue
					sub(4, varint(1, 3), varint(2, 40)),   // compute_input
					sub(5, varint(1, 3), varint(2, 500)),  // compute_infer
					sub(6, varint(1, 3), varint(2, 60)),   // compute_output
					sub(7, varint(1, 2), varint(2, 7)),    // cache_hit
					sub(8, varint(1, 1), varint(2, 8)),    // cache_miss
				),
				sub(7, // batch_stats
					varint(1, 32),                        // batch_size
					sub(2, varint(1, 3), varint(2, 40)),  // compute_input
					sub(3, varint(1, 3), varint(2, 500)), // compute_infer
					sub(4, varint(1, 3), varint(2, 60)),  // compute_output
				),
				sub(8, str(1, "CPU"), sint(2, 0), varint(3, 1<<20)), // memory_usage{type, id, byte_size}
				entry(9, "", // response_stats
					sub(1, varint(1, 1), varint(2, 11)), // compute_infer
					sub(2, varint(1, 1), varint(2, 12)), // compute_output
					sub(3, varint(1, 1), varint(2, 13)), // success
					sub(4, varint(1, 1), varint(2, 14)), // fail
					sub(5, varint(1, 1), varint(2, 15)), // empty_response
					sub(6, varint(1, 1), varint(2, 16)), // cancel
				),
			)),
			got: &ModelStatisticsResponse{},
			want: &ModelStatisticsResponse{ModelStats: []*ModelStatistics{{
				Name:           "iris",
				Version:        "1",
				LastInference:  1_750_000_000_123,
				InferenceCount: 96,
				ExecutionCount: 3,
				InferenceStats: &InferStatistics{
					Success:       &StatisticDuration{Count: 3, Ns: 9000},
					Fail:          &StatisticDuration{Count: 1, Ns: 10},
					Queue:         &StatisticDuration{Count: 3, Ns: 300},
					ComputeInput:  &StatisticDuration{Count: 3, Ns: 40},
					ComputeInfer:  &StatisticDuration{Count: 3, Ns: 500},
					ComputeOutput: &StatisticDuration{Count: 3, Ns: 60},
					CacheHit:      &StatisticDuration{Count: 2, Ns: 7},
					CacheMiss:     &StatisticDuration{Count: 1, Ns: 8},
				},
				BatchStats: []*InferBatchStatistics{{
					BatchSize:     32,
					ComputeInput:  &StatisticDuration{Count: 3, Ns: 40},
					ComputeInfer:  &StatisticDuration{Count: 3, Ns: 500},
					ComputeOutput: &StatisticDuration{Count: 3, Ns: 60},
				}},
				MemoryUsage: []*MemoryUsage{{Type: "CPU", Id: 0, ByteSize: 1 << 20}},
				ResponseStats: map[string]*InferResponseStatistics{"": {
					ComputeInfer:  &StatisticDuration{Count: 1, Ns: 11},
					ComputeOutput: &StatisticDuration{Count: 1, Ns: 12},
					Success:       &StatisticDuration{Count: 1, Ns: 13},
					Fail:          &StatisticDuration{Count: 1, Ns: 14},
					EmptyResponse: &StatisticDuration{Count: 1, Ns: 15},
					Cancel:        &StatisticDuration{Count: 1, Ns: 16},
				}},
			}}},
		},
		{
			name: "ModelStatisticsRequest",
			wire: msg(str(1, "iris"), str(2, "2")),
			got:  &ModelStatisticsRequest{},
			want: &ModelStatisticsRequest{Name: "iris", Version: "2"},
		},
		{
			name: "RepositoryModelLoadRequest",
			wire: msg(
				str(1, "default"), // repository_name
				str(2, "digits"),  // model_name
				entry(3, "config", str(3, `{"max_batch_size":8}`)),        // parameters: string_param
				entry(3, "file:1/model.onnx", raw(4, []byte{0x08, 0x08})), // bytes_param
				entry(3, "unload_dependents", varint(1, 1)),               // bool_param
				entry(3, "retries", sint(2, 3)),                           // int64_param
			),
			got: &RepositoryModelLoadRequest{},
			want: &RepositoryModelLoadRequest{
				RepositoryName: "default",
				ModelName:      "digits",
				Parameters: map[string]*ModelRepositoryParameter{
					"config":            {ParameterChoice: &ModelRepositoryParameter_StringParam{StringParam: `{"max_batch_size":8}`}},
					"file:1/model.onnx": {ParameterChoice: &ModelRepositoryParameter_BytesParam{BytesParam: []byte{0x08, 0x08}}},
					"unload_dependents": {ParameterChoice: &ModelRepositoryParameter_BoolParam{BoolParam: true}},
					"retries":           {ParameterChoice: &ModelRepositoryParameter_Int64Param{Int64Param: 3}},
				},
			},
		},
		{
			name: "RepositoryModelUnloadRequest",
			wire: msg(str(2, "iris"), entry(3, "unload_dependents", varint(1, 1))),
			got:  &RepositoryModelUnloadRequest{},
			want: &RepositoryModelUnloadRequest{
				ModelName: "iris",
				Parameters: map[string]*ModelRepositoryParameter{
					"unload_dependents": {ParameterChoice: &ModelRepositoryParameter_BoolParam{BoolParam: true}},
				},
			},
		},
		{
			name: "RepositoryIndexRequest",
			wire: msg(str(1, "default"), varint(2, 1)),
			got:  &RepositoryIndexRequest{},
			want: &RepositoryIndexRequest{RepositoryName: "default", Ready: true},
		},
		{
			name: "RepositoryIndexResponse",
			wire: msg(
				sub(1, str(1, "iris"), str(2, "1"), str(3, "READY")),
				sub(1, str(1, "broken"), str(2, "3"), str(3, "UNAVAILABLE"), str(4, "bad graph")),
			),
			got: &RepositoryIndexResponse{},
			want: &RepositoryIndexResponse{Models: []*RepositoryIndexResponse_ModelIndex{
				{Name: "iris", Version: "1", State: "READY"},
				{Name: "broken", Version: "3", State: "UNAVAILABLE", Reason: "bad graph"},
			}},
		},
		{
			name: "health and readiness",
			wire: msg(str(1, "iris"), str(2, "1")),
			got:  &ModelReadyRequest{},
			want: &ModelReadyRequest{Name: "iris", Version: "1"},
		},
		{
			name: "ServerLiveResponse",
			wire: msg(varint(1, 1)),
			got:  &ServerLiveResponse{},
			want: &ServerLiveResponse{Live: true},
		},
		{
			name: "ServerReadyResponse",
			wire: msg(varint(1, 1)),
			got:  &ServerReadyResponse{},
			want: &ServerReadyResponse{Ready: true},
		},
		{
			name: "ServerMetadataResponse",
			wire: msg(str(1, "kiln"), str(2, "0.1.0"), str(3, "binary_tensor_data"), str(3, "statistics")),
			got:  &ServerMetadataResponse{},
			want: &ServerMetadataResponse{Name: "kiln", Version: "0.1.0", Extensions: []string{"binary_tensor_data", "statistics"}},
		},
		{
			name: "ModelMetadataResponse",
			wire: msg(
				str(1, "iris"),
				str(2, "1"), str(2, "2"), // versions
				str(3, "onnx_onnxv1"), // platform
				sub(4, str(1, "input"), str(2, "FP32"), packed(3, -1, 4)),
				sub(5, str(1, "label"), str(2, "INT64"), packed(3, -1)),
			),
			got: &ModelMetadataResponse{},
			want: &ModelMetadataResponse{
				Name:     "iris",
				Versions: []string{"1", "2"},
				Platform: "onnx_onnxv1",
				Inputs:   []*ModelMetadataResponse_TensorMetadata{{Name: "input", Datatype: "FP32", Shape: []int64{-1, 4}}},
				Outputs:  []*ModelMetadataResponse_TensorMetadata{{Name: "label", Datatype: "INT64", Shape: []int64{-1}}},
			},
		},
		{
			name: "ModelConfigResponse",
			wire: msg(sub(1, // config
				str(1, "iris"),               // name
				str(2, "onnxruntime_onnx"),   // platform
				sub(3, sub(1, varint(1, 2))), // version_policy.latest.num_versions
				varint(4, 64),                // max_batch_size
				sub(5, // input
					str(1, "input"),                       // name
					varint(2, uint64(DataType_TYPE_FP32)), // data_type
					varint(3, 1),                          // format = FORMAT_NHWC
					packed(4, 4),                          // dims
					sub(5, packed(1, 2, 2)),               // reshape.shape
					varint(6, 1),                          // is_shape_tensor
					varint(7, 1),                          // allow_ragged_batch
					varint(8, 1),                          // optional
				),
				sub(6, // output
					str(1, "label"),                        // name
					varint(2, uint64(DataType_TYPE_INT64)), // data_type
					packed(3, -1),                          // dims
					str(4, "labels.txt"),                   // label_filename
					sub(5, packed(1, 1)),                   // reshape.shape
					varint(6, 1),                           // is_shape_tensor
				),
				sub(7, str(1, "iris_0"), varint(2, 2), varint(4, 2)), // instance_group{name, count, kind = KIND_CPU}
				str(8, "model.onnx"), // default_model_filename
				sub(11, // dynamic_batching
					packed(1, 16, 32), // preferred_batch_size
					varint(2, 1000),   // max_queue_delay_microseconds
					varint(3, 1),      // preserve_ordering
					varint(4, 2),      // priority_levels
					varint(5, 2),      // default_priority_level
					sub(6, varint(1, 1), varint(2, 500), varint(3, 1), varint(4, 1024)), // default_queue_policy
					sub(7, varint(1, 1), sub(2, varint(4, 8))),                          // priority_queue_policy{1: {max_queue_size}}
				),
				entry(14, "intra_op_threads", str(1, "1")), // parameters{string_value}
				sub(16, // model_warmup
					str(1, "zeros"), // name
					varint(2, 4),    // batch_size
					entry(3, "input", // inputs
						varint(1, uint64(DataType_TYPE_FP32)), // data_type
						packed(2, 4),                          // dims
						varint(3, 1),                          // zero_data
					),
					varint(4, 2), // count
				),
				sub(16, str(1, "from-file"), entry(3, "input", str(5, "sample.bin"))), // input_data_file
				str(17, "onnx"),       // backend
				sub(24, varint(1, 1)), // response_cache.enable
			)),
			got: &ModelConfigResponse{},
			want: &ModelConfigResponse{Config: &ModelConfig{
				Name:     "iris",
				Platform: "onnxruntime_onnx",
				VersionPolicy: &ModelVersionPolicy{PolicyChoice: &ModelVersionPolicy_Latest_{
					Latest: &ModelVersionPolicy_Latest{NumVersions: 2},
				}},
				MaxBatchSize: 64,
				Input: []*ModelInput{{
					Name:             "input",
					DataType:         DataType_TYPE_FP32,
					Format:           ModelInput_FORMAT_NHWC,
					Dims:             []int64{4},
					Reshape:          &ModelTensorReshape{Shape: []int64{2, 2}},
					IsShapeTensor:    true,
					AllowRaggedBatch: true,
					Optional:         true,
				}},
				Output: []*ModelOutput{{
					Name:          "label",
					DataType:      DataType_TYPE_INT64,
					Dims:          []int64{-1},
					LabelFilename: "labels.txt",
					Reshape:       &ModelTensorReshape{Shape: []int64{1}},
					IsShapeTensor: true,
				}},
				InstanceGroup:        []*ModelInstanceGroup{{Name: "iris_0", Count: 2, Kind: ModelInstanceGroup_KIND_CPU}},
				DefaultModelFilename: "model.onnx",
				DynamicBatching: &ModelDynamicBatching{
					PreferredBatchSize:        []int32{16, 32},
					MaxQueueDelayMicroseconds: 1000,
					PreserveOrdering:          true,
					PriorityLevels:            2,
					DefaultPriorityLevel:      2,
					DefaultQueuePolicy: &ModelQueuePolicy{
						TimeoutAction:              ModelQueuePolicy_DELAY,
						DefaultTimeoutMicroseconds: 500,
						AllowTimeoutOverride:       true,
						MaxQueueSize:               1024,
					},
					PriorityQueuePolicy: map[uint64]*ModelQueuePolicy{1: {MaxQueueSize: 8}},
				},
				Parameters: map[string]*ModelParameter{"intra_op_threads": {StringValue: "1"}},
				ModelWarmup: []*ModelWarmup{
					{
						Name:      "zeros",
						BatchSize: 4,
						Inputs: map[string]*ModelWarmup_Input{"input": {
							DataType:      DataType_TYPE_FP32,
							Dims:          []int64{4},
							InputDataType: &ModelWarmup_Input_ZeroData{ZeroData: true},
						}},
						Count: 2,
					},
					{
						Name: "from-file",
						Inputs: map[string]*ModelWarmup_Input{"input": {
							InputDataType: &ModelWarmup_Input_InputDataFile{InputDataFile: "sample.bin"},
						}},
					},
				},
				Backend:       "onnx",
				ResponseCache: &ModelResponseCache{Enable: true},
			}},
		},
		{
			name: "ModelVersionPolicy all",
			wire: msg(sub(2)),
			got:  &ModelVersionPolicy{},
			want: &ModelVersionPolicy{PolicyChoice: &ModelVersionPolicy_All_{All: &ModelVersionPolicy_All{}}},
		},
		{
			name: "ModelVersionPolicy specific",
			wire: msg(sub(3, packed(1, 1, 3))),
			got:  &ModelVersionPolicy{},
			want: &ModelVersionPolicy{PolicyChoice: &ModelVersionPolicy_Specific_{
				Specific: &ModelVersionPolicy_Specific{Versions: []int64{1, 3}},
			}},
		},
		{
			name: "ModelWarmup random_data",
			wire: msg(entry(3, "x", varint(1, uint64(DataType_TYPE_BF16)), varint(4, 1))),
			got:  &ModelWarmup{},
			want: &ModelWarmup{Inputs: map[string]*ModelWarmup_Input{"x": {
				DataType:      DataType_TYPE_BF16,
				InputDataType: &ModelWarmup_Input_RandomData{RandomData: true},
			}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := proto.Unmarshal(tt.wire, tt.got); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if unknown := unknownFields(tt.got.ProtoReflect()); len(unknown) > 0 {
				t.Errorf("fields not recognised (wrong number or type): %v", unknown)
			}
			if !proto.Equal(tt.got, tt.want) {
				t.Errorf("decoded\n%s\nwant\n%s", prototext.Format(tt.got), prototext.Format(tt.want))
			}
		})
	}
}

// unknownFields lists the messages, anywhere in m, that kept bytes they could
// not match to a declared field.
func unknownFields(m protoreflect.Message) []string {
	var out []string
	if len(m.GetUnknown()) > 0 {
		out = append(out, string(m.Descriptor().FullName()))
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				out = append(out, unknownFields(mv.Message())...)
				return true
			})
		case fd.IsList() && fd.Message() != nil:
			for i := range v.List().Len() {
				out = append(out, unknownFields(v.List().Get(i).Message())...)
			}
		case !fd.IsMap() && !fd.IsList() && fd.Message() != nil:
			out = append(out, unknownFields(v.Message())...)
		}
		return true
	})
	return out
}

// TestDataTypeNumbers pins the DataType enum to the protocol's numbers.
func TestDataTypeNumbers(t *testing.T) {
	want := map[string]int32{
		"TYPE_INVALID": 0, "TYPE_BOOL": 1, "TYPE_UINT8": 2, "TYPE_UINT16": 3, "TYPE_UINT32": 4,
		"TYPE_UINT64": 5, "TYPE_INT8": 6, "TYPE_INT16": 7, "TYPE_INT32": 8, "TYPE_INT64": 9,
		"TYPE_FP16": 10, "TYPE_FP32": 11, "TYPE_FP64": 12, "TYPE_STRING": 13, "TYPE_BF16": 14,
	}
	if len(DataType_name) != len(want) {
		t.Errorf("DataType has %d values, want %d", len(DataType_name), len(want))
	}
	for name, num := range want {
		if got, ok := DataType_value[name]; !ok || got != num {
			t.Errorf("DataType %s = %d (present %v), want %d", name, got, ok, num)
		}
	}
}

// TestServiceDescriptor checks the names clients put on the wire: the
// package, the service and every method path, and which RPC streams.
func TestServiceDescriptor(t *testing.T) {
	if got := GRPCInferenceService_ServiceDesc.ServiceName; got != "inference.GRPCInferenceService" {
		t.Fatalf("service name %q", got)
	}
	var unary []string
	for _, m := range GRPCInferenceService_ServiceDesc.Methods {
		unary = append(unary, m.MethodName)
	}
	slices.Sort(unary)
	wantUnary := []string{
		"ModelConfig", "ModelInfer", "ModelMetadata", "ModelReady", "ModelStatistics",
		"RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload",
		"ServerLive", "ServerMetadata", "ServerReady",
	}
	if !slices.Equal(unary, wantUnary) {
		t.Errorf("unary methods %v, want %v", unary, wantUnary)
	}
	streams := GRPCInferenceService_ServiceDesc.Streams
	if len(streams) != 1 || streams[0].StreamName != "ModelStreamInfer" || !streams[0].ClientStreams || !streams[0].ServerStreams {
		t.Errorf("streams %+v, want one bidirectional ModelStreamInfer", streams)
	}
	if GRPCInferenceService_ModelInfer_FullMethodName != "/inference.GRPCInferenceService/ModelInfer" {
		t.Errorf("ModelInfer path %q", GRPCInferenceService_ModelInfer_FullMethodName)
	}
	for _, m := range []proto.Message{&ModelConfig{}, &ModelInferRequest{}, &ModelStreamInferResponse{}} {
		if got := m.ProtoReflect().Descriptor().ParentFile().Package(); got != "inference" {
			t.Errorf("%T is in package %q, want inference", m, got)
		}
	}
}
