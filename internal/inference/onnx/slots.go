package onnx

import (
	"context"
	"fmt"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/kilnai/kiln/internal/tensor"
)

// The bound path: small, short runs reuse ORT values instead of creating
// and destroying them per call.
//
// Creating an input value, pre-allocating an output, running with options
// and destroying both values cost five cgo calls, an AfterFunc on the
// request context and a handful of allocations: about as much as the
// whole run of a small model. A slot instead holds input and output
// buffers of one shape signature, their ORT values and an IoBinding over
// them; a call that fits copies its inputs into the slot, runs with one
// cgo call and copies the outputs out. Copying is cheap at the sizes the
// bound path takes (slotMaxBytes); larger tensors keep the general path,
// which shares the request's memory with ORT instead.
//
// A bound run cannot be terminated (the wrapper runs a binding without
// RunOptions), so a call whose context can end takes the bound path only
// while the model's runs are known to be short: a cancelled request then
// waits at most about shortRun for its run to finish.
const (
	// slotMaxBytes bounds a slot's inputs plus outputs.
	slotMaxBytes = 64 << 10
	// maxSlots bounds the slots of one model (idle and in use); the
	// least recently used idle slot makes room for a new signature.
	maxSlots = 16
	// shortRun is the longest recent mean run time for which a call with
	// a cancellable context may take the bound path.
	shortRun = time.Millisecond
)

// slot is a reusable set of ORT values for one input shape signature.
type slot struct {
	shapes    []tensor.Shape // input shapes in session order: the signature
	inBufs    [][]byte
	outShapes []tensor.Shape // every output, in session order
	outBufs   [][]byte
	vals      values // inputs, then outputs
	bind      *ort.IoBinding
}

// matches reports whether inputs (in session order) have s's signature.
func (s *slot) matches(inputs []*tensor.Tensor) bool {
	if len(inputs) != len(s.shapes) {
		return false
	}
	for i, t := range inputs {
		if !t.Shape.Equal(s.shapes[i]) {
			return false
		}
	}
	return true
}

func (s *slot) destroy() {
	if s.bind != nil {
		_ = s.bind.Destroy()
	}
	s.vals.destroy()
}

// boundEligible reports whether inputs may take the bound path, judged on
// the inputs alone: numeric, at least one dimension, not empty, and no
// more than slotMaxBytes together.
func boundEligible(inputs []*tensor.Tensor) bool {
	size := 0
	for _, t := range inputs {
		if t.DataType == tensor.Bytes || len(t.Shape) == 0 || len(t.Data) == 0 {
			return false
		}
		size += len(t.Data)
	}
	return len(inputs) > 0 && size <= slotMaxBytes
}

// inferBound runs inputs (validated, in session order) on a slot and
// returns the wanted outputs. ok is false when the call must take the
// general path instead: not eligible, no slot to spare, or the bound run
// failed (the general path then runs it again and reports the error, or
// copes with outputs whose shapes were guessed wrong).
func (m *model) inferBound(ctx context.Context, inputs []*tensor.Tensor, want []int) (out []tensor.Tensor, ok bool) {
	if m.noBound.Load() {
		return nil, false
	}
	// Runs known to be short need no look at ctx: asking a request
	// context for its Done channel would make it allocate one.
	if r := m.runNanos.Load(); (r < 0 || r > int64(shortRun)) && ctx.Done() != nil {
		return nil, false
	}
	if !boundEligible(inputs) {
		return nil, false
	}
	s := m.takeSlot(inputs)
	if s == nil {
		return nil, false
	}
	for i, t := range inputs {
		data := t.Data
		if t.DataType == tensor.Bool {
			data = normalizeBools(data)
		}
		copy(s.inBufs[i], data)
	}
	start := time.Now()
	err := m.sess.RunWithBinding(s.bind)
	m.observeRun(time.Since(start))
	if err != nil {
		m.dropSlot(s)
		return nil, false
	}
	total := 0
	for _, j := range want {
		total += len(s.outBufs[j])
	}
	data := alignedBytes(total)
	out = make([]tensor.Tensor, len(want))
	for k, j := range want {
		spec := m.md.Outputs[j]
		n := copy(data, s.outBufs[j])
		out[k] = tensor.Tensor{Name: spec.Name, DataType: spec.DataType, Shape: s.outShapes[j].Clone(), Data: data[:n:n]}
		data = data[n:]
	}
	m.putSlot(s)
	return out, true
}

