// Package fhirpath evaluates the small FHIRPath subset used by the FHIR R4
// search parameters the gateway relies on. Anything outside the subset is a
// parse error, so the generator of the search table can refuse it up front
// rather than the gateway silently mis-evaluating it at run time.
//
// The subset: a resource type followed by dotted element names (collections
// flattened at every step), optionally wrapped in parentheses, with
//
//	.where(resolve() is Type)   keep References whose target type is Type
//	.where(name='literal')      keep elements whose name equals literal
//	.ofType(Type) / .as(Type)   select the Type variant of a choice element
//	(path as Type)              same, in operator form
package fhirpath

import (
	"errors"
	"fmt"
	"strings"
)

// Expr is a parsed expression; it is immutable and safe for concurrent use.
type Expr struct {
	src   string
	base  string
	steps []step
}

// Element is one element name an expression navigates, with the type picked
// for a choice element ("" when none was picked).
type Element struct {
	Name, Type string
}

type stepKind int

const (
	field      stepKind = iota // navigate to a child element
	resolvesTo                 // keep References to a resource type
	equals                     // keep elements whose child equals a literal
)

type step struct {
	kind  stepKind
	name  string // element name (choice type already folded in), or the child compared
	typ   string // the type picked for a choice element, or the target type of resolvesTo
	value string // the literal of equals
}

// Parse parses expr, or says why it is outside the subset.
func Parse(expr string) (*Expr, error) {
	e, err := parse(expr)
	if err != nil {
		return nil, fmt.Errorf("fhirpath: %q: %w", expr, err)
	}
	if len(e.steps) == 0 {
		return nil, fmt.Errorf("fhirpath: %q: no element path", expr)
	}
	e.src = expr
	return e, nil
}

