package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/smartauth/smartauth/server/clientsecret"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

var testActor = manage.Actor{ID: "test"}

// backendClient registers a confidential client for client_credentials and
// returns its id and secret (empty for asymmetric clients).
func backendClient(t testing.TB, srv *servertest.Server, tenant string, typ storage.ClientType, jwks []byte) (string, string) {
	t.Helper()
	c, secret, err := srv.Manage.CreateClient(context.Background(), manage.ClientInput{
		TenantID: tenant, Name: "backend", Type: typ, JWKS: jwks,
		Scopes: []string{"system/*.rs", "system/Patient.rs"}, GrantTypes: []string{"client_credentials"},
	}, testActor)
	if err != nil {
		t.Fatal(err)
	}
	return c.ID, secret
}

// tokenEndpoint is the tenant's token endpoint URL.
func tokenEndpoint(srv *servertest.Server, tenant string) string {
	return srv.Issuer(tenant) + "/token"
}

// postForm posts a form with optional Basic credentials and decodes the JSON answer.
func postForm(t testing.TB, endpoint string, form url.Values, basicUser, basicPass string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicUser != "" {
		req.SetBasicAuth(url.QueryEscape(basicUser), url.QueryEscape(basicPass))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(body) > 0 {
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("POST %s: %d, not JSON: %s", endpoint, resp.StatusCode, body)
		}
	}
	return resp.StatusCode, out
}

// assertion signs a private_key_jwt client assertion.
func assertion(t *testing.T, key any, alg jose.SignatureAlgorithm, kid, clientID, aud string, exp time.Duration) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	raw, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: clientID, Subject: clientID, Audience: jwt.Audience{aud},
		ID: rand.Text(), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(exp)),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// verifyAccessToken checks an access token against the tenant's published
// JWKS, as a FHIR server would, and returns its claims.
func verifyAccessToken(t *testing.T, srv *servertest.Server, tenant, token string) map[string]any {
	t.Helper()
	var set jose.JSONWebKeySet
	getJSON(t, srv.Issuer(tenant)+"/.well-known/jwks.json", &set)
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		t.Fatalf("access token is not a JWS: %v", err)
	}
	if typ, _ := tok.Headers[0].ExtraHeaders["typ"].(string); typ != "at+jwt" {
		t.Fatalf("access token typ %q, want at+jwt (RFC 9068)", typ)
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("access token kid %q is not in the tenant's JWKS", tok.Headers[0].KeyID)
	}
	var claims map[string]any
	if err := tok.Claims(keys[0].Key, &claims); err != nil {
		t.Fatalf("access token does not verify: %v", err)
	}
	return claims
}

