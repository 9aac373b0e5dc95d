package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/kilnai/kiln/internal/artifact"
	"github.com/kilnai/kiln/internal/registry"
)

// The MLflow-compatible registry API: MLflow's REST subset for registered
// models and model versions, with its request fields, response entities,
// error bodies and status codes, served on top of the same registry.

// mlflowPrefixes are where MLflow clients (and MLflow's own UI) send
// registry calls.
var mlflowPrefixes = []string{"/api/2.0/mlflow", "/ajax-api/2.0/mlflow"}

// uriFormat is the artifact format of a version whose model bytes live
// outside Kiln: its blob is a small JSON pointer to the source URI.
const uriFormat = "uri"

func (s *Server) mlflowRoutes() []struct {
	method, path, name string
	h                  http.HandlerFunc
} {
	return []struct {
		method, path, name string
		h                  http.HandlerFunc
	}{
		{"POST", "/registered-models/create", "mlflow_rm_create", s.mlCreateModel},
		{"GET", "/registered-models/get", "mlflow_rm_get", s.mlGetModel},
		{"POST", "/registered-models/rename", "mlflow_rm_rename", s.mlRenameModel},
		{"PATCH", "/registered-models/update", "mlflow_rm_update", s.mlUpdateModel},
		{"DELETE", "/registered-models/delete", "mlflow_rm_delete", s.mlDeleteModel},
		{"GET", "/registered-models/search", "mlflow_rm_search", s.mlSearchModels},
		{"POST", "/registered-models/get-latest-versions", "mlflow_rm_latest", s.mlLatestVersions},
		{"GET", "/registered-models/get-latest-versions", "mlflow_rm_latest", s.mlLatestVersions},
		{"POST", "/registered-models/set-tag", "mlflow_rm_set_tag", s.mlSetModelTag},
		{"DELETE", "/registered-models/delete-tag", "mlflow_rm_delete_tag", s.mlDeleteModelTag},
		{"POST", "/registered-models/alias", "mlflow_alias_set", s.mlSetAlias},
		{"GET", "/registered-models/alias", "mlflow_alias_get", s.mlGetAlias},
		{"DELETE", "/registered-models/alias", "mlflow_alias_delete", s.mlDeleteAlias},
		{"POST", "/model-versions/create", "mlflow_mv_create", s.mlCreateVersion},
		{"GET", "/model-versions/get", "mlflow_mv_get", s.mlGetVersion},
		{"PATCH", "/model-versions/update", "mlflow_mv_update", s.mlUpdateVersion},
		{"DELETE", "/model-versions/delete", "mlflow_mv_delete", s.mlDeleteVersion},
		{"GET", "/model-versions/search", "mlflow_mv_search", s.mlSearchVersions},
		{"GET", "/model-versions/get-download-uri", "mlflow_mv_download_uri", s.mlDownloadURI},
		{"POST", "/model-versions/transition-stage", "mlflow_mv_transition", s.mlTransition},
		{"POST", "/model-versions/set-tag", "mlflow_mv_set_tag", s.mlSetVersionTag},
		{"DELETE", "/model-versions/delete-tag", "mlflow_mv_delete_tag", s.mlDeleteVersionTag},
	}
}

func (s *Server) registerMLflow(route func(pattern, name string, h http.HandlerFunc)) {
	for _, prefix := range mlflowPrefixes {
		for _, r := range s.mlflowRoutes() {
			route(r.method+" "+prefix+r.path, r.name, r.h)
		}
		// Unknown MLflow endpoints answer as MLflow does, so clients fall
		// back (get-latest-versions POST -> GET) or report clearly.
		route(prefix+"/", "mlflow_unknown", func(w http.ResponseWriter, r *http.Request) {
			writeMLflowError(w, http.StatusNotFound, "ENDPOINT_NOT_FOUND", fmt.Sprintf("no MLflow endpoint %s %s in Kiln", r.Method, r.URL.Path))
		})
	}
}

