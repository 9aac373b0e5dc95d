// Package registry provides Kiln's model registry: the domain (registered
// models, immutable model versions with checksummed artifacts, metrics with a
// declared direction, lineage, stages, aliases and an append-only history of
// stage transitions and alias moves), the Store interface that persists it,
// and the Service that implements the operations on top of a Store:
// validation, idempotent registration, promotion gates, compare, "what was
// live at time T" and delete refusal.
//
// The package imports no HTTP and no storage implementation; stores live in
// registry/sqlstore and are checked by the registry/registrytest suite.
package registry

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Sentinel errors. Every error returned by the Service and by a Store wraps
// one of them; callers test with errors.Is and map them to protocol status
// codes at the API edge.
var (
	// ErrNotFound: the model, version or alias does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a model with that name already exists.
	ErrAlreadyExists = errors.New("already exists")
	// ErrConflict: the change conflicts with the current state: a
	// compare-and-swap saw another value, an idempotency key was reused with
	// different content, or a concurrent promotion changed the stage first.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the request itself is malformed (bad name, bad filter,
	// unknown stage, bad metric direction, bad page token, ...).
	ErrInvalid = errors.New("invalid")
	// ErrPreconditionFailed: the request is well formed but a precondition of
	// the registry does not hold: a promotion gate failed, the artifact blob
	// is missing, or the version is aliased or served and cannot be deleted.
	ErrPreconditionFailed = errors.New("precondition failed")
)

// Stage is a lifecycle stage of a model version.
type Stage string

// The four stages. A new version starts in StageDevelopment (MLflow's "None").
const (
	StageDevelopment Stage = "development"
	StageStaging     Stage = "staging"
	StageProduction  Stage = "production"
	StageArchived    Stage = "archived"
)

// Stages lists every stage in lifecycle order.
var stages = [...]Stage{StageDevelopment, StageStaging, StageProduction, StageArchived}

// Stages returns every stage in lifecycle order.
func Stages() []Stage { s := stages; return s[:] }

// ParseStage accepts a stage name in any letter case, including MLflow's
// names ("None", "Staging", "Production", "Archived").
func ParseStage(s string) (Stage, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "development", "dev", "none":
		return StageDevelopment, nil
	case "staging":
		return StageStaging, nil
	case "production", "prod":
		return StageProduction, nil
	case "archived":
		return StageArchived, nil
	}
	return "", fmt.Errorf("%w: unknown stage %q (want development, staging, production or archived)", ErrInvalid, s)
}

// Valid reports whether s is one of the four stages.
func (s Stage) Valid() bool {
	for _, v := range stages {
		if s == v {
			return true
		}
	}
	return false
}

// MLflowName is the stage's name in MLflow's API: None, Staging,
// Production, Archived.
func (s Stage) MLflowName() string {
	switch s {
	case StageStaging:
		return "Staging"
	case StageProduction:
		return "Production"
	case StageArchived:
		return "Archived"
	}
	return "None"
}

// Direction says whether a larger or a smaller value of a metric is better.
type Direction string

// Metric directions.
const (
	HigherIsBetter Direction = "higher"
	LowerIsBetter  Direction = "lower"
)

// ParseDirection accepts "higher"/"lower" (also "max"/"min", "up"/"down").
func ParseDirection(s string) (Direction, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "higher", "max", "up", "higher_is_better":
		return HigherIsBetter, nil
	case "lower", "min", "down", "lower_is_better":
		return LowerIsBetter, nil
	}
	return "", fmt.Errorf("%w: unknown metric direction %q (want higher or lower)", ErrInvalid, s)
}

// Metric is one evaluation result of a version with its declared direction.
type Metric struct {
	Value     float64   `json:"value"`
	Direction Direction `json:"direction"`
}

// Better reports whether value a is strictly better than b for this
// metric's direction.
func (d Direction) Better(a, b float64) bool {
	if d == LowerIsBetter {
		return a < b
	}
	return a > b
}

// Artifact identifies a version's model bytes in the content-addressed
// artifact store. Digest is "sha256:<64 hex>" of the blob, or of the manifest
// blob for a multi-file model (then Manifest is true).
type Artifact struct {
	Digest   string `json:"digest"`
	Size     int64  `json:"size"`
	Format   string `json:"format"`
	Manifest bool   `json:"manifest,omitempty"`
}

