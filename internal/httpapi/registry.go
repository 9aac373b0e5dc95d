package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kilnai/kiln/internal/artifact"
	"github.com/kilnai/kiln/internal/registry"
)

// Registry is what the registry APIs need from the registry (a
// *registry.Service).
type Registry interface {
	CreateModel(ctx context.Context, actor string, in registry.CreateModelInput) (registry.RegisteredModel, error)
	GetModel(ctx context.Context, name string) (registry.RegisteredModel, error)
	UpdateModel(ctx context.Context, actor, name string, upd registry.ModelUpdate) (registry.RegisteredModel, error)
	RenameModel(ctx context.Context, actor, from, to string) (registry.RegisteredModel, error)
	DeleteModel(ctx context.Context, actor, name string) error
	SearchModels(ctx context.Context, q registry.SearchQuery) (registry.ModelPage, error)
	SearchVersions(ctx context.Context, q registry.SearchQuery) (registry.VersionPage, error)
	CreateVersion(ctx context.Context, actor string, in registry.CreateVersionInput) (registry.ModelVersion, bool, error)
	GetVersion(ctx context.Context, model string, version int64) (registry.ModelVersion, error)
	UpdateVersion(ctx context.Context, actor, model string, version int64, upd registry.VersionUpdate) (registry.ModelVersion, error)
	DeleteVersion(ctx context.Context, actor, model string, version int64) error
	LatestVersions(ctx context.Context, model string, stages []registry.Stage) ([]registry.ModelVersion, error)
	SetAlias(ctx context.Context, actor string, in registry.SetAliasInput) (registry.Alias, error)
	VersionByAlias(ctx context.Context, model, alias string) (registry.ModelVersion, error)
	DeleteAlias(ctx context.Context, actor string, in registry.DeleteAliasInput) error
	Transition(ctx context.Context, actor string, in registry.TransitionInput) (registry.TransitionResult, error)
	Compare(ctx context.Context, model string, a, b int64) (registry.Comparison, error)
	History(ctx context.Context, model string, q registry.HistoryQuery) ([]registry.Transition, error)
	StageAt(ctx context.Context, model string, stage registry.Stage, at time.Time) ([]int64, error)
	AliasHistory(ctx context.Context, model string, q registry.HistoryQuery) ([]registry.AliasEvent, error)
	AliasAt(ctx context.Context, model, alias string, at time.Time) (int64, error)
}

var _ Registry = (*registry.Service)(nil)

// registryRoutes lists the native registry API; a test checks that each
// one is documented in api/openapi.yaml.
func (s *Server) registryRoutes() []struct {
	pattern, name string
	h             http.HandlerFunc
} {
	return []struct {
		pattern, name string
		h             http.HandlerFunc
	}{
		{"PUT /api/v1/artifacts", "registry_artifact_upload", s.uploadArtifact},
		{"GET /api/v1/artifacts/{digest}", "registry_artifact_download", s.downloadArtifact},
		{"POST /api/v1/models", "registry_model_create", s.regCreateModel},
		{"GET /api/v1/models", "registry_model_list", s.regListModels},
		{"GET /api/v1/models/{model}", "registry_model_get", s.regGetModel},
		{"PATCH /api/v1/models/{model}", "registry_model_update", s.regUpdateModel},
		{"DELETE /api/v1/models/{model}", "registry_model_delete", s.regDeleteModel},
		{"POST /api/v1/models/{model}/versions", "registry_version_create", s.regCreateVersion},
		{"GET /api/v1/models/{model}/versions", "registry_version_list", s.regListVersions},
		{"GET /api/v1/versions", "registry_version_search", s.regSearchVersions},
		{"GET /api/v1/models/{model}/versions/{version}", "registry_version_get", s.regGetVersion},
		{"PATCH /api/v1/models/{model}/versions/{version}", "registry_version_update", s.regUpdateVersion},
		{"DELETE /api/v1/models/{model}/versions/{version}", "registry_version_delete", s.regDeleteVersion},
		{"GET /api/v1/models/{model}/versions/{version}/artifact", "registry_version_artifact", s.regVersionArtifact},
		{"POST /api/v1/models/{model}/versions/{version}/transition", "registry_version_transition", s.regTransition},
		{"GET /api/v1/models/{model}/versions/{version}/datasets", "registry_version_datasets", s.regVersionDatasets},
		{"PUT /api/v1/models/{model}/aliases/{alias}", "registry_alias_set", s.regSetAlias},
		{"GET /api/v1/models/{model}/aliases/{alias}", "registry_alias_get", s.regGetAlias},
		{"DELETE /api/v1/models/{model}/aliases/{alias}", "registry_alias_delete", s.regDeleteAlias},
		{"GET /api/v1/models/{model}/compare", "registry_compare", s.regCompare},
		{"GET /api/v1/models/{model}/history", "registry_history", s.regHistory},
		{"GET /api/v1/models/{model}/aliases/{alias}/history", "registry_alias_history", s.regAliasHistory},
	}
}

