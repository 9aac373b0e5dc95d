package sqlstore

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/kilnai/kiln/internal/registry"
)

// sqlBuilder turns a registry.Query into a WHERE clause with arguments.
type sqlBuilder struct {
	s      *Store
	target registry.Target
	args   []any
	// correlate: the filter pins one model name, so few rows qualify and
	// key/value conditions are cheapest as per-row primary-key probes
	correlate bool
}

// pinsName reports whether e requires name = '<value>' at its top level.
func pinsName(e *registry.Expr) bool {
	if e == nil {
		return false
	}
	switch e.Logic {
	case registry.LogicCond:
		return e.Cond.Field.Kind == registry.FieldName && e.Cond.Op == registry.OpEq
	case registry.LogicAnd:
		for _, a := range e.Args {
			if pinsName(a) {
				return true
			}
		}
	}
	return false
}

func (b *sqlBuilder) arg(v any) string {
	b.args = append(b.args, v)
	return "?"
}

// column is the SQL expression of a plain attribute.
func (b *sqlBuilder) column(k registry.FieldKind) (string, error) {
	x := "v"
	if b.target == registry.TargetModels {
		if k == registry.FieldName {
			return "m.name", nil
		}
		x = "m"
	}
	switch k {
	case registry.FieldName:
		return x + ".model_name", nil
	case registry.FieldCreatedAt:
		return x + ".created_at", nil
	case registry.FieldUpdatedAt:
		return x + ".updated_at", nil
	case registry.FieldCreatedBy:
		return x + ".created_by", nil
	case registry.FieldDescription:
		return x + ".description", nil
	}
	if b.target == registry.TargetVersions {
		switch k {
		case registry.FieldVersion:
			return "v.version", nil
		case registry.FieldRunID:
			return "v.run_id", nil
		case registry.FieldStage:
			return "v.stage", nil
		case registry.FieldSource:
			return "v.source", nil
		case registry.FieldStatus:
			return "v.status", nil
		case registry.FieldFormat:
			return "v.artifact_format", nil
		case registry.FieldDigest:
			return "v.artifact_digest", nil
		}
	}
	return "", fmt.Errorf("%w: field cannot be used here", registry.ErrInvalid)
}

func (b *sqlBuilder) where(q registry.Query) (string, error) {
	var parts []string
	b.correlate = b.target == registry.TargetVersions && pinsName(q.Filter)
	if q.Filter != nil {
		f, err := b.expr(q.Filter)
		if err != nil {
			return "", err
		}
		parts = append(parts, f)
	}
	if q.After != "" {
		k, err := b.keyset(q.Order, q.After)
		if err != nil {
			return "", err
		}
		parts = append(parts, k)
	}
	if len(parts) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(parts, " AND "), nil
}

