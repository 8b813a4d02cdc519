package compartment

import (
	"encoding/json"
	"slices"
	"testing"
)

func res(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	return m
}

// TestEveryCompartmentParamHasExpression guards the generated table: a
// compartment parameter without an expression would quietly make Member
// blind to that way of belonging to a patient.
func TestEveryCompartmentParamHasExpression(t *testing.T) {
	if _, err := load(compartmentJSON, searchParamsJSON); err != nil {
		t.Fatal(err)
	}
	var comp struct {
		Resource []struct {
			Code  string   `json:"code"`
			Param []string `json:"param"`
		} `json:"resource"`
	}
	if err := json.Unmarshal(compartmentJSON, &comp); err != nil {
		t.Fatal(err)
	}
	d, n := Patient(), 0
	for _, r := range comp.Resource {
		for _, p := range r.Param {
			n++
			sp := d.search[r.Code+"."+p]
			if sp == nil || len(sp.exprs) == 0 {
				t.Errorf("compartment param %s.%s has no expression in searchparams.json", r.Code, p)
			} else if sp.typ != "reference" {
				t.Errorf("compartment param %s.%s is a %s param, not a reference", r.Code, p, sp.typ)
			}
		}
	}
	if n < 100 {
		t.Errorf("only %d compartment params: the embedded definition looks truncated", n)
	}
}

func TestParams(t *testing.T) {
	d := Patient()
	if got := d.Params("Observation"); !slices.Equal(got, []string{"subject", "performer"}) {
		t.Errorf("Params(Observation) = %v", got)
	}
	if got := d.Params("Practitioner"); got != nil {
		t.Errorf("Params(Practitioner) = %v, want nil", got)
	}
	d.Params("Observation")[0] = "changed"
	if d.Params("Observation")[0] != "subject" {
		t.Error("Params exposes the shared table")
	}
	for typ, want := range map[string]bool{
		"Observation": true, "Patient": true, "Coverage": true, "Encounter": true,
		"Practitioner": false, "Medication": false, "Binary": false, "Nonsense": false, "": false,
	} {
		if got := d.InCompartment(typ); got != want {
			t.Errorf("InCompartment(%s) = %v, want %v", typ, got, want)
		}
	}
}