func (s *Server) registerRegistry(route func(pattern, name string, h http.HandlerFunc)) {
	if s.opts.Registry == nil || s.opts.Artifacts == nil {
		return
	}
	for _, r := range s.registryRoutes() {
		route(r.pattern, r.name, r.h)
	}
	s.registerMLflow(route)
}

// actor is who makes a change: the Actor seam of Options, or the
// X-Kiln-Actor header, or "anonymous" (authentication replaces this).
func (s *Server) actor(r *http.Request) string {
	if s.opts.Actor != nil {
		return s.opts.Actor(r)
	}
	if a := strings.TrimSpace(r.Header.Get("X-Kiln-Actor")); a != "" {
		return a
	}
	return "anonymous"
}

// errInUse marks a delete refused because the version is aliased or
// served (409 rather than the 412 of a failed gate).
var errInUse = errors.New("in use")

// inUse marks err (a refused delete) with errInUse, keeping its message.
func inUse(err error) error { return &markedError{err: err, mark: errInUse} }

// markedError is err with an extra sentinel for errors.Is and the same
// message.
type markedError struct {
	err, mark error
}

func (e *markedError) Error() string   { return e.err.Error() }
func (e *markedError) Unwrap() []error { return []error{e.mark, e.err} }

// decodeRegistryJSON decodes a required, strict JSON body of at most 1 MiB.
func decodeRegistryJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil {
		return fmt.Errorf("%w: reading body: %w", ErrBadRequest, err)
	}
	if len(body) > 1<<20 {
		return fmt.Errorf("%w: JSON body over 1 MiB", errTooLarge)
	}
	return decodeStrictJSON(body, v)
}

func decodeStrictJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return fmt.Errorf("%w: a JSON body is required", ErrBadRequest)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: malformed JSON body: %w", ErrBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: malformed JSON body: trailing data", ErrBadRequest)
	}
	return nil
}

func versionParam(r *http.Request) (int64, error) {
	raw := r.PathValue("version")
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%w: version %q is not a positive integer", ErrBadRequest, raw)
	}
	return n, nil
}

func searchQuery(r *http.Request) (registry.SearchQuery, error) {
	q := r.URL.Query()
	sq := registry.SearchQuery{Filter: q.Get("filter"), OrderBy: q["order_by"], PageToken: q.Get("page_token")}
	if raw := q.Get("max_results"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n <= 0 {
			return sq, fmt.Errorf("%w: max_results %q is not a positive integer", ErrBadRequest, raw)
		}
		sq.MaxResults = n
	}
	return sq, nil
}

func (s *Server) regCreateModel(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name        string              `json:"name"`
		Description string              `json:"description"`
		Tags        map[string]string   `json:"tags"`
		Gates       map[string][]string `json:"gates"`
	}
	if err := decodeRegistryJSON(r, &in); err != nil {
		s.registryFail(w, r, err)
		return
	}
	gates, err := parseGateMap(in.Gates)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	m, err := s.opts.Registry.CreateModel(r.Context(), s.actor(r), registry.CreateModelInput{Name: in.Name, Description: in.Description, Tags: in.Tags, Gates: gates})
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toModelView(m))
}

func parseGateMap(in map[string][]string) (map[registry.Stage][]string, error) {
	if in == nil {
		return nil, nil
	}
	out := make(map[registry.Stage][]string, len(in))
	for k, rules := range in {
		st, err := registry.ParseStage(k)
		if err != nil {
			return nil, fmt.Errorf("gates: %w", err)
		}
		out[st] = rules
	}
	return out, nil
}

