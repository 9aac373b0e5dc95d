package grpcapi

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/kilnai/kiln/internal/catalog"
	pb "github.com/kilnai/kiln/internal/grpcapi/inferencepb"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/inference/inferencetest"
	"github.com/kilnai/kiln/internal/serving"
	"github.com/kilnai/kiln/internal/tensor"
)

var _ Manager = (*serving.Manager)(nil)

// simpleSpec: FP32 x[-1,4] -> y.
const simpleSpec = `{"inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],
 "outputs":[{"name":"y","datatype":"FP32","shape":[-1,4],"from":"x"}]}`

// testMaxElements is the servers' element limit in these tests.
const testMaxElements = 1 << 16

// typedTypes are the data types that have an InferTensorContents field.
var typedTypes = []tensor.DataType{
	tensor.Bool, tensor.Int8, tensor.Int16, tensor.Int32, tensor.Int64,
	tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64,
	tensor.FP32, tensor.FP64, tensor.Bytes,
}

func inName(dt tensor.DataType) string  { return "in_" + strings.ToLower(dt.String()) }
func outName(dt tensor.DataType) string { return "out_" + strings.ToLower(dt.String()) }

// typesSpec is a fake model with one [-1,3] input per data type and one
// output computed from each.
func typesSpec(t *testing.T, dts ...tensor.DataType) string {
	t.Helper()
	var fs inferencetest.FakeSpec
	for _, dt := range dts {
		shape := tensor.Shape{-1, 3}
		fs.Inputs = append(fs.Inputs, inferencetest.FakeTensor{Name: inName(dt), DataType: dt, Shape: shape})
		fs.Outputs = append(fs.Outputs, inferencetest.FakeTensor{Name: outName(dt), DataType: dt, Shape: shape, From: inName(dt)})
	}
	b, err := json.Marshal(fs)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type env struct {
	client pb.GRPCInferenceServiceClient
	health healthpb.HealthClient
	srv    *Server
	mgr    *serving.Manager
	fake   *inferencetest.Fake
}

// newEnv writes a model repository (relative path -> content), loads it
// into a real manager over the fake backend, and serves it over gRPC on an
// in-memory listener.
func newEnv(t *testing.T, files map[string]string) *env {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fake := inferencetest.NewFake()
	mgr := serving.New(serving.Options{
		Catalog:    catalog.NewRepository(dir),
		Backends:   []inference.Backend{fake},
		Registerer: prometheus.NewRegistry(),
	})
	t.Cleanup(func() { _ = mgr.Close(context.Background()) })
	if err := mgr.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := New(Options{Manager: mgr, ServerName: "kiln-test", ServerVersion: "9.9.9", MaxElements: testMaxElements})
	gs := NewGRPCServer(0)
	srv.Register(gs)
	lis := bufconn.Listen(1 << 20)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &env{
		client: pb.NewGRPCInferenceServiceClient(conn),
		health: healthpb.NewHealthClient(conn),
		srv:    srv, mgr: mgr, fake: fake,
	}
}

// gate installs a gate and an entered channel on the fake backend; the
// returned release opens the gate (idempotent, also run at cleanup).
func (e *env) gate(t *testing.T) (entered <-chan inferencetest.Call, release func()) {
	t.Helper()
	g := make(chan struct{})
	ch := make(chan inferencetest.Call)
	e.fake.SetGate(g)
	e.fake.SetEntered(ch)
	var once sync.Once
	release = func() {
		once.Do(func() {
			e.fake.SetEntered(nil)
			close(g)
		})
	}
	t.Cleanup(release)
	return ch, release
}

func codeIs(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code %s, want %s (err %v)", got, want, err)
	}
}

// sample holds one test tensor of a data type, as a Go slice for the
// typed contents and as little-endian bytes for raw contents, written
// independently of the package's conversions.
type sample struct {
	contents *pb.InferTensorContents
	raw      []byte
}

func le[T any](vals []T) []byte {
	var b []byte
	for _, v := range vals {
		var err error
		b, err = binary.Append(b, binary.LittleEndian, v)
		if err != nil {
			panic(err)
		}
	}
	return b
}

// samples returns three elements of dt, including its extremes.
func samples(dt tensor.DataType) sample {
	switch dt {
	case tensor.Bool:
		v := []bool{true, false, true}
		return sample{&pb.InferTensorContents{BoolContents: v}, le(v)}
	case tensor.Int8:
		v := []int8{math.MinInt8, -3, math.MaxInt8}
		return sample{&pb.InferTensorContents{IntContents: []int32{math.MinInt8, -3, math.MaxInt8}}, le(v)}
	case tensor.Int16:
		v := []int16{math.MinInt16, 5, math.MaxInt16}
		return sample{&pb.InferTensorContents{IntContents: []int32{math.MinInt16, 5, math.MaxInt16}}, le(v)}
	case tensor.Int32:
		v := []int32{math.MinInt32, -1, math.MaxInt32}
		return sample{&pb.InferTensorContents{IntContents: v}, le(v)}
	case tensor.Int64:
		v := []int64{math.MinInt64, 7, math.MaxInt64}
		return sample{&pb.InferTensorContents{Int64Contents: v}, le(v)}
	case tensor.Uint8:
		v := []uint8{0, 200, math.MaxUint8}
		return sample{&pb.InferTensorContents{UintContents: []uint32{0, 200, math.MaxUint8}}, le(v)}
	case tensor.Uint16:
		v := []uint16{0, 60000, math.MaxUint16}
		return sample{&pb.InferTensorContents{UintContents: []uint32{0, 60000, math.MaxUint16}}, le(v)}
	case tensor.Uint32:
		v := []uint32{0, 1, math.MaxUint32}
		return sample{&pb.InferTensorContents{UintContents: v}, le(v)}
	case tensor.Uint64:
		v := []uint64{0, 1 << 40, math.MaxUint64}
		return sample{&pb.InferTensorContents{Uint64Contents: v}, le(v)}
	case tensor.FP32:
		v := []float32{-1.5, 0, 3.25}
		return sample{&pb.InferTensorContents{Fp32Contents: v}, le(v)}
	case tensor.FP64:
		v := []float64{-2.5, 1e10, 0.125}
		return sample{&pb.InferTensorContents{Fp64Contents: v}, le(v)}
	case tensor.Bytes:
		v := [][]byte{[]byte("hello"), {0xff, 0xfe, 0x00}, {}} // not UTF-8: fine over gRPC
		var raw []byte
		for _, e := range v {
			raw = binary.LittleEndian.AppendUint32(raw, uint32(len(e)))
			raw = append(raw, e...)
		}
		return sample{&pb.InferTensorContents{BytesContents: v}, raw}
	case tensor.FP16, tensor.BF16:
		v := []uint16{0x3c00, 0x0000, 0xc000}
		return sample{nil, le(v)}
	}
	panic("no sample for " + dt.String())
}

