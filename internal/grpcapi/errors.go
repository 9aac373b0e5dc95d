package grpcapi

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln/internal/batching"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/serving"
	"github.com/kilnai/kiln/internal/tensor"
)

// errBadOutput marks an output tensor that the model produced malformed
// (a backend bug, not the client's fault).
var errBadOutput = errors.New("invalid output from the model")

// codeOf maps an error from any layer to the gRPC status code the client
// sees. This is the only place errors become codes. A per-client quota
// (when one exists) belongs here as RESOURCE_EXHAUSTED.
func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, inference.ErrInvalidInput), errors.Is(err, tensor.ErrInvalid),
		errors.Is(err, tensor.ErrTooLarge), errors.Is(err, batching.ErrTooLarge), errors.Is(err, batching.ErrInvalid):
		return codes.InvalidArgument
	case errors.Is(err, serving.ErrModelNotFound), errors.Is(err, inference.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, batching.ErrDeadline), errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, batching.ErrCanceled), errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, serving.ErrModelNotReady), errors.Is(err, inference.ErrUnavailable),
		errors.Is(err, inference.ErrClosed), errors.Is(err, batching.ErrClosed), errors.Is(err, batching.ErrQueueFull):
		return codes.Unavailable
	case errors.Is(err, inference.ErrUnsupported):
		return codes.Unimplemented
	default:
		return codes.Internal
	}
}

// fail logs err and returns it as a gRPC status error.
func (s *Server) fail(method string, err error) error {
	code := codeOf(err)
	if code == codes.Internal {
		s.log.Error("grpc request failed", "method", method, "code", code.String(), "err", err)
	} else {
		s.log.Debug("grpc request rejected", "method", method, "code", code.String(), "err", err)
	}
	return status.Error(code, err.Error())
}
