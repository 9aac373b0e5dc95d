package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	pb "github.com/kilnai/kiln/internal/grpcapi/inferencepb"
	"github.com/kilnai/kiln/internal/inference/inferencetest"
	"github.com/kilnai/kiln/internal/tensor"
)

var bg = context.Background()

func TestHealthAndServerReady(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		started  bool
		draining bool
		ready    bool
		health   healthpb.HealthCheckResponse_ServingStatus
	}{
		{"before start", map[string]string{"m/1/model.fake.json": simpleSpec}, false, false, false, healthpb.HealthCheckResponse_NOT_SERVING},
		{"started", map[string]string{"m/1/model.fake.json": simpleSpec}, true, false, true, healthpb.HealthCheckResponse_SERVING},
		{"draining", map[string]string{"m/1/model.fake.json": simpleSpec}, true, true, false, healthpb.HealthCheckResponse_NOT_SERVING},
		{"draining before start", map[string]string{"m/1/model.fake.json": simpleSpec}, false, true, false, healthpb.HealthCheckResponse_NOT_SERVING},
		{"a model failed", map[string]string{"m/1/model.fake.json": simpleSpec, "bad/1/model.fake.json": "{broken"}, true, false, false, healthpb.HealthCheckResponse_SERVING},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.files)
			if tc.draining {
				e.srv.SetDraining()
			}
			if tc.started {
				e.srv.SetStarted()
			}
			live, err := e.client.ServerLive(bg, &pb.ServerLiveRequest{})
			if err != nil || !live.Live {
				t.Fatalf("ServerLive: %v, %v", live, err)
			}
			ready, err := e.client.ServerReady(bg, &pb.ServerReadyRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if ready.Ready != tc.ready {
				t.Fatalf("ServerReady %v, want %v", ready.Ready, tc.ready)
			}
			for _, svc := range []string{"", ServiceName} {
				h, err := e.health.Check(bg, &healthpb.HealthCheckRequest{Service: svc})
				if err != nil {
					t.Fatalf("health %q: %v", svc, err)
				}
				if h.Status != tc.health {
					t.Fatalf("health %q: %s, want %s", svc, h.Status, tc.health)
				}
			}
			_, err = e.health.Check(bg, &healthpb.HealthCheckRequest{Service: "no.such.Service"})
			codeIs(t, err, codes.NotFound)
		})
	}
}

