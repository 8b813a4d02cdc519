package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/smartauth/smartauth/server/browsertest"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// TestDemoAppStandalonePatientPicker runs a standalone launch that asks for
// a patient in a real browser: the clinician searches the roster from the
// keyboard, picks a patient, sees them named on the consent page, and the
// app receives that patient and patient-level access.
func TestDemoAppStandalonePatientPicker(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	e := demoAppSetup(t, srv)
	if err := srv.Store.UpsertPatients(context.Background(), demoAppTenant, []storage.Patient{
		{TenantID: demoAppTenant, ID: "p-1", Family: "Okafor", Given: "Ada", BirthDate: "1980-02-03", Resource: []byte(`{"resourceType":"Patient","id":"p-1"}`)},
		{TenantID: demoAppTenant, ID: "p-2", Family: "Lindqvist", Given: "Maja", BirthDate: "1975-06-07", Resource: []byte(`{"resourceType":"Patient","id":"p-2"}`)},
	}); err != nil {
		t.Fatal(err)
	}
	tab := browsertest.New(t)
	e.start(t, tab, "openid fhirUser launch/patient patient/*.rs offline_access")
	status := tab.Navigating(
		chromedp.SendKeys(chromedp.CSS(`input[name="email"]`), demoAppEmail),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), demoAppPassword),
		chromedp.Submit(chromedp.CSS(`input[name="password"]`)),
	)
	if status != http.StatusOK || tab.Text("h1") != "Choose a patient" {
		t.Fatalf("after sign-in: %d %q, want the patient picker", status, tab.Text("h1"))
	}
	// Search by typing and pressing Enter, as a keyboard user would.
	if status := tab.Navigating(chromedp.SendKeys(chromedp.CSS("#name"), "lindq\n")); status != http.StatusOK {
		t.Fatalf("search answered %d", status)
	}
	if got := tab.Text("#results-heading"); got != "1 patient found" {
		t.Fatalf("results heading %q\n%s", got, tab.PageText())
	}
	if status := tab.Navigating(chromedp.Click(chromedp.CSS(`label[for="patient-0"]`)), chromedp.Click(chromedp.CSS("#choose"))); status != http.StatusOK {
		t.Fatalf("choosing the patient answered %d", status)
	}
	if got := tab.Text("#consent-patient"); !strings.Contains(got, "Maja Lindqvist") {
		t.Errorf("consent page names patient %q, want Maja Lindqvist", got)
	}
	if status := e.decide(t, tab, "allow"); status != "done" {
		t.Fatalf("the app ended in %q: %s", status, tab.PageText())
	}
	resp := shownJSON(t, tab, "#token-response")
	if resp["patient"] != "p-2" || resp["need_patient_banner"] != true {
		t.Errorf("token response: patient %v, need_patient_banner %v", resp["patient"], resp["need_patient_banner"])
	}
	scope, _ := resp["scope"].(string)
	if !sameSet(strings.Fields(scope), []string{"openid", "fhirUser", "launch/patient", "patient/*.rs", "offline_access"}) {
		t.Errorf("granted scope %v", resp["scope"])
	}
	if got := tab.Text("#context-patient"); got != "p-2" {
		t.Errorf("the app shows patient %q, want p-2", got)
	}
	noConsoleErrors(t, tab)
}
