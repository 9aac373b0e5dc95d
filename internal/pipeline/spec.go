package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// ErrInvalidSpec marks every error Parse returns about the spec itself
// (syntax, unknown keys, wrong types, unknown components, missing variables).
var ErrInvalidSpec = errors.New("invalid pipeline spec")

// Pos is a position in a spec file (1-based line and column).
type Pos struct {
	File string `json:"file,omitempty"`
	Line int    `json:"line"`
	Col  int    `json:"col"`
}

func (p Pos) String() string {
	f := p.File
	if f == "" {
		f = "<spec>"
	}
	if p.Line == 0 {
		return f
	}
	return fmt.Sprintf("%s:%d:%d", f, p.Line, p.Col)
}

// SpecError is one problem in a spec, with where it is.
type SpecError struct {
	Pos Pos
	Msg string
}

func (e *SpecError) Error() string { return e.Pos.String() + ": " + e.Msg }

// Is makes every SpecError match ErrInvalidSpec.
func (e *SpecError) Is(target error) bool { return target == ErrInvalidSpec }

// SpecErrors is every problem Parse found, in file order.
type SpecErrors []*SpecError

func (es SpecErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Is makes SpecErrors match ErrInvalidSpec.
func (es SpecErrors) Is(target error) bool { return target == ErrInvalidSpec }

// Component is one configured stage of a plan.
type Component struct {
	Kind Kind
	// Name is the registered component name (file, filter, ...).
	Name string
	// Stage names the stage in run records and dead-letter rows:
	// "source", "transforms[2].filter", "sinks[0].file", "on_error".
	Stage string
	// Config is the decoded, validated configuration (what the
	// component's Spec.Config returned, filled from the spec).
	Config any
	Pos    Pos
}

// Settings tune a run.
type Settings struct {
	BatchSize     int    `yaml:"batch_size" doc:"preferred rows per batch, passed to the source"`
	Parallelism   int    `yaml:"parallelism" doc:"transform workers when no transform needs order (default: number of CPUs)"`
	Buffer        int    `yaml:"buffer" doc:"capacity of each channel between stages, in batches"`
	MaxInFlight   int    `yaml:"max_in_flight" doc:"most batches emitted by the source and not yet written by every sink (bounds memory)"`
	Ordered       bool   `yaml:"ordered" doc:"sinks receive batches in source order even with parallel transform workers"`
	ParamsFromRun string `yaml:"params_from_run" doc:"reuse the parameters fitted by this earlier run (standardize, min_max) instead of fitting again"`
}

// DefaultSettings are the settings a spec does not override.
func DefaultSettings() Settings {
	n := runtime.GOMAXPROCS(0)
	return Settings{BatchSize: 8192, Parallelism: n, Buffer: 4, MaxInFlight: 2*n + 4}
}

// Error policies of on_error.
const (
	PolicyContinue = "continue"
	PolicyStop     = "stop"
)

// CacheSpec is a plan's `cache:` block.
type CacheSpec struct {
	TTL time.Duration `yaml:"ttl" required:"true" doc:"how long a stored result may be reused"`
}

// Plan is a parsed, validated pipeline spec.
type Plan struct {
	Name       string
	File       string
	Source     Component
	Transforms []Component
	Sinks      []Component
	// OnError is the dead-letter sink (nil: none).
	OnError *Component
	// Policy says what rejected rows do: PolicyContinue (to OnError, or
	// counted and logged without one) or PolicyStop (fail the run).
	Policy   string
	Cache    *CacheSpec
	Settings Settings
	// Digest identifies the spec: sha256 over the file's text as written
	// (before interpolation) and, for every ${VAR} it uses, the name and a
	// sha256 of the value. Values themselves are never kept.
	Digest string
	// Vars are the names of the environment variables the spec uses.
	Vars []string
}

// LookupFunc resolves ${VAR} references (os.LookupEnv).
type LookupFunc func(name string) (string, bool)

var topKeys = []string{"name", "source", "transforms", "sinks", "cache", "on_error", "settings"}

// Parse parses and validates a pipeline spec. file names it in error
// messages (and gives the default pipeline name); lookup resolves ${VAR}
// (nil: no variables). Errors are SpecErrors (errors.Is ErrInvalidSpec)
// carrying file:line:column.
func Parse(file string, data []byte, lookup LookupFunc) (*Plan, error) {
	p := &parseState{file: file, lookup: lookup, vars: map[string]string{}, src: data}
	plan := p.parse(data)
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool {
			a, b := p.errs[i].Pos, p.errs[j].Pos
			return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
		})
		return nil, p.errs
	}
	h := sha256.New()
	h.Write(data)
	names := make([]string, 0, len(p.vars))
	for n := range p.vars {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		vh := sha256.Sum256([]byte(p.vars[n]))
		fmt.Fprintf(h, "\x00%s\x00%x", n, vh)
	}
	plan.Digest = hex.EncodeToString(h.Sum(nil))
	plan.Vars = names
	return plan, nil
}

