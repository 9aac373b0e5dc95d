package registry

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Promotion gates. A gate is a rule over the candidate version's metrics and
// the metrics of the version currently holding a stage:
//
//	rule    = sum cmp sum
//	        | ("no_regression" | "improves") "(" metric "," stage [ "," number ] ")"
//	cmp     = ">=" | ">" | "<=" | "<" | "==" | "!="
//	sum     = product { ("+" | "-") product }
//	product = unary { ("*" | "/") unary }
//	unary   = "-" unary | number | ref | "(" sum ")"
//	ref     = metric | stage "." metric | "candidate" "." metric
//	metric  = identifier | `back-quoted key`
//
// Examples: `accuracy >= production.accuracy - 0.01`, `latency_p99 <= 25`,
// `no_regression(accuracy, production, 0.01)` (the candidate may be at most
// 0.01 worse than production, "worse" in the metric's declared direction),
// `improves(f1, staging)` (strictly better). A bare metric is the
// candidate's; stage.metric is the metric of the version holding that stage
// (the highest-numbered one if several do, never the candidate itself).
//
// Outcomes: a rule that refers to a stage nobody holds passes (there is
// nothing to regress against) and is reported as skipped; so does a rule
// whose stage holder lacks the metric. A candidate lacking a metric it needs
// fails the rule.

// Gate is a parsed promotion rule.
type Gate struct {
	src string
	// comparison form
	left, right gateNode
	cmp         string
	// function form
	fn        string // "no_regression" or "improves"
	metric    string
	stage     Stage
	tolerance float64
}

// String returns the rule as written.
func (g *Gate) String() string { return g.src }

// GateResult is the outcome of one rule.
type GateResult struct {
	Rule    string `json:"rule"`
	Passed  bool   `json:"passed"`
	Skipped bool   `json:"skipped,omitempty"`
	// Left and Right are the two evaluated sides (for the function forms:
	// the candidate's value and the threshold it had to meet).
	Left   float64 `json:"left"`
	Right  float64 `json:"right"`
	Detail string  `json:"detail"`
}

// GateError is returned (wrapped in ErrPreconditionFailed) when at least one
// gate fails; Results holds every rule's outcome.
type GateError struct {
	Model   string
	Version int64
	To      Stage
	Results []GateResult
}

func (e *GateError) Error() string {
	var failed []string
	for _, r := range e.Results {
		if !r.Passed {
			failed = append(failed, r.Detail)
		}
	}
	return fmt.Sprintf("promotion of %s version %d to %s blocked by gate: %s", e.Model, e.Version, e.To, strings.Join(failed, "; "))
}

// Unwrap makes errors.Is(err, ErrPreconditionFailed) true.
func (e *GateError) Unwrap() error { return ErrPreconditionFailed }

const maxGateLen = 1024

// ParseGate parses one gate rule. Errors wrap ErrInvalid.
func ParseGate(rule string) (*Gate, error) {
	if len(rule) > maxGateLen {
		return nil, fmt.Errorf("%w: gate rule is %d bytes long, the limit is %d", ErrInvalid, len(rule), maxGateLen)
	}
	toks, err := lexGate(rule)
	if err != nil {
		return nil, fmt.Errorf("%w: gate %q: %v", ErrInvalid, rule, err)
	}
	p := &gateParser{toks: toks}
	g, err := p.rule()
	if err != nil {
		return nil, fmt.Errorf("%w: gate %q: %v", ErrInvalid, rule, err)
	}
	g.src = strings.TrimSpace(rule)
	return g, nil
}

type gtok struct {
	kind  byte // 'n' number, 'i' identifier, 'o' operator/punct
	text  string
	num   float64
	quote bool // a back-quoted identifier (never a keyword or stage)
}