// mlflowStatusOf maps an error to MLflow's error code and the HTTP status
// MLflow's server sends with it. Nothing after a committed write maps to
// 5xx (MLflow clients retry 5xx, even POSTs).
func mlflowStatusOf(err error) (int, string) {
	switch {
	case errors.Is(err, errMLflowAliasNotFound):
		return http.StatusBadRequest, "INVALID_PARAMETER_VALUE"
	case errors.Is(err, registry.ErrAlreadyExists):
		return http.StatusBadRequest, "RESOURCE_ALREADY_EXISTS"
	case errors.Is(err, errInUse), errors.Is(err, registry.ErrConflict):
		return http.StatusConflict, "RESOURCE_CONFLICT"
	case errors.Is(err, errMLflowBadRequest), errors.Is(err, errTooLarge), errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest, "BAD_REQUEST"
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, artifact.ErrNotFound):
		return http.StatusNotFound, "RESOURCE_DOES_NOT_EXIST"
	case errors.Is(err, registry.ErrInvalid), errors.Is(err, errMLflowInvalid), errors.Is(err, registry.ErrPreconditionFailed),
		errors.Is(err, artifact.ErrInvalid), errors.Is(err, artifact.ErrDigestMismatch), errors.Is(err, artifact.ErrTooLarge),
		errors.Is(err, artifact.ErrIncomplete):
		return http.StatusBadRequest, "INVALID_PARAMETER_VALUE"
	default:
		return http.StatusInternalServerError, "INTERNAL_ERROR"
	}
}

// mlflowText is an error whose message is MLflow's own wording.
type mlflowText string

func (m mlflowText) Error() string { return string(m) }

