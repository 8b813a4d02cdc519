package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/smartauth/smartauth/server"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// apiEnv is a server with two tenants, acme and other, an operator's API
// client and an API client of acme, each with a fresh access token.
type apiEnv struct {
	srv *servertest.Server
	// v1 is the API's base URL.
	v1                   string
	opID, opToken        string
	acmeID, acmeToken    string
	acmeSecret, opSecret string
}

// apiClient registers an admin API client in realm, as the CLI does, and
// returns its id and secret.
func apiClient(t *testing.T, srv *servertest.Server, realm string) (string, string) {
	t.Helper()
	c, secret, err := srv.Manage.CreateClient(context.Background(), manage.ClientInput{
		TenantID: realm, Name: "automation", Type: storage.ClientConfidentialSymmetric,
		Scopes: []string{server.AdminScope}, GrantTypes: []string{manage.GrantClientCredentials},
	}, testActor)
	if err != nil {
		t.Fatal(err)
	}
	return c.ID, secret
}

// apiToken gets an access token with client_credentials at endpoint.
func apiToken(t *testing.T, endpoint, id, secret, scope string) string {
	t.Helper()
	status, body := postForm(t, endpoint, url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}, id, secret)
	token, _ := body["access_token"].(string)
	if status != http.StatusOK || token == "" {
		t.Fatalf("client_credentials at %s: %d %v", endpoint, status, body)
	}
	return token
}

func apiSetup(t *testing.T, srv *servertest.Server) *apiEnv {
	t.Helper()
	srv.Tenant(t, "acme")
	srv.Tenant(t, "other")
	if err := srv.Manage.EnsureOperatorRealm(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := &apiEnv{srv: srv, v1: srv.URL + "/admin/api/v1"}
	e.opID, e.opSecret = apiClient(t, srv, storage.OperatorRealm)
	e.opToken = apiToken(t, srv.URL+"/admin/token", e.opID, e.opSecret, server.AdminScope)
	e.acmeID, e.acmeSecret = apiClient(t, srv, "acme")
	e.acmeToken = apiToken(t, tokenEndpoint(srv, "acme"), e.acmeID, e.acmeSecret, server.AdminScope)
	return e
}

// apiResponse is one answer of the admin API.
type apiResponse struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into v, failing the test if it is not JSON.
func (r apiResponse) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer %d is not JSON: %v\n%s", r.status, err, r.body)
	}
}

// object decodes the body as one JSON object.
func (r apiResponse) object(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	r.json(t, &m)
	return m
}

// apiCall sends a request to the API; a body without a content type is JSON.
func apiCall(t *testing.T, method, u, token, contentType, body string) apiResponse {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
		if contentType == "" {
			contentType = "application/json"
		}
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return apiSend(t, req)
}

// apiSend sends a request and reads the whole answer.
func apiSend(t *testing.T, req *http.Request) apiResponse {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return apiResponse{status: resp.StatusCode, header: resp.Header, body: b}
}

// apiWant checks an answer's status, and for an error its code.
func apiWant(t *testing.T, what string, r apiResponse, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: %d, want %d\n%s", what, r.status, status, r.body)
	}
	if code == "" {
		return
	}
	var e struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error != code || e.ErrorDescription == "" {
		t.Fatalf("%s: error body %s, want error %q with a description", what, r.body, code)
	}
}

