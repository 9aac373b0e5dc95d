package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Usage is what one contender process cost.
type Usage struct {
	Wall   time.Duration `json:"wall_ns"`
	User   time.Duration `json:"user_ns"`
	Sys    time.Duration `json:"sys_ns"`
	MaxRSS int64         `json:"max_rss_bytes"`
	// OtherCores is the mean number of cores that other processes kept
	// busy during the run (the machine's busy time minus this process's):
	// anything well above 0 means the contender shared its cores.
	OtherCores float64 `json:"other_cores"`
}

// CPU is user + system time.
func (u Usage) CPU() time.Duration { return u.User + u.Sys }

// usageOf reads wait4's resource usage of a finished child: Linux gives
// ru_maxrss in KiB.
func usageOf(ru *syscall.Rusage, wall time.Duration) Usage {
	if ru == nil {
		return Usage{Wall: wall}
	}
	tv := func(t syscall.Timeval) time.Duration {
		return time.Duration(t.Sec)*time.Second + time.Duration(t.Usec)*time.Microsecond
	}
	return Usage{Wall: wall, User: tv(ru.Utime), Sys: tv(ru.Stime), MaxRSS: ru.Maxrss * 1024}
}

// runner starts contender processes pinned to cpus with taskset (when
// taskset exists and cpus is set), logging their stderr into dir.
type runner struct {
	dir  string
	cpus string
	logf func(string, ...any)
}

// measure runs argv to completion and returns its usage and stdout. Its
// stderr goes to <dir>/<name>.log; a failure carries the log's tail.
func (r *runner) measure(ctx context.Context, name string, env []string, argv ...string) (Usage, []byte, error) {
	if r.cpus != "" {
		if ts, err := exec.LookPath("taskset"); err == nil {
			argv = append([]string{ts, "-c", r.cpus}, argv...)
		}
	}
	logPath := filepath.Join(r.dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return Usage{}, nil, err
	}
	defer logf.Close()
	var stdout bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &stdout, logf
	before := machineBusy()
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	after := machineBusy()
	var u Usage
	if cmd.ProcessState != nil {
		ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		u = usageOf(ru, wall)
	}
	u.OtherCores = otherCores(after-before, u.CPU(), wall)
	if err != nil {
		return u, stdout.Bytes(), fmt.Errorf("%s: %w\n%s", name, err, tail(logPath, 15))
	}
	return u, stdout.Bytes(), nil
}

// clockTicks is USER_HZ, the unit of /proc/stat (100 on Linux).
const clockTicks = 100

// machineBusy is the machine's busy CPU time (all CPUs, not idle or
// iowait) from /proc/stat.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return busyFromStat(line)
}

// busyFromStat parses the "cpu ..." line of /proc/stat.
func busyFromStat(line string) time.Duration {
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	var ticks uint64
	// cpu user nice system idle iowait irq softirq steal ...
	for i := 1; i < len(f) && i <= 8; i++ {
		if i == 4 || i == 5 {
			continue
		}
		v, _ := strconv.ParseUint(f[i], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// otherCores is the mean number of cores busy with other work.
func otherCores(machine, own, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return max(0, (machine-own).Seconds()/wall.Seconds())
}

// waitQuiet waits until other processes keep fewer than limit cores busy
// over a one-second sample, for at most maxWait; it returns the last
// sample.
func waitQuiet(ctx context.Context, limit float64, maxWait time.Duration) float64 {
	deadline := time.Now().Add(maxWait)
	for {
		a := machineBusy()
		// The harness itself is idle while it samples.
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(time.Second):
		}
		busy := (machineBusy() - a).Seconds()
		if busy < limit || !time.Now().Before(deadline) {
			return busy
		}
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// median of durations (the lower middle of an even count); 0 when empty.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// medianInt is median for integers.
func medianInt(vs []int64) int64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// rowsPerSec is rows over a wall time; 0 when the time is 0.
func rowsPerSec(rows int64, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return float64(rows) / wall.Seconds()
}

// fileSize is the size of path, or of every file under it when it is a
// directory.
func fileSize(path string) (int64, error) {
	var n int64
	err := filepath.WalkDir(path, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("no output at %s", path)
	}
	return n, err
}
