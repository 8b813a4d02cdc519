package server_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// rememberConsent registers an app and a person in a tenant and stores the
// person's consent to the app, returning the user's and client's ids.
func rememberConsent(t *testing.T, srv *servertest.Server, tenantID, email, appName string) (userID, clientID string) {
	t.Helper()
	ctx := context.Background()
	who := manage.Actor{ID: "test"}
	c, _, err := srv.Manage.CreateClient(ctx, manage.ClientInput{TenantID: tenantID, Name: appName, Type: storage.ClientPublic,
		RedirectURIs: []string{"https://app.example/callback"}, Scopes: []string{"launch/patient", "patient/Observation.rs"}}, who)
	if err != nil {
		t.Fatal(err)
	}
	u, err := srv.Manage.CreateUser(ctx, manage.UserInput{TenantID: tenantID, Email: email, Password: adminPassword,
		Profiles: []storage.Profile{{FHIRUser: "Practitioner/7"}}}, who)
	if err != nil {
		t.Fatal(err)
	}
	now := srv.Clock.Now()
	if err := srv.Store.SaveConsent(ctx, storage.Consent{TenantID: tenantID, UserID: u.ID, ClientID: c.ID,
		Scopes: []string{"launch/patient", "patient/Observation.rs"}, CreatedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return u.ID, c.ID
}

func TestAdminConsents(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	ctx := context.Background()
	userID, clientID := rememberConsent(t, e.srv, "acme", "nurse@acme.example", "Chart Viewer")
	otherUser, otherClient := rememberConsent(t, e.srv, "other", "nurse@other.example", "Other App")

	admin := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
	p := admin.get("/admin/t/acme/consents")
	for _, want := range []string{"nurse@acme.example", "Chart Viewer", clientID, "<code>patient/Observation.rs</code>"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("consents page lacks %q: %s", want, p.body)
		}
	}
	if strings.Contains(p.body, "nurse@other.example") || strings.Contains(p.body, "Other App") {
		t.Error("acme's consents page shows other's consent")
	}

	// Other's consent cannot be named through acme's page.
	if p := admin.post("/admin/t/acme/consents/revoke", url.Values{"user_id": {otherUser}, "client_id": {otherClient}}); p.status != http.StatusNotFound {
		t.Errorf("revoking other's consent through acme: status %d, want 404", p.status)
	}
	if _, err := e.srv.Store.GetConsent(ctx, "other", otherUser, otherClient, e.srv.Clock.Now()); err != nil {
		t.Errorf("other's consent after acme's admin tried to revoke it: %v", err)
	}

	wantRedirect(t, e.srv, "revoke", admin.post("/admin/t/acme/consents/revoke", url.Values{"user_id": {userID}, "client_id": {clientID}}),
		"/admin/t/acme/consents?notice=revoked")
	if _, err := e.srv.Store.GetConsent(ctx, "acme", userID, clientID, e.srv.Clock.Now()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("consent after revocation: %v, want not found", err)
	}
	ev := newestAudit(t, e.srv, "acme", "admin.consent.revoke")
	if ev.ActorID != e.acmeAdminID || ev.Subject != userID || ev.Details["client_id"] != clientID {
		t.Errorf("revocation audit: actor %q, subject %q, details %v", ev.ActorID, ev.Subject, ev.Details)
	}
	p = admin.get("/admin/t/acme/consents?notice=revoked")
	if !strings.Contains(p.body, "Consent revoked.") || strings.Contains(p.body, "nurse@acme.example") {
		t.Errorf("consents page after revocation: %s", p.body)
	}
	// A second click finds nothing to revoke.
	if p := admin.post("/admin/t/acme/consents/revoke", url.Values{"user_id": {userID}, "client_id": {clientID}}); p.status != http.StatusNotFound {
		t.Errorf("revoking again: status %d, want 404", p.status)
	}
}

// TestRevokedConsentEndsGrants: revoking a remembered consent ends what the
// app holds for that person, not only the memory of the consent.
func TestRevokedConsentEndsGrants(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		introspect := e.introspector(t)
		ctx := context.Background()
		tokens := refreshTokens(t, e)
		now := srv.Clock.Now()
		if err := srv.Store.SaveConsent(ctx, storage.Consent{TenantID: authzTenant, UserID: e.userID, ClientID: e.conf.ClientID,
			Scopes: []string{"openid"}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if err := srv.Manage.RevokeConsent(ctx, authzTenant, e.userID, e.conf.ClientID, manage.Actor{ID: "test"}); err != nil {
			t.Fatal(err)
		}
		if status, body := e.refresh(t, tokens["refresh_token"].(string), nil); status == http.StatusOK {
			t.Fatalf("the app refreshed after its consent was revoked: %v", body)
		}
		if introspect(tokens["access_token"].(string))["active"] != false {
			t.Fatal("an access token is still active after its consent was revoked")
		}
	})
}
