package main

import (
	"time"

	"github.com/kilnai/kiln/internal/loadgen"
)

// Plan is what a run measures.
type Plan struct {
	MLPLevels   []int         `json:"mlp_levels"`
	MLPWarmup   time.Duration `json:"mlp_warmup"`
	MLPDuration time.Duration `json:"mlp_duration"`

	// ResNetKiln are Kiln's protocols for ResNet-18; ResNetPeers adds the
	// Node and Python servers (JSON).
	ResNetKiln     []loadgen.Protocol `json:"resnet_kiln"`
	ResNetPeers    bool               `json:"resnet_peers"`
	ResNetLevels   []int              `json:"resnet_levels"`
	ResNetWarmup   time.Duration      `json:"resnet_warmup"`
	ResNetDuration time.Duration      `json:"resnet_duration"`

	// OpenProtocols are run open-loop (Kiln and the minimal server) at a
	// rate of OpenFraction × Kiln's best closed-loop MLP throughput.
	OpenProtocols []loadgen.Protocol `json:"open_protocols"`
	OpenFraction  float64            `json:"open_fraction"`
	OpenWarmup    time.Duration      `json:"open_warmup"`
	OpenDuration  time.Duration      `json:"open_duration"`

	InprocWarmup   time.Duration `json:"inproc_warmup"`
	InprocDuration time.Duration `json:"inproc_duration"`
	WrkDuration    time.Duration `json:"wrk_duration"`
}

// The levels at which the targets are judged.
const (
	targetLevelMLP     = 64 // Kiln vs the minimal servers, MLP
	targetLevelPeers   = 32 // Kiln vs Node and Python
	targetLevelResNet  = 64 // Kiln vs in-process ORT, ResNet-18
	targetLevelLatency = 1  // Kiln's own latency, MLP batch 1
)

var allProtocols = []loadgen.Protocol{loadgen.HTTPJSON, loadgen.HTTPBinary, loadgen.GRPC}

func fullPlan() Plan {
	return Plan{
		MLPLevels: []int{1, 2, 4, 8, 16, 32, 64, 128}, MLPWarmup: 2 * time.Second, MLPDuration: 5 * time.Second,
		ResNetKiln: allProtocols, ResNetPeers: true, ResNetLevels: []int{1, 8, 32, 64},
		ResNetWarmup: 5 * time.Second, ResNetDuration: 10 * time.Second,
		OpenProtocols: allProtocols, OpenFraction: 0.5, OpenWarmup: time.Second, OpenDuration: 5 * time.Second,
		InprocWarmup: time.Second, InprocDuration: 5 * time.Second, WrkDuration: 5 * time.Second,
	}
}

func quickPlan() Plan {
	return Plan{
		MLPLevels: []int{1, 32, 64}, MLPWarmup: 500 * time.Millisecond, MLPDuration: 2 * time.Second,
		ResNetKiln: []loadgen.Protocol{loadgen.HTTPBinary, loadgen.GRPC}, ResNetLevels: []int{64},
		ResNetWarmup: 3 * time.Second, ResNetDuration: 4 * time.Second,
		OpenProtocols: []loadgen.Protocol{loadgen.HTTPBinary}, OpenFraction: 0.5,
		OpenWarmup: 500 * time.Millisecond, OpenDuration: 2 * time.Second,
		InprocWarmup: 500 * time.Millisecond, InprocDuration: 2 * time.Second, WrkDuration: 2 * time.Second,
	}
}

// Settings are the fixed server settings of a run, per model.
type Settings struct {
	CPUs         string         `json:"cpus"`
	ThreadBudget int            `json:"thread_budget"`
	Kiln         []modelSetting `json:"kiln"`
	NodeIntraOp  map[string]int `json:"node_intra_op"`
	PyThreads    map[string]int `json:"python_threads"`
	GOMAXPROCS   int            `json:"gomaxprocs"`
}

// settings picks the servers' settings for a thread budget of n cores.
//
// Kiln: max(1, n) instances of one intra-op thread each, the dynamic
// batcher dispatching whatever is queued as soon as an instance is free
// (max_queue_delay 0), so no request waits for company at low load.
// Node: one session (the rule); the measured best intra-op count
// on 2 cores is 1 for the MLP (a second, spinning ORT thread competes with
// the event loop) and n for ResNet-18. Python: torch threads likewise,
// 1 for the MLP (more only oversubscribe OpenBLAS) and n for ResNet-18.
func settings(cpus string, n int) Settings {
	return Settings{
		CPUs: cpus, ThreadBudget: n, GOMAXPROCS: n,
		Kiln: []modelSetting{
			{Name: "mlp", File: "mlp.onnx", MaxBatchSize: 64, Instances: n, IntraOp: 1, InterOp: 1, MaxQueueDelay: "0s"},
			{Name: "resnet18", File: "resnet18.onnx", MaxBatchSize: 16, Instances: n, IntraOp: 1, InterOp: 1, MaxQueueDelay: "0s"},
		},
		NodeIntraOp: map[string]int{"mlp": 1, "resnet18": n},
		PyThreads:   map[string]int{"mlp": 1, "resnet18": n},
	}
}

func (s Settings) kiln(model string) modelSetting {
	for _, m := range s.Kiln {
		if m.Name == model {
			return m
		}
	}
	return modelSetting{}
}
