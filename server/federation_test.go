package server_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/smartauth/smartauth/federation/oidctest"
	"github.com/smartauth/smartauth/server"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// fedEnv is the authz tenant with an upstream OpenID provider, shaped like
// a Cognito user pool, routed for the domain clinic-idp.example.
type fedEnv struct {
	*authzEnv
	idp *oidctest.Provider
}

const fedDomain = "clinic-idp.example"

func fedSetup(t *testing.T, srv *servertest.Server, policy storage.TenantPolicy, people ...oidctest.Person) *fedEnv {
	t.Helper()
	e := authzSetup(t, srv)
	ctx := context.Background()
	editTenantPolicy(t, srv, func(p *storage.TenantPolicy) { *p = policy })
	idp := oidctest.Start(t, oidctest.Options{Shape: oidctest.ShapeCognito, RedirectURIs: []string{e.iss + "/federation/callback"}, People: people})
	if _, _, err := srv.Manage.AddIdentityProvider(ctx, authzTenant, manage.IdentityProviderInput{
		ID: "pool", Type: storage.IdentityProviderOIDC, DisplayName: "Clinic sign-in",
		Settings:     storage.IdentityProviderSettings{Issuer: idp.Issuer(), ClientID: idp.ClientID, UserInfo: true},
		ClientSecret: idp.ClientSecret,
		ClaimMapping: storage.ClaimMapping{TenantClaim: "custom:tenant_id", PatientClaim: "custom:patient_id"},
		Domains:      []string{fedDomain}, FederationOnly: true,
	}, authzActor); err != nil {
		t.Fatal(err)
	}
	return &fedEnv{authzEnv: e, idp: idp}
}

var continueLink = regexp.MustCompile(`<a id="continue" href="([^"]+)"`)

// federate enters an email on the sign-in page, follows smartauth to the
// provider, signs in there, and returns smartauth's answer to the callback.
func (e *fedEnv) federate(t *testing.T, authURL, email, password string) authzPage {
	t.Helper()
	login := e.get(t, e.browser, authURL)
	redirect := e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, email, ""), nil)
	m := continueLink.FindStringSubmatch(redirect.body)
	if redirect.status != http.StatusOK || m == nil {
		t.Fatalf("email step for a routed domain: %d, want the page that sends the browser on\n%s", redirect.status, redirect.body)
	}
	upstream := html.UnescapeString(m[1])
	if !strings.HasPrefix(upstream, e.idp.ServerURL()) {
		t.Fatalf("sent to %s, want the identity provider", upstream)
	}
	back := e.idp.Login(t, e.browser, upstream, email, password)
	return e.get(t, e.browser, back.String())
}

func TestFederatedSignIn(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := fedSetup(t, srv, storage.TenantPolicy{JITProvisioning: true},
			oidctest.Person{ID: "sub-pat", Username: "pat@" + fedDomain, Password: "upstream-pw", Email: "pat@" + fedDomain, EmailVerified: true,
				Claims: map[string]any{"custom:tenant_id": authzTenant, "custom:patient_id": "777"}},
			oidctest.Person{ID: "sub-other", Username: "other@" + fedDomain, Password: "upstream-pw", Email: "other@" + fedDomain, EmailVerified: true,
				Claims: map[string]any{"custom:tenant_id": "another-clinic"}})
		app := e.as(authzClientID, []string{"openid", "fhirUser", "launch/patient", "patient/*.rs"})
		fed := &fedEnv{authzEnv: app, idp: e.idp}
		verifier := oauth2.GenerateVerifier()
		// A patient signed in upstream is provisioned with their record and
		// bound to it without a picker.
		consent := fed.federate(t, app.authURL(verifier), "pat@"+fedDomain, "upstream-pw")
		if consent.status != http.StatusOK || !strings.Contains(consent.body, `action="`+e.iss+`/consent"`) || !strings.Contains(consent.body, "Patient/777") {
			t.Fatalf("after federated sign-in: %d, want consent for Patient/777\n%s", consent.status, consent.body)
		}
		q := authzCallbackParams(t, app.decide(t, consent, "allow", consent.offered(), nil))
		tok, err := app.conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if tok.Extra("patient") != "777" {
			t.Errorf("patient %v, want 777", tok.Extra("patient"))
		}
		u, err := srv.Store.GetUserByEmail(context.Background(), authzTenant, "pat@"+fedDomain)
		if err != nil || len(u.Profiles) != 1 || u.Profiles[0].FHIRUser != "Patient/777" || u.PasswordHash != "" {
			t.Fatalf("provisioned user %+v, %v", u, err)
		}
		link, err := srv.Store.GetIdentityLink(context.Background(), authzTenant, e.idp.Issuer(), "sub-pat")
		if err != nil || link.UserID != u.ID {
			t.Errorf("identity link %+v, %v", link, err)
		}

		// A person whose provider names another tenant is refused, with a page and an audit event.
		refused := fed.federate(t, app.authURL(oauth2.GenerateVerifier()), "other@"+fedDomain, "upstream-pw")
		if refused.status != http.StatusForbidden || refused.header.Get("Location") != "" {
			t.Errorf("tenant claim of another clinic: %d Location %q, want a 403 page", refused.status, refused.header.Get("Location"))
		}
		events, err := srv.Store.ListAudit(context.Background(), authzTenant, storage.AuditFilter{Type: "login.failure"})
		if err != nil || len(events) != 1 || events[0].Details["reason"] != "tenant_mismatch" || events[0].Details["provider"] != "pool" {
			t.Errorf("refusal audit %v, %v", events, err)
		}
		// A federation-only domain never gets a password step, even when a password is posted.
		login := app.get(t, app.browser, app.authURL(oauth2.GenerateVerifier()))
		if p := app.post(t, app.browser, e.iss+"/login", authzLoginForm(login, "pat@"+fedDomain, "guess"), nil); continueLink.FindString(p.body) == "" {
			t.Errorf("password posted for a federation-only domain: %d, want the provider\n%s", p.status, p.body)
		}
	})
}

