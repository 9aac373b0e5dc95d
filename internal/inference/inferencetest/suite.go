package inferencetest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/tensor"
)

// Harness describes a backend under test for Run.
type Harness struct {
	// Backend is the implementation under test.
	Backend inference.Backend
	// Cases are the models to exercise; at least one.
	Cases []Case
	// DataTypes are the datatypes the backend claims to support. Each must
	// appear as an input or output of some case, and every such case must
	// produce its expected values.
	DataTypes []tensor.DataType
	// Goroutines is the number of concurrent callers of the concurrency
	// test; 0 means 16.
	Goroutines int
}

// Case is one model the suite loads and runs.
type Case struct {
	// Name names the case's subtests.
	Name string
	// Spec loads the model.
	Spec inference.LoadSpec
	// Want is the metadata the loaded model must report. Platform is
	// compared only when set.
	Want inference.Metadata
	// Example returns a valid request with batch rows and the outputs the
	// model must return for it, in Want.Outputs order (names, datatypes,
	// shapes and values are compared). batch is 1 for models without a
	// batch dimension, else 1..MaxBatch.
	Example func(batch int) (inputs, want []tensor.Tensor)
	// MaxBatch is the largest batch Example supports for models with a
	// batch dimension; 0 means 4.
	MaxBatch int
	// Tolerance is the allowed difference of floating-point elements,
	// relative to max(|want|, 1); 0 means exact.
	Tolerance float64
}

func (c *Case) maxBatch() int {
	if !c.Want.BatchDim {
		return 1
	}
	if c.MaxBatch <= 0 {
		return 4
	}
	return c.MaxBatch
}

// Run is the conformance suite every inference backend passes: metadata,
// expected values for every declared datatype, batch-1 versus batch-N
// row equality, input and output errors, cancellation, concurrent use
// (run it with -race) and Close semantics.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.Backend == nil || len(h.Cases) == 0 {
		t.Fatal("inferencetest: the harness needs a Backend and at least one Case")
	}
	if h.Backend.Name() == "" {
		t.Error("Backend.Name() is empty")
	}
	t.Run("metadata", func(t *testing.T) {
		for _, c := range h.Cases {
			t.Run(c.Name, func(t *testing.T) { testMetadata(t, h.Backend, c) })
		}
	})
	t.Run("datatypes", func(t *testing.T) {
		for _, dt := range h.DataTypes {
			t.Run(dt.String(), func(t *testing.T) { testDataType(t, h, dt) })
		}
	})
	t.Run("infer", func(t *testing.T) {
		for _, c := range h.Cases {
			t.Run(c.Name, func(t *testing.T) { testInfer(t, h.Backend, c) })
		}
	})
	t.Run("batch", func(t *testing.T) {
		for _, c := range h.Cases {
			if !c.Want.BatchDim {
				continue
			}
			t.Run(c.Name, func(t *testing.T) { testBatch(t, h.Backend, c) })
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, c := range h.Cases {
			t.Run(c.Name, func(t *testing.T) { testErrors(t, h.Backend, c) })
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		n := h.Goroutines
		if n <= 0 {
			n = 16
		}
		for _, c := range h.Cases {
			t.Run(c.Name, func(t *testing.T) { testConcurrent(t, h.Backend, c, n) })
		}
	})
	t.Run("close", func(t *testing.T) {
		for _, c := range h.Cases {
			t.Run(c.Name, func(t *testing.T) { testClose(t, h.Backend, c) })
		}
	})
}

func load(t *testing.T, b inference.Backend, c Case) inference.Model {
	t.Helper()
	m, err := b.Load(context.Background(), c.Spec)
	if err != nil {
		t.Fatalf("Load(%s): %v", c.Name, err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close(%s): %v", c.Name, err)
		}
	})
	return m
}