func TestServerMetadata(t *testing.T) {
	e := newEnv(t, map[string]string{"m/1/model.fake.json": simpleSpec})
	md, err := e.client.ServerMetadata(bg, &pb.ServerMetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if md.Name != "kiln-test" || md.Version != "9.9.9" || !slices.Equal(md.Extensions, DefaultExtensions) {
		t.Fatalf("metadata %v", md)
	}
}

func TestModelReadyAndMetadata(t *testing.T) {
	e := newEnv(t, map[string]string{
		"m/1/model.fake.json":   simpleSpec,
		"v/config.yaml":         "version_policy: all\n",
		"v/1/model.fake.json":   simpleSpec,
		"v/2/model.fake.json":   simpleSpec,
		"bad/1/model.fake.json": "{broken",
	})
	wantTensors := func(name string) []*pb.ModelMetadataResponse_TensorMetadata {
		return []*pb.ModelMetadataResponse_TensorMetadata{{Name: name, Datatype: "FP32", Shape: []int64{-1, 4}}}
	}
	tests := []struct {
		model, version string
		ready          bool
		code           codes.Code // of ModelReady; metadata fails alike unless ready=false
		versions       []string
	}{
		{"m", "", true, codes.OK, []string{"1"}},
		{"m", "1", true, codes.OK, []string{"1"}},
		{"v", "", true, codes.OK, []string{"1", "2"}},
		{"v", "1", true, codes.OK, []string{"1"}},
		{"m", "2", false, codes.NotFound, nil},
		{"m", "x", false, codes.NotFound, nil},
		{"nope", "", false, codes.NotFound, nil},
		{"", "", false, codes.InvalidArgument, nil},
		{"bad", "", false, codes.OK, nil},
	}
	for _, tc := range tests {
		t.Run(tc.model+"/"+tc.version, func(t *testing.T) {
			r, err := e.client.ModelReady(bg, &pb.ModelReadyRequest{Name: tc.model, Version: tc.version})
			codeIs(t, err, tc.code)
			if err == nil && r.Ready != tc.ready {
				t.Fatalf("ready %v, want %v", r.Ready, tc.ready)
			}
			md, err := e.client.ModelMetadata(bg, &pb.ModelMetadataRequest{Name: tc.model, Version: tc.version})
			switch {
			case tc.ready:
				if err != nil {
					t.Fatal(err)
				}
				want := &pb.ModelMetadataResponse{Name: tc.model, Versions: tc.versions, Platform: "fake", Inputs: wantTensors("x"), Outputs: wantTensors("y")}
				if !proto.Equal(md, want) {
					t.Fatalf("metadata\n got %v\nwant %v", md, want)
				}
			case tc.code == codes.OK:
				codeIs(t, err, codes.Unavailable)
			default:
				codeIs(t, err, tc.code)
			}
		})
	}
}

// TestModelInferTypedAndRaw: every data type with a typed field, sent
// typed and raw, gives the same outputs, equal to the fake's; typed
// requests get typed outputs, raw requests raw outputs.
func TestModelInferTypedAndRaw(t *testing.T) {
	e := newEnv(t, map[string]string{
		"types/1/model.fake.json": typesSpec(t, typedTypes...),
		"half/1/model.fake.json":  typesSpec(t, tensor.FP16, tensor.BF16, tensor.FP32),
	})
	request := func(model string, dts []tensor.DataType, raw bool) *pb.ModelInferRequest {
		req := &pb.ModelInferRequest{ModelName: model, Id: "req-" + model}
		for _, dt := range dts {
			s := samples(dt)
			in := &pb.ModelInferRequest_InferInputTensor{Name: inName(dt), Datatype: dt.String(), Shape: []int64{1, 3}}
			if raw {
				req.RawInputContents = append(req.RawInputContents, s.raw)
			} else {
				in.Contents = s.contents
			}
			req.Inputs = append(req.Inputs, in)
		}
		return req
	}
	expected := func(dts []tensor.DataType) []tensor.Tensor {
		var want []tensor.Tensor
		for _, dt := range dts {
			w := inferencetest.Expected(tensor.Tensor{Name: outName(dt), DataType: dt, Shape: tensor.Shape{1, 3}, Data: samples(dt).raw}, 1)
			want = append(want, w)
		}
		return want
	}
	check := func(t *testing.T, resp *pb.ModelInferResponse, wantRaw bool, want []tensor.Tensor) {
		t.Helper()
		if gotRaw := len(resp.RawOutputContents) > 0; gotRaw != wantRaw {
			t.Fatalf("raw outputs %v, want %v", gotRaw, wantRaw)
		}
		got := outputTensors(t, resp)
		if len(got) != len(want) {
			t.Fatalf("%d outputs, want %d", len(got), len(want))
		}
		for i := range want {
			if err := inferencetest.CompareTensor(got[i], want[i], 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name    string
		model   string
		dts     []tensor.DataType
		raw     bool
		wantRaw bool
	}{
		{"typed", "types", typedTypes, false, false},
		{"raw", "types", typedTypes, true, true},
		{"fp16 and bf16 raw", "half", []tensor.DataType{tensor.FP16, tensor.BF16, tensor.FP32}, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.client.ModelInfer(bg, request(tc.model, tc.dts, tc.raw))
			if err != nil {
				t.Fatal(err)
			}
			if resp.ModelName != tc.model || resp.ModelVersion != "1" || resp.Id != "req-"+tc.model {
				t.Fatalf("response header %q %q %q", resp.ModelName, resp.ModelVersion, resp.Id)
			}
			check(t, resp, tc.wantRaw, expected(tc.dts))
		})
	}

	t.Run("requested outputs in the order asked", func(t *testing.T) {
		req := request("types", typedTypes, false)
		req.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: outName(tensor.FP64)}, {Name: outName(tensor.Int8)}}
		resp, err := e.client.ModelInfer(bg, req)
		if err != nil {
			t.Fatal(err)
		}
		check(t, resp, false, expected([]tensor.DataType{tensor.FP64, tensor.Int8}))
	})

	t.Run("id generated when absent", func(t *testing.T) {
		ids := map[string]bool{}
		for range 3 {
			req := request("types", typedTypes, true)
			req.Id = ""
			resp, err := e.client.ModelInfer(bg, req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Id == "" || ids[resp.Id] {
				t.Fatalf("generated id %q (seen %v)", resp.Id, ids)
			}
			ids[resp.Id] = true
		}
	})
}

func TestModelInferErrors(t *testing.T) {
	e := newEnv(t, map[string]string{
		"m/config.yaml":           "max_batch_size: 8\n",
		"m/1/model.fake.json":     simpleSpec,
		"types/1/model.fake.json": typesSpec(t, typedTypes...),
		"half/1/model.fake.json":  typesSpec(t, tensor.FP16),
		"bad/config.yaml":         "bogus_key: 1\n",
		"bad/1/model.fake.json":   simpleSpec,
	})
	x := func() *pb.ModelInferRequest_InferInputTensor { return fp32Input(1, 0) }
	good := func() *pb.ModelInferRequest {
		return &pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{x()}}
	}
	with := func(f func(r *pb.ModelInferRequest)) *pb.ModelInferRequest {
		r := good()
		f(r)
		return r
	}
	param := func(p *pb.InferParameter) map[string]*pb.InferParameter {
		return map[string]*pb.InferParameter{"k": p}
	}
	i64 := func(v int64) *pb.InferParameter {
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: v}}
	}
	tests := []struct {
		name string
		req  *pb.ModelInferRequest
		code codes.Code
		msg  string // substring of the message, when it matters
	}{
		{"good", good(), codes.OK, ""},
		{"unknown model", with(func(r *pb.ModelInferRequest) { r.ModelName = "nope" }), codes.NotFound, ""},
		{"unknown version", with(func(r *pb.ModelInferRequest) { r.ModelVersion = "7" }), codes.NotFound, ""},
		{"malformed version", with(func(r *pb.ModelInferRequest) { r.ModelVersion = "one" }), codes.NotFound, ""},
		{"no model name", with(func(r *pb.ModelInferRequest) { r.ModelName = "" }), codes.InvalidArgument, "model name"},
		{"model not ready", with(func(r *pb.ModelInferRequest) { r.ModelName = "bad" }), codes.Unavailable, ""},
		{"wrong input name", with(func(r *pb.ModelInferRequest) { r.Inputs[0].Name = "z" }), codes.InvalidArgument, "z"},
		{"no inputs", with(func(r *pb.ModelInferRequest) { r.Inputs = nil }), codes.InvalidArgument, ""},
		{"input twice", with(func(r *pb.ModelInferRequest) { r.Inputs = append(r.Inputs, x()) }), codes.InvalidArgument, ""},
		{"wrong datatype", with(func(r *pb.ModelInferRequest) {
			r.Inputs[0].Datatype = "FP64"
			r.Inputs[0].Contents = &pb.InferTensorContents{Fp64Contents: make([]float64, 4)}
		}), codes.InvalidArgument, "FP64"},
		{"unknown datatype", with(func(r *pb.ModelInferRequest) { r.Inputs[0].Datatype = "FLOAT" }), codes.InvalidArgument, "FLOAT"},
		{"contents in the wrong field", with(func(r *pb.ModelInferRequest) {
			r.Inputs[0].Contents = &pb.InferTensorContents{IntContents: []int32{1, 2, 3, 4}}
		}), codes.InvalidArgument, "fp32_contents"},
		{"contents in two fields", with(func(r *pb.ModelInferRequest) { r.Inputs[0].Contents.IntContents = []int32{1} }), codes.InvalidArgument, "other contents fields"},
		{"no data", with(func(r *pb.ModelInferRequest) { r.Inputs[0].Contents = nil }), codes.InvalidArgument, "no data"},
		{"typed data shorter than the shape", with(func(r *pb.ModelInferRequest) { r.Inputs[0].Contents.Fp32Contents = []float32{1, 2, 3} }), codes.InvalidArgument, "3 elements"},
		{"raw data shorter than the shape", with(func(r *pb.ModelInferRequest) {
			r.Inputs[0].Contents = nil
			r.RawInputContents = [][]byte{make([]byte, 12)}
		}), codes.InvalidArgument, "12 bytes"},
		{"shape the model does not take", with(func(r *pb.ModelInferRequest) {
			r.Inputs[0].Shape = []int64{1, 5}
			r.Inputs[0].Contents.Fp32Contents = make([]float32, 5)
		}), codes.InvalidArgument, "shape"},
		{"negative dimension", with(func(r *pb.ModelInferRequest) { r.Inputs[0].Shape = []int64{-1, 4} }), codes.InvalidArgument, "negative"},
		{"huge dimensions", with(func(r *pb.ModelInferRequest) { r.Inputs[0].Shape = []int64{1 << 40, 1 << 40} }), codes.InvalidArgument, ""},
		{"more elements than the limit", with(func(r *pb.ModelInferRequest) { r.Inputs[0].Shape = []int64{testMaxElements/4 + 1, 4} }), codes.InvalidArgument, "limit"},
		{"more rows than max_batch_size", with(func(r *pb.ModelInferRequest) { r.Inputs[0] = fp32Input(9, 0) }), codes.InvalidArgument, ""},
		{"raw count mismatch", with(func(r *pb.ModelInferRequest) {
			r.Inputs[0].Contents = nil
			r.RawInputContents = [][]byte{make([]byte, 16), make([]byte, 16)}
		}), codes.InvalidArgument, "2 entries for 1 inputs"},
		{"raw and typed mixed", with(func(r *pb.ModelInferRequest) { r.RawInputContents = [][]byte{make([]byte, 16)} }), codes.InvalidArgument, "raw_input_contents"},
		{"INT8 out of range", &pb.ModelInferRequest{ModelName: "types", Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: inName(tensor.Int8), Datatype: "INT8", Shape: []int64{1, 3}, Contents: &pb.InferTensorContents{IntContents: []int32{1, 128, 2}}},
		}}, codes.InvalidArgument, "out of range for INT8"},
		{"INT16 out of range", &pb.ModelInferRequest{ModelName: "types", Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: inName(tensor.Int16), Datatype: "INT16", Shape: []int64{1, 3}, Contents: &pb.InferTensorContents{IntContents: []int32{-32769, 0, 0}}},
		}}, codes.InvalidArgument, "out of range for INT16"},
		{"UINT8 out of range", &pb.ModelInferRequest{ModelName: "types", Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: inName(tensor.Uint8), Datatype: "UINT8", Shape: []int64{1, 3}, Contents: &pb.InferTensorContents{UintContents: []uint32{0, 0, 256}}},
		}}, codes.InvalidArgument, "out of range for UINT8"},
		{"FP16 typed", &pb.ModelInferRequest{ModelName: "half", Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: inName(tensor.FP16), Datatype: "FP16", Shape: []int64{1, 3}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2, 3}}},
		}}, codes.InvalidArgument, "raw_input_contents"},
		{"BYTES raw with a truncated element", &pb.ModelInferRequest{ModelName: "types", Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: inName(tensor.Bytes), Datatype: "BYTES", Shape: []int64{1, 1}},
		}, RawInputContents: [][]byte{{9, 0, 0, 0, 'a'}}}, codes.InvalidArgument, ""},
		{"unknown output", with(func(r *pb.ModelInferRequest) {
			r.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "nope"}}
		}), codes.InvalidArgument, "nope"},
		{"output twice", with(func(r *pb.ModelInferRequest) {
			r.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "y"}, {Name: "y"}}
		}), codes.InvalidArgument, ""},
		{"priority as a string", with(func(r *pb.ModelInferRequest) {
			r.Parameters = map[string]*pb.InferParameter{"priority": {ParameterChoice: &pb.InferParameter_StringParam{StringParam: "high"}}}
		}), codes.InvalidArgument, "priority"},
		{"priority above the levels falls back to the default", with(func(r *pb.ModelInferRequest) { r.Parameters = map[string]*pb.InferParameter{"priority": i64(3)} }), codes.OK, ""},
		{"priority 1 of 1", with(func(r *pb.ModelInferRequest) { r.Parameters = map[string]*pb.InferParameter{"priority": i64(1)} }), codes.OK, ""},
		{"negative timeout", with(func(r *pb.ModelInferRequest) { r.Parameters = map[string]*pb.InferParameter{"timeout": i64(-5)} }), codes.InvalidArgument, "timeout"},
		{"generous timeout", with(func(r *pb.ModelInferRequest) {
			r.Parameters = map[string]*pb.InferParameter{"timeout": i64(60_000_000)}
		}), codes.OK, ""},
		{"custom parameter ignored", with(func(r *pb.ModelInferRequest) { r.Parameters = param(i64(1)) }), codes.OK, ""},
		{"sequence requested", with(func(r *pb.ModelInferRequest) { r.Parameters = map[string]*pb.InferParameter{"sequence_id": i64(42)} }), codes.Unimplemented, "sequence"},
		{"no sequence", with(func(r *pb.ModelInferRequest) { r.Parameters = map[string]*pb.InferParameter{"sequence_id": i64(0)} }), codes.OK, ""},
		{"shared memory input", with(func(r *pb.ModelInferRequest) {
			r.Inputs[0].Contents = nil
			r.Inputs[0].Parameters = map[string]*pb.InferParameter{"shared_memory_region": {ParameterChoice: &pb.InferParameter_StringParam{StringParam: "r"}}}
		}), codes.Unimplemented, "shared memory"},
		{"classification output", with(func(r *pb.ModelInferRequest) {
			r.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "y", Parameters: map[string]*pb.InferParameter{"classification": i64(3)}}}
		}), codes.Unimplemented, "classification"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.client.ModelInfer(bg, tc.req)
			codeIs(t, err, tc.code)
			if err != nil && !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("message %q does not mention %q", err, tc.msg)
			}
			if tc.code == codes.OK {
				got := outputTensors(t, resp)
				if len(got) != 1 {
					t.Fatalf("%d outputs", len(got))
				}
				if err := inferencetest.CompareTensor(got[0], expectedY(t, tc.req.Inputs[0]), 0); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestModelStreamInfer: interleaved good and bad requests each get their
// answer, by id, and the stream survives the bad ones.
func TestModelStreamInfer(t *testing.T) {
	e := newEnv(t, map[string]string{"m/1/model.fake.json": simpleSpec})
	stream, err := e.client.ModelStreamInfer(bg)
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	bad := []func(r *pb.ModelInferRequest){
		func(r *pb.ModelInferRequest) { r.ModelName = "nope" },
		func(r *pb.ModelInferRequest) { r.Inputs[0].Datatype = "INT8" },
		func(r *pb.ModelInferRequest) { r.Inputs[0].Shape = []int64{-3} },
		func(r *pb.ModelInferRequest) { r.RawInputContents = [][]byte{{1}} },
	}
	reqs := map[string]*pb.ModelInferRequest{}
	for i := range n {
		r := &pb.ModelInferRequest{ModelName: "m", Id: fmt.Sprintf("r%d", i), Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32Input(1+i%3, float32(i))}}
		if i%2 == 1 {
			bad[(i/2)%len(bad)](r)
		}
		reqs[r.Id] = r
		if err := stream.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ir := resp.GetInferResponse()
		id := ir.GetId()
		req := reqs[id]
		if req == nil || seen[id] {
			t.Fatalf("response for unknown or repeated id %q", id)
		}
		seen[id] = true
		var i int
		fmt.Sscanf(id, "r%d", &i)
		if i%2 == 1 {
			if resp.ErrorMessage == "" {
				t.Fatalf("%s: bad request answered without an error: %v", id, resp)
			}
			if ir.ModelName != req.ModelName {
				t.Fatalf("%s: error response names model %q", id, ir.ModelName)
			}
			continue
		}
		if resp.ErrorMessage != "" {
			t.Fatalf("%s: %s", id, resp.ErrorMessage)
		}
		got := outputTensors(t, ir)
		if err := inferencetest.CompareTensor(got[0], expectedY(t, req.Inputs[0]), 0); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d responses for %d requests", len(seen), n)
	}
}

