package httpapi

import (
	"errors"
	"net/http"

	"github.com/kilnai/kiln/internal/batching"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/serving"
	"github.com/kilnai/kiln/internal/tensor"
)

// errTooLarge marks a body over the size limit (413).
var errTooLarge = errors.New("request too large")

// statusOf maps an error from any layer to an HTTP status and the message
// the client sees. This is the only place errors become status codes.
func statusOf(err error) (int, string) {
	msg := err.Error()
	switch {
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge, msg
	case errors.Is(err, ErrBadRequest), errors.Is(err, inference.ErrInvalidInput),
		errors.Is(err, tensor.ErrInvalid), errors.Is(err, tensor.ErrTooLarge):
		return http.StatusBadRequest, msg
	case errors.Is(err, serving.ErrModelNotFound), errors.Is(err, inference.ErrNotFound):
		return http.StatusNotFound, msg
	case errors.Is(err, batching.ErrQueueFull):
		return http.StatusServiceUnavailable, msg
	case errors.Is(err, batching.ErrDeadline):
		return http.StatusGatewayTimeout, msg
	case errors.Is(err, batching.ErrCanceled):
		return http.StatusBadRequest, msg
	case errors.Is(err, serving.ErrModelNotReady), errors.Is(err, inference.ErrUnavailable), errors.Is(err, inference.ErrClosed):
		return http.StatusServiceUnavailable, msg
	case errors.Is(err, inference.ErrUnsupported):
		return http.StatusNotImplemented, msg
	default:
		return http.StatusInternalServerError, msg
	}
}