func testMetadata(t *testing.T, b inference.Backend, c Case) {
	md := load(t, b, c).Metadata()
	if c.Want.Platform != "" && md.Platform != c.Want.Platform {
		t.Errorf("Platform = %q, want %q", md.Platform, c.Want.Platform)
	}
	if md.Platform == "" {
		t.Error("Platform is empty")
	}
	compareSpecs(t, "input", md.Inputs, c.Want.Inputs)
	compareSpecs(t, "output", md.Outputs, c.Want.Outputs)
	if md.BatchDim != c.Want.BatchDim {
		t.Errorf("BatchDim = %v, want %v", md.BatchDim, c.Want.BatchDim)
	}
	// BatchDim must mean what it says, whatever the case claims.
	all := append(slices.Clone(md.Inputs), md.Outputs...)
	batch := len(all) > 0
	names := map[string]bool{}
	for _, s := range all {
		if len(s.Shape) == 0 || s.Shape[0] != -1 {
			batch = false
		}
		if names[s.Name] {
			t.Errorf("tensor name %q appears twice", s.Name)
		}
		names[s.Name] = true
		if !s.DataType.Valid() {
			t.Errorf("tensor %q has invalid datatype %v", s.Name, s.DataType)
		}
		for _, d := range s.Shape {
			if d < -1 {
				t.Errorf("tensor %q has dimension %d < -1", s.Name, d)
			}
		}
	}
	if md.BatchDim != batch {
		t.Errorf("BatchDim = %v but the shapes say %v", md.BatchDim, batch)
	}
	if len(md.Outputs) == 0 {
		t.Error("model reports no outputs")
	}
}

func compareSpecs(t *testing.T, kind string, got, want []inference.TensorSpec) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d %ss %v, want %d %v", len(got), kind, got, len(want), want)
		return
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.DataType != w.DataType || !g.Shape.Equal(w.Shape) {
			t.Errorf("%s %d = %s %s%v, want %s %s%v", kind, i, g.Name, g.DataType, g.Shape, w.Name, w.DataType, w.Shape)
		}
	}
}

func uses(md inference.Metadata, dt tensor.DataType) bool {
	for _, s := range append(slices.Clone(md.Inputs), md.Outputs...) {
		if s.DataType == dt {
			return true
		}
	}
	return false
}

func testDataType(t *testing.T, h Harness, dt tensor.DataType) {
	covered := false
	for _, c := range h.Cases {
		if !uses(c.Want, dt) {
			continue
		}
		covered = true
		t.Run(c.Name, func(t *testing.T) {
			m := load(t, h.Backend, c)
			for _, batch := range batches(c) {
				inputs, want := c.Example(batch)
				got, err := m.Infer(context.Background(), inputs, nil)
				if err != nil {
					t.Fatalf("Infer(batch %d): %v", batch, err)
				}
				checkOutputs(t, fmt.Sprintf("batch %d", batch), m.Metadata(), got, want, c.Tolerance)
			}
		})
	}
	if !covered {
		t.Errorf("the harness declares %s but no case has a %s input or output", dt, dt)
	}
}

func batches(c Case) []int {
	if n := c.maxBatch(); n > 1 {
		return []int{1, n}
	}
	return []int{1}
}