// apiLastEvent returns the newest audit event of a type in a tenant's trail.
func apiLastEvent(t *testing.T, srv *servertest.Server, tenant, typ string) storage.AuditEvent {
	t.Helper()
	es, err := srv.Store.ListAudit(context.Background(), tenant, storage.AuditFilter{Type: typ, Descending: true, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) == 0 {
		t.Fatalf("no %s event in the audit trail of %s", typ, tenant)
	}
	return es[0]
}

// apiClaims reads a JWT's payload.
func apiClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token is not a JWT: %q", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func TestAdminAPIOperatorClient(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := apiSetup(t, srv)

		// The operator realm issues its own tokens, under its own issuer.
		claims := apiClaims(t, e.opToken)
		if claims["iss"] != srv.URL+"/admin" || claims["client_id"] != e.opID || claims["tenant"] != storage.OperatorRealm {
			t.Errorf("operator token claims %v", claims)
		}
		// Its token endpoint serves client_credentials only, to its own clients.
		status, body := postForm(t, srv.URL+"/admin/token", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, e.opID, e.opSecret)
		if status != http.StatusBadRequest || body["error"] != "unsupported_grant_type" {
			t.Errorf("authorization_code at /admin/token: %d %v", status, body)
		}
		status, body = postForm(t, srv.URL+"/admin/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}, e.acmeID, e.acmeSecret)
		if status != http.StatusUnauthorized || body["error"] != "invalid_client" {
			t.Errorf("a tenant's client at /admin/token: %d %v", status, body)
		}

		var tenants []map[string]any
		r := apiCall(t, "GET", e.v1+"/tenants", e.opToken, "", "")
		apiWant(t, "list tenants", r, http.StatusOK, "")
		r.json(t, &tenants)
		if len(tenants) != 2 || tenants[0]["id"] != "acme" || tenants[1]["id"] != "other" || tenants[0]["issuer"] != srv.Issuer("acme") {
			t.Fatalf("tenants %s, want acme and other and not the operator realm", r.body)
		}

		r = apiCall(t, "POST", e.v1+"/tenants", e.opToken, "", `{"id": "beta", "name": "Beta clinic", "fhir_base_urls": ["https://fhir.beta.example/r4/"], "mfa_required": true, "access_token_ttl": "15m"}`)
		apiWant(t, "create tenant", r, http.StatusCreated, "")
		created := r.object(t)
		if created["id"] != "beta" || created["mfa_required"] != true || created["access_token_ttl"] != "15m0s" ||
			!slices.Equal(apiStrings(created["fhir_base_urls"]), []string{"https://fhir.beta.example/r4"}) {
			t.Errorf("created tenant %s", r.body)
		}
		if ev := apiLastEvent(t, srv, "beta", "admin.tenant.create"); ev.ActorID != "operator-client:"+e.opID {
			t.Errorf("tenant creation audited as %q, want the operator's API client", ev.ActorID)
		}
		apiWant(t, "create it again", apiCall(t, "POST", e.v1+"/tenants", e.opToken, "", `{"id": "beta", "fhir_base_urls": ["https://fhir.beta.example/r4"]}`),
			http.StatusConflict, "already_exists")
		r = apiCall(t, "POST", e.v1+"/tenants", e.opToken, "", `{"id": "Bad_Id", "fhir_base_urls": ["https://fhir.example/r4"]}`)
		apiWant(t, "create with a bad id", r, http.StatusBadRequest, "invalid_request")
		if d := r.object(t)["error_description"]; d != `tenant id "Bad_Id" must be 1-63 lowercase letters, digits or inner hyphens` {
			t.Errorf("bad id described as %q, want manage's message", d)
		}
		apiWant(t, "unknown field", apiCall(t, "POST", e.v1+"/tenants", e.opToken, "", `{"id": "gamma", "fhir_base_url": "https://x.example"}`),
			http.StatusBadRequest, "invalid_request")
		apiWant(t, "form body", apiCall(t, "POST", e.v1+"/tenants", e.opToken, "application/x-www-form-urlencoded", "id=gamma"),
			http.StatusBadRequest, "invalid_request")

		// Operators manage every tenant's clients.
		r = apiCall(t, "POST", e.v1+"/tenants/beta/clients", e.opToken, "", `{"client_id": "nightly", "name": "Nightly export", "type": "confidential-symmetric",
			"scope": "system/*.rs", "grant_types": ["client_credentials"]}`)
		apiWant(t, "create client", r, http.StatusCreated, "")
		secret, _ := r.object(t)["client_secret"].(string)
		if len(secret) < 43 {
			t.Fatalf("new client's secret %q", secret)
		}
		if ev := apiLastEvent(t, srv, "beta", "admin.client.create"); ev.ActorID != "operator-client:"+e.opID || ev.Details["client_id"] != "nightly" {
			t.Errorf("client creation audited as %+v", ev)
		}
		// The secret works, and is not shown again.
		apiToken(t, tokenEndpoint(srv, "beta"), "nightly", secret, "system/*.rs")
		for _, u := range []string{e.v1 + "/tenants/beta/clients", e.v1 + "/tenants/beta/clients/nightly"} {
			r = apiCall(t, "GET", u, e.opToken, "", "")
			apiWant(t, "GET "+u, r, http.StatusOK, "")
			if bytes.Contains(r.body, []byte(secret)) || bytes.Contains(r.body, []byte("secret")) {
				t.Errorf("GET %s shows a secret: %s", u, r.body)
			}
		}
		apiWant(t, "operator realm as a tenant", apiCall(t, "GET", e.v1+"/tenants/"+storage.OperatorRealm+"/clients", e.opToken, "", ""),
			http.StatusNotFound, "not_found")
		apiWant(t, "unknown tenant", apiCall(t, "GET", e.v1+"/tenants/nowhere", e.opToken, "", ""), http.StatusNotFound, "not_found")
	})
}

