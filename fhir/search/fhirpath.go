package search

import (
	"errors"
	"strconv"
	"strings"
	"unicode"
)

// The FHIRPath subset: paths (with choice types: "Observation.value" finds
// valueQuantity, valueString, ...), "|", "and", "or", "=", "!=", "is X",
// "as X", "[n]", literals, and the functions where, resolve, ofType, as, is,
// exists, empty, not, first, extension and hasExtension. That is what the
// R4 search parameter expressions of clinical types use; an expression
// outside it fails to compile and its parameter is reported unsupported.

// errSyntax is returned for an expression outside the subset.
var errSyntax = errors.New("search: FHIRPath expression outside the supported subset")

// node is one item of a FHIRPath collection: a JSON value and, when known,
// its FHIR type (from a choice element's suffix, a resolve() or a literal).
type node struct {
	v   any
	typ string
}

type expr interface {
	eval(ctx []node) []node
}

// Path is a compiled FHIRPath expression.
type Path struct {
	src string
	e   expr
}

// Compile compiles src, or returns errSyntax.
func Compile(src string) (*Path, error) {
	p := &parser{toks: lex(src)}
	if p.toks == nil {
		return nil, errSyntax
	}
	e, err := p.parseExpr(0)
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, errSyntax
	}
	return &Path{src: src, e: e}, nil
}

// String is the source of the expression.
func (p *Path) String() string { return p.src }

// Eval evaluates the expression on a decoded resource.
func (p *Path) Eval(resource map[string]any) []node {
	return p.e.eval([]node{{v: resource}})
}

type token struct {
	kind byte // 'i' identifier, 's' string, 'n' number, 'p' punctuation
	text string
}

func lex(s string) []token {
	toks := []token{}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\'':
			j := i + 1
			var b strings.Builder
			for j < len(s) && s[j] != '\'' {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
				j++
			}
			if j >= len(s) {
				return nil
			}
			toks = append(toks, token{'s', b.String()})
			i = j + 1
		case c >= '0' && c <= '9':
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
				j++
			}
			toks = append(toks, token{'n', s[i:j]})
			i = j
		case c == '_' || c == '$' || unicode.IsLetter(rune(c)):
			j := i
			for j < len(s) && (s[j] == '_' || s[j] == '$' || s[j] >= '0' && s[j] <= '9' || unicode.IsLetter(rune(s[j]))) {
				j++
			}
			toks = append(toks, token{'i', s[i:j]})
			i = j
		case c == '!' && i+1 < len(s) && s[i+1] == '=':
			toks = append(toks, token{'p', "!="})
			i += 2
		case strings.IndexByte(".()[]|=,", c) >= 0:
			toks = append(toks, token{'p', string(c)})
			i++
		default:
			return nil
		}
	}
	return toks
}

type parser struct {
	toks []token
	pos  int
}

func (p *parser) peek() token {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return token{}
}

func (p *parser) accept(kind byte, text string) bool {
	t := p.peek()
	if t.kind == kind && t.text == text {
		p.pos++
		return true
	}
	return false
}

// Binary operator precedence, loosest first.
var levels = [][]string{{"or"}, {"and"}, {"=", "!="}, {"|"}, {"is", "as"}}

func (p *parser) parseExpr(level int) (expr, error) {
	if level == len(levels) {
		return p.parsePostfix()
	}
	left, err := p.parseExpr(level + 1)
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		op := ""
		for _, o := range levels[level] {
			if t.text == o && (t.kind == 'p' || t.kind == 'i') {
				op = o
			}
		}
		if op == "" {
			return left, nil
		}
		p.pos++
		if op == "is" || op == "as" {
			name := p.peek()
			if name.kind != 'i' {
				return nil, errSyntax
			}
			p.pos++
			left = &typeOp{op: op, x: left, typ: name.text}
			continue
		}
		right, err := p.parseExpr(level + 1)
		if err != nil {
			return nil, err
		}
		left = &binOp{op: op, l: left, r: right}
	}
}