func lexGate(s string) ([]gtok, error) {
	var out []gtok
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' || s[j] == 'e' || s[j] == 'E' ||
				(s[j] == '-' || s[j] == '+') && j > i && (s[j-1] == 'e' || s[j-1] == 'E')) {
				j++
			}
			n, err := strconv.ParseFloat(s[i:j], 64)
			if err != nil || math.IsInf(n, 0) {
				return nil, fmt.Errorf("bad number %q at offset %d", s[i:j], i)
			}
			out = append(out, gtok{kind: 'n', text: s[i:j], num: n})
			i = j
		case c == '`':
			end := strings.IndexByte(s[i+1:], '`')
			if end <= 0 {
				return nil, fmt.Errorf("unterminated or empty back-quoted name at offset %d", i)
			}
			out = append(out, gtok{kind: 'i', text: s[i+1 : i+1+end], quote: true})
			i += end + 2
		case isIdentRune(rune(c)):
			j := i
			for j < len(s) && isIdentRune(rune(s[j])) {
				j++
			}
			out = append(out, gtok{kind: 'i', text: s[i:j]})
			i = j
		case c == '>' || c == '<' || c == '=' || c == '!':
			j := i + 1
			if j < len(s) && s[j] == '=' {
				j++
			}
			op := s[i:j]
			if op == "=" || op == "!" {
				return nil, fmt.Errorf("operator %q at offset %d (want ==, !=, <, <=, >, >=)", op, i)
			}
			out = append(out, gtok{kind: 'o', text: op})
			i = j
		case strings.IndexByte("+-*/(),.", c) >= 0:
			out = append(out, gtok{kind: 'o', text: string(c)})
			i++
		default:
			return nil, fmt.Errorf("unexpected character %q at offset %d", c, i)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty rule")
	}
	if len(out) > 128 {
		return nil, fmt.Errorf("rule has more than 128 tokens")
	}
	return out, nil
}

type gateParser struct {
	toks  []gtok
	pos   int
	depth int
}

func (p *gateParser) peek() *gtok {
	if p.pos < len(p.toks) {
		return &p.toks[p.pos]
	}
	return nil
}

func (p *gateParser) isOp(s string) bool {
	t := p.peek()
	return t != nil && t.kind == 'o' && t.text == s
}

func (p *gateParser) expect(s string) error {
	if !p.isOp(s) {
		if t := p.peek(); t != nil {
			return fmt.Errorf("expected %q, got %q", s, t.text)
		}
		return fmt.Errorf("expected %q at the end", s)
	}
	p.pos++
	return nil
}

func (p *gateParser) rule() (*Gate, error) {
	if t := p.peek(); t.kind == 'i' && !t.quote && (t.text == "no_regression" || t.text == "improves") &&
		p.pos+1 < len(p.toks) && p.toks[p.pos+1].text == "(" {
		p.pos += 2
		g := &Gate{fn: t.text}
		m := p.peek()
		if m == nil || m.kind != 'i' {
			return nil, fmt.Errorf("%s: first argument must be a metric name", t.text)
		}
		g.metric = m.text
		p.pos++
		if err := p.expect(","); err != nil {
			return nil, err
		}
		s := p.peek()
		if s == nil || s.kind != 'i' {
			return nil, fmt.Errorf("%s: second argument must be a stage", t.text)
		}
		st, err := ParseStage(s.text)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", t.text, err)
		}
		g.stage = st
		p.pos++
		if p.isOp(",") {
			p.pos++
			if p.isOp("-") {
				return nil, fmt.Errorf("%s: the tolerance must not be negative", t.text)
			}
			n := p.peek()
			if n == nil || n.kind != 'n' {
				return nil, fmt.Errorf("%s: third argument must be a number", t.text)
			}
			g.tolerance = n.num
			p.pos++
		}
		if err := p.expect(")"); err != nil {
			return nil, err
		}
		if p.pos != len(p.toks) {
			return nil, fmt.Errorf("unexpected %q after %s(...)", p.toks[p.pos].text, t.text)
		}
		return g, nil
	}
	left, err := p.sum()
	if err != nil {
		return nil, err
	}
	c := p.peek()
	if c == nil || c.kind != 'o' || !strings.Contains(" >= > <= < == != ", " "+c.text+" ") {
		return nil, fmt.Errorf("expected a comparison (>=, >, <=, <, ==, !=) after the left side")
	}
	p.pos++
	right, err := p.sum()
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, fmt.Errorf("unexpected %q after the comparison", p.toks[p.pos].text)
	}
	g := &Gate{left: left, right: right, cmp: c.text}
	if !g.left.hasRef() && !g.right.hasRef() {
		return nil, fmt.Errorf("rule compares constants only; name a metric")
	}
	return g, nil
}

