package server_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/smartauth/smartauth/server/browsertest"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// TestAdminClientRegisteredInBrowserCompletesLaunch is the admin UI's
// acceptance test: an admin registers the demo app in the admin pages,
// presses Launch for a patient of the roster, and the app completes the EHR
// launch with that patient once a clinician has signed in and consented.
func TestAdminClientRegisteredInBrowserCompletesLaunch(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	ctx := context.Background()
	const adminEmail = "admin@clinic.example"
	tn := srv.Tenant(t, demoAppTenant)
	if _, err := srv.Manage.CreateAdmin(ctx, demoAppTenant, adminEmail, adminPassword, manage.Actor{ID: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Manage.CreateUser(ctx, manage.UserInput{TenantID: demoAppTenant, Email: demoAppEmail, Password: demoAppPassword,
		Profiles: []storage.Profile{{FHIRUser: "Practitioner/123", Label: "Attending physician"}}}, manage.Actor{ID: "test"}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Store.UpsertPatients(ctx, demoAppTenant, []storage.Patient{
		{TenantID: demoAppTenant, ID: "p-7", Family: "Okafor", Given: "Ada", BirthDate: "1980-02-03", Resource: []byte(`{"resourceType":"Patient","id":"p-7"}`)},
		{TenantID: demoAppTenant, ID: "p-8", Family: "Lindqvist", Given: "Maja", Resource: []byte(`{"resourceType":"Patient","id":"p-8"}`)},
	}); err != nil {
		t.Fatal(err)
	}

	tab := browsertest.New(t)
	adminSignInInBrowser(t, tab, srv, "/admin/t/"+demoAppTenant, adminEmail)

	// Register the demo app as an admin does: its id, address and scopes.
	tab.Navigate(srv.URL + "/admin/t/" + demoAppTenant + "/clients")
	if status := tab.Navigating(chromedp.Click(chromedp.CSS("#new-client"))); status != http.StatusOK {
		t.Fatalf("new client form: status %d", status)
	}
	if !browsertest.Eval[bool](tab, `document.getElementById("type-public").checked`) {
		t.Error("the form does not start as a public client")
	}
	tab.Do(
		chromedp.SendKeys(chromedp.CSS("#name"), "Demo app"),
		chromedp.SendKeys(chromedp.CSS("#client_id"), demoAppClientID),
		chromedp.SendKeys(chromedp.CSS("#redirect_uris"), srv.URL+"/demo-app/"),
		chromedp.SendKeys(chromedp.CSS("#launch_uri"), srv.URL+"/demo-app/?tenant="+demoAppTenant),
	)
	for _, scope := range []string{"launch/patient", "patient/*.rs", "offline_access"} {
		tab.Do(chromedp.Click(chromedp.CSS(`input[name="scope"][value="` + scope + `"]`)))
	}
	if status := tab.Navigating(chromedp.Click(chromedp.CSS("#save"))); status != http.StatusOK {
		t.Fatalf("register: status %d: %s", status, tab.PageText())
	}
	if got := tab.Text(".notice"); got != "Client registered." {
		t.Fatalf("after registering: notice %q: %s", got, tab.PageText())
	}
	c, err := srv.Store.GetClient(ctx, demoAppTenant, demoAppClientID)
	if err != nil {
		t.Fatal(err)
	}
	if !sameSet(c.Scopes, []string{"openid", "fhirUser", "launch", "launch/patient", "patient/*.rs", "offline_access"}) {
		t.Errorf("registered scopes %v", c.Scopes)
	}

	// Launch it for a patient found by name.
	if status := tab.Navigating(chromedp.Click(chromedp.CSS("#launch"))); status != http.StatusOK {
		t.Fatalf("launch page: status %d", status)
	}
	if status := tab.Navigating(chromedp.SendKeys(chromedp.CSS("#name"), "okaf\n")); status != http.StatusOK {
		t.Fatalf("patient search: status %d", status)
	}
	if got := tab.Text("#results-heading"); got != "1 patient found" {
		t.Fatalf("results %q: %s", got, tab.PageText())
	}
	tab.Do(chromedp.Click(chromedp.CSS(`label[for="patient-0"]`)))
	tab.Navigating(chromedp.Click(chromedp.CSS("#launch-app")))
	// The app starts the EHR launch at once and lands on the sign-in page.
	tab.Text(`input[name="email"]`)
	u, err := url.Parse(tab.Location())
	if err != nil {
		t.Fatal(err)
	}
	req := u.Query()
	if u.Path != "/t/"+demoAppTenant+"/authorize" || req.Get("client_id") != demoAppClientID || req.Get("launch") == "" || req.Get("aud") != tn.FHIRBaseURLs[0] {
		t.Fatalf("the app's authorization request: %s", tab.Location())
	}

	// A clinician signs in and consents; the app gets the admin's patient.
	if status := signInInBrowser(t, tab, demoAppEmail, demoAppPassword); status != http.StatusOK {
		t.Fatalf("clinician sign-in: status %d: %s", status, tab.PageText())
	}
	if got := tab.Text("#consent-patient"); !strings.Contains(got, "Ada Okafor") || !strings.Contains(got, "Patient/p-7") {
		t.Errorf("consent page names patient %q, want Ada Okafor", got)
	}
	tab.Navigating(chromedp.Click(chromedp.CSS(`button[name="decision"][value="allow"]`)))
	tab.WaitFor(`["done", "error"].includes(document.body.dataset.status)`)
	if status := browsertest.Eval[string](tab, `document.body.dataset.status`); status != "done" {
		t.Fatalf("the app ended in %q: %s", status, tab.PageText())
	}
	if resp := shownJSON(t, tab, "#token-response"); resp["patient"] != "p-7" {
		t.Errorf("token response patient %v, want p-7", resp["patient"])
	}
	if got := tab.Text("#context-patient"); got != "p-7" {
		t.Errorf("the app shows patient %q, want p-7", got)
	}
	noConsoleErrors(t, tab)
}
