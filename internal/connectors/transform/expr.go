package transform

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"

	"github.com/kilnai/kiln/internal/pipeline"
)

// ExprError is a problem with an expression: where it is inside the
// expression (Offset, 0-based, in characters) and what it is. The engine
// can add Offset to the column of the expression in the spec file.
type ExprError struct {
	Expr   string
	Offset int
	Msg    string
}

// ExprOffset is where in the expression the problem is (0-based, in
// characters), for callers that map it into the spec file.
func (e *ExprError) ExprOffset() int { return e.Offset }

// ExprText is the expression, for callers that look for it in the spec.
func (e *ExprError) ExprText() string { return e.Expr }

func (e *ExprError) Error() string {
	return fmt.Sprintf("expression %q, at character %d: %s", e.Expr, e.Offset+1, e.Msg)
}

// maxExprLen bounds an expression's source (a spec is written by people).
const maxExprLen = 64 << 10

// exprErr converts an error of the expr library to an ExprError.
func exprErr(src string, err error) error {
	var fe *file.Error
	if errors.As(err, &fe) {
		off := fe.From
		if n := utf8.RuneCountInString(src); off > n {
			off = n
		}
		return &ExprError{Expr: src, Offset: max(off, 0), Msg: fe.Message}
	}
	return &ExprError{Expr: src, Msg: err.Error()}
}

// parseExpr checks an expression's syntax (no columns are known yet).
func parseExpr(src string) (*parser.Tree, error) {
	if len(src) > maxExprLen {
		return nil, &ExprError{Expr: src[:64] + "...", Msg: fmt.Sprintf("expression longer than %d bytes", maxExprLen)}
	}
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, exprErr(src, err)
	}
	return tree, nil
}

// Expression is an expression over a batch's columns, compiled for each
// schema it meets (normally one). It is safe for concurrent use.
//
// Evaluation is column-wise for column references, literals, arithmetic
// (+ - * / %), comparisons, `and`/`or`/`not` and `x == nil`; anything
// else (functions, string operations, `in`, member access, ...) runs in
// expr's virtual machine row by row.
//
// Nulls: a null operand makes arithmetic and comparisons null; `and` and
// `or` follow three-valued logic (false and null = false, true or null =
// true); `x == nil` is true for null x. In the row-by-row path a row whose
// evaluation fails while one of the columns it reads is null evaluates to
// null. A filter drops rows whose condition is null; derive stores null.
type Expression struct {
	src  string
	tree *parser.Tree
	refs map[string]bool // identifiers read (all columns if $env is used)
	all  bool

	mu    sync.Mutex
	progs []*boundExpr
}

// NewExpression parses src (syntax errors are *ExprError).
func NewExpression(src string) (*Expression, error) {
	tree, err := parseExpr(src)
	if err != nil {
		return nil, err
	}
	e := &Expression{src: src, tree: tree, refs: map[string]bool{}}
	ast.Find(tree.Node, func(n ast.Node) bool {
		switch id := n.(type) {
		case *ast.IdentifierNode:
			if id.Value == "$env" {
				e.all = true
			}
			e.refs[id.Value] = true
		case *ast.PointerNode:
			e.all = true
		}
		return false
	})
	return e, nil
}

// String returns the expression's source.
func (e *Expression) String() string { return e.src }

// boundExpr is an expression compiled for one schema.
type boundExpr struct {
	schema *arrow.Schema
	kind   vkind       // result kind of the column-wise form
	root   knode       // column-wise form (nil: row by row)
	prog   *vm.Program // row-by-row form
	cols   []envCol
	out    reflect.Type
}

type envCol struct {
	name string
	idx  int
	ref  bool
}

// bind returns the expression compiled for s.
func (e *Expression) bind(s *arrow.Schema) (*boundExpr, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, b := range e.progs {
		if b.schema.Equal(s) {
			return b, nil
		}
	}
	b, err := e.compile(s)
	if err != nil {
		return nil, err
	}
	if len(e.progs) >= 8 { // schemas rarely change; keep a few
		e.progs = e.progs[1:]
	}
	e.progs = append(e.progs, b)
	return b, nil
}

func (e *Expression) compile(s *arrow.Schema) (*boundExpr, error) {
	env := map[string]any{}
	b := &boundExpr{schema: s}
	for i, f := range s.Fields() {
		z, ok := zeroOf(f.Type)
		if !ok {
			continue
		}
		if _, dup := env[f.Name]; dup {
			continue
		}
		env[f.Name] = z
		b.cols = append(b.cols, envCol{name: f.Name, idx: i, ref: e.all || e.refs[f.Name]})
	}
	// expr checks types and names and gives positioned errors; its
	// program is the row-by-row fallback.
	prog, err := expr.Compile(e.src, expr.Env(env))
	if err != nil {
		if fe := (*file.Error)(nil); errors.As(err, &fe) && unknownColumn(fe.Message) {
			return nil, &ExprError{Expr: e.src, Offset: fe.From, Msg: fe.Message + " (columns: " + columnNames(s) + ")"}
		}
		return nil, exprErr(e.src, err)
	}
	b.prog = prog
	b.out = prog.Node().Type()
	if root, ok := vectorize(e.tree.Node, s); ok {
		b.root = root
		b.kind = root.kind()
	}
	return b, nil
}

