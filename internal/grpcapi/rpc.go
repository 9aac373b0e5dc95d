package grpcapi

import (
	"context"
	"fmt"
	"slices"

	pb "github.com/kilnai/kiln/internal/grpcapi/inferencepb"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/serving"
)

// ServerLive answers true while the process serves gRPC at all.
func (s *Server) ServerLive(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return &pb.ServerLiveResponse{Live: true}, nil
}

// ServerReady answers true once start-up finished, before draining, while
// every model the manager tried to load serves.
func (s *Server) ServerReady(context.Context, *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	ok := s.started.Load() && !s.draining.Load() && s.mgr.AllReady()
	return &pb.ServerReadyResponse{Ready: ok}, nil
}

// ServerMetadata returns the server's name, version and extensions.
func (s *Server) ServerMetadata(context.Context, *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	return &pb.ServerMetadataResponse{Name: s.opts.ServerName, Version: s.opts.ServerVersion, Extensions: s.opts.Extensions}, nil
}

// errNoName is returned by RPCs that address a model without naming one.
var errNoName = fmt.Errorf("%w: the model name is required", inference.ErrInvalidInput)

// ModelReady reports whether a model version can serve. An unknown model
// is NOT_FOUND (as the HTTP API's 404); a known one that cannot serve is
// ready=false.
func (s *Server) ModelReady(_ context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	if req.Name == "" {
		return nil, s.fail("ModelReady", errNoName)
	}
	ok, err := s.mgr.Ready(req.Name, req.Version)
	if err != nil {
		return nil, s.fail("ModelReady", err)
	}
	return &pb.ModelReadyResponse{Ready: ok}, nil
}

// ModelMetadata describes a model version: the served versions (only the
// one asked for when a version is given), platform and tensors.
func (s *Server) ModelMetadata(_ context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	if req.Name == "" {
		return nil, s.fail("ModelMetadata", errNoName)
	}
	info, err := s.mgr.Metadata(req.Name, req.Version)
	if err != nil {
		return nil, s.fail("ModelMetadata", err)
	}
	conv := func(in []inference.TensorSpec) []*pb.ModelMetadataResponse_TensorMetadata {
		out := make([]*pb.ModelMetadataResponse_TensorMetadata, len(in))
		for i, t := range in {
			out[i] = &pb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.DataType.String(), Shape: slices.Clone([]int64(t.Shape))}
		}
		return out
	}
	versions := info.Versions
	if req.Version != "" {
		versions = []string{info.Version}
	}
	return &pb.ModelMetadataResponse{
		Name: info.Name, Versions: versions, Platform: info.Platform,
		Inputs: conv(info.Inputs), Outputs: conv(info.Outputs),
	}, nil
}

// ModelInfer runs one inference request.
func (s *Server) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	id := req.Id
	if id == "" {
		id = s.newID()
	}
	resp, err := s.infer(ctx, req, id)
	if err != nil {
		return nil, s.fail("ModelInfer", err)
	}
	return resp, nil
}

// infer converts, runs and encodes one request under the given id. ctx
// carries the client's deadline into the batcher.
func (s *Server) infer(ctx context.Context, req *pb.ModelInferRequest, id string) (*pb.ModelInferResponse, error) {
	if req.ModelName == "" {
		return nil, errNoName
	}
	sreq, raw, err := decodeRequest(req, s.opts.MaxElements)
	if err != nil {
		return nil, err
	}
	sreq.ID = id
	resp, err := s.mgr.Infer(ctx, req.ModelName, req.ModelVersion, sreq)
	if err != nil {
		return nil, err
	}
	return encodeResponse(resp, id, raw)
}

// ModelConfig returns the effective configuration of a model version as
// Triton's ModelConfig.
func (s *Server) ModelConfig(_ context.Context, req *pb.ModelConfigRequest) (*pb.ModelConfigResponse, error) {
	if req.Name == "" {
		return nil, s.fail("ModelConfig", errNoName)
	}
	cfg, err := s.mgr.Config(req.Name, req.Version)
	if err != nil {
		return nil, s.fail("ModelConfig", err)
	}
	return &pb.ModelConfigResponse{Config: modelConfig(cfg)}, nil
}

// ModelStatistics returns the statistics of every version of every model
// (no name), of one model (no version), or of one version.
func (s *Server) ModelStatistics(_ context.Context, req *pb.ModelStatisticsRequest) (*pb.ModelStatisticsResponse, error) {
	list, err := s.mgr.Statistics(req.Name, req.Version)
	if err != nil {
		return nil, s.fail("ModelStatistics", err)
	}
	out := &pb.ModelStatisticsResponse{ModelStats: make([]*pb.ModelStatistics, 0, len(list))}
	for i := range list {
		out.ModelStats = append(out.ModelStats, modelStatistics(&list[i]))
	}
	return out, nil
}

