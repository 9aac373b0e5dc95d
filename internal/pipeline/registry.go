package pipeline

import (
	"context"
	"fmt"
	"sort"
	"sync"
)

// Kind is what part of a pipeline a component plays.
type Kind string

// Component kinds.
const (
	KindSource    Kind = "source"
	KindTransform Kind = "transform"
	KindSink      Kind = "sink"
)

// Spec describes a component: its name, what it does, and its configuration.
//
// Config returns a fresh configuration value, a pointer to a struct holding
// the defaults. The struct's `yaml` tags name the keys; a `doc:"..."` tag
// describes a field; `required:"true"` marks a field that must be set. The
// engine decodes a component's YAML body strictly into it (unknown keys are
// errors with line and column), checks required fields, and generates
// `kiln pipeline components` and docs/reference/pipelines.md from the same
// struct, so the spec, the parser and the docs cannot disagree. A config
// type may implement `Validate() error` for checks beyond types.
type Spec struct {
	Kind    Kind
	Name    string
	Summary string
	Config  func() any
	// Scalar names the yaml key a scalar body fills, for components that
	// accept a short form (`filter: "age >= 18"`); "" if none.
	Scalar string
	// Examples are YAML bodies of the component (what follows `name:`); a
	// test decodes and validates every one.
	Examples []string
}

// SourceSpec is a registered source.
type SourceSpec struct {
	Spec
	Build func(ctx context.Context, cfg any, env Env) (Source, error)
}

// TransformSpec is a registered transform.
type TransformSpec struct {
	Spec
	Build func(ctx context.Context, cfg any, env Env) (Transform, error)
}

// SinkSpec is a registered sink.
type SinkSpec struct {
	Spec
	Build func(ctx context.Context, cfg any, env Env) (Sink, error)
}

var components = struct {
	sync.RWMutex
	sources    map[string]SourceSpec
	transforms map[string]TransformSpec
	sinks      map[string]SinkSpec
}{
	sources:    map[string]SourceSpec{},
	transforms: map[string]TransformSpec{},
	sinks:      map[string]SinkSpec{},
}

func checkSpec(s Spec, k Kind, built bool) {
	if s.Name == "" || s.Config == nil || !built {
		panic(fmt.Sprintf("pipeline: %s %q registered without a name, Config or Build", k, s.Name))
	}
}

// RegisterSource registers a source; it panics on a duplicate name (call it
// from init).
func RegisterSource(s SourceSpec) {
	s.Kind = KindSource
	checkSpec(s.Spec, KindSource, s.Build != nil)
	components.Lock()
	defer components.Unlock()
	if _, dup := components.sources[s.Name]; dup {
		panic("pipeline: duplicate source " + s.Name)
	}
	components.sources[s.Name] = s
}

// RegisterTransform registers a transform; it panics on a duplicate name.
func RegisterTransform(s TransformSpec) {
	s.Kind = KindTransform
	checkSpec(s.Spec, KindTransform, s.Build != nil)
	components.Lock()
	defer components.Unlock()
	if _, dup := components.transforms[s.Name]; dup {
		panic("pipeline: duplicate transform " + s.Name)
	}
	components.transforms[s.Name] = s
}

// RegisterSink registers a sink; it panics on a duplicate name.
func RegisterSink(s SinkSpec) {
	s.Kind = KindSink
	checkSpec(s.Spec, KindSink, s.Build != nil)
	components.Lock()
	defer components.Unlock()
	if _, dup := components.sinks[s.Name]; dup {
		panic("pipeline: duplicate sink " + s.Name)
	}
	components.sinks[s.Name] = s
}

// LookupSource returns the source registered under name.
func LookupSource(name string) (SourceSpec, bool) {
	components.RLock()
	defer components.RUnlock()
	s, ok := components.sources[name]
	return s, ok
}

// LookupTransform returns the transform registered under name.
func LookupTransform(name string) (TransformSpec, bool) {
	components.RLock()
	defer components.RUnlock()
	s, ok := components.transforms[name]
	return s, ok
}

// LookupSink returns the sink registered under name.
func LookupSink(name string) (SinkSpec, bool) {
	components.RLock()
	defer components.RUnlock()
	s, ok := components.sinks[name]
	return s, ok
}

// Specs lists every registered component's Spec, sources first, then
// transforms, then sinks, each sorted by name.
func Specs() []Spec {
	components.RLock()
	defer components.RUnlock()
	var out []Spec
	add := func(names []string, get func(string) Spec) {
		sort.Strings(names)
		for _, n := range names {
			out = append(out, get(n))
		}
	}
	add(keys(components.sources), func(n string) Spec { return components.sources[n].Spec })
	add(keys(components.transforms), func(n string) Spec { return components.transforms[n].Spec })
	add(keys(components.sinks), func(n string) Spec { return components.sinks[n].Spec })
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
