package serving

import (
	"fmt"
	"slices"

	"github.com/kilnai/kiln/internal/config"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/tensor"
)

// DefaultMaxBatchSize is the max_batch_size given to models whose inputs
// and outputs all have a variable first dimension when config.yaml sets none.
const DefaultMaxBatchSize = 64

// specsFromConfig turns configured tensors into full-shape specs for the
// backend (adding the batch dimension when the model batches).
func specsFromConfig(list []config.TensorConfig, batching bool) []inference.TensorSpec {
	out := make([]inference.TensorSpec, 0, len(list))
	for _, t := range list {
		dt, _ := tensor.ParseDataType(t.DataType) // validated by config
		shape := tensor.Shape(t.Dims).Clone()
		if batching {
			shape = append(tensor.Shape{-1}, shape...)
		}
		out = append(out, inference.TensorSpec{Name: t.Name, DataType: dt, Shape: shape})
	}
	return out
}

// complete merges the configured model with what the loaded model reports
// (Triton's auto-complete): missing inputs/outputs and max_batch_size are
// taken from the model; given ones are checked against it. It returns the
// effective config and the metadata Kiln serves (shapes with -1 for the
// batch dimension).
func complete(name string, cfg *config.Model, md inference.Metadata) (*config.Model, inference.Metadata, error) {
	eff := *cfg
	eff.Name = name
	mbs := 0
	switch {
	case cfg.MaxBatchSize != nil:
		mbs = *cfg.MaxBatchSize
		if mbs > 0 && !md.BatchDim {
			return nil, md, fmt.Errorf("max_batch_size is %d but the model has no variable first dimension on every input and output; set max_batch_size: 0", mbs)
		}
	case md.BatchDim:
		mbs = DefaultMaxBatchSize
	}
	eff.MaxBatchSize = &mbs
	if eff.Instances == 0 {
		eff.Instances = 1
	}
	if mbs > 0 && eff.DynamicBatching == nil {
		// As Triton does: a batching model without a scheduler gets the
		// dynamic batcher with no added delay.
		eff.DynamicBatching = &config.DynamicBatching{}
	}
	var err error
	if eff.Inputs, err = completeTensors("input", cfg.Inputs, md.Inputs, mbs > 0); err != nil {
		return nil, md, err
	}
	if eff.Outputs, err = completeTensors("output", cfg.Outputs, md.Outputs, mbs > 0); err != nil {
		return nil, md, err
	}
	served := inference.Metadata{Platform: md.Platform, BatchDim: mbs > 0}
	served.Inputs = specsFromConfig(eff.Inputs, mbs > 0)
	served.Outputs = specsFromConfig(eff.Outputs, mbs > 0)
	return &eff, served, nil
}

func completeTensors(kind string, given []config.TensorConfig, model []inference.TensorSpec, batching bool) ([]config.TensorConfig, error) {
	toConfig := func(s inference.TensorSpec) config.TensorConfig {
		dims := []int64(s.Shape)
		if batching && len(dims) > 0 {
			dims = dims[1:]
		}
		return config.TensorConfig{Name: s.Name, DataType: s.DataType.String(), Dims: slices.Clone(dims)}
	}
	if len(given) == 0 {
		out := make([]config.TensorConfig, len(model))
		for i, s := range model {
			out[i] = toConfig(s)
		}
		return out, nil
	}
	if len(given) != len(model) {
		return nil, fmt.Errorf("config.yaml lists %d %ss, the model has %d", len(given), kind, len(model))
	}
	out := make([]config.TensorConfig, len(given))
	for i, g := range given {
		idx := slices.IndexFunc(model, func(s inference.TensorSpec) bool { return s.Name == g.Name })
		if idx < 0 {
			return nil, fmt.Errorf("config.yaml %s %q is not a %s of the model", kind, g.Name, kind)
		}
		m := toConfig(model[idx])
		if dt, _ := tensor.ParseDataType(g.DataType); dt != model[idx].DataType {
			return nil, fmt.Errorf("config.yaml %s %q has datatype %s, the model has %s", kind, g.Name, g.DataType, m.DataType)
		}
		if len(g.Dims) != len(m.Dims) {
			return nil, fmt.Errorf("config.yaml %s %q has dims %v, the model has %v (batch dimension excluded when max_batch_size > 0)", kind, g.Name, g.Dims, m.Dims)
		}
		dims := slices.Clone(g.Dims)
		for j := range dims {
			switch {
			case m.Dims[j] >= 0 && dims[j] >= 0 && m.Dims[j] != dims[j]:
				return nil, fmt.Errorf("config.yaml %s %q has dims %v, the model has %v", kind, g.Name, g.Dims, m.Dims)
			case dims[j] < 0:
				dims[j] = m.Dims[j]
			}
		}
		out[i] = config.TensorConfig{Name: g.Name, DataType: m.DataType, Dims: dims}
	}
	return out, nil
}
