package pipeline

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// RunningRuns makes memRuns a RunningLister.
func (m *memRuns) RunningRuns(context.Context) ([]*RunRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*RunRecord
	for _, r := range m.runs {
		if r.Status == StatusRunning {
			out = append(out, &r)
		}
	}
	return out, nil
}

// TestRunOwner: a run records its process as the owner; a new Service
// (kiln serve starting) marks the runs of dead processes of this host
// failed and leaves its own alone.
func TestRunOwner(t *testing.T) {
	self := CurrentOwner()
	if self.Host == "" || self.PID != os.Getpid() {
		t.Fatalf("CurrentOwner = %+v", self)
	}
	if _, err := os.Stat("/proc/self/stat"); err == nil && self.Start == "" {
		t.Errorf("CurrentOwner has no start although /proc exists: %+v", self)
	}
	id, _ := newTestState(t)
	runs := &memRuns{}
	rec, err := (&Engine{DataDir: t.TempDir(), Runs: runs}).Run(context.Background(), mustParse(t, fmt.Sprintf(
		"source: {test_mem: {state: %[1]s}}\nsinks: [{test_sink: {state: %[1]s, id: a}}]\n", id)), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := runs.GetRun(context.Background(), rec.ID)
	if stored.Owner == nil || *stored.Owner != *self {
		t.Errorf("owner %+v, want %+v", stored.Owner, self)
	}

	boot, _, _ := strings.Cut(self.Start, "/")
	dead := &RunOwner{Host: self.Host, PID: 1<<22 + 99, PIDNamespace: self.PIDNamespace}
	if self.Start != "" {
		dead.Start = boot + "/99"
	}
	for id, o := range map[string]*RunOwner{"dead": dead, "mine": self} {
		if err := runs.CreateRun(context.Background(), &RunRecord{ID: id, Status: StatusRunning, Started: time.Now(), Owner: o}); err != nil {
			t.Fatal(err)
		}
	}
	svc := NewService(&Engine{DataDir: t.TempDir(), Runs: runs}, nil, 1)
	defer svc.Close(context.Background())
	if r, _ := runs.GetRun(context.Background(), "dead"); r.Status != StatusFailed || r.Error != orphanedMessage {
		t.Errorf("dead owner's run: %s %q", r.Status, r.Error)
	}
	if r, _ := svc.Get(context.Background(), "mine"); r.Status != StatusRunning {
		t.Errorf("this process's run: %s", r.Status)
	}
}

func TestOwnerGone(t *testing.T) {
	self := &RunOwner{Host: "h", PID: os.Getpid(), PIDNamespace: "ns", Start: processStart(os.Getpid())}
	if self.Start == "" {
		t.Skip("no /proc here")
	}
	boot, _, _ := strings.Cut(self.Start, "/")
	cases := []struct {
		name string
		o    *RunOwner
		want bool
	}{
		{"none", nil, false},
		{"this process", &RunOwner{Host: "h", PID: self.PID, PIDNamespace: "ns", Start: self.Start}, false},
		{"no such pid", &RunOwner{Host: "h", PID: 1<<22 + 5, PIDNamespace: "ns", Start: boot + "/5"}, true},
		{"pid reused", &RunOwner{Host: "h", PID: self.PID, PIDNamespace: "ns", Start: boot + "/1"}, true},
		{"before a reboot", &RunOwner{Host: "h", PID: self.PID, PIDNamespace: "ns", Start: "another-boot/1"}, true},
		{"other host", &RunOwner{Host: "g", PID: 1<<22 + 5, PIDNamespace: "ns", Start: boot + "/5"}, false},
		{"other namespace", &RunOwner{Host: "h", PID: 1<<22 + 5, PIDNamespace: "other", Start: boot + "/5"}, false},
		{"start unknown", &RunOwner{Host: "h", PID: 1<<22 + 5, PIDNamespace: "ns"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := ownerGone(c.o, self); got != c.want {
				t.Errorf("ownerGone = %v, want %v", got, c.want)
			}
		})
	}
}