func (s *Server) mlflowFail(w http.ResponseWriter, r *http.Request, err error) {
	code, name := mlflowStatusOf(err)
	if code >= 500 {
		s.log.Error("MLflow API request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeMLflowError(w, code, name, err.Error())
}

// MLflow entities (proto field names, timestamps in ms, version as string).
type (
	mlflowAlias struct {
		Alias   string `json:"alias"`
		Version string `json:"version"`
	}
	mlflowModel struct {
		Name                 string          `json:"name"`
		CreationTimestamp    int64           `json:"creation_timestamp"`
		LastUpdatedTimestamp int64           `json:"last_updated_timestamp"`
		UserID               string          `json:"user_id,omitempty"`
		Description          string          `json:"description,omitempty"`
		LatestVersions       []mlflowVersion `json:"latest_versions,omitempty"`
		Tags                 []mlflowTag     `json:"tags,omitempty"`
		Aliases              []mlflowAlias   `json:"aliases,omitempty"`
	}
	mlflowVersion struct {
		Name                 string      `json:"name"`
		Version              string      `json:"version"`
		CreationTimestamp    int64       `json:"creation_timestamp"`
		LastUpdatedTimestamp int64       `json:"last_updated_timestamp"`
		UserID               string      `json:"user_id,omitempty"`
		CurrentStage         string      `json:"current_stage"`
		Description          string      `json:"description,omitempty"`
		Source               string      `json:"source"`
		RunID                string      `json:"run_id,omitempty"`
		RunLink              string      `json:"run_link,omitempty"`
		Status               string      `json:"status"`
		StatusMessage        string      `json:"status_message,omitempty"`
		Tags                 []mlflowTag `json:"tags,omitempty"`
		Aliases              []string    `json:"aliases,omitempty"`
	}
)

func sortedTags(m map[string]string) []mlflowTag {
	if len(m) == 0 {
		return nil
	}
	out := make([]mlflowTag, 0, len(m))
	for k, v := range m {
		out = append(out, mlflowTag{Key: k, Value: v})
	}
	sortTags(out)
	return out
}

func sortTags(t []mlflowTag) {
	for i := 1; i < len(t); i++ {
		for j := i; j > 0 && t[j].Key < t[j-1].Key; j-- {
			t[j], t[j-1] = t[j-1], t[j]
		}
	}
}

func (s *Server) toMLflowModel(r *http.Request, m registry.RegisteredModel) mlflowModel {
	out := mlflowModel{
		Name: m.Name, CreationTimestamp: m.CreatedAt.UnixMilli(), LastUpdatedTimestamp: m.UpdatedAt.UnixMilli(),
		UserID: m.CreatedBy, Description: m.Description, Tags: sortedTags(m.Tags),
	}
	for _, v := range m.LatestVersions {
		out.LatestVersions = append(out.LatestVersions, s.toMLflowVersion(r, v))
	}
	for a, v := range m.Aliases {
		out.Aliases = append(out.Aliases, mlflowAlias{Alias: a, Version: strconv.FormatInt(v, 10)})
	}
	for i := 1; i < len(out.Aliases); i++ {
		for j := i; j > 0 && out.Aliases[j].Alias < out.Aliases[j-1].Alias; j-- {
			out.Aliases[j], out.Aliases[j-1] = out.Aliases[j-1], out.Aliases[j]
		}
	}
	return out
}

func (s *Server) toMLflowVersion(r *http.Request, v registry.ModelVersion) mlflowVersion {
	source := v.Source
	if source == "" {
		source = artifactURL(r, v.Artifact.Digest)
	}
	status := string(v.Status)
	if status == "" {
		status = string(registry.StatusReady)
	}
	return mlflowVersion{
		Name: v.Model, Version: strconv.FormatInt(v.Version, 10),
		CreationTimestamp: v.CreatedAt.UnixMilli(), LastUpdatedTimestamp: v.UpdatedAt.UnixMilli(),
		UserID: v.CreatedBy, CurrentStage: v.Stage.MLflowName(), Description: v.Description,
		Source: source, RunID: v.RunID, RunLink: v.RunLink, Status: status, StatusMessage: v.StatusMessage,
		Tags: sortedTags(v.Tags), Aliases: v.Aliases,
	}
}

// artifactURL is the absolute URL Kiln serves an artifact at, built from
// the request's host (X-Forwarded-Proto picks the scheme behind a proxy).
func artifactURL(r *http.Request, digest string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	return scheme + "://" + r.Host + "/api/v1/artifacts/" + digest
}

func required(field, v string) error {
	if v == "" {
		return fmt.Errorf("%w: Missing value for required parameter '%s'", errMLflowInvalid, field)
	}
	return nil
}

func parseMLflowVersion(v flexString) (int64, error) {
	if err := required("version", string(v)); err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%w: Parameter 'version' must be a positive integer, got %q", errMLflowInvalid, v)
	}
	return n, nil
}

// decodeMLflowRequest decodes the request and checks required fields.
func decodeMLflowRequest(r *http.Request, v any, requiredFields ...string) error {
	if err := decodeMLflow(r, v); err != nil {
		return err
	}
	rv := map[string]any{}
	b, _ := json.Marshal(v)
	_ = json.Unmarshal(b, &rv)
	for _, f := range requiredFields {
		switch x := rv[f].(type) {
		case string:
			if x != "" {
				continue
			}
		case nil:
		default:
			continue
		}
		return required(f, "")
	}
	return nil
}

func tagMap(tags []mlflowTag) (map[string]string, error) {
	if len(tags) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(tags))
	for _, t := range tags {
		if t.Key == "" {
			return nil, fmt.Errorf("%w: tag key is empty", errMLflowInvalid)
		}
		out[t.Key] = t.Value
	}
	return out, nil
}

func (s *Server) mlCreateModel(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name        string      `json:"name"`
		Tags        []mlflowTag `json:"tags"`
		Description string      `json:"description"`
	}
	if err := decodeMLflowRequest(r, &in, "name"); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	tags, err := tagMap(in.Tags)
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	m, err := s.opts.Registry.CreateModel(r.Context(), s.actor(r), registry.CreateModelInput{Name: in.Name, Description: in.Description, Tags: tags})
	if err != nil {
		if errors.Is(err, registry.ErrAlreadyExists) {
			err = &markedError{err: mlflowText(fmt.Sprintf("Registered Model (name=%s) already exists", in.Name)), mark: registry.ErrAlreadyExists}
		}
		s.mlflowFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"registered_model": s.toMLflowModel(r, m)})
}

func (s *Server) mlGetModel(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name string `json:"name"`
	}
	if err := decodeMLflowRequest(r, &in, "name"); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	m, err := s.opts.Registry.GetModel(r.Context(), in.Name)
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"registered_model": s.toMLflowModel(r, m)})
}

func (s *Server) mlRenameModel(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name    string `json:"name"`
		NewName string `json:"new_name"`
	}
	if err := decodeMLflowRequest(r, &in, "name", "new_name"); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	m, err := s.opts.Registry.RenameModel(r.Context(), s.actor(r), in.Name, in.NewName)
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"registered_model": s.toMLflowModel(r, m)})
}

