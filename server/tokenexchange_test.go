package server_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net/url"
	"strings"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/smartauth/smartauth/federation/oidctest"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeIDToken   = "urn:ietf:params:oauth:token-type:id_token"
	tokenTypeJWT       = "urn:ietf:params:oauth:token-type:jwt"
)

var (
	xPatient = oidctest.Person{ID: "sub-pat", Username: "pat@" + fedDomain, Password: "upstream-pw", Email: "pat@" + fedDomain, EmailVerified: true,
		Claims: map[string]any{"custom:tenant_id": authzTenant, "custom:patient_id": "777"}}
	xStranger = oidctest.Person{ID: "sub-other", Username: "other@" + fedDomain, Password: "upstream-pw", Email: "other@" + fedDomain, EmailVerified: true,
		Claims: map[string]any{"custom:tenant_id": "another-clinic", "custom:patient_id": "1"}}
)

// upstreamIDToken signs in at the provider as a person and redeems the code
// as a relying party would, returning the provider's own ID token.
func upstreamIDToken(t *testing.T, idp *oidctest.Provider, redirectURI string, who oidctest.Person) string {
	t.Helper()
	ctx := context.Background()
	p, err := gooidc.NewProvider(ctx, idp.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	conf := &oauth2.Config{ClientID: idp.ClientID, ClientSecret: idp.ClientSecret, Endpoint: p.Endpoint(), RedirectURL: redirectURI,
		Scopes: []string{gooidc.ScopeOpenID, "email", "profile"}}
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("st-"+rand.Text(), oauth2.S256ChallengeOption(verifier), gooidc.Nonce("n-"+rand.Text()))
	back := idp.Login(t, authzBrowser(t), authURL, who.Username, who.Password)
	tok, err := conf.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("the provider returned no ID token")
	}
	return raw
}

