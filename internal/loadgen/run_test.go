package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln/internal/grpcapi/inferencepb"
)

// fakeMeta is a model with one FP32 input [-1, 4] and one output [-1, 2].
var fakeMeta = `{"name":"fake","versions":["1"],"platform":"onnxruntime_onnx",` +
	`"inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],` +
	`"outputs":[{"name":"y","datatype":"FP32","shape":[-1,2]}]}`

// fakeHTTP is an OIP server for the fake model. It decodes every request
// (JSON or binary), checks the input, and fails every failEvery-th
// request with 503 when failEvery > 0.
type fakeHTTP struct {
	failEvery int64
	n         atomic.Int64
	bad       atomic.Int64 // requests whose input did not decode as expected
	rows      atomic.Int64
	garbage   bool // answer 200 with a body that is not an OIP answer
}

func (f *fakeHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v2/models/fake":
		io.WriteString(w, fakeMeta)
		return
	case r.Method != http.MethodPost || r.URL.Path != "/v2/models/fake/infer":
		http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
		return
	}
	body, _ := io.ReadAll(r.Body)
	k := f.n.Add(1)
	if f.failEvery > 0 && k%f.failEvery == 0 {
		http.Error(w, `{"error":"overloaded"}`, http.StatusServiceUnavailable)
		return
	}
	if f.garbage {
		io.WriteString(w, "not json")
		return
	}
	binary := r.Header.Get(HeaderContentLength) != ""
	var rows int64
	if binary {
		n, _ := strconv.Atoi(r.Header.Get(HeaderContentLength))
		var hdr struct {
			Inputs []struct {
				Shape      []int64
				Parameters struct {
					BinaryDataSize int `json:"binary_data_size"`
				}
			}
		}
		if n > len(body) || json.Unmarshal(body[:n], &hdr) != nil || len(hdr.Inputs) != 1 ||
			hdr.Inputs[0].Parameters.BinaryDataSize != len(body)-n || int64(len(body)-n) != hdr.Inputs[0].Shape[0]*4*4 {
			f.bad.Add(1)
		} else {
			rows = hdr.Inputs[0].Shape[0]
		}
	} else {
		ts, err := ParseRequest(body)
		if err != nil || len(ts) != 1 || ts[0].Name != "x" || len(ts[0].Data) != int(ts[0].Shape[0])*16 {
			f.bad.Add(1)
		} else {
			rows = ts[0].Shape[0]
		}
	}
	f.rows.Add(rows)
	data := strings.TrimSuffix(strings.Repeat("0.5,", int(2*rows)), ",")
	shape := `[` + strconv.FormatInt(rows, 10) + `,2]`
	if binary {
		hdr := `{"model_name":"fake","outputs":[{"name":"y","datatype":"FP32","shape":` + shape +
			`,"parameters":{"binary_data_size":` + strconv.FormatInt(rows*8, 10) + `}}]}`
		w.Header().Set(HeaderContentLength, strconv.Itoa(len(hdr)))
		io.WriteString(w, hdr)
		w.Write(make([]byte, rows*8))
		return
	}
	io.WriteString(w, `{"model_name":"fake","outputs":[{"name":"y","datatype":"FP32","shape":`+shape+`,"data":[`+data+`]}]}`)
}

