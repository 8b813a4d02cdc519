package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

func TestLogoutEndsSessionAndOnlineAccess(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		if _, _, err := srv.Manage.CreateClient(context.Background(), manage.ClientInput{TenantID: authzTenant, ID: "online-app", Name: "Online",
			Type: storage.ClientPublic, RedirectURIs: []string{authzCallback}, Scopes: []string{"openid", "online_access"}}, authzActor); err != nil {
			t.Fatal(err)
		}
		app := e.as("online-app", []string{"openid", "online_access"})
		verifier := oauth2.GenerateVerifier()
		consent := app.signIn(t, app.authURL(verifier))
		q := authzCallbackParams(t, app.decide(t, consent, "allow", consent.offered(), nil))
		tok, err := app.conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		logoutURL := e.iss + "/logout?" + url.Values{"client_id": {"online-app"}, "post_logout_redirect_uri": {authzCallback}, "state": {"bye-123"}}.Encode()

		// An address the app did not register is refused, and nobody is signed out.
		bad := app.get(t, app.browser, e.iss+"/logout?"+url.Values{"client_id": {"online-app"}, "post_logout_redirect_uri": {"https://evil.example/"}}.Encode())
		if bad.status != http.StatusBadRequest || bad.header.Get("Location") != "" {
			t.Errorf("unregistered post_logout_redirect_uri: %d Location %q", bad.status, bad.header.Get("Location"))
		}
		// GET only asks; a post without the CSRF token does nothing.
		confirm := app.get(t, app.browser, logoutURL)
		if confirm.status != http.StatusOK || !strings.Contains(confirm.body, "Sign out?") || confirm.hidden["csrf_token"] == "" {
			t.Fatalf("sign-out page: %d\n%s", confirm.status, confirm.body)
		}
		form := url.Values{}
		for k, v := range confirm.hidden {
			form.Set(k, v)
		}
		noToken := url.Values{}
		for k, v := range form {
			noToken[k] = v
		}
		noToken.Del("csrf_token")
		if p := app.post(t, app.browser, e.iss+"/logout", noToken, nil); p.status != http.StatusForbidden {
			t.Errorf("sign-out without the CSRF token: %d, want 403", p.status)
		}
		if st, body := app.refresh(t, tok.RefreshToken, nil); st != http.StatusOK {
			t.Fatalf("refresh before sign-out: %d %v", st, body)
		} else {
			tok.RefreshToken = body["refresh_token"].(string)
		}

		done := app.post(t, app.browser, e.iss+"/logout", form, nil)
		if done.status != http.StatusSeeOther || done.header.Get("Location") != authzCallback+"?state=bye-123" {
			t.Fatalf("sign-out: %d Location %q", done.status, done.header.Get("Location"))
		}
		if !strings.Contains(done.header.Get("Set-Cookie"), "Max-Age=0") {
			t.Errorf("sign-out did not clear the session cookie: %q", done.header.Values("Set-Cookie"))
		}
		if st, body := app.refresh(t, tok.RefreshToken, nil); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Errorf("online_access refresh after sign-out: %d %v, want 400 invalid_grant", st, body)
		}
		events, err := srv.Store.ListAudit(context.Background(), authzTenant, storage.AuditFilter{Type: "logout"})
		if err != nil || len(events) != 1 || events[0].Subject != e.userID {
			t.Errorf("logout audit %v, %v", events, err)
		}
	})
}

// TestSignInStartsNewSession: a sign-in gets a new session id unless the
// browser's session is already signed in as the same person, so a session
// id known before sign-in (planted, or left by someone else on a shared
// workstation) is worth nothing after it.
func TestSignInStartsNewSession(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	e := authzSetup(t, srv)
	sessionCookie := func() string {
		u, _ := url.Parse(e.iss + "/")
		for _, c := range e.browser.Jar.Cookies(u) {
			if c.Name == "smartauth_session" {
				return c.Value
			}
		}
		return ""
	}
	e.signIn(t, e.authURL(oauth2.GenerateVerifier()))
	first := sessionCookie()
	if first == "" {
		t.Fatal("sign-in set no session cookie")
	}
	// Signing in again as the same person keeps the session, so grants
	// bound to it (online_access) live on.
	e.signIn(t, e.authURL(oauth2.GenerateVerifier()))
	if again := sessionCookie(); again != first {
		t.Fatalf("signing in again as the same person replaced the session")
	}
	// Anyone else signing in in this browser gets a new session.
	if _, err := srv.Manage.CreateUser(context.Background(), manage.UserInput{TenantID: authzTenant, Email: "second@clinic.example",
		Password: authzPassword, Profiles: []storage.Profile{{FHIRUser: "Practitioner/9"}}}, authzActor); err != nil {
		t.Fatal(err)
	}
	login := e.get(t, e.browser, e.authURL(oauth2.GenerateVerifier()))
	e.throughPicker(t, e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, "second@clinic.example", authzPassword), nil))
	second := sessionCookie()
	if second == "" || second == first {
		t.Fatalf("another person's sign-in kept session cookie %q", first)
	}
	// The first session is gone from the database, not just from the browser.
	handle := func(cookie string) string {
		secret, err := base64.RawURLEncoding.DecodeString(cookie)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(secret)
		return base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if _, err := srv.Store.GetSession(context.Background(), authzTenant, handle(second), srv.Clock.Now()); err != nil {
		t.Fatalf("the new session is not stored: %v", err)
	}
	if _, err := srv.Store.GetSession(context.Background(), authzTenant, handle(first), srv.Clock.Now()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the session before sign-in is still stored: %v", err)
	}
}

// TestSignedOutConsentGrantsNothing: the next person at a shared
// workstation pressing Back after sign-out cannot approve the page left
// behind.
func TestSignedOutConsentGrantsNothing(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	e := authzSetup(t, srv)
	consent := e.signIn(t, e.authURL(oauth2.GenerateVerifier()))
	confirm := e.get(t, e.browser, e.iss+"/logout")
	form := url.Values{}
	for k, v := range confirm.hidden {
		form.Set(k, v)
	}
	if p := e.post(t, e.browser, e.iss+"/logout", form, nil); p.status != http.StatusOK {
		t.Fatalf("sign-out: %d", p.status)
	}
	// Even with the CSRF cookie put back, the ticket's session is over.
	u, _ := url.Parse(e.iss + "/")
	e.browser.Jar.SetCookies(u, []*http.Cookie{{Name: "smartauth_csrf", Value: consent.hidden["csrf_token"], Path: u.Path}})
	if p := e.decide(t, consent, "allow", consent.offered(), nil); p.status != http.StatusBadRequest || p.header.Get("Location") != "" {
		t.Fatalf("consent after sign-out: %d Location %q, want 400 and no code", p.status, p.header.Get("Location"))
	}
}
