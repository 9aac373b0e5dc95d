// Package machine describes the machine a benchmark runs on, for the
// reports in docs/benchmarks.md: CPU model and count, memory, kernel and
// the load average (how busy other work kept the cores).
package machine

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Info describes where a benchmark ran.
type Info struct {
	CPUs      int     `json:"cpus"`
	CPUModel  string  `json:"cpu_model"`
	MemoryGiB float64 `json:"memory_gib"`
	Kernel    string  `json:"kernel"`
	// LoadStart and LoadEnd are the 1-minute load averages when the run
	// started and ended: anything well above 0 means other work shared the
	// cores. Callers set LoadEnd with LoadAvg when they finish.
	LoadStart string `json:"load_start"`
	LoadEnd   string `json:"load_end"`
}

// Read describes this machine now (LoadStart is the current load average).
func Read() Info {
	m := Info{CPUs: runtime.NumCPU(), CPUModel: "unknown", LoadStart: LoadAvg()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.MemoryGiB = kb / (1 << 20)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// Summary is a one-line description: CPU model, CPU count, OS/arch and
// Go version.
func (m Info) Summary() string {
	return fmt.Sprintf("%s, %d CPUs, %s/%s, %s", m.CPUModel, m.CPUs, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

// LoadAvg returns the 1-minute load average ("unknown" where there is
// none).
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}