type parseState struct {
	file   string
	lookup LookupFunc
	vars   map[string]string
	errs   SpecErrors
	src    []byte // the spec's text, to place errors inside scalars
	// failed holds the values whose interpolation failed (already
	// reported): the components holding them are not decoded further.
	failed map[ast.Node]bool
}

func (p *parseState) pos(n ast.Node) Pos {
	if n == nil {
		return Pos{File: p.file}
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return Pos{File: p.file}
	}
	return Pos{File: p.file, Line: tk.Position.Line, Col: tk.Position.Column}
}

func (p *parseState) errorf(n ast.Node, format string, args ...any) {
	p.errs = append(p.errs, &SpecError{Pos: p.pos(n), Msg: fmt.Sprintf(format, args...)})
}

// yamlErr turns an error of the YAML library into a SpecError at its token.
func (p *parseState) yamlErr(err error, fallback ast.Node) {
	var ye yaml.Error
	if errors.As(err, &ye) {
		pos := p.pos(fallback)
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			pos = Pos{File: p.file, Line: tk.Position.Line, Col: tk.Position.Column}
		}
		p.errs = append(p.errs, &SpecError{Pos: pos, Msg: cleanYAMLMessage(ye.GetMessage())})
		return
	}
	p.errs = append(p.errs, &SpecError{Pos: p.pos(fallback), Msg: err.Error()})
}

var goTypeMsg = regexp.MustCompile(`cannot unmarshal (\S+) into Go (?:struct field \S+ of type|value of type) (\S+)`)

func cleanYAMLMessage(m string) string {
	m = strings.TrimSpace(m)
	if i := strings.Index(m, "\n"); i >= 0 {
		m = m[:i]
	}
	if sm := goTypeMsg.FindStringSubmatch(m); sm != nil {
		return fmt.Sprintf("wrong type: %s where %s is expected", yamlKind(sm[1]), goTypeWord(sm[2]))
	}
	return m
}

func yamlKind(src string) string {
	switch {
	case strings.HasPrefix(src, "[]"):
		return "a list"
	case strings.HasPrefix(src, "map"):
		return "a mapping"
	case src == "string":
		return "a string"
	case src == "bool":
		return "a boolean"
	case strings.HasPrefix(src, "int"), strings.HasPrefix(src, "uint"):
		return "an integer"
	case strings.HasPrefix(src, "float"):
		return "a number"
	default:
		return "a " + src
	}
}

func goTypeWord(t string) string {
	switch {
	case t == "time.Duration":
		return "a duration (such as 5s)"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	case t == "string":
		return "a string"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"), strings.HasPrefix(t, "*int"):
		return "an integer"
	case strings.HasPrefix(t, "float"), strings.HasPrefix(t, "*float"):
		return "a number"
	default:
		return "a mapping"
	}
}