func unknownColumn(msg string) bool {
	return len(msg) > 13 && msg[:13] == "unknown name "
}

// zeroOf returns the Go value standing for a column type in expr's
// environment (ints are int, floats float64, timestamps time.Time).
func zeroOf(dt arrow.DataType) (any, bool) {
	switch dt.ID() {
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64:
		return 0, true
	case arrow.FLOAT16, arrow.FLOAT32, arrow.FLOAT64:
		return 0.0, true
	case arrow.BOOL:
		return false, true
	case arrow.STRING, arrow.LARGE_STRING:
		return "", true
	case arrow.TIMESTAMP, arrow.DATE32, arrow.DATE64:
		return time.Time{}, true
	}
	return nil, false
}

// rowValue returns row i of a as the Go value zeroOf describes (nil for
// null).
func rowValue(a arrow.Array, i int) any {
	if a.IsNull(i) {
		return nil
	}
	switch c := a.(type) {
	case *array.Int8:
		return int(c.Value(i))
	case *array.Int16:
		return int(c.Value(i))
	case *array.Int32:
		return int(c.Value(i))
	case *array.Int64:
		return int(c.Value(i))
	case *array.Uint8:
		return int(c.Value(i))
	case *array.Uint16:
		return int(c.Value(i))
	case *array.Uint32:
		return int(c.Value(i))
	case *array.Uint64:
		return int(c.Value(i))
	case *array.Float16:
		return float64(c.Value(i).Float32())
	case *array.Float32:
		return float64(c.Value(i))
	case *array.Float64:
		return c.Value(i)
	case *array.Boolean:
		return c.Value(i)
	case *array.String:
		return c.Value(i)
	case *array.LargeString:
		return c.Value(i)
	case *array.Timestamp:
		u := c.DataType().(*arrow.TimestampType).Unit
		return c.Value(i).ToTime(u).UTC()
	case *array.Date32:
		return c.Value(i).ToTime().UTC()
	case *array.Date64:
		return c.Value(i).ToTime().UTC()
	}
	return nil
}

// getter returns a function reading row i of a (not null) as the Go
// value zeroOf describes, with the column's type resolved once.
func getter(a arrow.Array) func(i int) any {
	switch c := a.(type) {
	case *array.Int64:
		v := c.Int64Values()
		return func(i int) any { return int(v[i]) }
	case *array.Float64:
		v := c.Float64Values()
		return func(i int) any { return v[i] }
	case *array.String:
		return func(i int) any { return c.Value(i) }
	case *array.Boolean:
		return func(i int) any { return c.Value(i) }
	}
	return func(i int) any { return rowValue(a, i) }
}

// result is an evaluated expression over a batch.
type result struct {
	v   vec
	rej []pipeline.RowError
}

// eval evaluates the expression over every row of in.
func (b *boundExpr) eval(in pipeline.Batch) (result, error) {
	n := int(in.NumRows())
	if b.root != nil {
		ctx := &evalCtx{batch: in, n: n}
		v, err := b.root.eval(ctx)
		if err != nil {
			return result{}, err
		}
		return result{v: v, rej: ctx.rejected()}, nil
	}
	return b.evalRows(in)
}

// evalRows is the row-by-row path: expr's VM with one reused environment.
func (b *boundExpr) evalRows(in pipeline.Batch) (result, error) {
	n := int(in.NumRows())
	env := make(map[string]any, len(b.cols))
	for _, c := range b.cols {
		z, _ := zeroOf(in.Column(c.idx).DataType())
		env[c.name] = z
	}
	var machine vm.VM
	vals := make([]any, n)
	var rej []pipeline.RowError
	nulls := make(nullMask, n)
	type ref struct {
		name string
		get  func(i int) any
		col  arrow.Array
	}
	var refs []ref
	for _, c := range b.cols {
		if c.ref {
			a := in.Column(c.idx)
			refs = append(refs, ref{name: c.name, get: getter(a), col: a})
		}
	}
	for i := range n {
		readsNull := false
		for _, r := range refs {
			if r.col.IsNull(i) {
				readsNull = true
				env[r.name] = nil
				continue
			}
			env[r.name] = r.get(i)
		}
		out, err := machine.Run(b.prog, env)
		if err != nil {
			nulls[i] = true
			if !readsNull {
				rej = append(rej, pipeline.RowError{Row: i, Err: fmt.Errorf("%w", exprErr(b.prog.Source().String(), err))})
			}
			continue
		}
		if out == nil {
			nulls[i] = true
		}
		vals[i] = out
	}
	v, err := vecFromValues(vals, nulls, b.out)
	if err != nil {
		return result{}, err
	}
	return result{v: v, rej: rej}, nil
}