// apiStrings reads a JSON array of strings.
func apiStrings(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func TestAdminAPITenantClientStaysInItsTenant(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := apiSetup(t, srv)

		r := apiCall(t, "POST", e.v1+"/tenants/acme/clients", e.acmeToken, "", `{"client_id": "chart", "name": "Chart", "type": "public",
			"redirect_uris": ["https://app.example/cb"], "scope": "launch patient/*.rs", "launch_uri": "https://app.example/launch"}`)
		apiWant(t, "create acme client", r, http.StatusCreated, "")
		if ev := apiLastEvent(t, srv, "acme", "admin.client.create"); ev.ActorID != "client:"+e.acmeID {
			t.Errorf("audited as %q, want client:%s", ev.ActorID, e.acmeID)
		}
		var clients []map[string]any
		r = apiCall(t, "GET", e.v1+"/tenants/acme/clients", e.acmeToken, "", "")
		apiWant(t, "list acme clients", r, http.StatusOK, "")
		r.json(t, &clients)
		if len(clients) != 2 {
			t.Errorf("acme has %d clients, want its API client and chart: %s", len(clients), r.body)
		}

		refused := []struct {
			method, path, body string
			status             int
			code               string
		}{
			{"GET", "/tenants/other/clients", "", http.StatusForbidden, "forbidden"},
			{"POST", "/tenants/other/clients", `{"name": "x", "type": "public", "scope": "openid"}`, http.StatusForbidden, "forbidden"},
			{"GET", "/tenants/other", "", http.StatusForbidden, "forbidden"},
			{"GET", "/tenants/nowhere/users", "", http.StatusForbidden, "forbidden"},
			{"GET", "/tenants/" + storage.OperatorRealm + "/clients", "", http.StatusForbidden, "forbidden"},
			{"GET", "/tenants", "", http.StatusForbidden, "forbidden"},
			{"POST", "/tenants", `{"id": "mine", "fhir_base_urls": ["https://fhir.example/r4"]}`, http.StatusForbidden, "forbidden"},
		}
		for _, c := range refused {
			apiWant(t, c.method+" "+c.path, apiCall(t, c.method, e.v1+c.path, e.acmeToken, "", c.body), c.status, c.code)
		}
		if cs, err := srv.Store.ListClients(context.Background(), "other"); err != nil || len(cs) != 0 {
			t.Errorf("other's clients after refusals: %v %v", cs, err)
		}
		if _, err := srv.Store.GetTenant(context.Background(), "mine"); err == nil {
			t.Error("a tenant's API client created a tenant")
		}
		// acme's admin API token means nothing at the operator realm's token
		// endpoint, and an acme token is no token of other's.
		apiWant(t, "acme token on other's users", apiCall(t, "GET", e.v1+"/tenants/other/users", e.acmeToken, "", ""), http.StatusForbidden, "forbidden")
	})
}

func TestAdminAPIRefusesTokens(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := apiSetup(t, srv)
		ctx := context.Background()
		endpoint := e.v1 + "/tenants/acme/clients"

		// A backend client of acme without the admin scope.
		plainID, plainSecret := backendClient(t, srv, "acme", storage.ClientConfidentialSymmetric, nil)
		plainToken := apiToken(t, tokenEndpoint(srv, "acme"), plainID, plainSecret, "system/*.rs")
		// A client registered for admin and more, asking for less.
		wideID, wideSecret, err := srv.Manage.CreateClient(ctx, manage.ClientInput{TenantID: "acme", Name: "wide", Type: storage.ClientConfidentialSymmetric,
			Scopes: []string{"admin", "system/*.rs"}, GrantTypes: []string{manage.GrantClientCredentials}}, testActor)
		if err != nil {
			t.Fatal(err)
		}
		narrowToken := apiToken(t, tokenEndpoint(srv, "acme"), wideID.ID, wideSecret, "system/*.rs")
		// An admin token is for the admin API alone: never mixed with FHIR
		// scopes, never addressed to the FHIR servers.
		status, body := postForm(t, tokenEndpoint(srv, "acme"), url.Values{"grant_type": {"client_credentials"}, "scope": {"admin system/*.rs"}},
			wideID.ID, wideSecret)
		if status != http.StatusBadRequest || body["error"] != "invalid_scope" {
			t.Errorf("admin mixed with a FHIR scope: %d %v, want invalid_scope", status, body)
		}
		for _, token := range []string{e.acmeToken, e.opToken, apiToken(t, tokenEndpoint(srv, "acme"), wideID.ID, wideSecret, "admin")} {
			aud := apiClaims(t, token)["aud"]
			if s, ok := aud.(string); ok {
				aud = []any{s}
			}
			if got := apiStrings(aud); !slices.Equal(got, []string{srv.URL + "/admin/api"}) {
				t.Errorf("admin token audience %v, want only the admin API", got)
			}
		}
		if aud := apiClaims(t, narrowToken)["aud"]; fmt.Sprint(aud) == srv.URL+"/admin/api" || strings.Contains(fmt.Sprint(aud), "/admin/api") {
			t.Errorf("a FHIR token's audience %v names the admin API", aud)
		}
		// A person's token from the authorization code grant, with the admin scope granted.
		codeToken := personAdminToken(t, srv)
		// A client whose admin scope is taken away after its token was issued.
		demotedID, demotedSecret := apiClient(t, srv, "acme")
		demotedToken := apiToken(t, tokenEndpoint(srv, "acme"), demotedID, demotedSecret, "admin")
		if _, _, err := srv.Manage.UpdateClient(ctx, manage.ClientInput{TenantID: "acme", ID: demotedID, Name: "automation",
			Type: storage.ClientConfidentialSymmetric, Scopes: []string{"system/*.rs"}, GrantTypes: []string{manage.GrantClientCredentials}}, testActor); err != nil {
			t.Fatal(err)
		}
		// A client deleted after its token was issued.
		goneID, goneSecret := apiClient(t, srv, "acme")
		goneToken := apiToken(t, tokenEndpoint(srv, "acme"), goneID, goneSecret, "admin")
		if err := srv.Manage.DeleteClient(ctx, "acme", goneID, testActor); err != nil {
			t.Fatal(err)
		}

		tests := []struct {
			name, authorization string
			status              int
			code                string
		}{
			{"no token", "", http.StatusUnauthorized, "invalid_token"},
			{"basic credentials", "Basic " + base64.StdEncoding.EncodeToString([]byte(e.acmeID+":"+e.acmeSecret)), http.StatusUnauthorized, "invalid_token"},
			{"garbage", "Bearer not-a-token", http.StatusUnauthorized, "invalid_token"},
			{"altered token", "Bearer " + alterPayload(t, e.acmeToken), http.StatusUnauthorized, "invalid_token"},
			{"without the admin scope", "Bearer " + plainToken, http.StatusForbidden, "insufficient_scope"},
			{"admin scope not asked for", "Bearer " + narrowToken, http.StatusForbidden, "insufficient_scope"},
			{"authorization code grant", "Bearer " + codeToken, http.StatusForbidden, "insufficient_scope"},
			{"client lost the admin scope", "Bearer " + demotedToken, http.StatusForbidden, "insufficient_scope"},
			{"client deleted", "Bearer " + goneToken, http.StatusUnauthorized, "invalid_token"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				req, _ := http.NewRequest("GET", endpoint, nil)
				if tc.authorization != "" {
					req.Header.Set("Authorization", tc.authorization)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				apiWant(t, tc.name, apiResponse{status: resp.StatusCode, header: resp.Header, body: b}, tc.status, tc.code)
				if ch := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer") {
					t.Errorf("WWW-Authenticate %q, want a Bearer challenge", ch)
				}
			})
		}

		// Valid until it expires: the clock moves past the hour tokens live.
		apiWant(t, "before expiry", apiCall(t, "GET", endpoint, e.acmeToken, "", ""), http.StatusOK, "")
		srv.Clock.Advance(oauthAccessTokenTTL + time.Minute)
		apiWant(t, "expired token", apiCall(t, "GET", endpoint, e.acmeToken, "", ""), http.StatusUnauthorized, "invalid_token")
		apiWant(t, "expired operator token", apiCall(t, "GET", e.v1+"/tenants", e.opToken, "", ""), http.StatusUnauthorized, "invalid_token")
	})
}

