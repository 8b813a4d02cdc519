package server_test

import (
	"bytes"
	"context"
	"html"
	"net/http"
	"strings"
	"testing"

	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// rosterNDJSON is two patients and a resource of another type, as a bulk
// export writes them.
const rosterNDJSON = `{"resourceType":"Patient","id":"p1","name":[{"family":"Okafor","given":["Ada"]}],"birthDate":"1980-02-03","gender":"female","identifier":[{"system":"urn:mrn","value":"MRN-1001"}]}
{"resourceType":"Patient","id":"p2","name":[{"family":"Lindqvist","given":["Berit"]}],"birthDate":"1975-06-07"}
{"resourceType":"Observation","id":"o1"}
`

func TestAdminPatients(t *testing.T) {
	for _, backend := range servertest.Backends() {
		t.Run(backend.Name, func(t *testing.T) {
			e := newAdminEnv(t, backend.Open(t))
			ctx := context.Background()
			admin := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
			if p := admin.get("/admin/t/acme/patients"); p.status != http.StatusOK || !strings.Contains(p.body, `enctype="multipart/form-data"`) {
				t.Fatalf("patients page: status %d: %s", p.status, p.body)
			}

			for _, tc := range []struct {
				name    string
				content []byte
				status  int
				want    string
			}{
				{"no file", nil, http.StatusBadRequest, "Choose a file of FHIR Patient resources to import."},
				{"not JSON", []byte("name,birthdate\nAda,1980"), http.StatusBadRequest, "Nothing was imported: resource 1: not valid JSON"},
				{"one bad patient", []byte(rosterNDJSON + `{"resourceType":"Patient","id":"p3","gender":"m"}`), http.StatusBadRequest,
					`Nothing was imported: resource 4 (Patient/p3): gender "m" is not male`},
				{"over the body limit", bytes.Repeat([]byte(" "), 2<<20), http.StatusRequestEntityTooLarge, "larger than this server accepts"},
			} {
				p := postFile(admin, "/admin/t/acme/patients/import", admin.csrf, tc.content)
				if p.status != tc.status || !strings.Contains(html.UnescapeString(p.body), tc.want) {
					t.Errorf("%s: status %d, want %d with %q: %s", tc.name, p.status, tc.status, tc.want, p.body)
				}
			}
			if found, err := e.srv.Store.SearchPatients(ctx, "acme", storage.PatientQuery{}); err != nil || len(found) != 0 {
				t.Fatalf("roster after refused imports: %d patients, %v", len(found), err)
			}

			wantRedirect(t, e.srv, "import", postFile(admin, "/admin/t/acme/patients/import", admin.csrf, []byte(rosterNDJSON)),
				"/admin/t/acme/patients?notice=imported&patients=2&skipped=1")
			p1, err := e.srv.Store.GetPatient(ctx, "acme", "p1")
			if err != nil || p1.Family != "Okafor" || p1.BirthDate != "1980-02-03" || len(p1.Identifiers) != 1 {
				t.Errorf("imported patient: %+v, %v", p1, err)
			}
			if found, _ := e.srv.Store.SearchPatients(ctx, "other", storage.PatientQuery{}); len(found) != 0 {
				t.Errorf("acme's import reached other's roster: %d patients", len(found))
			}
			if ev := newestAudit(t, e.srv, "acme", "admin.patients.import"); ev.ActorID != e.acmeAdminID || ev.Details["count"] != "2" {
				t.Errorf("import audit: actor %q, details %v", ev.ActorID, ev.Details)
			}
			if p := admin.get("/admin/t/acme/patients?notice=imported&patients=2&skipped=1"); !strings.Contains(p.body, "Imported 2 patients. 1 other resource skipped.") {
				t.Errorf("patients page after import lacks the counts: %s", p.body)
			}

			for _, tc := range []struct {
				query       string
				want, other string
			}{
				{"", "Ada Okafor", ""},
				{"?name=oka", "Ada Okafor", "Berit Lindqvist"},
				{"?birthdate=1975-06-07", "Berit Lindqvist", "Ada Okafor"},
				{"?identifier=MRN-1001", "urn:mrn|MRN-1001", "Berit Lindqvist"},
			} {
				p := admin.get("/admin/t/acme/patients" + tc.query)
				if !strings.Contains(p.body, tc.want) || (tc.other != "" && strings.Contains(p.body, tc.other)) {
					t.Errorf("search %q: want %q and not %q: %s", tc.query, tc.want, tc.other, p.body)
				}
			}
			// Only known notices show, and never the URL's text.
			if p := admin.get("/admin/t/acme/patients?notice=%3Cb%3Ehacked&patients=%3Cb%3E"); strings.Contains(p.body, "hacked") || strings.Contains(p.body, `class="notice"`) {
				t.Errorf("an unknown notice showed: %s", p.body)
			}
		})
	}
}
