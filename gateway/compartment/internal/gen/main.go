// Command gen writes the compartment package's data files from the official
// FHIR R4 definitions: a verbatim copy of the Patient CompartmentDefinition
// and a compact extract of the search parameters the gateway evaluates.
//
// It refuses any expression the package's evaluator cannot handle, unless
// the parameter is a token parameter listed in drops below; a compartment
// parameter can never be dropped, since leaving one out would silently
// shrink what the gateway treats as the patient's data.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/smartauth/smartauth/gateway/compartment/internal/fhirpath"
)

// commonTokens are token codes taken for every resource type that has them:
// the ones SMART granular scopes (e.g. Observation.rs?category=…) use most.
var commonTokens = []string{"category", "code", "status", "clinical-status",
	"verification-status", "type", "class", "identifier"}

// extraTypes are types outside the compartment whose token parameters are
// all taken, as apps commonly read them alongside patient data.
var extraTypes = []string{"Practitioner", "PractitionerRole", "Organization",
	"Location", "Medication", "Device"}

// drops are token parameters deliberately left out, with the reason.
var drops = map[string]string{
	"Patient.deceased": "a boolean test (exists() and != false), not an element path",
}

// valueTypes are the element types the package can evaluate, by search
// parameter type: MatchToken's codings, identifiers and primitives, and
// Member's References.
var valueTypes = map[string][]string{
	"token": {"CodeableConcept", "Coding", "Identifier", "ContactPoint",
		"code", "boolean", "string", "id", "uri"},
	"reference": {"Reference"},
}

type searchParam struct {
	Base       string   `json:"base"`
	Code       string   `json:"code"`
	Type       string   `json:"type"`
	Expression []string `json:"expression"`
}

func main() {
	defs := flag.String("defs", "", "directory holding the FHIR R4 definition files")
	out := flag.String("out", ".", "directory to write the data files to")
	flag.Parse()
	if *defs == "" {
		log.Fatal("gen: -defs is required")
	}
	if err := run(*defs, *out); err != nil {
		log.Fatal("gen: ", err)
	}
}

