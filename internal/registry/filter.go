package registry

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Search filter grammar. It is MLflow's search grammar (AND of comparisons,
// name/tags/run_id/version_number, LIKE and ILIKE, IN) extended with OR,
// NOT-free parentheses, and the fields MLflow users ask for (stage, alias,
// metrics, params, timestamps):
//
//	filter     = or
//	or         = and { "OR" and }
//	and        = primary { "AND" primary }
//	primary    = "(" or ")" | comparison
//	comparison = field op value | field ["NOT"] "IN" "(" value { "," value } ")"
//	op         = "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">=" | ["NOT"] "LIKE" | ["NOT"] "ILIKE"
//	value      = 'text' | "text" | number
//	field      = attribute | ("tags" | "tag") "." key | ("metrics" | "metric") "." key | ("params" | "param") "." key
//	key        = identifier | `back-quoted text` | "double-quoted text"
//
// Attributes (case-insensitive; "attribute." / "attributes." prefixes are
// accepted and ignored): name; for versions also version_number (version),
// run_id, stage (current_stage), source (source_path), status, format,
// digest, user_id (created_by); for both alias, description, created_by,
// creation_timestamp (created_at), last_updated_timestamp (updated_at).
// Timestamps compare with a number of milliseconds since the epoch (MLflow)
// or a quoted RFC 3339 time. Text fields take = != LIKE ILIKE IN; numbers and
// timestamps take comparisons (and IN for version_number). LIKE is
// case-sensitive with % and _ wildcards; ILIKE ignores ASCII case.

// Limits that keep a filter cheap to parse and to run.
const (
	MaxFilterLen     = 4096
	maxFilterConds   = 64
	maxFilterDepth   = 16
	maxFilterInItems = 256
)

// FieldKind names what a filter or order key refers to.
type FieldKind int

// Field kinds.
const (
	FieldName FieldKind = iota + 1
	FieldVersion
	FieldRunID
	FieldStage
	FieldAlias
	FieldTag
	FieldMetric
	FieldParam
	FieldCreatedBy
	FieldCreatedAt
	FieldUpdatedAt
	FieldSource
	FieldStatus
	FieldFormat
	FieldDigest
	FieldDescription
)

// Field is a filter or order field; Key is the tag, metric or param key.
type Field struct {
	Kind FieldKind
	Key  string
}

// String renders the field in filter syntax.
func (f Field) String() string {
	switch f.Kind {
	case FieldTag:
		return "tags." + quoteKey(f.Key)
	case FieldMetric:
		return "metrics." + quoteKey(f.Key)
	case FieldParam:
		return "params." + quoteKey(f.Key)
	}
	for name, k := range attributes {
		if k.kind == f.Kind && name == k.canonical {
			return name
		}
	}
	return "?"
}

