package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/kilnai/kiln/bench/internal/machine"
)

// Machine describes where the benchmarks ran.
type Machine = machine.Info

// Versions of everything that was measured.
type Versions struct {
	Go          string `json:"go"`
	Kiln        string `json:"kiln"`
	ORT         string `json:"onnxruntime"`
	ORTGo       string `json:"onnxruntime_go"`
	Node        string `json:"node"`
	ORTNode     string `json:"onnxruntime_node"`
	Python      string `json:"python"`
	Torch       string `json:"torch"`
	Torchvision string `json:"torchvision"`
	Aiohttp     string `json:"aiohttp"`
	Wrk         string `json:"wrk"`
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}

func (h *harness) collectVersions(ctx context.Context) {
	v := &h.rep.Versions
	v.Go = runtime.Version()
	if out, err := run(ctx, h.root, nil, h.kilnBin, "version"); err == nil {
		v.Kiln = firstLine(out)
	}
	if out, err := run(ctx, h.root, nil, "go", "list", "-m", "-f", "{{.Version}}", "github.com/yalue/onnxruntime_go"); err == nil {
		v.ORTGo = firstLine(out)
	}
	if out, err := run(ctx, h.root, nil, "node", "--version"); err == nil {
		v.Node = firstLine(out)
	}
	if b, err := os.ReadFile(filepath.Join(h.root, "bench", "peers", "node", "node_modules", "onnxruntime-node", "package.json")); err == nil {
		if _, rest, ok := strings.Cut(string(b), `"version": "`); ok {
			v.ORTNode, _, _ = strings.Cut(rest, `"`)
		}
	}
	if h.python != "" {
		out, err := run(ctx, h.root, nil, h.python, "-c",
			"import sys, torch, torchvision, aiohttp; print(sys.version.split()[0], torch.__version__, torchvision.__version__, aiohttp.__version__)")
		if f := strings.Fields(firstLine(out)); err == nil && len(f) == 4 {
			v.Python, v.Torch, v.Torchvision, v.Aiohttp = f[0], f[1], f[2], f[3]
		}
	}
	// wrk -v prints its version and exits with status 1.
	if out, _ := exec.CommandContext(ctx, "wrk", "-v").CombinedOutput(); len(out) > 0 {
		v.Wrk = firstLine(string(out))
	}
}

// findPython returns the first python3 on PATH that imports what the
// model generator and the Python peer need (a pyenv shim without numpy is
// skipped).
func findPython(ctx context.Context) (string, error) {
	if p := os.Getenv("PYTHON"); p != "" {
		return p, nil
	}
	seen := map[string]bool{}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, "python3")
		if seen[p] {
			continue
		}
		seen[p] = true
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			continue
		}
		if _, err := run(ctx, "", nil, p, "-c", "import numpy, onnx, torch, torchvision, aiohttp"); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no python3 on PATH imports numpy, onnx, torch, torchvision and aiohttp (set PYTHON)")
}

// ensureModels generates the benchmark models when any is missing.
func (h *harness) ensureModels(ctx context.Context) error {
	need := []string{"mlp.onnx", "mlp.npz", "resnet18.onnx", "resnet18_state_dict.pt"}
	missing := false
	for _, n := range need {
		if _, err := os.Stat(filepath.Join(h.models, n)); err != nil {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	if h.python == "" {
		return errors.New("models missing and no suitable python3 to generate them")
	}
	h.logf("generating models into %s", h.rel(h.models))
	_, err := run(ctx, h.root, nil, h.python, "scripts/bench/gen_models.py", "--out", h.models, "--resnet")
	return err
}

// ensureNode installs the Node peer's dependencies from its lock file.
func (h *harness) ensureNode(ctx context.Context) error {
	dir := filepath.Join(h.root, "bench", "peers", "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "onnxruntime-node", "package.json")); err == nil {
		return nil
	}
	h.logf("installing the Node peer's packages (npm ci --ignore-scripts)")
	_, err := run(ctx, dir, nil, "npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")
	return err
}

// ensureORT fetches the ONNX Runtime library when it is missing.
func (h *harness) ensureORT(ctx context.Context) error {
	if _, err := os.Stat(h.ortLib); err == nil {
		return nil
	}
	h.logf("fetching ONNX Runtime (scripts/fetch-ort.sh)")
	_, err := run(ctx, h.root, nil, "scripts/fetch-ort.sh", filepath.Join("third_party", "onnxruntime"))
	if err != nil {
		return err
	}
	if _, err := os.Stat(h.ortLib); err != nil {
		return fmt.Errorf("ONNX Runtime library: %w", err)
	}
	return nil
}