// outputTensors turns a response's outputs (typed or raw) back into
// tensors, with conversions written independently of the package's.
func outputTensors(t *testing.T, r *pb.ModelInferResponse) []tensor.Tensor {
	t.Helper()
	if len(r.RawOutputContents) > 0 && len(r.RawOutputContents) != len(r.Outputs) {
		t.Fatalf("%d raw outputs for %d outputs", len(r.RawOutputContents), len(r.Outputs))
	}
	out := make([]tensor.Tensor, len(r.Outputs))
	for i, o := range r.Outputs {
		dt, err := tensor.ParseDataType(o.Datatype)
		if err != nil {
			t.Fatal(err)
		}
		tt := tensor.Tensor{Name: o.Name, DataType: dt, Shape: tensor.Shape(o.Shape)}
		if len(r.RawOutputContents) > 0 {
			if o.Contents != nil {
				t.Fatalf("output %q has contents and raw contents", o.Name)
			}
			tt.Data = r.RawOutputContents[i]
			out[i] = tt
			continue
		}
		c := o.Contents
		if c == nil {
			t.Fatalf("output %q has no contents", o.Name)
		}
		switch dt {
		case tensor.Bool:
			for _, v := range c.BoolContents {
				b := byte(0)
				if v {
					b = 1
				}
				tt.Data = append(tt.Data, b)
			}
		case tensor.Int8:
			for _, v := range c.IntContents {
				if v < math.MinInt8 || v > math.MaxInt8 {
					t.Fatalf("output %q: %d is not an INT8", o.Name, v)
				}
				tt.Data = append(tt.Data, byte(int8(v)))
			}
		case tensor.Int16:
			for _, v := range c.IntContents {
				if v < math.MinInt16 || v > math.MaxInt16 {
					t.Fatalf("output %q: %d is not an INT16", o.Name, v)
				}
				tt.Data = binary.LittleEndian.AppendUint16(tt.Data, uint16(int16(v)))
			}
		case tensor.Int32:
			tt.Data = le(c.IntContents)
		case tensor.Int64:
			tt.Data = le(c.Int64Contents)
		case tensor.Uint8:
			for _, v := range c.UintContents {
				if v > math.MaxUint8 {
					t.Fatalf("output %q: %d is not a UINT8", o.Name, v)
				}
				tt.Data = append(tt.Data, byte(v))
			}
		case tensor.Uint16:
			for _, v := range c.UintContents {
				if v > math.MaxUint16 {
					t.Fatalf("output %q: %d is not a UINT16", o.Name, v)
				}
				tt.Data = binary.LittleEndian.AppendUint16(tt.Data, uint16(v))
			}
		case tensor.Uint32:
			tt.Data = le(c.UintContents)
		case tensor.Uint64:
			tt.Data = le(c.Uint64Contents)
		case tensor.FP32:
			tt.Data = le(c.Fp32Contents)
		case tensor.FP64:
			tt.Data = le(c.Fp64Contents)
		case tensor.Bytes:
			for _, e := range c.BytesContents {
				tt.Data = binary.LittleEndian.AppendUint32(tt.Data, uint32(len(e)))
				tt.Data = append(tt.Data, e...)
			}
		default:
			t.Fatalf("output %q: %s has no typed field but came typed", o.Name, dt)
		}
		if tt.Data == nil {
			tt.Data = []byte{}
		}
		out[i] = tt
	}
	return out
}

// fp32Input is a typed FP32 input x of the given rows (4 columns).
func fp32Input(rows int, base float32) *pb.ModelInferRequest_InferInputTensor {
	v := make([]float32, rows*4)
	for i := range v {
		v[i] = base + float32(i)
	}
	return &pb.ModelInferRequest_InferInputTensor{Name: "x", Datatype: "FP32", Shape: []int64{int64(rows), 4},
		Contents: &pb.InferTensorContents{Fp32Contents: v}}
}

// expectedY is what the fake model "simple" at version 1 answers to in.
func expectedY(t *testing.T, in *pb.ModelInferRequest_InferInputTensor) tensor.Tensor {
	t.Helper()
	x := tensor.Tensor{Name: "y", DataType: tensor.FP32, Shape: tensor.Shape(in.Shape), Data: le(in.Contents.Fp32Contents)}
	return inferencetest.Expected(x, 1)
}