func quoteKey(k string) string {
	if strings.ContainsRune(k, '`') {
		return `"` + strings.ReplaceAll(strings.ReplaceAll(k, `\`, `\\`), `"`, `""`) + `"`
	}
	for _, r := range k {
		if !isIdentRune(r) {
			return "`" + k + "`"
		}
	}
	return k
}

type fieldClass int

const (
	classText fieldClass = iota
	classNumber
	classTime
	classStage
)

type attribute struct {
	kind      FieldKind
	class     fieldClass
	canonical string
	models    bool // allowed when searching models
	versions  bool // allowed when searching versions
}

var attributes = map[string]attribute{}

func init() {
	add := func(a attribute, names ...string) {
		a.canonical = names[0]
		for _, n := range names {
			attributes[n] = a
		}
	}
	add(attribute{kind: FieldName, class: classText, models: true, versions: true}, "name")
	add(attribute{kind: FieldVersion, class: classNumber, versions: true}, "version_number", "version")
	add(attribute{kind: FieldRunID, class: classText, versions: true}, "run_id")
	add(attribute{kind: FieldStage, class: classStage, versions: true}, "stage", "current_stage")
	add(attribute{kind: FieldAlias, class: classText, models: true, versions: true}, "alias", "aliases")
	add(attribute{kind: FieldCreatedBy, class: classText, models: true, versions: true}, "created_by", "user_id")
	add(attribute{kind: FieldCreatedAt, class: classTime, models: true, versions: true}, "creation_timestamp", "created_at")
	add(attribute{kind: FieldUpdatedAt, class: classTime, models: true, versions: true}, "last_updated_timestamp", "updated_at")
	add(attribute{kind: FieldSource, class: classText, versions: true}, "source", "source_path")
	add(attribute{kind: FieldStatus, class: classText, versions: true}, "status")
	add(attribute{kind: FieldFormat, class: classText, versions: true}, "format")
	add(attribute{kind: FieldDigest, class: classText, versions: true}, "digest")
	add(attribute{kind: FieldDescription, class: classText, models: true, versions: true}, "description")
}

// CmpOp is a comparison operator.
type CmpOp int

// Comparison operators.
const (
	OpEq CmpOp = iota + 1
	OpNe
	OpLt
	OpLe
	OpGt
	OpGe
	OpLike
	OpNotLike
	OpILike
	OpNotILike
	OpIn
	OpNotIn
)

var opNames = map[CmpOp]string{
	OpEq: "=", OpNe: "!=", OpLt: "<", OpLe: "<=", OpGt: ">", OpGe: ">=",
	OpLike: "LIKE", OpNotLike: "NOT LIKE", OpILike: "ILIKE", OpNotILike: "NOT ILIKE",
	OpIn: "IN", OpNotIn: "NOT IN",
}

// String renders the operator in filter syntax.
func (o CmpOp) String() string { return opNames[o] }

// Logic is the node type of an Expr.
type Logic int

// Expr node types.
const (
	LogicCond Logic = iota + 1
	LogicAnd
	LogicOr
)

// Expr is a parsed filter: a comparison (Logic == LogicCond, Cond set) or an
// AND/OR of at least two sub-expressions.
type Expr struct {
	Logic Logic
	Args  []*Expr
	Cond  *Cond
}

// Cond is one comparison. Exactly one value form is set, according to the
// field: Str (text, stage — canonical stage name), Num (version numbers and
// metrics), Time (timestamps), Strs/Nums for IN and NOT IN.
type Cond struct {
	Field Field
	Op    CmpOp
	Str   string
	Num   float64
	Time  time.Time
	Strs  []string
	Nums  []float64
}

// String renders the expression back in filter syntax (canonical form).
func (e *Expr) String() string {
	if e == nil {
		return ""
	}
	switch e.Logic {
	case LogicCond:
		return e.Cond.String()
	default:
		sep := " AND "
		if e.Logic == LogicOr {
			sep = " OR "
		}
		parts := make([]string, len(e.Args))
		for i, a := range e.Args {
			s := a.String()
			if a.Logic != LogicCond {
				s = "(" + s + ")"
			}
			parts[i] = s
		}
		return strings.Join(parts, sep)
	}
}

// String renders the comparison in filter syntax.
func (c *Cond) String() string {
	var v string
	switch {
	case c.Op == OpIn || c.Op == OpNotIn:
		var items []string
		for _, s := range c.Strs {
			items = append(items, quoteString(s))
		}
		for _, n := range c.Nums {
			items = append(items, strconv.FormatFloat(n, 'g', -1, 64))
		}
		v = "(" + strings.Join(items, ", ") + ")"
	case !c.Time.IsZero():
		v = quoteString(c.Time.UTC().Format(time.RFC3339Nano))
	case c.Field.Kind == FieldVersion || c.Field.Kind == FieldMetric:
		v = strconv.FormatFloat(c.Num, 'g', -1, 64)
	default:
		v = quoteString(c.Str)
	}
	return c.Field.String() + " " + c.Op.String() + " " + v
}

func quoteString(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
}

// ParseFilter parses a search filter for target. An empty (or all-space)
// filter returns nil. Errors wrap ErrInvalid and name the offset.
func ParseFilter(target Target, s string) (*Expr, error) {
	if len(s) > MaxFilterLen {
		return nil, fmt.Errorf("%w: filter is %d bytes long, the limit is %d", ErrInvalid, len(s), MaxFilterLen)
	}
	toks, err := lexFilter(s)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, nil
	}
	p := &filterParser{toks: toks, target: target}
	e, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		t := p.toks[p.pos]
		return nil, fmt.Errorf("%w: filter: unexpected %q at offset %d (conditions are joined with AND or OR)", ErrInvalid, t.text, t.off)
	}
	return e, nil
}

type tokKind int

const (
	tokIdent tokKind = iota + 1 // bare word, possibly dotted
	tokString
	tokNumber
	tokOp
	tokLParen
	tokRParen
	tokComma
)

type token struct {
	kind tokKind
	text string // identifier (with back-quoted parts unquoted), string value, number text, operator
	off  int
	// parts of a dotted identifier, back-quotes removed
	parts []string
	// quoted reports for a tokString whether it used double quotes
	dquoted bool
}

func isIdentRune(r rune) bool {
	return r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

func lexFilter(s string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			toks = append(toks, token{kind: tokLParen, text: "(", off: i})
			i++
		case c == ')':
			toks = append(toks, token{kind: tokRParen, text: ")", off: i})
			i++
		case c == ',':
			toks = append(toks, token{kind: tokComma, text: ",", off: i})
			i++
		case c == '=' || c == '!' || c == '<' || c == '>':
			start := i
			i++
			if i < len(s) && (s[i] == '=' || (c == '<' && s[i] == '>')) {
				i++
			}
			op := s[start:i]
			if op == "!" {
				return nil, fmt.Errorf("%w: filter: '!' at offset %d must be followed by '='", ErrInvalid, start)
			}
			toks = append(toks, token{kind: tokOp, text: op, off: start})
		case c == '\'' || c == '"':
			v, n, err := lexQuoted(s[i:], c)
			if err != nil {
				return nil, fmt.Errorf("%w: filter: %v at offset %d", ErrInvalid, err, i)
			}
			toks = append(toks, token{kind: tokString, text: v, off: i, dquoted: c == '"'})
			i += n
		case c == '-' || c == '+' || c == '.' || c >= '0' && c <= '9':
			start := i
			i++
			for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.' || s[i] == 'e' || s[i] == 'E' ||
				(s[i] == '-' || s[i] == '+') && (s[i-1] == 'e' || s[i-1] == 'E')) {
				i++
			}
			text := s[start:i]
			if _, err := strconv.ParseFloat(text, 64); err != nil {
				return nil, fmt.Errorf("%w: filter: bad number %q at offset %d", ErrInvalid, text, start)
			}
			toks = append(toks, token{kind: tokNumber, text: text, off: start})
		case c == '`' || isIdentRune(rune(c)):
			start := i
			var parts []string
			for {
				if i < len(s) && s[i] == '`' {
					end := strings.IndexByte(s[i+1:], '`')
					if end < 0 {
						return nil, fmt.Errorf("%w: filter: unterminated back-quote at offset %d", ErrInvalid, i)
					}
					parts = append(parts, s[i+1:i+1+end])
					i += end + 2
				} else if i < len(s) && s[i] == '"' && len(parts) > 0 {
					v, n, err := lexQuoted(s[i:], '"')
					if err != nil {
						return nil, fmt.Errorf("%w: filter: %v at offset %d", ErrInvalid, err, i)
					}
					parts = append(parts, v)
					i += n
				} else {
					j := i
					for j < len(s) && isIdentRune(rune(s[j])) {
						j++
					}
					if j == i {
						return nil, fmt.Errorf("%w: filter: expected a name at offset %d", ErrInvalid, i)
					}
					parts = append(parts, s[i:j])
					i = j
				}
				if i < len(s) && s[i] == '.' {
					i++
					continue
				}
				break
			}
			toks = append(toks, token{kind: tokIdent, text: s[start:i], off: start, parts: parts})
		default:
			return nil, fmt.Errorf("%w: filter: unexpected character %q at offset %d", ErrInvalid, c, i)
		}
	}
	return toks, nil
}

// lexQuoted reads a quoted string starting at s[0] == q; a doubled quote or a
// backslash-escaped quote stands for the quote itself. It returns the value
// and the number of bytes consumed.
func lexQuoted(s string, q byte) (string, int, error) {
	var b strings.Builder
	i := 1
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && (s[i+1] == q || s[i+1] == '\\'):
			b.WriteByte(s[i+1])
			i += 2
		case c == q && i+1 < len(s) && s[i+1] == q:
			b.WriteByte(q)
			i += 2
		case c == q:
			return b.String(), i + 1, nil
		default:
			b.WriteByte(c)
			i++
		}
	}
	return "", 0, fmt.Errorf("unterminated string")
}

