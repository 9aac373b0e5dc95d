package onnx

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/inference/inferencetest"
	"github.com/kilnai/kiln/internal/tensor"
)

// requireORT returns a backend whose library was found, skipping the test
// when there is none unless KILN_REQUIRE_SERVICES=1, which makes it fail.
func requireORT(tb testing.TB) *Backend {
	tb.Helper()
	if _, err := LibraryPath(""); err != nil {
		if os.Getenv("KILN_REQUIRE_SERVICES") == "1" {
			tb.Fatalf("KILN_REQUIRE_SERVICES=1 but: %v", err)
		}
		tb.Skipf("ONNX Runtime not available: %v", err)
	}
	if _, err := ensureEnv(""); err != nil {
		tb.Fatalf("ONNX Runtime library found but: %v", err)
	}
	return New(Options{})
}

// refTensor is one tensor of a generator JSON file.
type refTensor struct {
	Name     string          `json:"name"`
	DataType tensor.DataType `json:"datatype"`
	Shape    tensor.Shape    `json:"shape"`
	Raw      string          `json:"raw"`
}

func (r refTensor) tensor(tb testing.TB) tensor.Tensor {
	b, err := base64.StdEncoding.DecodeString(r.Raw)
	if err != nil {
		tb.Fatalf("reference %q: %v", r.Name, err)
	}
	return tensor.Tensor{Name: r.Name, DataType: r.DataType, Shape: r.Shape.Clone(), Data: b}
}

// reference is a generator JSON file: metadata and a numpy example.
type reference struct {
	Name     string      `json:"name"`
	BatchDim bool        `json:"batch_dim"`
	Inputs   []refTensor `json:"inputs"`
	Outputs  []refTensor `json:"outputs"`
	Example  struct {
		Inputs  []refTensor `json:"inputs"`
		Outputs []refTensor `json:"outputs"`
	} `json:"example"`
}

// modelNames are the generated models under testdata.
var modelNames = []string{"fp32", "fp64", "int32", "int64", "bool", "uint8", "fp16", "bf16", "multi", "scalar", "constant", "strings", "mlp"}

func loadReference(tb testing.TB, name string) reference {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		tb.Fatal(err)
	}
	var r reference
	if err := json.Unmarshal(b, &r); err != nil {
		tb.Fatalf("%s.json: %v", name, err)
	}
	return r
}

func specs(rs []refTensor) []inference.TensorSpec {
	out := []inference.TensorSpec{}
	for _, r := range rs {
		out = append(out, inference.TensorSpec{Name: r.Name, DataType: r.DataType, Shape: r.Shape})
	}
	return out
}

// rows returns the first n rows of t (all of it for non-batch models).
func rows(tb testing.TB, t tensor.Tensor, n int64, batch bool) tensor.Tensor {
	tb.Helper()
	if !batch {
		return t
	}
	per, err := tensor.Shape(t.Shape[1:]).Elements(0)
	if err != nil {
		tb.Fatal(err)
	}
	out := tensor.Tensor{Name: t.Name, DataType: t.DataType, Shape: t.Shape.Clone()}
	out.Shape[0] = n
	if t.DataType != tensor.Bytes {
		out.Data = slices.Clone(t.Data[:n*per*int64(t.DataType.Size())])
		return out
	}
	b := t.Data
	for range n * per {
		l := binary.LittleEndian.Uint32(b)
		out.Data = append(out.Data, b[:4+l]...)
		b = b[4+l:]
	}
	return out
}

func testCase(tb testing.TB, name string) inferencetest.Case {
	r := loadReference(tb, name)
	c := inferencetest.Case{
		Name: name,
		Spec: inference.LoadSpec{Name: name, Version: 1, Path: filepath.Join("testdata", name+".onnx")},
		Want: inference.Metadata{Platform: Platform, Inputs: specs(r.Inputs), Outputs: specs(r.Outputs), BatchDim: r.BatchDim},
		Example: func(batch int) ([]tensor.Tensor, []tensor.Tensor) {
			var ins, outs []tensor.Tensor
			for _, t := range r.Example.Inputs {
				ins = append(ins, rows(tb, t.tensor(tb), int64(batch), r.BatchDim))
			}
			for _, t := range r.Example.Outputs {
				outs = append(outs, rows(tb, t.tensor(tb), int64(batch), r.BatchDim))
			}
			return ins, outs
		},
		MaxBatch: 4,
	}
	for _, t := range append(slices.Clone(r.Outputs), r.Inputs...) {
		switch t.DataType {
		case tensor.FP32, tensor.FP64, tensor.FP16, tensor.BF16:
			c.Tolerance = 1e-6
		}
	}
	return c
}