func (s *Server) mlUpdateModel(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name        string  `json:"name"`
		Description *string `json:"description"`
	}
	if err := decodeMLflowRequest(r, &in, "name"); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	m, err := s.opts.Registry.UpdateModel(r.Context(), s.actor(r), in.Name, registry.ModelUpdate{Description: in.Description})
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"registered_model": s.toMLflowModel(r, m)})
}

func (s *Server) mlDeleteModel(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name string `json:"name"`
	}
	if err := decodeMLflowRequest(r, &in, "name"); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	if err := s.opts.Registry.DeleteModel(r.Context(), s.actor(r), in.Name); err != nil {
		if errors.Is(err, registry.ErrPreconditionFailed) {
			err = inUse(err)
		}
		s.mlflowFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

type mlflowSearch struct {
	Filter     string   `json:"filter"`
	MaxResults flexInt  `json:"max_results"`
	OrderBy    []string `json:"order_by"`
	PageToken  string   `json:"page_token"`
}

func (in mlflowSearch) query(defaultMax, hardMax int64, clamp bool) (registry.SearchQuery, error) {
	q := registry.SearchQuery{Filter: in.Filter, PageToken: in.PageToken}
	for _, clause := range in.OrderBy {
		// MLflow's SQL store takes "timestamp" for last_updated_timestamp.
		if f := strings.Fields(clause); len(f) > 0 && strings.EqualFold(f[0], "timestamp") {
			clause = "last_updated_timestamp" + strings.TrimPrefix(strings.TrimSpace(clause), f[0])
		}
		q.OrderBy = append(q.OrderBy, clause)
	}
	n := defaultMax
	if in.MaxResults.Set {
		n = in.MaxResults.N
	}
	if n <= 0 {
		return q, fmt.Errorf("%w: Invalid value for max_results: it must be a positive integer, got %d", errMLflowInvalid, n)
	}
	if n > hardMax {
		if !clamp {
			return q, fmt.Errorf("%w: Invalid value for max_results: it must be at most %d, got %d", errMLflowInvalid, hardMax, n)
		}
		n = hardMax
	}
	q.MaxResults = int(n)
	return q, nil
}

func (s *Server) mlSearchModels(w http.ResponseWriter, r *http.Request) {
	var in mlflowSearch
	if err := decodeMLflow(r, &in); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	q, err := in.query(100, registry.MaxModelPage, false)
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	page, err := s.opts.Registry.SearchModels(r.Context(), q)
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	out := make([]mlflowModel, len(page.Models))
	for i, m := range page.Models {
		out[i] = s.toMLflowModel(r, m)
	}
	resp := map[string]any{"registered_models": out}
	if page.NextPageToken != "" {
		resp["next_page_token"] = page.NextPageToken
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) mlSearchVersions(w http.ResponseWriter, r *http.Request) {
	var in mlflowSearch
	if err := decodeMLflow(r, &in); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	// MLflow's page size default and limit are 200000; Kiln pages at most
	// registry.MaxVersionPage at a time and hands out a page token.
	q, err := in.query(registry.MaxVersionPage, 200000, true)
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	if q.MaxResults > registry.MaxVersionPage {
		q.MaxResults = registry.MaxVersionPage
	}
	page, err := s.opts.Registry.SearchVersions(r.Context(), q)
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	out := make([]mlflowVersion, len(page.Versions))
	for i, v := range page.Versions {
		out[i] = s.toMLflowVersion(r, v)
	}
	resp := map[string]any{"model_versions": out}
	if page.NextPageToken != "" {
		resp["next_page_token"] = page.NextPageToken
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) mlLatestVersions(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name   string   `json:"name"`
		Stages []string `json:"stages"`
	}
	if err := decodeMLflowRequest(r, &in, "name"); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	var stages []registry.Stage
	for _, raw := range in.Stages {
		st, err := registry.ParseStage(raw)
		if err != nil {
			s.mlflowFail(w, r, fmt.Errorf("%w: Invalid Model Version stage: %s", errMLflowInvalid, raw))
			return
		}
		stages = append(stages, st)
	}
	vs, err := s.opts.Registry.LatestVersions(r.Context(), in.Name, stages)
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	out := make([]mlflowVersion, len(vs))
	for i, v := range vs {
		out[i] = s.toMLflowVersion(r, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"model_versions": out})
}

func (s *Server) mlSetModelTag(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name  string `json:"name"`
		Key   string `json:"key"`
		Value string `json:"value"`
	}
	if err := decodeMLflowRequest(r, &in, "name", "key"); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	if _, err := s.opts.Registry.UpdateModel(r.Context(), s.actor(r), in.Name, registry.ModelUpdate{SetTags: map[string]string{in.Key: in.Value}}); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) mlDeleteModelTag(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name string `json:"name"`
		Key  string `json:"key"`
	}
	if err := decodeMLflowRequest(r, &in, "name", "key"); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	if _, err := s.opts.Registry.UpdateModel(r.Context(), s.actor(r), in.Name, registry.ModelUpdate{DeleteTags: []string{in.Key}}); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

type mlflowAliasReq struct {
	Name    string     `json:"name"`
	Alias   string     `json:"alias"`
	Version flexString `json:"version"`
}

func (s *Server) mlSetAlias(w http.ResponseWriter, r *http.Request) {
	var in mlflowAliasReq
	if err := decodeMLflowRequest(r, &in, "name", "alias", "version"); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	n, err := parseMLflowVersion(in.Version)
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	if _, err := s.opts.Registry.SetAlias(r.Context(), s.actor(r), registry.SetAliasInput{Model: in.Name, Alias: in.Alias, Version: n}); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) mlGetAlias(w http.ResponseWriter, r *http.Request) {
	var in mlflowAliasReq
	if err := decodeMLflowRequest(r, &in, "name", "alias"); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	ctx := r.Context()
	if _, err := s.opts.Registry.GetModel(ctx, in.Name); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	v, err := s.opts.Registry.VersionByAlias(ctx, in.Name, in.Alias)
	if errors.Is(err, registry.ErrNotFound) {
		err = &markedError{err: mlflowText(fmt.Sprintf("Registered model alias %s not found.", in.Alias)), mark: errMLflowAliasNotFound}
	}
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"model_version": s.toMLflowVersion(r, v)})
}

