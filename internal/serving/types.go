package serving

import (
	"context"
	"errors"
	"time"

	"github.com/kilnai/kiln/internal/catalog"
	"github.com/kilnai/kiln/internal/tensor"
)

// State is the lifecycle state of a model version.
type State string

// Version states.
const (
	StateLoading     State = "LOADING"
	StateReady       State = "READY"
	StateUnavailable State = "UNAVAILABLE"
	StateUnloading   State = "UNLOADING"
)

// Errors returned by the manager (in addition to inference's sentinels,
// which pass through wrapped).
var (
	// ErrModelNotFound: no such model, or no such version of it.
	ErrModelNotFound = errors.New("model not found")
	// ErrModelNotReady: the model or version exists but is not READY.
	ErrModelNotReady = errors.New("model not ready")
)

// Catalog is where the manager learns which models exist.
type Catalog interface {
	List(ctx context.Context) ([]string, error)
	Get(ctx context.Context, name string) (*catalog.Model, error)
}

// Request is one inference request.
type Request struct {
	ID string
	// Inputs, one per model input, in any order.
	Inputs []tensor.Tensor
	// Outputs to return, by name; empty means all, in model order.
	Outputs []string
	// Priority level (1 is highest; 0 means the model's default).
	Priority int
	// Timeout bounds the time the request may wait in the queue
	// (0: the model's default timeout). ctx's deadline also applies.
	Timeout time.Duration
}

// Response is the result of a request.
type Response struct {
	Model   string
	Version int64
	Outputs []tensor.Tensor
}

// IndexEntry is one row of the repository index.
type IndexEntry struct {
	Name    string
	Version string
	State   State
	Reason  string
}