func TestMember(t *testing.T) {
	tests := []struct {
		name, json, patient string
		want                bool
	}{
		{"observation subject", `{"resourceType":"Observation","subject":{"reference":"Patient/a"}}`, "a", true},
		{"observation other patient", `{"resourceType":"Observation","subject":{"reference":"Patient/a"}}`, "b", false},
		{"observation id prefix", `{"resourceType":"Observation","subject":{"reference":"Patient/ab"}}`, "a", false},
		{"observation performer", `{"resourceType":"Observation","subject":{"reference":"Group/g"},"performer":[{"reference":"Practitioner/x"},{"reference":"Patient/a"}]}`, "a", true},
		{"observation group subject same id", `{"resourceType":"Observation","subject":{"reference":"Group/a"}}`, "a", false},
		{"history version", `{"resourceType":"Observation","subject":{"reference":"Patient/a/_history/3"}}`, "a", true},
		{"absolute url", `{"resourceType":"Observation","subject":{"reference":"https://fhir.example.org/r4/Patient/a"}}`, "a", true},
		{"absolute url history", `{"resourceType":"Observation","subject":{"reference":"http://fhir.example.org/Patient/a/_history/1"}}`, "a", true},
		{"absolute url other type", `{"resourceType":"Observation","subject":{"reference":"https://fhir.example.org/Group/a"}}`, "a", false},
		{"absolute url with query", `{"resourceType":"Observation","subject":{"reference":"https://fhir.example.org/Patient/a?x=1"}}`, "a", false},
		{"relative with prefix", `{"resourceType":"Observation","subject":{"reference":"r4/Patient/a"}}`, "a", false},
		{"conditional reference", `{"resourceType":"Observation","subject":{"reference":"Patient?identifier=a"}}`, "a", false},
		{"urn reference", `{"resourceType":"Observation","subject":{"reference":"urn:uuid:a"}}`, "a", false},
		{"logical reference", `{"resourceType":"Observation","subject":{"identifier":{"value":"a"},"type":"Patient"}}`, "a", false},
		{"contained reference", `{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"a"}],"subject":{"reference":"#a"}}`, "a", false},
		{"empty patient id", `{"resourceType":"Observation","subject":{"reference":"Patient/"}}`, "", false},
		{"reference not a string", `{"resourceType":"Observation","subject":{"reference":["Patient/a"]}}`, "a", false},
		{"patient itself", `{"resourceType":"Patient","id":"a"}`, "a", true},
		{"other patient", `{"resourceType":"Patient","id":"b"}`, "a", false},
		{"linked patient", `{"resourceType":"Patient","id":"b","link":[{"other":{"reference":"Patient/a"},"type":"seealso"}]}`, "a", true},
		{"condition subject", `{"resourceType":"Condition","subject":{"reference":"Patient/a"}}`, "a", true},
		{"condition group subject", `{"resourceType":"Condition","subject":{"reference":"Group/a"}}`, "a", false},
		{"condition asserter", `{"resourceType":"Condition","subject":{"reference":"Group/g"},"asserter":{"reference":"Patient/a"}}`, "a", true},
		{"condition recorder not a param", `{"resourceType":"Condition","recorder":{"reference":"Patient/a"}}`, "a", false},
		{"encounter subject", `{"resourceType":"Encounter","subject":{"reference":"Patient/a"}}`, "a", true},
		{"encounter other", `{"resourceType":"Encounter","subject":{"reference":"Patient/b"}}`, "a", false},
		{"allergy patient", `{"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/a"}}`, "a", true},
		{"allergy asserter", `{"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/b"},"asserter":{"reference":"Patient/a"}}`, "a", true},
		{"allergy recorder", `{"resourceType":"AllergyIntolerance","recorder":{"reference":"Patient/a"}}`, "a", true},
		{"coverage beneficiary", `{"resourceType":"Coverage","beneficiary":{"reference":"Patient/a"}}`, "a", true},
		{"coverage policy holder", `{"resourceType":"Coverage","policyHolder":{"reference":"Patient/a"}}`, "a", true},
		{"coverage payor", `{"resourceType":"Coverage","payor":[{"reference":"Organization/o"},{"reference":"Patient/a"}]}`, "a", true},
		{"coverage other", `{"resourceType":"Coverage","beneficiary":{"reference":"Patient/b"},"payor":[{"reference":"Organization/a"}]}`, "a", false},
		{"procedure performer actor", `{"resourceType":"Procedure","subject":{"reference":"Patient/b"},"performer":[{"actor":{"reference":"Patient/a"}}]}`, "a", true},
		{"auditevent agent", `{"resourceType":"AuditEvent","agent":[{"who":{"reference":"Practitioner/p"}},{"who":{"reference":"Patient/a"}}]}`, "a", true},
		{"auditevent entity group", `{"resourceType":"AuditEvent","entity":[{"what":{"reference":"Group/a"}}]}`, "a", false},
		{"practitioner outside compartment", `{"resourceType":"Practitioner","id":"a"}`, "a", false},
		{"unknown type", `{"resourceType":"Thing","subject":{"reference":"Patient/a"}}`, "a", false},
		{"no type", `{"subject":{"reference":"Patient/a"}}`, "a", false},
	}
	d := Patient()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := d.Member(res(t, tt.json), tt.patient); got != tt.want {
				t.Errorf("Member(%s, %q) = %v, want %v", tt.json, tt.patient, got, tt.want)
			}
		})
	}
}

