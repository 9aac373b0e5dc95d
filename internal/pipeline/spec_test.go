package pipeline

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) LookupFunc {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestParseValid(t *testing.T) {
	src := `name: demo
source:
  test_mem: {state: s, rows: 7}
transforms:
  - test_filter: 3
  - test_filter: {mod: 0, reject: 5}
  - test_seen:
sinks:
  - test_sink: {state: "${STATE}", id: "a-${SUFFIX:-x}"}
cache: {ttl: 1h}
on_error: {test_sink: {state: s, id: dlq, dlq: true}}
settings: {batch_size: 100, parallelism: 3, ordered: true}
`
	p, err := Parse("demo.yaml", []byte(src), env(map[string]string{"STATE": "s"}))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "demo" || p.Source.Name != "test_mem" || len(p.Transforms) != 3 || len(p.Sinks) != 1 {
		t.Fatalf("plan = %+v", p)
	}
	if c := p.Transforms[0].Config.(*filterConfig); c.Mod != 3 || c.Reject != -1 {
		t.Errorf("scalar shortcut: %+v", c)
	}
	if c := p.Sinks[0].Config.(*memSinkConfig); c.State != "s" || c.ID != "a-x" {
		t.Errorf("interpolation: %+v", c)
	}
	if p.Cache == nil || p.Cache.TTL != time.Hour {
		t.Errorf("cache = %+v", p.Cache)
	}
	if p.OnError == nil || p.OnError.Stage != "on_error.test_sink" || p.Policy != PolicyContinue {
		t.Errorf("on_error = %+v policy %s", p.OnError, p.Policy)
	}
	if p.Settings.BatchSize != 100 || p.Settings.Parallelism != 3 || !p.Settings.Ordered || p.Settings.Buffer != DefaultSettings().Buffer {
		t.Errorf("settings = %+v", p.Settings)
	}
	if p.Transforms[1].Stage != "transforms[1].test_filter" || p.Transforms[1].Pos.Line != 6 {
		t.Errorf("stage/pos = %s %v", p.Transforms[1].Stage, p.Transforms[1].Pos)
	}
	if strings.Join(p.Vars, ",") != "STATE,SUFFIX" {
		t.Errorf("vars = %v", p.Vars)
	}
	// The digest depends on variable values but never contains them.
	p2, err := Parse("demo.yaml", []byte(src), env(map[string]string{"STATE": "s", "SUFFIX": "y"}))
	if err != nil {
		t.Fatal(err)
	}
	if p2.Digest == p.Digest {
		t.Error("digest did not change with a variable's value")
	}
	p3, _ := Parse("demo.yaml", []byte(src), env(map[string]string{"STATE": "s"}))
	if p3.Digest != p.Digest {
		t.Error("digest not deterministic")
	}
}

func TestParseOnErrorForms(t *testing.T) {
	base := "source: {test_mem: {state: s}}\nsinks: [{test_sink: {state: s, id: a}}]\n"
	tests := []struct {
		name, extra, policy string
		dlq                 bool
	}{
		{"none", "", PolicyStop, false},
		{"design form", "on_error: {test_sink: {state: s, id: d}}\n", PolicyContinue, true},
		{"explicit", "on_error: {sink: {test_sink: {state: s, id: d}}, policy: stop}\n", PolicyStop, true},
		{"policy only", "on_error: {policy: continue}\n", PolicyContinue, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("x.yaml", []byte(base+tt.extra), nil)
			if err != nil {
				t.Fatal(err)
			}
			if p.Policy != tt.policy || (p.OnError != nil) != tt.dlq {
				t.Errorf("policy %s dlq %v", p.Policy, p.OnError)
			}
			if p.Name != "x" {
				t.Errorf("default name = %q", p.Name)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"syntax", "source: [\n", "x.yaml:"},
		{"not a mapping", "- a\n", "x.yaml:1:1: a pipeline spec is a mapping"},
		{"unknown top key", "source: {test_mem: {state: s}}\nsinks: [{test_sink: {state: s, id: a}}]\ntransfroms: []\n", `x.yaml:3:1: unknown key "transfroms" (did you mean "transforms"?)`},
		{"missing source", "sinks: [{test_sink: {state: s, id: a}}]\n", "missing required key source"},
		{"missing sinks", "source: {test_mem: {state: s}}\n", "missing required key sinks"},
		{"empty sinks", "source: {test_mem: {state: s}}\nsinks: []\n", "x.yaml:2:1: sinks must name at least one sink"},
		{"unknown component", "source: {test_mem: {state: s}}\ntransforms:\n  - test_filtr: 3\nsinks: [{test_sink: {state: s, id: a}}]\n", `x.yaml:3:5: unknown transform "test_filtr" (did you mean "test_filter"?)`},
		{"unknown field", "source:\n  test_mem:\n    state: s\n    rowz: 3\nsinks: [{test_sink: {state: s, id: a}}]\n", `x.yaml:4:5: source "test_mem": unknown key "rowz" (did you mean "rows"?)`},
		{"wrong type", "source:\n  test_mem:\n    state: s\n    rows: many\nsinks: [{test_sink: {state: s, id: a}}]\n", "x.yaml:4:11: wrong type: a string where an integer is expected"},
		{"missing required", "source:\n  test_mem: {rows: 3}\nsinks: [{test_sink: {state: s, id: a}}]\n", `source "test_mem": missing required field state`},
		{"validate", "source: {test_mem: {state: s}}\ntransforms:\n  - test_filter: {mod: -1}\nsinks: [{test_sink: {state: s, id: a}}]\n", "x.yaml:3:18: transform \"test_filter\": mod must not be negative"},
		{"two keys", "source: {test_mem: {state: s}, test_x: {}}\nsinks: [{test_sink: {state: s, id: a}}]\n", "source must be a mapping with exactly one key"},
		{"scalar without shortcut", "source: {test_mem: {state: s}}\ntransforms: [test_seen: 3]\nsinks: [{test_sink: {state: s, id: a}}]\n", "takes a mapping of settings"},
		{"missing variable", "source: {test_mem: {state: \"${NOPE}\"}}\nsinks: [{test_sink: {state: s, id: a}}]\n", "x.yaml:1:28: environment variable NOPE is not set"},
		{"bad variable", "source: {test_mem: {state: \"${1X}\"}}\nsinks: [{test_sink: {state: s, id: a}}]\n", "invalid variable reference"},
		{"unterminated variable", "source: {test_mem: {state: \"${X\"}}\nsinks: [{test_sink: {state: s, id: a}}]\n", "unterminated ${"},
		{"bad policy", "source: {test_mem: {state: s}}\nsinks: [{test_sink: {state: s, id: a}}]\non_error: {policy: maybe}\n", "on_error.policy must be"},
		{"bad settings", "source: {test_mem: {state: s}}\nsinks: [{test_sink: {state: s, id: a}}]\nsettings: {batch_size: 0}\n", "settings.batch_size must be positive"},
		{"bad settings key", "source: {test_mem: {state: s}}\nsinks: [{test_sink: {state: s, id: a}}]\nsettings: {paralelism: 2}\n", `did you mean "parallelism"?`},
		{"bad ttl", "source: {test_mem: {state: s}}\nsinks: [{test_sink: {state: s, id: a}}]\ncache: {ttl: soon}\n", "x.yaml:3"},
		{"missing ttl", "source: {test_mem: {state: s}}\nsinks: [{test_sink: {state: s, id: a}}]\ncache: {}\n", "cache.ttl must be a positive duration"},
		{"duplicate key", "source: {test_mem: {state: s}}\nsource: {test_mem: {state: s}}\nsinks: [{test_sink: {state: s, id: a}}]\n", "already defined"},
		{"transforms not list", "source: {test_mem: {state: s}}\ntransforms: {test_seen: {}}\nsinks: [{test_sink: {state: s, id: a}}]\n", "transforms must be a list"},
		{"sink kind checked", "source: {test_mem: {state: s}}\nsinks: [{test_filter: 3}]\n", `unknown sink "test_filter"`},
		{"two documents", "source: {test_mem: {state: s}}\n---\nsinks: []\n", "one YAML document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tt.src), nil)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("error does not match ErrInvalidSpec: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestInterpolationEscapeAndSecrets(t *testing.T) {
	src := "source: {test_mem: {state: \"$${LITERAL}\"}}\nsinks: [{test_sink: {state: s, id: \"${SECRET}\"}}]\n"
	p, err := Parse("x.yaml", []byte(src), env(map[string]string{"SECRET": "hunter2"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Source.Config.(*memSourceConfig).State; got != "${LITERAL}" {
		t.Errorf("escape: %q", got)
	}
	if strings.Contains(p.Digest, "hunter2") {
		t.Error("secret in digest")
	}
	// A later error must not print the secret value.
	bad := src + "settings: {batch_size: -1}\n"
	_, err = Parse("x.yaml", []byte(bad), env(map[string]string{"SECRET": "hunter2"}))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("err = %v", err)
	}
}

func anyVar(string) (string, bool) { return "example-value-0123456789abcdef", true }

func TestDecodeComponentExamples(t *testing.T) {
	for _, s := range Specs() {
		for i, ex := range s.Examples {
			if _, err := DecodeComponent(s.Kind, s.Name, []byte(ex), anyVar); err != nil {
				t.Errorf("%s %s example %d: %v", s.Kind, s.Name, i, err)
			}
		}
	}
	if _, err := DecodeComponent(KindSource, "test_mem", []byte("{rows: 1}"), nil); err == nil {
		t.Error("missing required field accepted")
	}
}

func TestReference(t *testing.T) {
	var text, md strings.Builder
	if err := WriteReference(&text, LookupSpec("test_mem"), false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"source test_mem — in-memory test rows", "state (string, required)", "rows (int) (default 10)", "{state: s, rows: 5}"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text reference lacks %q:\n%s", want, text.String())
		}
	}
	if err := WriteReference(&md, nil, true); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Sources", "### transform test_filter", "Short form: `test_filter: VALUE` sets `mod`.", "| `state` | string | yes |  | test state id |"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown reference lacks %q", want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("name: a\nsource: {test_mem: {state: s}}\ntransforms: [test_filter: 3, {test_seen: }]\nsinks: [{test_sink: {state: s, id: a}}]\ncache: {ttl: 1h}\n"))
	f.Add([]byte("source:\n  test_mem:\n    state: ${X:-y}\non_error: {sink: {test_sink: {}}, policy: stop}\nsettings: {ordered: true}\n"))
	f.Add([]byte("- [a, {b: c}]\n"))
	f.Add([]byte("source: &a {test_mem: {state: $${x}}}\nsinks: [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("f.yaml", data, env(map[string]string{"X": "1"}))
		if err != nil {
			if !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("error not ErrInvalidSpec: %v", err)
			}
			return
		}
		if p.Source.Config == nil || len(p.Sinks) == 0 || p.Digest == "" {
			t.Fatalf("accepted an incomplete plan: %+v", p)
		}
	})
}