// TestModelStreamInferOutOfOrder: a response is sent when it is ready,
// not behind an earlier request that is still running.
func TestModelStreamInferOutOfOrder(t *testing.T) {
	e := newEnv(t, map[string]string{"m/1/model.fake.json": simpleSpec})
	entered, release := e.gate(t)
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	stream, err := e.client.ModelStreamInfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slow := &pb.ModelInferRequest{ModelName: "m", Id: "slow", Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32Input(1, 0)}}
	if err := stream.Send(slow); err != nil {
		t.Fatal(err)
	}
	<-entered // slow is in the backend, held by the gate
	if err := stream.Send(&pb.ModelInferRequest{ModelName: "nope", Id: "fast"}); err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if first.GetInferResponse().GetId() != "fast" || first.ErrorMessage == "" {
		t.Fatalf("first response %v, want the error for fast", first)
	}
	release()
	second, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if second.GetInferResponse().GetId() != "slow" || second.ErrorMessage != "" {
		t.Fatalf("second response %v, want slow's result", second)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last response: %v, want EOF", err)
	}
}

// TestDeadlineExceeded: a request whose deadline passes while it waits
// behind a running one is DEADLINE_EXCEEDED and never reaches the backend.
func TestDeadlineExceeded(t *testing.T) {
	e := newEnv(t, map[string]string{"m/1/model.fake.json": simpleSpec})
	entered, release := e.gate(t)
	first := make(chan error, 1)
	go func() {
		_, err := e.client.ModelInfer(bg, &pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32Input(1, 0)}})
		first <- err
	}()
	<-entered // the only instance is busy until release

	tests := []struct {
		name  string
		ctx   func() (context.Context, context.CancelFunc)
		param map[string]*pb.InferParameter
	}{
		{"grpc deadline", func() (context.Context, context.CancelFunc) { return context.WithTimeout(bg, 100*time.Millisecond) }, nil},
		{"timeout parameter", func() (context.Context, context.CancelFunc) { return context.WithCancel(bg) },
			map[string]*pb.InferParameter{"timeout": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 1000}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			_, err := e.client.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "m", Parameters: tc.param,
				Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32Input(1, 5)}})
			codeIs(t, err, codes.DeadlineExceeded)
		})
	}
	release()
	if err := <-first; err != nil {
		t.Fatalf("the running request: %v", err)
	}
	if calls := e.fake.Calls(); len(calls) != 1 {
		t.Fatalf("backend ran %d calls, want only the first request's", len(calls))
	}
}

