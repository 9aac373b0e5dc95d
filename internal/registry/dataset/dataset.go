// Package dataset defines the dataset records kept for model versions:
// which pipeline run wrote which data for a version (its training,
// validation, test or scoring data), with the data's digest, row count and
// column-by-column profile. The pipeline's registry sink
// (internal/connectors/registry) computes and stores them; the HTTP API and
// the command line read them. The package holds the shapes only: it
// imports no database and no HTTP.
package dataset

import (
	"slices"
	"time"
)

// Roles are what a dataset can be to a model version.
var Roles = []string{"training", "validation", "test", "scoring"}

// ValidRole reports whether role is one of Roles.
func ValidRole(role string) bool { return slices.Contains(Roles, role) }

// Record is what the registry sink records for a model version: which
// run wrote which data for it, its digest and its profile.
type Record struct {
	Model   string `json:"model"`
	Version int64  `json:"version"`
	Name    string `json:"dataset"`
	Role    string `json:"role"`
	RunID   string `json:"run_id"`
	// Task is the distributed task the record covers ("" for a whole run).
	Task       string    `json:"task,omitempty"`
	Digest     string    `json:"digest"`
	DigestKind string    `json:"digest_kind"`
	Rows       int64     `json:"rows"`
	Profile    *Profile  `json:"profile,omitempty"`
	Created    time.Time `json:"created"`
}

// Profile describes a dataset column by column.
type Profile struct {
	Rows    int64     `json:"rows"`
	Columns []*Column `json:"columns"`
}

// Column is one column's statistics. Kind is numeric, categorical or
// temporal; the fields that apply to the kind are set.
type Column struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Kind  string `json:"kind"`
	Count int64  `json:"count"`
	Nulls int64  `json:"nulls"`
	// numeric
	Mean      *float64           `json:"mean,omitempty"`
	Std       *float64           `json:"std,omitempty"`
	Min       *float64           `json:"min,omitempty"`
	Max       *float64           `json:"max,omitempty"`
	Quantiles map[string]float64 `json:"quantiles,omitempty"`
	Histogram *Histogram         `json:"histogram,omitempty"`
	// categorical
	Distinct    int64      `json:"distinct_estimate,omitempty"`
	Top         []Category `json:"top,omitempty"`
	TopIsApprox bool       `json:"top_approximate,omitempty"`
	// temporal
	First string `json:"first,omitempty"`
	Last  string `json:"last,omitempty"`
}

// Histogram has len(Fractions) equal-width bins between Edges[i] and
// Edges[i+1]; Fractions sum to 1.
type Histogram struct {
	Edges     []float64 `json:"edges"`
	Fractions []float64 `json:"fractions"`
}

// Category is a value and how many rows hold it.
type Category struct {
	Value string `json:"value"`
	Count int64  `json:"count"`
}