func TestRunHTTP(t *testing.T) {
	tests := []struct {
		name      string
		proto     Protocol
		batch     int
		failEvery int64
	}{
		{"json", HTTPJSON, 1, 0},
		{"json batch 3", HTTPJSON, 3, 0},
		{"binary", HTTPBinary, 2, 0},
		{"json with 503s", HTTPJSON, 1, 3},
		{"binary with 503s", HTTPBinary, 1, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeHTTP{failEvery: tt.failEvery}
			srv := httptest.NewServer(f)
			defer srv.Close()
			cfg := Config{Protocol: tt.proto, URL: srv.URL, Model: "fake", Batch: tt.batch,
				Warmup: 20 * time.Millisecond, Duration: 100 * time.Millisecond, MinRequests: 6}
			res, err := Run(context.Background(), cfg, []int{1, 4}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 2 {
				t.Fatalf("got %d results, want 2", len(res))
			}
			var ok, failed int64
			for i, r := range res {
				if r.Mode != ModeConcurrency || r.Concurrency != []int{1, 4}[i] || r.Batch != tt.batch || r.Protocol != tt.proto {
					t.Errorf("result %d: %+v", i, r)
				}
				if r.Requests == 0 {
					t.Errorf("result %d: no successful requests", i)
				}
				if r.Latency.Count != r.Requests || r.Latency.P50 <= 0 || r.Latency.P50 > r.Latency.P99 || r.Latency.P99 > r.Latency.Max {
					t.Errorf("result %d: latency %+v for %d requests", i, r.Latency, r.Requests)
				}
				if r.RowsPerSec != r.Throughput*float64(tt.batch) {
					t.Errorf("result %d: rows/s %v for %v req/s at batch %d", i, r.RowsPerSec, r.Throughput, tt.batch)
				}
				ok += r.Requests
				failed += r.ErrorCount
				if r.ErrorCount != r.Errors["http_503"] {
					t.Errorf("result %d: errors %v, want only http_503", i, r.Errors)
				}
			}
			// The server saw the probe, the warm-ups and requests finishing
			// after the windows as well.
			if got := f.n.Load(); ok+failed > got-1 {
				t.Errorf("recorded %d requests, server saw %d", ok+failed, got)
			}
			if tt.failEvery > 0 && failed == 0 {
				t.Error("no 503 was counted")
			}
			if tt.failEvery == 0 && failed != 0 {
				t.Errorf("%d errors counted against a healthy server", failed)
			}
			if f.bad.Load() != 0 {
				t.Errorf("server could not decode %d requests", f.bad.Load())
			}
		})
	}
}

func TestRunRateCountsEveryScheduledRequest(t *testing.T) {
	tests := []struct {
		name      string
		proto     Protocol
		failEvery int64
	}{
		{"json", HTTPJSON, 0},
		{"binary with 503s", HTTPBinary, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeHTTP{failEvery: tt.failEvery}
			srv := httptest.NewServer(f)
			defer srv.Close()
			cfg := Config{Protocol: tt.proto, URL: srv.URL, Model: "fake", MaxInFlight: 8,
				Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond}
			res, err := Run(context.Background(), cfg, nil, []float64{200}, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := res[0]
			// 200/s for 0.2 s schedules exactly 40 measured requests, after 10 warm-up ones.
			if r.Requests+r.ErrorCount != 40 {
				t.Errorf("recorded %d ok + %d failed, want 40 in all", r.Requests, r.ErrorCount)
			}
			if got := f.n.Load(); got != 51 {
				t.Errorf("server saw %d requests, want 51 (probe + 10 warm-up + 40)", got)
			}
			if r.Mode != ModeRate || r.TargetRate != 200 || r.WindowSeconds < 0.2 {
				t.Errorf("result %+v", r)
			}
			if (tt.failEvery > 0) != (r.Errors["http_503"] > 0) {
				t.Errorf("errors %v", r.Errors)
			}
		})
	}
}