func TestClientCredentialsEveryAuthMethod(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		srv.Tenant(t, "clinic")
		endpoint := tokenEndpoint(srv, "clinic")
		symID, secret := backendClient(t, srv, "clinic", storage.ClientConfidentialSymmetric, nil)

		ecKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
		jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &ecKey.PublicKey, KeyID: "ec", Algorithm: "ES384", Use: "sig"},
			{Key: &rsaKey.PublicKey, KeyID: "rsa"},
		}})
		asymID, _ := backendClient(t, srv, "clinic", storage.ClientConfidentialAsymmetric, jwks)

		type attempt struct {
			name  string
			form  url.Values
			user  string
			pass  string
			owner string
		}
		base := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}
		with := func(extra url.Values) url.Values {
			f := url.Values{}
			for k, v := range base {
				f[k] = v
			}
			for k, v := range extra {
				f[k] = v
			}
			return f
		}
		jwtBearer := "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
		for _, a := range []attempt{
			{name: "client_secret_basic", form: base, user: symID, pass: secret, owner: symID},
			{name: "client_secret_post", form: with(url.Values{"client_id": {symID}, "client_secret": {secret}}), owner: symID},
			{name: "private_key_jwt ES384", form: with(url.Values{"client_assertion_type": {jwtBearer},
				"client_assertion": {assertion(t, ecKey, jose.ES384, "ec", asymID, endpoint, 4*time.Minute)}}), owner: asymID},
			{name: "private_key_jwt RS384", form: with(url.Values{"client_assertion_type": {jwtBearer},
				"client_assertion": {assertion(t, rsaKey, jose.RS384, "rsa", asymID, endpoint, 4*time.Minute)}}), owner: asymID},
		} {
			t.Run(a.name, func(t *testing.T) {
				status, body := postForm(t, endpoint, a.form, a.user, a.pass)
				if status != 200 {
					t.Fatalf("status %d: %v", status, body)
				}
				if body["token_type"] != "bearer" && body["token_type"] != "Bearer" || body["scope"] != "system/*.rs" || body["refresh_token"] != nil {
					t.Fatalf("token response: %v", body)
				}
				claims := verifyAccessToken(t, srv, "clinic", body["access_token"].(string))
				if claims["iss"] != srv.Issuer("clinic") || claims["sub"] != a.owner || claims["client_id"] != a.owner ||
					claims["scope"] != "system/*.rs" || claims["tenant"] != "clinic" || claims["jti"] == "" {
					t.Fatalf("claims: %v", claims)
				}
				if aud, _ := claims["aud"].([]any); len(aud) != 1 || aud[0] != "https://fhir.example.org/clinic" {
					t.Fatalf("aud %v, want the tenant's FHIR base URL", claims["aud"])
				}
				exp, _ := claims["exp"].(float64)
				iat, _ := claims["iat"].(float64)
				if exp-iat < 60 || exp-iat > 3600 {
					t.Fatalf("lifetime %v s", exp-iat)
				}
			})
		}

		// golang.org/x/oauth2 as a real backend service would use it.
		cc := clientcredentials.Config{ClientID: symID, ClientSecret: secret, TokenURL: endpoint, Scopes: []string{"system/Patient.rs"},
			AuthStyle: oauth2.AuthStyleInHeader}
		tok, err := cc.Token(context.Background())
		if err != nil {
			t.Fatalf("x/oauth2 client credentials: %v", err)
		}
		if tok.Extra("scope") != "system/Patient.rs" {
			t.Fatalf("x/oauth2 token scope %v", tok.Extra("scope"))
		}
	})
}

func TestTokenEndpointRefusals(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		srv.Tenant(t, "clinic")
		srv.Tenant(t, "other")
		endpoint := tokenEndpoint(srv, "clinic")
		symID, secret := backendClient(t, srv, "clinic", storage.ClientConfidentialSymmetric, nil)
		pub, _, err := srv.Manage.CreateClient(context.Background(), manage.ClientInput{TenantID: "clinic", Name: "app", Type: storage.ClientPublic,
			RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid"}}, testActor)
		if err != nil {
			t.Fatal(err)
		}
		cc := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}
		for _, tc := range []struct {
			name     string
			endpoint string
			form     url.Values
			user     string
			pass     string
			status   int
			code     string
		}{
			{"wrong secret", endpoint, cc, symID, secret + "x", 401, "invalid_client"},
			{"unknown client", endpoint, cc, "nobody", secret, 401, "invalid_client"},
			{"client of another tenant", tokenEndpoint(srv, "other"), cc, symID, secret, 401, "invalid_client"},
			{"no client authentication", endpoint, cc, "", "", 401, "invalid_client"},
			{"scope outside the registration", endpoint, url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.cruds"}}, symID, secret, 400, "invalid_scope"},
			{"unknown grant type", endpoint, url.Values{"grant_type": {"password"}, "username": {"u"}, "password": {"p"}}, symID, secret, 400, "unsupported_grant_type"},
			{"missing grant type", endpoint, url.Values{"scope": {"x"}}, symID, secret, 400, "invalid_request"},
			{"public client cannot use client_credentials", endpoint, url.Values{"grant_type": {"client_credentials"}, "client_id": {pub.ID}}, "", "", 400, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				status, body := postForm(t, tc.endpoint, tc.form, tc.user, tc.pass)
				if status != tc.status || (tc.code != "" && body["error"] != tc.code) || body["access_token"] != nil {
					t.Fatalf("got %d %v, want %d %s", status, body, tc.status, tc.code)
				}
				if strings.Contains(srv.Logs(), secret) {
					t.Fatal("a client secret reached the log")
				}
			})
		}
		failed, err := srv.Store.ListAudit(context.Background(), "clinic", storage.AuditFilter{Type: "client.authenticate"})
		if err != nil || len(failed) < 3 {
			t.Fatalf("failed client authentication audit events: %d %v", len(failed), err)
		}
		if failed[0].ClientID != symID || failed[0].Outcome != "failure" || failed[0].SourceIP == "" || failed[0].Details["method"] != "client_secret_basic" {
			t.Fatalf("first failure event: %+v", failed[0])
		}
	})
}

