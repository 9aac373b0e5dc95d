package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"

	"github.com/goccy/go-yaml"

	"github.com/kilnai/kiln/internal/tensor"
)

// ErrInvalid marks a configuration that cannot be used.
var ErrInvalid = errors.New("invalid configuration")

// Model is a model's config.yaml. Every field is optional: what is missing
// is completed from the model file when the model loads.
type Model struct {
	// Name, when given, must equal the model's directory name.
	Name    string `yaml:"name,omitempty" json:"name,omitempty"`
	Backend string `yaml:"backend,omitempty" json:"backend,omitempty"`
	// MaxBatchSize > 0: dimension 0 of every input and output is a batch
	// dimension, excluded from Dims, and requests are batched up to it.
	// 0: no batching, Dims are the full shapes. Unset: from the model.
	MaxBatchSize    *int             `yaml:"max_batch_size,omitempty" json:"max_batch_size,omitempty"`
	Inputs          []TensorConfig   `yaml:"inputs,omitempty" json:"inputs,omitempty"`
	Outputs         []TensorConfig   `yaml:"outputs,omitempty" json:"outputs,omitempty"`
	Instances       int              `yaml:"instances,omitempty" json:"instances,omitempty"`
	DynamicBatching *DynamicBatching `yaml:"dynamic_batching,omitempty" json:"dynamic_batching,omitempty"`
	VersionPolicy   *VersionPolicy   `yaml:"version_policy,omitempty" json:"version_policy,omitempty"`
	Parameters      Params           `yaml:"parameters,omitempty" json:"parameters,omitempty"`
	// Warmup samples run on every instance before a version is READY.
	Warmup []Warmup `yaml:"warmup,omitempty" json:"warmup,omitempty"`
	// ResponseCache caches responses keyed by version and input tensors.
	ResponseCache bool `yaml:"response_cache,omitempty" json:"response_cache,omitempty"`
}

// Warmup is one warm-up sample: inputs built from zeros, random values or
// a file, run Count times (at least once) at BatchSize rows.
type Warmup struct {
	Name      string                 `yaml:"name" json:"name"`
	BatchSize int                    `yaml:"batch_size,omitempty" json:"batch_size,omitempty"`
	Count     int                    `yaml:"count,omitempty" json:"count,omitempty"`
	Inputs    map[string]WarmupInput `yaml:"inputs,omitempty" json:"inputs,omitempty"`
}

// WarmupInput says how to fill one input. Dims (without the batch
// dimension) are needed only where the model's are variable. Exactly one
// of ZeroData, RandomData and InputDataFile; none means zeros.
type WarmupInput struct {
	Dims          []int64 `yaml:"dims,omitempty" json:"dims,omitempty"`
	ZeroData      bool    `yaml:"zero_data,omitempty" json:"zero_data,omitempty"`
	RandomData    bool    `yaml:"random_data,omitempty" json:"random_data,omitempty"`
	InputDataFile string  `yaml:"input_data_file,omitempty" json:"input_data_file,omitempty"`
}

// TensorConfig declares one input or output. Dims exclude the batch
// dimension when max_batch_size > 0; -1 marks a variable dimension.
type TensorConfig struct {
	Name     string  `yaml:"name" json:"name"`
	DataType string  `yaml:"datatype" json:"datatype"`
	Dims     []int64 `yaml:"dims" json:"dims"`
}

// DynamicBatching configures the dynamic batcher.
type DynamicBatching struct {
	MaxQueueDelay       Duration `yaml:"max_queue_delay,omitempty" json:"max_queue_delay,omitempty"`
	PreferredBatchSizes []int    `yaml:"preferred_batch_sizes,omitempty" json:"preferred_batch_sizes,omitempty"`
	MaxQueueSize        int      `yaml:"max_queue_size,omitempty" json:"max_queue_size,omitempty"`
	DefaultTimeout      Duration `yaml:"default_timeout,omitempty" json:"default_timeout,omitempty"`
	PriorityLevels      int      `yaml:"priority_levels,omitempty" json:"priority_levels,omitempty"`
	DefaultPriority     int      `yaml:"default_priority,omitempty" json:"default_priority,omitempty"`
	PreserveOrdering    bool     `yaml:"preserve_ordering,omitempty" json:"preserve_ordering,omitempty"`
}

// VersionPolicy chooses which numeric version directories are served:
// the Latest N (default 1), All, or a Specific list.
type VersionPolicy struct {
	Latest   int     `json:"latest,omitempty"`
	All      bool    `json:"all,omitempty"`
	Specific []int64 `json:"specific,omitempty"`
}

// UnmarshalYAML accepts `all`, `{all: true}`, `{latest: N}` or `{specific: [..]}`.
func (p *VersionPolicy) UnmarshalYAML(b []byte) error {
	var s string
	if err := yaml.Unmarshal(b, &s); err == nil && !bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
		if s == "all" {
			*p = VersionPolicy{All: true}
			return nil
		}
		return fmt.Errorf("version_policy: want all, {latest: N} or {specific: [..]}, got %q", s)
	}
	var raw struct {
		Latest   *int    `yaml:"latest"`
		All      *bool   `yaml:"all"`
		Specific []int64 `yaml:"specific"`
	}
	if err := yaml.UnmarshalWithOptions(b, &raw, yaml.Strict()); err != nil {
		return fmt.Errorf("version_policy: %w", err)
	}
	set := 0
	if raw.Latest != nil {
		set++
		p.Latest = *raw.Latest
		if p.Latest < 1 {
			return fmt.Errorf("version_policy: latest must be >= 1, got %d", p.Latest)
		}
	}
	if raw.All != nil {
		set++
		p.All = *raw.All
	}
	if raw.Specific != nil {
		set++
		if len(raw.Specific) == 0 {
			return errors.New("version_policy: specific needs at least one version")
		}
		p.Specific = raw.Specific
	}
	if set != 1 {
		return errors.New("version_policy: set exactly one of latest, all, specific")
	}
	return nil
}