// vecFromValues converts row results to a vector, the kind chosen by the
// expression's static type or, when that is unknown, by the values.
func vecFromValues(vals []any, nulls nullMask, t reflect.Type) (vec, error) {
	n := len(vals)
	kind := kNull
	if t != nil {
		switch t.Kind() {
		case reflect.Bool:
			kind = kBool
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			kind = kInt
		case reflect.Float32, reflect.Float64:
			kind = kFloat
		case reflect.String:
			kind = kString
		}
		if t == reflect.TypeOf(time.Time{}) {
			kind = kTime
		}
	}
	if kind == kNull {
		for _, v := range vals {
			if v == nil {
				continue
			}
			k := kindOfValue(v)
			if k == kNull {
				return vec{}, fmt.Errorf("expression gives %T values, which cannot be stored in a column", v)
			}
			if kind == kNull || kind == kInt && k == kFloat {
				kind = k
			}
		}
	}
	out := vec{kind: kind, n: n, nulls: nulls}
	switch kind {
	case kNull:
		return vec{kind: kNull, konst: true, n: n}, nil
	case kBool:
		out.b = make([]bool, n)
	case kInt:
		out.i = make([]int64, n)
	case kFloat:
		out.f = make([]float64, n)
	case kString:
		out.s = make([]string, n)
	case kTime:
		out.t = make([]time.Time, n)
	}
	for i, v := range vals {
		if v == nil {
			continue
		}
		ok := true
		switch kind {
		case kBool:
			out.b[i], ok = v.(bool)
		case kInt:
			out.i[i], ok = toInt(v)
		case kFloat:
			out.f[i], ok = toFloat(v)
		case kString:
			out.s[i], ok = v.(string)
		case kTime:
			out.t[i], ok = v.(time.Time)
		}
		if !ok {
			return vec{}, fmt.Errorf("expression gives values of mixed types (%s and %T)", kind, v)
		}
	}
	return out, nil
}

func kindOfValue(v any) vkind {
	switch v.(type) {
	case bool:
		return kBool
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return kInt
	case float32, float64:
		return kFloat
	case string:
		return kString
	case time.Time:
		return kTime
	}
	return kNull
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	}
	if i, ok := toInt(v); ok {
		return float64(i), true
	}
	return 0, false
}

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint:
		return int64(x), true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		return int64(x), true
	}
	return 0, false
}

// ---- column-wise evaluation ----

type vkind uint8

const (
	kNull vkind = iota
	kBool
	kInt
	kFloat
	kString
	kTime
)

func (k vkind) String() string {
	return [...]string{"null", "bool", "int", "float", "string", "time"}[k]
}

// vec is a column of values (or a constant when konst).
type vec struct {
	kind  vkind
	konst bool
	n     int
	b     []bool
	i     []int64
	f     []float64
	s     []string
	t     []time.Time
	// arr is the column the values come from, when they are a column
	// reference (derive reuses it as is).
	arr   arrow.Array
	nulls nullMask
}

// isNull reports whether row i is null.
func (v vec) isNull(i int) bool {
	if v.kind == kNull {
		return true
	}
	return v.nulls != nil && v.nulls[i]
}

// truth returns the rows where a boolean vector is true (and not null).
func (v vec) truth() ([]bool, int, error) {
	keep := make([]bool, v.n)
	switch {
	case v.kind == kNull:
		return keep, 0, nil
	case v.kind != kBool:
		return nil, 0, fmt.Errorf("a condition must be true or false, this one gives %s values", v.kind)
	case v.konst:
		if v.b[0] {
			for i := range keep {
				keep[i] = true
			}
			return keep, v.n, nil
		}
		return keep, 0, nil
	}
	count := 0
	for i, b := range v.b {
		if b && (v.nulls == nil || !v.nulls[i]) {
			keep[i] = true
			count++
		}
	}
	return keep, count, nil
}

// array converts the vector to an Arrow array of n rows.
func (v vec) array() arrow.Array {
	if v.arr != nil {
		v.arr.Retain()
		return v.arr
	}
	if v.konst {
		v = v.broadcast()
	}
	switch v.kind {
	case kBool:
		return boolArray(v.b, v.nulls)
	case kInt:
		return int64Array(v.i, v.nulls)
	case kFloat:
		return float64Array(v.f, v.nulls)
	case kString:
		b := array.NewStringBuilder(memory.DefaultAllocator)
		defer b.Release()
		b.Reserve(v.n)
		for i, s := range v.s {
			if v.isNull(i) {
				b.AppendNull()
			} else {
				b.Append(s)
			}
		}
		return b.NewArray()
	case kTime:
		vals := make([]int64, v.n)
		for i, t := range v.t {
			vals[i] = t.UnixMicro()
		}
		bm, nn := v.nulls.bitmap(v.n)
		return makeArray(&arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, v.n, []*memory.Buffer{bm, memory.NewBufferBytes(bytesOf(vals))}, nn)
	}
	return array.NewNull(v.n)
}

// broadcast materialises a constant as a column.
func (v vec) broadcast() vec {
	if !v.konst || v.kind == kNull {
		return v
	}
	out := vec{kind: v.kind, n: v.n}
	switch v.kind {
	case kBool:
		out.b = fill(v.n, v.b[0])
	case kInt:
		out.i = fill(v.n, v.i[0])
	case kFloat:
		out.f = fill(v.n, v.f[0])
	case kString:
		out.s = fill(v.n, v.s[0])
	case kTime:
		out.t = fill(v.n, v.t[0])
	}
	return out
}

func fill[T any](n int, x T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = x
	}
	return out
}

type evalCtx struct {
	batch pipeline.Batch
	n     int
	errs  map[int]error
}

func (c *evalCtx) rowError(i int, err error) {
	if c.errs == nil {
		c.errs = map[int]error{}
	}
	if _, seen := c.errs[i]; !seen {
		c.errs[i] = err
	}
}

