package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/kilnai/kiln/internal/registry"
	"github.com/kilnai/kiln/internal/registry/dataset"
)

// DatasetRecords is what the datasets route needs: the records the
// pipeline's registry sink keeps for model versions (a
// connectors/registry.Store), newest first. Without one (Options.Datasets
// nil), GET /api/v1/models/{model}/versions/{version}/datasets answers 404.
type DatasetRecords interface {
	Datasets(ctx context.Context, model string, version int64) ([]dataset.Record, error)
}

// regVersionDatasets lists the dataset records of a version: which runs
// wrote which data for it, with digests, row counts and profiles.
// ?role= keeps one role; ?profile=false leaves the profiles out.
func (s *Server) regVersionDatasets(w http.ResponseWriter, r *http.Request) {
	n, err := versionParam(r)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	q := r.URL.Query()
	role := q.Get("role")
	if role != "" && !dataset.ValidRole(role) {
		s.registryFail(w, r, fmt.Errorf("%w: role %q: want %s", ErrBadRequest, role, strings.Join(dataset.Roles, ", ")))
		return
	}
	withProfile := true
	if v := q.Get("profile"); v != "" {
		if withProfile, err = boolParam(v); err != nil {
			s.registryFail(w, r, fmt.Errorf("profile: %w", err))
			return
		}
	}
	model := r.PathValue("model")
	if _, err := s.opts.Registry.GetVersion(r.Context(), model, n); err != nil {
		s.registryFail(w, r, err)
		return
	}
	records := s.opts.Datasets
	if records == nil {
		s.registryFail(w, r, fmt.Errorf("%w: this server keeps no dataset records", registry.ErrNotFound))
		return
	}
	all, err := records.Datasets(r.Context(), model, n)
	if err != nil {
		s.registryFail(w, r, fmt.Errorf("dataset records of %s version %d: %w", model, n, err))
		return
	}
	out := make([]dataset.Record, 0, len(all))
	for _, d := range all {
		if role != "" && d.Role != role {
			continue
		}
		if !withProfile {
			d.Profile = nil
		}
		out = append(out, d)
	}
	writeJSON(w, http.StatusOK, map[string]any{"datasets": out})
}