// Select applies the policy to the available version numbers and returns
// the served ones in ascending order.
func (p *VersionPolicy) Select(available []int64) []int64 {
	avail := slices.Clone(available)
	slices.Sort(avail)
	switch {
	case p == nil:
		return lastN(avail, 1)
	case p.All:
		return avail
	case len(p.Specific) > 0:
		var out []int64
		for _, v := range avail {
			if slices.Contains(p.Specific, v) {
				out = append(out, v)
			}
		}
		return out
	default:
		n := p.Latest
		if n < 1 {
			n = 1
		}
		return lastN(avail, n)
	}
}

func lastN(v []int64, n int) []int64 {
	if len(v) <= n {
		return v
	}
	return v[len(v)-n:]
}

// Params are backend knobs; YAML scalars of any kind become strings.
type Params map[string]string

// UnmarshalYAML accepts a mapping of scalars.
func (p *Params) UnmarshalYAML(b []byte) error {
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	out := make(Params, len(raw))
	for k, v := range raw {
		switch x := v.(type) {
		case string:
			out[k] = x
		case bool:
			out[k] = strconv.FormatBool(x)
		case int, int64, uint64, float64:
			out[k] = fmt.Sprint(x)
		case nil:
			out[k] = ""
		default:
			return fmt.Errorf("parameters.%s: want a scalar, got %T", k, v)
		}
	}
	*p = out
	return nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// ValidName reports whether s is an acceptable model name: 1–128 of
// letters, digits, '_', '.', '-', not starting with a punctuation mark.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// ParseModel decodes a config.yaml strictly and validates it. Errors carry
// the line and column of the offending key.
func ParseModel(data []byte) (*Model, error) {
	var m Model
	if len(bytes.TrimSpace(data)) > 0 {
		if err := unmarshalStrict(data, &m); err != nil {
			return nil, fmt.Errorf("%w: %s", ErrInvalid, yaml.FormatError(err, false, false))
		}
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// LoadModelFile reads and parses a config.yaml.
func LoadModelFile(path string) (*Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := ParseModel(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Validate checks values that decoding alone cannot.
func (m *Model) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if m.Name != "" && !ValidName(m.Name) {
		bad("name %q: use 1-128 letters, digits, '_', '.', '-'", m.Name)
	}
	if m.MaxBatchSize != nil && (*m.MaxBatchSize < 0 || *m.MaxBatchSize > 1<<20) {
		bad("max_batch_size must be between 0 and %d, got %d", 1<<20, *m.MaxBatchSize)
	}
	if m.Instances < 0 || m.Instances > 64 {
		bad("instances must be between 1 and 64, got %d", m.Instances)
	}
	for kind, list := range map[string][]TensorConfig{"inputs": m.Inputs, "outputs": m.Outputs} {
		seen := map[string]bool{}
		for i, t := range list {
			if t.Name == "" {
				bad("%s[%d]: name is required", kind, i)
			}
			if seen[t.Name] {
				bad("%s[%d]: duplicate name %q", kind, i, t.Name)
			}
			seen[t.Name] = true
			if _, err := tensor.ParseDataType(t.DataType); err != nil {
				bad("%s[%d] %q: unknown datatype %q", kind, i, t.Name, t.DataType)
			}
			for _, d := range t.Dims {
				if d < -1 {
					bad("%s[%d] %q: dims must be >= -1, got %d", kind, i, t.Name, d)
				}
			}
		}
	}
	if db := m.DynamicBatching; db != nil {
		if db.MaxQueueSize < 0 {
			bad("dynamic_batching.max_queue_size must be >= 0")
		}
		if db.PriorityLevels < 0 {
			bad("dynamic_batching.priority_levels must be >= 0")
		}
		if db.DefaultPriority < 0 || (db.DefaultPriority > 0 && db.DefaultPriority > max(db.PriorityLevels, 1)) {
			bad("dynamic_batching.default_priority must be between 1 and priority_levels (%d)", db.PriorityLevels)
		}
		for _, s := range db.PreferredBatchSizes {
			if s < 1 || (m.MaxBatchSize != nil && *m.MaxBatchSize > 0 && s > *m.MaxBatchSize) {
				bad("dynamic_batching.preferred_batch_sizes: %d is outside 1..max_batch_size", s)
			}
		}
	}
	for i, w := range m.Warmup {
		if w.Name == "" {
			bad("warmup[%d]: name is required", i)
		}
		if w.BatchSize < 0 || w.Count < 0 {
			bad("warmup[%d] %q: batch_size and count must be >= 0", i, w.Name)
		}
		for in, spec := range w.Inputs {
			n := 0
			for _, b := range []bool{spec.ZeroData, spec.RandomData, spec.InputDataFile != ""} {
				if b {
					n++
				}
			}
			if n > 1 {
				bad("warmup[%d] %q input %q: set only one of zero_data, random_data, input_data_file", i, w.Name, in)
			}
			for _, d := range spec.Dims {
				if d < 0 {
					bad("warmup[%d] %q input %q: dims must be >= 0", i, w.Name, in)
				}
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// ParamKeys returns the parameter names in sorted order.
func (p Params) ParamKeys() []string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// unmarshalStrict decodes YAML strictly (unknown keys are errors). The YAML
// library panics on some malformed values (e.g. a tagged scalar where a list
// is expected, found by fuzzing); that becomes an error, never a crash of
// the server reading the file.
func unmarshalStrict(data []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cannot decode the document (%v)", r)
		}
	}()
	return yaml.UnmarshalWithOptions(data, v, yaml.Strict())
}