func (c *evalCtx) rejected() []pipeline.RowError {
	if len(c.errs) == 0 {
		return nil
	}
	out := make([]pipeline.RowError, 0, len(c.errs))
	for i := range c.n {
		if err, ok := c.errs[i]; ok {
			out = append(out, pipeline.RowError{Row: i, Err: err})
		}
	}
	return out
}

// knode is a node of the column-wise form.
type knode interface {
	kind() vkind
	eval(c *evalCtx) (vec, error)
}

// vectorize compiles an expression tree to the column-wise form, or
// reports false when some part of it needs the row-by-row path.
func vectorize(n ast.Node, s *arrow.Schema) (knode, bool) {
	switch t := n.(type) {
	case *ast.IdentifierNode:
		idx := s.FieldIndices(t.Value)
		if len(idx) == 0 {
			return nil, false
		}
		k := columnKind(s.Field(idx[0]).Type)
		if k == kNull {
			return nil, false
		}
		return &colNode{idx: idx[0], k: k}, true
	case *ast.IntegerNode:
		return &constNode{v: vec{kind: kInt, konst: true, i: []int64{int64(t.Value)}}}, true
	case *ast.FloatNode:
		return &constNode{v: vec{kind: kFloat, konst: true, f: []float64{t.Value}}}, true
	case *ast.BoolNode:
		return &constNode{v: vec{kind: kBool, konst: true, b: []bool{t.Value}}}, true
	case *ast.StringNode:
		return &constNode{v: vec{kind: kString, konst: true, s: []string{t.Value}}}, true
	case *ast.NilNode:
		return &constNode{v: vec{kind: kNull, konst: true}}, true
	case *ast.UnaryNode:
		x, ok := vectorize(t.Node, s)
		if !ok {
			return nil, false
		}
		switch t.Operator {
		case "-", "+":
			if x.kind() != kInt && x.kind() != kFloat {
				return nil, false
			}
			return &negNode{x: x, neg: t.Operator == "-"}, true
		case "!", "not":
			if x.kind() != kBool {
				return nil, false
			}
			return &notNode{x: x}, true
		}
		return nil, false
	case *ast.BuiltinNode:
		if len(t.Arguments) == 1 && (t.Name == "len" || t.Name == "abs") {
			x, ok := vectorize(t.Arguments[0], s)
			switch {
			case ok && t.Name == "len" && x.kind() == kString:
				return &lenNode{x: x}, true
			case ok && t.Name == "abs" && numeric(x.kind()):
				return &absNode{x: x}, true
			}
		}
		return fold(t)
	case *ast.ConditionalNode:
		c, ok := vectorize(t.Cond, s)
		if !ok || c.kind() != kBool {
			return nil, false
		}
		a, ok := vectorize(t.Exp1, s)
		if !ok {
			return nil, false
		}
		b, ok := vectorize(t.Exp2, s)
		if !ok {
			return nil, false
		}
		k := a.kind()
		if k == kNull {
			k = b.kind()
		}
		if k == kNull || k == kTime || (a.kind() != k && a.kind() != kNull) || (b.kind() != k && b.kind() != kNull) {
			return nil, false
		}
		return &condNode{c: c, a: a, b: b, k: k}, true
	case *ast.BinaryNode:
		if t.Operator == "in" {
			if n, ok := inList(t, s); ok {
				return n, true
			}
			return fold(t)
		}
		l, ok := vectorize(t.Left, s)
		if !ok {
			return nil, false
		}
		r, ok := vectorize(t.Right, s)
		if !ok {
			return nil, false
		}
		return binaryNode(t.Operator, l, r)
	}
	return fold(n)
}

// fold evaluates a part of an expression that reads no column (such as
// date("2025-01-01")) once, as a constant. Parts calling now() are left
// to the row-by-row path, where they are evaluated per row.
func fold(n ast.Node) (knode, bool) {
	pure := true
	ast.Find(n, func(x ast.Node) bool {
		switch t := x.(type) {
		case *ast.IdentifierNode, *ast.PointerNode, *ast.VariableDeclaratorNode, *ast.PredicateNode:
			pure = false
		case *ast.BuiltinNode:
			if t.Name == "now" {
				pure = false
			}
		case *ast.CallNode:
			pure = false
		}
		return false
	})
	if !pure {
		return nil, false
	}
	v, err := expr.Eval(n.String(), nil)
	if err != nil {
		return nil, false
	}
	switch x := v.(type) {
	case bool:
		return &constNode{v: vec{kind: kBool, konst: true, b: []bool{x}}}, true
	case string:
		return &constNode{v: vec{kind: kString, konst: true, s: []string{x}}}, true
	case float64:
		return &constNode{v: vec{kind: kFloat, konst: true, f: []float64{x}}}, true
	case time.Time:
		return &constNode{v: vec{kind: kTime, konst: true, t: []time.Time{x}}}, true
	case int:
		return &constNode{v: vec{kind: kInt, konst: true, i: []int64{int64(x)}}}, true
	}
	return nil, false
}

func columnKind(dt arrow.DataType) vkind {
	switch dt.ID() {
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64:
		return kInt
	case arrow.FLOAT16, arrow.FLOAT32, arrow.FLOAT64:
		return kFloat
	case arrow.BOOL:
		return kBool
	case arrow.STRING, arrow.LARGE_STRING:
		return kString
	case arrow.TIMESTAMP, arrow.DATE32, arrow.DATE64:
		return kTime
	}
	return kNull
}