func duration(d serving.Duration) *pb.StatisticDuration {
	return &pb.StatisticDuration{Count: d.Count, Ns: d.NS}
}

func modelStatistics(st *serving.Stats) *pb.ModelStatistics {
	ms := &pb.ModelStatistics{
		Name: st.Name, Version: st.Version, LastInference: st.LastInference,
		InferenceCount: st.InferenceCount, ExecutionCount: st.ExecutionCount,
		InferenceStats: &pb.InferStatistics{
			Success: duration(st.Success), Fail: duration(st.Fail), Queue: duration(st.Queue),
			ComputeInput: duration(st.ComputeInput), ComputeInfer: duration(st.ComputeInfer), ComputeOutput: duration(st.ComputeOutput),
			CacheHit: duration(st.CacheHit), CacheMiss: duration(st.CacheMiss),
		},
		BatchStats:  make([]*pb.InferBatchStatistics, len(st.Batches)),
		MemoryUsage: []*pb.MemoryUsage{{Type: "CPU", ByteSize: st.MemoryBytes}},
	}
	for i, b := range st.Batches {
		ms.BatchStats[i] = &pb.InferBatchStatistics{
			BatchSize: b.BatchSize, ComputeInput: duration(b.ComputeInput),
			ComputeInfer: duration(b.ComputeInfer), ComputeOutput: duration(b.ComputeOutput),
		}
	}
	return ms
}

// RepositoryIndex lists the models of the repository with their states;
// ready keeps READY versions only. Kiln has one repository, so
// repository_name is ignored.
func (s *Server) RepositoryIndex(ctx context.Context, req *pb.RepositoryIndexRequest) (*pb.RepositoryIndexResponse, error) {
	entries, err := s.mgr.Index(ctx, req.Ready)
	if err != nil {
		return nil, s.fail("RepositoryIndex", err)
	}
	out := &pb.RepositoryIndexResponse{Models: make([]*pb.RepositoryIndexResponse_ModelIndex, len(entries))}
	for i, e := range entries {
		out.Models[i] = &pb.RepositoryIndexResponse_ModelIndex{Name: e.Name, Version: e.Version, State: string(e.State), Reason: e.Reason}
	}
	return out, nil
}

// RepositoryModelLoad loads, or reloads, a model from the repository.
// Overriding its config or files through parameters is not offered: the
// repository is the single source of truth.
func (s *Server) RepositoryModelLoad(ctx context.Context, req *pb.RepositoryModelLoadRequest) (*pb.RepositoryModelLoadResponse, error) {
	if req.ModelName == "" {
		return nil, s.fail("RepositoryModelLoad", errNoName)
	}
	if len(req.Parameters) > 0 {
		k := firstKey(req.Parameters)
		return nil, s.fail("RepositoryModelLoad", fmt.Errorf("%w: load parameter %q is not supported (edit the model repository and load again)", inference.ErrInvalidInput, k))
	}
	if err := s.mgr.Load(ctx, req.ModelName); err != nil {
		return nil, s.fail("RepositoryModelLoad", err)
	}
	return &pb.RepositoryModelLoadResponse{}, nil
}

// RepositoryModelUnload unloads a model, waiting for its in-flight
// requests. The parameter unload_dependents (bool) is accepted; Kiln has
// no ensembles, so there are no dependents.
func (s *Server) RepositoryModelUnload(ctx context.Context, req *pb.RepositoryModelUnloadRequest) (*pb.RepositoryModelUnloadResponse, error) {
	if req.ModelName == "" {
		return nil, s.fail("RepositoryModelUnload", errNoName)
	}
	for _, k := range sortedKeys(req.Parameters) {
		if k != "unload_dependents" {
			return nil, s.fail("RepositoryModelUnload", fmt.Errorf("%w: unload parameter %q is not supported", inference.ErrInvalidInput, k))
		}
		if _, ok := req.Parameters[k].GetParameterChoice().(*pb.ModelRepositoryParameter_BoolParam); !ok {
			return nil, s.fail("RepositoryModelUnload", fmt.Errorf("%w: parameter unload_dependents must be a bool_param", inference.ErrInvalidInput))
		}
	}
	if err := s.mgr.Unload(ctx, req.ModelName); err != nil {
		return nil, s.fail("RepositoryModelUnload", err)
	}
	return &pb.RepositoryModelUnloadResponse{}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// firstKey returns the smallest key, so messages are deterministic.
func firstKey[V any](m map[string]V) string { return sortedKeys(m)[0] }
