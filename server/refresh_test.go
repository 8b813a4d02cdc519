package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// refreshTokens runs the code flow and returns the first token response.
func refreshTokens(t *testing.T, e *authzEnv) map[string]any {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	status, body := e.redeem(t, e.code(t, verifier), verifier)
	if status != 200 || body["refresh_token"] == nil {
		t.Fatalf("code exchange: %d %v (offline_access should give a refresh token)", status, body)
	}
	return body
}

// refresh presents a refresh token as the public client would.
func (e *authzEnv) refresh(t *testing.T, token string, extra url.Values) (int, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}, "client_id": {e.conf.ClientID}}
	for k, v := range extra {
		form[k] = v
	}
	resp, err := http.PostForm(e.iss+"/token", form)
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func TestRefreshRotation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		introspect := e.introspector(t)
		first := refreshTokens(t, e)
		rt1, at1 := first["refresh_token"].(string), first["access_token"].(string)

		status, second := e.refresh(t, rt1, nil)
		if status != 200 || second["refresh_token"] == nil || second["refresh_token"] == rt1 || second["access_token"] == at1 {
			t.Fatalf("refresh: %d %v, want a new access and a new refresh token", status, second)
		}
		if second["scope"] != first["scope"] {
			t.Fatalf("refresh changed the scope: %v → %v", first["scope"], second["scope"])
		}
		claims := verifyAccessToken(t, srv, authzTenant, second["access_token"].(string))
		if claims["sub"] != e.userID || claims["client_id"] != authzClientID {
			t.Fatalf("refreshed token claims %v", claims)
		}
		if introspect(rt1)["active"] != false {
			t.Fatal("the rotated refresh token is still active")
		}
		if introspect(second["access_token"].(string))["active"] != true {
			t.Fatal("the new access token is not active")
		}

		// Reuse of the rotated token is theft: it fails and revokes the family.
		rt2, at2 := second["refresh_token"].(string), second["access_token"].(string)
		if status, body := e.refresh(t, rt1, nil); status != 400 || body["error"] != "invalid_grant" {
			t.Fatalf("reusing a rotated refresh token: %d %v, want invalid_grant", status, body)
		}
		if introspect(at2)["active"] != false || introspect(rt2)["active"] != false {
			t.Fatal("reuse of a rotated refresh token did not revoke the tokens issued after it")
		}
		if status, _ := e.refresh(t, rt2, nil); status == 200 {
			t.Fatal("the family's newest refresh token still works after reuse was detected")
		}
		reuse, err := srv.Store.ListAudit(context.Background(), authzTenant, storage.AuditFilter{Type: "token.refresh_reuse"})
		if err != nil || len(reuse) == 0 || reuse[0].ClientID != authzClientID {
			t.Errorf("refresh reuse audit events: %+v %v", reuse, err)
		}
		if refreshed, _ := srv.Store.ListAudit(context.Background(), authzTenant, storage.AuditFilter{Type: "token.refresh"}); len(refreshed) != 1 {
			t.Errorf("%d token.refresh audit events, want 1", len(refreshed))
		}
	})
}

func TestUserinfoRefusesRefreshToken(t *testing.T) {
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	e := authzSetup(t, srv)
	first := refreshTokens(t, e)
	if st := authzUserinfo(t, e, first["access_token"].(string)); st != http.StatusOK {
		t.Fatalf("userinfo with the access token: %d", st)
	}
	if st := authzUserinfo(t, e, first["refresh_token"].(string)); st != http.StatusUnauthorized {
		t.Fatalf("userinfo with a refresh token: %d, want 401", st)
	}
}

