package onnx

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/tensor"
)

// model is one ONNX Runtime session. ORT's Run is safe for concurrent use
// on one session. Small, short calls run on reusable slots of values
// (slots.go); the others create and destroy their own values.
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
	// idleOpts are RunOptions kept for reuse (creating and destroying
	// them costs two cgo calls and an ORT allocation per run).
	idleOpts []*ort.RunOptions
	// noPrealloc is set when a run with outputs pre-allocated along the
	// batch dimension failed and the same run succeeded with ORT
	// allocating them: the model's outputs do not follow its inputs'
	// batch dimension after all.
	noPrealloc atomic.Bool

	// The bound path (slots.go): idle slots, least recently used first;
	// the number of slots idle or in use; whether some output rules the
	// path out; the recent mean run time in nanoseconds (-1: unknown).
	idleSlots []*slot
	slots     int
	noBound   atomic.Bool
	runNanos  atomic.Int64
}

// maxIdleOpts bounds the RunOptions kept for reuse.
const maxIdleOpts = 16

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
	for _, o := range m.idleOpts {
		_ = o.Destroy()
	}
	m.idleOpts = nil
	for _, sl := range m.idleSlots {
		sl.destroy()
	}
	m.idleSlots = nil
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
	if out, ok := m.inferBound(ctx, ordered, want); ok {
		runtime.KeepAlive(inputs)
		return out, nil
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
	defer func() { outs.destroy() }()
	guessed := false // some output was pre-allocated from the inputs' batch size
	for j, spec := range m.md.Outputs {
		shape, ok, guess, err := m.outputShape(spec, ordered)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if outs[j], err = outputValue(spec, shape); err != nil {
			return nil, fmt.Errorf("onnx: %s v%d: allocate output %q: %w", m.name, m.version, spec.Name, err)
		}
		guessed = guessed || guess
	}

	if len(ins) == 0 {
		err = m.runWithoutInputs(outs, want)
	} else {
		err = m.run(ctx, ins, outs)
		if err != nil && guessed && ctx.Err() == nil {
			// Let ORT allocate the guessed outputs and try once more; if
			// that works the guess was wrong for this model: stop guessing.
			for j, spec := range m.md.Outputs {
				if outs[j] != nil && !static(spec.Shape) && !isHalf(spec.DataType) {
					_ = outs[j].Destroy()
					outs[j] = nil
				}
			}
			if err = m.run(ctx, ins, outs); err == nil {
				m.noPrealloc.Store(true)
			}
		}
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
// Other outputs whose only dynamic dimension is a batch dimension are
// pre-allocated too (ORT then writes straight into Go memory, which saves
// an allocation and a copy per run); guess reports that such a shape was
// inferred rather than known.
func (m *model) outputShape(spec inference.TensorSpec, inputs []*tensor.Tensor) (shape tensor.Shape, ok, guess bool, err error) {
	if spec.DataType == tensor.Bytes {
		return nil, false, false, nil
	}
	if static(spec.Shape) {
		return spec.Shape, true, false, nil
	}
	half := isHalf(spec.DataType)
	if !half && (!m.md.BatchDim || !static(spec.Shape[1:]) || m.noPrealloc.Load()) {
		return nil, false, false, nil
	}
	if len(inputs) == 0 || len(inputs[0].Shape) == 0 {
		return nil, false, false, nil
	}
	batch := inputs[0].Shape[0]
	for _, in := range inputs[1:] {
		if len(in.Shape) == 0 || in.Shape[0] != batch {
			return nil, false, false, fmt.Errorf("%w: inputs %q and %q disagree on the batch dimension (%d rows, shape %v)",
				inference.ErrInvalidInput, inputs[0].Name, in.Name, batch, in.Shape)
		}
	}
	shape = spec.Shape.Clone()
	shape[0] = batch
	return shape, true, !half, nil
}

// run executes the session; a context that ends during the run
// terminates it.
func (m *model) run(ctx context.Context, ins, outs values) error {
	start := time.Now()
	defer func() { m.observeRun(time.Since(start)) }()
	if ctx.Done() == nil {
		return m.sess.Run(ins, outs)
	}
	opts, err := m.runOptions()
	if err != nil {
		return err
	}
	var mu sync.Mutex
	finished, terminated := false, false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !finished {
			terminated = true
			_ = opts.Terminate()
		}
	})
	err = m.sess.RunWithOptions(ins, outs, opts)
	stop()
	mu.Lock()
	finished = true // the AfterFunc, if it runs now, leaves opts alone
	mu.Unlock()
	m.putRunOptions(opts, terminated)
	return err
}

// runOptions takes idle RunOptions or creates new ones.
func (m *model) runOptions() (*ort.RunOptions, error) {
	m.mu.Lock()
	if n := len(m.idleOpts); n > 0 {
		o := m.idleOpts[n-1]
		m.idleOpts = m.idleOpts[:n-1]
		m.mu.Unlock()
		return o, nil
	}
	m.mu.Unlock()
	return ort.NewRunOptions()
}

// putRunOptions keeps options for reuse; terminated ones are destroyed
// (their terminate flag would stop the next run).
func (m *model) putRunOptions(o *ort.RunOptions, terminated bool) {
	if !terminated {
		m.mu.Lock()
		if len(m.idleOpts) < maxIdleOpts && !m.closed {
			m.idleOpts = append(m.idleOpts, o)
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
	}
	_ = o.Destroy()
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