func (s *Server) mlDeleteAlias(w http.ResponseWriter, r *http.Request) {
	var in mlflowAliasReq
	if err := decodeMLflowRequest(r, &in, "name", "alias"); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	ctx := r.Context()
	if _, err := s.opts.Registry.GetModel(ctx, in.Name); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	err := s.opts.Registry.DeleteAlias(ctx, s.actor(r), registry.DeleteAliasInput{Model: in.Name, Alias: in.Alias})
	if err != nil && !errors.Is(err, registry.ErrNotFound) { // a missing alias is a no-op in MLflow
		s.mlflowFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

type mlflowVersionReq struct {
	Name    string     `json:"name"`
	Version flexString `json:"version"`
}

func (s *Server) mlVersionFromRequest(r *http.Request, in *mlflowVersionReq) (registry.ModelVersion, error) {
	if err := decodeMLflowRequest(r, in, "name", "version"); err != nil {
		return registry.ModelVersion{}, err
	}
	n, err := parseMLflowVersion(in.Version)
	if err != nil {
		return registry.ModelVersion{}, err
	}
	return s.opts.Registry.GetVersion(r.Context(), in.Name, n)
}

func (s *Server) mlCreateVersion(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name        string      `json:"name"`
		Source      string      `json:"source"`
		RunID       string      `json:"run_id"`
		Tags        []mlflowTag `json:"tags"`
		RunLink     string      `json:"run_link"`
		Description string      `json:"description"`
		ModelID     string      `json:"model_id"`
	}
	if err := decodeMLflowRequest(r, &in, "name", "source"); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	tags, err := tagMap(in.Tags)
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	ctx := r.Context()
	art, err := s.mlflowSourceArtifact(ctx, in.Source)
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	v, _, err := s.opts.Registry.CreateVersion(ctx, s.actor(r), registry.CreateVersionInput{
		Model: in.Name, Artifact: art, Source: in.Source, RunID: in.RunID, RunLink: in.RunLink,
		Description: in.Description, Tags: tags, IdempotencyKey: r.Header.Get("Idempotency-Key"),
	})
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"model_version": s.toMLflowVersion(r, v)})
}

