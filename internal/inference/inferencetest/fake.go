// Package inferencetest provides what tests of inference backends and of
// the layers above them need: Run, a conformance suite every
// inference.Backend must pass, and Fake, a deterministic in-memory backend
// with hooks (delay, gate, injected errors, a recorder of the calls it saw).
package inferencetest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/tensor"
)

// FakeName is the backend name of Fake (the model config's backend value).
const FakeName = "fake"

// FakeSpecFile is the file Fake reads when LoadSpec.Path is a directory.
const FakeSpecFile = "model.fake.json"

// FakeSpec describes a fake model; it is the JSON content of a
// model.fake.json file:
//
//	{"inputs":  [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
//	 "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4], "from": "x"}]}
//
// Each output is computed element-wise from one input (From; by default
// the input at the output's index modulo the number of inputs) and has
// that input's datatype and shape; see Expected for the rule.
type FakeSpec struct {
	Inputs  []FakeTensor `json:"inputs"`
	Outputs []FakeTensor `json:"outputs"`
}

// FakeTensor is one input or output of a FakeSpec.
type FakeTensor struct {
	Name     string          `json:"name"`
	DataType tensor.DataType `json:"datatype"`
	Shape    tensor.Shape    `json:"shape"`
	// From names the input an output is computed from (outputs only).
	From string `json:"from,omitempty"`
}

// Call records one Infer call that passed validation (and so reached the
// backend), whatever the hooks then made of it.
type Call struct {
	Model   string
	Version int64
	// BatchSize is dimension 0 of the first input for models with a batch
	// dimension, else 1.
	BatchSize int64
	// Outputs are the output names the call returned, in order.
	Outputs []string
}

// Fake is a deterministic inference.Backend for tests. Its models compute
// Expected from their inputs. The hooks (Set*) change the behaviour of
// every model it loaded, also while calls are in flight; all methods are
// safe for concurrent use.
type Fake struct {
	mu        sync.Mutex
	delay     time.Duration
	gate      <-chan struct{}
	entered   chan<- Call
	inferErr  error
	loadErr   error
	loadGate  <-chan struct{}
	calls     []Call
	loads     int
	open      int
	maxActive int
	active    int
}

var _ inference.Backend = (*Fake)(nil)

// NewFake returns a fake backend with no hooks set.
func NewFake() *Fake { return &Fake{} }

// Name returns FakeName.
func (f *Fake) Name() string { return FakeName }

// SetDelay makes every Infer wait d (or until its context ends) before
// computing.
func (f *Fake) SetDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

// SetGate makes every Infer block until it receives from gate (closing it
// releases every caller) or its context ends. nil removes the gate.
func (f *Fake) SetGate(gate <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gate = gate
}

// SetEntered makes every Infer send its Call on ch (or give up when its
// context ends) once it passed validation, before the gate and the delay,
// so a test knows a call is in flight. nil removes it.
func (f *Fake) SetEntered(ch chan<- Call) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entered = ch
}

// SetInferError makes every Infer fail with err after the gate and the
// delay. nil removes it.
func (f *Fake) SetInferError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inferErr = err
}

// SetLoadError makes every Load fail with err. nil removes it.
func (f *Fake) SetLoadError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loadErr = err
}

// SetLoadGate makes every Load block until it receives from gate or its
// context ends. nil removes it.
func (f *Fake) SetLoadGate(gate <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loadGate = gate
}

// Calls returns a copy of the calls recorded so far, in the order they
// passed validation.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Call, len(f.calls))
	copy(out, f.calls)
	return out
}

// BatchSizes returns the batch size of every recorded call, in order.
func (f *Fake) BatchSizes() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]int64, len(f.calls))
	for i, c := range f.calls {
		out[i] = c.BatchSize
	}
	return out
}

// Loads returns how many models were loaded successfully.
func (f *Fake) Loads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loads
}

// Open returns how many loaded models have not been closed yet.
func (f *Fake) Open() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.open
}

// MaxConcurrent returns the largest number of validated Infer calls that
// were in flight at the same time.
func (f *Fake) MaxConcurrent() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxActive
}