func TestConformance(t *testing.T) {
	b := requireORT(t)
	var cases []inferencetest.Case
	for _, name := range modelNames {
		cases = append(cases, testCase(t, name))
	}
	inferencetest.Run(t, inferencetest.Harness{
		Backend: b,
		Cases:   cases,
		DataTypes: []tensor.DataType{
			tensor.FP32, tensor.FP64, tensor.FP16, tensor.BF16, tensor.Int32, tensor.Int64,
			tensor.Uint8, tensor.Bool, tensor.Bytes,
		},
	})
}

// TestMatchesDirectORT runs every model's example through the backend and
// through onnxruntime_go called directly, and compares both with the
// numpy reference.
func TestMatchesDirectORT(t *testing.T) {
	b := requireORT(t)
	for _, name := range modelNames {
		t.Run(name, func(t *testing.T) {
			r := loadReference(t, name)
			path := filepath.Join("testdata", name+".onnx")
			var inputs, want []tensor.Tensor
			for _, x := range r.Example.Inputs {
				inputs = append(inputs, x.tensor(t))
			}
			for _, x := range r.Example.Outputs {
				want = append(want, x.tensor(t))
			}
			m, err := b.Load(context.Background(), inference.LoadSpec{Name: name, Path: path})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			got, err := m.Infer(context.Background(), inputs, nil)
			if err != nil {
				t.Fatalf("backend Infer: %v", err)
			}
			direct := runDirect(t, path, inputs, want)
			if len(got) != len(want) || len(direct) != len(want) {
				t.Fatalf("outputs: backend %d, direct %d, reference %d", len(got), len(direct), len(want))
			}
			for i := range want {
				if err := inferencetest.CompareTensor(got[i], direct[i], 0); err != nil {
					t.Errorf("backend vs direct ORT: %v", err)
				}
				if err := inferencetest.CompareTensor(got[i], want[i], 1e-6); err != nil {
					t.Errorf("backend vs numpy: %v", err)
				}
			}
		})
	}
}