// TestClientCredentialsGrantsNoPersonScopes: client_credentials never grants
// a scope that needs a person or a patient, neither to a client that people
// also sign in to (which may register such scopes for those flows) nor to a
// backend-only client registered before registration refused them.
func TestClientCredentialsGrantsNoPersonScopes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		ctx := context.Background()
		srv.Tenant(t, "clinic")
		endpoint := tokenEndpoint(srv, "clinic")
		mixed, mixedSecret, err := srv.Manage.CreateClient(ctx, manage.ClientInput{TenantID: "clinic", Name: "Portal", Type: storage.ClientConfidentialSymmetric,
			RedirectURIs: []string{"https://portal.example/cb"}, GrantTypes: []string{manage.GrantAuthorizationCode, manage.GrantClientCredentials},
			Scopes: []string{"openid fhirUser launch launch/patient patient/*.rs user/*.rs offline_access system/*.rs"}}, testActor)
		if err != nil {
			t.Fatal(err)
		}
		legacySecret, digest, err := clientsecret.Generate()
		if err != nil {
			t.Fatal(err)
		}
		now := srv.Clock.Now()
		legacy := storage.Client{TenantID: "clinic", ID: "legacy-export", Name: "Export", Type: storage.ClientConfidentialSymmetric, SecretHash: digest,
			GrantTypes: []string{"client_credentials"}, Scopes: []string{"patient/*.read", "launch/patient", "system/*.rs"}, CreatedAt: now, UpdatedAt: now}
		if err := srv.Store.CreateClient(ctx, legacy); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ id, secret string }{{mixed.ID, mixedSecret}, {legacy.ID, legacySecret}} {
			for _, scope := range []string{"patient/*.read", "patient/*.rs", "launch/patient", "system/*.rs patient/*.read",
				"user/*.rs", "launch", "openid", "fhirUser", "offline_access"} {
				status, body := postForm(t, endpoint, url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}, c.id, c.secret)
				if status != http.StatusBadRequest || body["error"] != "invalid_scope" || body["access_token"] != nil {
					t.Errorf("%s asking for %q: %d %v, want invalid_scope", c.id, scope, status, body)
				}
			}
			status, body := postForm(t, endpoint, url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}, c.id, c.secret)
			if status != http.StatusOK || body["scope"] != "system/*.rs" || body["patient"] != nil {
				t.Fatalf("%s asking for system/*.rs: %d %v", c.id, status, body)
			}
			if claims := verifyAccessToken(t, srv, "clinic", body["access_token"].(string)); claims["scope"] != "system/*.rs" || claims["patient"] != nil {
				t.Errorf("%s: access token claims %v", c.id, claims)
			}
		}
	})
}

