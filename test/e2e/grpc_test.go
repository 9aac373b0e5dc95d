package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "github.com/kilnai/kiln/internal/grpcapi/inferencepb"
)

// startGRPCServer starts kiln with both APIs and returns the gRPC address.
func startGRPCServer(t *testing.T) (*server, string) {
	t.Helper()
	s := startServer(t, true, "--model-repository", "models", "--grpc", "127.0.0.1:0")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(s.logs.String(), "\n") {
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "gRPC API listening" {
				return s, rec.Addr
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no gRPC address in the log:\n%s", s.logs.String())
	return nil, ""
}

func TestGRPC(t *testing.T) {
	requireORT(t)
	_, addr := startGRPCServer(t)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewGRPCInferenceServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if r, err := c.ServerReady(ctx, &pb.ServerReadyRequest{}); err != nil || !r.Ready {
		t.Fatalf("ServerReady: %v %v", r, err)
	}
	if r, err := c.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "iris"}); err != nil || len(r.Inputs) != 1 || r.Inputs[0].Name != "input" {
		t.Fatalf("ModelMetadata: %v %v", r, err)
	}
	req := &pb.ModelInferRequest{
		ModelName: "iris", Id: "g1",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{{
			Name: "input", Datatype: "FP32", Shape: []int64{1, 4},
			Contents: &pb.InferTensorContents{Fp32Contents: []float32{6.3, 3.4, 5.6, 2.4}},
		}},
	}
	resp, err := c.ModelInfer(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Id != "g1" || resp.ModelVersion != "1" {
		t.Fatalf("response %v", resp)
	}
	var label int64 = -1
	for _, o := range resp.Outputs {
		if o.Name == "label" && o.Contents != nil && len(o.Contents.Int64Contents) == 1 {
			label = o.Contents.Int64Contents[0]
		}
	}
	if label != 2 {
		t.Fatalf("label %d in %v", label, resp)
	}
	cfg, err := c.ModelConfig(ctx, &pb.ModelConfigRequest{Name: "iris"})
	if err != nil || cfg.Config.MaxBatchSize != 64 {
		t.Fatalf("ModelConfig: %v %v", cfg, err)
	}
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
}

// TestGrpcurl drives Kiln with grpcurl and Kiln's own proto files.
func TestGrpcurl(t *testing.T) {
	requireORT(t)
	bin := filepath.Join(t.TempDir(), "bin")
	install := exec.Command("go", "install", "github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4")
	install.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=-mod=mod")
	install.Dir = t.TempDir()
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("installing grpcurl: %v\n%s", err, out)
	}
	_, addr := startGRPCServer(t)
	api := filepath.Join(repoRoot(), "api")
	run := func(method, data string) string {
		t.Helper()
		args := []string{"-plaintext", "-import-path", api, "-proto", "inference.proto"}
		if data != "" {
			args = append(args, "-d", data)
		}
		args = append(args, addr, method)
		out, err := exec.Command(filepath.Join(bin, "grpcurl"), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl %s: %v\n%s", method, err, out)
		}
		return string(out)
	}
	contains(t, "ServerMetadata", run("inference.GRPCInferenceService/ServerMetadata", ""), `"name": "kiln"`)
	out := run("inference.GRPCInferenceService/ModelInfer",
		`{"model_name":"iris","inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"contents":{"fp32_contents":[6.3,3.4,5.6,2.4]}}]}`)
	contains(t, "ModelInfer", out, `"modelName": "iris"`, `"int64Contents"`, `"2"`)
	contains(t, "RepositoryIndex", run("inference.GRPCInferenceService/RepositoryIndex", `{}`), `"digits"`, `"READY"`)
}