// Load reads the model's FakeSpec from spec.Path (a model.fake.json file,
// or a directory holding one) or, when Path is empty, builds it from
// spec.Inputs and spec.Outputs (outputs paired with inputs by index).
func (f *Fake) Load(ctx context.Context, spec inference.LoadSpec) (inference.Model, error) {
	f.mu.Lock()
	loadErr, gate := f.loadErr, f.loadGate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if loadErr != nil {
		return nil, loadErr
	}
	fs, err := readFakeSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("fake: load %s v%d: %w", spec.Name, spec.Version, err)
	}
	m, err := newFakeModel(f, spec, fs)
	if err != nil {
		return nil, fmt.Errorf("fake: load %s v%d: %w", spec.Name, spec.Version, err)
	}
	f.mu.Lock()
	f.loads++
	f.open++
	f.mu.Unlock()
	return m, nil
}

func readFakeSpec(spec inference.LoadSpec) (FakeSpec, error) {
	if spec.Path == "" {
		var fs FakeSpec
		for _, in := range spec.Inputs {
			fs.Inputs = append(fs.Inputs, FakeTensor{Name: in.Name, DataType: in.DataType, Shape: in.Shape})
		}
		for _, out := range spec.Outputs {
			fs.Outputs = append(fs.Outputs, FakeTensor{Name: out.Name, DataType: out.DataType, Shape: out.Shape})
		}
		return fs, nil
	}
	path := spec.Path
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, FakeSpecFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return FakeSpec{}, err
	}
	var fs FakeSpec
	if err := json.Unmarshal(b, &fs); err != nil {
		return FakeSpec{}, fmt.Errorf("parse %s: %w", path, err)
	}
	// Configured tensors must agree with the file, as a real backend
	// checks a config against its model file.
	for _, c := range spec.Inputs {
		if err := checkConfigured("input", c, fs.Inputs); err != nil {
			return FakeSpec{}, err
		}
	}
	for _, c := range spec.Outputs {
		if err := checkConfigured("output", c, fs.Outputs); err != nil {
			return FakeSpec{}, err
		}
	}
	return fs, nil
}

func checkConfigured(kind string, c inference.TensorSpec, have []FakeTensor) error {
	for _, h := range have {
		if h.Name != c.Name {
			continue
		}
		if h.DataType != c.DataType {
			return fmt.Errorf("configured %s %q is %s, the model's is %s", kind, c.Name, c.DataType, h.DataType)
		}
		if len(h.Shape) != len(c.Shape) {
			return fmt.Errorf("configured %s %q has shape %v, the model's is %v", kind, c.Name, c.Shape, h.Shape)
		}
		return nil
	}
	return fmt.Errorf("configured %s %q is not in the model", kind, c.Name)
}

type fakeModel struct {
	f       *Fake
	name    string
	version int64
	md      inference.Metadata
	from    []int // output index -> input index

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
}

func newFakeModel(f *Fake, spec inference.LoadSpec, fs FakeSpec) (*fakeModel, error) {
	if len(fs.Inputs) == 0 || len(fs.Outputs) == 0 {
		return nil, errors.New("a fake model needs at least one input and one output")
	}
	m := &fakeModel{f: f, name: spec.Name, version: spec.Version}
	m.md.Platform = FakeName
	seen := map[string]bool{}
	for _, t := range fs.Inputs {
		if err := checkFakeTensor(t, seen); err != nil {
			return nil, err
		}
		m.md.Inputs = append(m.md.Inputs, inference.TensorSpec{Name: t.Name, DataType: t.DataType, Shape: t.Shape.Clone()})
	}
	for i, t := range fs.Outputs {
		if err := checkFakeTensor(t, seen); err != nil {
			return nil, err
		}
		src := i % len(fs.Inputs)
		if t.From != "" {
			src = -1
			for j, in := range fs.Inputs {
				if in.Name == t.From {
					src = j
				}
			}
			if src < 0 {
				return nil, fmt.Errorf("output %q: from %q is not an input", t.Name, t.From)
			}
		}
		in := fs.Inputs[src]
		if in.DataType != t.DataType || !in.Shape.Equal(t.Shape) {
			return nil, fmt.Errorf("output %q (%s%v) must have the datatype and shape of input %q (%s%v)",
				t.Name, t.DataType, t.Shape, in.Name, in.DataType, in.Shape)
		}
		m.md.Outputs = append(m.md.Outputs, inference.TensorSpec{Name: t.Name, DataType: t.DataType, Shape: t.Shape.Clone()})
		m.from = append(m.from, src)
	}
	m.md.BatchDim = true
	for _, s := range append(append([]inference.TensorSpec(nil), m.md.Inputs...), m.md.Outputs...) {
		if len(s.Shape) == 0 || s.Shape[0] != -1 {
			m.md.BatchDim = false
		}
	}
	return m, nil
}