func run(defs, out string) error {
	compRaw, err := os.ReadFile(filepath.Join(defs, "compartmentdefinition-patient.json"))
	if err != nil {
		return err
	}
	var comp struct {
		ID       string `json:"id"`
		Code     string `json:"code"`
		Resource []struct {
			Code  string   `json:"code"`
			Param []string `json:"param"`
		} `json:"resource"`
	}
	if err := json.Unmarshal(compRaw, &comp); err != nil {
		return err
	}
	if comp.ID != "patient" || comp.Code != "Patient" {
		return errors.New("compartmentdefinition-patient.json is not the Patient compartment")
	}
	compParams := map[string]bool{} // "Type.code"
	tokenTypes := map[string]bool{}
	for _, r := range comp.Resource {
		for _, p := range r.Param {
			compParams[r.Code+"."+p] = true
		}
		if len(r.Param) > 0 {
			tokenTypes[r.Code] = true
		}
	}
	for _, t := range extraTypes {
		tokenTypes[t] = true
	}

	var bundle struct {
		Entry []struct {
			Resource struct {
				ResourceType string   `json:"resourceType"`
				Code         string   `json:"code"`
				Type         string   `json:"type"`
				Base         []string `json:"base"`
				Expression   string   `json:"expression"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := readJSON(filepath.Join(defs, "search-parameters.json"), &bundle); err != nil {
		return err
	}
	elems, err := loadElements(defs)
	if err != nil {
		return err
	}

	var params []searchParam
	seen := map[string]bool{}
	usedDrops := map[string]bool{}
	for _, e := range bundle.Entry {
		sp := e.Resource
		if sp.ResourceType != "SearchParameter" {
			continue
		}
		for _, base := range sp.Base {
			key := base + "." + sp.Code
			inComp := compParams[key]
			if !inComp && !(sp.Type == "token" && (tokenTypes[base] || slices.Contains(commonTokens, sp.Code))) {
				continue
			}
			if seen[key] {
				return fmt.Errorf("%s: defined twice", key)
			}
			seen[key] = true
			exprs, err := partsFor(base, sp.Type, sp.Expression, elems)
			if err != nil {
				if reason, ok := drops[key]; ok && !inComp {
					usedDrops[key] = true
					fmt.Fprintf(os.Stderr, "gen: dropped %s: %s\n", key, reason)
					continue
				}
				return fmt.Errorf("%s (%s): %w", key, sp.Type, err)
			}
			params = append(params, searchParam{base, sp.Code, sp.Type, exprs})
		}
	}
	for key := range compParams {
		if !seen[key] {
			return fmt.Errorf("compartment parameter %s has no SearchParameter", key)
		}
	}
	for key := range drops {
		if !usedDrops[key] {
			return fmt.Errorf("drop of %s is stale: it no longer fails", key)
		}
	}
	slices.SortFunc(params, func(a, b searchParam) int {
		return strings.Compare(a.Base+"."+a.Code, b.Base+"."+b.Code)
	})

	// One parameter a line keeps the file small and its diffs readable.
	var buf bytes.Buffer
	buf.WriteString("[\n")
	for i, p := range params {
		line, err := json.Marshal(p)
		if err != nil {
			return err
		}
		buf.Write(line)
		if i < len(params)-1 {
			buf.WriteByte(',')
		}
		buf.WriteByte('\n')
	}
	buf.WriteString("]\n")
	if err := os.WriteFile(filepath.Join(out, "searchparams.json"), buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "compartmentdefinition-patient.json"), compRaw, 0o644)
}

// partsFor keeps the union members of expr that start from base, each
// checked to parse and to walk real elements of the R4 structure.
func partsFor(base, typ, expr string, elems map[string]element) ([]string, error) {
	var keep []string
	for _, part := range strings.Split(expr, "|") {
		part = strings.TrimSpace(part)
		if !strings.HasPrefix(strings.TrimLeft(part, "("), base+".") {
			continue
		}
		e, err := fhirpath.Parse(part)
		if err != nil {
			return nil, err
		}
		leaf, err := walk(base, e.Elements(), elems)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", part, err)
		}
		if len(leaf) != 1 || !slices.Contains(valueTypes[typ], leaf[0]) {
			return nil, fmt.Errorf("%q: a %s parameter on %v, which the package cannot match", part, typ, leaf)
		}
		keep = append(keep, part)
	}
	if len(keep) == 0 {
		return nil, fmt.Errorf("no expression for %s in %q", base, expr)
	}
	return keep, nil
}

type element struct {
	types      []string
	contentRef string
}

// loadElements indexes every element of the R4 resources and data types by
// path, so walk can tell choice elements from plain ones: the evaluator only
// reads a choice element when the expression names its type.
func loadElements(defs string) (map[string]element, error) {
	elems := map[string]element{}
	for _, f := range []string{"profiles-resources.json", "profiles-types.json"} {
		var bundle struct {
			Entry []struct {
				Resource struct {
					ResourceType string `json:"resourceType"`
					Snapshot     struct {
						Element []struct {
							Path             string `json:"path"`
							ContentReference string `json:"contentReference"`
							Type             []struct {
								Code string `json:"code"`
							} `json:"type"`
						} `json:"element"`
					} `json:"snapshot"`
				} `json:"resource"`
			} `json:"entry"`
		}
		if err := readJSON(filepath.Join(defs, f), &bundle); err != nil {
			return nil, err
		}
		for _, e := range bundle.Entry {
			if e.Resource.ResourceType != "StructureDefinition" {
				continue
			}
			for _, el := range e.Resource.Snapshot.Element {
				var types []string
				for _, t := range el.Type {
					types = append(types, t.Code)
				}
				elems[el.Path] = element{types, strings.TrimPrefix(el.ContentReference, "#")}
			}
		}
	}
	return elems, nil
}

// walk follows path from base through the R4 elements and returns the
// type codes of the element it ends on.
func walk(base string, path []fhirpath.Element, elems map[string]element) ([]string, error) {
	cur, leaf := base, []string{base}
	for _, step := range path {
		for range 10 { // bounded: each round steps into a data type or a content reference
			if _, ok := elems[cur+"."+step.Name]; ok {
				if step.Type != "" {
					return nil, fmt.Errorf("%s.%s is not a choice element", cur, step.Name)
				}
				cur += "." + step.Name
				leaf = elems[cur].types
				break
			}
			if choice, ok := elems[cur+"."+step.Name+"[x]"]; ok {
				if !slices.Contains(choice.types, step.Type) {
					return nil, fmt.Errorf("choice element %s.%s[x] read without one of its types %v", cur, step.Name, choice.types)
				}
				cur, leaf = step.Type, []string{step.Type}
				break
			}
			el, ok := elems[cur]
			switch {
			case !ok:
				return nil, fmt.Errorf("unknown element %s", cur)
			case el.contentRef != "":
				cur = el.contentRef
			case len(el.types) == 1:
				cur = el.types[0]
			default:
				return nil, fmt.Errorf("no element %s under %s", step.Name, cur)
			}
		}
		if !strings.HasSuffix(cur, "."+step.Name) && cur != step.Type {
			return nil, fmt.Errorf("cannot reach %s", step.Name)
		}
	}
	return leaf, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
