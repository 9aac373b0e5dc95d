package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/kilnai/kiln/internal/pipeline"
)

// Pipelines is what the pipeline API needs (a *pipeline.Service).
type Pipelines interface {
	Submit(ctx context.Context, name string, spec []byte, noCache, wait bool) (*pipeline.RunRecord, error)
	Get(ctx context.Context, id string) (*pipeline.RunRecord, error)
	List(ctx context.Context, limit int) ([]*pipeline.RunRecord, error)
	Cancel(id string) error
}

// maxSpecSize bounds a submitted pipeline spec.
const maxSpecSize = 1 << 20

func (s *Server) registerPipelines(route func(pattern, name string, h http.HandlerFunc)) {
	if s.opts.Pipelines == nil {
		return
	}
	route("POST /api/v1/pipelines/runs", "pipeline_submit", s.pipelineSubmit)
	route("GET /api/v1/pipelines/runs", "pipeline_list", s.pipelineList)
	route("GET /api/v1/pipelines/runs/{id}", "pipeline_get", s.pipelineGet)
	route("POST /api/v1/pipelines/runs/{id}/cancel", "pipeline_cancel", s.pipelineCancel)
}

// pipelineStatus maps pipeline errors to HTTP statuses.
func pipelineStatus(err error) int {
	switch {
	case errors.Is(err, pipeline.ErrInvalidSpec), errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, pipeline.ErrRunNotFound):
		return http.StatusNotFound
	case errors.Is(err, pipeline.ErrNotRunning):
		return http.StatusConflict
	case errors.Is(err, pipeline.ErrBusy):
		return http.StatusTooManyRequests
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	default:
		return http.StatusInternalServerError
	}
}

func (s *Server) pipelineFail(w http.ResponseWriter, err error) {
	code := pipelineStatus(err)
	if code == http.StatusInternalServerError {
		s.log.Error("pipeline API", "err", err)
	}
	writeError(w, code, err.Error())
}

// pipelineSubmit takes the spec as the body (YAML), or JSON
// {"spec": "...", "no_cache": bool}; ?wait=true waits for the run's end.
func (s *Server) pipelineSubmit(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxSpecSize+1))
	if err != nil {
		s.pipelineFail(w, fmt.Errorf("%w: reading the body: %v", ErrBadRequest, err))
		return
	}
	if len(body) > maxSpecSize {
		s.pipelineFail(w, fmt.Errorf("%w: pipeline spec over %d bytes", errTooLarge, maxSpecSize))
		return
	}
	q := r.URL.Query()
	wait, err := boolParam(q.Get("wait"))
	if err != nil {
		s.pipelineFail(w, err)
		return
	}
	noCache, err := boolParam(q.Get("no_cache"))
	if err != nil {
		s.pipelineFail(w, err)
		return
	}
	spec := body
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var req struct {
			Spec    string `json:"spec"`
			NoCache bool   `json:"no_cache"`
		}
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			s.pipelineFail(w, fmt.Errorf("%w: JSON body must be {\"spec\": \"...\", \"no_cache\": false}: %v", ErrBadRequest, err))
			return
		}
		spec, noCache = []byte(req.Spec), noCache || req.NoCache
	}
	if len(strings.TrimSpace(string(spec))) == 0 {
		s.pipelineFail(w, fmt.Errorf("%w: empty pipeline spec", ErrBadRequest))
		return
	}
	rec, err := s.opts.Pipelines.Submit(r.Context(), "request", spec, noCache, wait)
	if err != nil {
		s.pipelineFail(w, err)
		return
	}
	code := http.StatusAccepted
	if wait {
		code = http.StatusOK
	}
	writeJSON(w, code, rec)
}

func boolParam(v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: %q is not a boolean", ErrBadRequest, v)
	}
	return b, nil
}

func (s *Server) pipelineList(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 1000 {
			s.pipelineFail(w, fmt.Errorf("%w: limit must be between 1 and 1000", ErrBadRequest))
			return
		}
		limit = n
	}
	runs, err := s.opts.Pipelines.List(r.Context(), limit)
	if err != nil {
		s.pipelineFail(w, err)
		return
	}
	if runs == nil {
		runs = []*pipeline.RunRecord{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"runs": runs})
}

func (s *Server) pipelineGet(w http.ResponseWriter, r *http.Request) {
	rec, err := s.opts.Pipelines.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		s.pipelineFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (s *Server) pipelineCancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.opts.Pipelines.Cancel(id); err != nil {
		if errors.Is(err, pipeline.ErrNotRunning) {
			if _, gerr := s.opts.Pipelines.Get(r.Context(), id); gerr != nil {
				s.pipelineFail(w, gerr)
				return
			}
		}
		s.pipelineFail(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"id": id, "status": "cancelling"})
}
