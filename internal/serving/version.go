package serving

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kilnai/kiln/internal/batching"
	"github.com/kilnai/kiln/internal/config"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/tensor"
)

// closingBit marks a version that accepts no new references.
const closingBit = int64(1) << 62

// version is one loaded model version: its instances (backend sessions),
// its batcher and its bookkeeping. It is immutable after load except for
// the reference count and statistics.
type version struct {
	model   string
	number  int64
	label   string // strconv of number
	cfg     *config.Model
	meta    inference.Metadata
	key     string // what it was loaded from (file, size, mtime, config); equal key = no reload needed
	backend string
	// cacheID names this incarnation's content (model file and effective
	// config) in response-cache keys, so a reload that changes the file
	// under the same version number never serves the old answers.
	cacheID string

	instances []inference.Model
	batcher   *batching.Batcher[*job, []tensor.Tensor]
	batching  bool // requests carry a batch dimension
	maxElems  int64

	loadedAt     time.Time
	loadDuration time.Duration
	memBytes     uint64

	stats   versionStats
	metrics *versionMetrics

	refs    atomic.Int64
	drained chan struct{}
}

// job is one request travelling through the batcher: its inputs in model
// input order, and the indexes of the outputs it wants.
type job struct {
	inputs  []tensor.Tensor
	outputs []int
}