// TestQueueFull: with the instance busy and max_queue_size 1, of two more
// requests one waits and the other is refused with UNAVAILABLE.
func TestQueueFull(t *testing.T) {
	e := newEnv(t, map[string]string{
		"m/config.yaml":       "max_batch_size: 4\ndynamic_batching: {max_queue_size: 1}\n",
		"m/1/model.fake.json": simpleSpec,
	})
	entered, release := e.gate(t)
	infer := func(res chan<- error) {
		_, err := e.client.ModelInfer(bg, &pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32Input(1, 0)}})
		res <- err
	}
	first := make(chan error, 1)
	go infer(first)
	<-entered
	more := make(chan error, 2)
	go infer(more)
	go infer(more)
	// The queued request cannot finish before release, so the first answer
	// is the refused one.
	codeIs(t, <-more, codes.Unavailable)
	release()
	if err := <-more; err != nil {
		t.Fatalf("queued request: %v", err)
	}
	if err := <-first; err != nil {
		t.Fatalf("running request: %v", err)
	}
	if calls := e.fake.Calls(); len(calls) != 2 {
		t.Fatalf("backend ran %d calls, want 2", len(calls))
	}
}

func TestModelConfig(t *testing.T) {
	e := newEnv(t, map[string]string{
		"m/config.yaml": `backend: fake
max_batch_size: 8
instances: 2
dynamic_batching: {max_queue_delay: 2ms, preferred_batch_sizes: [4], max_queue_size: 10, default_timeout: 1s, priority_levels: 2, default_priority: 2, preserve_ordering: true}
version_policy: {latest: 2}
parameters: {threads: 1}
`,
		"m/1/model.fake.json": simpleSpec,
		"plain/config.yaml":   "backend: fake\n",
		"plain/1/model.fake.json": `{"inputs":[{"name":"s","datatype":"BYTES","shape":[2]}],
 "outputs":[{"name":"t","datatype":"BYTES","shape":[2]}]}`,
	})
	tests := []struct {
		model string
		want  *pb.ModelConfig
		code  codes.Code
	}{
		{"m", &pb.ModelConfig{
			Name: "m", Backend: "fake", MaxBatchSize: 8,
			VersionPolicy: &pb.ModelVersionPolicy{PolicyChoice: &pb.ModelVersionPolicy_Latest_{Latest: &pb.ModelVersionPolicy_Latest{NumVersions: 2}}},
			Input:         []*pb.ModelInput{{Name: "x", DataType: pb.DataType_TYPE_FP32, Dims: []int64{4}}},
			Output:        []*pb.ModelOutput{{Name: "y", DataType: pb.DataType_TYPE_FP32, Dims: []int64{4}}},
			InstanceGroup: []*pb.ModelInstanceGroup{{Name: "m", Kind: pb.ModelInstanceGroup_KIND_CPU, Count: 2}},
			DynamicBatching: &pb.ModelDynamicBatching{
				PreferredBatchSize: []int32{4}, MaxQueueDelayMicroseconds: 2000, PreserveOrdering: true,
				PriorityLevels: 2, DefaultPriorityLevel: 2,
				DefaultQueuePolicy: &pb.ModelQueuePolicy{DefaultTimeoutMicroseconds: 1_000_000, AllowTimeoutOverride: true, MaxQueueSize: 10},
			},
			Parameters: map[string]*pb.ModelParameter{"threads": {StringValue: "1"}},
		}, codes.OK},
		{"plain", &pb.ModelConfig{
			Name: "plain", Backend: "fake",
			VersionPolicy: &pb.ModelVersionPolicy{PolicyChoice: &pb.ModelVersionPolicy_Latest_{Latest: &pb.ModelVersionPolicy_Latest{NumVersions: 1}}},
			Input:         []*pb.ModelInput{{Name: "s", DataType: pb.DataType_TYPE_STRING, Dims: []int64{2}}},
			Output:        []*pb.ModelOutput{{Name: "t", DataType: pb.DataType_TYPE_STRING, Dims: []int64{2}}},
			InstanceGroup: []*pb.ModelInstanceGroup{{Name: "plain", Kind: pb.ModelInstanceGroup_KIND_CPU, Count: 1}},
		}, codes.OK},
		{"nope", nil, codes.NotFound},
		{"", nil, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.model, func(t *testing.T) {
			resp, err := e.client.ModelConfig(bg, &pb.ModelConfigRequest{Name: tc.model})
			codeIs(t, err, tc.code)
			if err == nil && !proto.Equal(resp.Config, tc.want) {
				t.Fatalf("config\n got %v\nwant %v", resp.Config, tc.want)
			}
		})
	}
}

