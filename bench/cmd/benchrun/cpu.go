package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc CPU times (100 on Linux).
const clockTicks = 100

// cpuSample is a snapshot of CPU time: the whole machine's busy time, the
// server process's and the harness's (the load generator's) own.
type cpuSample struct {
	at     time.Time
	busy   uint64
	server uint64
	client uint64
}

// CPUUse is the mean number of cores busy during a measurement: the
// server, the load generator, and everything else on the machine.
type CPUUse struct {
	Server float64 `json:"server_cores"`
	Client float64 `json:"client_cores"`
	Other  float64 `json:"other_cores"`
}

func sampleCPU(pid int) cpuSample {
	s := cpuSample{at: time.Now(), client: procTicks("self")}
	if pid > 0 {
		s.server = procTicks(strconv.Itoa(pid))
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		// cpu user nice system idle iowait irq softirq steal ...
		for i := 1; i < len(f) && i <= 8; i++ {
			if i == 4 || i == 5 {
				continue // idle, iowait
			}
			v, _ := strconv.ParseUint(f[i], 10, 64)
			s.busy += v
		}
	}
	return s
}

// procTicks is utime + stime of /proc/<pid>/stat.
func procTicks(pid string) uint64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces: fields start after the last ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	// After ')': state is field 3, utime field 14, stime field 15.
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return u + st
}

// since is the CPU use between two samples.
func (s cpuSample) since(a cpuSample) CPUUse {
	secs := s.at.Sub(a.at).Seconds()
	if secs <= 0 {
		return CPUUse{}
	}
	cores := func(d uint64) float64 { return float64(d) / clockTicks / secs }
	u := CPUUse{Server: cores(s.server - a.server), Client: cores(s.client - a.client)}
	u.Other = max(0, cores(s.busy-a.busy)-u.Server-u.Client)
	return u
}

// waitQuiet waits until other processes (not the server pid, not the
// harness) keep fewer than limit cores busy over a short sample, for at
// most maxWait; it reports whether the machine was quiet.
func waitQuiet(ctx context.Context, pid int, limit float64, maxWait time.Duration) (bool, float64) {
	deadline := time.Now().Add(maxWait)
	for {
		a := sampleCPU(pid)
		select {
		case <-ctx.Done():
			return false, 0
		case <-time.After(300 * time.Millisecond):
		}
		other := sampleCPU(pid).since(a).Other
		if other < limit {
			return true, other
		}
		if time.Now().After(deadline) {
			return false, other
		}
	}
}
