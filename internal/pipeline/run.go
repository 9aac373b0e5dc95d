package pipeline

import (
	"context"
	"errors"
	"time"
)

// Run statuses.
const (
	StatusRunning   = "running"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
	StatusCached    = "cached"
)

// ErrRunNotFound is returned by a RunStore for an unknown run id.
var ErrRunNotFound = errors.New("pipeline run not found")

// StageStats are one stage's counters in a run.
type StageStats struct {
	// Stage is "source", "transforms[i].NAME", "sinks[i].NAME" or
	// "on_error.NAME".
	Stage        string `json:"stage"`
	Component    string `json:"component"`
	RowsIn       int64  `json:"rows_in"`
	RowsOut      int64  `json:"rows_out"`
	RowsRejected int64  `json:"rows_rejected"`
	Batches      int64  `json:"batches"`
	// Bytes is the Arrow buffer size of what the stage produced (source,
	// transforms) or was given (sinks).
	Bytes int64 `json:"bytes"`
	// Duration is the time spent inside the stage's calls (summed over
	// parallel workers).
	Duration time.Duration `json:"duration_ns"`
}

// Add adds o's counters and duration to s (merging passes of one run, or
// the tasks of a distributed run).
func (s *StageStats) Add(o StageStats) {
	s.RowsIn += o.RowsIn
	s.RowsOut += o.RowsOut
	s.RowsRejected += o.RowsRejected
	s.Batches += o.Batches
	s.Bytes += o.Bytes
	s.Duration += o.Duration
}

// ModelRef names a model version a run fed.
type ModelRef struct {
	Model   string `json:"model"`
	Version string `json:"version"`
}

// RunRecord is what is kept of a run.
type RunRecord struct {
	ID         string        `json:"id"`
	Pipeline   string        `json:"pipeline"`
	SpecDigest string        `json:"spec_digest"`
	Status     string        `json:"status"`
	Error      string        `json:"error,omitempty"`
	Started    time.Time     `json:"started"`
	Finished   time.Time     `json:"finished,omitzero"`
	Duration   time.Duration `json:"duration_ns"`
	RowsIn     int64         `json:"rows_in"`
	RowsOut    int64         `json:"rows_out"`
	// RowsRejected counts rows rejected by any stage.
	RowsRejected int64        `json:"rows_rejected"`
	Stages       []StageStats `json:"stages"`
	// Params are the fitted parameters by stage ("transforms[2].standardize").
	Params map[string]map[string]any `json:"params,omitempty"`
	// Lineage lists the model versions the run fed.
	Lineage []ModelRef `json:"lineage,omitempty"`
	// CacheKey is the result-cache key ("" when the run was not cacheable).
	CacheKey string `json:"cache_key,omitempty"`
	// Owner is the process executing the run (nil in records made before
	// owners were recorded).
	Owner *RunOwner `json:"owner,omitempty"`
}

// RunStore keeps run records (internal/pipeline/runstore implements it on
// SQLite and PostgreSQL).
type RunStore interface {
	CreateRun(ctx context.Context, r *RunRecord) error
	UpdateRun(ctx context.Context, r *RunRecord) error
	GetRun(ctx context.Context, id string) (*RunRecord, error)
	// ListRuns returns the newest runs first, at most limit of them.
	ListRuns(ctx context.Context, limit int) ([]*RunRecord, error)
}