func (s *Server) regListModels(w http.ResponseWriter, r *http.Request) {
	q, err := searchQuery(r)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	page, err := s.opts.Registry.SearchModels(r.Context(), q)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	out := make([]modelView, len(page.Models))
	for i, m := range page.Models {
		out[i] = toModelView(m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": out, "next_page_token": page.NextPageToken})
}

func (s *Server) regGetModel(w http.ResponseWriter, r *http.Request) {
	m, err := s.opts.Registry.GetModel(r.Context(), r.PathValue("model"))
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toModelView(m))
}

type updateBody struct {
	Description *string             `json:"description"`
	SetTags     map[string]string   `json:"set_tags"`
	DeleteTags  []string            `json:"delete_tags"`
	Gates       map[string][]string `json:"gates"`
	NewName     string              `json:"new_name"`
}

func (s *Server) regUpdateModel(w http.ResponseWriter, r *http.Request) {
	var in updateBody
	if err := decodeRegistryJSON(r, &in); err != nil {
		s.registryFail(w, r, err)
		return
	}
	gates, err := parseGateMap(in.Gates)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	ctx, name, actor := r.Context(), r.PathValue("model"), s.actor(r)
	m, err := s.opts.Registry.UpdateModel(ctx, actor, name, registry.ModelUpdate{Description: in.Description, SetTags: in.SetTags, DeleteTags: in.DeleteTags, Gates: gates})
	if err == nil && in.NewName != "" && in.NewName != name {
		m, err = s.opts.Registry.RenameModel(ctx, actor, name, in.NewName)
	}
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toModelView(m))
}

func (s *Server) regDeleteModel(w http.ResponseWriter, r *http.Request) {
	if err := s.opts.Registry.DeleteModel(r.Context(), s.actor(r), r.PathValue("model")); err != nil {
		if errors.Is(err, registry.ErrPreconditionFailed) {
			err = inUse(err)
		}
		s.registryFail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// createVersionBody is the JSON of a new version (also the metadata part
// of a multipart upload-and-register).
type createVersionBody struct {
	Artifact struct {
		Digest string `json:"digest"`
		Format string `json:"format"`
	} `json:"artifact"`
	Description string                     `json:"description"`
	Metrics     map[string]registry.Metric `json:"metrics"`
	Params      map[string]string          `json:"params"`
	Tags        map[string]string          `json:"tags"`
	Signature   registry.Signature         `json:"signature"`
	Lineage     registry.Lineage           `json:"lineage"`
	Source      string                     `json:"source"`
	RunID       string                     `json:"run_id"`
	RunLink     string                     `json:"run_link"`
}

// regCreateVersion registers a version: a JSON body naming an uploaded
// artifact, or multipart/form-data with a "metadata" JSON part followed by
// an "artifact" (file) or "artifact_tar" (directory) part.
func (s *Server) regCreateVersion(w http.ResponseWriter, r *http.Request) {
	ctx, model := r.Context(), r.PathValue("model")
	var body createVersionBody
	mediaType, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mediaType == "multipart/form-data" {
		// Fail fast on an unknown model before reading a large upload.
		if _, err := s.opts.Registry.GetModel(ctx, model); err != nil {
			s.registryFail(w, r, err)
			return
		}
		info, err := s.readMultipartVersion(ctx, r, params["boundary"], &body)
		if err != nil {
			s.registryFail(w, r, err)
			return
		}
		body.Artifact.Digest = info.Digest.String()
	} else if err := decodeRegistryJSON(r, &body); err != nil {
		s.registryFail(w, r, err)
		return
	}
	v, created, err := s.createVersion(ctx, r, model, body)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	if !created {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, http.StatusCreated, toVersionView(v))
}

func (s *Server) readMultipartVersion(ctx context.Context, r *http.Request, boundary string, body *createVersionBody) (artifact.Info, error) {
	if boundary == "" {
		return artifact.Info{}, fmt.Errorf("%w: multipart body without a boundary", ErrBadRequest)
	}
	mr := multipart.NewReader(r.Body, boundary)
	gotMeta := false
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return artifact.Info{}, fmt.Errorf("%w: multipart body has no artifact or artifact_tar part", ErrBadRequest)
		}
		if err != nil {
			return artifact.Info{}, fmt.Errorf("%w: multipart body: %w", ErrBadRequest, err)
		}
		switch part.FormName() {
		case "metadata":
			data, err := io.ReadAll(io.LimitReader(part, 1<<20+1))
			if err != nil {
				return artifact.Info{}, fmt.Errorf("%w: metadata part: %w", ErrBadRequest, err)
			}
			if len(data) > 1<<20 {
				return artifact.Info{}, fmt.Errorf("%w: metadata part over 1 MiB", errTooLarge)
			}
			if err := decodeStrictJSON(data, body); err != nil {
				return artifact.Info{}, err
			}
			gotMeta = true
		case "artifact", "artifact_tar":
			if !gotMeta {
				return artifact.Info{}, fmt.Errorf("%w: the metadata part must come before the artifact", ErrBadRequest)
			}
			format := "file"
			if part.FormName() == "artifact_tar" {
				format = "tar"
			}
			info, _, err := s.storeUpload(ctx, r, part, format, body.Artifact.Digest)
			return info, err
		default:
			return artifact.Info{}, fmt.Errorf("%w: unexpected multipart part %q (want metadata, then artifact or artifact_tar)", ErrBadRequest, part.FormName())
		}
	}
}

