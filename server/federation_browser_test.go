package server_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"

	"github.com/smartauth/smartauth/federation/oidctest"
	"github.com/smartauth/smartauth/server/browsertest"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// TestFederatedSignInInBrowser: a person whose email domain the tenant
// routes to its identity provider signs in there, in a real browser, and
// the app on its own origin receives a code for their record.
func TestFederatedSignInInBrowser(t *testing.T) {
	t.Parallel()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>app</title><h1 id="app">app</h1>`)
	}))
	t.Cleanup(app.Close)
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	e := fedSetup(t, srv, storage.TenantPolicy{JITProvisioning: true},
		oidctest.Person{ID: "sub-b", Username: "bea@" + fedDomain, Password: "upstream-pw", Email: "bea@" + fedDomain, EmailVerified: true,
			Claims: map[string]any{"custom:tenant_id": authzTenant, "custom:patient_id": "888"}})
	if _, _, err := srv.Manage.CreateClient(t.Context(), manage.ClientInput{TenantID: authzTenant, ID: "browser-app", Name: "Browser app",
		Type: storage.ClientPublic, RedirectURIs: []string{app.URL + "/callback"}, Scopes: []string{"openid", "fhirUser", "launch/patient", "patient/*.rs"}}, authzActor); err != nil {
		t.Fatal(err)
	}
	conf := *e.conf
	conf.ClientID, conf.RedirectURL, conf.Scopes = "browser-app", app.URL+"/callback", []string{"openid", "fhirUser", "launch/patient", "patient/*.rs"}
	authURL := conf.AuthCodeURL(authzState, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("aud", e.fhirBase))

	tab := browsertest.New(t)
	tab.Navigate(authURL)
	// The email step sends the browser on to the provider's sign-in page.
	tab.Do(chromedp.SendKeys(chromedp.CSS(`input[name="email"]`), "bea@"+fedDomain+"\n"))
	tab.Text(oidctest.UsernameSelector)
	if !strings.HasPrefix(tab.Location(), e.idp.ServerURL()) {
		t.Fatalf("after the email step the browser is at %s, want the identity provider", tab.Location())
	}
	tab.Do(chromedp.SetValue(chromedp.CSS(oidctest.UsernameSelector), "bea@"+fedDomain),
		chromedp.SendKeys(chromedp.CSS(oidctest.PasswordSelector), "upstream-pw"))
	tab.Navigating(chromedp.Click(chromedp.CSS(oidctest.SubmitSelector)))
	if got := tab.Text("#consent-patient"); !strings.Contains(got, "Patient/888") {
		t.Fatalf("consent names %q, want Patient/888", got)
	}
	tab.Navigating(chromedp.Click(chromedp.CSS(`button[name="decision"][value="allow"]`)))
	loc, err := url.Parse(tab.Location())
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != app.URL+"/callback" || loc.Query().Get("code") == "" {
		t.Fatalf("after Allow the browser is at %s, want the app's callback with a code\n%v", tab.Location(), tab.ConsoleErrors())
	}
}
