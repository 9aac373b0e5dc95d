package registry

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// ServedChecker tells whether a model version is currently served; the
// Service refuses to delete a served version. The serving layer implements it.
type ServedChecker interface {
	Served(ctx context.Context, model string, version int64) (bool, error)
}

// BlobChecker tells whether the artifact store holds a blob; the Service
// refuses to register a version whose artifact is missing.
type BlobChecker interface {
	Has(ctx context.Context, digest string) (bool, error)
}

// EventKind names a lifecycle event.
type EventKind string

// Lifecycle events emitted after a change is committed.
const (
	EventModelCreated   EventKind = "model_created"
	EventModelUpdated   EventKind = "model_updated"
	EventModelRenamed   EventKind = "model_renamed"
	EventModelDeleted   EventKind = "model_deleted"
	EventVersionCreated EventKind = "version_created"
	EventVersionUpdated EventKind = "version_updated"
	EventVersionDeleted EventKind = "version_deleted"
	EventStageChanged   EventKind = "stage_changed"
	EventAliasSet       EventKind = "alias_set"
	EventAliasDeleted   EventKind = "alias_deleted"
)

// Event describes one committed change.
type Event struct {
	Kind    EventKind `json:"kind"`
	Model   string    `json:"model"`
	Version int64     `json:"version,omitempty"`
	// From/To are stages for EventStageChanged; for EventModelRenamed From
	// is the old name.
	From  string    `json:"from,omitempty"`
	To    string    `json:"to,omitempty"`
	Alias string    `json:"alias,omitempty"`
	Actor string    `json:"actor"`
	At    time.Time `json:"at"`
}

// Notifier receives lifecycle events after they are committed, in commit
// order per caller. It must not block for long; errors are its own business.
type Notifier interface {
	Notify(ctx context.Context, e Event)
}

// Options configures a Service. Every field is optional.
type Options struct {
	// Clock returns the current time (default time.Now). Times are stored
	// in UTC with microsecond precision.
	Clock func() time.Time
	// Served, when set, makes DeleteVersion and DeleteModel refuse served
	// versions.
	Served ServedChecker
	// Blobs, when set, makes CreateVersion refuse an artifact digest the
	// artifact store does not hold.
	Blobs BlobChecker
	// Notifier, when set, receives lifecycle events.
	Notifier Notifier
	// Logger (default: discard).
	Logger *slog.Logger
}

// Page sizes.
const (
	DefaultPageSize = 100
	MaxModelPage    = 1000
	MaxVersionPage  = 10000
)

// Service implements the registry operations over a Store. It is safe for
// concurrent use.
type Service struct {
	store  Store
	clock  func() time.Time
	served ServedChecker
	blobs  BlobChecker
	notify Notifier
	log    *slog.Logger
}

// NewService returns a Service over store.
func NewService(store Store, opts Options) *Service {
	s := &Service{store: store, clock: opts.Clock, served: opts.Served, blobs: opts.Blobs, notify: opts.Notifier, log: opts.Logger}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Store returns the underlying store.
func (s *Service) Store() Store { return s.store }

func (s *Service) now() time.Time { return s.clock().UTC().Truncate(time.Microsecond) }

func (s *Service) emit(ctx context.Context, e Event) {
	if s.notify != nil {
		s.notify.Notify(ctx, e)
	}
}

func checkActor(actor string) (string, error) {
	actor = strings.TrimSpace(actor)
	if actor == "" {
		actor = "anonymous"
	}
	if err := validateText("actor", actor, MaxActorLen); err != nil {
		return "", err
	}
	return actor, nil
}

// CreateModelInput describes a new registered model.
type CreateModelInput struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Tags        map[string]string `json:"tags"`
	// Gates are promotion rules per target stage; each is checked by ParseGate.
	Gates map[Stage][]string `json:"gates"`
}

// CreateModel registers a new model; ErrAlreadyExists if the name is taken.
func (s *Service) CreateModel(ctx context.Context, actor string, in CreateModelInput) (RegisteredModel, error) {
	actor, err := checkActor(actor)
	if err != nil {
		return RegisteredModel{}, err
	}
	if err := ValidateModelName(in.Name); err != nil {
		return RegisteredModel{}, err
	}
	if err := validateText("description", in.Description, MaxDescriptionLen); err != nil {
		return RegisteredModel{}, err
	}
	if err := validateTags("tag", in.Tags); err != nil {
		return RegisteredModel{}, err
	}
	if err := validateGates(in.Gates); err != nil {
		return RegisteredModel{}, err
	}
	now := s.now()
	m := RegisteredModel{
		Name: in.Name, Description: in.Description, Tags: cloneMap(in.Tags), Aliases: map[string]int64{},
		Gates: cleanGates(in.Gates), CreatedBy: actor, CreatedAt: now, UpdatedBy: actor, UpdatedAt: now,
	}
	if err := s.store.CreateModel(ctx, m); err != nil {
		return RegisteredModel{}, err
	}
	s.emit(ctx, Event{Kind: EventModelCreated, Model: m.Name, Actor: actor, At: now})
	return s.store.GetModel(ctx, m.Name)
}