func checkFakeTensor(t FakeTensor, seen map[string]bool) error {
	if t.Name == "" {
		return errors.New("a tensor has no name")
	}
	if seen[t.Name] {
		return fmt.Errorf("tensor name %q is used twice", t.Name)
	}
	seen[t.Name] = true
	if !t.DataType.Valid() {
		return fmt.Errorf("tensor %q has no valid datatype", t.Name)
	}
	for _, d := range t.Shape {
		if d < -1 {
			return fmt.Errorf("tensor %q has an invalid dimension %d", t.Name, d)
		}
	}
	return nil
}

func (m *fakeModel) Metadata() inference.Metadata { return m.md }

func (m *fakeModel) Infer(ctx context.Context, inputs []tensor.Tensor, outputs []string) ([]tensor.Tensor, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, fmt.Errorf("fake: %s v%d: %w", m.name, m.version, inference.ErrClosed)
	}
	m.inflight.Add(1)
	m.mu.Unlock()
	defer m.inflight.Done()

	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := inference.ValidateInputs(m.md, inputs, 0); err != nil {
		return nil, err
	}
	idx, err := inference.ResolveOutputs(m.md, outputs)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]*tensor.Tensor, len(inputs))
	for i := range inputs {
		byName[inputs[i].Name] = &inputs[i]
	}
	call := Call{Model: m.name, Version: m.version, BatchSize: 1}
	if m.md.BatchDim {
		call.BatchSize = byName[m.md.Inputs[0].Name].Shape[0]
	}
	for _, j := range idx {
		call.Outputs = append(call.Outputs, m.md.Outputs[j].Name)
	}

	f := m.f
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.active++
	f.maxActive = max(f.maxActive, f.active)
	delay, gate, entered, inferErr := f.delay, f.gate, f.entered, f.inferErr
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.active--
		f.mu.Unlock()
	}()

	if entered != nil {
		select {
		case entered <- call:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if delay > 0 {
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		}
	}
	if inferErr != nil {
		return nil, inferErr
	}

	out := make([]tensor.Tensor, len(idx))
	for k, j := range idx {
		in := byName[m.md.Inputs[m.from[j]].Name]
		out[k] = Expected(*in, m.version)
		out[k].Name = m.md.Outputs[j].Name
	}
	return out, nil
}

// Close waits for in-flight Infer calls (a call blocked on the gate keeps
// Close waiting), then marks the model closed. Closing twice is fine.
func (m *fakeModel) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.inflight.Wait()
	m.f.mu.Lock()
	m.f.open--
	m.f.mu.Unlock()
	return nil
}

// Expected returns what a fake model of the given version computes from
// input in: a tensor of the same datatype and shape whose elements are
// x*2 + version for integer types (wrapping at the type's width) and FP32
// and FP64, and x itself for BOOL, BYTES, FP16 and BF16. The result keeps
// in's name and never shares in's data.
func Expected(in tensor.Tensor, version int64) tensor.Tensor {
	out := tensor.Tensor{Name: in.Name, DataType: in.DataType, Shape: in.Shape.Clone(), Data: make([]byte, len(in.Data))}
	d, s, le := out.Data, in.Data, binary.LittleEndian
	v := uint64(version)
	switch in.DataType {
	case tensor.Uint8, tensor.Int8:
		for i := range s {
			d[i] = s[i]*2 + byte(v)
		}
	case tensor.Uint16, tensor.Int16:
		for i := 0; i+2 <= len(s); i += 2 {
			le.PutUint16(d[i:], le.Uint16(s[i:])*2+uint16(v))
		}
	case tensor.Uint32, tensor.Int32:
		for i := 0; i+4 <= len(s); i += 4 {
			le.PutUint32(d[i:], le.Uint32(s[i:])*2+uint32(v))
		}
	case tensor.Uint64, tensor.Int64:
		for i := 0; i+8 <= len(s); i += 8 {
			le.PutUint64(d[i:], le.Uint64(s[i:])*2+v)
		}
	case tensor.FP32:
		for i := 0; i+4 <= len(s); i += 4 {
			x := math.Float32frombits(le.Uint32(s[i:]))
			le.PutUint32(d[i:], math.Float32bits(x*2+float32(version)))
		}
	case tensor.FP64:
		for i := 0; i+8 <= len(s); i += 8 {
			x := math.Float64frombits(le.Uint64(s[i:]))
			le.PutUint64(d[i:], math.Float64bits(x*2+float64(version)))
		}
	default: // Bool, Bytes, FP16, BF16: identity
		copy(d, s)
	}
	return out
}