func parse(s string) (*Expr, error) {
	s = strings.TrimSpace(s)
	for isWrapped(s) {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	if left, asType, ok := cutTopLevel(s, " as "); ok {
		e, err := parse(left)
		if err != nil {
			return nil, err
		}
		return e, e.pickType(strings.TrimSpace(asType))
	}
	parts, err := splitDots(s)
	if err != nil {
		return nil, err
	}
	var e *Expr
	if isWrapped(parts[0]) { // "(X as T).rest"
		if e, err = parse(parts[0]); err != nil {
			return nil, err
		}
	} else if isIdent(parts[0]) && isUpper(parts[0][0]) {
		e = &Expr{base: parts[0]}
	} else {
		return nil, errors.New("must start with a resource type")
	}
	for _, p := range parts[1:] {
		if err := e.addStep(p); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *Expr) addStep(p string) error {
	if isIdent(p) {
		e.steps = append(e.steps, step{kind: field, name: p})
		return nil
	}
	if arg, ok := call(p, "ofType"); ok {
		return e.pickType(arg)
	}
	if arg, ok := call(p, "as"); ok {
		return e.pickType(arg)
	}
	arg, ok := call(p, "where")
	if !ok {
		return fmt.Errorf("unsupported step %q", p)
	}
	if t, ok := strings.CutPrefix(arg, "resolve() is "); ok && isIdent(t) {
		e.steps = append(e.steps, step{kind: resolvesTo, typ: t})
		return nil
	}
	name, lit, ok := strings.Cut(arg, "=")
	name, lit = strings.TrimSpace(name), strings.TrimSpace(lit)
	if ok && isIdent(name) && len(lit) >= 2 && lit[0] == '\'' && lit[len(lit)-1] == '\'' &&
		!strings.ContainsAny(lit[1:len(lit)-1], `'\`) {
		e.steps = append(e.steps, step{kind: equals, name: name, value: lit[1 : len(lit)-1]})
		return nil
	}
	return fmt.Errorf("unsupported filter %q", p)
}

// pickType folds a type selection into the preceding element: in JSON a
// choice element value[x] appears as valueCodeableConcept, valueBoolean, …
func (e *Expr) pickType(t string) error {
	if !isIdent(t) {
		return fmt.Errorf("bad type %q", t)
	}
	n := len(e.steps)
	if n == 0 || e.steps[n-1].kind != field || e.steps[n-1].typ != "" {
		return errors.New("a type can only be picked right after an element name")
	}
	e.steps[n-1].typ = t
	e.steps[n-1].name += strings.ToUpper(t[:1]) + t[1:]
	return nil
}

// String returns the source text.
func (e *Expr) String() string { return e.src }

// Base returns the resource type the expression starts from.
func (e *Expr) Base() string { return e.base }

// Elements returns the element names navigated, in order, filters left out.
func (e *Expr) Elements() []Element {
	var out []Element
	for _, s := range e.steps {
		if s.kind == field {
			name := s.name
			if s.typ != "" {
				name = name[:len(name)-len(s.typ)]
			}
			out = append(out, Element{Name: name, Type: s.typ})
		}
	}
	return out
}

// Eval returns the values the expression selects from resource, a FHIR
// resource decoded by encoding/json. A resource of another type than Base
// yields nothing.
func (e *Expr) Eval(resource map[string]any) []any {
	if rt, _ := resource["resourceType"].(string); rt != e.base {
		return nil
	}
	cur := []any{resource}
	for _, s := range e.steps {
		var next []any
		for _, n := range cur {
			m, ok := n.(map[string]any)
			if !ok {
				continue
			}
			switch s.kind {
			case field:
				next = appendFlat(next, m[s.name])
			case resolvesTo:
				if t, _, ok := RefTarget(m); ok && t == s.typ {
					next = append(next, m)
				}
			case equals:
				if v, _ := m[s.name].(string); v == s.value {
					next = append(next, m)
				}
			}
		}
		cur = next
	}
	return cur
}

func appendFlat(out []any, v any) []any {
	switch v := v.(type) {
	case nil:
		return out
	case []any:
		for _, x := range v {
			if x != nil {
				out = append(out, x)
			}
		}
		return out
	default:
		return append(out, v)
	}
}

// RefTarget returns the resource type and id a Reference (decoded JSON)
// points at. Only literal references are understood: "Type/id", optionally
// followed by "/_history/vid", or an http(s) URL whose path ends that way.
// Contained ("#x"), logical (identifier-only), urn: and query references
// are not, because their target cannot be proven from the reference alone.
func RefTarget(ref map[string]any) (typ, id string, ok bool) {
	s, _ := ref["reference"].(string)
	abs := false
	for _, scheme := range []string{"http://", "https://"} {
		if rest, found := strings.CutPrefix(s, scheme); found {
			_, path, hasPath := strings.Cut(rest, "/")
			if !hasPath || strings.ContainsAny(path, "?#") {
				return "", "", false
			}
			s, abs = path, true
		}
	}
	if !abs && strings.ContainsAny(s, ":?#") {
		return "", "", false
	}
	segs := strings.Split(s, "/")
	if n := len(segs); n >= 4 && segs[n-2] == "_history" && segs[n-1] != "" {
		segs = segs[:n-2]
	}
	if n := len(segs); n < 2 || (!abs && n != 2) {
		return "", "", false
	}
	typ, id = segs[len(segs)-2], segs[len(segs)-1]
	if !isIdent(typ) || !isUpper(typ[0]) || id == "" {
		return "", "", false
	}
	return typ, id, true
}

func isWrapped(s string) bool {
	if len(s) < 2 || s[0] != '(' || s[len(s)-1] != ')' {
		return false
	}
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 && i != len(s)-1 {
				return false // "(a).(b)": the first paren closes early
			}
		}
	}
	return depth == 0
}

// cutTopLevel cuts s around the first sep outside parentheses and quotes.
func cutTopLevel(s, sep string) (string, string, bool) {
	depth, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')':
			depth--
		case depth == 0 && strings.HasPrefix(s[i:], sep):
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

func splitDots(s string) ([]string, error) {
	var parts []string
	for {
		left, right, ok := cutTopLevel(s, ".")
		parts = append(parts, strings.TrimSpace(left))
		if !ok {
			break
		}
		s = right
	}
	for _, p := range parts {
		if p == "" {
			return nil, errors.New("empty step")
		}
	}
	return parts, nil
}

// call returns the argument of p when p is name(arg).
func call(p, name string) (string, bool) {
	rest, ok := strings.CutPrefix(p, name+"(")
	if !ok || !strings.HasSuffix(rest, ")") {
		return "", false
	}
	return strings.TrimSpace(rest[:len(rest)-1]), true
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isUpper(c) || c >= 'a' && c <= 'z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