// GetModel returns a model with its aliases and latest versions.
func (s *Service) GetModel(ctx context.Context, name string) (RegisteredModel, error) {
	if err := ValidateModelName(name); err != nil {
		return RegisteredModel{}, fmt.Errorf("%w: model %q (%v)", ErrNotFound, name, err)
	}
	return s.store.GetModel(ctx, name)
}

// UpdateModel changes a model's description, tags or stored gates.
func (s *Service) UpdateModel(ctx context.Context, actor, name string, upd ModelUpdate) (RegisteredModel, error) {
	actor, err := checkActor(actor)
	if err != nil {
		return RegisteredModel{}, err
	}
	if err := ValidateModelName(name); err != nil {
		return RegisteredModel{}, err
	}
	if upd.Description != nil {
		if err := validateText("description", *upd.Description, MaxDescriptionLen); err != nil {
			return RegisteredModel{}, err
		}
	}
	if err := validateTags("tag", upd.SetTags); err != nil {
		return RegisteredModel{}, err
	}
	for _, k := range upd.DeleteTags {
		if err := ValidateKey("tag", k); err != nil {
			return RegisteredModel{}, err
		}
	}
	if err := validateGates(upd.Gates); err != nil {
		return RegisteredModel{}, err
	}
	now := s.now()
	m, err := s.store.UpdateModel(ctx, name, upd, actor, now)
	if err != nil {
		return RegisteredModel{}, err
	}
	s.emit(ctx, Event{Kind: EventModelUpdated, Model: name, Actor: actor, At: now})
	return m, nil
}

// RenameModel renames a model; its versions, aliases and history follow.
func (s *Service) RenameModel(ctx context.Context, actor, from, to string) (RegisteredModel, error) {
	actor, err := checkActor(actor)
	if err != nil {
		return RegisteredModel{}, err
	}
	if err := ValidateModelName(from); err != nil {
		return RegisteredModel{}, err
	}
	if err := ValidateModelName(to); err != nil {
		return RegisteredModel{}, err
	}
	if from == to {
		return s.store.GetModel(ctx, from)
	}
	now := s.now()
	if err := s.store.RenameModel(ctx, from, to, actor, now); err != nil {
		return RegisteredModel{}, err
	}
	s.emit(ctx, Event{Kind: EventModelRenamed, Model: to, From: from, Actor: actor, At: now})
	return s.store.GetModel(ctx, to)
}

// DeleteModel deletes a model with all its versions and history. It is
// refused (ErrPreconditionFailed) while the model has aliases or any of its
// versions is served.
func (s *Service) DeleteModel(ctx context.Context, actor, name string) error {
	actor, err := checkActor(actor)
	if err != nil {
		return err
	}
	m, err := s.GetModel(ctx, name)
	if err != nil {
		return err
	}
	if len(m.Aliases) > 0 {
		return fmt.Errorf("%w: model %q still has aliases (%s); delete them first", ErrPreconditionFailed, name, strings.Join(sortedKeys(m.Aliases), ", "))
	}
	if s.served != nil && m.LatestVersion > 0 {
		after := ""
		for {
			vs, next, err := s.store.SearchVersions(ctx, Query{
				Filter: &Expr{Logic: LogicCond, Cond: &Cond{Field: Field{Kind: FieldName}, Op: OpEq, Str: name}},
				Order:  []OrderKey{{Field: Field{Kind: FieldName}}, {Field: Field{Kind: FieldVersion}}},
				Limit:  MaxModelPage, After: after,
			})
			if err != nil {
				return err
			}
			for _, v := range vs {
				served, err := s.served.Served(ctx, name, v.Version)
				if err != nil {
					return fmt.Errorf("check whether %s version %d is served: %w", name, v.Version, err)
				}
				if served {
					return fmt.Errorf("%w: %s version %d is being served", ErrPreconditionFailed, name, v.Version)
				}
			}
			if next == "" {
				break
			}
			after = next
		}
	}
	if err := s.store.DeleteModel(ctx, name); err != nil {
		return err
	}
	s.emit(ctx, Event{Kind: EventModelDeleted, Model: name, Actor: actor, At: s.now()})
	return nil
}

// SearchQuery is a search request as the API receives it.
type SearchQuery struct {
	// Filter in the grammar documented at ParseFilter ("" = everything).
	Filter string
	// OrderBy clauses, e.g. "name ASC", "version_number DESC".
	OrderBy []string
	// MaxResults is the page size; 0 = DefaultPageSize.
	MaxResults int
	// PageToken continues a previous search with the same Filter and OrderBy.
	PageToken string
}

// ModelPage is one page of models.
type ModelPage struct {
	Models        []RegisteredModel `json:"models"`
	NextPageToken string            `json:"next_page_token,omitempty"`
}

// VersionPage is one page of versions.
type VersionPage struct {
	Versions      []ModelVersion `json:"versions"`
	NextPageToken string         `json:"next_page_token,omitempty"`
}

// SearchModels lists models matching the query, one page at a time.
func (s *Service) SearchModels(ctx context.Context, q SearchQuery) (ModelPage, error) {
	sq, fp, err := prepareQuery(TargetModels, q, MaxModelPage)
	if err != nil {
		return ModelPage{}, err
	}
	ms, next, err := s.store.SearchModels(ctx, sq)
	if err != nil {
		return ModelPage{}, err
	}
	if ms == nil {
		ms = []RegisteredModel{}
	}
	return ModelPage{Models: ms, NextPageToken: encodeToken(fp, next)}, nil
}

