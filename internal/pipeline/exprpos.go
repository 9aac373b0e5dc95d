package pipeline

import (
	"bytes"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// exprError is what a component's Validate returns for a bad expression
// (the transforms' ExprError): the expression and the offset, in
// characters, of the problem inside it.
type exprError interface {
	error
	ExprText() string
	ExprOffset() int
}

// exprPos finds the scalar under n that holds expr and returns the
// position in the spec file of expr's character at off (0-based, in
// characters). It handles plain, single- and double-quoted scalars on one
// line and literal block scalars (|); ok is false when the scalar is
// written otherwise (folded, spread over lines, built by ${VAR}
// interpolation), and the error is then reported at the scalar.
func (p *parseState) exprPos(n ast.Node, expr string, off int) (Pos, bool) {
	if n == nil || off < 0 {
		return Pos{}, false
	}
	for _, typ := range []ast.NodeType{ast.StringType, ast.LiteralType} {
		for _, c := range ast.Filter(typ, n) {
			var value string
			switch v := c.(type) {
			case *ast.StringNode:
				value = v.Value
			case *ast.LiteralNode:
				if v.Value == nil {
					continue
				}
				value = v.Value.Value
			}
			if value != expr && strings.TrimRight(value, "\n") != expr {
				continue
			}
			tk := c.GetToken()
			if tk == nil || tk.Position == nil {
				continue
			}
			var line, col int
			var ok bool
			if typ == ast.LiteralType {
				line, col, ok = p.literalPos(tk, expr, off)
			} else {
				line, col, ok = p.scalarPos(tk, expr, off)
			}
			if ok {
				return Pos{File: p.file, Line: line, Col: col}, true
			}
		}
	}
	return Pos{}, false
}

// lineRunes returns line l (1-based) of the spec.
func (p *parseState) lineRunes(l int) ([]rune, bool) {
	lines := bytes.Split(p.src, []byte("\n"))
	if l < 1 || l > len(lines) {
		return nil, false
	}
	return []rune(strings.TrimSuffix(string(lines[l-1]), "\r")), true
}

// scalarPos maps off in a one-line flow scalar starting at tk.
func (p *parseState) scalarPos(tk *token.Token, expr string, off int) (line, col int, ok bool) {
	text, ok := p.lineRunes(tk.Position.Line)
	if !ok {
		return 0, 0, false
	}
	want := []rune(expr)
	if off > len(want) {
		return 0, 0, false
	}
	i := tk.Position.Column - 1 // the scalar's first character
	switch tk.Type {
	case token.DoubleQuoteType, token.SingleQuoteType:
		i++ // after the quote
	}
	if i < 0 || i > len(text) {
		return 0, 0, false
	}
	// Walk the whole scalar, to be sure it is expr as written.
	at := -1
	for k := 0; k < len(want); k++ {
		if i >= len(text) {
			return 0, 0, false // the scalar goes on on the next line
		}
		if k == off {
			at = i
		}
		n := 1
		switch {
		case tk.Type == token.DoubleQuoteType && text[i] == '\\':
			n = escapeLen(text[i:])
		case tk.Type == token.SingleQuoteType && text[i] == '\'':
			if i+1 >= len(text) || text[i+1] != '\'' {
				return 0, 0, false
			}
			n = 2
		case text[i] != want[k]:
			return 0, 0, false
		}
		i += n
	}
	if off == len(want) {
		at = i // the end of the expression (a parser's "unexpected end")
	}
	if at < 0 || i > len(text) {
		return 0, 0, false
	}
	quote := map[token.Type]rune{token.DoubleQuoteType: '"', token.SingleQuoteType: '\''}[tk.Type]
	if quote != 0 && (i >= len(text) || text[i] != quote) {
		return 0, 0, false // not the end of the scalar
	}
	return tk.Position.Line, at + 1, true
}

// escapeLen is the length of the double-quoted escape sequence at s[0].
func escapeLen(s []rune) int {
	if len(s) < 2 {
		return 1
	}
	n := 2
	switch s[1] {
	case 'x':
		n = 4
	case 'u':
		n = 6
	case 'U':
		n = 10
	}
	return min(n, len(s))
}

// literalPos maps off in a literal block scalar (|) whose indicator is at
// tk: its lines follow the indicator, indented.
func (p *parseState) literalPos(tk *token.Token, expr string, off int) (line, col int, ok bool) {
	want := []rune(expr)
	if off > len(want) {
		return 0, 0, false
	}
	l := tk.Position.Line + 1
	text, ok := p.lineRunes(l)
	for ok && strings.TrimSpace(string(text)) == "" {
		l++
		text, ok = p.lineRunes(l)
	}
	if !ok {
		return 0, 0, false
	}
	indent := 0
	for indent < len(text) && text[indent] == ' ' {
		indent++
	}
	i := indent
	atLine, atCol := 0, 0
	for k := 0; k <= len(want); k++ {
		if k == off {
			atLine, atCol = l, i+1
		}
		if k == len(want) {
			break
		}
		if want[k] == '\n' {
			if i != len(text) {
				return 0, 0, false
			}
			l++
			if text, ok = p.lineRunes(l); !ok {
				return 0, 0, false
			}
			i = min(indent, len(text))
			continue
		}
		if i >= len(text) || text[i] != want[k] {
			return 0, 0, false
		}
		i++
	}
	return atLine, atCol, atLine > 0
}
