package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestPatientListCommand: patient list prints the roster, searched and
// bounded, on both backends.
func TestPatientListCommand(t *testing.T) {
	onBothBackends(t, func(t *testing.T, env testEnv) {
		env.ok(t, nil, "", "tenant", "create", "--id", "clinic", "--fhir-base-url", "https://fhir.example/r4")
		env.ok(t, nil, "", "tenant", "create", "--id", "other", "--fhir-base-url", "https://fhir.example/r4")
		roster, err := os.ReadFile("testdata/demo-patients.ndjson")
		if err != nil {
			t.Fatal(err)
		}
		env.ok(t, nil, string(roster), "patient", "import", "--tenant", "clinic")
		env.ok(t, nil, `{"resourceType":"Patient","id":"elsewhere","name":[{"family":"Rivera"}]}`, "patient", "import", "--tenant", "other")

		tests := []struct {
			name string
			args []string
			ids  string
			more bool
		}{
			{"whole roster, by family then given name", nil, "demo-5 demo-3 demo-7 demo-4 demo-6 demo-2 demo-1 demo-8", false},
			{"name prefix, any case", []string{"--name", "RIV"}, "demo-1 demo-8", false},
			{"given name", []string{"--name", "tom"}, "demo-8", false},
			{"birth date", []string{"--birth-date", "2012-06-30"}, "demo-3", false},
			{"identifier", []string{"--identifier", "MRN-1002"}, "demo-2", false},
			{"no match", []string{"--name", "zz"}, "", false},
			{"bounded", []string{"--limit", "3"}, "demo-5 demo-3 demo-7", true},
			{"bound equal to the matches", []string{"--limit", "8"}, "demo-5 demo-3 demo-7 demo-4 demo-6 demo-2 demo-1 demo-8", false},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				args := append([]string{"patient", "list", "--tenant", "clinic"}, tc.args...)
				code, out, errs := env.cli(t, "", args...)
				if code != 0 {
					t.Fatalf("exit %d: %s", code, errs)
				}
				var ps []patientJSON
				if err := json.Unmarshal([]byte(out), &ps); err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
				var ids []string
				for _, p := range ps {
					ids = append(ids, p.ID)
				}
				if got := strings.Join(ids, " "); got != tc.ids {
					t.Errorf("ids %q, want %q", got, tc.ids)
				}
				if more := strings.Contains(errs, "more patients match than the "+fmt.Sprint(len(ids))+" shown"); more != tc.more || (!more && errs != "") {
					t.Errorf("stderr %q; want a note of more: %v", errs, tc.more)
				}
			})
		}

		var ps []patientJSON
		env.ok(t, &ps, "", "patient", "list", "--tenant", "clinic", "--identifier", "MRN-1001")
		if len(ps) != 1 {
			t.Fatalf("patients %+v", ps)
		}
		p := ps[0]
		if p.Family != "Rivera" || p.Given != "Ana Lucia" || p.BirthDate != "1984-03-12" || p.Gender != "female" ||
			len(p.Identifiers) != 1 || p.Identifiers[0].System != "urn:demo:mrn" || p.Identifiers[0].Value != "MRN-1001" {
			t.Errorf("patient %+v", p)
		}
		for _, limit := range []int{0, -1, maxPatientList + 1} {
			env.fails(t, 2, fmt.Sprintf("--limit %d must be between 1 and %d", limit, maxPatientList), "",
				"patient", "list", "--tenant", "clinic", "--limit", fmt.Sprint(limit))
		}
	})
}