type filterParser struct {
	toks   []token
	pos    int
	target Target
	conds  int
}

func (p *filterParser) peek() *token {
	if p.pos < len(p.toks) {
		return &p.toks[p.pos]
	}
	return nil
}

func (p *filterParser) keyword(t *token, kw string) bool {
	return t != nil && t.kind == tokIdent && len(t.parts) == 1 && strings.EqualFold(t.text, kw)
}

func (p *filterParser) endErr(want string) error {
	return fmt.Errorf("%w: filter: unexpected end, expected %s", ErrInvalid, want)
}

func (p *filterParser) or(depth int) (*Expr, error) {
	if depth > maxFilterDepth {
		return nil, fmt.Errorf("%w: filter: nested deeper than %d", ErrInvalid, maxFilterDepth)
	}
	first, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	args := []*Expr{first}
	for p.keyword(p.peek(), "OR") {
		p.pos++
		e, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		args = append(args, e)
	}
	if len(args) == 1 {
		return first, nil
	}
	return &Expr{Logic: LogicOr, Args: args}, nil
}

func (p *filterParser) and(depth int) (*Expr, error) {
	first, err := p.primary(depth)
	if err != nil {
		return nil, err
	}
	args := []*Expr{first}
	for p.keyword(p.peek(), "AND") {
		p.pos++
		e, err := p.primary(depth)
		if err != nil {
			return nil, err
		}
		args = append(args, e)
	}
	if len(args) == 1 {
		return first, nil
	}
	return &Expr{Logic: LogicAnd, Args: args}, nil
}