func (p *parseState) parse(data []byte) *Plan {
	plan := &Plan{File: p.file, Policy: PolicyStop, Settings: DefaultSettings()}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		p.yamlErr(err, nil)
		return plan
	}
	if len(f.Docs) != 1 || f.Docs[0].Body == nil {
		p.errs = append(p.errs, &SpecError{Pos: Pos{File: p.file, Line: 1, Col: 1}, Msg: "a pipeline spec is one YAML document (a mapping with source and sinks)"})
		return plan
	}
	root, ok := unwrap(f.Docs[0].Body).(*ast.MappingNode)
	if !ok {
		p.errorf(f.Docs[0].Body, "a pipeline spec is a mapping with source and sinks, not %s", kindOf(f.Docs[0].Body))
		return plan
	}
	p.interpolate(root)
	seen := map[string]ast.Node{}
	for _, mv := range root.Values {
		key := keyString(mv.Key)
		if prev, dup := seen[key]; dup {
			p.errorf(mv.Key, "duplicate key %q (first at line %d)", key, p.pos(prev).Line)
			continue
		}
		seen[key] = mv.Key
		v := unwrap(mv.Value)
		switch key {
		case "name":
			s, ok := v.(*ast.StringNode)
			if !ok || strings.TrimSpace(s.Value) == "" {
				p.errorf(mv.Value, "name must be a non-empty string")
				continue
			}
			plan.Name = s.Value
		case "source":
			if c, ok := p.component(v, mv.Key, KindSource, "source"); ok {
				plan.Source = c
			}
		case "transforms":
			for i, item := range p.list(v, mv.Key, "transforms") {
				if c, ok := p.component(item, item, KindTransform, fmt.Sprintf("transforms[%d]", i)); ok {
					plan.Transforms = append(plan.Transforms, c)
				}
			}
		case "sinks":
			items := p.list(v, mv.Key, "sinks")
			if len(items) == 0 && (isList(v) || isNull(v)) {
				p.errorf(mv.Key, "sinks must name at least one sink")
			}
			for i, item := range items {
				if c, ok := p.component(item, item, KindSink, fmt.Sprintf("sinks[%d]", i)); ok {
					plan.Sinks = append(plan.Sinks, c)
				}
			}
		case "cache":
			var cs CacheSpec
			if p.decodeStrict(v, mv.Key, &cs, "cache") {
				if cs.TTL <= 0 {
					p.errorf(mv.Value, "cache.ttl must be a positive duration such as 1h")
				} else {
					plan.Cache = &cs
				}
			}
		case "on_error":
			p.onError(v, mv.Key, plan)
		case "settings":
			s := plan.Settings
			if p.decodeStrict(v, mv.Key, &s, "settings") {
				p.checkSettings(v, &s)
				plan.Settings = s
			}
		default:
			p.errorf(mv.Key, "unknown key %q%s (valid keys: %s)", key, suggest(key, topKeys), strings.Join(topKeys, ", "))
		}
	}
	if _, ok := seen["source"]; !ok {
		p.errorf(root, "missing required key source")
	}
	if _, ok := seen["sinks"]; !ok {
		p.errorf(root, "missing required key sinks")
	}
	if plan.Name == "" {
		base := filepath.Base(p.file)
		plan.Name = strings.TrimSuffix(base, filepath.Ext(base))
		if plan.Name == "" || plan.Name == "." {
			plan.Name = "pipeline"
		}
	}
	return plan
}

func (p *parseState) checkSettings(n ast.Node, s *Settings) {
	if s.BatchSize <= 0 {
		p.errorf(n, "settings.batch_size must be positive")
	}
	if s.Parallelism <= 0 {
		p.errorf(n, "settings.parallelism must be positive")
	}
	if s.Buffer <= 0 {
		p.errorf(n, "settings.buffer must be positive")
	}
	if s.MaxInFlight <= 0 {
		p.errorf(n, "settings.max_in_flight must be positive")
	}
}

func (p *parseState) onError(v ast.Node, key ast.Node, plan *Plan) {
	plan.Policy = PolicyContinue
	m, ok := v.(*ast.MappingNode)
	if !ok {
		p.errorf(key, "on_error must be a mapping: a sink ({file: {...}}) or {sink: {file: {...}}, policy: continue|stop}")
		return
	}
	explicit := false
	for _, mv := range m.Values {
		if k := keyString(mv.Key); k == "sink" || k == "policy" {
			explicit = true
		}
	}
	if !explicit {
		if c, ok := p.component(m, key, KindSink, "on_error"); ok {
			plan.OnError = &c
		}
		return
	}
	for _, mv := range m.Values {
		switch k := keyString(mv.Key); k {
		case "sink":
			if c, ok := p.component(unwrap(mv.Value), mv.Key, KindSink, "on_error"); ok {
				plan.OnError = &c
			}
		case "policy":
			s, ok := unwrap(mv.Value).(*ast.StringNode)
			if !ok || (s.Value != PolicyContinue && s.Value != PolicyStop) {
				p.errorf(mv.Value, "on_error.policy must be %q or %q", PolicyContinue, PolicyStop)
				continue
			}
			plan.Policy = s.Value
		default:
			p.errorf(mv.Key, "unknown key %q in on_error%s (valid keys: sink, policy)", k, suggest(k, []string{"sink", "policy"}))
		}
	}
}