// gateNode is an arithmetic expression node.
type gateNode struct {
	op     byte // 'n' number, 'r' reference, '+', '-', '*', '/', 'u' unary minus
	num    float64
	stage  Stage // "" = candidate
	metric string
	a, b   *gateNode
}

func (n gateNode) hasRef() bool {
	switch n.op {
	case 'r':
		return true
	case 'n':
		return false
	case 'u':
		return n.a.hasRef()
	}
	return n.a.hasRef() || n.b.hasRef()
}

func (p *gateParser) sum() (gateNode, error) {
	l, err := p.product()
	if err != nil {
		return l, err
	}
	for p.isOp("+") || p.isOp("-") {
		op := p.peek().text[0]
		p.pos++
		r, err := p.product()
		if err != nil {
			return l, err
		}
		a, b := l, r
		l = gateNode{op: op, a: &a, b: &b}
	}
	return l, nil
}

func (p *gateParser) product() (gateNode, error) {
	l, err := p.unary()
	if err != nil {
		return l, err
	}
	for p.isOp("*") || p.isOp("/") {
		op := p.peek().text[0]
		p.pos++
		r, err := p.unary()
		if err != nil {
			return l, err
		}
		a, b := l, r
		l = gateNode{op: op, a: &a, b: &b}
	}
	return l, nil
}

func (p *gateParser) unary() (gateNode, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > 32 {
		return gateNode{}, fmt.Errorf("expression nested too deeply")
	}
	t := p.peek()
	if t == nil {
		return gateNode{}, fmt.Errorf("unexpected end of rule")
	}
	switch {
	case t.kind == 'o' && t.text == "-":
		p.pos++
		a, err := p.unary()
		if err != nil {
			return a, err
		}
		return gateNode{op: 'u', a: &a}, nil
	case t.kind == 'o' && t.text == "(":
		p.pos++
		n, err := p.sum()
		if err != nil {
			return n, err
		}
		return n, p.expect(")")
	case t.kind == 'n':
		p.pos++
		return gateNode{op: 'n', num: t.num}, nil
	case t.kind == 'i':
		p.pos++
		if p.isOp(".") {
			p.pos++
			m := p.peek()
			if m == nil || m.kind != 'i' {
				return gateNode{}, fmt.Errorf("expected a metric name after \"%s.\"", t.text)
			}
			p.pos++
			if !t.quote && (t.text == "candidate" || t.text == "this") {
				return gateNode{op: 'r', metric: m.text}, nil
			}
			st, err := ParseStage(t.text)
			if err != nil || t.quote {
				return gateNode{}, fmt.Errorf("%q is not a stage (want development, staging, production, archived or candidate)", t.text)
			}
			return gateNode{op: 'r', stage: st, metric: m.text}, nil
		}
		return gateNode{op: 'r', metric: t.text}, nil
	}
	return gateNode{}, fmt.Errorf("unexpected %q", t.text)
}

// GateEnv gives a gate the metrics it reads: the candidate's and those of
// the current holder of each stage (absent = no holder).
type GateEnv struct {
	Candidate map[string]Metric
	Holders   map[Stage]ModelVersion
}

// skipError marks a rule that cannot be judged because a stage has no holder
// or the holder lacks the metric: it passes.
type skipError struct{ why string }

func (e *skipError) Error() string { return e.why }

// Eval evaluates the rule.
func (g *Gate) Eval(env GateEnv) GateResult {
	res := GateResult{Rule: g.src}
	if g.fn != "" {
		return g.evalFn(env, res)
	}
	l, errL := g.left.eval(env)
	r, errR := g.right.eval(env)
	for _, err := range []error{errL, errR} {
		if err == nil {
			continue
		}
		if s, ok := err.(*skipError); ok {
			res.Passed, res.Skipped = true, true
			res.Detail = g.src + ": skipped, " + s.why
			return res
		}
		res.Detail = g.src + ": " + err.Error()
		return res
	}
	res.Left, res.Right = l, r
	switch g.cmp {
	case ">=":
		res.Passed = l >= r
	case ">":
		res.Passed = l > r
	case "<=":
		res.Passed = l <= r
	case "<":
		res.Passed = l < r
	case "==":
		res.Passed = l == r
	case "!=":
		res.Passed = l != r
	}
	verdict := "holds"
	if !res.Passed {
		verdict = "fails"
	}
	res.Detail = fmt.Sprintf("%s: %s (%s %s %s)", g.src, verdict, fmtNum(l), g.cmp, fmtNum(r))
	return res
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'g', 6, 64) }