func numeric(k vkind) bool { return k == kInt || k == kFloat }

func binaryNode(op string, l, r knode) (knode, bool) {
	lk, rk := l.kind(), r.kind()
	switch op {
	case "and", "&&", "or", "||":
		if (lk == kBool || lk == kNull) && (rk == kBool || rk == kNull) {
			return &logicNode{l: l, r: r, and: op == "and" || op == "&&"}, true
		}
	case "+", "-", "*":
		if numeric(lk) && numeric(rk) {
			k := kInt
			if lk == kFloat || rk == kFloat {
				k = kFloat
			}
			return &arithNode{op: op[0], l: l, r: r, k: k}, true
		}
	case "/":
		if numeric(lk) && numeric(rk) {
			return &arithNode{op: '/', l: l, r: r, k: kFloat}, true
		}
	case "%":
		if lk == kInt && rk == kInt {
			return &arithNode{op: '%', l: l, r: r, k: kInt}, true
		}
	case "==", "!=":
		if lk == kNull || rk == kNull {
			return &isNilNode{x: pickNonNull(l, r), eq: op == "=="}, true
		}
		if numeric(lk) && numeric(rk) || lk == rk {
			return &cmpNode{op: op, l: l, r: r}, true
		}
	case "<", "<=", ">", ">=":
		if numeric(lk) && numeric(rk) || lk == kString && rk == kString || lk == kTime && rk == kTime {
			return &cmpNode{op: op, l: l, r: r}, true
		}
	case "startsWith", "endsWith", "contains":
		if lk == kString && rk == kString {
			return &strOpNode{op: op, l: l, r: r}, true
		}
	}
	return nil, false
}

// inList compiles `x in [literal, ...]` for string and numeric x.
func inList(t *ast.BinaryNode, s *arrow.Schema) (knode, bool) {
	arr, ok := t.Right.(*ast.ArrayNode)
	if !ok || len(arr.Nodes) == 0 {
		return nil, false
	}
	x, ok := vectorize(t.Left, s)
	if !ok {
		return nil, false
	}
	n := &inNode{x: x, strs: map[string]bool{}, nums: map[float64]bool{}}
	for _, item := range arr.Nodes {
		if u, ok := item.(*ast.UnaryNode); ok && u.Operator == "-" {
			switch v := u.Node.(type) {
			case *ast.IntegerNode:
				item = &ast.IntegerNode{Value: -v.Value}
			case *ast.FloatNode:
				item = &ast.FloatNode{Value: -v.Value}
			}
		}
		switch v := item.(type) {
		case *ast.StringNode:
			if x.kind() != kString {
				return nil, false
			}
			n.strs[v.Value] = true
		case *ast.IntegerNode:
			if !numeric(x.kind()) {
				return nil, false
			}
			n.nums[float64(v.Value)] = true
			if int(float64(v.Value)) != v.Value {
				return nil, false // not exact as a float
			}
		case *ast.FloatNode:
			if !numeric(x.kind()) {
				return nil, false
			}
			n.nums[v.Value] = true
		default:
			return nil, false
		}
	}
	return n, true
}

func pickNonNull(l, r knode) knode {
	if l.kind() == kNull {
		return r
	}
	return l
}

type lenNode struct{ x knode }

func (n *lenNode) kind() vkind { return kInt }
func (n *lenNode) eval(ctx *evalCtx) (vec, error) {
	x, err := n.x.eval(ctx)
	if err != nil {
		return x, err
	}
	out := vec{kind: kInt, konst: x.konst, n: x.n, nulls: x.nulls, i: make([]int64, len(x.s))}
	for i, v := range x.s {
		out.i[i] = int64(utf8.RuneCountInString(v))
	}
	return out, nil
}

type absNode struct{ x knode }

func (n *absNode) kind() vkind { return n.x.kind() }
func (n *absNode) eval(ctx *evalCtx) (vec, error) {
	x, err := n.x.eval(ctx)
	if err != nil {
		return x, err
	}
	out := vec{kind: x.kind, konst: x.konst, n: x.n, nulls: x.nulls}
	if x.kind == kInt {
		out.i = make([]int64, len(x.i))
		for i, v := range x.i {
			if v < 0 {
				v = -v
			}
			out.i[i] = v
		}
		return out, nil
	}
	out.f = make([]float64, len(x.f))
	for i, v := range x.f {
		if v < 0 {
			v = -v
		}
		out.f[i] = v
	}
	return out, nil
}

// condNode is `c ? a : b`; a null condition gives null.
type condNode struct {
	c, a, b knode
	k       vkind
}

func (n *condNode) kind() vkind { return n.k }
func (n *condNode) eval(ctx *evalCtx) (vec, error) {
	c, err := n.c.eval(ctx)
	if err != nil {
		return c, err
	}
	a, err := n.a.eval(ctx)
	if err != nil {
		return a, err
	}
	b, err := n.b.eval(ctx)
	if err != nil {
		return b, err
	}
	c, a, b = c.broadcast(), materialize(a, n.k), materialize(b, n.k)
	out := vec{kind: n.k, n: ctx.n, nulls: make(nullMask, ctx.n)}
	switch n.k {
	case kBool:
		out.b = make([]bool, ctx.n)
	case kInt:
		out.i = make([]int64, ctx.n)
	case kFloat:
		out.f = make([]float64, ctx.n)
	case kString:
		out.s = make([]string, ctx.n)
	}
	for i := range ctx.n {
		if c.isNull(i) {
			out.nulls[i] = true
			continue
		}
		src := b
		if c.b[i] {
			src = a
		}
		if src.isNull(i) {
			out.nulls[i] = true
			continue
		}
		switch n.k {
		case kBool:
			out.b[i] = src.b[i]
		case kInt:
			out.i[i] = src.i[i]
		case kFloat:
			out.f[i] = src.f[i]
		case kString:
			out.s[i] = src.s[i]
		}
	}
	return out, nil
}

