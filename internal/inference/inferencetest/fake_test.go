package inferencetest_test

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/inference/inferencetest"
	"github.com/kilnai/kiln/internal/tensor"
)

// value returns test element k as dt's little-endian bytes. It is written
// per type, independently of the fake's byte-level arithmetic.
func value(dt tensor.DataType, k int) []byte {
	le := binary.LittleEndian
	switch dt {
	case tensor.Bool:
		return []byte{byte(k % 2)}
	case tensor.Uint8:
		return []byte{uint8(200 + k)} // wraps past 255 for large k
	case tensor.Int8:
		return []byte{byte(int8(-60 + k))}
	case tensor.Uint16:
		return le.AppendUint16(nil, uint16(65530+k))
	case tensor.Int16:
		return le.AppendUint16(nil, uint16(int16(-300+k)))
	case tensor.Uint32:
		return le.AppendUint32(nil, uint32(4294967290+k))
	case tensor.Int32:
		return le.AppendUint32(nil, uint32(int32(-7+k)))
	case tensor.Uint64:
		return le.AppendUint64(nil, uint64(math.MaxUint64-3+uint64(k)))
	case tensor.Int64:
		return le.AppendUint64(nil, uint64(int64(-1_000_000_000_000+k)))
	case tensor.FP16, tensor.BF16:
		return le.AppendUint16(nil, uint16(0x3c00+k)) // positive normals in both
	case tensor.FP32:
		return le.AppendUint32(nil, math.Float32bits(float32(k)*0.25-1))
	case tensor.FP64:
		return le.AppendUint64(nil, math.Float64bits(float64(k)*0.125-3))
	case tensor.Bytes:
		s := "e" + strconv.Itoa(k)
		return append(le.AppendUint32(nil, uint32(len(s))), s...)
	}
	panic("no test values for " + dt.String())
}

// expected returns what a fake of the given version computes from
// value(dt, k), computed with Go's typed arithmetic.
func expected(dt tensor.DataType, k int, version int64) []byte {
	le := binary.LittleEndian
	switch dt {
	case tensor.Uint8:
		return []byte{uint8(200+k)*2 + uint8(version)}
	case tensor.Int8:
		return []byte{byte(int8(-60+k)*2 + int8(version))}
	case tensor.Uint16:
		return le.AppendUint16(nil, uint16(65530+k)*2+uint16(version))
	case tensor.Int16:
		return le.AppendUint16(nil, uint16(int16(-300+k)*2+int16(version)))
	case tensor.Uint32:
		return le.AppendUint32(nil, uint32(4294967290+k)*2+uint32(version))
	case tensor.Int32:
		return le.AppendUint32(nil, uint32(int32(-7+k)*2+int32(version)))
	case tensor.Uint64:
		return le.AppendUint64(nil, uint64(math.MaxUint64-3+uint64(k))*2+uint64(version))
	case tensor.Int64:
		return le.AppendUint64(nil, uint64(int64(-1_000_000_000_000+k)*2+version))
	case tensor.FP32:
		return le.AppendUint32(nil, math.Float32bits((float32(k)*0.25-1)*2+float32(version)))
	case tensor.FP64:
		return le.AppendUint64(nil, math.Float64bits((float64(k)*0.125-3)*2+float64(version)))
	}
	return value(dt, k) // identity types
}

// example builds a request for specs with batch rows (dimension 0 = -1
// becomes batch) and the expected outputs: output i comes from input
// from[i].
func example(ins, outs []inference.TensorSpec, from []int, version int64) func(batch int) ([]tensor.Tensor, []tensor.Tensor) {
	return func(batch int) ([]tensor.Tensor, []tensor.Tensor) {
		var inputs, want []tensor.Tensor
		for _, s := range ins {
			shape := s.Shape.Clone()
			if len(shape) > 0 && shape[0] == -1 {
				shape[0] = int64(batch)
			}
			n, _ := shape.Elements(0)
			t := tensor.Tensor{Name: s.Name, DataType: s.DataType, Shape: shape, Data: []byte{}}
			for k := range int(n) {
				t.Data = append(t.Data, value(s.DataType, k)...)
			}
			inputs = append(inputs, t)
		}
		for i, s := range outs {
			in := inputs[from[i]]
			n, _ := in.Shape.Elements(0)
			t := tensor.Tensor{Name: s.Name, DataType: s.DataType, Shape: in.Shape.Clone(), Data: []byte{}}
			for k := range int(n) {
				t.Data = append(t.Data, expected(s.DataType, k, version)...)
			}
			want = append(want, t)
		}
		return inputs, want
	}
}