// oauthAccessTokenTTL is the default access token lifetime.
const oauthAccessTokenTTL = time.Hour

// personAdminToken runs the authorization code flow, in tenant clinic, for
// an app registered for the admin scope and for client_credentials too,
// and returns the access token, whose grant holds the admin scope but
// speaks for a person.
func personAdminToken(t *testing.T, srv *servertest.Server) string {
	t.Helper()
	e := authzSetup(t, srv)
	scopes := append(slices.Clone(authzScopes), "admin")
	_, secret, err := srv.Manage.UpdateClient(context.Background(), manage.ClientInput{
		TenantID: authzTenant, ID: authzClientID, Name: "Chart Viewer", Type: storage.ClientConfidentialSymmetric,
		RedirectURIs: []string{authzCallback}, Scopes: scopes,
		GrantTypes: []string{manage.GrantAuthorizationCode, manage.GrantRefreshToken, manage.GrantClientCredentials},
	}, authzActor)
	if err != nil {
		t.Fatal(err)
	}
	e.conf.Scopes = scopes
	verifier := oauth2.GenerateVerifier()
	status, body := postForm(t, e.iss+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {e.code(t, verifier)},
		"redirect_uri": {authzCallback}, "code_verifier": {verifier}}, authzClientID, secret)
	token, _ := body["access_token"].(string)
	scope, _ := body["scope"].(string)
	if status != http.StatusOK || token == "" || !slices.Contains(strings.Fields(scope), "admin") {
		t.Fatalf("code redemption: %d %v, want a token with the admin scope", status, body)
	}
	return token
}

// apiSecretFree fails the test when an answer holds something secret.
func apiSecretFree(t *testing.T, what string, r apiResponse, secrets ...string) {
	t.Helper()
	for _, s := range append([]string{"$argon2", "secret_hash", "SecretHash", "sealed", "Sealed", "totp_secret", "TOTPSecret", "password_hash", "PasswordHash"}, secrets...) {
		if bytes.Contains(r.body, []byte(s)) {
			t.Errorf("%s: the answer holds %q:\n%s", what, s, r.body)
		}
	}
}