// materialize broadcasts v to a column of kind k (a null constant becomes
// a column of nulls).
func materialize(v vec, k vkind) vec {
	if v.kind == kNull {
		return vec{kind: k, n: v.n, nulls: fill(v.n, true), b: make([]bool, v.n), i: make([]int64, v.n), f: make([]float64, v.n), s: make([]string, v.n)}
	}
	return v.broadcast()
}

type inNode struct {
	x    knode
	strs map[string]bool
	nums map[float64]bool
}

func (n *inNode) kind() vkind { return kBool }
func (n *inNode) eval(ctx *evalCtx) (vec, error) {
	x, err := n.x.eval(ctx)
	if err != nil {
		return x, err
	}
	out := vec{kind: kBool, konst: x.konst, n: x.n, nulls: x.nulls}
	switch x.kind {
	case kString:
		out.b = make([]bool, len(x.s))
		for i, v := range x.s {
			out.b[i] = n.strs[v]
		}
	case kInt:
		out.b = make([]bool, len(x.i))
		for i, v := range x.i {
			f := float64(v)
			out.b[i] = int64(f) == v && n.nums[f] // v exactly a listed value
		}
	case kFloat:
		out.b = make([]bool, len(x.f))
		for i, v := range x.f {
			out.b[i] = n.nums[v]
		}
	}
	return out, nil
}

type strOpNode struct {
	op   string
	l, r knode
}

func (n *strOpNode) kind() vkind { return kBool }
func (n *strOpNode) eval(ctx *evalCtx) (vec, error) {
	l, err := n.l.eval(ctx)
	if err != nil {
		return l, err
	}
	r, err := n.r.eval(ctx)
	if err != nil {
		return r, err
	}
	konst := l.konst && r.konst
	l, r = l.broadcast(), r.broadcast()
	size := ctx.n
	if konst {
		size = 1
	}
	out := vec{kind: kBool, konst: konst, n: ctx.n, nulls: unionNulls(l, r), b: make([]bool, size)}
	f := strings.HasPrefix
	switch n.op {
	case "endsWith":
		f = strings.HasSuffix
	case "contains":
		f = strings.Contains
	}
	for i := range out.b {
		out.b[i] = f(l.s[i], r.s[i])
	}
	return out, nil
}

type constNode struct{ v vec }

func (c *constNode) kind() vkind { return c.v.kind }
func (c *constNode) eval(ctx *evalCtx) (vec, error) {
	v := c.v
	v.n = ctx.n
	return v, nil
}

type colNode struct {
	idx int
	k   vkind
}

func (c *colNode) kind() vkind { return c.k }

func (c *colNode) eval(ctx *evalCtx) (vec, error) {
	a := ctx.batch.Column(c.idx)
	v := vec{kind: c.k, n: ctx.n, nulls: nullsOf(a), arr: a}
	switch col := a.(type) {
	case *array.Int64:
		v.i = col.Int64Values()
	case *array.Float64:
		v.f = col.Float64Values()
	case *array.Boolean:
		v.b = make([]bool, ctx.n)
		for i := range v.b {
			v.b[i] = col.Value(i)
		}
	case *array.String:
		v.s = make([]string, ctx.n)
		for i := range v.s {
			v.s[i] = col.Value(i)
		}
	case *array.LargeString:
		v.s = make([]string, ctx.n)
		for i := range v.s {
			v.s[i] = col.Value(i)
		}
	case *array.Timestamp, *array.Date32, *array.Date64:
		v.t = make([]time.Time, ctx.n)
		for i := range v.t {
			if !a.IsNull(i) {
				v.t[i] = rowValue(a, i).(time.Time)
			}
		}
	default:
		var err error
		if c.k == kFloat {
			v.f, err = asFloat64(a)
		} else {
			v.i, err = asInt64(a)
		}
		if err != nil {
			return vec{}, err
		}
	}
	return v, nil
}

type negNode struct {
	x   knode
	neg bool
}

func (n *negNode) kind() vkind { return n.x.kind() }
func (n *negNode) eval(ctx *evalCtx) (vec, error) {
	x, err := n.x.eval(ctx)
	if err != nil || !n.neg {
		return x, err
	}
	out := vec{kind: x.kind, konst: x.konst, n: x.n, nulls: x.nulls}
	switch x.kind {
	case kInt:
		out.i = make([]int64, len(x.i))
		for i, v := range x.i {
			out.i[i] = -v
		}
	case kFloat:
		out.f = make([]float64, len(x.f))
		for i, v := range x.f {
			out.f[i] = -v
		}
	}
	return out, nil
}

type notNode struct{ x knode }