func (p *filterParser) primary(depth int) (*Expr, error) {
	t := p.peek()
	if t == nil {
		return nil, p.endErr("a condition")
	}
	if t.kind == tokLParen {
		p.pos++
		e, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		c := p.peek()
		if c == nil || c.kind != tokRParen {
			if c == nil {
				return nil, p.endErr("')'")
			}
			return nil, fmt.Errorf("%w: filter: expected ')' at offset %d, got %q", ErrInvalid, c.off, c.text)
		}
		p.pos++
		return e, nil
	}
	c, err := p.comparison()
	if err != nil {
		return nil, err
	}
	p.conds++
	if p.conds > maxFilterConds {
		return nil, fmt.Errorf("%w: filter has more than %d conditions", ErrInvalid, maxFilterConds)
	}
	return &Expr{Logic: LogicCond, Cond: c}, nil
}

func (p *filterParser) field(t *token) (Field, attribute, error) {
	parts := t.parts
	if len(parts) > 1 && (strings.EqualFold(parts[0], "attribute") || strings.EqualFold(parts[0], "attributes")) {
		parts = parts[1:]
	}
	if len(parts) == 1 {
		a, ok := attributes[strings.ToLower(parts[0])]
		if !ok {
			return Field{}, a, fmt.Errorf("%w: filter: unknown field %q at offset %d", ErrInvalid, t.text, t.off)
		}
		if p.target == TargetModels && !a.models || p.target == TargetVersions && !a.versions {
			what := "models"
			if p.target == TargetVersions {
				what = "versions"
			}
			return Field{}, a, fmt.Errorf("%w: filter: field %q cannot filter %s", ErrInvalid, t.text, what)
		}
		return Field{Kind: a.kind}, a, nil
	}
	key := strings.Join(parts[1:], ".")
	var f Field
	var a attribute
	switch strings.ToLower(parts[0]) {
	case "tags", "tag":
		f, a = Field{Kind: FieldTag, Key: key}, attribute{kind: FieldTag, class: classText}
	case "metrics", "metric":
		f, a = Field{Kind: FieldMetric, Key: key}, attribute{kind: FieldMetric, class: classNumber}
	case "params", "param":
		f, a = Field{Kind: FieldParam, Key: key}, attribute{kind: FieldParam, class: classText}
	default:
		return Field{}, a, fmt.Errorf("%w: filter: unknown field %q at offset %d (want tags.<key>, metrics.<key>, params.<key> or an attribute)", ErrInvalid, t.text, t.off)
	}
	if p.target == TargetModels && f.Kind != FieldTag {
		return Field{}, a, fmt.Errorf("%w: filter: field %q cannot filter models", ErrInvalid, t.text)
	}
	if key == "" {
		return Field{}, a, fmt.Errorf("%w: filter: empty key in %q at offset %d", ErrInvalid, t.text, t.off)
	}
	return f, a, nil
}