// SearchVersions lists versions matching the query, one page at a time.
func (s *Service) SearchVersions(ctx context.Context, q SearchQuery) (VersionPage, error) {
	sq, fp, err := prepareQuery(TargetVersions, q, MaxVersionPage)
	if err != nil {
		return VersionPage{}, err
	}
	vs, next, err := s.store.SearchVersions(ctx, sq)
	if err != nil {
		return VersionPage{}, err
	}
	if vs == nil {
		vs = []ModelVersion{}
	}
	return VersionPage{Versions: vs, NextPageToken: encodeToken(fp, next)}, nil
}

func prepareQuery(target Target, q SearchQuery, maxPage int) (Query, string, error) {
	f, err := ParseFilter(target, q.Filter)
	if err != nil {
		return Query{}, "", err
	}
	order, err := ParseOrder(target, q.OrderBy)
	if err != nil {
		return Query{}, "", err
	}
	limit := q.MaxResults
	switch {
	case limit == 0:
		limit = DefaultPageSize
	case limit < 0 || limit > maxPage:
		return Query{}, "", fmt.Errorf("%w: max_results %d is out of range 1..%d", ErrInvalid, limit, maxPage)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00%s\x00", target, f.String())
	for _, k := range order {
		fmt.Fprintf(h, "%s %t\x00", k.Field, k.Desc)
	}
	fp := hex.EncodeToString(h.Sum(nil)[:8])
	after, err := decodeToken(fp, q.PageToken)
	if err != nil {
		return Query{}, "", err
	}
	return Query{Filter: f, Order: order, Limit: limit, After: after}, fp, nil
}

type pageToken struct {
	Q string `json:"q"`
	C string `json:"c"`
}

func encodeToken(fp, cursor string) string {
	if cursor == "" {
		return ""
	}
	b, _ := json.Marshal(pageToken{Q: fp, C: cursor})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(fp, tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	if len(tok) > 4096 {
		return "", fmt.Errorf("%w: page token too long", ErrInvalid)
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return "", fmt.Errorf("%w: malformed page token", ErrInvalid)
	}
	var t pageToken
	if err := json.Unmarshal(b, &t); err != nil || t.C == "" {
		return "", fmt.Errorf("%w: malformed page token", ErrInvalid)
	}
	if t.Q != fp {
		return "", fmt.Errorf("%w: page token belongs to a search with another filter or order", ErrInvalid)
	}
	return t.C, nil
}

// CreateVersionInput describes a new model version.
type CreateVersionInput struct {
	Model       string            `json:"model"`
	Artifact    Artifact          `json:"artifact"`
	Signature   Signature         `json:"signature"`
	Metrics     map[string]Metric `json:"metrics"`
	Params      map[string]string `json:"params"`
	Tags        map[string]string `json:"tags"`
	Lineage     Lineage           `json:"lineage"`
	Source      string            `json:"source"`
	RunID       string            `json:"run_id"`
	RunLink     string            `json:"run_link"`
	Description string            `json:"description"`
	// IdempotencyKey makes a retried create return the first version
	// instead of making a second (same key, other content: ErrConflict).
	IdempotencyKey string `json:"idempotency_key"`
}

func (in *CreateVersionInput) validate() error {
	if err := ValidateModelName(in.Model); err != nil {
		return err
	}
	a := in.Artifact
	if err := ValidateDigest(a.Digest); err != nil {
		return err
	}
	if a.Size < 0 {
		return fmt.Errorf("%w: artifact size %d is negative", ErrInvalid, a.Size)
	}
	if a.Format != "" && (len(a.Format) > 64 || !formatRE.MatchString(a.Format)) {
		return fmt.Errorf("%w: artifact format %q: want lowercase letters, digits, '.', '_' or '-'", ErrInvalid, a.Format)
	}
	for kind, specs := range map[string][]TensorSpec{"input": in.Signature.Inputs, "output": in.Signature.Outputs} {
		if len(specs) > 1024 {
			return fmt.Errorf("%w: more than 1024 %s tensors in the signature", ErrInvalid, kind)
		}
		seen := map[string]bool{}
		for _, t := range specs {
			if t.Name == "" || len(t.Name) > 256 || !utf8Valid(t.Name) {
				return fmt.Errorf("%w: signature %s tensor name %q: want 1..256 bytes of UTF-8", ErrInvalid, kind, t.Name)
			}
			if seen[t.Name] {
				return fmt.Errorf("%w: signature names %s tensor %q twice", ErrInvalid, kind, t.Name)
			}
			seen[t.Name] = true
			if len(t.Datatype) > 32 {
				return fmt.Errorf("%w: signature %s tensor %q: datatype too long", ErrInvalid, kind, t.Name)
			}
			if len(t.Shape) > 16 {
				return fmt.Errorf("%w: signature %s tensor %q has more than 16 dimensions", ErrInvalid, kind, t.Name)
			}
			for _, d := range t.Shape {
				if d < -1 {
					return fmt.Errorf("%w: signature %s tensor %q: dimension %d (want -1 for variable or >= 0)", ErrInvalid, kind, t.Name, d)
				}
			}
		}
	}
	if len(in.Metrics) > 1000 {
		return fmt.Errorf("%w: more than 1000 metrics", ErrInvalid)
	}
	for k, m := range in.Metrics {
		if err := ValidateKey("metric", k); err != nil {
			return err
		}
		if math.IsNaN(m.Value) || math.IsInf(m.Value, 0) {
			return fmt.Errorf("%w: metric %q is not a finite number", ErrInvalid, k)
		}
		if m.Direction != HigherIsBetter && m.Direction != LowerIsBetter {
			return fmt.Errorf("%w: metric %q needs a direction, higher or lower (got %q)", ErrInvalid, k, m.Direction)
		}
	}
	if len(in.Params) > 1000 {
		return fmt.Errorf("%w: more than 1000 params", ErrInvalid)
	}
	for k, v := range in.Params {
		if err := ValidateKey("param", k); err != nil {
			return err
		}
		if err := validateText("param "+k, v, MaxParamValueLen); err != nil {
			return err
		}
	}
	if err := validateTags("tag", in.Tags); err != nil {
		return err
	}
	if err := validateText("pipeline run id", in.Lineage.PipelineRunID, 256); err != nil {
		return err
	}
	if len(in.Lineage.DatasetDigests) > 100 {
		return fmt.Errorf("%w: more than 100 dataset digests", ErrInvalid)
	}
	for _, d := range in.Lineage.DatasetDigests {
		if d == "" || len(d) > 256 || !utf8Valid(d) {
			return fmt.Errorf("%w: dataset digest %q: want 1..256 bytes", ErrInvalid, d)
		}
	}
	for _, f := range []struct {
		name  string
		v     string
		limit int
	}{
		{"source", in.Source, MaxSourceLen}, {"run id", in.RunID, 256}, {"run link", in.RunLink, MaxSourceLen},
		{"description", in.Description, MaxDescriptionLen}, {"idempotency key", in.IdempotencyKey, MaxIdempotencyLen},
	} {
		if err := validateText(f.name, f.v, f.limit); err != nil {
			return err
		}
	}
	return nil
}

// contentDigest hashes everything a create request carries, so a retry
// with the same idempotency key can be told apart from a different request.
func (in *CreateVersionInput) contentDigest() string {
	c := *in
	c.IdempotencyKey = ""
	b, _ := json.Marshal(c) // maps marshal with sorted keys: canonical
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// CreateVersion registers a new version of an existing model. created is
// false when an earlier create with the same idempotency key is returned.
// With a BlobChecker, a missing artifact blob is ErrPreconditionFailed.
func (s *Service) CreateVersion(ctx context.Context, actor string, in CreateVersionInput) (ModelVersion, bool, error) {
	actor, err := checkActor(actor)
	if err != nil {
		return ModelVersion{}, false, err
	}
	if err := in.validate(); err != nil {
		return ModelVersion{}, false, err
	}
	if s.blobs != nil {
		ok, err := s.blobs.Has(ctx, in.Artifact.Digest)
		if err != nil {
			return ModelVersion{}, false, fmt.Errorf("check artifact %s: %w", in.Artifact.Digest, err)
		}
		if !ok {
			return ModelVersion{}, false, fmt.Errorf("%w: artifact %s is not in the artifact store; upload it first", ErrPreconditionFailed, in.Artifact.Digest)
		}
	}
	now := s.now()
	v := ModelVersion{
		Model: in.Model, Artifact: in.Artifact, Signature: in.Signature,
		Metrics: cloneMap(in.Metrics), Params: cloneMap(in.Params), Tags: cloneMap(in.Tags),
		Lineage: in.Lineage, Source: in.Source, RunID: in.RunID, RunLink: in.RunLink,
		Status: StatusReady, Description: in.Description, Stage: StageDevelopment,
		CreatedBy: actor, CreatedAt: now, UpdatedBy: actor, UpdatedAt: now,
		IdempotencyKey: in.IdempotencyKey, ContentDigest: in.contentDigest(),
	}
	out, created, err := s.store.CreateVersion(ctx, v)
	if err != nil {
		return ModelVersion{}, false, err
	}
	if created {
		s.emit(ctx, Event{Kind: EventVersionCreated, Model: out.Model, Version: out.Version, To: string(StageDevelopment), Actor: actor, At: now})
	}
	return out, created, nil
}

// GetVersion returns one version.
func (s *Service) GetVersion(ctx context.Context, model string, version int64) (ModelVersion, error) {
	if err := ValidateModelName(model); err != nil {
		return ModelVersion{}, fmt.Errorf("%w: model %q (%v)", ErrNotFound, model, err)
	}
	if version <= 0 {
		return ModelVersion{}, fmt.Errorf("%w: version %d (versions start at 1)", ErrInvalid, version)
	}
	return s.store.GetVersion(ctx, model, version)
}

// UpdateVersion changes a version's description or tags (the rest of a
// version is immutable).
func (s *Service) UpdateVersion(ctx context.Context, actor, model string, version int64, upd VersionUpdate) (ModelVersion, error) {
	actor, err := checkActor(actor)
	if err != nil {
		return ModelVersion{}, err
	}
	if _, err := s.GetVersion(ctx, model, version); err != nil {
		return ModelVersion{}, err
	}
	if upd.Description != nil {
		if err := validateText("description", *upd.Description, MaxDescriptionLen); err != nil {
			return ModelVersion{}, err
		}
	}
	if err := validateTags("tag", upd.SetTags); err != nil {
		return ModelVersion{}, err
	}
	for _, k := range upd.DeleteTags {
		if err := ValidateKey("tag", k); err != nil {
			return ModelVersion{}, err
		}
	}
	now := s.now()
	v, err := s.store.UpdateVersion(ctx, model, version, upd, actor, now)
	if err != nil {
		return ModelVersion{}, err
	}
	s.emit(ctx, Event{Kind: EventVersionUpdated, Model: model, Version: version, Actor: actor, At: now})
	return v, nil
}

// DeleteVersion deletes a version. It is refused with ErrPreconditionFailed
// while an alias points at the version or the version is served. The
// version's number is never reused; its transitions stay in the history,
// followed by one to "" that records the deletion.
func (s *Service) DeleteVersion(ctx context.Context, actor, model string, version int64) error {
	actor, err := checkActor(actor)
	if err != nil {
		return err
	}
	v, err := s.GetVersion(ctx, model, version)
	if err != nil {
		return err
	}
	if len(v.Aliases) > 0 {
		return fmt.Errorf("%w: %s version %d is aliased as %s; move or delete the alias first", ErrPreconditionFailed, model, version, strings.Join(v.Aliases, ", "))
	}
	if s.served != nil {
		served, err := s.served.Served(ctx, model, version)
		if err != nil {
			return fmt.Errorf("check whether %s version %d is served: %w", model, version, err)
		}
		if served {
			return fmt.Errorf("%w: %s version %d is being served; unload it first", ErrPreconditionFailed, model, version)
		}
	}
	now := s.now()
	if err := s.store.DeleteVersion(ctx, model, version, actor, now); err != nil {
		return err
	}
	s.emit(ctx, Event{Kind: EventVersionDeleted, Model: model, Version: version, From: string(v.Stage), Actor: actor, At: now})
	return nil
}

// LatestVersions returns, for each requested stage (all stages if none),
// the highest-numbered version in that stage, in lifecycle order; stages
// without versions are left out (MLflow's get-latest-versions).
func (s *Service) LatestVersions(ctx context.Context, model string, stages []Stage) ([]ModelVersion, error) {
	m, err := s.GetModel(ctx, model)
	if err != nil {
		return nil, err
	}
	for _, st := range stages {
		if !st.Valid() {
			return nil, fmt.Errorf("%w: unknown stage %q", ErrInvalid, st)
		}
	}
	out := []ModelVersion{}
	for _, v := range m.LatestVersions {
		if len(stages) == 0 || slices.Contains(stages, v.Stage) {
			out = append(out, v)
		}
	}
	return out, nil
}

// SetAliasInput points an alias at a version.
type SetAliasInput struct {
	Model   string `json:"model"`
	Alias   string `json:"alias"`
	Version int64  `json:"version"`
	// ExpectedVersion makes the change a compare-and-swap: it succeeds only
	// if the alias currently points at this version (0: does not exist yet);
	// otherwise ErrConflict. nil = unconditional.
	ExpectedVersion *int64 `json:"expected_version,omitempty"`
	Reason          string `json:"reason,omitempty"`
}

// SetAlias creates or moves an alias and records the change in the alias
// history.
func (s *Service) SetAlias(ctx context.Context, actor string, in SetAliasInput) (Alias, error) {
	actor, err := checkActor(actor)
	if err != nil {
		return Alias{}, err
	}
	if err := ValidateModelName(in.Model); err != nil {
		return Alias{}, err
	}
	if err := ValidateAlias(in.Alias); err != nil {
		return Alias{}, err
	}
	if err := validateText("reason", in.Reason, MaxReasonLen); err != nil {
		return Alias{}, err
	}
	if in.Version <= 0 {
		return Alias{}, fmt.Errorf("%w: version %d (versions start at 1)", ErrInvalid, in.Version)
	}
	if in.ExpectedVersion != nil && *in.ExpectedVersion < 0 {
		return Alias{}, fmt.Errorf("%w: expected version %d", ErrInvalid, *in.ExpectedVersion)
	}
	now := s.now()
	a, err := s.store.SetAlias(ctx, AliasChange{Model: in.Model, Alias: in.Alias, Version: in.Version,
		Expected: in.ExpectedVersion, Actor: actor, Reason: in.Reason, At: now})
	if err != nil {
		return Alias{}, err
	}
	s.emit(ctx, Event{Kind: EventAliasSet, Model: in.Model, Version: in.Version, Alias: in.Alias, Actor: actor, At: now})
	return a, nil
}

// GetAlias returns an alias.
func (s *Service) GetAlias(ctx context.Context, model, alias string) (Alias, error) {
	if err := ValidateModelName(model); err != nil {
		return Alias{}, fmt.Errorf("%w: model %q (%v)", ErrNotFound, model, err)
	}
	if err := ValidateAlias(alias); err != nil {
		return Alias{}, fmt.Errorf("%w: alias %q (%v)", ErrNotFound, alias, err)
	}
	return s.store.GetAlias(ctx, model, alias)
}

// VersionByAlias returns the version an alias points at.
func (s *Service) VersionByAlias(ctx context.Context, model, alias string) (ModelVersion, error) {
	a, err := s.GetAlias(ctx, model, alias)
	if err != nil {
		return ModelVersion{}, err
	}
	return s.store.GetVersion(ctx, model, a.Version)
}

// DeleteAliasInput removes an alias.
type DeleteAliasInput struct {
	Model string `json:"model"`
	Alias string `json:"alias"`
	// ExpectedVersion: delete only if the alias points at this version.
	ExpectedVersion *int64 `json:"expected_version,omitempty"`
	Reason          string `json:"reason,omitempty"`
}

// DeleteAlias removes an alias (ErrNotFound if absent) and records it.
func (s *Service) DeleteAlias(ctx context.Context, actor string, in DeleteAliasInput) error {
	actor, err := checkActor(actor)
	if err != nil {
		return err
	}
	if err := ValidateModelName(in.Model); err != nil {
		return err
	}
	if err := ValidateAlias(in.Alias); err != nil {
		return err
	}
	if err := validateText("reason", in.Reason, MaxReasonLen); err != nil {
		return err
	}
	now := s.now()
	if err := s.store.DeleteAlias(ctx, AliasChange{Model: in.Model, Alias: in.Alias, Expected: in.ExpectedVersion,
		Actor: actor, Reason: in.Reason, At: now}); err != nil {
		return err
	}
	s.emit(ctx, Event{Kind: EventAliasDeleted, Model: in.Model, Alias: in.Alias, Actor: actor, At: now})
	return nil
}

// TransitionInput asks to move a version to a stage.
type TransitionInput struct {
	Model   string `json:"model"`
	Version int64  `json:"version"`
	To      Stage  `json:"to"`
	// ArchiveExisting moves the other versions in To to archived in the
	// same transaction (MLflow's archive_existing_versions).
	ArchiveExisting bool `json:"archive_existing"`
	// Gates are extra rules for this call, checked with the model's stored
	// gates for To.
	Gates []string `json:"gates,omitempty"`
	// SkipStoredGates ignores the model's stored gates (Gates still apply).
	SkipStoredGates bool   `json:"skip_stored_gates,omitempty"`
	Reason          string `json:"reason,omitempty"`
}

// TransitionResult is the outcome of a successful transition.
type TransitionResult struct {
	Version     ModelVersion `json:"version"`
	Transitions []Transition `json:"transitions"`
	Gates       []GateResult `json:"gates"`
}

// Transition moves a version to another stage after checking the promotion
// gates (the model's stored rules for the target stage plus in.Gates). A
// failed gate returns a *GateError wrapping ErrPreconditionFailed. If
// another promotion changes the target stage between the gate check and the
// write, ErrConflict is returned and nothing changes.
func (s *Service) Transition(ctx context.Context, actor string, in TransitionInput) (TransitionResult, error) {
	actor, err := checkActor(actor)
	if err != nil {
		return TransitionResult{}, err
	}
	if !in.To.Valid() {
		return TransitionResult{}, fmt.Errorf("%w: unknown stage %q", ErrInvalid, in.To)
	}
	if err := validateText("reason", in.Reason, MaxReasonLen); err != nil {
		return TransitionResult{}, err
	}
	v, err := s.GetVersion(ctx, in.Model, in.Version)
	if err != nil {
		return TransitionResult{}, err
	}
	results, holders, err := s.evalGates(ctx, v, in.To, in.Gates, in.SkipStoredGates)
	if err != nil {
		return TransitionResult{}, err
	}
	for _, r := range results {
		if !r.Passed {
			return TransitionResult{}, &GateError{Model: in.Model, Version: in.Version, To: in.To, Results: results}
		}
	}
	expect := []int64{}
	for _, h := range holders {
		if h.Version != v.Version {
			expect = append(expect, h.Version)
		}
	}
	now := s.now()
	mv, ts, err := s.store.Transition(ctx, StageChange{Model: in.Model, Version: in.Version, To: in.To,
		ArchiveExisting: in.ArchiveExisting, ExpectHolders: expect, ExpectFrom: v.Stage,
		Actor: actor, Reason: in.Reason, At: now})
	if err != nil {
		return TransitionResult{}, err
	}
	for _, t := range ts {
		s.emit(ctx, Event{Kind: EventStageChanged, Model: t.Model, Version: t.Version, From: string(t.From), To: string(t.To), Actor: actor, At: now})
	}
	if ts == nil {
		ts = []Transition{}
	}
	return TransitionResult{Version: mv, Transitions: ts, Gates: results}, nil
}

// CheckGates evaluates the promotion gates of moving a version to a stage
// without moving it (a dry run of Transition).
func (s *Service) CheckGates(ctx context.Context, model string, version int64, to Stage, extra []string) ([]GateResult, error) {
	if !to.Valid() {
		return nil, fmt.Errorf("%w: unknown stage %q", ErrInvalid, to)
	}
	v, err := s.GetVersion(ctx, model, version)
	if err != nil {
		return nil, err
	}
	results, _, err := s.evalGates(ctx, v, to, extra, false)
	return results, err
}

// evalGates evaluates the rules for moving v to `to` and returns the
// results and the current holders of `to`.
func (s *Service) evalGates(ctx context.Context, v ModelVersion, to Stage, extra []string, skipStored bool) ([]GateResult, []ModelVersion, error) {
	var rules []string
	if !skipStored {
		m, err := s.store.GetModel(ctx, v.Model)
		if err != nil {
			return nil, nil, err
		}
		rules = append(rules, m.Gates[to]...)
	}
	rules = append(rules, extra...)
	gates := make([]*Gate, 0, len(rules))
	need := map[Stage]bool{to: true}
	for _, r := range rules {
		g, err := ParseGate(r)
		if err != nil {
			return nil, nil, err
		}
		gates = append(gates, g)
		for _, st := range g.Stages() {
			need[st] = true
		}
	}
	env := GateEnv{Candidate: v.Metrics, Holders: map[Stage]ModelVersion{}}
	var toHolders []ModelVersion
	for st := range need {
		hs, err := s.store.StageHolders(ctx, v.Model, st)
		if err != nil {
			return nil, nil, err
		}
		if st == to {
			toHolders = hs
		}
		for _, h := range hs {
			if h.Version != v.Version {
				env.Holders[st] = h
				break
			}
		}
	}
	results := make([]GateResult, 0, len(gates))
	for _, g := range gates {
		results = append(results, g.Eval(env))
	}
	return results, toHolders, nil
}

// MetricDiff compares one metric of two versions.
type MetricDiff struct {
	Name      string    `json:"name"`
	A         *float64  `json:"a"`
	B         *float64  `json:"b"`
	Delta     *float64  `json:"delta"` // B - A when both exist
	Direction Direction `json:"direction"`
	// Verdict judges B against A in the declared direction: improved,
	// regressed, unchanged; only_a / only_b when one side lacks it;
	// direction_mismatch when the two versions declare different directions.
	Verdict string `json:"verdict"`
}

// ParamDiff is a param whose value differs (nil: absent on that side).
type ParamDiff struct {
	Name string  `json:"name"`
	A    *string `json:"a"`
	B    *string `json:"b"`
}

// TensorDiff is a signature tensor that differs between A and B.
type TensorDiff struct {
	Kind   string      `json:"kind"` // input or output
	Name   string      `json:"name"`
	Change string      `json:"change"` // added, removed, changed
	A      *TensorSpec `json:"a,omitempty"`
	B      *TensorSpec `json:"b,omitempty"`
}

// Comparison is the difference from version A to version B of one model.
type Comparison struct {
	Model            string       `json:"model"`
	A                int64        `json:"a"`
	B                int64        `json:"b"`
	Metrics          []MetricDiff `json:"metrics"`
	Params           []ParamDiff  `json:"params"`
	SignatureChanged bool         `json:"signature_changed"`
	Signature        []TensorDiff `json:"signature"`
	ArtifactChanged  bool         `json:"artifact_changed"`
}

// Compare diffs two versions of a model: metric deltas judged by each
// metric's declared direction, differing params and signature changes.
func (s *Service) Compare(ctx context.Context, model string, a, b int64) (Comparison, error) {
	va, err := s.GetVersion(ctx, model, a)
	if err != nil {
		return Comparison{}, err
	}
	vb, err := s.GetVersion(ctx, model, b)
	if err != nil {
		return Comparison{}, err
	}
	return CompareVersions(va, vb), nil
}

// CompareVersions diffs two versions (see Service.Compare).
func CompareVersions(va, vb ModelVersion) Comparison {
	c := Comparison{Model: va.Model, A: va.Version, B: vb.Version, Metrics: []MetricDiff{}, Params: []ParamDiff{}, Signature: []TensorDiff{}}
	for _, name := range unionKeys(va.Metrics, vb.Metrics) {
		ma, okA := va.Metrics[name]
		mb, okB := vb.Metrics[name]
		d := MetricDiff{Name: name}
		switch {
		case okA && okB:
			x, y := ma.Value, mb.Value
			delta := y - x
			d.A, d.B, d.Delta, d.Direction = &x, &y, &delta, mb.Direction
			switch {
			case ma.Direction != mb.Direction:
				d.Verdict = "direction_mismatch"
			case x == y:
				d.Verdict = "unchanged"
			case mb.Direction.Better(y, x):
				d.Verdict = "improved"
			default:
				d.Verdict = "regressed"
			}
		case okA:
			x := ma.Value
			d.A, d.Direction, d.Verdict = &x, ma.Direction, "only_a"
		default:
			y := mb.Value
			d.B, d.Direction, d.Verdict = &y, mb.Direction, "only_b"
		}
		c.Metrics = append(c.Metrics, d)
	}
	for _, name := range unionKeys(va.Params, vb.Params) {
		pa, okA := va.Params[name]
		pb, okB := vb.Params[name]
		if okA && okB && pa == pb {
			continue
		}
		d := ParamDiff{Name: name}
		if okA {
			d.A = &pa
		}
		if okB {
			d.B = &pb
		}
		c.Params = append(c.Params, d)
	}
	c.Signature = append(diffTensors("input", va.Signature.Inputs, vb.Signature.Inputs),
		diffTensors("output", va.Signature.Outputs, vb.Signature.Outputs)...)
	c.SignatureChanged = len(c.Signature) > 0
	c.ArtifactChanged = va.Artifact.Digest != vb.Artifact.Digest
	return c
}

func diffTensors(kind string, a, b []TensorSpec) []TensorDiff {
	ia := map[string]TensorSpec{}
	for _, t := range a {
		ia[t.Name] = t
	}
	ib := map[string]TensorSpec{}
	for _, t := range b {
		ib[t.Name] = t
	}
	out := []TensorDiff{}
	for _, name := range unionKeys(ia, ib) {
		ta, okA := ia[name]
		tb, okB := ib[name]
		switch {
		case okA && okB:
			if ta.Datatype != tb.Datatype || !slices.Equal(ta.Shape, tb.Shape) {
				out = append(out, TensorDiff{Kind: kind, Name: name, Change: "changed", A: &ta, B: &tb})
			}
		case okA:
			out = append(out, TensorDiff{Kind: kind, Name: name, Change: "removed", A: &ta})
		default:
			out = append(out, TensorDiff{Kind: kind, Name: name, Change: "added", B: &tb})
		}
	}
	return out
}

// History returns a model's stage transitions, oldest first, narrowed by q
// (a version, an instant: entries at or before q.Until, a limit on the
// newest entries).
func (s *Service) History(ctx context.Context, model string, q HistoryQuery) ([]Transition, error) {
	if _, err := s.GetModel(ctx, model); err != nil {
		return nil, err
	}
	if q.Limit < 0 {
		return nil, fmt.Errorf("%w: limit %d", ErrInvalid, q.Limit)
	}
	ts, err := s.store.Transitions(ctx, model, HistoryQuery{Version: q.Version, Until: q.Until, Limit: q.Limit})
	if ts == nil && err == nil {
		ts = []Transition{}
	}
	return ts, err
}

// AliasHistory returns a model's alias events (of one alias if q.Alias is
// set), oldest first.
func (s *Service) AliasHistory(ctx context.Context, model string, q HistoryQuery) ([]AliasEvent, error) {
	if _, err := s.GetModel(ctx, model); err != nil {
		return nil, err
	}
	if q.Alias != "" {
		if err := ValidateAlias(q.Alias); err != nil {
			return nil, err
		}
	}
	if q.Limit < 0 {
		return nil, fmt.Errorf("%w: limit %d", ErrInvalid, q.Limit)
	}
	es, err := s.store.AliasEvents(ctx, model, HistoryQuery{Alias: q.Alias, Until: q.Until, Limit: q.Limit})
	if es == nil && err == nil {
		es = []AliasEvent{}
	}
	return es, err
}

// StageAt answers "which versions held stage at time at": it replays the
// append-only transition history up to and including at. The result is
// sorted by version number, highest first (empty if none). Versions deleted
// since keep their place in the history.
func (s *Service) StageAt(ctx context.Context, model string, stage Stage, at time.Time) ([]int64, error) {
	if !stage.Valid() {
		return nil, fmt.Errorf("%w: unknown stage %q", ErrInvalid, stage)
	}
	ts, err := s.History(ctx, model, HistoryQuery{Until: at.UTC()})
	if err != nil {
		return nil, err
	}
	cur := map[int64]Stage{}
	for _, t := range ts {
		cur[t.Version] = t.To
	}
	out := []int64{}
	for v, st := range cur {
		if st == stage {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] > out[j] })
	return out, nil
}

// AliasAt answers "what did alias point to at time at" from the alias
// history; ErrNotFound if the alias did not exist then.
func (s *Service) AliasAt(ctx context.Context, model, alias string, at time.Time) (int64, error) {
	es, err := s.AliasHistory(ctx, model, HistoryQuery{Alias: alias, Until: at.UTC()})
	if err != nil {
		return 0, err
	}
	if len(es) == 0 || es[len(es)-1].To == 0 {
		return 0, fmt.Errorf("%w: alias %q of model %q did not exist at %s", ErrNotFound, alias, model, at.UTC().Format(time.RFC3339Nano))
	}
	return es[len(es)-1].To, nil
}

func validateGates(g map[Stage][]string) error {
	for st, rules := range g {
		if !st.Valid() {
			return fmt.Errorf("%w: gates for unknown stage %q", ErrInvalid, st)
		}
		if len(rules) > 32 {
			return fmt.Errorf("%w: more than 32 gate rules for %s", ErrInvalid, st)
		}
		for _, r := range rules {
			if _, err := ParseGate(r); err != nil {
				return err
			}
		}
	}
	return nil
}

func cleanGates(g map[Stage][]string) map[Stage][]string {
	out := map[Stage][]string{}
	for st, rules := range g {
		if len(rules) > 0 {
			out[st] = slices.Clone(rules)
		}
	}
	return out
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func unionKeys[V any](a, b map[string]V) []string {
	seen := map[string]bool{}
	var out []string
	for k := range a {
		seen[k] = true
		out = append(out, k)
	}
	for k := range b {
		if !seen[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// IsGateError reports whether err is a failed promotion gate and returns it.
func IsGateError(err error) (*GateError, bool) {
	var g *GateError
	ok := errors.As(err, &g)
	return g, ok
}