// mlflowSourceArtifact resolves create-model-version's source. A Kiln
// artifact (sha256:<hex>, kiln-artifacts:/sha256:<hex>, or a URL of
// /api/v1/artifacts/sha256:<hex>) must be stored and is used as is. Any
// other URI (s3://, https://, runs:/, mlflow-artifacts:/...) is recorded as
// a pointer: a small JSON blob naming the URI, with format "uri"; Kiln
// cannot verify bytes it does not hold.
func (s *Server) mlflowSourceArtifact(ctx context.Context, source string) (registry.Artifact, error) {
	if len(source) > registry.MaxSourceLen {
		return registry.Artifact{}, fmt.Errorf("%w: source is %d characters long, the limit is %d", errMLflowInvalid, len(source), registry.MaxSourceLen)
	}
	for _, seg := range strings.Split(strings.ReplaceAll(source, "\\", "/"), "/") {
		if seg == ".." {
			return registry.Artifact{}, fmt.Errorf("%w: Invalid model version source: '%s'. Source paths cannot contain '..'", errMLflowInvalid, source)
		}
	}
	d, ok, err := kilnArtifactRef(source)
	if err != nil {
		return registry.Artifact{}, err
	}
	if ok {
		info, err := s.opts.Artifacts.Stat(ctx, d)
		if err != nil {
			return registry.Artifact{}, err
		}
		isDir, err := s.opts.Artifacts.IsManifest(ctx, d)
		if err != nil {
			return registry.Artifact{}, err
		}
		size := info.Size
		if isDir {
			m, err := s.opts.Artifacts.Manifest(ctx, d)
			if err != nil {
				return registry.Artifact{}, err
			}
			size = m.TotalSize()
		}
		return registry.Artifact{Digest: d.String(), Size: size, Manifest: isDir}, nil
	}
	u, err := url.Parse(source)
	if err != nil || (u.Scheme == "" && !strings.HasPrefix(source, "/")) {
		return registry.Artifact{}, fmt.Errorf("%w: source %q is neither a URI nor an absolute path", errMLflowInvalid, source)
	}
	if u.Scheme == "file" || u.Scheme == "" {
		return registry.Artifact{}, fmt.Errorf("%w: local source %q is not accepted: upload the files with PUT /api/v1/artifacts and pass the returned digest", errMLflowInvalid, source)
	}
	pointer, _ := json.Marshal(map[string]string{"kind": "kiln.uri.v1", "uri": source})
	sum := sha256.Sum256(pointer)
	info, err := s.opts.Artifacts.Put(ctx, bytes.NewReader(pointer), artifact.Digest("sha256:"+hex.EncodeToString(sum[:])), 0)
	if err != nil {
		return registry.Artifact{}, err
	}
	return registry.Artifact{Digest: info.Digest.String(), Size: info.Size, Format: uriFormat}, nil
}

// kilnArtifactRef recognises a reference to a blob in Kiln's store:
// sha256:<hex>, kiln-artifacts:/sha256:<hex> or an http(s) URL whose path
// is /api/v1/artifacts/sha256:<hex>. ok is false for other URIs; err is
// set when a Kiln reference is malformed.
func kilnArtifactRef(source string) (d artifact.Digest, ok bool, err error) {
	var ref string
	switch {
	case strings.HasPrefix(source, "sha256:"):
		ref = source
	case strings.HasPrefix(source, "kiln-artifacts:"):
		ref = strings.TrimLeft(strings.TrimPrefix(source, "kiln-artifacts:"), "/")
	case strings.HasPrefix(source, "http://"), strings.HasPrefix(source, "https://"):
		u, perr := url.Parse(source)
		if perr != nil {
			return "", false, nil
		}
		rest, found := strings.CutPrefix(u.Path, "/api/v1/artifacts/")
		if !found {
			return "", false, nil
		}
		ref = rest
	default:
		return "", false, nil
	}
	d, err = artifact.ParseDigest(ref)
	if err != nil {
		return "", true, err
	}
	return d, true, nil
}

