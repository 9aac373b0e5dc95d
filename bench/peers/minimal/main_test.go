package main

import (
	"context"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kilnai/kiln/internal/loadgen"
)

// TestAnswersAreValidOIP drives the minimal servers with the load
// generator, whose probe decodes each answer in full.
func TestAnswersAreValidOIP(t *testing.T) {
	in, _ := parseSpec("input:FP32:-1,64")
	out, _ := parseSpec("output:FP32:-1,10")
	a, err := loadAnswers("", "mlp", 1, []spec{in}, []spec{out})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.httpHandler("mlp"))
	defer srv.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := a.grpcServer()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	defer func() {
		gs.Stop()
		<-done
	}()
	for _, p := range []loadgen.Protocol{loadgen.HTTPJSON, loadgen.HTTPBinary, loadgen.GRPC} {
		t.Run(string(p), func(t *testing.T) {
			cfg := loadgen.Config{Protocol: p, URL: srv.URL, GRPCAddr: lis.Addr().String(), Model: "mlp",
				Duration: 20 * time.Millisecond, MinRequests: 3}
			if p == loadgen.GRPC {
				cfg.URL = "" // metadata over gRPC too
			}
			res, err := loadgen.Run(context.Background(), cfg, []int{2}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res[0].Requests < 3 || res[0].ErrorCount != 0 {
				t.Errorf("%+v", res[0])
			}
		})
	}
}

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{{"x:FP32:-1,3", true}, {"x:FP8:1", false}, {"x:FP32", false}, {":FP32:1", false}, {"x:FP32:a", false}}
	for _, tt := range tests {
		if _, err := parseSpec(tt.in); (err == nil) != tt.ok {
			t.Errorf("parseSpec(%q) err = %v", tt.in, err)
		}
	}
}