// acquire takes a reference; false once the version is closing.
func (v *version) acquire() bool {
	for {
		r := v.refs.Load()
		if r&closingBit != 0 {
			return false
		}
		if v.refs.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

func (v *version) release() {
	if v.refs.Add(-1) == closingBit {
		close(v.drained)
	}
}

// retire stops new references and returns a channel closed when the last
// in-flight request has released its reference.
func (v *version) retire() <-chan struct{} {
	if old := v.refs.Or(closingBit); old&closingBit == 0 && old == 0 {
		close(v.drained)
	}
	return v.drained
}

// shutdown drains the batcher and closes every instance. Call after retire's
// channel is closed (or when giving up on stragglers).
func (v *version) shutdown(ctx context.Context) error {
	var errs []error
	if v.batcher != nil {
		if err := v.batcher.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for _, inst := range v.instances {
		if err := inst.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// prepare validates a request against the served metadata and orders its
// inputs as the model declares them. It returns the job, the batch rows and
// the key that decides which requests may share a batch.
func (v *version) prepare(req *Request) (*job, int, string, error) {
	md := &v.meta
	if len(req.Inputs) != len(md.Inputs) {
		return nil, 0, "", fmt.Errorf("%w: model %q expects %d inputs (%s), got %d", inference.ErrInvalidInput, v.model, len(md.Inputs), inputNames(md), len(req.Inputs))
	}
	j := &job{inputs: make([]tensor.Tensor, len(md.Inputs))}
	var seen uint64
	rows := 1
	var key []byte
	for i := range req.Inputs {
		in := &req.Inputs[i]
		idx := -1
		for k := range md.Inputs {
			if md.Inputs[k].Name == in.Name {
				idx = k
				break
			}
		}
		if idx < 0 {
			return nil, 0, "", fmt.Errorf("%w: model %q has no input %q (inputs: %s)", inference.ErrInvalidInput, v.model, in.Name, inputNames(md))
		}
		if idx < 64 && seen&(1<<idx) != 0 {
			return nil, 0, "", fmt.Errorf("%w: input %q given twice", inference.ErrInvalidInput, in.Name)
		}
		if idx < 64 {
			seen |= 1 << idx
		}
		spec := &md.Inputs[idx]
		if in.DataType != spec.DataType {
			return nil, 0, "", fmt.Errorf("%w: input %q has datatype %s, model expects %s", inference.ErrInvalidInput, in.Name, in.DataType, spec.DataType)
		}
		if !in.Shape.Matches(spec.Shape) {
			return nil, 0, "", fmt.Errorf("%w: input %q has shape %v, model expects %v (-1 = any)", inference.ErrInvalidInput, in.Name, in.Shape, spec.Shape)
		}
		if err := in.Validate(v.maxElems); err != nil {
			return nil, 0, "", fmt.Errorf("%w: %w", inference.ErrInvalidInput, err)
		}
		if v.batching {
			r := int(in.Shape[0])
			if i == 0 {
				rows = r
			} else if r != rows {
				return nil, 0, "", fmt.Errorf("%w: inputs disagree on the batch size (%d vs %d)", inference.ErrInvalidInput, rows, r)
			}
		}
		// Only requests whose variable non-batch dimensions agree may share a batch.
		for d := 1; d < len(spec.Shape); d++ {
			if spec.Shape[d] < 0 {
				key = strconv.AppendInt(append(key, byte(idx), ':'), in.Shape[d], 10)
				key = append(key, ',')
			}
		}
		j.inputs[idx] = *in
	}
	if v.batching && rows < 1 {
		return nil, 0, "", fmt.Errorf("%w: batch size must be at least 1", inference.ErrInvalidInput)
	}
	if len(req.Outputs) == 0 {
		j.outputs = make([]int, len(md.Outputs))
		for i := range j.outputs {
			j.outputs[i] = i
		}
	} else {
		j.outputs = make([]int, len(req.Outputs))
		for i, name := range req.Outputs {
			idx := -1
			for k := range md.Outputs {
				if md.Outputs[k].Name == name {
					idx = k
					break
				}
			}
			if idx < 0 {
				return nil, 0, "", fmt.Errorf("%w: model %q has no output %q", inference.ErrInvalidInput, v.model, name)
			}
			for _, prev := range j.outputs[:i] {
				if prev == idx {
					return nil, 0, "", fmt.Errorf("%w: output %q requested twice", inference.ErrInvalidInput, name)
				}
			}
			j.outputs[i] = idx
		}
	}
	if !v.batching {
		rows = 1
	}
	return j, rows, string(key), nil
}

func inputNames(md *inference.Metadata) string {
	names := make([]string, len(md.Inputs))
	for i, in := range md.Inputs {
		names[i] = in.Name
	}
	return strings.Join(names, ", ")
}

// execute runs one batch on one instance: concatenate the items' inputs
// along the batch dimension, run, and split the outputs back per item.
func (v *version) execute(ctx context.Context, instance int, items []batching.Item[*job]) ([][]tensor.Tensor, error) {
	t0 := time.Now()
	inputs := items[0].Value.inputs
	rows := 0
	for _, it := range items {
		rows += it.Rows
	}
	if len(items) > 1 {
		inputs = make([]tensor.Tensor, len(v.meta.Inputs))
		parts := make([]*tensor.Tensor, len(items))
		for i := range inputs {
			for k, it := range items {
				parts[k] = &it.Value.inputs[i]
			}
			cat, err := tensor.Concat(parts)
			if err != nil {
				return nil, fmt.Errorf("batching inputs: %w", err)
			}
			inputs[i] = cat
		}
	}
	t1 := time.Now()
	outs, err := v.instances[instance].Infer(ctx, inputs, nil)
	t2 := time.Now()
	if err != nil {
		return nil, err
	}
	results := make([][]tensor.Tensor, len(items))
	if len(items) == 1 {
		res := make([]tensor.Tensor, len(items[0].Value.outputs))
		for k, idx := range items[0].Value.outputs {
			res[k] = outs[idx]
		}
		results[0] = res
	} else {
		sizes := make([]int64, len(items))
		for i, it := range items {
			sizes[i] = int64(it.Rows)
		}
		split := make([][]tensor.Tensor, len(outs))
		for o := range outs {
			parts, err := tensor.Split(&outs[o], sizes)
			if err != nil {
				return nil, fmt.Errorf("splitting output %q: %w", outs[o].Name, err)
			}
			split[o] = parts
		}
		for i, it := range items {
			res := make([]tensor.Tensor, len(it.Value.outputs))
			for k, idx := range it.Value.outputs {
				res[k] = split[idx][i]
			}
			results[i] = res
		}
	}
	t3 := time.Now()
	v.stats.executionCount.Add(1)
	v.stats.inferenceCount.Add(uint64(rows))
	v.stats.computeInput.add(t1.Sub(t0))
	v.stats.computeInfer.add(t2.Sub(t1))
	v.stats.computeOutput.add(t3.Sub(t2))
	b := v.stats.batch(rows)
	b.in.add(t1.Sub(t0))
	b.infer.add(t2.Sub(t1))
	b.out.add(t3.Sub(t2))
	if v.metrics != nil {
		v.metrics.compute.Observe(t2.Sub(t1).Seconds())
		v.metrics.batchSize.Observe(float64(rows))
		v.metrics.executions.Inc()
		v.metrics.inferences.Add(float64(rows))
	}
	return results, nil
}

// batcherConfig derives the batcher's settings from the effective config.
func batcherConfig(cfg *config.Model) batching.Config {
	bc := batching.Config{MaxBatchSize: 1, Instances: cfg.Instances}
	if db := cfg.DynamicBatching; db != nil && cfg.MaxBatchSize != nil && *cfg.MaxBatchSize > 0 {
		bc.MaxBatchSize = *cfg.MaxBatchSize
		bc.PreferredBatchSizes = db.PreferredBatchSizes
		bc.MaxQueueDelay = db.MaxQueueDelay.D()
		bc.MaxQueueSize = db.MaxQueueSize
		bc.PriorityLevels = db.PriorityLevels
		bc.DefaultPriority = db.DefaultPriority
		bc.DefaultTimeout = db.DefaultTimeout.D()
		bc.PreserveOrdering = db.PreserveOrdering
	} else if db != nil {
		bc.MaxQueueSize = db.MaxQueueSize
		bc.PriorityLevels = db.PriorityLevels
		bc.DefaultPriority = db.DefaultPriority
		bc.DefaultTimeout = db.DefaultTimeout.D()
		bc.PreserveOrdering = db.PreserveOrdering
	}
	return bc
}

// priorityLevels is the number of priority levels (at least 1).
func (v *version) priorityLevels() int {
	if db := v.cfg.DynamicBatching; db != nil && db.PriorityLevels > 1 {
		return db.PriorityLevels
	}
	return 1
}
