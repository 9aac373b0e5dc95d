package grpcapi

import (
	"math"

	"github.com/kilnai/kiln/internal/config"
	pb "github.com/kilnai/kiln/internal/grpcapi/inferencepb"
	"github.com/kilnai/kiln/internal/tensor"
)

// configTypes maps Kiln's data types to ModelConfig's DataType enum.
var configTypes = [...]pb.DataType{
	tensor.Invalid: pb.DataType_TYPE_INVALID,
	tensor.Bool:    pb.DataType_TYPE_BOOL,
	tensor.Uint8:   pb.DataType_TYPE_UINT8,
	tensor.Uint16:  pb.DataType_TYPE_UINT16,
	tensor.Uint32:  pb.DataType_TYPE_UINT32,
	tensor.Uint64:  pb.DataType_TYPE_UINT64,
	tensor.Int8:    pb.DataType_TYPE_INT8,
	tensor.Int16:   pb.DataType_TYPE_INT16,
	tensor.Int32:   pb.DataType_TYPE_INT32,
	tensor.Int64:   pb.DataType_TYPE_INT64,
	tensor.FP16:    pb.DataType_TYPE_FP16,
	tensor.FP32:    pb.DataType_TYPE_FP32,
	tensor.FP64:    pb.DataType_TYPE_FP64,
	tensor.Bytes:   pb.DataType_TYPE_STRING,
	tensor.BF16:    pb.DataType_TYPE_BF16,
}

func configType(name string) pb.DataType {
	dt, err := tensor.ParseDataType(name)
	if err != nil || int(dt) >= len(configTypes) {
		return pb.DataType_TYPE_INVALID
	}
	return configTypes[dt]
}

// clamp32 converts a config integer to an int32 proto field.
func clamp32(v int) int32 { return int32(max(min(v, math.MaxInt32), math.MinInt32)) }

// modelConfig renders the effective model config as Triton's ModelConfig,
// field for field what the HTTP API's model-config endpoint returns
// (max_batch_size, input, output, instance_group, version_policy,
// dynamic_batching, parameters), plus model_warmup and response_cache.
func modelConfig(c *config.Model) *pb.ModelConfig {
	mbs := 0
	if c.MaxBatchSize != nil {
		mbs = *c.MaxBatchSize
	}
	backend, platform := c.Backend, ""
	if backend == "onnx" {
		backend, platform = "onnxruntime", "onnxruntime_onnx"
	}
	out := &pb.ModelConfig{
		Name:         c.Name,
		Platform:     platform,
		Backend:      backend,
		MaxBatchSize: clamp32(mbs),
		Input:        make([]*pb.ModelInput, len(c.Inputs)),
		Output:       make([]*pb.ModelOutput, len(c.Outputs)),
		InstanceGroup: []*pb.ModelInstanceGroup{{
			Name: c.Name, Kind: pb.ModelInstanceGroup_KIND_CPU, Count: clamp32(max(c.Instances, 1)),
		}},
		Parameters: make(map[string]*pb.ModelParameter, len(c.Parameters)),
	}
	for i, t := range c.Inputs {
		out.Input[i] = &pb.ModelInput{Name: t.Name, DataType: configType(t.DataType), Dims: dims(t.Dims)}
	}
	for i, t := range c.Outputs {
		out.Output[i] = &pb.ModelOutput{Name: t.Name, DataType: configType(t.DataType), Dims: dims(t.Dims)}
	}
	switch vp := c.VersionPolicy; {
	case vp == nil:
		out.VersionPolicy = &pb.ModelVersionPolicy{PolicyChoice: &pb.ModelVersionPolicy_Latest_{Latest: &pb.ModelVersionPolicy_Latest{NumVersions: 1}}}
	case vp.All:
		out.VersionPolicy = &pb.ModelVersionPolicy{PolicyChoice: &pb.ModelVersionPolicy_All_{All: &pb.ModelVersionPolicy_All{}}}
	case len(vp.Specific) > 0:
		out.VersionPolicy = &pb.ModelVersionPolicy{PolicyChoice: &pb.ModelVersionPolicy_Specific_{Specific: &pb.ModelVersionPolicy_Specific{Versions: append([]int64(nil), vp.Specific...)}}}
	default:
		out.VersionPolicy = &pb.ModelVersionPolicy{PolicyChoice: &pb.ModelVersionPolicy_Latest_{Latest: &pb.ModelVersionPolicy_Latest{NumVersions: uint32(min(max(vp.Latest, 1), math.MaxUint32))}}}
	}
	if db := c.DynamicBatching; db != nil {
		d := &pb.ModelDynamicBatching{
			PreferredBatchSize:        make([]int32, len(db.PreferredBatchSizes)),
			MaxQueueDelayMicroseconds: uint64(max(db.MaxQueueDelay.D().Microseconds(), 0)),
			PreserveOrdering:          db.PreserveOrdering,
			PriorityLevels:            uint64(max(db.PriorityLevels, 0)),
			DefaultPriorityLevel:      uint64(max(db.DefaultPriority, 0)),
			DefaultQueuePolicy: &pb.ModelQueuePolicy{
				TimeoutAction:              pb.ModelQueuePolicy_REJECT,
				DefaultTimeoutMicroseconds: uint64(max(db.DefaultTimeout.D().Microseconds(), 0)),
				AllowTimeoutOverride:       true,
				MaxQueueSize:               uint32(min(max(db.MaxQueueSize, 0), math.MaxUint32)),
			},
		}
		for i, p := range db.PreferredBatchSizes {
			d.PreferredBatchSize[i] = clamp32(p)
		}
		out.DynamicBatching = d
	}
	for k, v := range c.Parameters {
		out.Parameters[k] = &pb.ModelParameter{StringValue: v}
	}
	for _, w := range c.Warmup {
		mw := &pb.ModelWarmup{
			Name:      w.Name,
			BatchSize: uint32(min(max(w.BatchSize, 1), math.MaxUint32)),
			Count:     uint32(min(max(w.Count, 0), math.MaxUint32)),
			Inputs:    make(map[string]*pb.ModelWarmup_Input, len(c.Inputs)),
		}
		// Every model input gets a sample; those the config leaves out are zeros.
		for _, in := range c.Inputs {
			spec, given := w.Inputs[in.Name]
			wi := &pb.ModelWarmup_Input{DataType: configType(in.DataType), Dims: dims(in.Dims)}
			if given && len(spec.Dims) > 0 {
				wi.Dims = dims(spec.Dims)
			}
			switch {
			case spec.RandomData:
				wi.InputDataType = &pb.ModelWarmup_Input_RandomData{RandomData: true}
			case spec.InputDataFile != "":
				wi.InputDataType = &pb.ModelWarmup_Input_InputDataFile{InputDataFile: spec.InputDataFile}
			default:
				wi.InputDataType = &pb.ModelWarmup_Input_ZeroData{ZeroData: true}
			}
			mw.Inputs[in.Name] = wi
		}
		out.ModelWarmup = append(out.ModelWarmup, mw)
	}
	if c.ResponseCache {
		out.ResponseCache = &pb.ModelResponseCache{Enable: true}
	}
	return out
}

func dims(d []int64) []int64 {
	if d == nil {
		return []int64{}
	}
	return append([]int64(nil), d...)
}
