package fhirpath

import (
	"encoding/json"
	"fmt"
	"testing"
)

func TestParse(t *testing.T) {
	ok := map[string][]Element{
		"Observation.subject":                                {{"subject", ""}},
		"Condition.subject.where(resolve() is Patient)":      {{"subject", ""}},
		"(Observation.value.ofType(CodeableConcept))":        {{"value", "CodeableConcept"}},
		"Observation.value.as(Quantity)":                     {{"value", "Quantity"}},
		"(Observation.value as CodeableConcept)":             {{"value", "CodeableConcept"}},
		"(Observation.value as CodeableConcept).coding.code": {{"value", "CodeableConcept"}, {"coding", ""}, {"code", ""}},
		"Patient.telecom.where(system='email')":              {{"telecom", ""}},
		"AuditEvent.agent.who.where(resolve() is Patient)":   {{"agent", ""}, {"who", ""}},
		" ( Group.characteristic.value.ofType(boolean) ) ":   {{"characteristic", ""}, {"value", "boolean"}},
	}
	for expr, want := range ok {
		e, err := Parse(expr)
		if err != nil {
			t.Errorf("Parse(%q): %v", expr, err)
			continue
		}
		if got := e.Elements(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Parse(%q).Elements() = %v, want %v", expr, got, want)
		}
	}
	for _, expr := range []string{
		"",
		"Observation",
		"observation.subject",
		"Patient.deceased.exists() and Patient.deceased != false",
		"Observation.subject | Observation.performer",
		"Observation.code.first()",
		"Observation.subject.where(resolve() is Patient or true)",
		"Observation.where(status='a''b')",
		"Observation..subject",
		"Observation.subject.ofType(Reference).ofType(X)",
		"Observation.subject.where(resolve() is Patient).ofType(Reference)",
		"(Observation as Patient)",
		"(Observation.value as CodeableConcept.coding)",
		"Observation.extension('http://x').value",
		"(Observation.subject",
	} {
		if _, err := Parse(expr); err == nil {
			t.Errorf("Parse(%q) succeeded, want an error", expr)
		}
	}
}

func TestEval(t *testing.T) {
	var r map[string]any
	if err := json.Unmarshal([]byte(`{"resourceType":"Patient",
		"telecom":[{"system":"phone","value":"1"},{"system":"email","value":"2"},{"system":"email","value":"3"}],
		"link":[{"other":{"reference":"Patient/a"}},{"other":{"reference":"RelatedPerson/b"}},{"other":null}],
		"contact":[{"telecom":[{"value":"4"}]},{"telecom":[{"value":"5"},{"value":"6"}]}]}`), &r); err != nil {
		t.Fatal(err)
	}
	for expr, want := range map[string]int{
		"Patient.telecom":                                     3,
		"Patient.telecom.where(system='email')":               2,
		"Patient.telecom.where(system='email').value":         2,
		"Patient.contact.telecom.value":                       3,
		"Patient.link.other":                                  2,
		"Patient.link.other.where(resolve() is Patient)":      1,
		"Patient.link.other.where(resolve() is Practitioner)": 0,
		"Patient.nothing.at.all":                              0,
		"Observation.telecom":                                 0,
	} {
		e, err := Parse(expr)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.Eval(r); len(got) != want {
			t.Errorf("%s selected %v, want %d values", expr, got, want)
		}
	}
}

func TestRefTarget(t *testing.T) {
	for ref, want := range map[string]string{
		"Patient/a":                         "Patient/a",
		"Patient/a/_history/2":              "Patient/a",
		"https://x.org/fhir/Patient/a":      "Patient/a",
		"http://x.org/Patient/a/_history/2": "Patient/a",
		"Group/a":                           "Group/a",
		"Patient/a/_history/":               "",
		"Patient/a/_history":                "",
		"Patient/a/b":                       "",
		"fhir/Patient/a":                    "",
		"Patient/":                          "",
		"Patient":                           "",
		"#a":                                "",
		"urn:uuid:0f8c":                     "",
		"Patient?identifier=a":              "",
		"https://x.org/Patient/a?x":         "",
		"https://x.org/Patient/a#x":         "",
		"https://x.org":                     "",
		"ftp://x.org/Patient/a":             "",
		"patient/a":                         "",
		"":                                  "",
	} {
		typ, id, ok := RefTarget(map[string]any{"reference": ref})
		got := ""
		if ok {
			got = typ + "/" + id
		}
		if got != want {
			t.Errorf("RefTarget(%q) = %q, want %q", ref, got, want)
		}
	}
	if _, _, ok := RefTarget(map[string]any{"reference": 1}); ok {
		t.Error("a non-string reference resolved")
	}
}