func TestModelStatistics(t *testing.T) {
	e := newEnv(t, map[string]string{
		"m/1/model.fake.json": simpleSpec,
		"n/1/model.fake.json": simpleSpec,
	})
	for i := range 2 {
		if _, err := e.client.ModelInfer(bg, &pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32Input(1, float32(i))}}); err != nil {
			t.Fatal(err)
		}
	}
	bad := fp32Input(1, 0)
	bad.Shape = []int64{2, 2}
	_, err := e.client.ModelInfer(bg, &pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{bad}})
	codeIs(t, err, codes.InvalidArgument)

	tests := []struct {
		name, model, version string
		code                 codes.Code
		models               []string
	}{
		{"all", "", "", codes.OK, []string{"m", "n"}},
		{"one model", "m", "", codes.OK, []string{"m"}},
		{"one version", "m", "1", codes.OK, []string{"m"}},
		{"unknown model", "nope", "", codes.NotFound, nil},
		{"unknown version", "m", "2", codes.NotFound, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.client.ModelStatistics(bg, &pb.ModelStatisticsRequest{Name: tc.model, Version: tc.version})
			codeIs(t, err, tc.code)
			if err != nil {
				return
			}
			var names []string
			for _, ms := range resp.ModelStats {
				names = append(names, ms.Name)
			}
			if !slices.Equal(names, tc.models) {
				t.Fatalf("stats for %v, want %v", names, tc.models)
			}
			ms := resp.ModelStats[0]
			is := ms.InferenceStats
			switch {
			case ms.Version != "1", ms.InferenceCount != 2, ms.ExecutionCount != 2, ms.LastInference == 0:
				t.Fatalf("counts %v", ms)
			case is.Success.Count != 2, is.Fail.Count != 1, is.Queue.Count != 2, is.ComputeInfer.Count != 2,
				is.ComputeInput.Count != 2, is.ComputeOutput.Count != 2, is.CacheHit.Count != 0, is.CacheMiss.Count != 0:
				t.Fatalf("inference stats %v", is)
			case len(ms.BatchStats) != 1 || ms.BatchStats[0].BatchSize != 1 || ms.BatchStats[0].ComputeInfer.Count != 2:
				t.Fatalf("batch stats %v", ms.BatchStats)
			case len(ms.MemoryUsage) != 1 || ms.MemoryUsage[0].Type != "CPU":
				t.Fatalf("memory usage %v", ms.MemoryUsage)
			}
		})
	}
}