func TestOnlineAccessEndsWithSession(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		if _, _, err := srv.Manage.CreateClient(context.Background(), manage.ClientInput{TenantID: authzTenant, ID: "online-app", Name: "Online",
			Type: storage.ClientPublic, RedirectURIs: []string{authzCallback}, Scopes: []string{"openid", "online_access", "offline_access"}}, authzActor); err != nil {
			t.Fatal(err)
		}
		tokens := func(scopes ...string) (*authzEnv, *oauth2.Token) {
			app := e.as("online-app", scopes)
			app.browser = authzBrowser(t) // a new browser: a sign-in session of its own
			verifier := oauth2.GenerateVerifier()
			consent := app.signIn(t, app.authURL(verifier))
			q := authzCallbackParams(t, app.decide(t, consent, "allow", consent.offered(), nil))
			tok, err := app.conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			if tok.RefreshToken == "" {
				t.Fatalf("%v gave no refresh token", scopes)
			}
			return app, tok
		}
		// Every sign-in happens first: fosite checks auth_time against the
		// wall clock, which the test clock runs ahead of once advanced.
		online, tok := tokens("openid", "online_access")
		offline, offTok := tokens("openid", "offline_access")
		idle, idleTok := tokens("openid", "online_access")

		// While the session lives, refreshing works and counts as activity:
		// 25 minutes twice is past the 30-minute idle time-out of a session
		// nobody uses.
		srv.Clock.Advance(25 * time.Minute)
		st, body := online.refresh(t, tok.RefreshToken, nil)
		if st != http.StatusOK || body["refresh_token"] == nil {
			t.Fatalf("refresh within the session: %d %v", st, body)
		}
		srv.Clock.Advance(25 * time.Minute)
		st, body = online.refresh(t, body["refresh_token"].(string), nil)
		if st != http.StatusOK {
			t.Fatalf("second refresh within the session: %d %v", st, body)
		}

		// The other browser's session was not used for 50 minutes: it went
		// idle, and its online grant with it.
		if st, body := idle.refresh(t, idleTok.RefreshToken, nil); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Errorf("online_access refresh after the session went idle: %d %v, want 400 invalid_grant", st, body)
		}

		// Once the user's sessions end, the online grant is over; the offline one is not.
		if err := srv.Store.DeleteUserSessions(context.Background(), authzTenant, e.userID); err != nil {
			t.Fatal(err)
		}
		st, body = online.refresh(t, body["refresh_token"].(string), nil)
		if st != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Errorf("online_access refresh after the session ended: %d %v, want 400 invalid_grant", st, body)
		}
		if st, body := offline.refresh(t, offTok.RefreshToken, nil); st != http.StatusOK {
			t.Errorf("offline_access refresh after the session ended: %d %v", st, body)
		}
	})
}

func TestDisabledOrDeletedUserLosesGrants(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		introspect := e.introspector(t)
		ctx := context.Background()
		first := refreshTokens(t, e)
		u, err := srv.Store.GetUser(ctx, authzTenant, e.userID)
		if err != nil {
			t.Fatal(err)
		}
		u.Disabled = true
		if err := srv.Store.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		if status, body := e.refresh(t, first["refresh_token"].(string), nil); status == 200 {
			t.Fatalf("a disabled user's app refreshed: %v", body)
		}
		if introspect(first["access_token"].(string))["active"] != false {
			t.Fatal("a disabled user's access token is still active")
		}

		u.Disabled = false
		u.Version++ // the update above moved it on
		if err := srv.Store.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		second := refreshTokens(t, e)
		if err := srv.Store.DeleteUser(ctx, authzTenant, e.userID); err != nil {
			t.Fatal(err)
		}
		if status, _ := e.refresh(t, second["refresh_token"].(string), nil); status == 200 {
			t.Fatal("a deleted user's app refreshed")
		}
	})
}

func TestRefreshRefusals(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		rt := refreshTokens(t, e)["refresh_token"].(string)
		for name, tc := range map[string]struct {
			token string
			extra url.Values
			code  string
		}{
			"unknown token":      {"not-a-refresh-token", nil, "invalid_grant"},
			"another client's":   {rt, url.Values{"client_id": {"someone-else"}}, "invalid_client"},
			"scope beyond grant": {rt, url.Values{"scope": {"patient/*.rs user/*.cruds"}}, ""},
		} {
			status, body := e.refresh(t, tc.token, tc.extra)
			if status == 200 {
				t.Errorf("%s: refresh succeeded: %v", name, body)
			} else if tc.code != "" && body["error"] != tc.code {
				t.Errorf("%s: %d %v, want %s", name, status, body, tc.code)
			}
		}
	})
}