func isNull(n ast.Node) bool {
	_, ok := n.(*ast.NullNode)
	return ok || n == nil
}

func isList(n ast.Node) bool {
	_, ok := n.(*ast.SequenceNode)
	return ok
}

// list returns the items of a sequence (reporting anything else).
func (p *parseState) list(v ast.Node, key ast.Node, what string) []ast.Node {
	switch s := v.(type) {
	case *ast.SequenceNode:
		out := make([]ast.Node, len(s.Values))
		for i, item := range s.Values {
			out[i] = unwrap(item)
		}
		return out
	case *ast.NullNode:
		return nil
	default:
		p.errorf(key, "%s must be a list of one-key mappings (- name: {...}), not %s", what, kindOf(v))
		return nil
	}
}

// component decodes a one-key mapping {name: body} into the registered
// component's configuration.
func (p *parseState) component(v ast.Node, at ast.Node, kind Kind, stage string) (Component, bool) {
	m, ok := v.(*ast.MappingNode)
	if !ok || len(m.Values) != 1 {
		n := v
		if n == nil {
			n = at
		}
		p.errorf(n, "%s must be a mapping with exactly one key, the %s's name (for example `%s`)", stage, kind, exampleFor(kind))
		return Component{}, false
	}
	mv := m.Values[0]
	name := keyString(mv.Key)
	spec, ok := lookupSpec(kind, name)
	if !ok {
		p.errorf(mv.Key, "unknown %s %q%s", kind, name, suggest(name, componentNames(kind)))
		return Component{}, false
	}
	c := Component{Kind: kind, Name: name, Stage: stage, Pos: p.pos(mv.Key)}
	if kind != KindSource {
		c.Stage = stage + "." + name
	}
	if stage == "on_error" {
		c.Stage = "on_error." + name
	}
	if p.containsFailed(mv.Value) {
		return Component{}, false
	}
	cfg, ok := p.decodeBody(spec, unwrap(mv.Value), mv.Key)
	if !ok {
		return Component{}, false
	}
	c.Config = cfg
	return c, true
}

func exampleFor(k Kind) string {
	switch k {
	case KindSource:
		return "file: {path: in.csv}"
	case KindTransform:
		return `filter: "age >= 18"`
	default:
		return "file: {path: out.parquet}"
	}
}

// decodeBody fills a fresh Config from a component body (mapping, scalar
// shortcut or empty) and checks required fields and Validate.
func (p *parseState) decodeBody(spec Spec, body ast.Node, key ast.Node) (any, bool) {
	cfg := spec.Config()
	what := fmt.Sprintf("%s %q", spec.Kind, spec.Name)
	present := map[string]bool{}
	switch b := body.(type) {
	case nil, *ast.NullNode:
	case *ast.MappingNode:
		for _, mv := range b.Values {
			present[keyString(mv.Key)] = true
		}
		if !p.decodeStrict(b, key, cfg, what) {
			return nil, false
		}
	case *ast.SequenceNode:
		p.errorf(body, "%s takes a mapping of settings, not a list", what)
		return nil, false
	default:
		if spec.Scalar == "" {
			p.errorf(body, "%s takes a mapping of settings, not a single value", what)
			return nil, false
		}
		fv, ok := fieldByKey(cfg, spec.Scalar)
		if !ok {
			p.errorf(body, "%s: its short form names key %q, which its configuration does not have", what, spec.Scalar)
			return nil, false
		}
		if err := nodeToValue(body, fv.Addr().Interface()); err != nil {
			p.yamlErr(err, body)
			return nil, false
		}
		present[spec.Scalar] = true
	}
	ok := true
	for _, f := range ConfigFields(cfg) {
		if f.Required && !present[f.Key] {
			n := body
			if n == nil {
				n = key
			}
			if _, null := body.(*ast.NullNode); null {
				n = key
			}
			p.errorf(n, "%s: missing required field %s", what, f.Key)
			ok = false
		}
	}
	if !ok {
		return nil, false
	}
	if v, is := cfg.(interface{ Validate() error }); is {
		if err := v.Validate(); err != nil {
			n := body
			if n == nil {
				n = key
			}
			var ee exprError
			if errors.As(err, &ee) {
				if pos, ok := p.exprPos(n, ee.ExprText(), ee.ExprOffset()); ok {
					p.errs = append(p.errs, &SpecError{Pos: pos, Msg: fmt.Sprintf("%s: %v", what, err)})
					return nil, false
				}
			}
			p.errorf(n, "%s: %v", what, err)
			return nil, false
		}
	}
	return cfg, true
}