// TensorSpec describes one input or output tensor of a model.
type TensorSpec struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// Signature is a version's input/output schema.
type Signature struct {
	Inputs  []TensorSpec `json:"inputs,omitempty"`
	Outputs []TensorSpec `json:"outputs,omitempty"`
}

// Lineage links a version to what produced it.
type Lineage struct {
	PipelineRunID  string   `json:"pipeline_run_id,omitempty"`
	DatasetDigests []string `json:"dataset_digests,omitempty"`
}

// Status is a version's registration status (MLflow's ModelVersionStatus).
// Kiln registers synchronously: a stored version is always StatusReady.
type Status string

// Registration statuses.
const (
	StatusReady               Status = "READY"
	StatusPendingRegistration Status = "PENDING_REGISTRATION"
	StatusFailedRegistration  Status = "FAILED_REGISTRATION"
)

// RegisteredModel is a named model that owns versions, aliases and gates.
type RegisteredModel struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Tags        map[string]string `json:"tags"`
	// Aliases maps alias name to version number.
	Aliases map[string]int64 `json:"aliases"`
	// LatestVersion is the highest existing version number (0: none).
	LatestVersion int64 `json:"latest_version"`
	// LatestVersions holds, for every stage that has versions, the version
	// with the highest number in that stage (MLflow's latest_versions), in
	// lifecycle order of the stage.
	LatestVersions []ModelVersion `json:"latest_versions,omitempty"`
	// Gates are the promotion rules stored with the model, per target stage.
	Gates     map[Stage][]string `json:"gates,omitempty"`
	CreatedBy string             `json:"created_by"`
	CreatedAt time.Time          `json:"created_at"`
	UpdatedBy string             `json:"updated_by"`
	UpdatedAt time.Time          `json:"updated_at"`
}