func testInfer(t *testing.T, b inference.Backend, c Case) {
	m := load(t, b, c)
	md := m.Metadata()
	for _, batch := range batches(c) {
		inputs, want := c.Example(batch)
		if len(want) != len(md.Outputs) {
			t.Fatalf("Example(%d) returned %d expected outputs, the model has %d", batch, len(want), len(md.Outputs))
		}
		t.Run(fmt.Sprintf("batch%d", batch), func(t *testing.T) {
			got, err := m.Infer(context.Background(), inputs, nil)
			if err != nil {
				t.Fatalf("Infer: %v", err)
			}
			checkOutputs(t, "all outputs", md, got, want, c.Tolerance)

			// Inputs in reverse order are the same request.
			rev := slices.Clone(inputs)
			slices.Reverse(rev)
			got, err = m.Infer(context.Background(), rev, nil)
			if err != nil {
				t.Fatalf("Infer(reversed inputs): %v", err)
			}
			checkOutputs(t, "reversed inputs", md, got, want, c.Tolerance)

			// Each output alone, then all in reverse order.
			for i, o := range md.Outputs {
				got, err := m.Infer(context.Background(), inputs, []string{o.Name})
				if err != nil {
					t.Fatalf("Infer(output %q): %v", o.Name, err)
				}
				checkSelected(t, "output "+o.Name, md, []int{i}, got, want, c.Tolerance)
			}
			var names []string
			var idx []int
			for i := len(md.Outputs) - 1; i >= 0; i-- {
				names = append(names, md.Outputs[i].Name)
				idx = append(idx, i)
			}
			got, err = m.Infer(context.Background(), inputs, names)
			if err != nil {
				t.Fatalf("Infer(outputs %q): %v", names, err)
			}
			checkSelected(t, "reversed outputs", md, idx, got, want, c.Tolerance)
		})
	}
}

// checkOutputs compares every output, in metadata order.
func checkOutputs(t *testing.T, what string, md inference.Metadata, got, want []tensor.Tensor, tol float64) {
	t.Helper()
	idx := make([]int, len(md.Outputs))
	for i := range idx {
		idx[i] = i
	}
	checkSelected(t, what, md, idx, got, want, tol)
}

// checkSelected compares got against want[idx[k]] for each k.
func checkSelected(t *testing.T, what string, md inference.Metadata, idx []int, got, want []tensor.Tensor, tol float64) {
	t.Helper()
	if len(got) != len(idx) {
		t.Errorf("%s: got %d outputs, want %d", what, len(got), len(idx))
		return
	}
	for k, j := range idx {
		g := got[k]
		spec := md.Outputs[j]
		if g.Name != spec.Name {
			t.Errorf("%s: output %d is named %q, want %q", what, k, g.Name, spec.Name)
			continue
		}
		if !g.Shape.Matches(spec.Shape) {
			t.Errorf("%s: output %q has shape %v, metadata says %v", what, g.Name, g.Shape, spec.Shape)
		}
		if err := g.Validate(0); err != nil {
			t.Errorf("%s: output %q is inconsistent: %v", what, g.Name, err)
			continue
		}
		if j < len(want) {
			if err := CompareTensor(g, want[j], tol); err != nil {
				t.Errorf("%s: %v", what, err)
			}
		}
	}
}

func testBatch(t *testing.T, b inference.Backend, c Case) {
	n := c.maxBatch()
	if n < 2 {
		t.Fatalf("MaxBatch %d: the batch test needs at least 2 rows", n)
	}
	m := load(t, b, c)
	md := m.Metadata()
	inputs, want := c.Example(n)
	full, err := m.Infer(context.Background(), inputs, nil)
	if err != nil {
		t.Fatalf("Infer(batch %d): %v", n, err)
	}
	checkOutputs(t, fmt.Sprintf("batch %d", n), md, full, want, c.Tolerance)
	for r := range int64(n) {
		row := make([]tensor.Tensor, len(inputs))
		for i, in := range inputs {
			if row[i], err = sliceRows(in, r, r+1); err != nil {
				t.Fatalf("input %q: %v", in.Name, err)
			}
		}
		got, err := m.Infer(context.Background(), row, nil)
		if err != nil {
			t.Fatalf("Infer(row %d): %v", r, err)
		}
		if len(got) != len(full) {
			t.Fatalf("row %d: %d outputs, batch gave %d", r, len(got), len(full))
		}
		for i := range got {
			wantRow, err := sliceRows(full[i], r, r+1)
			if err != nil {
				t.Fatalf("output %q of the batch: %v", full[i].Name, err)
			}
			if err := CompareTensor(got[i], wantRow, c.Tolerance); err != nil {
				t.Errorf("row %d alone differs from row %d of batch %d: %v", r, r, n, err)
			}
		}
	}
}