// nodeToValue decodes a node strictly into v. The YAML library can panic
// on some malformed values (found by fuzzing, e.g. a tagged scalar where a
// list is expected); that becomes an error here, never a crash.
func nodeToValue(n ast.Node, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: cannot decode this value (%v)", ErrInvalidSpec, r)
		}
	}()
	return yaml.NodeToValue(n, v, yaml.Strict())
}

// decodeStrict decodes a node into v, unknown keys being errors.
func (p *parseState) decodeStrict(n ast.Node, key ast.Node, v any, what string) bool {
	if _, null := n.(*ast.NullNode); null || n == nil {
		return true
	}
	if _, ok := n.(*ast.MappingNode); !ok {
		p.errorf(n, "%s must be a mapping, not %s", what, kindOf(n))
		return false
	}
	if err := nodeToValue(n, v); err != nil {
		var ue *yaml.UnknownFieldError
		if errors.As(err, &ue) {
			k := ""
			if tk := ue.GetToken(); tk != nil {
				k = tk.Value
			}
			keys := make([]string, 0)
			for _, f := range ConfigFields(v) {
				keys = append(keys, f.Key)
			}
			pos := p.pos(key)
			if tk := ue.GetToken(); tk != nil && tk.Position != nil {
				pos = Pos{File: p.file, Line: tk.Position.Line, Col: tk.Position.Column}
			}
			if !directKey(n, ue.GetToken()) {
				// A key of a nested mapping: the valid keys above are not its.
				p.errs = append(p.errs, &SpecError{Pos: pos, Msg: fmt.Sprintf("%s: unknown key %q (see `kiln pipeline components` for the keys)", what, k)})
				return false
			}
			p.errs = append(p.errs, &SpecError{Pos: pos, Msg: fmt.Sprintf("%s: unknown key %q%s (valid keys: %s)", what, k, suggest(k, keys), strings.Join(keys, ", "))})
			return false
		}
		p.yamlErr(err, n)
		return false
	}
	return true
}

// directKey reports whether tk is one of the keys of mapping n itself.
func directKey(n ast.Node, tk *token.Token) bool {
	m, ok := n.(*ast.MappingNode)
	if !ok || tk == nil {
		return false
	}
	for _, mv := range m.Values {
		if kt := mv.Key.GetToken(); kt == tk || kt != nil && kt.Position != nil && tk.Position != nil && kt.Position.Offset == tk.Position.Offset {
			return true
		}
	}
	return false
}