func (b *sqlBuilder) expr(e *registry.Expr) (string, error) {
	switch e.Logic {
	case registry.LogicCond:
		return b.cond(e.Cond)
	case registry.LogicAnd, registry.LogicOr:
		sep := " AND "
		if e.Logic == registry.LogicOr {
			sep = " OR "
		}
		parts := make([]string, 0, len(e.Args))
		for _, a := range e.Args {
			p, err := b.expr(a)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return "(" + strings.Join(parts, sep) + ")", nil
	}
	return "", fmt.Errorf("%w: malformed filter", registry.ErrInvalid)
}

// negated maps a negative operator to its positive form.
func negated(op registry.CmpOp) (registry.CmpOp, bool) {
	switch op {
	case registry.OpNotLike:
		return registry.OpLike, true
	case registry.OpNotILike:
		return registry.OpILike, true
	case registry.OpNotIn:
		return registry.OpIn, true
	}
	return op, false
}

// cmp renders "col op value" for a text or number comparison.
func (b *sqlBuilder) cmp(col string, c *registry.Cond, num bool) (string, error) {
	op := c.Op
	switch op {
	case registry.OpEq, registry.OpNe, registry.OpLt, registry.OpLe, registry.OpGt, registry.OpGe:
		sym := map[registry.CmpOp]string{registry.OpEq: "=", registry.OpNe: "<>", registry.OpLt: "<", registry.OpLe: "<=", registry.OpGt: ">", registry.OpGe: ">="}[op]
		var v any = c.Str
		switch {
		case !c.Time.IsZero():
			v = micros(c.Time)
		case num && c.Field.Kind == registry.FieldVersion:
			v = int64(c.Num)
		case num:
			v = c.Num
		}
		return col + " " + sym + " " + b.arg(v), nil
	case registry.OpLike, registry.OpNotLike, registry.OpILike, registry.OpNotILike:
		pos, neg := negated(op)
		var s string
		switch {
		case b.s.dialect == dialectPostgres && pos == registry.OpLike:
			s = col + " LIKE " + b.arg(c.Str) + " ESCAPE ''"
		case b.s.dialect == dialectPostgres:
			s = col + " ILIKE " + b.arg(c.Str) + " ESCAPE ''"
		case pos == registry.OpLike:
			// SQLite's LIKE ignores ASCII case; GLOB does not
			s = col + " GLOB " + b.arg(likeToGlob(c.Str))
		default:
			s = col + " LIKE " + b.arg(c.Str)
		}
		if neg {
			return "NOT (" + s + ")", nil
		}
		return s, nil
	case registry.OpIn, registry.OpNotIn:
		var items []string
		for _, v := range c.Strs {
			items = append(items, b.arg(v))
		}
		for _, n := range c.Nums {
			items = append(items, b.arg(int64(n)))
		}
		kw := " IN ("
		if op == registry.OpNotIn {
			kw = " NOT IN ("
		}
		return col + kw + strings.Join(items, ", ") + ")", nil
	}
	return "", fmt.Errorf("%w: unsupported operator", registry.ErrInvalid)
}

func (b *sqlBuilder) cond(c *registry.Cond) (string, error) {
	owner := "v.id"
	if b.target == registry.TargetModels {
		owner = "m.id"
	}
	switch c.Field.Kind {
	case registry.FieldTag, registry.FieldParam, registry.FieldMetric:
		table, col := "registry_version_tags", "version_id"
		switch {
		case c.Field.Kind == registry.FieldParam:
			table = "registry_version_params"
		case c.Field.Kind == registry.FieldMetric:
			table = "registry_version_metrics"
		case b.target == registry.TargetModels:
			table, col = "registry_model_tags", "model_id"
		}
		// a key/value condition holds when the key exists and its value
		// compares as asked (MLflow's semantics, also for !=); the negative
		// pattern/list operators hold when no such value exists. The
		// subquery is not correlated: it runs once over the (key, value)
		// index instead of once per candidate row.
		pos, neg := negated(c.Op)
		cc := *c
		cc.Op = pos
		key := b.arg(c.Field.Key)
		if b.correlate {
			// "+" keeps SQLite on the (owner, key) primary key rather
			// than the (key, value) index
			val := "x.value"
			if b.s.dialect == dialectSQLite {
				val = "+x.value"
			}
			inner, err := b.cmp(val, &cc, c.Field.Kind == registry.FieldMetric)
			if err != nil {
				return "", err
			}
			s := "EXISTS (SELECT 1 FROM " + table + " x WHERE x." + col + " = " + owner + " AND x.key = " + key + " AND " + inner + ")"
			if neg {
				s = "NOT " + s
			}
			return s, nil
		}
		inner, err := b.cmp("x.value", &cc, c.Field.Kind == registry.FieldMetric)
		if err != nil {
			return "", err
		}
		kw := " IN "
		if neg {
			kw = " NOT IN "
		}
		if b.s.dialect == dialectSQLite {
			// "+" keeps SQLite from driving the query from the subquery's
			// rows (then sorting them all); it walks the ORDER BY index
			// instead and stops after one page
			owner = "+" + owner
		}
		return owner + kw + "(SELECT x." + col + " FROM " + table + " x WHERE x.key = " + key + " AND " + inner + ")", nil
	case registry.FieldAlias:
		// aliases are few: the subquery's rows (versions by id) drive the
		// query, and an OR with another indexed condition can use both indexes
		pos, neg := negated(c.Op)
		if c.Op == registry.OpNe {
			pos, neg = registry.OpEq, true
		}
		cc := *c
		cc.Op = pos
		inner, err := b.cmp("a.alias", &cc, false)
		if err != nil {
			return "", err
		}
		kw := " IN "
		if neg {
			kw = " NOT IN "
		}
		if b.target == registry.TargetModels {
			return "m.id" + kw + "(SELECT a.model_id FROM registry_aliases a WHERE " + inner + ")", nil
		}
		return "v.id" + kw + "(SELECT av.id FROM registry_aliases a JOIN registry_versions av ON av.model_id = a.model_id AND av.version = a.version WHERE " + inner + ")", nil
	}
	col, err := b.column(c.Field.Kind)
	if err != nil {
		return "", err
	}
	return b.cmp(col, c, c.Field.Kind == registry.FieldVersion)
}

// likeToGlob turns a LIKE pattern (% and _) into an equivalent GLOB
// pattern, escaping GLOB's own metacharacters.
func likeToGlob(p string) string {
	var sb strings.Builder
	for _, r := range p {
		switch r {
		case '%':
			sb.WriteByte('*')
		case '_':
			sb.WriteByte('?')
		case '*', '?', '[':
			sb.WriteByte('[')
			sb.WriteRune(r)
			sb.WriteByte(']')
		default:
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

func (b *sqlBuilder) orderBy(keys []registry.OrderKey) string {
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		col, _ := b.column(k.Field.Kind)
		if k.Desc {
			col += " DESC"
		}
		parts = append(parts, col)
	}
	return " ORDER BY " + strings.Join(parts, ", ")
}

// cursorValues are the sort-key values of the last row of a page.
type cursorValues struct {
	name    string
	version int64
	created int64
	updated int64
}

func encodeCursor(keys []registry.OrderKey, v cursorValues) (string, error) {
	vals := make([]any, len(keys))
	for i, k := range keys {
		switch k.Field.Kind {
		case registry.FieldName:
			vals[i] = v.name
		case registry.FieldVersion:
			vals[i] = v.version
		case registry.FieldCreatedAt:
			vals[i] = v.created
		case registry.FieldUpdatedAt:
			vals[i] = v.updated
		default:
			return "", fmt.Errorf("%w: cannot page on %s", registry.ErrInvalid, k.Field)
		}
	}
	b, err := json.Marshal(vals)
	return string(b), err
}

// keyset renders "(k1, k2, ...) after (v1, v2, ...)" for mixed directions.
func (b *sqlBuilder) keyset(keys []registry.OrderKey, cursor string) (string, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(cursor), &raw); err != nil || len(raw) != len(keys) {
		return "", fmt.Errorf("%w: page token does not fit this search", registry.ErrInvalid)
	}
	vals := make([]any, len(keys))
	cols := make([]string, len(keys))
	for i, k := range keys {
		col, err := b.column(k.Field.Kind)
		if err != nil {
			return "", err
		}
		cols[i] = col
		if k.Field.Kind == registry.FieldName {
			var s string
			if err := json.Unmarshal(raw[i], &s); err != nil {
				return "", fmt.Errorf("%w: page token does not fit this search", registry.ErrInvalid)
			}
			vals[i] = s
		} else {
			var n int64
			if err := json.Unmarshal(raw[i], &n); err != nil {
				return "", fmt.Errorf("%w: page token does not fit this search", registry.ErrInvalid)
			}
			vals[i] = n
		}
	}
	// the leading bound (k1 >= v1, or <= when descending) lets the database
	// seek to the page instead of scanning from the start; the OR
	// expansion then drops the rows at or before the cursor
	lead := " >= "
	if keys[0].Desc {
		lead = " <= "
	}
	bound := cols[0] + lead + b.arg(vals[0])
	var ors []string
	for i := range keys {
		var ands []string
		for j := 0; j < i; j++ {
			ands = append(ands, cols[j]+" = "+b.arg(vals[j]))
		}
		op := " > "
		if keys[i].Desc {
			op = " < "
		}
		ands = append(ands, cols[i]+op+b.arg(vals[i]))
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	return "(" + bound + " AND (" + strings.Join(ors, " OR ") + "))", nil
}
