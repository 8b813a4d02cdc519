package gateway

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/smartauth/smartauth/gateway/compartment"
	"github.com/smartauth/smartauth/server/smart"
)

func grantOf(patient string, scopes ...string) Grant {
	return NewGrant("app", "user-1", "Practitioner/1", patient, scopes)
}

func TestAuthorize(t *testing.T) {
	def := compartment.Patient()
	cases := []struct {
		name   string
		grant  Grant
		call   Call
		refuse bool
		// query is what the upstream must be asked, when not refused.
		query string
	}{
		{name: "v1 read scope reads", grant: grantOf("p1", "patient/Observation.read"), call: Call{Interaction: Read, Type: "Observation", ID: "o1"}},
		{name: "v1 read scope searches, confined", grant: grantOf("p1", "patient/Observation.read"), call: Call{Interaction: Search, Type: "Observation"}, query: "subject=Patient%2Fp1"},
		{name: "v1 read scope cannot write", grant: grantOf("p1", "patient/Observation.read"), call: Call{Interaction: Create, Type: "Observation"}, refuse: true},
		{name: "v1 write scope creates", grant: grantOf("p1", "patient/Observation.write"), call: Call{Interaction: Create, Type: "Observation"}},
		{name: "v1 star scope deletes", grant: grantOf("p1", "patient/Observation.*"), call: Call{Interaction: Delete, Type: "Observation", ID: "o1"}},
		{name: "v2 r without s cannot search", grant: grantOf("p1", "patient/Observation.r"), call: Call{Interaction: Search, Type: "Observation"}, refuse: true},
		{name: "v2 s without r cannot read", grant: grantOf("p1", "patient/Observation.s"), call: Call{Interaction: Read, Type: "Observation", ID: "o1"}, refuse: true},
		{name: "v2 s searches type history", grant: grantOf("p1", "patient/Observation.s"), call: Call{Interaction: HistoryType, Type: "Observation"}},
		{name: "v2 u updates", grant: grantOf("p1", "patient/Observation.u"), call: Call{Interaction: Update, Type: "Observation", ID: "o1"}},
		{name: "v2 c cannot update", grant: grantOf("p1", "patient/Observation.c"), call: Call{Interaction: Update, Type: "Observation", ID: "o1"}, refuse: true},
		{name: "wildcard type", grant: grantOf("p1", "patient/*.rs"), call: Call{Interaction: Search, Type: "Condition"}, query: "patient=Patient%2Fp1"},
		{name: "other type refused", grant: grantOf("p1", "patient/Observation.rs"), call: Call{Interaction: Read, Type: "Condition", ID: "c1"}, refuse: true},
		{name: "patient scope without patient context", grant: grantOf("", "patient/Observation.rs"), call: Call{Interaction: Read, Type: "Observation", ID: "o1"}, refuse: true},
		{name: "other patient by id", grant: grantOf("p1", "patient/Patient.rs"), call: Call{Interaction: Read, Type: "Patient", ID: "p2"}, refuse: true},
		{name: "own patient by id", grant: grantOf("p1", "patient/Patient.rs"), call: Call{Interaction: Read, Type: "Patient", ID: "p1"}},
		{name: "other patient everything", grant: grantOf("p1", "patient/*.rs"), call: Call{Interaction: Operation, Type: "Patient", ID: "p2", Operation: "$everything"}, refuse: true},
		{name: "patient search confined by id", grant: grantOf("p1", "patient/Patient.rs"), call: Call{Interaction: Search, Type: "Patient"}, query: "_id=p1"},
		{name: "patient scope creates no Patient", grant: grantOf("p1", "patient/Patient.c"), call: Call{Interaction: Create, Type: "Patient"}, refuse: true},
		{name: "patient scope writes nothing outside the compartment", grant: grantOf("p1", "patient/Medication.cud"), call: Call{Interaction: Create, Type: "Medication"}, refuse: true},
		{name: "patient scope reads outside the compartment", grant: grantOf("p1", "patient/Medication.rs"), call: Call{Interaction: Search, Type: "Medication"}, query: ""},
		{name: "patch refused when confined", grant: grantOf("p1", "patient/Observation.u"), call: Call{Interaction: Patch, Type: "Observation", ID: "o1"}, refuse: true},
		{name: "patch allowed unconfined", grant: grantOf("", "user/Observation.u"), call: Call{Interaction: Patch, Type: "Observation", ID: "o1"}},
		{name: "user scope unconfined", grant: grantOf("p1", "user/Observation.rs"), call: Call{Interaction: Search, Type: "Observation"}, query: ""},
		{name: "system scope unconfined", grant: grantOf("", "system/*.rs"), call: Call{Interaction: Search, Type: "Encounter"}, query: ""},
		{name: "granular adds its parameters", grant: grantOf("p1", "patient/Observation.rs?category=laboratory"), call: Call{Interaction: Search, Type: "Observation"}, query: "category=laboratory&subject=Patient%2Fp1"},
		{name: "summary refused when confined", grant: grantOf("p1", "patient/Observation.rs"), call: Call{Interaction: Search, Type: "Observation", Query: url.Values{"_summary": {"true"}}}, refuse: true},
		{name: "elements refused when confined", grant: grantOf("p1", "patient/Observation.rs"), call: Call{Interaction: Search, Type: "Observation", Query: url.Values{"_elements": {"code"}}}, refuse: true},
		{name: "count allowed when exact", grant: grantOf("p1", "patient/Observation.rs"), call: Call{Interaction: Search, Type: "Observation", Query: url.Values{"_summary": {"count"}}}, query: "_summary=count&subject=Patient%2Fp1"},
		{name: "count refused when not exact", grant: grantOf("p1", "patient/Observation.rs?category=laboratory", "patient/Observation.rs?category=vital-signs"), call: Call{Interaction: Search, Type: "Observation", Query: url.Values{"_summary": {"count"}}}, refuse: true},
		{name: "format dropped", grant: grantOf("", "user/Observation.rs"), call: Call{Interaction: Search, Type: "Observation", Query: url.Values{"_format": {"xml"}}}, query: ""},
		{name: "non-resource scopes grant nothing", grant: grantOf("p1", "openid", "fhirUser", "launch/patient"), call: Call{Interaction: Read, Type: "Patient", ID: "p1"}, refuse: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Authorize(def, c.grant, c.call)
			if c.refuse {
				var re *RefusedError
				if !errors.As(err, &re) || re.Status != 403 {
					t.Fatalf("Authorize = %+v, %v; want a 403 refusal", p, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Authorize: %v", err)
			}
			if got := p.Query.Encode(); got != c.query && c.call.Interaction == Search {
				t.Errorf("upstream query = %q, want %q", got, c.query)
			}
		})
	}
}

// TestAllowed checks resources one by one, as responses and request bodies are.
func TestAllowed(t *testing.T) {
	def := compartment.Patient()
	obs := func(subject, category string) map[string]any {
		return map[string]any{
			"resourceType": "Observation", "id": "o",
			"subject":  map[string]any{"reference": subject},
			"category": []any{map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}}}},
		}
	}
	cases := []struct {
		name  string
		grant Grant
		typ   string
		res   map[string]any
		want  bool
	}{
		{"own observation", grantOf("p1", "patient/Observation.rs"), "Observation", obs("Patient/p1", "laboratory"), true},
		{"other patient's observation", grantOf("p1", "patient/Observation.rs"), "Observation", obs("Patient/p2", "laboratory"), false},
		{"user scope sees any patient", grantOf("p1", "user/Observation.rs"), "Observation", obs("Patient/p2", "laboratory"), true},
		{"granular category matches", grantOf("p1", "patient/Observation.rs?category=laboratory"), "Observation", obs("Patient/p1", "laboratory"), true},
		{"granular category differs", grantOf("p1", "patient/Observation.rs?category=laboratory"), "Observation", obs("Patient/p1", "vital-signs"), false},
		{"granular with system", grantOf("p1", "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"), "Observation", obs("Patient/p1", "vital-signs"), true},
		{"either granular scope", grantOf("p1", "patient/Observation.rs?category=laboratory", "patient/Observation.rs?category=vital-signs"), "Observation", obs("Patient/p1", "vital-signs"), true},
		{"unknown granular parameter proves nothing", grantOf("p1", "patient/Observation.rs?nonsense=1"), "Observation", obs("Patient/p1", "laboratory"), false},
		{"own patient", grantOf("p1", "patient/Patient.r"), "Patient", map[string]any{"resourceType": "Patient", "id": "p1"}, true},
		{"other patient", grantOf("p1", "patient/Patient.r"), "Patient", map[string]any{"resourceType": "Patient", "id": "p2"}, false},
		{"type not granted", grantOf("p1", "patient/Observation.rs"), "Condition", map[string]any{"resourceType": "Condition", "subject": map[string]any{"reference": "Patient/p1"}}, false},
		{"outside the compartment", grantOf("p1", "patient/Medication.r"), "Medication", map[string]any{"resourceType": "Medication", "id": "m"}, true},
		{"in compartment without link", grantOf("p1", "patient/Observation.r"), "Observation", map[string]any{"resourceType": "Observation", "id": "o"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Allowed(def, c.grant, c.typ, smart.PermRead, c.res); got != c.want {
				t.Errorf("Allowed = %v, want %v", got, c.want)
			}
		})
	}
}

func TestNewGrantIgnoresOtherScopes(t *testing.T) {
	g := NewGrant("app", "u", "", "p1", strings.Fields("openid fhirUser launch patient/Observation.rs bad/scope!! user/Condition.read"))
	if len(g.Scopes) != 2 {
		t.Fatalf("scopes = %+v, want the two resource scopes", g.Scopes)
	}
}
