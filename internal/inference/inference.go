// Package inference defines what Kiln needs from a model runtime: a Backend
// that loads a model version from files, and a Model that runs inference on
// named tensors. Implementations live in sub-packages (onnx, ...); the
// conformance suite every implementation passes is in inferencetest.
//
// This package imports no HTTP and no implementation package.
package inference

import (
	"context"
	"errors"

	"github.com/kilnai/kiln/internal/tensor"
)

// Sentinel errors. Callers test them with errors.Is; the API edge maps them
// to protocol status codes.
var (
	// ErrInvalidInput: the request does not fit the model (names, types, shapes, data).
	ErrInvalidInput = errors.New("invalid input")
	// ErrNotFound: unknown model, version or tensor.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: the model exists but cannot serve now (not loaded, failed, closed).
	ErrUnavailable = errors.New("unavailable")
	// ErrUnsupported: a feature the backend cannot provide (a datatype, a model shape).
	ErrUnsupported = errors.New("unsupported")
	// ErrClosed: the model was closed.
	ErrClosed = errors.New("model closed")
)

// TensorSpec describes one model input or output. Shape is the full shape
// as the model sees it, including the batch dimension when the model
// batches; -1 marks a variable dimension.
type TensorSpec struct {
	Name     string
	DataType tensor.DataType
	Shape    tensor.Shape
}

// Metadata is what a loaded model reports about itself.
type Metadata struct {
	// Platform is the OIP platform string, e.g. "onnxruntime_onnx".
	Platform string
	Inputs   []TensorSpec
	Outputs  []TensorSpec
	// BatchDim reports whether dimension 0 of every input and output is a
	// variable batch dimension, so requests may be concatenated along it.
	BatchDim bool
}

// LoadSpec tells a Backend what to load.
type LoadSpec struct {
	// Name and Version identify the model version (for messages and metrics).
	Name    string
	Version int64
	// Path is the model file (e.g. .../1/model.onnx).
	Path string
	// Inputs and Outputs, when set, are the configured tensors; backends
	// check them against the model file and may use them to fill gaps.
	Inputs  []TensorSpec
	Outputs []TensorSpec
	// Parameters are backend knobs from the model config
	// (intra_op_threads, inter_op_threads, graph_optimization_level, ...).
	Parameters map[string]string
}

// Backend loads models of one framework.
type Backend interface {
	// Name is the config value that selects the backend ("onnx").
	Name() string
	// Load opens a model version. It fails with a wrapped error naming the
	// reason; ErrUnavailable when the runtime itself is missing.
	Load(ctx context.Context, spec LoadSpec) (Model, error)
}

// Model is a loaded model version (one session). Infer must be safe for
// concurrent use. After Close, Infer returns ErrClosed.
type Model interface {
	Metadata() Metadata
	// Infer runs the model on inputs (one per model input, any order) and
	// returns the requested outputs in the order asked, or every output
	// in metadata order when outputs is empty. Inputs are validated
	// against the metadata; mismatches are ErrInvalidInput.
	Infer(ctx context.Context, inputs []tensor.Tensor, outputs []string) ([]tensor.Tensor, error)
	Close() error
}