func (p *parser) parsePostfix() (expr, error) {
	var e expr
	t := p.peek()
	switch {
	case t.kind == 'p' && t.text == "(":
		p.pos++
		inner, err := p.parseExpr(0)
		if err != nil {
			return nil, err
		}
		if !p.accept('p', ")") {
			return nil, errSyntax
		}
		e = inner
	case t.kind == 's':
		p.pos++
		e = literal{node{v: t.text, typ: "string"}}
	case t.kind == 'n':
		p.pos++
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, errSyntax
		}
		e = literal{node{v: f, typ: "decimal"}}
	case t.kind == 'i' && (t.text == "true" || t.text == "false"):
		p.pos++
		e = literal{node{v: t.text == "true", typ: "boolean"}}
	case t.kind == 'i':
		inv, err := p.parseInvocation(thisExpr{})
		if err != nil {
			return nil, err
		}
		e = inv
	default:
		return nil, errSyntax
	}
	for {
		switch {
		case p.accept('p', "."):
			inv, err := p.parseInvocation(e)
			if err != nil {
				return nil, err
			}
			e = inv
		case p.accept('p', "["):
			idx := p.peek()
			if idx.kind != 'n' {
				return nil, errSyntax
			}
			p.pos++
			n, err := strconv.Atoi(idx.text)
			if err != nil || !p.accept('p', "]") {
				return nil, errSyntax
			}
			e = &index{x: e, n: n}
		default:
			return e, nil
		}
	}
}

func (p *parser) parseInvocation(on expr) (expr, error) {
	t := p.peek()
	if t.kind != 'i' {
		return nil, errSyntax
	}
	p.pos++
	if !p.accept('p', "(") {
		if _, isThis := on.(thisExpr); isThis && t.text == "$this" {
			return on, nil
		}
		return &member{x: on, name: t.text}, nil
	}
	var args []expr
	if !p.accept('p', ")") {
		for {
			if f := t.text; f == "as" || f == "ofType" || f == "is" {
				name := p.peek()
				if name.kind != 'i' {
					return nil, errSyntax
				}
				p.pos++
				args = append(args, literal{node{v: name.text, typ: "type"}})
			} else {
				a, err := p.parseExpr(0)
				if err != nil {
					return nil, err
				}
				args = append(args, a)
			}
			if p.accept('p', ")") {
				break
			}
			if !p.accept('p', ",") {
				return nil, errSyntax
			}
		}
	}
	switch t.text {
	case "where", "extension", "hasExtension":
		if len(args) != 1 {
			return nil, errSyntax
		}
	case "as", "ofType", "is":
		if len(args) != 1 {
			return nil, errSyntax
		}
		op := "as"
		if t.text == "is" {
			op = "is"
		}
		return &typeOp{op: op, x: on, typ: args[0].(literal).n.v.(string)}, nil
	case "resolve", "exists", "empty", "not", "first":
		if len(args) != 0 {
			return nil, errSyntax
		}
	default:
		return nil, errSyntax
	}
	return &call{x: on, fn: t.text, args: args}, nil
}

type thisExpr struct{}

func (thisExpr) eval(ctx []node) []node { return ctx }

type literal struct{ n node }

func (l literal) eval([]node) []node { return []node{l.n} }

type member struct {
	x    expr
	name string
}

func flatten(out []node, v any, typ string) []node {
	if a, ok := v.([]any); ok {
		for _, x := range a {
			out = append(out, node{v: x, typ: typ})
		}
		return out
	}
	return append(out, node{v: v, typ: typ})
}

func (m *member) eval(ctx []node) []node {
	in := m.x.eval(ctx)
	var out []node
	upper := m.name != "" && m.name[0] >= 'A' && m.name[0] <= 'Z'
	for _, n := range in {
		obj, ok := n.v.(map[string]any)
		if !ok {
			continue
		}
		if upper {
			// A type name: the resource itself when it is of that type.
			if rt, _ := obj["resourceType"].(string); rt == m.name {
				out = append(out, n)
			}
			continue
		}
		if v, ok := obj[m.name]; ok {
			out = flatten(out, v, "")
			continue
		}
		for k, v := range obj {
			if len(k) > len(m.name) && strings.HasPrefix(k, m.name) && k[len(m.name)] >= 'A' && k[len(m.name)] <= 'Z' {
				out = flatten(out, v, k[len(m.name):])
			}
		}
	}
	return out
}

type index struct {
	x expr
	n int
}

func (i *index) eval(ctx []node) []node {
	in := i.x.eval(ctx)
	if i.n < len(in) {
		return []node{in[i.n]}
	}
	return nil
}

// sameType compares a FHIR type name with a choice suffix ("dateTime" and
// "DateTime"); FHIR.x and System.x prefixes are dropped.
func sameType(want, have string) bool {
	want = strings.TrimPrefix(strings.TrimPrefix(want, "FHIR."), "System.")
	return strings.EqualFold(want, have)
}

type typeOp struct {
	op  string // is, as
	x   expr
	typ string
}

