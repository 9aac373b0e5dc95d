package httpapi

import (
	"errors"
	"net/http"

	"github.com/kilnai/kiln/internal/artifact"
	"github.com/kilnai/kiln/internal/registry"
)

// registryError is the native registry API's error body.
type registryError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		// Gates holds every rule's outcome when a promotion gate failed.
		Gates []registry.GateResult `json:"gates,omitempty"`
	} `json:"error"`
}

// registryStatusOf maps errors of the registry, the artifact store and
// request parsing to an HTTP status and a stable code. This is the one
// place where registry errors become statuses; mlflowStatusOf derives
// MLflow's codes from it.
func registryStatusOf(err error) (int, string) {
	switch {
	case errors.Is(err, errTooLarge), errors.Is(err, artifact.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "TOO_LARGE"
	case errors.Is(err, artifact.ErrCorrupt):
		return http.StatusInternalServerError, "DATA_LOSS"
	case errors.Is(err, errInUse):
		return http.StatusConflict, "CONFLICT"
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, artifact.ErrNotFound):
		return http.StatusNotFound, "NOT_FOUND"
	case errors.Is(err, registry.ErrAlreadyExists):
		return http.StatusConflict, "ALREADY_EXISTS"
	case errors.Is(err, registry.ErrPreconditionFailed):
		return http.StatusPreconditionFailed, "PRECONDITION_FAILED"
	case errors.Is(err, registry.ErrConflict):
		return http.StatusConflict, "CONFLICT"
	case errors.Is(err, registry.ErrInvalid), errors.Is(err, ErrBadRequest), errors.Is(err, errMLflowBadRequest),
		errors.Is(err, errMLflowInvalid), errors.Is(err, artifact.ErrInvalid), errors.Is(err, artifact.ErrDigestMismatch), errors.Is(err, artifact.ErrIncomplete):
		return http.StatusBadRequest, "INVALID_ARGUMENT"
	default:
		return http.StatusInternalServerError, "INTERNAL"
	}
}

func (s *Server) registryFail(w http.ResponseWriter, r *http.Request, err error) {
	code, name := registryStatusOf(err)
	if code >= 500 {
		s.log.Error("registry request failed", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	} else {
		s.log.Debug("registry request rejected", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	}
	var body registryError
	body.Error.Code = name
	body.Error.Message = err.Error()
	if g, ok := registry.IsGateError(err); ok {
		body.Error.Gates = g.Results
	}
	writeJSON(w, code, body)
}
