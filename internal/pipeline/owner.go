package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// RunOwner identifies the process that executes a run, so that a run left
// "running" by a process that died (kill -9, a crash, a power cut) can be
// told from one still going on.
type RunOwner struct {
	Host string `json:"host"`
	PID  int    `json:"pid"`
	// PIDNamespace tells processes of different containers on one host
	// apart ("" where there are none).
	PIDNamespace string `json:"pid_namespace,omitempty"`
	// Start identifies the process's start (on Linux the boot id and the
	// start time since boot), so that a reused pid is not taken for the
	// owner; "" where unknown.
	Start string `json:"start,omitempty"`
}

// orphanedMessage is the error recorded on a run whose process exited
// without finishing it.
const orphanedMessage = "process exited without finishing the run"

// CurrentOwner describes this process.
func CurrentOwner() *RunOwner {
	host, _ := os.Hostname()
	pid := os.Getpid()
	return &RunOwner{Host: host, PID: pid, PIDNamespace: pidNamespace(), Start: processStart(pid)}
}

// pidNamespace is this process's pid namespace ("" where unknown).
func pidNamespace() string {
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return ns
}

// processStart identifies when process pid started ("" when it does not
// exist or this system does not say): the boot id and the start time in
// clock ticks since boot, from /proc.
func processStart(pid int) string {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields after it follow the last ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	// Field 22 (starttime) is the 20th after the command name.
	if len(f) < 20 {
		return ""
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(boot)) + "/" + f[19]
}

// ownerGone reports whether o was a process of this host (and pid
// namespace) that no longer runs. It is false when that cannot be told
// (another host, another container, no owner recorded).
func ownerGone(o *RunOwner, self *RunOwner) bool {
	if o == nil || o.PID <= 0 || o.Host == "" || o.Host != self.Host || o.PIDNamespace != self.PIDNamespace {
		return false
	}
	if o.PID == self.PID && o.Start == self.Start {
		return false
	}
	if self.Start == "" {
		// No /proc: only a process that does not exist at all is gone.
		return !processExists(o.PID)
	}
	if o.Start == "" {
		return false
	}
	if bootID, _, _ := strings.Cut(o.Start, "/"); !strings.HasPrefix(self.Start, bootID+"/") {
		return true // the host rebooted since
	}
	return processStart(o.PID) != o.Start // gone, or the pid reused
}

// RunningLister is implemented by run stores that can list the runs still
// recorded as running (ReapRuns uses it; otherwise it looks at the newest
// runs).
type RunningLister interface {
	RunningRuns(ctx context.Context) ([]*RunRecord, error)
}

// ReapRuns marks as failed the runs recorded as running whose owner was a
// process of this host that no longer exists ("process exited without
// finishing the run"): a kill -9 or a crash leaves them so. It returns how
// many it marked. Runs of other hosts are left alone.
func ReapRuns(ctx context.Context, runs RunStore, log *slog.Logger) (int, error) {
	if runs == nil {
		return 0, nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var list []*RunRecord
	var err error
	if rl, ok := runs.(RunningLister); ok {
		list, err = rl.RunningRuns(ctx)
	} else {
		list, err = runs.ListRuns(ctx, 1000)
	}
	if err != nil {
		return 0, fmt.Errorf("looking for orphaned runs: %w", err)
	}
	self := CurrentOwner()
	n := 0
	for _, r := range list {
		if r.Status != StatusRunning || !ownerGone(r.Owner, self) {
			continue
		}
		r.Status = StatusFailed
		r.Error = orphanedMessage
		if r.Finished.IsZero() {
			r.Finished = time.Now().UTC()
		}
		if err := runs.UpdateRun(ctx, r); err != nil {
			return n, fmt.Errorf("marking run %s failed: %w", r.ID, err)
		}
		log.Warn("pipeline run marked failed: its process exited without finishing it", "run", r.ID, "pid", r.Owner.PID)
		n++
	}
	return n, nil
}
