package runstore

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/internal/pipeline"
)

// TestReapRuns: runs left "running" by a process of this host that no
// longer exists (a fake dead pid, a reused pid) are marked failed; runs of
// live processes, of other hosts, without an owner or already finished
// are left alone.
func TestReapRuns(t *testing.T) {
	for name, open := range map[string]func(*testing.T) *Store{"sqlite": openSQLite, "postgres": openPostgres} {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			self := pipeline.CurrentOwner()
			if self.Host == "" {
				t.Skip("no host name")
			}
			boot, _, _ := strings.Cut(self.Start, "/")
			// Beyond the largest pid_max (2^22): no process has it.
			dead := &pipeline.RunOwner{Host: self.Host, PID: 1<<22 + 12345, PIDNamespace: self.PIDNamespace, Start: boot + "/12345"}
			if self.Start == "" {
				dead.Start = ""
			}
			reused := *self
			reused.Start = boot + "/1" // this pid, but a process started at boot
			other := *dead
			other.Host = self.Host + "-elsewhere"
			otherNS := *dead
			otherNS.PIDNamespace = "pid:[1]"
			cases := []struct {
				id, status string
				owner      *pipeline.RunOwner
				wantFailed bool
			}{
				{"dead", pipeline.StatusRunning, dead, true},
				{"reused", pipeline.StatusRunning, &reused, self.Start != ""},
				{"alive", pipeline.StatusRunning, self, false},
				{"other-host", pipeline.StatusRunning, &other, false},
				{"other-namespace", pipeline.StatusRunning, &otherNS, self.PIDNamespace == "pid:[1]"},
				{"no-owner", pipeline.StatusRunning, nil, false},
				{"finished", pipeline.StatusSucceeded, dead, false},
			}
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			for i, c := range cases {
				r := &pipeline.RunRecord{ID: c.id, Pipeline: "p", SpecDigest: "d", Status: c.status, Started: start.Add(time.Duration(i) * time.Second), Owner: c.owner}
				if err := s.CreateRun(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			n, err := pipeline.ReapRuns(ctx, s, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			for _, c := range cases {
				got, err := s.GetRun(ctx, c.id)
				if err != nil {
					t.Fatal(err)
				}
				if c.wantFailed {
					want++
					if got.Status != pipeline.StatusFailed || got.Error != "process exited without finishing the run" || got.Finished.IsZero() {
						t.Errorf("%s: status %s, error %q, finished %v; want failed", c.id, got.Status, got.Error, got.Finished)
					}
				} else if got.Status != c.status {
					t.Errorf("%s: status %s, want %s", c.id, got.Status, c.status)
				}
				if (c.owner == nil) != (got.Owner == nil) || c.owner != nil && *got.Owner != *c.owner {
					t.Errorf("%s: owner %+v, want %+v", c.id, got.Owner, c.owner)
				}
			}
			if n != want {
				t.Errorf("ReapRuns marked %d runs, want %d", n, want)
			}
			// Nothing left to mark.
			if n, err := pipeline.ReapRuns(ctx, s, nil); err != nil || n != 0 {
				t.Errorf("second ReapRuns: %d, %v", n, err)
			}
		})
	}
}