func TestRepository(t *testing.T) {
	e := newEnv(t, map[string]string{
		"m/1/model.fake.json": simpleSpec,
		"n/1/model.fake.json": simpleSpec,
	})
	index := func(t *testing.T, ready bool) string {
		t.Helper()
		resp, err := e.client.RepositoryIndex(bg, &pb.RepositoryIndexRequest{Ready: ready})
		if err != nil {
			t.Fatal(err)
		}
		var rows []string
		for _, m := range resp.Models {
			rows = append(rows, m.Name+"/"+m.Version+"="+m.State)
		}
		slices.Sort(rows)
		return strings.Join(rows, " ")
	}
	boolParam := func(k string, v bool) map[string]*pb.ModelRepositoryParameter {
		return map[string]*pb.ModelRepositoryParameter{k: {ParameterChoice: &pb.ModelRepositoryParameter_BoolParam{BoolParam: v}}}
	}
	steps := []struct {
		name       string
		call       func() error
		code       codes.Code
		all, ready string // the index afterwards
		nReady     bool   // ModelReady of n afterwards
	}{
		{"initial", func() error { return nil }, codes.OK, "m/1=READY n/1=READY", "m/1=READY n/1=READY", true},
		{"unload", func() error {
			_, err := e.client.RepositoryModelUnload(bg, &pb.RepositoryModelUnloadRequest{ModelName: "n", Parameters: boolParam("unload_dependents", true)})
			return err
		}, codes.OK, "m/1=READY n/=UNAVAILABLE", "m/1=READY", false},
		{"unload unknown", func() error {
			_, err := e.client.RepositoryModelUnload(bg, &pb.RepositoryModelUnloadRequest{ModelName: "nope"})
			return err
		}, codes.NotFound, "m/1=READY n/=UNAVAILABLE", "m/1=READY", false},
		{"unload with another parameter", func() error {
			_, err := e.client.RepositoryModelUnload(bg, &pb.RepositoryModelUnloadRequest{ModelName: "m", Parameters: boolParam("cascade", true)})
			return err
		}, codes.InvalidArgument, "m/1=READY n/=UNAVAILABLE", "m/1=READY", false},
		{"unload_dependents not a bool", func() error {
			_, err := e.client.RepositoryModelUnload(bg, &pb.RepositoryModelUnloadRequest{ModelName: "m", Parameters: map[string]*pb.ModelRepositoryParameter{
				"unload_dependents": {ParameterChoice: &pb.ModelRepositoryParameter_StringParam{StringParam: "yes"}}}})
			return err
		}, codes.InvalidArgument, "m/1=READY n/=UNAVAILABLE", "m/1=READY", false},
		{"load with a config override", func() error {
			_, err := e.client.RepositoryModelLoad(bg, &pb.RepositoryModelLoadRequest{ModelName: "n", Parameters: map[string]*pb.ModelRepositoryParameter{
				"config": {ParameterChoice: &pb.ModelRepositoryParameter_StringParam{StringParam: "{}"}}}})
			return err
		}, codes.InvalidArgument, "m/1=READY n/=UNAVAILABLE", "m/1=READY", false},
		{"load unknown", func() error {
			_, err := e.client.RepositoryModelLoad(bg, &pb.RepositoryModelLoadRequest{ModelName: "nope"})
			return err
		}, codes.NotFound, "m/1=READY n/=UNAVAILABLE", "m/1=READY", false},
		{"load without a name", func() error {
			_, err := e.client.RepositoryModelLoad(bg, &pb.RepositoryModelLoadRequest{})
			return err
		}, codes.InvalidArgument, "m/1=READY n/=UNAVAILABLE", "m/1=READY", false},
		{"load", func() error {
			_, err := e.client.RepositoryModelLoad(bg, &pb.RepositoryModelLoadRequest{ModelName: "n"})
			return err
		}, codes.OK, "m/1=READY n/1=READY", "m/1=READY n/1=READY", true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			codeIs(t, st.call(), st.code)
			if got := index(t, false); got != st.all {
				t.Fatalf("index %q, want %q", got, st.all)
			}
			if got := index(t, true); got != st.ready {
				t.Fatalf("ready index %q, want %q", got, st.ready)
			}
			r, err := e.client.ModelReady(bg, &pb.ModelReadyRequest{Name: "n"})
			if err != nil {
				t.Fatal(err)
			}
			if r.Ready != st.nReady {
				t.Fatalf("n ready %v, want %v", r.Ready, st.nReady)
			}
		})
	}
}
