package registry

import (
	"context"
	"time"
)

// Store persists the registry. Implementations (registry/sqlstore) make
// every method one transaction, are safe for concurrent use, and pass the
// registrytest conformance suite. The Store trusts its input: validation,
// clock, gates and the served/blob checks are the Service's job. Errors wrap
// the package's sentinels.
type Store interface {
	// CreateModel inserts a model; ErrAlreadyExists if the name is taken.
	CreateModel(ctx context.Context, m RegisteredModel) error
	// GetModel returns a model with its aliases, latest version and latest
	// version per stage; ErrNotFound if absent.
	GetModel(ctx context.Context, name string) (RegisteredModel, error)
	// UpdateModel applies upd and stamps actor and time.
	UpdateModel(ctx context.Context, name string, upd ModelUpdate, actor string, at time.Time) (RegisteredModel, error)
	// RenameModel renames a model with all its versions, aliases and history;
	// ErrNotFound if from is absent, ErrAlreadyExists if to is taken.
	RenameModel(ctx context.Context, from, to, actor string, at time.Time) error
	// DeleteModel deletes a model with its versions, aliases and history.
	// It refuses with ErrPreconditionFailed while the model has aliases.
	DeleteModel(ctx context.Context, name string) error
	// SearchModels returns one page of models matching q and the cursor of
	// the next page ("" at the end).
	SearchModels(ctx context.Context, q Query) ([]RegisteredModel, string, error)

	// CreateVersion assigns the next number of v.Model (never reused, no
	// gaps under concurrency), stores v in stage development, records the
	// registration transition and returns the stored version with
	// created=true. If v.IdempotencyKey is set and a version of the model
	// already has that key, it stores nothing and returns that version with
	// created=false when its ContentDigest equals v's, ErrConflict otherwise.
	// ErrNotFound if the model does not exist.
	CreateVersion(ctx context.Context, v ModelVersion) (ModelVersion, bool, error)
	// GetVersion returns one version with its aliases.
	GetVersion(ctx context.Context, model string, version int64) (ModelVersion, error)
	// UpdateVersion applies upd (description, tags) and stamps actor and time.
	UpdateVersion(ctx context.Context, model string, version int64, upd VersionUpdate, actor string, at time.Time) (ModelVersion, error)
	// DeleteVersion deletes a version (its number is never reused) and
	// appends a Transition from its stage to "" (deleted) stamped with actor
	// and time. It refuses with ErrPreconditionFailed while an alias points
	// at the version.
	DeleteVersion(ctx context.Context, model string, version int64, actor string, at time.Time) error
	// SearchVersions returns one page of versions matching q.
	SearchVersions(ctx context.Context, q Query) ([]ModelVersion, string, error)
	// StageHolders returns the versions of model currently in stage, highest
	// number first.
	StageHolders(ctx context.Context, model string, stage Stage) ([]ModelVersion, error)

	// Transition moves a version to another stage, optionally archiving the
	// other holders of the target stage, appending one Transition per
	// changed version, all in one transaction. It returns the moved version
	// and the transitions it recorded.
	Transition(ctx context.Context, c StageChange) (ModelVersion, []Transition, error)
	// SetAlias points an alias at a version (creating or moving it) and
	// appends an AliasEvent. With c.Expected set it is a compare-and-swap:
	// ErrConflict unless the alias currently points at *c.Expected (0: the
	// alias must not exist).
	SetAlias(ctx context.Context, c AliasChange) (Alias, error)
	// DeleteAlias removes an alias (ErrNotFound if absent) and appends an
	// AliasEvent; c.Expected as for SetAlias, c.Version is ignored.
	DeleteAlias(ctx context.Context, c AliasChange) error
	// GetAlias returns one alias; ErrNotFound if absent.
	GetAlias(ctx context.Context, model, alias string) (Alias, error)
	// Transitions returns the model's stage transitions matching q, oldest first.
	Transitions(ctx context.Context, model string, q HistoryQuery) ([]Transition, error)
	// AliasEvents returns the model's alias events matching q, oldest first.
	AliasEvents(ctx context.Context, model string, q HistoryQuery) ([]AliasEvent, error)

	// Close releases the store's resources.
	Close() error
}

// ModelUpdate is a partial update of a registered model; nil and empty
// fields leave the value as it is.
type ModelUpdate struct {
	Description *string
	// SetTags adds or overwrites tags; DeleteTags removes tags (absent
	// keys are ignored).
	SetTags    map[string]string
	DeleteTags []string
	// Gates replaces the stored promotion rules of each stage it names; an
	// empty list removes the stage's rules.
	Gates map[Stage][]string
}

// VersionUpdate is a partial update of a model version's mutable fields.
type VersionUpdate struct {
	Description *string
	SetTags     map[string]string
	DeleteTags  []string
}

// StageChange is the Store-level request of a transition.
type StageChange struct {
	Model   string
	Version int64
	To      Stage
	// ArchiveExisting moves every other version in To to archived.
	ArchiveExisting bool
	// ExpectHolders, when not nil, is the set of versions the caller saw in
	// To (other than Version) when it evaluated its gates; if the current set
	// differs the store returns ErrConflict (a concurrent promotion won).
	ExpectHolders []int64
	// ExpectFrom, when not empty, is the stage the caller saw the version
	// in; ErrConflict if it changed meanwhile.
	ExpectFrom Stage
	Actor      string
	Reason     string
	At         time.Time
}

// AliasChange is the Store-level request to set or delete an alias.
type AliasChange struct {
	Model   string
	Alias   string
	Version int64
	// Expected: nil = unconditional; otherwise the version the alias must
	// currently point at, 0 meaning "must not exist".
	Expected *int64
	Actor    string
	Reason   string
	At       time.Time
}

// HistoryQuery narrows a history listing; zero fields do not filter.
type HistoryQuery struct {
	Version int64     // only this version's transitions
	Alias   string    // only this alias's events
	Until   time.Time // only entries at or before this instant
	Limit   int       // at most this many (the newest ones); 0 = all
}

// Target is what a search returns.
type Target int

// Search targets.
const (
	TargetModels Target = iota + 1
	TargetVersions
)

// Query is a parsed, validated search as a Store receives it.
type Query struct {
	// Filter is nil for "everything".
	Filter *Expr
	// Order always ends in a unique key so pages are stable.
	Order []OrderKey
	// Limit is the page size (1..MaxPageSize).
	Limit int
	// After is the store's cursor from the previous page ("" = first page).
	After string
}

// OrderKey is one sort key.
type OrderKey struct {
	Field Field
	Desc  bool
}