func (s *Server) mlGetVersion(w http.ResponseWriter, r *http.Request) {
	var in mlflowVersionReq
	v, err := s.mlVersionFromRequest(r, &in)
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"model_version": s.toMLflowVersion(r, v)})
}

func (s *Server) mlUpdateVersion(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name        string     `json:"name"`
		Version     flexString `json:"version"`
		Description *string    `json:"description"`
	}
	if err := decodeMLflowRequest(r, &in, "name", "version"); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	n, err := parseMLflowVersion(in.Version)
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	v, err := s.opts.Registry.UpdateVersion(r.Context(), s.actor(r), in.Name, n, registry.VersionUpdate{Description: in.Description})
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"model_version": s.toMLflowVersion(r, v)})
}

func (s *Server) mlDeleteVersion(w http.ResponseWriter, r *http.Request) {
	var in mlflowVersionReq
	if err := decodeMLflowRequest(r, &in, "name", "version"); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	n, err := parseMLflowVersion(in.Version)
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	if err := s.opts.Registry.DeleteVersion(r.Context(), s.actor(r), in.Name, n); err != nil {
		if errors.Is(err, registry.ErrPreconditionFailed) {
			err = inUse(err)
		}
		s.mlflowFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) mlDownloadURI(w http.ResponseWriter, r *http.Request) {
	var in mlflowVersionReq
	v, err := s.mlVersionFromRequest(r, &in)
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	uri := artifactURL(r, v.Artifact.Digest)
	if v.Artifact.Format == uriFormat && v.Source != "" {
		uri = v.Source
	} else if v.Artifact.Manifest {
		uri += "?format=tar"
	}
	writeJSON(w, http.StatusOK, map[string]string{"artifact_uri": uri})
}

func (s *Server) mlTransition(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name                    string     `json:"name"`
		Version                 flexString `json:"version"`
		Stage                   string     `json:"stage"`
		ArchiveExistingVersions flexBool   `json:"archive_existing_versions"`
	}
	if err := decodeMLflowRequest(r, &in, "name", "version", "stage"); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	if !in.ArchiveExistingVersions.Set {
		s.mlflowFail(w, r, required("archive_existing_versions", ""))
		return
	}
	n, err := parseMLflowVersion(in.Version)
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	st, err := registry.ParseStage(in.Stage)
	if err != nil || strings.EqualFold(in.Stage, "dev") || strings.EqualFold(in.Stage, "prod") {
		s.mlflowFail(w, r, fmt.Errorf("%w: Invalid Model Version stage: %s. Value must be one of None, Staging, Production, Archived", errMLflowInvalid, in.Stage))
		return
	}
	if in.ArchiveExistingVersions.V && st != registry.StageStaging && st != registry.StageProduction {
		s.mlflowFail(w, r, fmt.Errorf("%w: Model version transition cannot archive existing model versions because '%s' is not an Active stage. Valid stages are Staging, Production", errMLflowInvalid, in.Stage))
		return
	}
	res, err := s.opts.Registry.Transition(r.Context(), s.actor(r), registry.TransitionInput{Model: in.Name, Version: n, To: st, ArchiveExisting: in.ArchiveExistingVersions.V})
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"model_version": s.toMLflowVersion(r, res.Version)})
}

func (s *Server) mlSetVersionTag(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name    string     `json:"name"`
		Version flexString `json:"version"`
		Key     string     `json:"key"`
		Value   string     `json:"value"`
	}
	if err := decodeMLflowRequest(r, &in, "name", "version", "key"); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	n, err := parseMLflowVersion(in.Version)
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	if _, err := s.opts.Registry.UpdateVersion(r.Context(), s.actor(r), in.Name, n, registry.VersionUpdate{SetTags: map[string]string{in.Key: in.Value}}); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) mlDeleteVersionTag(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name    string     `json:"name"`
		Version flexString `json:"version"`
		Key     string     `json:"key"`
	}
	if err := decodeMLflowRequest(r, &in, "name", "version", "key"); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	n, err := parseMLflowVersion(in.Version)
	if err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	if _, err := s.opts.Registry.UpdateVersion(r.Context(), s.actor(r), in.Name, n, registry.VersionUpdate{DeleteTags: []string{in.Key}}); err != nil {
		s.mlflowFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}
