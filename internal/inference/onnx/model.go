package onnx

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/tensor"
)

// model is one ONNX Runtime session. ORT's Run is safe for concurrent use
// on one session; each call creates and destroys its own values.
type model struct {
	name        string
	version     int64
	md          inference.Metadata
	maxElements int64
	memory      int64

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
	sess     *ort.DynamicAdvancedSession
}

var _ inference.Model = (*model)(nil)

func (m *model) Metadata() inference.Metadata { return m.md }

// MemoryBytes is the growth of the process's resident set while the
// session was created: a measured estimate of the model's memory use.
func (m *model) MemoryBytes() int64 { return m.memory }

// Close waits for in-flight Infer calls, then destroys the session.
// Closing twice is fine.
func (m *model) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.inflight.Wait()
	if err := m.sess.Destroy(); err != nil {
		return fmt.Errorf("onnx: close %s v%d: %w", m.name, m.version, err)
	}
	return nil
}

func (m *model) acquire() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("onnx: %s v%d: %w", m.name, m.version, inference.ErrClosed)
	}
	m.inflight.Add(1)
	return nil
}

// values holds the ORT values of one call; destroy releases them all.
type values []ort.Value

func (vs values) destroy() {
	for _, v := range vs {
		if v != nil {
			_ = v.Destroy()
		}
	}
}

func (m *model) Infer(ctx context.Context, inputs []tensor.Tensor, outputs []string) ([]tensor.Tensor, error) {
	if err := m.acquire(); err != nil {
		return nil, err
	}
	defer m.inflight.Done()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := inference.ValidateInputs(m.md, inputs, m.maxElements); err != nil {
		return nil, err
	}
	want, err := inference.ResolveOutputs(m.md, outputs)
	if err != nil {
		return nil, err
	}

	// Inputs in the session's order.
	ordered := make([]*tensor.Tensor, len(m.md.Inputs))
	for i := range inputs {
		for j := range m.md.Inputs {
			if m.md.Inputs[j].Name == inputs[i].Name {
				ordered[j] = &inputs[i]
			}
		}
	}
	ins := make(values, len(ordered))
	defer ins.destroy()
	for j, t := range ordered {
		if ins[j], err = inputValue(t); err != nil {
			return nil, err
		}
	}

	// Pre-allocate what can be: every output with a known shape. The rest
	// stay nil and ORT allocates them (the wrapper copies them to Go).
	outs := make(values, len(m.md.Outputs))
	defer outs.destroy()
	for j, spec := range m.md.Outputs {
		shape, ok, err := m.outputShape(spec, ordered)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if outs[j], err = outputValue(spec, shape); err != nil {
			return nil, fmt.Errorf("onnx: %s v%d: allocate output %q: %w", m.name, m.version, spec.Name, err)
		}
	}

	if len(ins) == 0 {
		err = m.runWithoutInputs(outs, want)
	} else {
		err = m.run(ctx, ins, outs)
	}
	runtime.KeepAlive(inputs)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("onnx: %s v%d: run interrupted: %w", m.name, m.version, cerr)
		}
		return nil, fmt.Errorf("onnx: %s v%d: run: %w", m.name, m.version, err)
	}

	result := make([]tensor.Tensor, len(want))
	for k, j := range want {
		if result[k], err = fromValue(m.md.Outputs[j], outs[j]); err != nil {
			return nil, fmt.Errorf("onnx: %s v%d: output %q: %w", m.name, m.version, m.md.Outputs[j].Name, err)
		}
	}
	return result, nil
}

// outputShape returns the shape to pre-allocate for an output, or false
// to let ORT allocate it. FP16/BF16 outputs must be pre-allocated (the
// wrapper cannot copy them); Load ensured that their only dynamic
// dimension, if any, is the batch dimension, taken from the inputs.
func (m *model) outputShape(spec inference.TensorSpec, inputs []*tensor.Tensor) (tensor.Shape, bool, error) {
	if spec.DataType == tensor.Bytes {
		return nil, false, nil
	}
	if static(spec.Shape) {
		return spec.Shape, true, nil
	}
	if !isHalf(spec.DataType) || len(inputs) == 0 || len(inputs[0].Shape) == 0 {
		return nil, false, nil
	}
	batch := inputs[0].Shape[0]
	for _, in := range inputs[1:] {
		if len(in.Shape) == 0 || in.Shape[0] != batch {
			return nil, false, fmt.Errorf("%w: inputs %q and %q disagree on the batch dimension (%d rows, shape %v)",
				inference.ErrInvalidInput, inputs[0].Name, in.Name, batch, in.Shape)
		}
	}
	shape := spec.Shape.Clone()
	shape[0] = batch
	return shape, true, nil
}

// run executes the session; a context that ends during the run
// terminates it.
func (m *model) run(ctx context.Context, ins, outs values) error {
	if ctx.Done() == nil {
		return m.sess.Run(ins, outs)
	}
	opts, err := ort.NewRunOptions()
	if err != nil {
		return err
	}
	var mu sync.Mutex
	finished := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !finished {
			_ = opts.Terminate()
		}
	})
	err = m.sess.RunWithOptions(ins, outs, opts)
	stop()
	mu.Lock()
	finished = true // the AfterFunc, if it runs now, leaves opts alone
	mu.Unlock()
	_ = opts.Destroy()
	return err
}

// runWithoutInputs runs an input-less model through an IoBinding (the
// wrapper's Run indexes the first input). Only the requested outputs are
// bound; Load ensured all of them have fixed shapes, so they are
// pre-allocated.
func (m *model) runWithoutInputs(outs values, want []int) error {
	b, err := m.sess.CreateIoBinding()
	if err != nil {
		return err
	}
	defer b.Destroy()
	for _, j := range want {
		if outs[j] == nil {
			return errors.New("internal error: output of an input-less model was not pre-allocated")
		}
		if err := b.BindOutput(m.md.Outputs[j].Name, outs[j]); err != nil {
			return fmt.Errorf("bind output %q: %w", m.md.Outputs[j].Name, err)
		}
	}
	return m.sess.RunWithBinding(b)
}