// signUpstream signs claims with key under the provider's key id, as the
// provider would (key nil means the provider's own key).
func signUpstream(t *testing.T, idp *oidctest.Provider, key *rsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	own, kid := idp.SigningKey(t)
	if key == nil {
		key = own
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func exchangeForm(subjectToken, tokenType string, extra ...string) url.Values {
	f := url.Values{"grant_type": {grantTokenExchange}, "subject_token": {subjectToken}, "subject_token_type": {tokenType}}
	for i := 0; i+1 < len(extra); i += 2 {
		f.Add(extra[i], extra[i+1])
	}
	return f
}

func TestTokenExchange(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		ctx := context.Background()
		e := fedSetup(t, srv, storage.TenantPolicy{}, xPatient, xStranger)
		idp := e.idp
		endpoint := e.iss + "/token"
		redirect := e.iss + "/federation/callback"

		exchanger, secret, err := srv.Manage.CreateClient(ctx, manage.ClientInput{TenantID: authzTenant, ID: "exchanger", Name: "Portal backend",
			Type: storage.ClientConfidentialSymmetric, Scopes: []string{"openid fhirUser launch/patient patient/*.rs user/*.rs"},
			GrantTypes: []string{manage.GrantTokenExchange}}, authzActor)
		if err != nil {
			t.Fatal(err)
		}
		backend, backendSecret := backendClient(t, srv, authzTenant, storage.ClientConfidentialSymmetric, nil)
		// The patient is a known user, linked to the provider's subject.
		u, err := srv.Manage.CreateUser(ctx, manage.UserInput{TenantID: authzTenant, Email: xPatient.Email,
			Profiles: []storage.Profile{{FHIRUser: "Patient/777", Label: "Self"}}}, authzActor)
		if err != nil {
			t.Fatal(err)
		}
		for _, sub := range []string{xPatient.ID, xStranger.ID} {
			if err := srv.Store.CreateIdentityLink(ctx, storage.IdentityLink{TenantID: authzTenant, Issuer: idp.Issuer(), Subject: sub,
				UserID: u.ID, CreatedAt: time.Now().UTC()}); err != nil {
				t.Fatal(err)
			}
		}

		// A real ID token from the provider becomes a token for the linked
		// user, who acts as a patient and so gets no user/ scope.
		idToken := upstreamIDToken(t, idp, redirect, xPatient)
		status, body := postForm(t, endpoint, exchangeForm(idToken, tokenTypeIDToken, "scope", "patient/*.rs fhirUser offline_access system/*.rs user/*.rs",
			"resource", e.fhirBase), exchanger.ID, secret)
		if status != 200 {
			t.Fatalf("exchange: %d %v", status, body)
		}
		if body["issued_token_type"] != "urn:ietf:params:oauth:token-type:access_token" || !strings.EqualFold(body["token_type"].(string), "Bearer") ||
			body["patient"] != "777" || body["scope"] != "patient/*.rs fhirUser" || body["refresh_token"] != nil || body["expires_in"] == nil {
			t.Fatalf("exchange response %v", body)
		}
		access := body["access_token"].(string)
		claims := verifyAccessToken(t, srv, authzTenant, access)
		if claims["sub"] != u.ID || claims["patient"] != "777" || claims["client_id"] != exchanger.ID || claims["iss"] != e.iss ||
			claims["fhirUser"] != e.fhirBase+"/Patient/777" || claims["tenant"] != authzTenant {
			t.Errorf("access token claims %v", claims)
		}
		if aud, _ := claims["aud"].([]any); len(aud) != 1 || aud[0] != e.fhirBase {
			t.Errorf("access token aud %v, want [%s]", claims["aud"], e.fhirBase)
		}
		status, intro := postForm(t, e.iss+"/introspect", url.Values{"token": {access}}, backend, backendSecret)
		if status != 200 || intro["active"] != true || intro["patient"] != "777" || intro["sub"] != u.ID || intro["scope"] != "patient/*.rs fhirUser" {
			t.Errorf("introspection: %d %v", status, intro)
		}

		// A JWT access token of the provider for our client is accepted too.
		now := time.Now()
		base := func(change func(map[string]any)) map[string]any {
			c := map[string]any{"iss": idp.Issuer(), "sub": xPatient.ID, "aud": idp.ClientID, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
				"custom:tenant_id": authzTenant, "custom:patient_id": "777"}
			if change != nil {
				change(c)
			}
			return c
		}
		status, body = postForm(t, endpoint, exchangeForm(signUpstream(t, idp, nil, base(nil)), tokenTypeJWT), exchanger.ID, secret)
		if status != 200 || body["patient"] != "777" {
			t.Fatalf("exchange of a JWT access token: %d %v", status, body)
		}
		// It lives five minutes: the exchanged token must not outlive it.
		subjectExp := now.Add(5 * time.Minute).Unix()
		if exp, _ := verifyAccessToken(t, srv, authzTenant, body["access_token"].(string))["exp"].(float64); int64(exp) > subjectExp {
			t.Errorf("exchanged token expires at %d, after its subject token (%d)", int64(exp), subjectExp)
		}
		if in, _ := body["expires_in"].(float64); in > 5*60 {
			t.Errorf("exchanged token expires_in %v, longer than its subject token's five minutes", in)
		}

		other := oidctest.Start(t, oidctest.Options{Shape: oidctest.ShapeOkta})
		otherKey, _ := other.SigningKey(t)
		foreign, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		pub := url.Values{"client_id": {authzClientID}}
		tests := []struct {
			name         string
			form         url.Values
			user, secret string
			status       int
			code, reason string
		}{
			{"public client", mergeForm(exchangeForm(idToken, tokenTypeIDToken), pub), "", "", 401, "invalid_client", "invalid_client"},
			{"client not registered for the grant", exchangeForm(idToken, tokenTypeIDToken), backend, backendSecret, 400, "unauthorized_client", "unauthorized_client"},
			{"wrong secret", exchangeForm(idToken, tokenTypeIDToken), exchanger.ID, "nope", 401, "invalid_client", "invalid_client"},
			{"missing subject token", exchangeForm("", tokenTypeIDToken), exchanger.ID, secret, 400, "invalid_request", "missing_parameter"},
			{"unsupported token type", exchangeForm(idToken, "urn:ietf:params:oauth:token-type:saml2"), exchanger.ID, secret, 400, "invalid_request", "unsupported_token_type"},
			{"token of another issuer", exchangeForm(signUpstream(t, other, otherKey, base(func(c map[string]any) { c["iss"] = other.Issuer() })), tokenTypeIDToken),
				exchanger.ID, secret, 400, "invalid_grant", "unknown_issuer"},
			{"expired", exchangeForm(signUpstream(t, idp, nil, base(func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() })), tokenTypeIDToken),
				exchanger.ID, secret, 400, "invalid_grant", "token_expired"},
			{"altered", exchangeForm(alterPayload(t, idToken), tokenTypeIDToken), exchanger.ID, secret, 400, "invalid_grant", "bad_signature"},
			{"signed by another key", exchangeForm(signUpstream(t, idp, foreign, base(nil)), tokenTypeIDToken), exchanger.ID, secret, 400, "invalid_grant", "bad_signature"},
			{"ID token for another client", exchangeForm(signUpstream(t, idp, nil, base(func(c map[string]any) { c["aud"] = "someone-else" })), tokenTypeIDToken),
				exchanger.ID, secret, 400, "invalid_grant", "wrong_audience"},
			{"not a JWT", exchangeForm("opaque-token", tokenTypeJWT), exchanger.ID, secret, 400, "invalid_grant", "malformed_id_token"},
			{"tenant claim of another clinic", exchangeForm(upstreamIDToken(t, idp, redirect, xStranger), tokenTypeIDToken), exchanger.ID, secret, 400, "invalid_grant", "tenant_mismatch"},
			{"unknown user", exchangeForm(signUpstream(t, idp, nil, base(func(c map[string]any) { c["sub"] = "sub-unlinked" })), tokenTypeIDToken),
				exchanger.ID, secret, 400, "invalid_grant", "no_account"},
			{"patient claim the user does not hold", exchangeForm(signUpstream(t, idp, nil, base(func(c map[string]any) { c["custom:patient_id"] = "888" })), tokenTypeIDToken),
				exchanger.ID, secret, 400, "invalid_grant", "profile_mismatch"},
			{"no grantable scope", exchangeForm(idToken, tokenTypeIDToken, "scope", "system/*.rs"), exchanger.ID, secret, 400, "invalid_scope", "invalid_scope"},
			{"FHIR server of no tenant", exchangeForm(idToken, tokenTypeIDToken, "resource", "https://elsewhere.example/fhir"), exchanger.ID, secret, 400, "invalid_target", "invalid_target"},
		}
		for _, tc := range tests {
			status, body := postForm(t, endpoint, tc.form, tc.user, tc.secret)
			if status != tc.status || body["error"] != tc.code || body["access_token"] != nil {
				t.Errorf("%s: %d %v, want %d %s", tc.name, status, body, tc.status, tc.code)
			}
		}

		events, err := srv.Store.ListAudit(ctx, authzTenant, storage.AuditFilter{Type: "token.exchange"})
		if err != nil {
			t.Fatal(err)
		}
		var successes int
		reasons := map[string]bool{}
		for _, ev := range events {
			for _, v := range ev.Details {
				if strings.Contains(v, idToken[:40]) {
					t.Errorf("audit event %s holds the subject token", ev.Type)
				}
			}
			if ev.Outcome == "success" {
				successes++
				if ev.ClientID != exchanger.ID || ev.Subject != u.ID || ev.Details["provider"] != "pool" {
					t.Errorf("success event %+v", ev)
				}
				continue
			}
			reasons[ev.Details["reason"]] = true
		}
		if successes != 2 {
			t.Errorf("%d successful exchanges recorded, want 2", successes)
		}
		for _, tc := range tests {
			if !reasons[tc.reason] {
				t.Errorf("no token.exchange failure recorded with reason %q (%s)", tc.reason, tc.name)
			}
		}
	})
}

func mergeForm(a, b url.Values) url.Values {
	out := url.Values{}
	for _, v := range []url.Values{a, b} {
		for k, vs := range v {
			out[k] = append(out[k], vs...)
		}
	}
	return out
}