func TestAdminAPIManagesATenant(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := apiSetup(t, srv)
		ctx := context.Background()
		tok := e.acmeToken
		v1 := e.v1 + "/tenants/acme"
		actor := "client:" + e.acmeID
		const password, idpSecret = "a long passphrase indeed", "upstream-client-secret-value"
		audited := func(typ string) {
			t.Helper()
			if ev := apiLastEvent(t, srv, "acme", typ); ev.ActorID != actor {
				t.Errorf("%s audited with actor %q, want %q", typ, ev.ActorID, actor)
			}
		}
		ok := func(what, method, path, body string, status int) apiResponse {
			t.Helper()
			r := apiCall(t, method, v1+path, tok, "", body)
			apiWant(t, what, r, status, "")
			apiSecretFree(t, what, r, password, idpSecret)
			return r
		}

		// Settings.
		r := ok("update tenant", "PUT", "", `{"name": "Acme Health", "fhir_base_urls": ["https://fhir.acme.example/r4"], "mfa_offered": true, "refresh_token_ttl": 7200}`, http.StatusOK)
		if m := r.object(t); m["name"] != "Acme Health" || m["mfa_offered"] != true || m["refresh_token_ttl"] != "2h0m0s" {
			t.Errorf("updated tenant %s", r.body)
		}
		audited("admin.tenant.update")
		if m := ok("get tenant", "GET", "", "", http.StatusOK).object(t); m["name"] != "Acme Health" {
			t.Errorf("tenant after update %v", m)
		}
		r = apiCall(t, "PUT", v1, tok, "", `{"fhir_base_urls": ["https://fhir.acme.example/r4"], "access_token_ttl": "5s"}`)
		apiWant(t, "too short a lifetime", r, http.StatusBadRequest, "invalid_request")
		if d := r.object(t)["error_description"].(string); !strings.Contains(d, "access token lifetime 5s must be between") {
			t.Errorf("lifetime refusal says %q", d)
		}

		// Clients: create, update, launch, rotate, delete.
		ok("create app", "POST", "/clients", `{"client_id": "chart", "name": "Chart", "type": "public", "redirect_uris": ["https://app.example/cb"],
			"scope": "launch patient/*.rs", "launch_uri": "https://app.example/launch"}`, http.StatusCreated)
		apiWant(t, "bad redirect", apiCall(t, "POST", v1+"/clients", tok, "", `{"name": "x", "type": "public", "redirect_uris": ["http://app.example/cb"], "scope": "openid"}`),
			http.StatusBadRequest, "invalid_request")
		r = apiCall(t, "POST", v1+"/clients", tok, "", `{"name": "Export", "type": "confidential-symmetric", "grant_types": ["client_credentials"],
			"scope": "patient/*.read launch/patient"}`)
		apiWant(t, "backend service with patient scopes", r, http.StatusBadRequest, "invalid_request")
		if d := r.object(t)["error_description"].(string); !strings.Contains(d, `scope "patient/*.read" cannot be registered for a backend service`) {
			t.Errorf("backend service refusal says %q", d)
		}
		apiWant(t, "duplicate client", apiCall(t, "POST", v1+"/clients", tok, "", `{"client_id": "chart", "name": "Chart", "type": "public",
			"redirect_uris": ["https://app.example/cb"], "scope": "openid"}`), http.StatusConflict, "already_exists")
		r = ok("make it confidential", "PUT", "/clients/chart", `{"name": "Chart", "type": "confidential-symmetric", "redirect_uris": ["https://app.example/cb"],
			"scope": "launch patient/*.rs", "launch_uri": "https://app.example/launch"}`, http.StatusOK)
		if s, _ := r.object(t)["client_secret"].(string); len(s) < 43 {
			t.Errorf("a client made confidential gets its secret once: %s", r.body)
		}
		audited("admin.client.update")
		r = ok("rotate secret", "POST", "/clients/chart/secret", "", http.StatusOK)
		if s, _ := r.object(t)["client_secret"].(string); len(s) < 43 {
			t.Errorf("rotation answer %s", r.body)
		}
		audited("admin.client.rotate_secret")
		r = ok("launch", "POST", "/clients/chart/launch", `{"patient": "123", "intent": "reconcile-medications"}`, http.StatusCreated)
		if m := r.object(t); !strings.HasPrefix(m["launch_url"].(string), "https://app.example/launch?") || m["launch"] == "" {
			t.Errorf("launch answer %s", r.body)
		}
		if ev := apiLastEvent(t, srv, "acme", "launch.create"); ev.ActorID != actor || ev.Details["patient"] != "123" {
			t.Errorf("launch audited as %+v", ev)
		}
		apiWant(t, "launch of an unknown app", apiCall(t, "POST", v1+"/clients/nope/launch", tok, "", `{}`), http.StatusBadRequest, "invalid_request")
		ok("delete client", "DELETE", "/clients/chart", "", http.StatusNoContent)
		audited("admin.client.delete")
		apiWant(t, "deleted client", apiCall(t, "GET", v1+"/clients/chart", tok, "", ""), http.StatusNotFound, "not_found")

		// Users.
		r = ok("create user", "POST", "/users", `{"email": "dr@acme.example", "password": "`+password+`",
			"profiles": [{"fhir_user": "Practitioner/7", "label": "Attending"}]}`, http.StatusCreated)
		var u struct {
			ID          string `json:"id"`
			HasPassword bool   `json:"has_password"`
			Admin       bool   `json:"admin"`
			Disabled    bool   `json:"disabled"`
		}
		r.json(t, &u)
		if u.ID == "" || !u.HasPassword {
			t.Fatalf("created user %s", r.body)
		}
		audited("admin.user.create")
		r = apiCall(t, "POST", v1+"/users", tok, "", `{"email": "x@acme.example", "profiles": [{"fhir_user": "Observation/1"}]}`)
		apiWant(t, "bad profile", r, http.StatusBadRequest, "invalid_request")
		if d := r.object(t)["error_description"].(string); !strings.Contains(d, "must be Practitioner/") {
			t.Errorf("bad profile described as %q", d)
		}
		r = ok("patch user", "PATCH", "/users/"+u.ID, `{"admin": true, "disabled": true, "profiles": [{"fhir_user": "Practitioner/7"}, {"fhir_user": "Patient/9", "label": "Self"}]}`, http.StatusOK)
		r.json(t, &u)
		if !u.Admin || !u.Disabled {
			t.Errorf("patched user %s", r.body)
		}
		for _, typ := range []string{"admin.user.set_profiles", "admin.user.set_admin", "admin.user.disable"} {
			audited(typ)
		}
		ok("get user", "GET", "/users/"+u.ID, "", http.StatusOK)
		ok("list users", "GET", "/users", "", http.StatusOK)
		apiWant(t, "short password", apiCall(t, "POST", v1+"/users/"+u.ID+"/password", tok, "", `{"password": "short"}`), http.StatusBadRequest, "invalid_request")
		ok("set password", "POST", "/users/"+u.ID+"/password", `{"password": "another long passphrase"}`, http.StatusNoContent)
		audited("admin.user.reset_password")
		ok("reset second factor", "DELETE", "/users/"+u.ID+"/second-factor", "", http.StatusNoContent)
		audited("admin.user.reset_mfa")

		// Consents.
		if err := srv.Store.SaveConsent(ctx, storage.Consent{TenantID: "acme", UserID: u.ID, ClientID: e.acmeID, Scopes: []string{"admin"}, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		var consents []map[string]any
		ok("list consents", "GET", "/consents?user="+u.ID, "", http.StatusOK).json(t, &consents)
		if len(consents) != 1 || consents[0]["client_id"] != e.acmeID {
			t.Errorf("consents %v", consents)
		}
		ok("revoke consent", "DELETE", "/consents/"+u.ID+"/"+e.acmeID, "", http.StatusNoContent)
		audited("admin.consent.revoke")
		apiWant(t, "revoke it again", apiCall(t, "DELETE", v1+"/consents/"+u.ID+"/"+e.acmeID, tok, "", ""), http.StatusNotFound, "not_found")
		ok("delete user", "DELETE", "/users/"+u.ID, "", http.StatusNoContent)
		audited("admin.user.delete")
		apiWant(t, "deleted user", apiCall(t, "GET", v1+"/users/"+u.ID, tok, "", ""), http.StatusNotFound, "not_found")

		// Identity providers and domain routes.
		r = ok("add idp", "POST", "/idps", `{"id": "corp", "type": "oidc", "display_name": "Corp", "settings": {"issuer": "https://127.0.0.1:1/corp", "client_id": "smartauth"},
			"client_secret": "`+idpSecret+`", "domains": ["acme.example"]}`, http.StatusCreated)
		if m := r.object(t); m["has_client_secret"] != true || len(m["domains"].([]any)) != 1 {
			t.Errorf("added idp %s", r.body)
		}
		audited("admin.idp.add")
		ok("update idp", "PUT", "/idps/corp", `{"type": "oidc", "display_name": "Corp SSO", "settings": {"issuer": "https://127.0.0.1:1/corp", "client_id": "smartauth"}}`, http.StatusOK)
		audited("admin.idp.update")
		if p, err := srv.Store.GetIdentityProvider(ctx, "acme", "corp"); err != nil || len(p.ClientSecretSealed) == 0 {
			t.Errorf("an update without a secret keeps the sealed one: %v", err)
		}
		apiWant(t, "idp id mismatch", apiCall(t, "PUT", v1+"/idps/corp", tok, "", `{"id": "other", "type": "oidc", "settings": {"issuer": "https://127.0.0.1:1/corp", "client_id": "s"}}`),
			http.StatusBadRequest, "invalid_request")
		r = ok("discovery test", "POST", "/idps/corp/discovery-test", "", http.StatusOK)
		if m := r.object(t); m["ok"] != false || !strings.Contains(m["error"].(string), "discovery at https://127.0.0.1:1/corp") {
			t.Errorf("discovery of an unreachable provider: %s", r.body)
		}
		apiWant(t, "discovery of an unknown idp", apiCall(t, "POST", v1+"/idps/nope/discovery-test", tok, "", ""), http.StatusNotFound, "not_found")
		ok("list idps", "GET", "/idps", "", http.StatusOK)
		ok("add route", "POST", "/domain-routes", `{"domain": "*.acme-hospital.example", "provider_id": "corp"}`, http.StatusCreated)
		audited("admin.idp.route.add")
		apiWant(t, "route it again", apiCall(t, "POST", v1+"/domain-routes", tok, "", `{"domain": "acme-hospital.example", "provider_id": "corp"}`), http.StatusConflict, "already_exists")
		var routes []map[string]any
		ok("list routes", "GET", "/domain-routes", "", http.StatusOK).json(t, &routes)
		if len(routes) != 2 {
			t.Errorf("routes %v", routes)
		}
		ok("delete route", "DELETE", "/domain-routes/acme-hospital.example", "", http.StatusNoContent)
		audited("admin.idp.route.delete")
		ok("delete idp", "DELETE", "/idps/corp", "", http.StatusNoContent)
		audited("admin.idp.delete")

		// Patients.
		ndjson := `{"resourceType": "Patient", "id": "p1", "name": [{"family": "Okafor", "given": ["Ada"]}], "birthDate": "1980-02-03"}
{"resourceType": "Observation", "id": "o1"}
`
		r = apiCall(t, "POST", v1+"/patients", tok, "application/fhir+ndjson", ndjson)
		apiWant(t, "import NDJSON", r, http.StatusOK, "")
		if m := r.object(t); m["imported"] != float64(1) || m["skipped"] != float64(1) {
			t.Errorf("import answer %s", r.body)
		}
		audited("admin.patients.import")
		r = apiCall(t, "POST", v1+"/patients", tok, "application/fhir+json", `{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "id": "p2", "name": [{"family": "Okafor", "given": ["Ben"]}]}}]}`)
		apiWant(t, "import a Bundle", r, http.StatusOK, "")
		apiWant(t, "import as text", apiCall(t, "POST", v1+"/patients", tok, "text/plain", ndjson), http.StatusUnsupportedMediaType, "invalid_request")
		apiWant(t, "import nothing", apiCall(t, "POST", v1+"/patients", tok, "application/fhir+json", `{"resourceType": "Observation"}`), http.StatusBadRequest, "invalid_request")
		var patients []map[string]any
		ok("search", "GET", "/patients?name=okaf&birthdate=1980-02-03", "", http.StatusOK).json(t, &patients)
		if len(patients) != 1 || patients[0]["id"] != "p1" {
			t.Errorf("search found %v", patients)
		}
		apiWant(t, "bad limit", apiCall(t, "GET", v1+"/patients?limit=0", tok, "", ""), http.StatusBadRequest, "invalid_request")

		// Keys.
		var keys []map[string]any
		ok("list keys", "GET", "/keys", "", http.StatusOK).json(t, &keys)
		apiWant(t, "rotate with a window past the cap", apiCall(t, "POST", v1+"/keys/rotate", tok, "application/json", `{"retire_after": "999999h"}`), http.StatusBadRequest, "invalid_request")
		r = apiCall(t, "POST", v1+"/keys/rotate", tok, "application/json", `{"retire_after": "1s"}`)
		apiWant(t, "rotate with a window shorter than the access token lifetime", r, http.StatusBadRequest, "invalid_request")
		if d := r.object(t)["error_description"].(string); !strings.Contains(d, "shorter than the access token lifetime, 1h0m0s") {
			t.Errorf("short window refusal says %q", d)
		}
		r = ok("rotate keys", "POST", "/keys/rotate", `{"retire_after": "1h"}`, http.StatusOK)
		audited("admin.keys.rotate")
		var rotated []map[string]any
		r.json(t, &rotated)
		if len(rotated) == 0 || len(keys) == 0 {
			t.Fatalf("keys %v, rotated %v", keys, rotated)
		}
		apiWant(t, "retire without saying whether the key is compromised", apiCall(t, "POST", v1+"/keys/"+keys[0]["kid"].(string)+"/retire", tok, "", ""), http.StatusBadRequest, "invalid_request")
		ok("retire an old key", "POST", "/keys/"+keys[0]["kid"].(string)+"/retire", `{"compromised": false}`, http.StatusNoContent)
		audited("admin.keys.retire")
		ok("retire a compromised key", "POST", "/keys/"+keys[1]["kid"].(string)+"/retire", `{"compromised": true}`, http.StatusNoContent)
		var published jose.JSONWebKeySet
		getJSON(t, srv.Issuer("acme")+"/.well-known/jwks.json", &published)
		if len(published.Key(keys[0]["kid"].(string))) == 0 || len(published.Key(keys[1]["kid"].(string))) != 0 {
			t.Errorf("JWKS after retirements holds %v; want the ordinary one still, the compromised one gone", published.Keys)
		}
		apiWant(t, "retire the only active key", apiCall(t, "POST", v1+"/keys/"+rotated[0]["kid"].(string)+"/retire", tok, "application/json", `{"compromised": false}`), http.StatusBadRequest, "invalid_request")
		apiWant(t, "retire an unknown key", apiCall(t, "POST", v1+"/keys/nope/retire", tok, "application/json", `{"compromised": false}`), http.StatusNotFound, "not_found")
		ok("rotate with defaults", "POST", "/keys/rotate", "", http.StatusOK)

		// Registration tokens.
		r = ok("initial access token", "POST", "/initial-access-tokens", `{"ttl": "2h"}`, http.StatusCreated)
		if m := r.object(t); m["token"] == "" || m["registration_endpoint"] != srv.Issuer("acme")+"/register" {
			t.Errorf("initial access token answer %s", r.body)
		}
		apiWant(t, "too long a registration token", apiCall(t, "POST", v1+"/initial-access-tokens", tok, "", `{"ttl": "10000h"}`), http.StatusBadRequest, "invalid_request")

		// Nothing above was done by anyone but the API client, and none of it
		// touched another tenant.
		others, err := srv.Store.ListAudit(ctx, "other", storage.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range others {
			if strings.Contains(ev.ActorID, e.acmeID) {
				t.Errorf("acme's API client appears in other's trail: %+v", ev)
			}
		}
	})
}

func TestAdminAPIAudit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := apiSetup(t, srv)
		v1 := e.v1 + "/tenants/acme"
		for _, id := range []string{"a", "b", "c"} {
			apiWant(t, "create "+id, apiCall(t, "POST", v1+"/clients", e.acmeToken, "", `{"client_id": "`+id+`", "name": "`+id+`", "type": "public",
				"redirect_uris": ["https://app.example/cb"], "scope": "openid"}`), http.StatusCreated, "")
		}

		var page struct {
			Events []struct {
				Seq     int64             `json:"seq"`
				Type    string            `json:"type"`
				ActorID string            `json:"actor_id"`
				Details map[string]string `json:"details"`
				Hash    string            `json:"hash"`
			} `json:"events"`
			NextBefore int64 `json:"next_before"`
		}
		r := apiCall(t, "GET", v1+"/audit?type=admin.client.create&limit=2", e.acmeToken, "", "")
		apiWant(t, "audit page", r, http.StatusOK, "")
		r.json(t, &page)
		if len(page.Events) != 2 || page.Events[0].Details["client_id"] != "c" || page.Events[0].ActorID != "client:"+e.acmeID ||
			page.NextBefore != page.Events[1].Seq || len(page.Events[0].Hash) != 64 {
			t.Fatalf("first page %s", r.body)
		}
		r = apiCall(t, "GET", v1+"/audit?type=admin.client.create&limit=2&before="+strconv.FormatInt(page.NextBefore, 10), e.acmeToken, "", "")
		apiWant(t, "second page", r, http.StatusOK, "")
		page.Events, page.NextBefore = nil, 0
		r.json(t, &page)
		// The second page holds "a", and the creation of acme's own API client by the test.
		if len(page.Events) != 2 || page.Events[0].Details["client_id"] != "a" {
			t.Fatalf("second page %s", r.body)
		}
		future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		r = apiCall(t, "GET", v1+"/audit?since="+url.QueryEscape(future), e.acmeToken, "", "")
		apiWant(t, "nothing since an hour from now", r, http.StatusOK, "")
		if !bytes.Contains(r.body, []byte(`"events":[]`)) {
			t.Errorf("future events %s", r.body)
		}
		for _, q := range []string{"since=yesterday", "limit=5000", "before=-1", "format=xml"} {
			apiWant(t, q, apiCall(t, "GET", v1+"/audit?"+q, e.acmeToken, "", ""), http.StatusBadRequest, "invalid_request")
		}

		// FHIR exports parse, and carry the API client as an agent.
		r = apiCall(t, "GET", v1+"/audit?format=fhir", e.acmeToken, "", "")
		apiWant(t, "fhir export", r, http.StatusOK, "")
		if ct := r.header.Get("Content-Type"); ct != "application/fhir+json" {
			t.Errorf("fhir export Content-Type %q", ct)
		}
		var bundle struct {
			ResourceType string `json:"resourceType"`
			Entry        []struct {
				Resource map[string]any `json:"resource"`
			} `json:"entry"`
		}
		r.json(t, &bundle)
		if bundle.ResourceType != "Bundle" || len(bundle.Entry) < 4 || bundle.Entry[0].Resource["resourceType"] != "AuditEvent" {
			t.Fatalf("bundle %s", r.body)
		}
		if !bytes.Contains(r.body, []byte("client:"+e.acmeID)) {
			t.Errorf("the export does not name the API client")
		}
		r = apiCall(t, "GET", v1+"/audit?format=ndjson&type=admin.client.create", e.acmeToken, "", "")
		apiWant(t, "ndjson export", r, http.StatusOK, "")
		if ct := r.header.Get("Content-Type"); ct != "application/fhir+ndjson" {
			t.Errorf("ndjson export Content-Type %q", ct)
		}
		lines := 0
		sc := bufio.NewScanner(bytes.NewReader(r.body))
		for sc.Scan() {
			var ev map[string]any
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev["resourceType"] != "AuditEvent" {
				t.Fatalf("ndjson line %q: %v", sc.Text(), err)
			}
			lines++
		}
		if lines != 4 {
			t.Errorf("ndjson has %d lines, want 4 client creations", lines)
		}

		var status struct {
			OK     bool  `json:"ok"`
			Events int64 `json:"events"`
		}
		r = apiCall(t, "GET", v1+"/audit/verify", e.acmeToken, "", "")
		apiWant(t, "verify", r, http.StatusOK, "")
		r.json(t, &status)
		if !status.OK || status.Events < 5 {
			t.Errorf("verify %s", r.body)
		}
		apiWant(t, "verify another tenant", apiCall(t, "GET", e.v1+"/tenants/other/audit/verify", e.acmeToken, "", ""), http.StatusForbidden, "forbidden")
		r = apiCall(t, "GET", e.v1+"/tenants/other/audit/verify", e.opToken, "", "")
		apiWant(t, "an operator verifies other", r, http.StatusOK, "")
	})
}