func (g *Gate) evalFn(env GateEnv, res GateResult) GateResult {
	cand, ok := env.Candidate[g.metric]
	if !ok {
		res.Detail = fmt.Sprintf("%s: fails, the candidate has no metric %q", g.src, g.metric)
		return res
	}
	holder, ok := env.Holders[g.stage]
	if !ok {
		res.Passed, res.Skipped = true, true
		res.Detail = fmt.Sprintf("%s: skipped, no version is in %s", g.src, g.stage)
		return res
	}
	hm, ok := holder.Metrics[g.metric]
	if !ok {
		res.Passed, res.Skipped = true, true
		res.Detail = fmt.Sprintf("%s: skipped, %s version %d has no metric %q", g.src, g.stage, holder.Version, g.metric)
		return res
	}
	if hm.Direction != cand.Direction {
		res.Detail = fmt.Sprintf("%s: fails, %q is declared %s-is-better on the candidate but %s-is-better on %s version %d",
			g.src, g.metric, cand.Direction, hm.Direction, g.stage, holder.Version)
		return res
	}
	res.Left = cand.Value
	higher := cand.Direction != LowerIsBetter
	switch g.fn {
	case "no_regression":
		if higher {
			res.Right = hm.Value - g.tolerance
			res.Passed = cand.Value >= res.Right
		} else {
			res.Right = hm.Value + g.tolerance
			res.Passed = cand.Value <= res.Right
		}
	case "improves":
		if higher {
			res.Right = hm.Value + g.tolerance
			res.Passed = cand.Value > res.Right
		} else {
			res.Right = hm.Value - g.tolerance
			res.Passed = cand.Value < res.Right
		}
	}
	verdict := "holds"
	if !res.Passed {
		verdict = "fails"
	}
	res.Detail = fmt.Sprintf("%s: %s (candidate %s=%s, %s version %d has %s, %s is better, threshold %s)",
		g.src, verdict, g.metric, fmtNum(cand.Value), g.stage, holder.Version, fmtNum(hm.Value), cand.Direction, fmtNum(res.Right))
	return res
}

// Stages returns the stages the rule reads holders of.
func (g *Gate) Stages() []Stage {
	if g.fn != "" {
		return []Stage{g.stage}
	}
	seen := map[Stage]bool{}
	var out []Stage
	var walk func(n *gateNode)
	walk = func(n *gateNode) {
		if n == nil {
			return
		}
		if n.op == 'r' && n.stage != "" && !seen[n.stage] {
			seen[n.stage] = true
			out = append(out, n.stage)
		}
		walk(n.a)
		walk(n.b)
	}
	walk(&g.left)
	walk(&g.right)
	return out
}

func (n *gateNode) eval(env GateEnv) (float64, error) {
	switch n.op {
	case 'n':
		return n.num, nil
	case 'r':
		if n.stage == "" {
			m, ok := env.Candidate[n.metric]
			if !ok {
				return 0, fmt.Errorf("fails, the candidate has no metric %q", n.metric)
			}
			return m.Value, nil
		}
		h, ok := env.Holders[n.stage]
		if !ok {
			return 0, &skipError{fmt.Sprintf("no version is in %s", n.stage)}
		}
		m, ok := h.Metrics[n.metric]
		if !ok {
			return 0, &skipError{fmt.Sprintf("%s version %d has no metric %q", n.stage, h.Version, n.metric)}
		}
		return m.Value, nil
	case 'u':
		v, err := n.a.eval(env)
		return -v, err
	}
	a, err := n.a.eval(env)
	if err != nil {
		return 0, err
	}
	b, err := n.b.eval(env)
	if err != nil {
		return 0, err
	}
	switch n.op {
	case '+':
		return a + b, nil
	case '-':
		return a - b, nil
	case '*':
		return a * b, nil
	}
	if b == 0 {
		return 0, fmt.Errorf("fails, division by zero")
	}
	return a / b, nil
}
