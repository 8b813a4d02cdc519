package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"

	"github.com/smartauth/smartauth/server/browsertest"
	"github.com/smartauth/smartauth/server/manage"
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
	if status := signInInBrowser(t, tab, demoAppEmail, demoAppPassword); status != http.StatusOK || tab.Text("h1") != "Choose a patient" {
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

// TestAppOnAnotherOriginReceivesCode: real apps live on their own origin.
// Browsers apply a page's form-action to every redirect its form post leads
// to, so the sign-in pages must let the consent post end at the app's
// registered redirect URI, in a real browser, and nowhere else.
func TestAppOnAnotherOriginReceivesCode(t *testing.T) {
	t.Parallel()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>app</title><h1 id="app">app</h1>`)
	}))
	t.Cleanup(app.Close)
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	e := authzSetup(t, srv)
	if _, _, err := srv.Manage.CreateClient(context.Background(), manage.ClientInput{TenantID: authzTenant, ID: "elsewhere-app", Name: "Elsewhere",
		Type: storage.ClientPublic, RedirectURIs: []string{app.URL + "/callback"}, Scopes: []string{"openid", "fhirUser"}}, authzActor); err != nil {
		t.Fatal(err)
	}
	conf := *e.conf
	conf.ClientID, conf.RedirectURL, conf.Scopes = "elsewhere-app", app.URL+"/callback", []string{"openid", "fhirUser"}
	authURL := conf.AuthCodeURL(authzState, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("aud", e.fhirBase))

	tab := browsertest.New(t)
	tab.Navigate(authURL)
	if csp := browsertest.Eval[string](tab, `document.querySelector("form") ? "form" : ""`); csp != "form" {
		t.Fatalf("no sign-in form: %s", tab.PageText())
	}
	signInInBrowser(t, tab, authzEmail, authzPassword)
	tab.Navigating(chromedp.Click(chromedp.CSS(`button[name="decision"][value="allow"]`)))
	loc, err := url.Parse(tab.Location())
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != app.URL+"/callback" || loc.Query().Get("code") == "" {
		t.Fatalf("after Allow the browser is at %s, want the app's callback with a code\n%v", tab.Location(), tab.ConsoleErrors())
	}
	if tab.Text("#app") != "app" {
		t.Error("the app's page did not load")
	}
}

// signInInBrowser fills in the sign-in page as a person does and returns
// the status of the page it leads to.
func signInInBrowser(t *testing.T, tab *browsertest.Tab, email, password string) int64 {
	t.Helper()
	// Email first, then the password, each sent with Enter.
	if status := tab.Navigating(chromedp.SendKeys(chromedp.CSS(`input[name="email"]`), email+"\n")); status != http.StatusOK {
		return status
	}
	return tab.Navigating(chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), password+"\n"))
}
