package main

import (
	"testing"

	"github.com/smartauth/smartauth/gateway/compartment/internal/fhirpath"
)

func TestWalk(t *testing.T) {
	elems := map[string]element{
		"Observation":                    {types: nil},
		"Observation.subject":            {types: []string{"Reference"}},
		"Observation.value[x]":           {types: []string{"Quantity", "CodeableConcept"}},
		"Observation.component":          {types: []string{"BackboneElement"}},
		"Observation.component.value[x]": {types: []string{"CodeableConcept"}},
		"Observation.related":            {contentRef: "Observation.component"},
		"Reference.reference":            {types: []string{"string"}},
		"CodeableConcept.coding":         {types: []string{"Coding"}},
		"Coding.code":                    {types: []string{"code"}},
	}
	for expr, ok := range map[string]bool{
		"Observation.subject":                                 true,
		"Observation.subject.reference":                       true,
		"Observation.subject.where(resolve() is Patient)":     true,
		"(Observation.value as CodeableConcept).coding.code":  true,
		"Observation.component.value.ofType(CodeableConcept)": true,
		"Observation.related.value.ofType(CodeableConcept)":   true,
		"Observation.value":                                   false, // choice without a type
		"Observation.value.ofType(string)":                    false, // not one of its types
		"Observation.subject.ofType(Reference)":               false, // not a choice
		"Observation.nothing":                                 false,
		"Observation.subject.coding":                          false,
	} {
		e, err := fhirpath.Parse(expr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := walk("Observation", e.Elements(), elems); (err == nil) != ok {
			t.Errorf("walk(%s) = %v, want ok=%v", expr, err, ok)
		}
	}
}

func TestWalkLeaf(t *testing.T) {
	elems := map[string]element{
		"Observation":                    {},
		"Observation.subject":            {types: []string{"Reference"}},
		"Observation.component":          {types: []string{"BackboneElement"}},
		"Observation.component.value[x]": {types: []string{"CodeableConcept", "boolean"}},
	}
	for expr, want := range map[string]string{
		"Observation.subject.where(resolve() is Patient)":  "Reference",
		"Observation.component.value.ofType(boolean)":      "boolean",
		"(Observation.component.value as CodeableConcept)": "CodeableConcept",
	} {
		e, err := fhirpath.Parse(expr)
		if err != nil {
			t.Fatal(err)
		}
		if leaf, err := walk("Observation", e.Elements(), elems); err != nil || len(leaf) != 1 || leaf[0] != want {
			t.Errorf("walk(%s) = %v, %v; want [%s]", expr, leaf, err, want)
		}
	}
}
