package roster

import (
	"strings"
	"testing"
)

const bundle = `{"resourceType":"Bundle","type":"collection","entry":[
 {"resource":{"resourceType":"Patient","id":"p1","name":[{"use":"nickname","given":["Bob"]},{"use":"official","family":"Smith","given":["Robert","James"]}],
   "birthDate":"1970-01-31","gender":"male","identifier":[{"system":"urn:mrn","value":"MRN-1"},{"system":"urn:x"}]}},
 {"resource":{"resourceType":"Observation","id":"o1"}},
 {"resource":{"resourceType":"Patient","id":"p2","name":[{"text":"Cher"}]}}
]}`

func TestParseBundle(t *testing.T) {
	res, err := Parse("t1", strings.NewReader(bundle))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Patients) != 2 || res.Skipped != 1 {
		t.Fatalf("got %d patients, %d skipped; want 2 and 1", len(res.Patients), res.Skipped)
	}
	p := res.Patients[0]
	if p.TenantID != "t1" || p.ID != "p1" || p.Family != "Smith" || p.Given != "Robert James" ||
		p.BirthDate != "1970-01-31" || p.Gender != "male" {
		t.Fatalf("wrong patient: %+v", p)
	}
	if len(p.Identifiers) != 1 || p.Identifiers[0].Value != "MRN-1" || p.Identifiers[0].System != "urn:mrn" {
		t.Fatalf("identifiers: %+v (an identifier without value must be dropped)", p.Identifiers)
	}
	if !strings.Contains(string(p.Resource), `"official"`) {
		t.Fatalf("resource not kept: %s", p.Resource)
	}
	if got := DisplayName(res.Patients[1]); got != "Cher" {
		t.Fatalf("text-only name: got %q", got)
	}
}

func TestParseNDJSON(t *testing.T) {
	in := `{"resourceType":"Patient","id":"a","name":[{"family":"Ng"}]}
{"resourceType":"Patient","id":"b","birthDate":"1980-05"}
`
	res, err := Parse("t", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Patients) != 2 || res.Patients[1].BirthDate != "1980-05" {
		t.Fatalf("got %+v", res.Patients)
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", ``, "no Patient"},
		{"no patients", `{"resourceType":"Observation","id":"o"}`, "no Patient"},
		{"bad json", `{"resourceType":"Patient",`, "resource 1: not valid JSON"},
		{"no id", `{"resourceType":"Patient"}`, "id must be"},
		{"bad id", `{"resourceType":"Patient","id":"a/b"}`, "id must be"},
		{"bad date", `{"resourceType":"Patient","id":"a","birthDate":"31/01/1970"}`, "not a FHIR date"},
		{"bad gender", `{"resourceType":"Patient","id":"a","gender":"m"}`, "gender"},
		{"no type", `{"id":"a"}`, "no resourceType"},
		{"duplicate", `{"resourceType":"Patient","id":"a"}` + "\n" + `{"resourceType":"Patient","id":"a"}`, "appears twice"},
		{"second line bad", `{"resourceType":"Patient","id":"a"}` + "\n" + `{"resourceType":"Patient","id":""}`, "resource 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t", strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