func fieldByKey(cfg any, key string) (reflect.Value, bool) {
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	v = v.Elem()
	t := v.Type()
	for i := range t.NumField() {
		if yamlKey(t.Field(i)) == key {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func lookupSpec(kind Kind, name string) (Spec, bool) {
	switch kind {
	case KindSource:
		s, ok := LookupSource(name)
		return s.Spec, ok
	case KindTransform:
		s, ok := LookupTransform(name)
		return s.Spec, ok
	default:
		s, ok := LookupSink(name)
		return s.Spec, ok
	}
}

func componentNames(kind Kind) []string {
	var out []string
	for _, s := range Specs() {
		if s.Kind == kind {
			out = append(out, s.Name)
		}
	}
	return out
}

func keyString(k ast.MapKeyNode) string {
	if k == nil {
		return ""
	}
	if s, ok := k.(*ast.StringNode); ok {
		return s.Value
	}
	return k.String()
}

// unwrap looks through tags and anchors to the value node.
func unwrap(n ast.Node) ast.Node {
	for {
		switch t := n.(type) {
		case *ast.TagNode:
			n = t.Value
		case *ast.AnchorNode:
			n = t.Value
		default:
			return n
		}
	}
}

func kindOf(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.NullNode, nil:
		return "empty"
	default:
		return "a single value"
	}
}

// suggest returns ` (did you mean "x"?)` for the closest candidate.
func suggest(got string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if d := levenshtein(strings.ToLower(got), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" || bestD > max(2, len(got)/3) {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// interpolate replaces ${VAR} and ${VAR:-default} in every string value
// of the tree (keys are left alone); $${ stands for a literal ${.
func (p *parseState) interpolate(root ast.Node) {
	ast.Walk(visitFunc(func(n ast.Node) {
		s, ok := n.(*ast.StringNode)
		if !ok || !strings.Contains(s.Value, "${") {
			return
		}
		out, err := p.expand(s.Value)
		if err != nil {
			p.errorf(s, "%v", err)
			if p.failed == nil {
				p.failed = map[ast.Node]bool{}
			}
			p.failed[s] = true
			return
		}
		s.Value = out
	}), root)
}

// containsFailed reports whether n holds a value whose interpolation failed.
func (p *parseState) containsFailed(n ast.Node) bool {
	if len(p.failed) == 0 || n == nil {
		return false
	}
	found := false
	ast.Walk(visitFunc(func(c ast.Node) {
		if p.failed[c] {
			found = true
		}
	}), n)
	return found
}

type visitFunc func(ast.Node)

func (f visitFunc) Visit(n ast.Node) ast.Visitor {
	if mv, ok := n.(*ast.MappingValueNode); ok {
		// Visit only the value: keys are not interpolated.
		if mv.Value != nil {
			ast.Walk(f, mv.Value)
		}
		return nil
	}
	f(n)
	return f
}

func (p *parseState) expand(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		if strings.HasPrefix(s[i:], "$${") {
			b.WriteString("${")
			i += 3
			continue
		}
		if !strings.HasPrefix(s[i:], "${") {
			b.WriteByte(s[i])
			i++
			continue
		}
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated ${ in value (write $${ for a literal ${)")
		}
		ref := s[i+2 : i+2+end]
		name, def, hasDef := strings.Cut(ref, ":-")
		if !validVarName(name) {
			return "", fmt.Errorf("invalid variable reference ${%s}: names are letters, digits and _", ref)
		}
		val, ok := "", false
		if p.lookup != nil {
			val, ok = p.lookup(name)
		}
		if !ok {
			if !hasDef {
				return "", fmt.Errorf("environment variable %s is not set (use ${%s:-default} for a default)", name, name)
			}
			val = def
		}
		p.vars[name] = val
		b.WriteString(val)
		i += 2 + end + 1
	}
	return b.String(), nil
}

func validVarName(n string) bool {
	if n == "" {
		return false
	}
	for i, r := range n {
		if r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9' {
			continue
		}
		return false
	}
	return true
}

// DecodeComponent decodes and validates one component body (the YAML that
// follows `name:` in a spec), as Parse does, resolving ${VAR} with lookup;
// tests use it on every Spec example.
func DecodeComponent(kind Kind, name string, body []byte, lookup LookupFunc) (any, error) {
	p := &parseState{file: "<" + name + ">", vars: map[string]string{}, lookup: lookup}
	spec, ok := lookupSpec(kind, name)
	if !ok {
		return nil, fmt.Errorf("%w: unknown %s %q", ErrInvalidSpec, kind, name)
	}
	var node ast.Node
	if len(strings.TrimSpace(string(body))) > 0 {
		f, err := parser.ParseBytes(body, 0)
		if err != nil {
			p.yamlErr(err, nil)
			return nil, p.errs
		}
		if len(f.Docs) > 0 && f.Docs[0].Body != nil {
			p.interpolate(f.Docs[0].Body)
			node = unwrap(f.Docs[0].Body)
		}
	}
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	cfg, ok := p.decodeBody(spec, node, nil)
	if !ok || len(p.errs) > 0 {
		return nil, p.errs
	}
	return cfg, nil
}