// takeSlot returns an idle slot with inputs' signature, or a new one, or
// nil when the model's outputs cannot be bound, the slot would be too
// large, or every slot is in use.
func (m *model) takeSlot(inputs []*tensor.Tensor) *slot {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	for i := len(m.idleSlots) - 1; i >= 0; i-- { // most recently used first
		if s := m.idleSlots[i]; s.matches(inputs) {
			m.idleSlots = append(m.idleSlots[:i], m.idleSlots[i+1:]...)
			m.mu.Unlock()
			return s
		}
	}
	var evict *slot
	switch {
	case m.slots < maxSlots:
		m.slots++
	case len(m.idleSlots) > 0: // the least recently used idle slot
		evict = m.idleSlots[0]
		m.idleSlots = append(m.idleSlots[:0], m.idleSlots[1:]...)
	default:
		m.mu.Unlock()
		return nil
	}
	m.mu.Unlock()
	if evict != nil {
		evict.destroy()
	}
	s, err := m.newSlot(inputs)
	if err != nil || s == nil {
		m.mu.Lock()
		m.slots--
		m.mu.Unlock()
		return nil
	}
	return s
}

// putSlot makes s idle again (most recently used).
func (m *model) putSlot(s *slot) {
	m.mu.Lock()
	if m.closed { // Close waits for in-flight calls, so this is not expected
		m.slots--
		m.mu.Unlock()
		s.destroy()
		return
	}
	m.idleSlots = append(m.idleSlots, s)
	m.mu.Unlock()
}

// dropSlot destroys a slot whose run failed.
func (m *model) dropSlot(s *slot) {
	m.mu.Lock()
	m.slots--
	m.mu.Unlock()
	s.destroy()
}

// newSlot builds a slot for inputs' signature. It returns nil (and marks
// the model) when some output cannot be pre-allocated, and nil when the
// slot would exceed slotMaxBytes.
func (m *model) newSlot(inputs []*tensor.Tensor) (*slot, error) {
	s := &slot{
		shapes:    make([]tensor.Shape, len(inputs)),
		inBufs:    make([][]byte, len(inputs)),
		outShapes: make([]tensor.Shape, len(m.md.Outputs)),
		outBufs:   make([][]byte, len(m.md.Outputs)),
	}
	size := 0
	for j, spec := range m.md.Outputs {
		shape, ok, _, err := m.outputShape(spec, inputs)
		if err != nil {
			return nil, err
		}
		if !ok || len(shape) == 0 || spec.DataType == tensor.Bytes {
			m.noBound.Store(true)
			return nil, nil
		}
		n, err := shape.Elements(0)
		if err != nil || n == 0 {
			return nil, err
		}
		s.outShapes[j] = shape
		size += int(n) * spec.DataType.Size()
	}
	for i, t := range inputs {
		s.shapes[i] = t.Shape.Clone()
		size += len(t.Data)
	}
	if size > slotMaxBytes {
		return nil, nil
	}
	ok := false
	defer func() {
		if !ok {
			s.destroy()
		}
	}()
	b, err := m.sess.CreateIoBinding()
	if err != nil {
		return nil, err
	}
	s.bind = b
	for i, t := range inputs {
		s.inBufs[i] = alignedBytes(len(t.Data))
		v, err := ort.NewCustomDataTensor(ortShape(t.Shape), s.inBufs[i], elementTypes[t.DataType])
		if err != nil {
			return nil, fmt.Errorf("onnx: input %q: %w", t.Name, err)
		}
		s.vals = append(s.vals, v)
		if err := b.BindInput(m.md.Inputs[i].Name, v); err != nil {
			return nil, err
		}
	}
	for j, spec := range m.md.Outputs {
		n, _ := s.outShapes[j].Elements(0)
		s.outBufs[j] = alignedBytes(int(n) * spec.DataType.Size())
		v, err := ort.NewCustomDataTensor(ortShape(s.outShapes[j]), s.outBufs[j], elementTypes[spec.DataType])
		if err != nil {
			return nil, err
		}
		s.vals = append(s.vals, v)
		if err := b.BindOutput(spec.Name, v); err != nil {
			return nil, err
		}
	}
	ok = true
	return s, nil
}

// observeRun folds one run's duration into the model's recent mean.
func (m *model) observeRun(d time.Duration) {
	old := m.runNanos.Load()
	if old < 0 {
		m.runNanos.Store(int64(d))
		return
	}
	m.runNanos.Store(old + (int64(d)-old)/8)
}