// otherType returns a datatype different from dt, of the same width when
// one exists, so only the datatype is wrong.
func otherType(dt tensor.DataType) tensor.DataType {
	for _, o := range tensor.AllDataTypes {
		if o != dt && o.Size() == dt.Size() && o.Size() > 0 {
			return o
		}
	}
	return tensor.FP32
}

func testErrors(t *testing.T, b inference.Backend, c Case) {
	m := load(t, b, c)
	md := m.Metadata()
	ctx := context.Background()
	valid := func() []tensor.Tensor {
		in, _ := c.Example(1)
		return in
	}
	type errCase struct {
		name    string
		inputs  []tensor.Tensor
		outputs []string
		want    error
	}
	cases := []errCase{
		{"unknown input", append(valid(), tensor.Tensor{Name: "kiln_no_such_input", DataType: tensor.FP32, Shape: tensor.Shape{1}, Data: make([]byte, 4)}), nil, inference.ErrInvalidInput},
		{"unknown output", valid(), []string{"kiln_no_such_output"}, inference.ErrNotFound},
		{"duplicate output", valid(), []string{md.Outputs[0].Name, md.Outputs[0].Name}, inference.ErrInvalidInput},
	}
	if len(md.Inputs) > 0 {
		in := valid()
		cases = append(cases, errCase{"missing input", in[1:], nil, inference.ErrInvalidInput})
		in = valid()
		cases = append(cases, errCase{"duplicate input", append(in, in[0]), nil, inference.ErrInvalidInput})

		in = valid()
		in[0].DataType = otherType(in[0].DataType)
		cases = append(cases, errCase{"wrong datatype", in, nil, inference.ErrInvalidInput})

		in = valid()
		in[0].Shape = append(in[0].Shape.Clone(), 1) // same elements, one more dimension
		cases = append(cases, errCase{"wrong rank", in, nil, inference.ErrInvalidInput})

		in = valid()
		var pattern tensor.Shape
		for _, s := range md.Inputs {
			if s.Name == in[0].Name {
				pattern = s.Shape
			}
		}
		for d, v := range pattern {
			if v > 0 {
				in[0].Shape = in[0].Shape.Clone()
				in[0].Shape[d] = v + 1
				cases = append(cases, errCase{"wrong fixed dimension", in, nil, inference.ErrInvalidInput})
				break
			}
		}

		in = valid()
		if in[0].DataType == tensor.Bytes {
			in[0].Data = binary.LittleEndian.AppendUint32(slices.Clone(in[0].Data), 1)
			in[0].Data = append(in[0].Data, 'x')
		} else {
			in[0].Data = append(slices.Clone(in[0].Data), make([]byte, in[0].DataType.Size())...)
		}
		cases = append(cases, errCase{"data longer than shape", in, nil, inference.ErrInvalidInput})

		in = valid()
		if len(in[0].Data) > 0 {
			in[0].Data = in[0].Data[:len(in[0].Data)-1]
			cases = append(cases, errCase{"data shorter than shape", in, nil, inference.ErrInvalidInput})
		}
	}
	for _, ec := range cases {
		t.Run(ec.name, func(t *testing.T) {
			out, err := m.Infer(ctx, ec.inputs, ec.outputs)
			if !errors.Is(err, ec.want) {
				t.Fatalf("Infer error = %v (outputs %d), want one wrapping %v", err, len(out), ec.want)
			}
		})
	}
	t.Run("cancelled context", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := m.Infer(cctx, valid(), nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Infer with a cancelled context: error = %v, want context.Canceled", err)
		}
	})
	t.Run("still works", func(t *testing.T) {
		inputs, want := c.Example(1)
		got, err := m.Infer(ctx, inputs, nil)
		if err != nil {
			t.Fatalf("Infer after errors: %v", err)
		}
		checkOutputs(t, "after errors", md, got, want, c.Tolerance)
	})
}