func TestNewRejectsBadServers(t *testing.T) {
	tests := []struct {
		name  string
		f     *fakeHTTP
		model string
		batch int
		want  string
	}{
		{"garbage answer", &fakeHTTP{garbage: true}, "fake", 1, "not JSON"},
		{"every request fails", &fakeHTTP{failEvery: 1}, "fake", 1, "HTTP 503"},
		{"unknown model", &fakeHTTP{}, "nope", 1, "HTTP 404"},
		{"bad batch", &fakeHTTP{}, "fake", -1, "batch size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.f)
			defer srv.Close()
			_, err := New(context.Background(), Config{Protocol: HTTPJSON, URL: srv.URL, Model: tt.model, Batch: tt.batch})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestRunWithInputFile(t *testing.T) {
	f := &fakeHTTP{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	ts, err := ParseRequest([]byte(`{"inputs":[{"name":"x","shape":[2,4],"datatype":"FP32","data":[[1,2,3,4],[5,6,7,8]]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []Protocol{HTTPJSON, HTTPBinary} {
		cfg := Config{Protocol: p, URL: srv.URL, Model: "fake", Inputs: ts, Duration: 50 * time.Millisecond, MinRequests: 2}
		res, err := Run(context.Background(), cfg, []int{2}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Batch != 2 || res[0].Requests == 0 {
			t.Errorf("%s: %+v", p, res[0])
		}
	}
	if f.bad.Load() != 0 {
		t.Errorf("server could not decode %d requests", f.bad.Load())
	}
}

// fakeGRPC answers ModelInfer for the fake model; every failEvery-th
// request fails with RESOURCE_EXHAUSTED.
type fakeGRPC struct {
	inferencepb.UnimplementedGRPCInferenceServiceServer
	failEvery int64
	n         atomic.Int64
	mu        sync.Mutex
	bad       int
}

func (f *fakeGRPC) ModelMetadata(_ context.Context, r *inferencepb.ModelMetadataRequest) (*inferencepb.ModelMetadataResponse, error) {
	if r.GetName() != "fake" {
		return nil, status.Error(codes.NotFound, "unknown model")
	}
	return &inferencepb.ModelMetadataResponse{Name: "fake",
		Inputs:  []*inferencepb.ModelMetadataResponse_TensorMetadata{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 4}}},
		Outputs: []*inferencepb.ModelMetadataResponse_TensorMetadata{{Name: "y", Datatype: "FP32", Shape: []int64{-1, 2}}},
	}, nil
}

func (f *fakeGRPC) ModelInfer(_ context.Context, r *inferencepb.ModelInferRequest) (*inferencepb.ModelInferResponse, error) {
	if k := f.n.Add(1); f.failEvery > 0 && k%f.failEvery == 0 {
		return nil, status.Error(codes.ResourceExhausted, "queue full")
	}
	in := r.GetInputs()
	if len(in) != 1 || len(r.GetRawInputContents()) != 1 || in[0].GetDatatype() != "FP32" ||
		int64(len(r.GetRawInputContents()[0])) != in[0].GetShape()[0]*16 || r.GetModelName() != "fake" {
		f.mu.Lock()
		f.bad++
		f.mu.Unlock()
		return nil, status.Error(codes.InvalidArgument, "bad input")
	}
	rows := in[0].GetShape()[0]
	return &inferencepb.ModelInferResponse{ModelName: "fake",
		Outputs:           []*inferencepb.ModelInferResponse_InferOutputTensor{{Name: "y", Datatype: "FP32", Shape: []int64{rows, 2}}},
		RawOutputContents: [][]byte{make([]byte, rows*8)},
	}, nil
}

func startGRPC(t *testing.T, f *fakeGRPC) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	inferencepb.RegisterGRPCInferenceServiceServer(s, f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(lis)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return lis.Addr().String()
}

func TestRunGRPC(t *testing.T) {
	tests := []struct {
		name      string
		failEvery int64
		batch     int
		conns     int
		rate      float64
	}{
		{"healthy", 0, 1, 0, 0},
		{"batch 4, 3 connections", 0, 4, 3, 0},
		{"resource exhausted", 3, 1, 1, 0},
		{"open loop", 0, 2, 0, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeGRPC{failEvery: tt.failEvery}
			addr := startGRPC(t, f)
			cfg := Config{Protocol: GRPC, GRPCAddr: addr, Model: "fake", Batch: tt.batch, GRPCConns: tt.conns,
				MaxInFlight: 8, Warmup: 10 * time.Millisecond, Duration: 100 * time.Millisecond, MinRequests: 6}
			var rates []float64
			levels := []int{1, 3}
			if tt.rate > 0 {
				rates, levels = []float64{tt.rate}, nil
			}
			res, err := Run(context.Background(), cfg, levels, rates, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				if r.Requests == 0 || r.Batch != tt.batch {
					t.Errorf("%+v", r)
				}
				if tt.failEvery > 0 && r.Errors["grpc_ResourceExhausted"] == 0 {
					t.Errorf("errors %v, want grpc_ResourceExhausted", r.Errors)
				}
				if tt.failEvery == 0 && r.ErrorCount != 0 {
					t.Errorf("errors %v against a healthy server", r.Errors)
				}
				if tt.rate > 0 && r.Requests+r.ErrorCount != 30 {
					t.Errorf("open loop recorded %d, want 30", r.Requests+r.ErrorCount)
				}
			}
			if f.bad != 0 {
				t.Errorf("server rejected %d requests", f.bad)
			}
		})
	}
}

func TestProbeGRPCDecodesAnswer(t *testing.T) {
	addr := startGRPC(t, &fakeGRPC{})
	g, err := New(context.Background(), Config{Protocol: GRPC, GRPCAddr: addr, Model: "fake", Batch: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	p := g.Probe()
	if len(p.Outputs) != 1 || p.Outputs[0].Name != "y" || p.Outputs[0].Shape[0] != 5 || p.ResponseBytes == 0 || g.Rows() != 5 {
		t.Errorf("probe %+v rows %d", p, g.Rows())
	}
	if _, err := New(context.Background(), Config{Protocol: GRPC, GRPCAddr: addr, Model: "other"}); err == nil ||
		!strings.Contains(err.Error(), "NotFound") {
		t.Errorf("unknown model: err = %v", err)
	}
}

func TestErrorKind(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&StatusError{Code: 503}, "http_503"},
		{&StatusError{Code: 429}, "http_429"},
		{status.Error(codes.Unavailable, "x"), "grpc_Unavailable"},
		{status.Error(codes.DeadlineExceeded, "x"), "timeout"},
		{status.Error(codes.Canceled, "x"), "canceled"},
		{context.DeadlineExceeded, "timeout"},
		{io.ErrUnexpectedEOF, "transport"},
		{errEmpty, "empty_response"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := ErrorKind(tt.err); got != tt.want {
				t.Errorf("ErrorKind(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func TestWriteFormats(t *testing.T) {
	res := []Result{{Protocol: HTTPJSON, Model: "mlp", Batch: 1, Mode: ModeConcurrency, Concurrency: 4, WindowSeconds: 2,
		Requests: 100, ErrorCount: 2, Errors: map[string]int64{"http_503": 2}, Throughput: 50, RowsPerSec: 50,
		Latency: LatencyStats{Count: 100, Min: ms(1), Mean: ms(2), P50: ms(2), P90: ms(3), P99: ms(4), Max: ms(5)}}}
	tests := []struct {
		format string
		want   []string
	}{
		{"table", []string{"req/s", "c=4", "2.000", "4.000", "http_503:2"}},
		{"csv", []string{strings.Join(CSVHeader, ","), "http-json,mlp,1,concurrency,4,0,2,100,2,50.00,50.00,2000.0,3000.0,4000.0,5000.0"}},
		{"json", []string{`"p99_us": 4000`, `"http_503": 2`}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			var b bytes.Buffer
			if err := Write(&b, tt.format, res); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, b.String())
				}
			}
			if tt.format == "json" {
				var back []Result
				if err := json.Unmarshal(b.Bytes(), &back); err != nil || back[0].Latency != res[0].Latency {
					t.Errorf("JSON round trip: %v, %+v", err, back)
				}
			}
		})
	}
	if err := Write(io.Discard, "xml", res); err == nil {
		t.Error("unknown format accepted")
	}
}