func TestFederatedSignInRefusals(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	// Without just-in-time provisioning or email linking, an unknown person has no account.
	e := fedSetup(t, srv, storage.TenantPolicy{},
		oidctest.Person{ID: "sub-new", Username: "new@" + fedDomain, Password: "pw", Email: "new@" + fedDomain, EmailVerified: true,
			Claims: map[string]any{"custom:tenant_id": authzTenant}})
	page := e.federate(t, e.authURL(oauth2.GenerateVerifier()), "new@"+fedDomain, "pw")
	if page.status != http.StatusForbidden {
		t.Errorf("unknown person without provisioning: %d, want 403", page.status)
	}
	// Tokens the provider's keys do not vouch for, or for another audience
	// or sign-in, are refused with a page and the reason in the audit trail.
	for _, tc := range []struct {
		name    string
		rewrite oidctest.RewriteFunc
	}{
		{"unsigned", func(c map[string]any) (string, any) { return "none", nil }},
		{"other audience", func(c map[string]any) (string, any) { c["aud"] = "someone-else"; return "RS256", nil }},
		{"other nonce", func(c map[string]any) (string, any) { c["nonce"] = "not-the-nonce-we-sent"; return "RS256", nil }},
		{"expired", func(c map[string]any) (string, any) { c["exp"] = float64(1); return "RS256", nil }},
	} {
		e.idp.SetIDTokenRewrite(tc.rewrite)
		page := e.federate(t, e.authURL(oauth2.GenerateVerifier()), "new@"+fedDomain, "pw")
		if page.status != http.StatusForbidden || page.header.Get("Location") != "" {
			t.Errorf("%s ID token: %d Location %q, want a 403 page", tc.name, page.status, page.header.Get("Location"))
		}
	}
	e.idp.SetIDTokenRewrite(nil)
	// A callback whose state this browser never started is refused.
	stranger := authzBrowser(t)
	cb := e.iss + "/federation/callback?" + url.Values{"state": {"made-up"}, "code": {"x"}}.Encode()
	if p := e.get(t, stranger, cb); p.status != http.StatusBadRequest {
		t.Errorf("callback with an unknown state: %d, want 400", p.status)
	}
	events, err := srv.Store.ListAudit(context.Background(), authzTenant, storage.AuditFilter{Type: "login.failure"})
	if err != nil || len(events) != 5 || events[0].Details["reason"] != "no_account" {
		t.Fatalf("refusal audit %v, %v", events, err)
	}
	for _, ev := range events[1:] {
		if r := ev.Details["reason"]; r == "" || r == "no_account" || ev.Details["provider"] != "pool" {
			t.Errorf("refused ID token audited as %v", ev.Details)
		}
	}
}

