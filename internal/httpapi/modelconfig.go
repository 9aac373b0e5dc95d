package httpapi

import (
	"github.com/kilnai/kiln/internal/config"
	"github.com/kilnai/kiln/internal/tensor"
)

// tritonConfig renders the effective model config as the JSON form of
// Triton's ModelConfig, which Triton's clients and perf_analyzer read
// (max_batch_size, input, output, dynamic_batching, ...).
func tritonConfig(c *config.Model) map[string]any {
	tensors := func(list []config.TensorConfig) []map[string]any {
		out := make([]map[string]any, len(list))
		for i, t := range list {
			dt, _ := tensor.ParseDataType(t.DataType)
			name := "TYPE_" + dt.String()
			if dt == tensor.Bytes {
				name = "TYPE_STRING"
			}
			dims := t.Dims
			if dims == nil {
				dims = []int64{}
			}
			out[i] = map[string]any{"name": t.Name, "data_type": name, "dims": dims}
		}
		return out
	}
	mbs := 0
	if c.MaxBatchSize != nil {
		mbs = *c.MaxBatchSize
	}
	backend, platform := c.Backend, ""
	if backend == "onnx" {
		backend, platform = "onnxruntime", "onnxruntime_onnx"
	}
	out := map[string]any{
		"name":           c.Name,
		"platform":       platform,
		"backend":        backend,
		"max_batch_size": mbs,
		"input":          tensors(c.Inputs),
		"output":         tensors(c.Outputs),
		"instance_group": []map[string]any{{"name": c.Name, "kind": "KIND_CPU", "count": max(c.Instances, 1)}},
	}
	switch vp := c.VersionPolicy; {
	case vp == nil:
		out["version_policy"] = map[string]any{"latest": map[string]any{"num_versions": 1}}
	case vp.All:
		out["version_policy"] = map[string]any{"all": map[string]any{}}
	case len(vp.Specific) > 0:
		out["version_policy"] = map[string]any{"specific": map[string]any{"versions": vp.Specific}}
	default:
		out["version_policy"] = map[string]any{"latest": map[string]any{"num_versions": max(vp.Latest, 1)}}
	}
	if db := c.DynamicBatching; db != nil {
		d := map[string]any{
			"preferred_batch_size":         db.PreferredBatchSizes,
			"max_queue_delay_microseconds": db.MaxQueueDelay.D().Microseconds(),
			"preserve_ordering":            db.PreserveOrdering,
			"priority_levels":              db.PriorityLevels,
			"default_priority_level":       db.DefaultPriority,
			"default_queue_policy": map[string]any{
				"timeout_action":               "REJECT",
				"default_timeout_microseconds": db.DefaultTimeout.D().Microseconds(),
				"allow_timeout_override":       true,
				"max_queue_size":               db.MaxQueueSize,
			},
		}
		if db.PreferredBatchSizes == nil {
			d["preferred_batch_size"] = []int{}
		}
		out["dynamic_batching"] = d
	}
	params := map[string]any{}
	for k, v := range c.Parameters {
		params[k] = map[string]string{"string_value": v}
	}
	out["parameters"] = params
	return out
}