func TestSearchParam(t *testing.T) {
	d := Patient()
	for typ, want := range map[string]string{
		"Patient":                  "_id",
		"Observation":              "subject",
		"Condition":                "patient",
		"Encounter":                "subject",
		"MedicationAdministration": "patient", // also has subject, listed after patient
		"MedicationDispense":       "patient", // patient listed after subject
		"AllergyIntolerance":       "patient",
		"Coverage":                 "policy-holder",
		"Group":                    "member",
		"Appointment":              "actor",
		"Practitioner":             "",
		"Nonsense":                 "",
	} {
		if got := d.SearchParam(typ); got != want {
			t.Errorf("SearchParam(%s) = %q, want %q", typ, got, want)
		}
	}
}

func TestMatchToken(t *testing.T) {
	const loinc = "http://loinc.org"
	const cat = "http://terminology.hl7.org/CodeSystem/observation-category"
	obs := `{"resourceType":"Observation","status":"final",
		"category":[{"coding":[{"system":"` + cat + `","code":"vital-signs"}]}],
		"code":{"coding":[{"system":"` + loinc + `","code":"8867-4"},{"code":"hr"}],"text":"Heart rate"},
		"identifier":[{"system":"urn:ids","value":"obs-1"},{"value":"plain"}],
		"valueCodeableConcept":{"coding":[{"system":"urn:v","code":"pos"}]},
		"subject":{"reference":"Patient/a"}}`
	pat := `{"resourceType":"Patient","id":"a","active":true,"gender":"female",
		"identifier":[{"system":"urn:mrn","value":"123"}],
		"telecom":[{"system":"phone","value":"555"},{"system":"email","value":"a@example.org"}]}`
	cond := `{"resourceType":"Condition",
		"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},
		"verificationStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"confirmed"}]}}`
	enc := `{"resourceType":"Encounter","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"status":"finished"}`
	tests := []struct {
		res, typ, param, value string
		match, known           bool
	}{
		// CodeableConcept: any coding.
		{obs, "Observation", "code", "8867-4", true, true},
		{obs, "Observation", "code", loinc + "|8867-4", true, true},
		{obs, "Observation", "code", "urn:other|8867-4", false, true},
		{obs, "Observation", "code", "|8867-4", false, true}, // that coding has a system
		{obs, "Observation", "code", "|hr", true, true},
		{obs, "Observation", "code", loinc + "|", true, true},
		{obs, "Observation", "code", "urn:other|", false, true},
		{obs, "Observation", "code", "Heart rate", false, true}, // text is not a token
		{obs, "Observation", "code", "x,y,hr", true, true},
		{obs, "Observation", "code", "x,y", false, true},
		{obs, "Observation", "category", cat + "|vital-signs", true, true},
		{obs, "Observation", "category", cat + "|laboratory," + cat + "|vital-signs", true, true},
		{obs, "Observation", "category", cat + "|laboratory", false, true},
		{obs, "Observation", "value-concept", "urn:v|pos", true, true},
		// Identifier.
		{obs, "Observation", "identifier", "urn:ids|obs-1", true, true},
		{obs, "Observation", "identifier", "obs-1", true, true},
		{obs, "Observation", "identifier", "|obs-1", false, true},
		{obs, "Observation", "identifier", "|plain", true, true},
		{obs, "Observation", "identifier", "urn:ids|", true, true},
		{pat, "Patient", "identifier", "urn:mrn|123", true, true},
		{pat, "Patient", "identifier", "urn:mrn|124", false, true},
		// code and boolean primitives: no system in the JSON.
		{obs, "Observation", "status", "final", true, true},
		{obs, "Observation", "status", "|final", true, true},
		{obs, "Observation", "status", "amended,final", true, true},
		{obs, "Observation", "status", "http://hl7.org/fhir/observation-status|final", false, true},
		{obs, "Observation", "status", "preliminary", false, true},
		{pat, "Patient", "gender", "female", true, true},
		{pat, "Patient", "active", "true", true, true},
		{pat, "Patient", "active", "false", false, true},
		// ContactPoint.
		{pat, "Patient", "phone", "555", true, true},
		{pat, "Patient", "phone", "a@example.org", false, true},
		{pat, "Patient", "email", "a@example.org", true, true},
		// Coding, status and verification status.
		{enc, "Encounter", "class", "AMB", true, true},
		{enc, "Encounter", "class", "http://terminology.hl7.org/CodeSystem/v3-ActCode|IMP", false, true},
		{enc, "Encounter", "status", "finished", true, true},
		{cond, "Condition", "clinical-status", "active", true, true},
		{cond, "Condition", "clinical-status", "http://terminology.hl7.org/CodeSystem/condition-clinical|active", true, true},
		{cond, "Condition", "verification-status", "confirmed", true, true},
		{cond, "Condition", "verification-status", "refuted", false, true},
		// Malformed values match nothing; unknown params are not known.
		{obs, "Observation", "code", "", false, true},
		{obs, "Observation", "code", "|", false, true},
		{obs, "Observation", "code", "a|b|c", false, true},
		{obs, "Observation", "code", ",", false, true},
		{obs, "Observation", "nonsense", "x", false, false},
		{obs, "Observation", "subject", "Patient/a", false, false}, // a reference, not a token
		{obs, "Observation", "code:text", "hr", false, false},
		{obs, "Nonsense", "code", "hr", false, false},
		{pat, "Patient", "deceased", "true", false, false}, // dropped by the generator
		// A resource of another type than asked about matches nothing.
		{obs, "Condition", "code", "hr", false, true},
	}
	d := Patient()
	for _, tt := range tests {
		match, known := d.MatchToken(res(t, tt.res), tt.typ, tt.param, tt.value)
		if match != tt.match || known != tt.known {
			t.Errorf("MatchToken(%s, %s=%s) = %v, %v; want %v, %v", tt.typ, tt.param, tt.value, match, known, tt.match, tt.known)
		}
	}
}