// runDirect runs a model with onnxruntime_go's typed API, independently
// of the backend's value handling. want gives the output shapes for the
// outputs that must be pre-allocated.
func runDirect(t *testing.T, path string, inputs, want []tensor.Tensor) []tensor.Tensor {
	t.Helper()
	var inNames, outNames []string
	var ins, outs []ort.Value
	defer func() {
		for _, v := range append(ins, outs...) {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	for _, in := range inputs {
		inNames = append(inNames, in.Name)
		ins = append(ins, directValue(t, in))
	}
	for _, w := range want {
		outNames = append(outNames, w.Name)
		var v ort.Value
		switch {
		case len(inputs) == 0 || w.DataType == tensor.FP16 || w.DataType == tensor.BF16 || len(w.Shape) == 0:
			// Pre-allocate: scalars, halves and outputs of input-less models.
			zero := w
			zero.Data = make([]byte, len(w.Data))
			v = directValue(t, zero)
		}
		outs = append(outs, v)
	}
	sess, err := ort.NewDynamicAdvancedSession(path, inNames, outNames, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	if len(ins) == 0 {
		b, berr := sess.CreateIoBinding()
		if berr != nil {
			t.Fatal(berr)
		}
		defer b.Destroy()
		for i, v := range outs {
			if err := b.BindOutput(outNames[i], v); err != nil {
				t.Fatal(err)
			}
		}
		err = sess.RunWithBinding(b)
	} else {
		err = sess.Run(ins, outs)
	}
	if err != nil {
		t.Fatalf("direct Run: %v", err)
	}
	var got []tensor.Tensor
	for i, v := range outs {
		got = append(got, directTensor(t, want[i], v))
	}
	return got
}

func decode[T any](t *testing.T, data []byte, n int) []T {
	out := make([]T, n)
	if err := binary.Read(bytes.NewReader(data), binary.LittleEndian, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func encode[T any](t *testing.T, vals []T) []byte {
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, vals); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func typedDirect[T ort.TensorData](t *testing.T, x tensor.Tensor) ort.Value {
	n, _ := x.Shape.Elements(0)
	vals := decode[T](t, x.Data, int(n))
	var v ort.Value
	var err error
	if len(x.Shape) == 0 {
		v, err = ort.NewScalar(vals[0])
	} else {
		v, err = ort.NewTensor(ort.NewShape(x.Shape...), vals)
	}
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func directValue(t *testing.T, x tensor.Tensor) ort.Value {
	switch x.DataType {
	case tensor.FP32:
		return typedDirect[float32](t, x)
	case tensor.FP64:
		return typedDirect[float64](t, x)
	case tensor.Int32:
		return typedDirect[int32](t, x)
	case tensor.Int64:
		return typedDirect[int64](t, x)
	case tensor.Uint8:
		return typedDirect[uint8](t, x)
	case tensor.Bool:
		return typedDirect[bool](t, x)
	case tensor.FP16, tensor.BF16:
		et := ort.TensorElementDataType(ort.TensorElementDataTypeFloat16)
		if x.DataType == tensor.BF16 {
			et = ort.TensorElementDataTypeBFloat16
		}
		v, err := ort.NewCustomDataTensor(ort.NewShape(x.Shape...), slices.Clone(x.Data), et)
		if err != nil {
			t.Fatal(err)
		}
		return v
	case tensor.Bytes:
		var strs []string
		for b := x.Data; len(b) > 0; {
			l := binary.LittleEndian.Uint32(b)
			strs = append(strs, string(b[4:4+l]))
			b = b[4+l:]
		}
		v, err := ort.NewStringTensor(ort.NewShape(x.Shape...))
		if err != nil {
			t.Fatal(err)
		}
		if err := v.SetContents(strs); err != nil {
			t.Fatal(err)
		}
		return v
	}
	t.Fatalf("no direct value for %s", x.DataType)
	return nil
}

func directTensor(t *testing.T, want tensor.Tensor, v ort.Value) tensor.Tensor {
	out := tensor.Tensor{Name: want.Name, DataType: want.DataType, Shape: tensor.Shape(v.GetShape())}
	if out.Shape == nil {
		out.Shape = tensor.Shape{}
	}
	switch v := v.(type) {
	case *ort.Tensor[float32]:
		out.Data = encode(t, v.GetData())
	case *ort.Tensor[float64]:
		out.Data = encode(t, v.GetData())
	case *ort.Tensor[int32]:
		out.Data = encode(t, v.GetData())
	case *ort.Tensor[int64]:
		out.Data = encode(t, v.GetData())
	case *ort.Tensor[uint8]:
		out.Data = encode(t, v.GetData())
	case *ort.Tensor[bool]:
		out.Data = encode(t, v.GetData())
	case *ort.Scalar[float32]:
		out.Data = encode(t, []float32{v.GetData()})
	case *ort.Scalar[int64]:
		out.Data = encode(t, []int64{v.GetData()})
	case *ort.CustomDataTensor:
		out.Data = slices.Clone(v.GetData())
	case *ort.StringTensor:
		strs, err := v.GetContents()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range strs {
			out.Data = binary.LittleEndian.AppendUint32(out.Data, uint32(len(s)))
			out.Data = append(out.Data, s...)
		}
	default:
		t.Fatalf("direct output %q: unexpected %T", want.Name, v)
	}
	return out
}

func TestLoadUnsupported(t *testing.T) {
	b := requireORT(t)
	tests := []struct {
		model string
		want  string // fragment of the error
	}{
		{"sequence_output", `output "seq" has type ONNX_TYPE_SEQUENCE, not a tensor`},
		{"float8_input", `input "x" has element type ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E4M3FN, which has no Kiln datatype`},
		{"fp16_dynamic", `output "y" is FP16 with shape [-1,-1]`},
		{"fp16_scalar", `input "x" is a 0-d (or unknown-rank) FP16 tensor`},
		{"string_scalar", `input "x" is a 0-d (or unknown-rank) BYTES tensor`},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			m, err := b.Load(context.Background(), inference.LoadSpec{Name: tt.model, Path: filepath.Join("testdata", "unsupported", tt.model+".onnx")})
			if err == nil {
				m.Close()
				t.Fatal("Load succeeded, want ErrUnsupported")
			}
			if !errors.Is(err, inference.ErrUnsupported) {
				t.Errorf("Load error = %v, want ErrUnsupported", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestFP16DynamicFixedByConfig(t *testing.T) {
	b := requireORT(t)
	spec := inference.LoadSpec{
		Name: "fp16_dynamic",
		Path: filepath.Join("testdata", "unsupported", "fp16_dynamic.onnx"),
		Inputs: []inference.TensorSpec{
			{Name: "x", DataType: tensor.FP16, Shape: tensor.Shape{-1, 2}},
		},
		Outputs: []inference.TensorSpec{
			{Name: "y", DataType: tensor.FP16, Shape: tensor.Shape{-1, 2}},
		},
	}
	m, err := b.Load(context.Background(), spec)
	if err != nil {
		t.Fatalf("Load with configured dims: %v", err)
	}
	defer m.Close()
	if md := m.Metadata(); !md.BatchDim || !md.Outputs[0].Shape.Equal(tensor.Shape{-1, 2}) {
		t.Fatalf("Metadata = %+v, want batch dim and output [-1,2]", md)
	}
	in := tensor.Tensor{Name: "x", DataType: tensor.FP16, Shape: tensor.Shape{3, 2}, Data: []byte{0, 0x3c, 0, 0x40, 0, 0x42, 0, 0x44, 0, 0x45, 0, 0x46}}
	out, err := m.Infer(context.Background(), []tensor.Tensor{in}, nil)
	if err != nil {
		t.Fatalf("Infer: %v", err)
	}
	in.Name = "y"
	if err := inferencetest.CompareTensor(out[0], in, 0); err != nil {
		t.Error(err)
	}
}

func TestConfiguredTensors(t *testing.T) {
	b := requireORT(t)
	fp32 := func(name string, shape ...int64) inference.TensorSpec {
		return inference.TensorSpec{Name: name, DataType: tensor.FP32, Shape: shape}
	}
	tests := []struct {
		name    string
		inputs  []inference.TensorSpec
		outputs []inference.TensorSpec
		want    inference.TensorSpec // the model's input after merging; zero if the load must fail
		errIn   string
	}{
		{"same as model", []inference.TensorSpec{fp32("x", -1, 4)}, nil, fp32("x", -1, 4), ""},
		{"fixes batch", []inference.TensorSpec{fp32("x", 8, 4)}, nil, fp32("x", 8, 4), ""},
		{"unknown input", []inference.TensorSpec{fp32("nope", -1, 4)}, nil, inference.TensorSpec{}, `configured input "nope" is not an input`},
		{"unknown output", nil, []inference.TensorSpec{fp32("nope", -1, 4)}, inference.TensorSpec{}, `configured output "nope" is not an output`},
		{"wrong datatype", []inference.TensorSpec{{Name: "x", DataType: tensor.FP64, Shape: tensor.Shape{-1, 4}}}, nil, inference.TensorSpec{}, "is FP64, the model's is FP32"},
		{"wrong rank", []inference.TensorSpec{fp32("x", -1)}, nil, inference.TensorSpec{}, "ranks differ"},
		{"wrong fixed dim", []inference.TensorSpec{fp32("x", -1, 5)}, nil, inference.TensorSpec{}, `configured input "x" has shape [-1,5], the model's is [-1,4]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := b.Load(context.Background(), inference.LoadSpec{Name: "fp32", Path: filepath.Join("testdata", "fp32.onnx"), Inputs: tt.inputs, Outputs: tt.outputs})
			if tt.errIn != "" {
				if err == nil {
					m.Close()
					t.Fatal("Load succeeded, want an error")
				}
				if !strings.Contains(err.Error(), tt.errIn) {
					t.Errorf("Load error = %q, want it to contain %q", err, tt.errIn)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			defer m.Close()
			got := m.Metadata().Inputs[0]
			if got.Name != tt.want.Name || got.DataType != tt.want.DataType || !got.Shape.Equal(tt.want.Shape) {
				t.Errorf("input = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParameters(t *testing.T) {
	b := requireORT(t)
	tests := []struct {
		name   string
		params map[string]string
		errIn  string
	}{
		{"none", nil, ""},
		{"all knobs", map[string]string{"intra_op_threads": "1", "inter_op_threads": "2", "graph_optimization_level": "extended", "execution_mode": "parallel"}, ""},
		{"disable", map[string]string{"graph_optimization_level": "disable"}, ""},
		{"basic sequential", map[string]string{"graph_optimization_level": "basic", "execution_mode": "sequential"}, ""},
		{"all", map[string]string{"graph_optimization_level": "all", "intra_op_threads": "0"}, ""},
		{"unknown", map[string]string{"intra_threads": "1"}, `unknown parameter "intra_threads"`},
		{"bad threads", map[string]string{"intra_op_threads": "many"}, `intra_op_threads="many"`},
		{"negative threads", map[string]string{"inter_op_threads": "-1"}, `inter_op_threads="-1"`},
		{"bad level", map[string]string{"graph_optimization_level": "max"}, "want disable, basic, extended or all"},
		{"bad mode", map[string]string{"execution_mode": "async"}, "want sequential or parallel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := b.Load(context.Background(), inference.LoadSpec{Name: "mlp", Path: filepath.Join("testdata", "mlp.onnx"), Parameters: tt.params})
			if tt.errIn != "" {
				if err == nil {
					m.Close()
					t.Fatal("Load succeeded, want an error")
				}
				if !errors.Is(err, inference.ErrUnsupported) || !strings.Contains(err.Error(), tt.errIn) {
					t.Errorf("Load error = %v, want ErrUnsupported containing %q", err, tt.errIn)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			defer m.Close()
			c := testCase(t, "mlp")
			in, want := c.Example(2)
			got, err := m.Infer(context.Background(), in, nil)
			if err != nil {
				t.Fatalf("Infer: %v", err)
			}
			if err := inferencetest.CompareTensor(got[0], want[0], 1e-6); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	b := requireORT(t)
	notModel := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(notModel, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		path  string
		check func(error) bool
	}{
		{"missing file", filepath.Join(t.TempDir(), "none.onnx"), func(err error) bool { return errors.Is(err, os.ErrNotExist) }},
		{"not a model", notModel, func(err error) bool { return strings.Contains(err.Error(), "Protobuf parsing failed") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := b.Load(context.Background(), inference.LoadSpec{Name: "bad", Path: tt.path})
			if err == nil {
				m.Close()
				t.Fatal("Load succeeded")
			}
			if !tt.check(err) {
				t.Errorf("unexpected error %v", err)
			}
		})
	}
	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := b.Load(ctx, inference.LoadSpec{Name: "mlp", Path: filepath.Join("testdata", "mlp.onnx")}); !errors.Is(err, context.Canceled) {
			t.Errorf("Load error = %v, want context.Canceled", err)
		}
	})
}

// TestInputEdgeCases covers request tensors the backend must adapt
// before handing them to ORT.
func TestInputEdgeCases(t *testing.T) {
	b := requireORT(t)
	load := func(t *testing.T, name string) inference.Model {
		m, err := b.Load(context.Background(), inference.LoadSpec{Name: name, Path: filepath.Join("testdata", name+".onnx")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	t.Run("unaligned fp32", func(t *testing.T) {
		m := load(t, "fp32")
		in, want := testCase(t, "fp32").Example(3)
		buf := make([]byte, len(in[0].Data)+1)
		copy(buf[1:], in[0].Data)
		in[0].Data = buf[1:]
		got, err := m.Infer(context.Background(), in, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := inferencetest.CompareTensor(got[0], want[0], 1e-6); err != nil {
			t.Error(err)
		}
	})
	t.Run("zero rows", func(t *testing.T) {
		for _, name := range []string{"fp32", "fp16", "strings", "bool"} {
			m := load(t, name)
			in, _ := testCase(t, name).Example(1)
			for i := range in {
				in[i].Shape[0], in[i].Data = 0, []byte{}
			}
			got, err := m.Infer(context.Background(), in, nil)
			if err != nil {
				t.Fatalf("%s: Infer with 0 rows: %v", name, err)
			}
			for _, o := range got {
				if o.Shape[0] != 0 || len(o.Data) != 0 {
					t.Errorf("%s: output %q has shape %v and %d bytes, want 0 rows", name, o.Name, o.Shape, len(o.Data))
				}
			}
		}
	})
	t.Run("bool bytes other than 0 and 1 are true", func(t *testing.T) {
		m := load(t, "bool")
		in := []tensor.Tensor{
			{Name: "a", DataType: tensor.Bool, Shape: tensor.Shape{1, 3}, Data: []byte{0, 7, 255}},
			{Name: "b", DataType: tensor.Bool, Shape: tensor.Shape{1, 3}, Data: []byte{1, 1, 2}},
		}
		got, err := m.Infer(context.Background(), in, []string{"not_a", "a_and_b"})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[0].Data, []byte{1, 0, 0}) || !bytes.Equal(got[1].Data, []byte{0, 1, 1}) {
			t.Errorf("not_a = %v, a_and_b = %v; want [1 0 0], [0 1 1]", got[0].Data, got[1].Data)
		}
		if in[0].Data[1] != 7 {
			t.Error("the request's data was modified")
		}
	})
	t.Run("string with NUL", func(t *testing.T) {
		m := load(t, "strings")
		var data []byte
		for _, s := range []string{"ok", "a\x00b"} {
			data = binary.LittleEndian.AppendUint32(data, uint32(len(s)))
			data = append(data, s...)
		}
		_, err := m.Infer(context.Background(), []tensor.Tensor{{Name: "x", DataType: tensor.Bytes, Shape: tensor.Shape{1, 2}, Data: data}}, nil)
		if !errors.Is(err, inference.ErrInvalidInput) || !strings.Contains(err.Error(), "NUL") {
			t.Errorf("error = %v, want ErrInvalidInput about the NUL byte", err)
		}
	})
}

func TestRuntimeVersion(t *testing.T) {
	requireORT(t)
	v, err := RuntimeVersion(Options{})
	if err != nil {
		t.Fatal(err)
	}
	// scripts/fetch-ort.sh installs 1.30.0; KILN_ORT_LIB may name another.
	if want := "1.30.0"; v != want && os.Getenv(LibraryEnv) == "" {
		t.Errorf("RuntimeVersion = %q, want %q", v, want)
	}
	if !strings.HasPrefix(v, "1.") {
		t.Errorf("RuntimeVersion = %q, want a 1.x version", v)
	}
}

func TestOutputShape(t *testing.T) {
	a := &tensor.Tensor{Name: "a", Shape: tensor.Shape{3, 2}}
	b := &tensor.Tensor{Name: "b", Shape: tensor.Shape{3}}
	b4 := &tensor.Tensor{Name: "b", Shape: tensor.Shape{4}}
	tests := []struct {
		name       string
		dt         tensor.DataType
		shape      tensor.Shape
		batchDim   bool
		noPrealloc bool
		inputs     []*tensor.Tensor
		want       tensor.Shape // nil: ORT allocates
		guess      bool
		wantErr    error
	}{
		{"fp16 batch output", tensor.FP16, tensor.Shape{-1, 2}, false, false, []*tensor.Tensor{a, b}, tensor.Shape{3, 2}, false, nil},
		{"fp16 rows disagree", tensor.FP16, tensor.Shape{-1, 2}, false, false, []*tensor.Tensor{a, b4}, nil, false, inference.ErrInvalidInput},
		{"static fp32", tensor.FP32, tensor.Shape{5, 2}, false, false, []*tensor.Tensor{a}, tensor.Shape{5, 2}, false, nil},
		{"fp32 without a batch dimension", tensor.FP32, tensor.Shape{-1, 2}, false, false, []*tensor.Tensor{a, b}, nil, false, nil},
		{"fp32 batch output", tensor.FP32, tensor.Shape{-1, 10}, true, false, []*tensor.Tensor{a, b}, tensor.Shape{3, 10}, true, nil},
		{"fp32 two dynamic dims", tensor.FP32, tensor.Shape{-1, -1}, true, false, []*tensor.Tensor{a}, nil, false, nil},
		{"guessing switched off", tensor.FP32, tensor.Shape{-1, 10}, true, true, []*tensor.Tensor{a}, nil, false, nil},
		{"bytes", tensor.Bytes, tensor.Shape{-1}, true, false, []*tensor.Tensor{a}, nil, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &model{md: inference.Metadata{BatchDim: tc.batchDim}}
			m.noPrealloc.Store(tc.noPrealloc)
			spec := inference.TensorSpec{Name: "y", DataType: tc.dt, Shape: tc.shape}
			shape, ok, guess, err := m.outputShape(spec, tc.inputs)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ok != (tc.want != nil) || (ok && !shape.Equal(tc.want)) || guess != tc.guess {
				t.Errorf("outputShape = %v, %v, guess %v; want %v, guess %v", shape, ok, guess, tc.want, tc.guess)
			}
		})
	}
}

// TestCancellation exercises the run path that watches the context: a
// live cancellable context gives correct results, and cancelling during
// calls gives either a correct result or an error wrapping
// context.Canceled, never anything else.
func TestCancellation(t *testing.T) {
	b := requireORT(t)
	m, err := b.Load(context.Background(), inference.LoadSpec{Name: "mlp", Path: filepath.Join("testdata", "mlp.onnx")})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	in, want := testCase(t, "mlp").Example(4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got, err := m.Infer(ctx, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := inferencetest.CompareTensor(got[0], want[0], 1e-6); err != nil {
		t.Error(err)
	}

	big := tensor.Tensor{Name: "input", DataType: tensor.FP32, Shape: tensor.Shape{2048, 64}, Data: make([]byte, 2048*64*4)}
	interrupted := 0
	for i := range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range i * 50 {
				runtime.Gosched()
			}
			cancel()
		}()
		got, err := m.Infer(ctx, []tensor.Tensor{big}, nil)
		<-done
		switch {
		case err == nil:
			if len(got) != 1 || !got[0].Shape.Equal(tensor.Shape{2048, 10}) {
				t.Fatalf("call %d: unexpected result %v", i, got)
			}
		case errors.Is(err, context.Canceled):
			interrupted++
		default:
			t.Fatalf("call %d: error %v, want nil or context.Canceled", i, err)
		}
	}
	t.Logf("%d of 20 calls were interrupted", interrupted)

	// Run options are reused between calls: a terminated run must not leave
	// its terminate flag on options a later call gets.
	for i := range 40 {
		ctx, cancel := context.WithCancel(context.Background())
		got, err := m.Infer(ctx, in, nil)
		cancel()
		if err != nil {
			t.Fatalf("call %d after the interrupted ones: %v", i, err)
		}
		if len(got) != 1 || !got[0].Shape.Equal(want[0].Shape) {
			t.Fatalf("call %d: unexpected result %v", i, got)
		}
	}
}

// TestCloseDuringInfer closes a model while goroutines call it: every
// call either succeeds or fails with ErrClosed, and none touches the
// destroyed session (which would crash the process).
func TestCloseDuringInfer(t *testing.T) {
	b := requireORT(t)
	m, err := b.Load(context.Background(), inference.LoadSpec{Name: "mlp", Path: filepath.Join("testdata", "mlp.onnx")})
	if err != nil {
		t.Fatal(err)
	}
	in, want := testCase(t, "mlp").Example(4)
	started := make(chan struct{})
	var once sync.Once
	start := func() { once.Do(func() { close(started) }) }
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			defer start() // never leave the test waiting
			for i := 0; ; i++ {
				if g == 0 && i == 10 {
					start()
				}
				got, err := m.Infer(context.Background(), in, nil)
				if errors.Is(err, inference.ErrClosed) {
					return
				}
				if err == nil {
					err = inferencetest.CompareTensor(got[0], want[0], 1e-6)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	<-started
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestLibraryPath(t *testing.T) {
	root := t.TempDir()
	lib := filepath.Join(root, LibraryRelPath)
	if err := os.MkdirAll(filepath.Dir(lib), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lib, []byte("not really a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	deep := filepath.Join(root, "a", "b", "c")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	tests := []struct {
		name     string
		env      string
		explicit string
		wd       string
		want     string // "" means an ErrUnavailable error
	}{
		{"explicit wins over env", filepath.Join(empty, "none.so"), lib, empty, lib},
		{"env", lib, "", empty, lib},
		{"env missing is an error", filepath.Join(empty, "none.so"), "", deep, ""},
		{"explicit", "", lib, empty, lib},
		{"explicit missing", "", filepath.Join(empty, "none.so"), deep, ""},
		{"explicit is a directory", "", empty, deep, ""},
		{"found above the working directory", "", "", deep, lib},
		{"found in the working directory", "", "", root, lib},
		{"not found", "", "", empty, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(LibraryEnv, tt.env)
			t.Chdir(tt.wd)
			got, err := LibraryPath(tt.explicit)
			if tt.want == "" {
				if !errors.Is(err, inference.ErrUnavailable) {
					t.Fatalf("LibraryPath = %q, %v; want ErrUnavailable", got, err)
				}
				if !strings.Contains(err.Error(), "scripts/fetch-ort.sh") || !strings.Contains(err.Error(), "KILN_ORT_LIB") {
					t.Errorf("error %q does not say how to fix it", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("LibraryPath = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestLoadWithoutLibrary runs the test binary again with KILN_ORT_LIB
// naming a missing file: in that fresh process, the runtime was never
// initialised, so Load must fail with ErrUnavailable and not crash.
func TestLoadWithoutLibrary(t *testing.T) {
	if os.Getenv("KILN_ONNX_TEST_CHILD") == "1" {
		_, err := New(Options{}).Load(context.Background(), inference.LoadSpec{Name: "mlp", Path: filepath.Join("testdata", "mlp.onnx")})
		if !errors.Is(err, inference.ErrUnavailable) {
			t.Fatalf("Load error = %v, want ErrUnavailable", err)
		}
		fmt.Println("child error:", err)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoadWithoutLibrary$", "-test.v")
	cmd.Env = append(os.Environ(), "KILN_ONNX_TEST_CHILD=1", LibraryEnv+"=/nonexistent/libonnxruntime.so.1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child process failed: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("child error:")) || !bytes.Contains(out, []byte("scripts/fetch-ort.sh")) {
		t.Errorf("child output lacks the expected error:\n%s", out)
	}
}

func BenchmarkInferMLP(b *testing.B) {
	backend := requireORT(b)
	m, err := backend.Load(context.Background(), inference.LoadSpec{
		Name: "mlp", Path: filepath.Join("testdata", "mlp.onnx"),
		Parameters: map[string]string{"intra_op_threads": "1"},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	for _, batch := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("batch%d", batch), func(b *testing.B) {
			x := tensor.Tensor{Name: "input", DataType: tensor.FP32, Shape: tensor.Shape{int64(batch), 64}, Data: make([]byte, batch*64*4)}
			for i := range batch * 64 {
				binary.LittleEndian.PutUint32(x.Data[i*4:], uint32(i%97)<<20)
			}
			in := []tensor.Tensor{x}
			// A cancellable context, as the server passes: the run watches it.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Infer(ctx, in, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(batch)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

func TestValueIsNilOnError(t *testing.T) {
	v, err := value[*ort.Scalar[int32]](nil, errors.New("boom"))
	if v != nil || err == nil {
		t.Errorf("value(nil, err) = %v, %v; want a nil ort.Value and the error", v, err)
	}
}