// TestProviderVouchesOnlyForItsDomains: linking by email trusts a provider
// only for the email domains routed to it; a provider asserting someone
// else's address (a partner's directory, say) does not take over their account.
func TestProviderVouchesOnlyForItsDomains(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	e := fedSetup(t, srv, storage.TenantPolicy{AllowEmailLinking: true},
		// The provider signs in its own people, and says one of them has the clinician's address.
		oidctest.Person{ID: "sub-own", Username: "own@" + fedDomain, Password: "pw", Email: "own@" + fedDomain, EmailVerified: true,
			Claims: map[string]any{"custom:tenant_id": authzTenant}},
		oidctest.Person{ID: "sub-spoof", Username: "spoof@" + fedDomain, Password: "pw", Email: authzEmail, EmailVerified: true,
			Claims: map[string]any{"custom:tenant_id": authzTenant}})
	if _, err := srv.Manage.CreateUser(context.Background(), manage.UserInput{TenantID: authzTenant, Email: "own@" + fedDomain,
		Profiles: []storage.Profile{{FHIRUser: "Practitioner/55"}}}, authzActor); err != nil {
		t.Fatal(err)
	}
	// Linked by verified email on a domain routed to the provider.
	consent := e.throughPicker(t, e.federate(t, e.authURL(oauth2.GenerateVerifier()), "own@"+fedDomain, "pw"))
	if !strings.Contains(consent.body, "acting as Practitioner (55)") {
		t.Fatalf("linking by a routed, verified email: %d\n%s", consent.status, consent.body)
	}
	// The same provider asserting an address on another domain links nothing.
	page := e.federate(t, e.authURL(oauth2.GenerateVerifier()), "spoof@"+fedDomain, "pw")
	if page.status != http.StatusForbidden {
		t.Errorf("provider asserting another domain's address: %d, want 403", page.status)
	}
	if _, err := srv.Store.GetIdentityLink(context.Background(), authzTenant, e.idp.Issuer(), "sub-spoof"); err == nil {
		t.Error("the spoofed address was linked to the clinician")
	}
}

// TestFederationRefusesPrivateProvider: unless the operator allows private
// networks for identity providers, sign-in does not reach a provider on
// loopback (where the tests run it): the person is told the sign-in service
// cannot be reached, and is never sent there.
func TestFederationRefusesPrivateProvider(t *testing.T) {
	t.Parallel()
	srv := servertest.StartConfig(t, servertest.OpenSQLite(t), func(c *server.Config) { c.AllowPrivateIdP = false })
	e := fedSetup(t, srv, storage.TenantPolicy{},
		oidctest.Person{ID: "sub-1", Username: "pat@" + fedDomain, Password: "pw", Email: "pat@" + fedDomain, EmailVerified: true,
			Claims: map[string]any{"custom:tenant_id": authzTenant}})
	login := e.get(t, e.browser, e.authURL(oauth2.GenerateVerifier()))
	p := e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, "pat@"+fedDomain, ""), nil)
	if p.status != http.StatusBadGateway || continueLink.MatchString(p.body) || strings.Contains(p.body, e.idp.ServerURL()) {
		t.Fatalf("sign-in routed to a provider on loopback: %d, want 502 without the provider's address\n%s", p.status, p.body)
	}
	if logs := srv.Logs(); !strings.Contains(logs, "non-public address") {
		t.Errorf("the log does not say why the provider was not reached:\n%s", logs)
	}
}

// A Cognito pool sends a custom attribute nobody filled in as "": a
// clinician whose patient attribute is blank has no patient record, and
// must still sign in rather than be refused for a bad claim.
func TestFederatedClinicianWithBlankPatientClaim(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := fedSetup(t, srv, storage.TenantPolicy{AllowEmailLinking: true},
			oidctest.Person{ID: "sub-doc", Username: "doc@" + fedDomain, Password: "upstream-pw", Email: "doc@" + fedDomain, EmailVerified: true,
				Claims: map[string]any{"custom:tenant_id": authzTenant, "custom:patient_id": ""}})
		ctx := context.Background()
		if _, err := srv.Manage.CreateUser(ctx, manage.UserInput{TenantID: authzTenant, Email: "doc@" + fedDomain,
			Profiles: []storage.Profile{{FHIRUser: "Practitioner/55", Label: "Attending physician"}}}, authzActor); err != nil {
			t.Fatal(err)
		}
		app := e.as(authzClientID, []string{"openid", "fhirUser"})
		fed := &fedEnv{authzEnv: app, idp: e.idp}
		verifier := oauth2.GenerateVerifier()
		consent := fed.federate(t, app.authURL(verifier), "doc@"+fedDomain, "upstream-pw")
		if consent.status != http.StatusOK || !strings.Contains(consent.body, `action="`+e.iss+`/consent"`) {
			t.Fatalf("clinician with a blank patient attribute: %d, want the consent page\n%s", consent.status, consent.body)
		}
		q := authzCallbackParams(t, app.decide(t, consent, "allow", consent.offered(), nil))
		tok, err := app.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if p := tok.Extra("patient"); p != nil {
			t.Errorf("patient %v in the token of a clinician without a patient record", p)
		}
		events, err := srv.Store.ListAudit(ctx, authzTenant, storage.AuditFilter{Type: "login.failure"})
		if err != nil || len(events) != 0 {
			t.Errorf("sign-in failures recorded: %v, %v", events, err)
		}
	})
}