func (t *typeOp) eval(ctx []node) []node {
	in := t.x.eval(ctx)
	if t.op == "is" {
		if len(in) != 1 {
			return nil
		}
		return []node{boolNode(sameType(t.typ, in[0].typ))}
	}
	var out []node
	for _, n := range in {
		if n.typ == "" || sameType(t.typ, n.typ) {
			out = append(out, n)
		}
	}
	return out
}

func boolNode(b bool) node { return node{v: b, typ: "boolean"} }

// truthy is FHIRPath's singleton evaluation of a collection as a boolean.
func truthy(ns []node) bool {
	if len(ns) == 0 {
		return false
	}
	if b, ok := ns[0].v.(bool); ok && len(ns) == 1 {
		return b
	}
	return true
}

type binOp struct {
	op   string
	l, r expr
}

func (b *binOp) eval(ctx []node) []node {
	switch b.op {
	case "|":
		return append(b.l.eval(ctx), b.r.eval(ctx)...)
	case "and":
		return []node{boolNode(truthy(b.l.eval(ctx)) && truthy(b.r.eval(ctx)))}
	case "or":
		return []node{boolNode(truthy(b.l.eval(ctx)) || truthy(b.r.eval(ctx)))}
	}
	l, r := b.l.eval(ctx), b.r.eval(ctx)
	if len(l) != 1 || len(r) != 1 {
		return nil
	}
	eq := equal(l[0].v, r[0].v)
	if b.op == "!=" {
		eq = !eq
	}
	return []node{boolNode(eq)}
}

func equal(a, b any) bool {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case float64:
		y, ok := b.(float64)
		return ok && x == y
	}
	return false
}

type call struct {
	x    expr
	fn   string
	args []expr
}

func (c *call) eval(ctx []node) []node {
	in := c.x.eval(ctx)
	switch c.fn {
	case "where":
		var out []node
		for _, n := range in {
			if truthy(c.args[0].eval([]node{n})) {
				out = append(out, n)
			}
		}
		return out
	case "resolve":
		// Only the type of the target is known without a read: enough
		// for "resolve() is X".
		var out []node
		for _, n := range in {
			if t := refType(n.v); t != "" {
				out = append(out, node{v: n.v, typ: t})
			}
		}
		return out
	case "exists":
		return []node{boolNode(len(in) > 0)}
	case "empty":
		return []node{boolNode(len(in) == 0)}
	case "not":
		if len(in) != 1 {
			return nil
		}
		b, ok := in[0].v.(bool)
		if !ok {
			return nil
		}
		return []node{boolNode(!b)}
	case "first":
		if len(in) > 0 {
			return in[:1]
		}
		return nil
	case "extension", "hasExtension":
		urls := c.args[0].eval(ctx)
		if len(urls) != 1 {
			return nil
		}
		url, _ := urls[0].v.(string)
		var out []node
		for _, n := range in {
			obj, _ := n.v.(map[string]any)
			exts, _ := obj["extension"].([]any)
			for _, e := range exts {
				em, _ := e.(map[string]any)
				if u, _ := em["url"].(string); u == url {
					if c.fn == "hasExtension" {
						out = append(out, n)
						break
					}
					// The extension's value is what gets indexed.
					found := false
					for k, v := range em {
						if strings.HasPrefix(k, "value") && len(k) > 5 {
							out = append(out, node{v: v, typ: k[5:]})
							found = true
						}
					}
					if !found {
						out = append(out, node{v: em})
					}
				}
			}
		}
		if c.fn == "hasExtension" {
			return []node{boolNode(len(out) > 0)}
		}
		return out
	}
	return nil
}

// refType is the resource type a Reference points to ("Patient/1",
// "http://x/fhir/Patient/1", "Patient/1/_history/2"), or "".
func refType(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return ""
	}
	if ref, ok := m["reference"].(string); ok {
		typ, _, _ := SplitReference(ref)
		return typ
	}
	if t, ok := m["type"].(string); ok {
		return t
	}
	return ""
}

// SplitReference splits a literal reference into type and id; a reference
// that is not [base/]Type/id[/_history/v] gives "", "", false.
func SplitReference(ref string) (typ, id string, ok bool) {
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	parts := strings.Split(ref, "/")
	if len(parts) < 2 {
		return "", "", false
	}
	typ, id = parts[len(parts)-2], parts[len(parts)-1]
	if typ == "" || typ[0] < 'A' || typ[0] > 'Z' || id == "" || strings.ContainsAny(typ, ":#?") || strings.ContainsAny(id, ":#?") {
		return "", "", false
	}
	if len(parts) > 2 && !strings.Contains(ref, "://") {
		return "", "", false
	}
	return typ, id, true
}