func writeSpec(t *testing.T, dir, content string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, inferencetest.FakeSpecFile), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestFakeConformance(t *testing.T) {
	dir := t.TempDir()

	// One batch model with an input and output of every datatype, read
	// from a model.fake.json file.
	var allIn, allOut []inference.TensorSpec
	spec := `{"inputs": [`
	for i, dt := range tensor.AllDataTypes {
		if i > 0 {
			spec += ","
		}
		allIn = append(allIn, inference.TensorSpec{Name: "in_" + dt.String(), DataType: dt, Shape: tensor.Shape{-1, 3}})
		spec += `{"name": "in_` + dt.String() + `", "datatype": "` + dt.String() + `", "shape": [-1, 3]}`
	}
	spec += `], "outputs": [`
	for i, dt := range slices.Backward(tensor.AllDataTypes) {
		if i < len(tensor.AllDataTypes)-1 {
			spec += ","
		}
		allOut = append(allOut, inference.TensorSpec{Name: "out_" + dt.String(), DataType: dt, Shape: tensor.Shape{-1, 3}})
		spec += `{"name": "out_` + dt.String() + `", "datatype": "` + dt.String() + `", "shape": [-1, 3], "from": "in_` + dt.String() + `"}`
	}
	spec += `]}`
	allDir := writeSpec(t, filepath.Join(dir, "all", "3"), spec)

	// A model from LoadSpec tensors only, outputs paired by index.
	cfgIn := []inference.TensorSpec{
		{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{-1, 4}},
		{Name: "ids", DataType: tensor.Int64, Shape: tensor.Shape{-1}},
	}
	cfgOut := []inference.TensorSpec{
		{Name: "y", DataType: tensor.FP32, Shape: tensor.Shape{-1, 4}},
		{Name: "ids_out", DataType: tensor.Int64, Shape: tensor.Shape{-1}},
		{Name: "y2", DataType: tensor.FP32, Shape: tensor.Shape{-1, 4}},
	}

	// A model without a batch dimension, with a scalar.
	scalarIn := []inference.TensorSpec{
		{Name: "k", DataType: tensor.FP64, Shape: tensor.Shape{}},
		{Name: "v", DataType: tensor.Int32, Shape: tensor.Shape{2, 2}},
	}
	scalarOut := []inference.TensorSpec{
		{Name: "k2", DataType: tensor.FP64, Shape: tensor.Shape{}},
		{Name: "v2", DataType: tensor.Int32, Shape: tensor.Shape{2, 2}},
	}

	inferencetest.Run(t, inferencetest.Harness{
		Backend:   inferencetest.NewFake(),
		DataTypes: tensor.AllDataTypes,
		Cases: []inferencetest.Case{
			{
				Name:    "all_datatypes",
				Spec:    inference.LoadSpec{Name: "all", Version: 3, Path: allDir},
				Want:    inference.Metadata{Platform: "fake", Inputs: allIn, Outputs: allOut, BatchDim: true},
				Example: example(allIn, allOut, reversedIndex(len(allIn)), 3),
			},
			{
				Name:     "configured",
				Spec:     inference.LoadSpec{Name: "cfg", Version: 1, Inputs: cfgIn, Outputs: cfgOut},
				Want:     inference.Metadata{Platform: "fake", Inputs: cfgIn, Outputs: cfgOut, BatchDim: true},
				Example:  example(cfgIn, cfgOut, []int{0, 1, 0}, 1),
				MaxBatch: 5,
			},
			{
				Name:    "scalar",
				Spec:    inference.LoadSpec{Name: "scalar", Version: 7, Inputs: scalarIn, Outputs: scalarOut},
				Want:    inference.Metadata{Inputs: scalarIn, Outputs: scalarOut},
				Example: example(scalarIn, scalarOut, []int{0, 1}, 7),
			},
		},
	})
}

func reversedIndex(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = n - 1 - i
	}
	return idx
}

var simple = []inference.TensorSpec{{Name: "x", DataType: tensor.Int32, Shape: tensor.Shape{-1, 2}}}

