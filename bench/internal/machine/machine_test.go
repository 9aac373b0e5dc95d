package machine

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	m := Read()
	if m.CPUs != runtime.NumCPU() {
		t.Errorf("CPUs %d, want %d", m.CPUs, runtime.NumCPU())
	}
	if runtime.GOOS == "linux" {
		if m.MemoryGiB <= 0 || m.Kernel == "" || m.CPUModel == "" {
			t.Errorf("incomplete on Linux: %+v", m)
		}
		if _, err := strconv.ParseFloat(m.LoadStart, 64); err != nil {
			t.Errorf("load average %q: %v", m.LoadStart, err)
		}
	}
	if s := m.Summary(); !strings.Contains(s, strconv.Itoa(m.CPUs)+" CPUs") || !strings.Contains(s, runtime.Version()) {
		t.Errorf("summary %q", s)
	}
}