func (p *filterParser) comparison() (*Cond, error) {
	t := p.peek()
	if t.kind != tokIdent {
		return nil, fmt.Errorf("%w: filter: expected a field name at offset %d, got %q", ErrInvalid, t.off, t.text)
	}
	f, attr, err := p.field(t)
	if err != nil {
		return nil, err
	}
	p.pos++
	o := p.peek()
	if o == nil {
		return nil, p.endErr("an operator")
	}
	var op CmpOp
	switch {
	case o.kind == tokOp:
		op = map[string]CmpOp{"=": OpEq, "==": OpEq, "!=": OpNe, "<>": OpNe, "<": OpLt, "<=": OpLe, ">": OpGt, ">=": OpGe}[o.text]
		p.pos++
	case p.keyword(o, "LIKE"):
		op = OpLike
		p.pos++
	case p.keyword(o, "ILIKE"):
		op = OpILike
		p.pos++
	case p.keyword(o, "IN"):
		op = OpIn
		p.pos++
	case p.keyword(o, "NOT"):
		p.pos++
		n := p.peek()
		switch {
		case p.keyword(n, "LIKE"):
			op = OpNotLike
		case p.keyword(n, "ILIKE"):
			op = OpNotILike
		case p.keyword(n, "IN"):
			op = OpNotIn
		default:
			return nil, fmt.Errorf("%w: filter: NOT at offset %d must be followed by LIKE, ILIKE or IN", ErrInvalid, o.off)
		}
		p.pos++
	default:
		return nil, fmt.Errorf("%w: filter: expected an operator after %q at offset %d, got %q", ErrInvalid, t.text, o.off, o.text)
	}
	c := &Cond{Field: f, Op: op}
	switch attr.class {
	case classText, classStage:
		switch op {
		case OpLt, OpLe, OpGt, OpGe:
			return nil, fmt.Errorf("%w: filter: %s compares text; use =, !=, LIKE, ILIKE or IN", ErrInvalid, t.text)
		}
		if attr.class == classStage && (op == OpLike || op == OpNotLike || op == OpILike || op == OpNotILike) {
			return nil, fmt.Errorf("%w: filter: %s takes =, != or IN", ErrInvalid, t.text)
		}
	case classNumber:
		switch op {
		case OpLike, OpNotLike, OpILike, OpNotILike:
			return nil, fmt.Errorf("%w: filter: %s is a number; LIKE does not apply", ErrInvalid, t.text)
		case OpIn, OpNotIn:
			if f.Kind != FieldVersion {
				return nil, fmt.Errorf("%w: filter: %s does not take IN", ErrInvalid, t.text)
			}
		}
	case classTime:
		switch op {
		case OpLike, OpNotLike, OpILike, OpNotILike, OpIn, OpNotIn:
			return nil, fmt.Errorf("%w: filter: %s is a timestamp; use a comparison", ErrInvalid, t.text)
		}
	}
	if op == OpIn || op == OpNotIn {
		return c, p.list(c, attr, t.text)
	}
	v := p.peek()
	if v == nil {
		return nil, p.endErr("a value")
	}
	p.pos++
	return c, p.value(c, attr, t.text, v, false)
}