func TestMatchTokenEscapes(t *testing.T) {
	r := res(t, `{"resourceType":"Observation","identifier":[{"system":"urn:a|b","value":"x,y"}]}`)
	for value, want := range map[string]bool{
		`urn:a\|b|x\,y`: true,
		`x\,y`:          true,
		`x,y`:           false,
		`urn:a|b|x\,y`:  false,
	} {
		if got, _ := Patient().MatchToken(r, "Observation", "identifier", value); got != want {
			t.Errorf("MatchToken(identifier=%s) = %v, want %v", value, got, want)
		}
	}
}

func FuzzNoPanic(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Observation","subject":{"reference":"Patient/a"},"code":{"coding":[{"code":"x"}]}}`), "Observation", "code", "x")
	f.Add([]byte(`{"resourceType":"Patient","id":"a","telecom":[{"system":"email","value":1}]}`), "Patient", "email", "|")
	f.Add([]byte(`{"resourceType":"Group","characteristic":[{"valueBoolean":true},null,3]}`), "Group", "value", `true,\`)
	d := Patient()
	f.Fuzz(func(t *testing.T, data []byte, typ, param, value string) {
		var r map[string]any
		if json.Unmarshal(data, &r) != nil {
			return
		}
		d.Member(r, "a")
		d.Member(r, value)
		d.MatchToken(r, typ, param, value)
		if rt, ok := r["resourceType"].(string); ok {
			for _, p := range []string{"code", "identifier", "status", "value", "email", param} {
				d.MatchToken(r, rt, p, value)
			}
		}
	})
}

// TestMedplumDeviations pins the two entries where the embedded definition
// differs from HL7's R4 table, so a regenerated file that changes them is noticed.
func TestMedplumDeviations(t *testing.T) {
	d := Patient()
	if got := d.Params("Task"); !slices.Equal(got, []string{"patient", "focus"}) {
		t.Errorf("Params(Task) = %v", got)
	}
	if got := d.Params("Encounter"); !slices.Equal(got, []string{"subject"}) {
		t.Errorf("Params(Encounter) = %v", got)
	}
	task := res(t, `{"resourceType":"Task","for":{"reference":"Group/a"},"focus":{"reference":"Patient/a"}}`)
	if !d.Member(task, "a") {
		t.Error("a Task focused on the patient is not a member")
	}
}