func simpleSpec(version int64) inference.LoadSpec {
	out := []inference.TensorSpec{{Name: "y", DataType: tensor.Int32, Shape: tensor.Shape{-1, 2}}}
	return inference.LoadSpec{Name: "m", Version: version, Inputs: simple, Outputs: out}
}

func simpleInput(rows int) []tensor.Tensor {
	in, _ := example(simple, simple, []int{0}, 0)(rows)
	return in
}

func loadFake(t *testing.T, f *inferencetest.Fake, spec inference.LoadSpec) inference.Model {
	t.Helper()
	m, err := f.Load(context.Background(), spec)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func TestExpected(t *testing.T) {
	le := binary.LittleEndian
	tests := []struct {
		name    string
		in      tensor.Tensor
		version int64
		want    []byte
	}{
		{"int32", tensor.Tensor{DataType: tensor.Int32, Shape: tensor.Shape{2}, Data: le.AppendUint32(le.AppendUint32(nil, 5), uint32(0xffffffff))}, 1,
			le.AppendUint32(le.AppendUint32(nil, 11), uint32(0xffffffff))}, // -1*2+1 = -1
		{"uint8 wraps", tensor.Tensor{DataType: tensor.Uint8, Shape: tensor.Shape{1}, Data: []byte{200}}, 2, []byte{146}},
		{"fp32", tensor.Tensor{DataType: tensor.FP32, Shape: tensor.Shape{1}, Data: le.AppendUint32(nil, math.Float32bits(1.5))}, 2,
			le.AppendUint32(nil, math.Float32bits(5))},
		{"bool identity", tensor.Tensor{DataType: tensor.Bool, Shape: tensor.Shape{2}, Data: []byte{1, 0}}, 9, []byte{1, 0}},
		{"bytes identity", tensor.Tensor{DataType: tensor.Bytes, Shape: tensor.Shape{1}, Data: append(le.AppendUint32(nil, 2), "hi"...)}, 9,
			append(le.AppendUint32(nil, 2), "hi"...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := inferencetest.Expected(tt.in, tt.version)
			if !slices.Equal(got.Data, tt.want) {
				t.Errorf("Expected data = %v, want %v", got.Data, tt.want)
			}
			if len(tt.in.Data) > 0 && &got.Data[0] == &tt.in.Data[0] {
				t.Error("Expected shares the input's data")
			}
		})
	}
}

func TestFakeRecordsBatchSizes(t *testing.T) {
	f := inferencetest.NewFake()
	m := loadFake(t, f, simpleSpec(1))
	for _, rows := range []int{1, 4, 2} {
		if _, err := m.Infer(context.Background(), simpleInput(rows), nil); err != nil {
			t.Fatalf("Infer(%d rows): %v", rows, err)
		}
	}
	// An invalid request never reaches the recorder.
	if _, err := m.Infer(context.Background(), nil, nil); !errors.Is(err, inference.ErrInvalidInput) {
		t.Fatalf("Infer(no inputs) = %v, want ErrInvalidInput", err)
	}
	if got, want := f.BatchSizes(), []int64{1, 4, 2}; !slices.Equal(got, want) {
		t.Errorf("BatchSizes = %v, want %v", got, want)
	}
	calls := f.Calls()
	if len(calls) != 3 || calls[1].Model != "m" || calls[1].Version != 1 || !slices.Equal(calls[1].Outputs, []string{"y"}) {
		t.Errorf("Calls = %+v", calls)
	}
	if f.Loads() != 1 || f.Open() != 1 {
		t.Errorf("Loads, Open = %d, %d, want 1, 1", f.Loads(), f.Open())
	}
}

func TestFakeInferError(t *testing.T) {
	f := inferencetest.NewFake()
	m := loadFake(t, f, simpleSpec(1))
	boom := errors.New("boom")
	f.SetInferError(boom)
	if _, err := m.Infer(context.Background(), simpleInput(1), nil); !errors.Is(err, boom) {
		t.Fatalf("Infer error = %v, want the injected one", err)
	}
	f.SetInferError(nil)
	if _, err := m.Infer(context.Background(), simpleInput(1), nil); err != nil {
		t.Fatalf("Infer after clearing the error: %v", err)
	}
}

func TestFakeLoadHooks(t *testing.T) {
	t.Run("error", func(t *testing.T) {
		f := inferencetest.NewFake()
		boom := errors.New("no room")
		f.SetLoadError(boom)
		if _, err := f.Load(context.Background(), simpleSpec(1)); !errors.Is(err, boom) {
			t.Fatalf("Load error = %v, want the injected one", err)
		}
		if f.Loads() != 0 {
			t.Errorf("Loads = %d after a failed load", f.Loads())
		}
	})
	t.Run("gate honours the context", func(t *testing.T) {
		f := inferencetest.NewFake()
		f.SetLoadGate(make(chan struct{}))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := f.Load(ctx, simpleSpec(1)); !errors.Is(err, context.Canceled) {
			t.Fatalf("Load error = %v, want context.Canceled", err)
		}
	})
}

func TestFakeDelayHonoursContext(t *testing.T) {
	f := inferencetest.NewFake()
	m := loadFake(t, f, simpleSpec(1))
	f.SetDelay(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	entered := make(chan inferencetest.Call)
	f.SetEntered(entered)
	done := make(chan error, 1)
	go func() {
		_, err := m.Infer(ctx, simpleInput(1), nil)
		done <- err
	}()
	<-entered
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Infer error = %v, want context.Canceled", err)
	}
}

func TestFakeGateAndCloseWaits(t *testing.T) {
	f := inferencetest.NewFake()
	m, err := f.Load(context.Background(), simpleSpec(2))
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	entered := make(chan inferencetest.Call)
	f.SetGate(gate)
	f.SetEntered(entered)

	const callers = 3
	results := make(chan error, callers)
	for range callers {
		go func() {
			out, err := m.Infer(context.Background(), simpleInput(2), nil)
			if err == nil && len(out) != 1 {
				err = errors.New("wrong number of outputs")
			}
			results <- err
		}()
	}
	for range callers {
		<-entered
	}
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()

	// Close is waiting for the gated calls; new calls are refused already
	// or will be once Close marked the model (both are ErrClosed or a
	// gated call, so only check after the gate opens).
	close(gate)
	for range callers {
		if err := <-results; err != nil {
			t.Errorf("gated Infer: %v", err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := m.Infer(context.Background(), simpleInput(1), nil); !errors.Is(err, inference.ErrClosed) {
		t.Errorf("Infer after Close = %v, want ErrClosed", err)
	}
	if f.Open() != 0 {
		t.Errorf("Open = %d after Close", f.Open())
	}
	if f.MaxConcurrent() != callers {
		t.Errorf("MaxConcurrent = %d, want %d", f.MaxConcurrent(), callers)
	}
}

func TestFakeLoadErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		spec string // model.fake.json content
	}{
		{"not json", `{`},
		{"no outputs", `{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}`},
		{"bad datatype", `{"inputs": [{"name": "x", "datatype": "FP33", "shape": [1]}], "outputs": [{"name": "y", "datatype": "FP32", "shape": [1]}]}`},
		{"duplicate name", `{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}], "outputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}`},
		{"output type differs", `{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}], "outputs": [{"name": "y", "datatype": "INT32", "shape": [1]}]}`},
		{"unknown from", `{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}], "outputs": [{"name": "y", "datatype": "FP32", "shape": [1], "from": "z"}]}`},
		{"bad dim", `{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-2]}], "outputs": [{"name": "y", "datatype": "FP32", "shape": [-2]}]}`},
	}
	f := inferencetest.NewFake()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := writeSpec(t, filepath.Join(dir, tt.name), tt.spec)
			if m, err := f.Load(context.Background(), inference.LoadSpec{Name: "bad", Path: d}); err == nil {
				_ = m.Close()
				t.Fatal("Load succeeded, want an error")
			}
		})
	}
	t.Run("config disagrees with file", func(t *testing.T) {
		d := writeSpec(t, filepath.Join(dir, "cfg"), `{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}], "outputs": [{"name": "y", "datatype": "FP32", "shape": [1]}]}`)
		spec := inference.LoadSpec{Name: "cfg", Path: d, Inputs: []inference.TensorSpec{{Name: "x", DataType: tensor.Int32, Shape: tensor.Shape{1}}}}
		if m, err := f.Load(context.Background(), spec); err == nil {
			_ = m.Close()
			t.Fatal("Load succeeded, want an error")
		}
	})
	t.Run("missing file", func(t *testing.T) {
		if _, err := f.Load(context.Background(), inference.LoadSpec{Name: "none", Path: filepath.Join(dir, "none")}); err == nil {
			t.Fatal("Load succeeded, want an error")
		}
	})
}