func testConcurrent(t *testing.T, b inference.Backend, c Case, goroutines int) {
	m := load(t, b, c)
	const iterations = 8
	bs := batches(c)
	errs := make(chan error, goroutines*iterations)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range iterations {
				batch := bs[(g+i)%len(bs)]
				inputs, want := c.Example(batch)
				got, err := m.Infer(context.Background(), inputs, nil)
				if err != nil {
					errs <- fmt.Errorf("goroutine %d, call %d (batch %d): %w", g, i, batch, err)
					continue
				}
				if len(got) != len(want) {
					errs <- fmt.Errorf("goroutine %d, call %d: %d outputs, want %d", g, i, len(got), len(want))
					continue
				}
				// At most one error per call: errs holds one per call.
				for k := range got {
					if err := CompareTensor(got[k], want[k], c.Tolerance); err != nil {
						errs <- fmt.Errorf("goroutine %d, call %d (batch %d): %w", g, i, batch, err)
						break
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testClose(t *testing.T, b inference.Backend, c Case) {
	m, err := b.Load(context.Background(), c.Spec)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	inputs, _ := c.Example(1)
	if _, err := m.Infer(context.Background(), inputs, nil); err != nil {
		t.Fatalf("Infer before Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := m.Infer(context.Background(), inputs, nil); !errors.Is(err, inference.ErrClosed) {
		t.Errorf("Infer after Close: error = %v, want ErrClosed", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if md := m.Metadata(); len(md.Outputs) != len(c.Want.Outputs) {
		t.Errorf("Metadata after Close has %d outputs, want %d", len(md.Outputs), len(c.Want.Outputs))
	}
}

// rowsOf returns the number of rows (dimension 0) and the elements per
// row of a tensor of rank >= 1.
func rowsOf(t tensor.Tensor) (rows, per int64, err error) {
	if len(t.Shape) == 0 {
		return 0, 0, fmt.Errorf("%q is a scalar; it has no rows", t.Name)
	}
	per, err = tensor.Shape(t.Shape[1:]).Elements(0)
	return t.Shape[0], per, err
}

// sliceRows returns rows [from, to) of t (copied).
func sliceRows(t tensor.Tensor, from, to int64) (tensor.Tensor, error) {
	rows, per, err := rowsOf(t)
	if err != nil {
		return tensor.Tensor{}, err
	}
	if from < 0 || to > rows || from > to {
		return tensor.Tensor{}, fmt.Errorf("rows [%d,%d) out of range for %q with %d rows", from, to, t.Name, rows)
	}
	out := tensor.Tensor{Name: t.Name, DataType: t.DataType, Shape: t.Shape.Clone()}
	out.Shape[0] = to - from
	if t.DataType != tensor.Bytes {
		size := per * int64(t.DataType.Size())
		if int64(len(t.Data)) != rows*size {
			return tensor.Tensor{}, fmt.Errorf("%q has %d bytes, shape %v needs %d", t.Name, len(t.Data), t.Shape, rows*size)
		}
		out.Data = slices.Clone(t.Data[from*size : to*size])
		return out, nil
	}
	elems, err := splitBytes(t.Data)
	if err != nil {
		return tensor.Tensor{}, err
	}
	if int64(len(elems)) != rows*per {
		return tensor.Tensor{}, fmt.Errorf("%q has %d elements, shape %v needs %d", t.Name, len(elems), t.Shape, rows*per)
	}
	for _, e := range elems[from*per : to*per] {
		out.Data = binary.LittleEndian.AppendUint32(out.Data, uint32(len(e)))
		out.Data = append(out.Data, e...)
	}
	if out.Data == nil {
		out.Data = []byte{}
	}
	return out, nil
}

func splitBytes(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, errors.New("truncated BYTES length prefix")
		}
		n := binary.LittleEndian.Uint32(b)
		b = b[4:]
		if uint64(n) > uint64(len(b)) {
			return nil, errors.New("BYTES element runs past the end")
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out, nil
}

// CompareTensor reports how got differs from want: name, datatype, shape
// and elements. Integer, BOOL and BYTES elements must be equal; FP16,
// BF16, FP32 and FP64 elements may differ by tol relative to
// max(|want|, 1), and NaN equals NaN. It returns nil when they match.
func CompareTensor(got, want tensor.Tensor, tol float64) error {
	if got.Name != want.Name {
		return fmt.Errorf("output named %q, want %q", got.Name, want.Name)
	}
	if got.DataType != want.DataType {
		return fmt.Errorf("%q: datatype %s, want %s", got.Name, got.DataType, want.DataType)
	}
	if !got.Shape.Equal(want.Shape) {
		return fmt.Errorf("%q: shape %v, want %v", got.Name, got.Shape, want.Shape)
	}
	switch dt := got.DataType; dt {
	case tensor.FP16, tensor.BF16, tensor.FP32, tensor.FP64:
		if len(got.Data) != len(want.Data) {
			return fmt.Errorf("%q: %d data bytes, want %d", got.Name, len(got.Data), len(want.Data))
		}
		size := dt.Size()
		for i := 0; i+size <= len(got.Data); i += size {
			g, w := floatAt(dt, got.Data[i:]), floatAt(dt, want.Data[i:])
			if math.IsNaN(g) && math.IsNaN(w) {
				continue
			}
			if g == w {
				continue
			}
			if !(math.Abs(g-w) <= tol*math.Max(math.Abs(w), 1)) {
				return fmt.Errorf("%q: element %d is %g, want %g (tolerance %g)", got.Name, i/size, g, w, tol)
			}
		}
		return nil
	case tensor.Bytes:
		ge, err := splitBytes(got.Data)
		if err != nil {
			return fmt.Errorf("%q: %w", got.Name, err)
		}
		we, err := splitBytes(want.Data)
		if err != nil {
			return fmt.Errorf("%q (expected): %w", want.Name, err)
		}
		if len(ge) != len(we) {
			return fmt.Errorf("%q: %d elements, want %d", got.Name, len(ge), len(we))
		}
		for i := range ge {
			if string(ge[i]) != string(we[i]) {
				return fmt.Errorf("%q: element %d is %q, want %q", got.Name, i, ge[i], we[i])
			}
		}
		return nil
	default:
		if len(got.Data) != len(want.Data) {
			return fmt.Errorf("%q: %d data bytes, want %d", got.Name, len(got.Data), len(want.Data))
		}
		size := max(dt.Size(), 1)
		for i := 0; i < len(got.Data); i += size {
			if string(got.Data[i:i+size]) != string(want.Data[i:i+size]) {
				return fmt.Errorf("%q: element %d is %x, want %x (%s, little-endian)", got.Name, i/size, got.Data[i:i+size], want.Data[i:i+size], dt)
			}
		}
		return nil
	}
}

// floatAt decodes one little-endian floating-point element.
func floatAt(dt tensor.DataType, b []byte) float64 {
	switch dt {
	case tensor.FP16:
		return halfToFloat(binary.LittleEndian.Uint16(b))
	case tensor.BF16:
		return float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(b)) << 16))
	case tensor.FP32:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
	default:
		return math.Float64frombits(binary.LittleEndian.Uint64(b))
	}
}

// halfToFloat decodes an IEEE 754 binary16 value exactly.
func halfToFloat(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	frac := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(frac, -24)
	case 0x1f:
		if frac != 0 {
			return math.NaN()
		}
		return math.Inf(int(sign))
	default:
		return sign * math.Ldexp(1+frac/1024, exp-15)
	}
}