func (p *filterParser) list(c *Cond, attr attribute, name string) error {
	l := p.peek()
	if l == nil || l.kind != tokLParen {
		if l == nil {
			return p.endErr("'(' after IN")
		}
		return fmt.Errorf("%w: filter: expected '(' after IN at offset %d", ErrInvalid, l.off)
	}
	p.pos++
	for {
		v := p.peek()
		if v == nil {
			return p.endErr("a value")
		}
		p.pos++
		if err := p.value(c, attr, name, v, true); err != nil {
			return err
		}
		if len(c.Strs)+len(c.Nums) > maxFilterInItems {
			return fmt.Errorf("%w: filter: IN list longer than %d", ErrInvalid, maxFilterInItems)
		}
		n := p.peek()
		if n == nil {
			return p.endErr("',' or ')'")
		}
		p.pos++
		if n.kind == tokRParen {
			return nil
		}
		if n.kind != tokComma {
			return fmt.Errorf("%w: filter: expected ',' or ')' at offset %d, got %q", ErrInvalid, n.off, n.text)
		}
	}
}

func (p *filterParser) value(c *Cond, attr attribute, name string, v *token, inList bool) error {
	switch attr.class {
	case classText, classStage:
		if v.kind != tokString {
			return fmt.Errorf("%w: filter: %s wants a quoted string at offset %d, got %q", ErrInvalid, name, v.off, v.text)
		}
		s := v.text
		if attr.class == classStage {
			st, err := ParseStage(s)
			if err != nil {
				return fmt.Errorf("filter: %w", err)
			}
			s = string(st)
		}
		if inList {
			c.Strs = append(c.Strs, s)
		} else {
			c.Str = s
		}
	case classNumber:
		if v.kind != tokNumber && !(v.kind == tokString && !v.dquoted) {
			return fmt.Errorf("%w: filter: %s wants a number at offset %d, got %q", ErrInvalid, name, v.off, v.text)
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(v.text), 64)
		if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
			return fmt.Errorf("%w: filter: %s wants a finite number at offset %d, got %q", ErrInvalid, name, v.off, v.text)
		}
		if c.Field.Kind == FieldVersion && (n != math.Trunc(n) || math.Abs(n) > 1<<53) {
			return fmt.Errorf("%w: filter: %s wants an integer at offset %d, got %q", ErrInvalid, name, v.off, v.text)
		}
		if inList {
			c.Nums = append(c.Nums, n)
		} else {
			c.Num = n
		}
	case classTime:
		switch v.kind {
		case tokNumber:
			ms, err := strconv.ParseInt(v.text, 10, 64)
			if err != nil || ms < 0 || ms > 253402300799999 { // up to 9999-12-31
				return fmt.Errorf("%w: filter: %s wants milliseconds since the epoch or an RFC 3339 time at offset %d, got %q", ErrInvalid, name, v.off, v.text)
			}
			c.Time = time.UnixMilli(ms).UTC()
		case tokString:
			tm, err := time.Parse(time.RFC3339Nano, v.text)
			if err != nil || tm.Year() < 1 || tm.Year() > 9999 {
				return fmt.Errorf("%w: filter: %s wants an RFC 3339 time at offset %d, got %q", ErrInvalid, name, v.off, v.text)
			}
			c.Time = tm.UTC()
		default:
			return fmt.Errorf("%w: filter: %s wants a time at offset %d, got %q", ErrInvalid, name, v.off, v.text)
		}
		if c.Time.IsZero() {
			c.Time = time.Unix(0, 0).UTC()
		}
	}
	return nil
}