func TestIntrospectionAndRevocation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		srv.Tenant(t, "clinic")
		srv.Tenant(t, "other")
		id, secret := backendClient(t, srv, "clinic", storage.ClientConfidentialSymmetric, nil)
		otherID, otherSecret := backendClient(t, srv, "other", storage.ClientConfidentialSymmetric, nil)
		_, tok := postForm(t, tokenEndpoint(srv, "clinic"), url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}, id, secret)
		access, _ := tok["access_token"].(string)
		if access == "" {
			t.Fatalf("no token: %v", tok)
		}
		introspect := srv.Issuer("clinic") + "/introspect"

		status, body := postForm(t, introspect, url.Values{"token": {access}}, id, secret)
		if status != 200 || body["active"] != true || body["client_id"] != id || body["scope"] != "system/*.rs" ||
			body["sub"] != id || body["tenant"] != "clinic" || body["iss"] != srv.Issuer("clinic") {
			t.Fatalf("introspection of a live token: %d %v", status, body)
		}
		if status, body := postForm(t, introspect, url.Values{"token": {access}}, "", ""); status != 401 || body["error"] != "invalid_client" {
			t.Fatalf("introspection without client authentication: %d %v", status, body)
		}
		pub, _, err := srv.Manage.CreateClient(context.Background(), manage.ClientInput{TenantID: "clinic", Name: "browser app", Type: storage.ClientPublic,
			RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid"}}, testActor)
		if err != nil {
			t.Fatal(err)
		}
		if status, body := postForm(t, introspect, url.Values{"token": {access}, "client_id": {pub.ID}}, "", ""); status != 401 || body["active"] != nil {
			t.Fatalf("introspection by a public client naming itself: %d %v", status, body)
		}
		req, _ := http.NewRequest("POST", introspect, strings.NewReader(url.Values{"token": {access}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+access)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
			t.Fatalf("introspection authenticated with a bearer token: %v %v", resp.StatusCode, err)
		}
		for name, tc := range map[string]struct {
			endpoint, user, pass, token string
		}{
			"unknown token":                   {introspect, id, secret, "not-a-token"},
			"forged token":                    {introspect, id, secret, access[:len(access)-4] + "AAAA"},
			"foreign tenant":                  {srv.Issuer("other") + "/introspect", otherID, otherSecret, access},
			"empty but well-formed":           {introspect, id, secret, "a.b.c"},
			"payload altered, signature kept": {introspect, id, secret, alterPayload(t, access)},
		} {
			if status, body := postForm(t, tc.endpoint, url.Values{"token": {tc.token}}, tc.user, tc.pass); status != 200 || body["active"] != false {
				t.Errorf("%s: %d %v, want active false", name, status, body)
			}
		}

		// Revocation makes the token inactive at once.
		status, _ = postForm(t, srv.Issuer("clinic")+"/revoke", url.Values{"token": {access}}, id, secret)
		if status != 200 {
			t.Fatalf("revoke: %d", status)
		}
		if _, body := postForm(t, introspect, url.Values{"token": {access}}, id, secret); body["active"] != false {
			t.Fatalf("revoked token introspects %v", body)
		}

		// Expiry: a token past its lifetime is inactive.
		_, tok = postForm(t, tokenEndpoint(srv, "clinic"), url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}, id, secret)
		srv.Clock.Advance(2 * time.Hour)
		if _, body := postForm(t, introspect, url.Values{"token": {tok["access_token"].(string)}}, id, secret); body["active"] != false {
			t.Fatalf("expired token introspects %v", body)
		}

		events, err := srv.Store.ListAudit(context.Background(), "clinic", storage.AuditFilter{Type: "token.issue"})
		if err != nil || len(events) < 2 || events[0].ClientID != id || events[0].SourceIP == "" {
			t.Fatalf("token issue audit events: %+v %v", events, err)
		}
		if revs, _ := srv.Store.ListAudit(context.Background(), "clinic", storage.AuditFilter{Type: "token.revoke"}); len(revs) != 1 {
			t.Fatalf("revocation audit events: %d", len(revs))
		}
	})
}