// ModelVersion is one immutable registration of a model. Artifact,
// Signature, Metrics, Params, Lineage, Source, RunID and RunLink never change
// after creation; Description, Tags and Stage (through transitions) do.
type ModelVersion struct {
	Model         string            `json:"model"`
	Version       int64             `json:"version"`
	Artifact      Artifact          `json:"artifact"`
	Signature     Signature         `json:"signature"`
	Metrics       map[string]Metric `json:"metrics"`
	Params        map[string]string `json:"params"`
	Tags          map[string]string `json:"tags"`
	Lineage       Lineage           `json:"lineage"`
	Source        string            `json:"source,omitempty"`
	RunID         string            `json:"run_id,omitempty"`
	RunLink       string            `json:"run_link,omitempty"`
	Status        Status            `json:"status"`
	StatusMessage string            `json:"status_message,omitempty"`
	Description   string            `json:"description"`
	Stage         Stage             `json:"stage"`
	// Aliases are the model's aliases that point at this version, sorted.
	Aliases   []string  `json:"aliases"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedBy string    `json:"updated_by"`
	UpdatedAt time.Time `json:"updated_at"`
	// IdempotencyKey is the key the version was created with ("" if none).
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// ContentDigest is a sha256 over the immutable content, computed by the
	// Service; a retried create with the same idempotency key must match it.
	ContentDigest string `json:"content_digest,omitempty"`
}

// Alias is a mutable named pointer to a version, unique per model.
type Alias struct {
	Model     string    `json:"model"`
	Name      string    `json:"alias"`
	Version   int64     `json:"version"`
	UpdatedBy string    `json:"updated_by"`
	UpdatedAt time.Time `json:"updated_at"`
}

// AliasEvent is one append-only record of an alias change. From is 0 when
// the alias was created, To is 0 when it was deleted.
type AliasEvent struct {
	ID     int64     `json:"id"`
	Model  string    `json:"model"`
	Alias  string    `json:"alias"`
	From   int64     `json:"from"`
	To     int64     `json:"to"`
	Actor  string    `json:"actor"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// Transition is one append-only record of a version changing stage.
// Registration records a transition from "" to development; deleting a
// version records one from its stage to "" (reason "deleted").
type Transition struct {
	ID      int64     `json:"id"`
	Model   string    `json:"model"`
	Version int64     `json:"version"`
	From    Stage     `json:"from"`
	To      Stage     `json:"to"`
	Actor   string    `json:"actor"`
	At      time.Time `json:"at"`
	Reason  string    `json:"reason,omitempty"`
}

// Limits of names and values, MLflow's where it has one.
const (
	MaxNameLen        = 256
	MaxAliasLen       = 255
	MaxTagKeyLen      = 250
	MaxTagValueLen    = 5000
	MaxDescriptionLen = 5000
	MaxSourceLen      = 500
	MaxMetricKeyLen   = 250
	MaxParamValueLen  = 6000
	MaxTags           = 100
	MaxIdempotencyLen = 255
	MaxReasonLen      = 1000
	MaxActorLen       = 255
)

var (
	modelNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._\-]*$`)
	aliasRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_\-]*$`)
	reservedRE  = regexp.MustCompile(`^(?i)(latest|v[0-9]+)$`)
	keyRE       = regexp.MustCompile(`^[A-Za-z0-9_\-./: ]+$`)
	digestRE    = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	formatRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9._\-]*$`)
)

// ValidateModelName checks a registered model's name: 1..256 characters,
// letters, digits, '.', '_' and '-', starting with a letter or digit (a name
// is used in URL paths and in "name@alias" references, so no '/', '@', ':').
func ValidateModelName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: model name is empty", ErrInvalid)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: model name is %d bytes long, the limit is %d", ErrInvalid, len(name), MaxNameLen)
	}
	if !modelNameRE.MatchString(name) {
		return fmt.Errorf("%w: model name %q may hold only letters, digits, '.', '_' and '-' and must start with a letter or digit", ErrInvalid, name)
	}
	return nil
}

// ValidateAlias checks an alias name: 1..255 characters of letters, digits,
// '_' and '-', not starting with a digit or '-'; "latest" and "v<digits>"
// are reserved (as in MLflow).
func ValidateAlias(alias string) error {
	if alias == "" {
		return fmt.Errorf("%w: alias is empty", ErrInvalid)
	}
	if len(alias) > MaxAliasLen {
		return fmt.Errorf("%w: alias is %d bytes long, the limit is %d", ErrInvalid, len(alias), MaxAliasLen)
	}
	if !aliasRE.MatchString(alias) {
		return fmt.Errorf("%w: alias %q may hold only letters, digits, '_' and '-' and must start with a letter or '_'", ErrInvalid, alias)
	}
	if reservedRE.MatchString(alias) {
		return fmt.Errorf("%w: alias %q is reserved", ErrInvalid, alias)
	}
	return nil
}

// ValidateKey checks a tag, param or metric key.
func ValidateKey(kind, key string) error {
	if key == "" {
		return fmt.Errorf("%w: %s key is empty", ErrInvalid, kind)
	}
	if len(key) > MaxTagKeyLen {
		return fmt.Errorf("%w: %s key is %d bytes long, the limit is %d", ErrInvalid, kind, len(key), MaxTagKeyLen)
	}
	if !keyRE.MatchString(key) {
		return fmt.Errorf("%w: %s key %q may hold only letters, digits, spaces, '_', '-', '.', '/' and ':'", ErrInvalid, kind, key)
	}
	return nil
}

// ValidateDigest checks an artifact digest of the form sha256:<64 hex>.
func ValidateDigest(d string) error {
	if !digestRE.MatchString(d) {
		return fmt.Errorf("%w: artifact digest %q is not of the form sha256:<64 lowercase hex digits>", ErrInvalid, d)
	}
	return nil
}

func validateText(kind, s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("%w: %s is %d bytes long, the limit is %d", ErrInvalid, kind, len(s), limit)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, kind)
	}
	return nil
}

func validateTags(kind string, tags map[string]string) error {
	if len(tags) > MaxTags {
		return fmt.Errorf("%w: %d %ss, the limit is %d", ErrInvalid, len(tags), kind, MaxTags)
	}
	for k, v := range tags {
		if err := ValidateKey(kind, k); err != nil {
			return err
		}
		if err := validateText(kind+" "+k+" value", v, MaxTagValueLen); err != nil {
			return err
		}
	}
	return nil
}

func utf8Valid(s string) bool { return utf8.ValidString(s) }