// createVersion fills the artifact's size and kind from the store (the
// blob must be there) and registers the version.
func (s *Server) createVersion(ctx context.Context, r *http.Request, model string, body createVersionBody) (registry.ModelVersion, bool, error) {
	if body.Artifact.Digest == "" {
		return registry.ModelVersion{}, false, fmt.Errorf("%w: artifact.digest is required (upload with PUT /api/v1/artifacts first)", ErrBadRequest)
	}
	d, err := artifact.ParseDigest(body.Artifact.Digest)
	if err != nil {
		return registry.ModelVersion{}, false, err
	}
	info, err := s.opts.Artifacts.Stat(ctx, d)
	if errors.Is(err, artifact.ErrNotFound) {
		return registry.ModelVersion{}, false, fmt.Errorf("%w: artifact %s is not in the artifact store; upload it first", registry.ErrPreconditionFailed, d)
	}
	if err != nil {
		return registry.ModelVersion{}, false, err
	}
	isDir, err := s.opts.Artifacts.IsManifest(ctx, d)
	if err != nil {
		return registry.ModelVersion{}, false, err
	}
	size := info.Size
	if isDir {
		m, err := s.opts.Artifacts.Manifest(ctx, d)
		if err != nil {
			return registry.ModelVersion{}, false, err
		}
		size = m.TotalSize()
	}
	return s.opts.Registry.CreateVersion(ctx, s.actor(r), registry.CreateVersionInput{
		Model:     model,
		Artifact:  registry.Artifact{Digest: d.String(), Size: size, Format: body.Artifact.Format, Manifest: isDir},
		Signature: body.Signature, Metrics: body.Metrics, Params: body.Params, Tags: body.Tags, Lineage: body.Lineage,
		Source: body.Source, RunID: body.RunID, RunLink: body.RunLink, Description: body.Description,
		IdempotencyKey: r.Header.Get("Idempotency-Key"),
	})
}

func (s *Server) regListVersions(w http.ResponseWriter, r *http.Request) {
	q, err := searchQuery(r)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	model := r.PathValue("model")
	if _, err := s.opts.Registry.GetModel(r.Context(), model); err != nil {
		s.registryFail(w, r, err)
		return
	}
	scope := "name = " + quoteFilterString(model)
	if strings.TrimSpace(q.Filter) != "" {
		q.Filter = scope + " AND (" + q.Filter + ")"
	} else {
		q.Filter = scope
	}
	s.writeVersionPage(w, r, q)
}

func quoteFilterString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (s *Server) regSearchVersions(w http.ResponseWriter, r *http.Request) {
	q, err := searchQuery(r)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	s.writeVersionPage(w, r, q)
}

func (s *Server) writeVersionPage(w http.ResponseWriter, r *http.Request, q registry.SearchQuery) {
	page, err := s.opts.Registry.SearchVersions(r.Context(), q)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"versions": toVersionViews(page.Versions), "next_page_token": page.NextPageToken})
}

func (s *Server) regGetVersion(w http.ResponseWriter, r *http.Request) {
	n, err := versionParam(r)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	v, err := s.opts.Registry.GetVersion(r.Context(), r.PathValue("model"), n)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toVersionView(v))
}