func (n *notNode) kind() vkind { return kBool }
func (n *notNode) eval(ctx *evalCtx) (vec, error) {
	x, err := n.x.eval(ctx)
	if err != nil {
		return x, err
	}
	out := vec{kind: kBool, konst: x.konst, n: x.n, nulls: x.nulls, b: make([]bool, len(x.b))}
	for i, v := range x.b {
		out.b[i] = !v
	}
	return out, nil
}

type isNilNode struct {
	x  knode
	eq bool
}

func (n *isNilNode) kind() vkind { return kBool }
func (n *isNilNode) eval(ctx *evalCtx) (vec, error) {
	x, err := n.x.eval(ctx)
	if err != nil {
		return x, err
	}
	if x.konst || x.nulls == nil {
		isNull := x.kind == kNull
		return vec{kind: kBool, konst: true, n: x.n, b: []bool{isNull == n.eq}}, nil
	}
	out := vec{kind: kBool, n: x.n, b: make([]bool, x.n)}
	for i, isNull := range x.nulls {
		out.b[i] = isNull == n.eq
	}
	return out, nil
}

type logicNode struct {
	l, r knode
	and  bool
}

func (n *logicNode) kind() vkind { return kBool }
func (n *logicNode) eval(ctx *evalCtx) (vec, error) {
	l, err := n.l.eval(ctx)
	if err != nil {
		return l, err
	}
	r, err := n.r.eval(ctx)
	if err != nil {
		return r, err
	}
	l, r = asBoolVec(l), asBoolVec(r)
	out := vec{kind: kBool, n: ctx.n, b: make([]bool, ctx.n)}
	if l.nulls == nil && r.nulls == nil {
		if n.and {
			for i := range out.b {
				out.b[i] = l.b[i] && r.b[i]
			}
		} else {
			for i := range out.b {
				out.b[i] = l.b[i] || r.b[i]
			}
		}
		return out, nil
	}
	out.nulls = make(nullMask, ctx.n)
	lb, rb, lm, rm := l.b, r.b, l.nulls, r.nulls
	for i := range out.b {
		ln := lm != nil && lm[i]
		rn := rm != nil && rm[i]
		lv, rv := !ln && lb[i], !rn && rb[i]
		if n.and {
			switch {
			case !ln && !lv || !rn && !rv:
			case ln || rn:
				out.nulls[i] = true
			default:
				out.b[i] = true
			}
		} else {
			switch {
			case lv || rv:
				out.b[i] = true
			case ln || rn:
				out.nulls[i] = true
			}
		}
	}
	return out, nil
}

// asBoolVec materialises a boolean (or null) vector for logic.
func asBoolVec(v vec) vec {
	if v.kind == kNull {
		return vec{kind: kBool, n: v.n, b: make([]bool, v.n), nulls: fill(v.n, true)}
	}
	return v.broadcast()
}

type arithNode struct {
	op   byte
	l, r knode
	k    vkind
}

func (n *arithNode) kind() vkind { return n.k }

func (n *arithNode) eval(ctx *evalCtx) (vec, error) {
	l, err := n.l.eval(ctx)
	if err != nil {
		return l, err
	}
	r, err := n.r.eval(ctx)
	if err != nil {
		return r, err
	}
	out := vec{kind: n.k, n: ctx.n, konst: l.konst && r.konst, nulls: unionNulls(l, r)}
	if n.k == kInt {
		a, b := l.i, r.i
		out.i = make([]int64, max(len(a), len(b)))
		if n.op == '%' {
			modInts(ctx, a, b, l.konst, r.konst, out.i, out.nulls)
			return out, nil
		}
		arith(n.op, a, b, l.konst, r.konst, out.i)
		return out, nil
	}
	a, b := floats(l), floats(r)
	out.f = make([]float64, max(len(a), len(b)))
	arith(n.op, a, b, l.konst, r.konst, out.f)
	return out, nil
}

func unionNulls(l, r vec) nullMask {
	switch {
	case l.nulls == nil:
		return r.nulls
	case r.nulls == nil:
		return l.nulls
	}
	out := make(nullMask, len(l.nulls))
	for i := range out {
		out[i] = l.nulls[i] || r.nulls[i]
	}
	return out
}

func floats(v vec) []float64 {
	if v.kind == kFloat {
		return v.f
	}
	out := make([]float64, len(v.i))
	for i, x := range v.i {
		out[i] = float64(x)
	}
	return out
}

// arith computes out = a op b; a constant operand has one element.
func arith[T int64 | float64](op byte, a, b []T, ac, bc bool, out []T) {
	switch {
	case ac && bc:
		out[0] = arith1(op, a[0], b[0])
	case bc:
		c := b[0]
		switch op {
		case '+':
			for i, x := range a {
				out[i] = x + c
			}
		case '-':
			for i, x := range a {
				out[i] = x - c
			}
		case '*':
			for i, x := range a {
				out[i] = x * c
			}
		case '/':
			for i, x := range a {
				out[i] = x / c
			}
		}
	case ac:
		c := a[0]
		switch op {
		case '+':
			for i, x := range b {
				out[i] = c + x
			}
		case '-':
			for i, x := range b {
				out[i] = c - x
			}
		case '*':
			for i, x := range b {
				out[i] = c * x
			}
		case '/':
			for i, x := range b {
				out[i] = c / x
			}
		}
	default:
		b = b[:len(a)]
		switch op {
		case '+':
			for i, x := range a {
				out[i] = x + b[i]
			}
		case '-':
			for i, x := range a {
				out[i] = x - b[i]
			}
		case '*':
			for i, x := range a {
				out[i] = x * b[i]
			}
		case '/':
			for i, x := range a {
				out[i] = x / b[i]
			}
		}
	}
}