func TestTokenLifetimes(t *testing.T) {
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	if _, err := srv.Manage.CreateTenant(context.Background(), manage.TenantInput{ID: "short", FHIRBaseURLs: []string{"https://fhir.example.org/short"},
		Policy: storage.TenantPolicy{AccessTokenTTL: storage.Duration(10 * time.Minute)}}, testActor); err != nil {
		t.Fatal(err)
	}
	tenantWide, secret := backendClient(t, srv, "short", storage.ClientConfidentialSymmetric, nil)
	own, ownSecret, err := srv.Manage.CreateClient(context.Background(), manage.ClientInput{TenantID: "short", Name: "own ttl",
		Type: storage.ClientConfidentialSymmetric, Scopes: []string{"system/*.rs"}, GrantTypes: []string{"client_credentials"},
		AccessTokenTTL: 2 * time.Minute}, testActor)
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}
	for _, tc := range []struct {
		id, secret string
		want       float64
	}{{tenantWide, secret, 600}, {own.ID, ownSecret, 120}} {
		_, body := postForm(t, tokenEndpoint(srv, "short"), form, tc.id, tc.secret)
		claims := verifyAccessToken(t, srv, "short", body["access_token"].(string))
		if got := body["expires_in"].(float64); got < tc.want-2 || got > tc.want {
			t.Errorf("client %s: expires_in %v, want %v", tc.id, got, tc.want)
		}
		if life := claims["exp"].(float64) - claims["iat"].(float64); life < tc.want-2 || life > tc.want+1 {
			t.Errorf("client %s: token lives %v s, want %v", tc.id, life, tc.want)
		}
	}
}

// alterPayload rewrites a JWT's claims (a wider scope) but keeps its header
// and signature segment, which is what the grant record is found by.
func alterPayload(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	claims["scope"] = "system/*.cruds"
	forged, _ := json.Marshal(claims)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2]
}

// TestScopeGrammarAtTokenEndpoint: a registration for a wildcard covers a
// narrower or granular request, and never a wider one.
func TestScopeGrammarAtTokenEndpoint(t *testing.T) {
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	srv.Tenant(t, "clinic")
	id, secret := backendClient(t, srv, "clinic", storage.ClientConfidentialSymmetric, nil)
	for scope, ok := range map[string]bool{
		"system/Observation.rs": true,
		"system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory": true,
		"system/Observation.read": true,
		"system/Observation.rw":   false,
		"system/*.cruds":          false,
		"patient/Observation.rs":  false,
	} {
		status, body := postForm(t, tokenEndpoint(srv, "clinic"), url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}, id, secret)
		if (status == 200) != ok {
			t.Errorf("scope %q: %d %v, want granted=%v", scope, status, body["error"], ok)
		}
		if ok && body["scope"] != scope {
			t.Errorf("scope %q granted as %v", scope, body["scope"])
		}
	}
}

// TestAssertionWithNULInJTI: a client assertion whose jti holds a NUL, which
// PostgreSQL cannot store, is the client's mistake: 400, never 500.
func TestAssertionWithNULInJTI(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		srv.Tenant(t, "clinic")
		key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "ec", Algorithm: "ES384", Use: "sig"}}})
		id, _ := backendClient(t, srv, "clinic", storage.ClientConfidentialAsymmetric, jwks)
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: jose.JSONWebKey{Key: key, KeyID: "ec"}}, (&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			t.Fatal(err)
		}
		endpoint := tokenEndpoint(srv, "clinic")
		now := time.Now()
		raw, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: id, Subject: id, Audience: jwt.Audience{endpoint},
			ID: "jti\x00" + rand.Text(), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute))}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		status, body := postForm(t, endpoint, url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {raw}}, "", "")
		if status != http.StatusUnauthorized || body["error"] != "invalid_client" {
			t.Errorf("assertion with a NUL in its jti: %d %v, want 401 invalid_client on every store", status, body)
		}
	})
}