func (s *Server) regUpdateVersion(w http.ResponseWriter, r *http.Request) {
	n, err := versionParam(r)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	var in struct {
		Description *string           `json:"description"`
		SetTags     map[string]string `json:"set_tags"`
		DeleteTags  []string          `json:"delete_tags"`
	}
	if err := decodeRegistryJSON(r, &in); err != nil {
		s.registryFail(w, r, err)
		return
	}
	v, err := s.opts.Registry.UpdateVersion(r.Context(), s.actor(r), r.PathValue("model"), n, registry.VersionUpdate{Description: in.Description, SetTags: in.SetTags, DeleteTags: in.DeleteTags})
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toVersionView(v))
}

func (s *Server) regDeleteVersion(w http.ResponseWriter, r *http.Request) {
	n, err := versionParam(r)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	if err := s.opts.Registry.DeleteVersion(r.Context(), s.actor(r), r.PathValue("model"), n); err != nil {
		if errors.Is(err, registry.ErrPreconditionFailed) {
			err = inUse(err)
		}
		s.registryFail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) regVersionArtifact(w http.ResponseWriter, r *http.Request) {
	n, err := versionParam(r)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	v, err := s.opts.Registry.GetVersion(r.Context(), r.PathValue("model"), n)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	d, err := artifact.ParseDigest(v.Artifact.Digest)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	s.serveArtifact(w, r, d)
}

func (s *Server) regTransition(w http.ResponseWriter, r *http.Request) {
	n, err := versionParam(r)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	var in struct {
		Stage           string   `json:"stage"`
		ArchiveExisting bool     `json:"archive_existing"`
		Gates           []string `json:"gates"`
		SkipStoredGates bool     `json:"skip_stored_gates"`
		Reason          string   `json:"reason"`
	}
	if err := decodeRegistryJSON(r, &in); err != nil {
		s.registryFail(w, r, err)
		return
	}
	st, err := registry.ParseStage(in.Stage)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	res, err := s.opts.Registry.Transition(r.Context(), s.actor(r), registry.TransitionInput{
		Model: r.PathValue("model"), Version: n, To: st, ArchiveExisting: in.ArchiveExisting,
		Gates: in.Gates, SkipStoredGates: in.SkipStoredGates, Reason: in.Reason,
	})
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	out := struct {
		versionView
		Gates       []registry.GateResult `json:"gates"`
		Transitions []transitionView      `json:"transitions"`
	}{versionView: toVersionView(res.Version), Gates: res.Gates, Transitions: make([]transitionView, len(res.Transitions))}
	if out.Gates == nil {
		out.Gates = []registry.GateResult{}
	}
	for i, t := range res.Transitions {
		out.Transitions[i] = toTransitionView(t)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) regSetAlias(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Version         int64  `json:"version"`
		ExpectedVersion *int64 `json:"expected_version"`
		Reason          string `json:"reason"`
	}
	if err := decodeRegistryJSON(r, &in); err != nil {
		s.registryFail(w, r, err)
		return
	}
	ctx, model := r.Context(), r.PathValue("model")
	a, err := s.opts.Registry.SetAlias(ctx, s.actor(r), registry.SetAliasInput{Model: model, Alias: r.PathValue("alias"), Version: in.Version, ExpectedVersion: in.ExpectedVersion, Reason: in.Reason})
	if err != nil {
		if in.ExpectedVersion != nil && errors.Is(err, registry.ErrConflict) {
			err = &markedError{err: err, mark: registry.ErrPreconditionFailed}
		}
		s.registryFail(w, r, err)
		return
	}
	v, err := s.opts.Registry.GetVersion(ctx, model, a.Version)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toVersionView(v))
}

func (s *Server) regGetAlias(w http.ResponseWriter, r *http.Request) {
	v, err := s.opts.Registry.VersionByAlias(r.Context(), r.PathValue("model"), r.PathValue("alias"))
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toVersionView(v))
}