// ParseOrder parses order_by clauses such as "name ASC" or
// "last_updated_timestamp DESC" for target, and appends the unique tie
// breaker (models: name; versions: name, version number) so pages are stable.
// Empty input gives the default order: models by name; versions by name,
// then newest version first.
func ParseOrder(target Target, clauses []string) ([]OrderKey, error) {
	if len(clauses) > 4 {
		return nil, fmt.Errorf("%w: at most 4 order_by clauses", ErrInvalid)
	}
	var keys []OrderKey
	seen := map[FieldKind]bool{}
	for _, cl := range clauses {
		fs := strings.Fields(cl)
		if len(fs) == 0 || len(fs) > 2 {
			return nil, fmt.Errorf("%w: order_by %q: want \"<field> [ASC|DESC]\"", ErrInvalid, cl)
		}
		name := strings.ToLower(fs[0])
		name = strings.TrimPrefix(strings.TrimPrefix(name, "attributes."), "attribute.")
		a, ok := attributes[name]
		allowed := ok && (a.kind == FieldName || a.kind == FieldCreatedAt || a.kind == FieldUpdatedAt ||
			target == TargetVersions && a.kind == FieldVersion)
		if !allowed {
			if target == TargetModels {
				return nil, fmt.Errorf("%w: order_by %q: models sort by name, creation_timestamp or last_updated_timestamp", ErrInvalid, cl)
			}
			return nil, fmt.Errorf("%w: order_by %q: versions sort by name, version_number, creation_timestamp or last_updated_timestamp", ErrInvalid, cl)
		}
		desc := false
		if len(fs) == 2 {
			switch strings.ToUpper(fs[1]) {
			case "ASC":
			case "DESC":
				desc = true
			default:
				return nil, fmt.Errorf("%w: order_by %q: direction must be ASC or DESC", ErrInvalid, cl)
			}
		}
		if seen[a.kind] {
			return nil, fmt.Errorf("%w: order_by names %s twice", ErrInvalid, a.canonical)
		}
		seen[a.kind] = true
		keys = append(keys, OrderKey{Field: Field{Kind: a.kind}, Desc: desc})
	}
	// tie breakers: after a timestamp they follow its direction (so one
	// index on (timestamp, name, version) serves the order either way);
	// otherwise names ascend and versions descend (newest first)
	tieDesc, timeFirst := false, len(keys) > 0 && (keys[0].Field.Kind == FieldCreatedAt || keys[0].Field.Kind == FieldUpdatedAt)
	if timeFirst {
		tieDesc = keys[0].Desc
	}
	if !seen[FieldName] {
		keys = append(keys, OrderKey{Field: Field{Kind: FieldName}, Desc: tieDesc})
		seen[FieldName] = true
	}
	if target == TargetVersions && !seen[FieldVersion] {
		keys = append(keys, OrderKey{Field: Field{Kind: FieldVersion}, Desc: tieDesc || !timeFirst})
	}
	// the key list is unique once name (models) or name+version (versions)
	// is in it; drop anything after the unique prefix ends
	for i, k := range keys {
		if target == TargetModels && k.Field.Kind == FieldName {
			return keys[:i+1], nil
		}
		if target == TargetVersions && k.Field.Kind == FieldVersion && seenBefore(keys[:i], FieldName) {
			return keys[:i+1], nil
		}
	}
	return keys, nil
}

func seenBefore(keys []OrderKey, k FieldKind) bool {
	for _, x := range keys {
		if x.Field.Kind == k {
			return true
		}
	}
	return false
}