func TestRefreshNarrowsScope(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		rt := refreshTokens(t, e)["refresh_token"].(string)
		status, body := e.refresh(t, rt, url.Values{"scope": {"patient/*.rs offline_access"}})
		if status != 200 || body["scope"] != "patient/*.rs offline_access" {
			t.Fatalf("narrowing refresh: %d %v", status, body)
		}
		if claims := verifyAccessToken(t, srv, authzTenant, body["access_token"].(string)); claims["scope"] != "patient/*.rs offline_access" {
			t.Fatalf("narrowed token carries scope %v", claims["scope"])
		}
		// Narrowing shapes one access token, not the grant: the new refresh
		// token keeps the scope of the one it replaced (RFC 6749 §6), even
		// when the narrowed request left out offline_access.
		status, body = e.refresh(t, body["refresh_token"].(string), url.Values{"scope": {"openid"}})
		if status != 200 || body["scope"] != "openid" || body["refresh_token"] == nil {
			t.Fatalf("narrowing to a scope left out before: %d %v", status, body)
		}
		status, body = e.refresh(t, body["refresh_token"].(string), nil)
		if status != 200 || body["scope"] != strings.Join(authzScopes, " ") {
			t.Fatalf("refresh without scope after narrowing: %d %v, want the whole grant", status, body)
		}
		if claims := verifyAccessToken(t, srv, authzTenant, body["access_token"].(string)); claims["fhirUser"] == nil {
			t.Errorf("fhirUser lost after a narrowing refresh: %v", claims)
		}
		// Widening beyond the grant is still refused.
		status, body = e.refresh(t, body["refresh_token"].(string), url.Values{"scope": {"user/*.cruds"}})
		if status != 400 || body["error"] != "invalid_scope" {
			t.Fatalf("widening beyond the grant: %d %v, want invalid_scope", status, body)
		}
	})
}

func TestConcurrentRefresh(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		rt := refreshTokens(t, e)["refresh_token"].(string)
		const n = 4
		statuses := make([]int, n)
		bodies := make([]map[string]any, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				statuses[i], bodies[i] = e.refresh(t, rt, nil)
			}()
		}
		close(start)
		wg.Wait()
		ok, winner := 0, 0
		for i, s := range statuses {
			if s == 200 {
				ok++
				winner = i
			} else if s >= 500 {
				t.Errorf("a losing concurrent refresh got %d", s)
			}
		}
		if ok != 1 {
			t.Fatalf("%d of %d concurrent refreshes succeeded (%v), want exactly 1", ok, n, statuses)
		}
		// Presenting one refresh token several times is reuse however it is
		// timed: the family, the winner's new tokens included, is revoked.
		if status, _ := e.refresh(t, bodies[winner]["refresh_token"].(string), nil); status == 200 {
			t.Fatal("the winner's new refresh token still works after the token was presented concurrently")
		}
	})
}

// TestPublicClientRefreshWithoutClientID: SMART lists no client_id for a
// refresh, and a public client has nothing to authenticate with, so the
// refresh token alone must do.
func TestPublicClientRefreshWithoutClientID(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		first := refreshTokens(t, e)
		refresh := func(form url.Values) (int, map[string]any) {
			resp, err := http.PostForm(e.iss+"/token", form)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&body)
			return resp.StatusCode, body
		}
		st, body := refresh(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first["refresh_token"].(string)}})
		if st != http.StatusOK || body["access_token"] == nil || body["patient"] != authzPatient {
			t.Fatalf("public refresh without client_id: %d %v", st, body)
		}
		// A made-up token is still refused, as before.
		if st, body := refresh(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"made-up.token"}}); st < 400 || st >= 500 {
			t.Errorf("made-up refresh token without client_id: %d %v", st, body)
		}

	})
}