func (s *Server) regDeleteAlias(w http.ResponseWriter, r *http.Request) {
	in := registry.DeleteAliasInput{Model: r.PathValue("model"), Alias: r.PathValue("alias")}
	if raw := r.URL.Query().Get("expected_version"); raw != "" {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			s.registryFail(w, r, fmt.Errorf("%w: expected_version %q is not an integer", ErrBadRequest, raw))
			return
		}
		in.ExpectedVersion = &n
	}
	if err := s.opts.Registry.DeleteAlias(r.Context(), s.actor(r), in); err != nil {
		if in.ExpectedVersion != nil && errors.Is(err, registry.ErrConflict) {
			err = &markedError{err: err, mark: registry.ErrPreconditionFailed}
		}
		s.registryFail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) regCompare(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var nums [2]int64
	for i, k := range []string{"a", "b"} {
		n, err := strconv.ParseInt(q.Get(k), 10, 64)
		if err != nil || n <= 0 {
			s.registryFail(w, r, fmt.Errorf("%w: query parameter %s=%q: want a version number", ErrBadRequest, k, q.Get(k)))
			return
		}
		nums[i] = n
	}
	c, err := s.opts.Registry.Compare(r.Context(), r.PathValue("model"), nums[0], nums[1])
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) regHistory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ctx, model := r.Context(), r.PathValue("model")
	var hq registry.HistoryQuery
	var at time.Time
	if raw := q.Get("at"); raw != "" {
		t, err := time.Parse(time.RFC3339Nano, raw)
		if err != nil {
			s.registryFail(w, r, fmt.Errorf("%w: at=%q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", ErrBadRequest, raw))
			return
		}
		at, hq.Until = t, t
	}
	if raw := q.Get("version"); raw != "" {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n <= 0 {
			s.registryFail(w, r, fmt.Errorf("%w: version=%q: want a version number", ErrBadRequest, raw))
			return
		}
		hq.Version = n
	}
	var stage registry.Stage
	if raw := q.Get("stage"); raw != "" {
		st, err := registry.ParseStage(raw)
		if err != nil {
			s.registryFail(w, r, err)
			return
		}
		stage = st
	}
	ts, err := s.opts.Registry.History(ctx, model, hq)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	out := map[string]any{}
	views := make([]transitionView, 0, len(ts))
	for _, t := range ts {
		if stage == "" || t.From == stage || t.To == stage {
			views = append(views, toTransitionView(t))
		}
	}
	out["transitions"] = views
	if !at.IsZero() {
		if stage == "" {
			stage = registry.StageProduction
		}
		held, err := s.opts.Registry.StageAt(ctx, model, stage, at)
		if err != nil {
			s.registryFail(w, r, err)
			return
		}
		out["stage"], out["at"], out["versions"] = stage, at.UTC(), held
		if len(held) > 0 {
			out["version"] = held[0]
		} else {
			out["version"] = nil
		}
	}
	writeJSON(w, http.StatusOK, out)
}

type aliasEventView struct {
	Alias  string    `json:"alias"`
	From   int64     `json:"from"`
	To     int64     `json:"to"`
	Actor  string    `json:"actor"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// regAliasHistory lists an alias's moves (from 0 = created, to 0 =
// deleted), oldest first; with ?at=RFC3339 it also answers which version
// the alias pointed at then ("version": null if it did not exist).
func (s *Server) regAliasHistory(w http.ResponseWriter, r *http.Request) {
	ctx, model, alias := r.Context(), r.PathValue("model"), r.PathValue("alias")
	hq := registry.HistoryQuery{Alias: alias}
	var at time.Time
	if raw := r.URL.Query().Get("at"); raw != "" {
		t, err := time.Parse(time.RFC3339Nano, raw)
		if err != nil {
			s.registryFail(w, r, fmt.Errorf("%w: at=%q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", ErrBadRequest, raw))
			return
		}
		at, hq.Until = t, t
	}
	es, err := s.opts.Registry.AliasHistory(ctx, model, hq)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	views := make([]aliasEventView, len(es))
	for i, e := range es {
		views[i] = aliasEventView{Alias: e.Alias, From: e.From, To: e.To, Actor: e.Actor, Reason: e.Reason, At: e.At}
	}
	out := map[string]any{"alias": alias, "events": views}
	if !at.IsZero() {
		out["at"] = at.UTC()
		v, err := s.opts.Registry.AliasAt(ctx, model, alias, at)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			out["version"] = nil
		case err != nil:
			s.registryFail(w, r, err)
			return
		default:
			out["version"] = v
		}
	}
	writeJSON(w, http.StatusOK, out)
}
