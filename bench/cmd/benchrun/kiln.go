package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// modelSetting is how Kiln serves one benchmark model; the same numbers
// drive the in-process peer.
type modelSetting struct {
	Name          string `json:"name"`
	File          string `json:"file"`
	MaxBatchSize  int    `json:"max_batch_size"`
	Instances     int    `json:"instances"`
	IntraOp       int    `json:"intra_op_threads"`
	InterOp       int    `json:"inter_op_threads"`
	MaxQueueDelay string `json:"max_queue_delay"`
}

func (m modelSetting) configYAML() string {
	return fmt.Sprintf(`# Written by bench/cmd/benchrun.
backend: onnx
max_batch_size: %d
instances: %d
dynamic_batching:
  max_queue_delay: %s
parameters:
  intra_op_threads: %d
  inter_op_threads: %d
`, m.MaxBatchSize, m.Instances, m.MaxQueueDelay, m.IntraOp, m.InterOp)
}

// writeRepository lays out a Kiln model repository in dir:
// <name>/config.yaml and <name>/1/model.onnx (hard-linked when possible).
func writeRepository(dir, modelsDir string, models []modelSetting) error {
	for _, m := range models {
		vdir := filepath.Join(dir, m.Name, "1")
		if err := os.MkdirAll(vdir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, m.Name, "config.yaml"), []byte(m.configYAML()), 0o644); err != nil {
			return err
		}
		src, dst := filepath.Join(modelsDir, m.File), filepath.Join(vdir, "model.onnx")
		if err := os.Link(src, dst); err != nil {
			if err := copyFile(src, dst); err != nil {
				return err
			}
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// statDuration is OIP's StatisticDuration.
type statDuration struct {
	Count uint64 `json:"count"`
	NS    uint64 `json:"ns"`
}

// modelStats is the part of GET /v2/models/{m}/stats the harness reads.
type modelStats struct {
	InferenceCount uint64                  `json:"inference_count"`
	ExecutionCount uint64                  `json:"execution_count"`
	InferenceStats map[string]statDuration `json:"inference_stats"`
	BatchStats     []struct {
		BatchSize    uint64       `json:"batch_size"`
		ComputeInfer statDuration `json:"compute_infer"`
	} `json:"batch_stats"`
}

func fetchStats(ctx context.Context, base, model string) (modelStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/models/"+model+"/stats", nil)
	if err != nil {
		return modelStats{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return modelStats{}, fmt.Errorf("statistics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return modelStats{}, fmt.Errorf("statistics: HTTP %d", resp.StatusCode)
	}
	var body struct {
		ModelStats []modelStats `json:"model_stats"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return modelStats{}, fmt.Errorf("statistics: %w", err)
	}
	if len(body.ModelStats) == 0 {
		return modelStats{}, fmt.Errorf("statistics: no entry for %s", model)
	}
	// Several versions: add them up.
	sum := body.ModelStats[0]
	for _, s := range body.ModelStats[1:] {
		sum.InferenceCount += s.InferenceCount
		sum.ExecutionCount += s.ExecutionCount
		sum.BatchStats = append(sum.BatchStats, s.BatchStats...)
	}
	return sum, nil
}

// ServerStats is what Kiln's statistics say about one measured level:
// the batches its batcher formed and where the time went per request.
type ServerStats struct {
	Executions uint64 `json:"executions"`
	Inferences uint64 `json:"inferences"`
	// Mix maps batch size to executions at that size.
	Mix map[int]uint64 `json:"mix"`
	// Mean durations per successful request (queue, compute input, infer,
	// output) and per execution (ComputeInferPerExecUS), in µs.
	SuccessUS             float64 `json:"success_us"`
	QueueUS               float64 `json:"queue_us"`
	ComputeInputUS        float64 `json:"compute_input_us"`
	ComputeInferUS        float64 `json:"compute_infer_us"`
	ComputeOutputUS       float64 `json:"compute_output_us"`
	ComputeInferPerExecUS float64 `json:"compute_infer_per_exec_us"`
}

// MeanBatch is rows per execution.
func (s ServerStats) MeanBatch() float64 {
	var rows, execs uint64
	for b, n := range s.Mix {
		rows += uint64(b) * n
		execs += n
	}
	if execs == 0 {
		return 0
	}
	return float64(rows) / float64(execs)
}

// MixString is the batch mix as size:executions pairs, for the
// in-process peer's --mix.
func (s ServerStats) MixString() string {
	var parts []string
	for _, b := range slices.Sorted(maps.Keys(s.Mix)) {
		if n := s.Mix[b]; n > 0 {
			parts = append(parts, strconv.Itoa(b)+":"+strconv.FormatUint(n, 10))
		}
	}
	return strings.Join(parts, ",")
}

// diffStats is what happened between two snapshots.
func diffStats(a, b modelStats) ServerStats {
	s := ServerStats{Executions: b.ExecutionCount - a.ExecutionCount, Inferences: b.InferenceCount - a.InferenceCount, Mix: map[int]uint64{}}
	before := map[uint64]statDuration{}
	for _, x := range a.BatchStats {
		d := before[x.BatchSize]
		d.Count += x.ComputeInfer.Count
		d.NS += x.ComputeInfer.NS
		before[x.BatchSize] = d
	}
	var execNS, execs uint64
	for _, x := range b.BatchStats {
		d := before[x.BatchSize]
		n := x.ComputeInfer.Count - d.Count
		if n > 0 {
			s.Mix[int(x.BatchSize)] += n
			execs += n
			execNS += x.ComputeInfer.NS - d.NS
		}
		before[x.BatchSize] = x.ComputeInfer // so a repeated entry is not counted twice
	}
	if execs > 0 {
		s.ComputeInferPerExecUS = float64(execNS) / float64(execs) / 1e3
	}
	succ := sub(b.InferenceStats["success"], a.InferenceStats["success"])
	if succ.Count > 0 {
		per := func(k string) float64 {
			d := sub(b.InferenceStats[k], a.InferenceStats[k])
			return float64(d.NS) / float64(succ.Count) / 1e3
		}
		s.SuccessUS = per("success")
		s.QueueUS = per("queue")
		s.ComputeInputUS = per("compute_input")
		s.ComputeInferUS = per("compute_infer")
		s.ComputeOutputUS = per("compute_output")
	}
	return s
}

func sub(b, a statDuration) statDuration {
	if b.Count < a.Count || b.NS < a.NS {
		return statDuration{}
	}
	return statDuration{Count: b.Count - a.Count, NS: b.NS - a.NS}
}