func arith1[T int64 | float64](op byte, a, b T) T {
	switch op {
	case '+':
		return a + b
	case '-':
		return a - b
	case '*':
		return a * b
	}
	return a / b
}

var errDivZero = errors.New("integer divide by zero")

// modInts computes a % b; a zero divisor makes the row null and rejected.
func modInts(ctx *evalCtx, a, b []int64, ac, bc bool, out []int64, nulls nullMask) {
	get := func(s []int64, c bool, i int) int64 {
		if c {
			return s[0]
		}
		return s[i]
	}
	for i := range out {
		x, y := get(a, ac, i), get(b, bc, i)
		if y == 0 {
			if nulls == nil || !nulls[i] {
				ctx.rowError(i, errDivZero)
			}
			continue
		}
		if y == -1 { // MinInt64 % -1 overflows in hardware
			out[i] = 0
			continue
		}
		out[i] = x % y
	}
}

type cmpNode struct {
	op   string
	l, r knode
}

func (n *cmpNode) kind() vkind { return kBool }

func (n *cmpNode) eval(ctx *evalCtx) (vec, error) {
	l, err := n.l.eval(ctx)
	if err != nil {
		return l, err
	}
	r, err := n.r.eval(ctx)
	if err != nil {
		return r, err
	}
	out := vec{kind: kBool, n: ctx.n, konst: l.konst && r.konst, nulls: unionNulls(l, r)}
	size := ctx.n
	if out.konst {
		size = 1
	}
	out.b = make([]bool, size)
	switch {
	case l.kind == kInt && r.kind == kInt:
		compare(n.op, l.i, r.i, l.konst, r.konst, out.b)
	case numeric(l.kind):
		compare(n.op, floats(l), floats(r), l.konst, r.konst, out.b)
	case l.kind == kString:
		compare(n.op, l.s, r.s, l.konst, r.konst, out.b)
	case l.kind == kBool:
		x, y := boolInts(l), boolInts(r)
		compare(n.op, x, y, l.konst, r.konst, out.b)
	case l.kind == kTime:
		compareTimes(n.op, l, r, out.b)
	}
	return out, nil
}

// compareTimes compares times as expr does (Before, After, Equal).
func compareTimes(op string, l, r vec, out []bool) {
	at := func(v vec, i int) time.Time {
		if v.konst {
			return v.t[0]
		}
		return v.t[i]
	}
	for i := range out {
		a, b := at(l, i), at(r, i)
		switch op {
		case "==":
			out[i] = a.Equal(b)
		case "!=":
			out[i] = !a.Equal(b)
		case "<":
			out[i] = a.Before(b)
		case "<=":
			out[i] = !a.After(b)
		case ">":
			out[i] = a.After(b)
		case ">=":
			out[i] = !a.Before(b)
		}
	}
}

func boolInts(v vec) []int64 {
	out := make([]int64, len(v.b))
	for i, b := range v.b {
		if b {
			out[i] = 1
		}
	}
	return out
}

// flip mirrors a comparison so that `c op x` becomes `x flip(op) c`.
func flip(op string) string {
	switch op {
	case "<":
		return ">"
	case "<=":
		return ">="
	case ">":
		return "<"
	case ">=":
		return "<="
	}
	return op
}

func compare[T cmp.Ordered](op string, a, b []T, ac, bc bool, out []bool) {
	switch {
	case ac && bc:
		out[0] = cmp1(op, a[0], b[0])
	case ac:
		compareConst(flip(op), b, a[0], out)
	case bc:
		compareConst(op, a, b[0], out)
	default:
		b = b[:len(a)]
		switch op {
		case "==":
			for i, x := range a {
				out[i] = x == b[i]
			}
		case "!=":
			for i, x := range a {
				out[i] = x != b[i]
			}
		case "<":
			for i, x := range a {
				out[i] = x < b[i]
			}
		case "<=":
			for i, x := range a {
				out[i] = x <= b[i]
			}
		case ">":
			for i, x := range a {
				out[i] = x > b[i]
			}
		case ">=":
			for i, x := range a {
				out[i] = x >= b[i]
			}
		}
	}
}

func compareConst[T cmp.Ordered](op string, a []T, c T, out []bool) {
	switch op {
	case "==":
		for i, x := range a {
			out[i] = x == c
		}
	case "!=":
		for i, x := range a {
			out[i] = x != c
		}
	case "<":
		for i, x := range a {
			out[i] = x < c
		}
	case "<=":
		for i, x := range a {
			out[i] = x <= c
		}
	case ">":
		for i, x := range a {
			out[i] = x > c
		}
	case ">=":
		for i, x := range a {
			out[i] = x >= c
		}
	}
}

func cmp1[T cmp.Ordered](op string, a, b T) bool {
	switch op {
	case "==":
		return a == b
	case "!=":
		return a != b
	case "<":
		return a < b
	case "<=":
		return a <= b
	case ">":
		return a > b
	}
	return a >= b
}
