package httpapi

import (
	"errors"
	"net/http"
)

// Errors of the MLflow-compatible API itself (request shape problems);
// they become MLflow's BAD_REQUEST and INVALID_PARAMETER_VALUE codes.
var (
	errMLflowBadRequest = errors.New("bad request")
	errMLflowInvalid    = errors.New("invalid parameter value")
	// errMLflowAliasNotFound: MLflow answers an unknown alias on get with
	// 400 INVALID_PARAMETER_VALUE, not 404.
	errMLflowAliasNotFound = errors.New("alias not found")
)

// mlflowErrorBody is MLflow's error JSON.
type mlflowErrorBody struct {
	ErrorCode string `json:"error_code"`
	Message   string `json:"message"`
}

func writeMLflowError(w http.ResponseWriter, code int, errorCode, msg string) {
	writeJSON(w, code, mlflowErrorBody{ErrorCode: errorCode, Message: msg})
}
