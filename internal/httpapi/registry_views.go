package httpapi

import (
	"time"

	"github.com/kilnai/kiln/internal/registry"
)

// Views: the native API's JSON shapes (api/openapi.yaml), kept apart from
// the domain types so the wire format changes only on purpose.

type modelView struct {
	Name          string              `json:"name"`
	Description   string              `json:"description"`
	Tags          map[string]string   `json:"tags"`
	Aliases       map[string]int64    `json:"aliases"`
	LatestVersion int64               `json:"latest_version"`
	Gates         map[string][]string `json:"gates,omitempty"`
	CreatedBy     string              `json:"created_by"`
	CreatedAt     time.Time           `json:"created_at"`
	UpdatedBy     string              `json:"updated_by"`
	UpdatedAt     time.Time           `json:"updated_at"`
}

type artifactRefView struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	Format string `json:"format"`
	Kind   string `json:"kind"`
}

type versionView struct {
	Model       string                     `json:"model"`
	Version     int64                      `json:"version"`
	Stage       registry.Stage             `json:"stage"`
	Status      registry.Status            `json:"status"`
	Description string                     `json:"description"`
	Artifact    artifactRefView            `json:"artifact"`
	Metrics     map[string]registry.Metric `json:"metrics"`
	Params      map[string]string          `json:"params"`
	Tags        map[string]string          `json:"tags"`
	Signature   registry.Signature         `json:"signature"`
	Lineage     registry.Lineage           `json:"lineage"`
	Source      string                     `json:"source,omitempty"`
	RunID       string                     `json:"run_id,omitempty"`
	RunLink     string                     `json:"run_link,omitempty"`
	Aliases     []string                   `json:"aliases"`
	CreatedBy   string                     `json:"created_by"`
	CreatedAt   time.Time                  `json:"created_at"`
	UpdatedBy   string                     `json:"updated_by"`
	UpdatedAt   time.Time                  `json:"updated_at"`
}

type transitionView struct {
	Version int64          `json:"version"`
	From    registry.Stage `json:"from"`
	To      registry.Stage `json:"to"`
	Actor   string         `json:"actor"`
	Reason  string         `json:"reason,omitempty"`
	At      time.Time      `json:"at"`
}

func nonNil[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return map[K]V{}
	}
	return m
}

func toModelView(m registry.RegisteredModel) modelView {
	v := modelView{
		Name: m.Name, Description: m.Description, Tags: nonNil(m.Tags), Aliases: nonNil(m.Aliases),
		LatestVersion: m.LatestVersion, CreatedBy: m.CreatedBy, CreatedAt: m.CreatedAt, UpdatedBy: m.UpdatedBy, UpdatedAt: m.UpdatedAt,
	}
	if len(m.Gates) > 0 {
		v.Gates = map[string][]string{}
		for st, rules := range m.Gates {
			v.Gates[string(st)] = rules
		}
	}
	return v
}

func toVersionView(v registry.ModelVersion) versionView {
	kind := "file"
	if v.Artifact.Manifest {
		kind = "directory"
	}
	aliases := v.Aliases
	if aliases == nil {
		aliases = []string{}
	}
	return versionView{
		Model: v.Model, Version: v.Version, Stage: v.Stage, Status: v.Status, Description: v.Description,
		Artifact: artifactRefView{Digest: v.Artifact.Digest, Size: v.Artifact.Size, Format: v.Artifact.Format, Kind: kind},
		Metrics:  nonNil(v.Metrics), Params: nonNil(v.Params), Tags: nonNil(v.Tags),
		Signature: v.Signature, Lineage: v.Lineage, Source: v.Source, RunID: v.RunID, RunLink: v.RunLink,
		Aliases: aliases, CreatedBy: v.CreatedBy, CreatedAt: v.CreatedAt, UpdatedBy: v.UpdatedBy, UpdatedAt: v.UpdatedAt,
	}
}

func toVersionViews(vs []registry.ModelVersion) []versionView {
	out := make([]versionView, len(vs))
	for i, v := range vs {
		out[i] = toVersionView(v)
	}
	return out
}

func toTransitionView(t registry.Transition) transitionView {
	return transitionView{Version: t.Version, From: t.From, To: t.To, Actor: t.Actor, Reason: t.Reason, At: t.At}
}
