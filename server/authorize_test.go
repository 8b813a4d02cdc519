package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html"
	"io"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

const (
	authzTenant   = "clinic"
	authzClientID = "chart-viewer"
	authzCallback = "http://127.0.0.1:9999/callback"
	authzEmail    = "dr.grey@clinic.example"
	authzPassword = "correct horse battery staple"
	authzState    = "state-0123456789"
	authzNonce    = "nonce-0123456789"
	// authzPatient is the roster patient the clinician picks.
	authzPatient = "pat-1"
)

// authzScopes are what the test app registers and asks for.
var authzScopes = []string{"openid", "fhirUser", "offline_access", "launch/patient", "patient/*.rs"}

var authzActor = manage.Actor{ID: "test"}

// authzEnv is a tenant with a public app and a user, and a browser to drive them.
type authzEnv struct {
	srv      *servertest.Server
	iss      string
	fhirBase string
	userID   string
	conf     *oauth2.Config
	browser  *http.Client
}

func authzSetup(t *testing.T, srv *servertest.Server) *authzEnv {
	t.Helper()
	ctx := context.Background()
	tn := srv.Tenant(t, authzTenant)
	if _, _, err := srv.Manage.CreateClient(ctx, manage.ClientInput{
		TenantID: authzTenant, ID: authzClientID, Name: "Chart Viewer", Type: storage.ClientPublic,
		RedirectURIs: []string{authzCallback, "https://app.example/callback"}, Scopes: authzScopes,
	}, authzActor); err != nil {
		t.Fatal(err)
	}
	u, err := srv.Manage.CreateUser(ctx, manage.UserInput{TenantID: authzTenant, Email: authzEmail, Password: authzPassword,
		Profiles: []storage.Profile{{FHIRUser: "Practitioner/123", Label: "Attending physician"}}}, authzActor)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Store.UpsertPatients(ctx, authzTenant, []storage.Patient{
		{TenantID: authzTenant, ID: authzPatient, Family: "Okafor", Given: "Ada", BirthDate: "1980-02-03", Gender: "female",
			Identifiers: []storage.Identifier{{System: "urn:mrn", Value: "MRN-1001"}}, Resource: []byte(`{"resourceType":"Patient","id":"pat-1"}`)},
		{TenantID: authzTenant, ID: "pat-2", Family: "Okafor", Given: "Ben", BirthDate: "1975-06-07", Gender: "male",
			Resource: []byte(`{"resourceType":"Patient","id":"pat-2"}`)},
	}); err != nil {
		t.Fatal(err)
	}
	iss := srv.Issuer(authzTenant)
	return &authzEnv{
		srv: srv, iss: iss, fhirBase: tn.FHIRBaseURLs[0], userID: u.ID, browser: authzBrowser(t),
		conf: &oauth2.Config{
			ClientID: authzClientID, RedirectURL: authzCallback, Scopes: authzScopes,
			Endpoint: oauth2.Endpoint{AuthURL: iss + "/authorize", TokenURL: iss + "/token", AuthStyle: oauth2.AuthStyleInParams},
		},
	}
}

// authzBrowser keeps cookies and stops at every redirect, as the tests look at each.
func authzBrowser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// authURL is the app's authorization URL with PKCE S256, aud and nonce.
func (e *authzEnv) authURL(verifier string, extra ...oauth2.AuthCodeOption) string {
	opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("aud", e.fhirBase), oauth2.SetAuthURLParam("nonce", authzNonce)}, extra...)
	return e.conf.AuthCodeURL(authzState, opts...)
}

// authzPage is one response as a browser sees it.
type authzPage struct {
	status int
	header http.Header
	body   string
	// hidden are the page's hidden form fields.
	hidden map[string]string
}

var authzHiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

func authzRead(t *testing.T, resp *http.Response, err error) authzPage {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := authzPage{status: resp.StatusCode, header: resp.Header, body: string(b), hidden: map[string]string{}}
	for _, m := range authzHiddenInput.FindAllStringSubmatch(p.body, -1) {
		p.hidden[m[1]] = html.UnescapeString(m[2])
	}
	return p
}

func (e *authzEnv) get(t *testing.T, c *http.Client, u string) authzPage {
	t.Helper()
	resp, err := c.Get(u)
	return authzRead(t, resp, err)
}

func (e *authzEnv) post(t *testing.T, c *http.Client, u string, form url.Values, header map[string]string) authzPage {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	return authzRead(t, resp, err)
}

// loginForm fills the sign-in page's form.
func authzLoginForm(login authzPage, email, password string) url.Values {
	return url.Values{"csrf_token": {login.hidden["csrf_token"]}, "authz": {login.hidden["authz"]}, "email": {email}, "password": {password}}
}

// signIn opens the authorization URL and signs in, returning the consent page.
func (e *authzEnv) signIn(t *testing.T, authURL string) authzPage {
	t.Helper()
	login := e.get(t, e.browser, authURL)
	if login.status != http.StatusOK || login.hidden["csrf_token"] == "" || login.hidden["authz"] == "" {
		t.Fatalf("sign-in page: %d, hidden fields %v\n%s", login.status, login.hidden, login.body)
	}
	return e.throughPicker(t, e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, authzEmail, authzPassword), nil))
}

// stepForm fills a step page's hidden fields (CSRF, request, ticket) into form.
func stepForm(p authzPage, form url.Values) url.Values {
	for _, k := range []string{"csrf_token", "authz", "ticket"} {
		form.Set(k, p.hidden[k])
	}
	return form
}

// throughPicker searches the patient picker, if the page is one, and picks
// authzPatient; it returns the consent page.
func (e *authzEnv) throughPicker(t *testing.T, page authzPage) authzPage {
	t.Helper()
	if strings.Contains(page.body, `action="`+e.iss+`/patient"`) {
		found := e.post(t, e.browser, e.iss+"/patient", stepForm(page, url.Values{"name": {"okaf"}}), nil)
		if found.status != http.StatusOK || !strings.Contains(found.body, `value="`+authzPatient+`"`) {
			t.Fatalf("patient search: %d\n%s", found.status, found.body)
		}
		page = e.post(t, e.browser, e.iss+"/patient", stepForm(found, url.Values{"patient": {authzPatient}}), nil)
	}
	if page.status != http.StatusOK || page.hidden["ticket"] == "" || !strings.Contains(page.body, `action="`+e.iss+`/consent"`) {
		t.Fatalf("after sign-in: %d, want the consent page\n%s", page.status, page.body)
	}
	return page
}

var authzScopeBox = regexp.MustCompile(`<input type="checkbox" id="[^"]+" name="scope" value="([^"]+)" checked>`)

// offered lists the scopes the consent page shows ticked.
func (p authzPage) offered() []string {
	var out []string
	for _, m := range authzScopeBox.FindAllStringSubmatch(p.body, -1) {
		out = append(out, html.UnescapeString(m[1]))
	}
	return out
}

// decide submits the consent page with a decision and the scopes left ticked.
func (e *authzEnv) decide(t *testing.T, consent authzPage, decision string, scopes []string, extra url.Values) authzPage {
	t.Helper()
	form := url.Values{"decision": {decision}, "scope": scopes}
	for _, k := range []string{"csrf_token", "authz", "ticket"} {
		form.Set(k, consent.hidden[k])
	}
	for k, v := range extra {
		form[k] = v
	}
	return e.post(t, e.browser, e.iss+"/consent", form, nil)
}

// callback checks that a response sends the browser back to the app and
// returns the parameters it carries.
func authzCallbackParams(t *testing.T, p authzPage) url.Values {
	t.Helper()
	loc := p.header.Get("Location")
	if p.status != http.StatusSeeOther || !strings.HasPrefix(loc, authzCallback+"?") {
		t.Fatalf("want a redirect to the app, got %d Location %q\n%s", p.status, loc, p.body)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

// code runs the whole browser flow, every scope allowed, and returns the code.
func (e *authzEnv) code(t *testing.T, verifier string) string {
	t.Helper()
	consent := e.signIn(t, e.authURL(verifier))
	q := authzCallbackParams(t, e.decide(t, consent, "allow", consent.offered(), nil))
	if q.Get("code") == "" {
		t.Fatalf("no code in the redirect: %v", q)
	}
	return q.Get("code")
}

// redeem posts a code to the token endpoint as the public app would.
func (e *authzEnv) redeem(t *testing.T, code, verifier string) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(e.iss+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {authzCallback}, "client_id": {authzClientID}, "code_verifier": {verifier}})
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Errorf("token response is not JSON: %v", err)
	}
	return resp.StatusCode, body
}

// authzVerify checks a JWT against the tenant's published keys and returns its claims.
func authzVerify(t *testing.T, e *authzEnv, token string, alg jose.SignatureAlgorithm) (map[string]any, jose.Header) {
	t.Helper()
	var set jose.JSONWebKeySet
	getJSON(t, e.iss+"/.well-known/jwks.json", &set)
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{alg})
	if err != nil {
		t.Fatalf("parse %s JWT: %v", alg, err)
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) == 0 {
		t.Fatalf("no published key has kid %q", tok.Headers[0].KeyID)
	}
	var claims map[string]any
	if err := tok.Claims(keys[0].Key, &claims); err != nil {
		t.Fatalf("JWT does not verify under the tenant's JWKS: %v", err)
	}
	return claims, tok.Headers[0]
}

// introspector registers a confidential client and returns a function that
// introspects a token with it.
func (e *authzEnv) introspector(t *testing.T) func(token string) map[string]any {
	t.Helper()
	c, secret, err := e.srv.Manage.CreateClient(context.Background(), manage.ClientInput{TenantID: authzTenant, Name: "FHIR server",
		Type: storage.ClientConfidentialSymmetric, Scopes: []string{"system/*.rs"}, GrantTypes: []string{manage.GrantClientCredentials}}, authzActor)
	if err != nil {
		t.Fatal(err)
	}
	return func(token string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.iss+"/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(secret))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("introspection: %d %v", resp.StatusCode, body)
		}
		return body
	}
}

func TestAuthorizeCodeFlow(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		verifier := oauth2.GenerateVerifier()

		login := e.get(t, e.browser, e.authURL(verifier))
		if login.status != http.StatusOK || !strings.Contains(login.body, "Chart Viewer") {
			t.Fatalf("sign-in page: %d\n%s", login.status, login.body)
		}
		if csp := login.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("sign-in page CSP %q", csp)
		}
		// Email first: the password is asked for once the email is known not
		// to belong to an organization that signs its people in elsewhere.
		for _, want := range []string{`<label for="email">`, `autocomplete="username"`, `id="continue"`} {
			if !strings.Contains(login.body, want) {
				t.Errorf("sign-in page lacks %s", want)
			}
		}
		if strings.Contains(login.body, `type="password"`) {
			t.Error("the first sign-in page asks for a password before the email")
		}
		passwordStep := e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, authzEmail, ""), nil)
		for _, want := range []string{`<label for="password">`, `autocomplete="current-password"`, `value="` + authzEmail + `"`} {
			if !strings.Contains(passwordStep.body, want) {
				t.Errorf("password step lacks %s", want)
			}
		}
		if strings.Contains(login.body, "<script") || strings.Contains(login.body, "style=") {
			t.Error("sign-in page has inline script or style")
		}
		cookie := login.header.Get("Set-Cookie")
		for _, want := range []string{"smartauth_csrf=", "Path=/t/clinic/", "HttpOnly", "SameSite=Lax"} {
			if !strings.Contains(cookie, want) {
				t.Errorf("CSRF cookie %q lacks %s", cookie, want)
			}
		}

		picker := e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, authzEmail, authzPassword), nil)
		if picker.status != http.StatusOK || !strings.Contains(picker.body, "Choose a patient") {
			t.Fatalf("sign-in with launch/patient: %d, want the patient picker\n%s", picker.status, picker.body)
		}
		consent := e.throughPicker(t, picker)
		// openid and launch/patient are how the app works: shown, not optional.
		if got, want := consent.offered(), []string{"fhirUser", "patient/*.rs", "offline_access"}; !slices.Equal(got, want) {
			t.Fatalf("consent offers %v, want %v", got, want)
		}
		for _, want := range []string{"Read and search all kinds of records for the current patient", "<legend>All kinds of records</legend>",
			"<legend>Who you are</legend>", "Ada Okafor", "Patient/" + authzPatient} {
			if !strings.Contains(consent.body, want) {
				t.Errorf("consent page lacks %q", want)
			}
		}

		q := authzCallbackParams(t, e.decide(t, consent, "allow", consent.offered(), nil))
		if q.Get("state") != authzState || q.Get("iss") != e.iss || q.Get("code") == "" {
			t.Fatalf("callback parameters %v: want code, state %q and iss %q", q, authzState, e.iss)
		}

		tok, err := e.conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("exchange: %v", err)
		}
		if tok.RefreshToken == "" {
			t.Error("offline_access was granted but no refresh token came back")
		}
		if got := tok.Extra("scope"); got != strings.Join(authzScopes, " ") {
			t.Errorf("token response scope %q", got)
		}
		if tok.Extra("patient") != authzPatient || tok.Extra("need_patient_banner") != true || tok.Extra("tenant") != authzTenant {
			t.Errorf("token response context: patient %v, need_patient_banner %v, tenant %v",
				tok.Extra("patient"), tok.Extra("need_patient_banner"), tok.Extra("tenant"))
		}

		at, header := authzVerify(t, e, tok.AccessToken, jose.ES256)
		if header.ExtraHeaders["typ"] != "at+jwt" {
			t.Errorf("access token typ %v, want at+jwt", header.ExtraHeaders["typ"])
		}
		want := map[string]any{"iss": e.iss, "sub": e.userID, "client_id": authzClientID, "scope": strings.Join(authzScopes, " "),
			"fhirUser": e.fhirBase + "/Practitioner/123", "tenant": authzTenant, "patient": authzPatient}
		for k, v := range want {
			if at[k] != v {
				t.Errorf("access token %s = %v, want %v", k, at[k], v)
			}
		}
		if aud := authzAudience(at["aud"]); !slices.Equal(aud, []string{e.fhirBase}) {
			t.Errorf("access token aud %v, want [%s]", aud, e.fhirBase)
		}
		if at["jti"] == nil || at["exp"] == nil {
			t.Errorf("access token lacks jti or exp: %v", at)
		}

		raw, _ := tok.Extra("id_token").(string)
		if raw == "" {
			t.Fatal("openid was granted but there is no id_token")
		}
		id, _ := authzVerify(t, e, raw, jose.RS256)
		if id["nonce"] != authzNonce || id["iss"] != e.iss || id["sub"] != e.userID || id["fhirUser"] != e.fhirBase+"/Practitioner/123" {
			t.Errorf("id_token claims %v", id)
		}
		if aud := authzAudience(id["aud"]); !slices.Contains(aud, authzClientID) {
			t.Errorf("id_token aud %v lacks the client", aud)
		}
		if id["auth_time"] == nil {
			t.Error("id_token has no auth_time")
		}
		// at_hash binds the ID token to the access token (OpenID Connect Core §3.1.3.6).
		sum := sha256.Sum256([]byte(tok.AccessToken))
		if want := base64.RawURLEncoding.EncodeToString(sum[:16]); id["at_hash"] != want {
			t.Errorf("id_token at_hash %v, want %s", id["at_hash"], want)
		}

		events, err := srv.Store.ListAudit(context.Background(), authzTenant, storage.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		var types []string
		for _, ev := range events {
			types = append(types, ev.Type)
		}
		for _, want := range []string{"login.success", "consent.grant", "authorize.code"} {
			if !slices.Contains(types, want) {
				t.Errorf("audit trail %v lacks %s", types, want)
			}
		}
		if strings.Contains(srv.Logs(), authzPassword) || strings.Contains(srv.Logs(), q.Get("code")) {
			t.Error("a password or code reached the log")
		}
	})
}

func authzAudience(v any) []string {
	switch a := v.(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, x := range a {
			s, _ := x.(string)
			out = append(out, s)
		}
		return out
	}
	return nil
}

func TestAuthorizePost(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		u, _ := url.Parse(e.authURL(oauth2.GenerateVerifier()))
		// An app's form posts from its own site: cross-site by design.
		login := e.post(t, e.browser, e.iss+"/authorize", u.Query(), map[string]string{"Sec-Fetch-Site": "cross-site"})
		if login.status != http.StatusOK || login.hidden["authz"] == "" {
			t.Fatalf("authorize-post: %d\n%s", login.status, login.body)
		}
		consent := e.throughPicker(t, e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, authzEmail, authzPassword), nil))
		q := authzCallbackParams(t, e.decide(t, consent, "allow", consent.offered(), nil))
		if q.Get("code") == "" || q.Get("iss") != e.iss {
			t.Fatalf("callback %v", q)
		}
	})
}

func TestAuthorizeBadClientOrRedirectShowsPage(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		if _, _, err := srv.Manage.CreateClient(context.Background(), manage.ClientInput{TenantID: authzTenant, ID: "solo", Name: "Solo",
			Type: storage.ClientPublic, RedirectURIs: []string{"https://solo.example/cb"}, Scopes: []string{"openid"}}, authzActor); err != nil {
			t.Fatal(err)
		}
		verifier := oauth2.GenerateVerifier()
		good, _ := url.Parse(e.authURL(verifier))
		for _, tc := range []struct {
			name string
			edit func(q url.Values)
		}{
			{"unknown client", func(q url.Values) { q.Set("client_id", "ghost") }},
			{"missing client", func(q url.Values) { q.Del("client_id") }},
			{"missing redirect with several registered", func(q url.Values) { q.Del("redirect_uri") }},
			{"missing redirect with one registered", func(q url.Values) {
				q.Set("client_id", "solo")
				q.Set("scope", "openid")
				q.Del("redirect_uri")
			}},
			{"extra path", func(q url.Values) { q.Set("redirect_uri", authzCallback+"/evil") }},
			{"prefix", func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:9999/call") }},
			{"other loopback port", func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:10000/callback") }},
			{"trailing slash", func(q url.Values) { q.Set("redirect_uri", authzCallback+"/") }},
			{"extra query", func(q url.Values) { q.Set("redirect_uri", authzCallback+"?x=1") }},
			{"case", func(q url.Values) { q.Set("redirect_uri", "https://APP.example/callback") }},
			{"another client's", func(q url.Values) { q.Set("redirect_uri", "https://solo.example/cb") }},
			{"twice", func(q url.Values) { q.Add("redirect_uri", "https://app.example/callback") }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				q := url.Values{}
				for k, v := range good.Query() {
					q[k] = slices.Clone(v)
				}
				tc.edit(q)
				page := e.get(t, e.browser, e.iss+"/authorize?"+q.Encode())
				if page.status != http.StatusBadRequest || page.header.Get("Location") != "" ||
					!strings.HasPrefix(page.header.Get("Content-Type"), "text/html") || !strings.Contains(page.body, "developer") {
					t.Fatalf("%d Location %q, want a 400 page and no redirect\n%s", page.status, page.header.Get("Location"), page.body)
				}
			})
		}
	})
}

func TestAuthorizeErrorsRedirectWithStateAndIss(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		good, _ := url.Parse(e.authURL(oauth2.GenerateVerifier()))
		for _, tc := range []struct {
			name, want string
			edit       func(q url.Values)
		}{
			{"no PKCE", "invalid_request", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }},
			{"plain PKCE", "invalid_request", func(q url.Values) { q.Set("code_challenge_method", "plain") }},
			{"PKCE without method", "invalid_request", func(q url.Values) { q.Del("code_challenge_method") }},
			{"malformed challenge", "invalid_request", func(q url.Values) { q.Set("code_challenge", "short") }},
			{"aud of another server", "invalid_request", func(q url.Values) { q.Set("aud", "https://fhir.example.org/other") }},
			{"aud with two trailing slashes", "invalid_request", func(q url.Values) { q.Set("aud", e.fhirBase+"//") }},
			{"no aud", "invalid_request", func(q url.Values) { q.Del("aud") }},
			{"resource of another server", "invalid_target", func(q url.Values) { q.Set("resource", "https://fhir.example.org/other") }},
			{"resource alone, of another server", "invalid_request", func(q url.Values) { q.Del("aud"); q.Set("resource", "https://fhir.example.org/other") }},
			{"implicit", "unsupported_response_type", func(q url.Values) { q.Set("response_type", "token") }},
			{"unregistered scope", "invalid_scope", func(q url.Values) { q.Set("scope", "openid user/*.cruds") }},
			{"silent sign-in", "login_required", func(q url.Values) { q.Set("prompt", "none") }},
			{"request object", "request_not_supported", func(q url.Values) { q.Set("request", "eyJhbGciOiJub25lIn0.e30.") }},
			{"short nonce", "invalid_request", func(q url.Values) { q.Set("nonce", "n") }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				q := url.Values{}
				for k, v := range good.Query() {
					q[k] = slices.Clone(v)
				}
				tc.edit(q)
				cb := authzCallbackParams(t, e.get(t, e.browser, e.iss+"/authorize?"+q.Encode()))
				if cb.Get("error") != tc.want || cb.Get("state") != authzState || cb.Get("iss") != e.iss || cb.Get("code") != "" {
					t.Fatalf("callback %v, want error %s with state and iss", cb, tc.want)
				}
				if strings.ContainsAny(cb.Get("error_description"), "\"\\") {
					t.Errorf("error_description %q has characters RFC 6749 forbids", cb.Get("error_description"))
				}
			})
		}

		// aud may differ from the registered base URL by one trailing slash.
		q := good.Query()
		q.Set("aud", e.fhirBase+"/")
		if page := e.get(t, e.browser, e.iss+"/authorize?"+q.Encode()); page.status != http.StatusOK {
			t.Fatalf("aud with a trailing slash: %d, want the sign-in page", page.status)
		}
	})
}

func TestSignInFailures(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		ctx := context.Background()
		disabled, err := srv.Manage.CreateUser(ctx, manage.UserInput{TenantID: authzTenant, Email: "gone@clinic.example", Password: authzPassword}, authzActor)
		if err != nil {
			t.Fatal(err)
		}
		disabled.Disabled = true
		if err := srv.Store.UpdateUser(ctx, disabled); err != nil {
			t.Fatal(err)
		}
		login := e.get(t, e.browser, e.authURL(oauth2.GenerateVerifier()))
		for _, tc := range []struct{ name, email, password string }{
			{"wrong password", authzEmail, "not the password at all"},
			{"unknown email", "nobody@clinic.example", authzPassword},
			{"disabled user", "gone@clinic.example", authzPassword},
		} {
			page := e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, tc.email, tc.password), nil)
			if page.status != http.StatusUnauthorized || page.header.Get("Location") != "" || page.hidden["ticket"] != "" ||
				!strings.Contains(page.body, "The email or password is not right.") || page.hidden["authz"] != login.hidden["authz"] {
				t.Errorf("%s: %d Location %q, want the sign-in page again with status 401\n%s", tc.name, page.status, page.header.Get("Location"), page.body)
			}
		}
		// Email first: without a password, an unrouted email is asked for
		// its password, which is no failure, and says nothing of the account.
		for _, email := range []string{authzEmail, "nobody@clinic.example"} {
			page := e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, email, ""), nil)
			if page.status != http.StatusOK || !strings.Contains(page.body, `autocomplete="current-password"`) || strings.Contains(page.body, "not right") {
				t.Errorf("email step for %s: %d, want the password step\n%s", email, page.status, page.body)
			}
		}
		if page := e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, "", ""), nil); page.status != http.StatusBadRequest {
			t.Errorf("no email: %d, want 400", page.status)
		}
		events, err := srv.Store.ListAudit(ctx, authzTenant, storage.AuditFilter{Type: "login.failure"})
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != 3 {
			t.Fatalf("%d login.failure events, want 3", len(events))
		}
		for _, ev := range events {
			if ev.Details["email"] == "" || strings.Contains(strings.Join(slices.Collect(maps.Values(ev.Details)), " "), "password at all") {
				t.Errorf("login.failure details %v: want the email and never the password", ev.Details)
			}
		}
		if strings.Contains(srv.Logs(), "not the password at all") {
			t.Error("a password reached the log")
		}
	})
}

func TestSignInAndConsentNeedCSRF(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		login := e.get(t, e.browser, e.authURL(oauth2.GenerateVerifier()))
		form := authzLoginForm(login, authzEmail, authzPassword)

		refused := func(name string, p authzPage) {
			t.Helper()
			if p.status != http.StatusForbidden || p.hidden["ticket"] != "" || p.header.Get("Location") != "" {
				t.Errorf("%s: %d, want 403\n%s", name, p.status, p.body)
			}
		}
		refused("no cookie", e.post(t, authzBrowser(t), e.iss+"/login", form, nil))
		noField := url.Values{}
		for k, v := range form {
			noField[k] = v
		}
		noField.Del("csrf_token")
		refused("no field", e.post(t, e.browser, e.iss+"/login", noField, nil))
		other := url.Values{}
		for k, v := range form {
			other[k] = v
		}
		other.Set("csrf_token", strings.Repeat("A", 43))
		refused("different field", e.post(t, e.browser, e.iss+"/login", other, nil))
		// Another browser's valid token is not this browser's.
		stranger := authzBrowser(t)
		strangerLogin := e.get(t, stranger, e.authURL(oauth2.GenerateVerifier()))
		refused("other browser's cookie", e.post(t, stranger, e.iss+"/login", form, nil))
		if strangerLogin.hidden["csrf_token"] == login.hidden["csrf_token"] {
			t.Fatal("two browsers got the same CSRF token")
		}
		refused("cross-site", e.post(t, e.browser, e.iss+"/login", form, map[string]string{"Sec-Fetch-Site": "cross-site"}))
		refused("sibling subdomain", e.post(t, e.browser, e.iss+"/login", form, map[string]string{"Sec-Fetch-Site": "same-site"}))

		consent := e.post(t, e.browser, e.iss+"/login", form, map[string]string{"Sec-Fetch-Site": "same-origin"})
		if consent.status != http.StatusOK {
			t.Fatalf("sign-in with the right token: %d", consent.status)
		}
		bad := consent
		bad.hidden = map[string]string{"csrf_token": "", "authz": consent.hidden["authz"], "ticket": consent.hidden["ticket"]}
		refused("consent without token", e.decide(t, bad, "allow", consent.offered(), nil))
	})
}

func TestConsentDeny(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		consent := e.signIn(t, e.authURL(oauth2.GenerateVerifier()))
		q := authzCallbackParams(t, e.decide(t, consent, "deny", nil, nil))
		if q.Get("error") != "access_denied" || q.Get("state") != authzState || q.Get("iss") != e.iss || q.Get("code") != "" {
			t.Fatalf("deny: callback %v, want access_denied with state and iss", q)
		}
		events, err := srv.Store.ListAudit(context.Background(), authzTenant, storage.AuditFilter{Type: "consent.deny"})
		if err != nil || len(events) != 1 || events[0].Subject != e.userID {
			t.Fatalf("consent.deny audit events %v, %v", events, err)
		}
	})
}

func TestConsentWithheldScopes(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		verifier := oauth2.GenerateVerifier()
		consent := e.signIn(t, e.authURL(verifier))
		kept := []string{"openid", "launch/patient"}
		// A scope that was not requested cannot be smuggled in by ticking it.
		q := authzCallbackParams(t, e.decide(t, consent, "allow", append(slices.Clone(kept), "user/*.cruds"), nil))
		tok, err := e.conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if got := tok.Extra("scope"); got != strings.Join(kept, " ") {
			t.Fatalf("token response scope %q, want %q", got, strings.Join(kept, " "))
		}
		if tok.RefreshToken != "" {
			t.Error("offline_access was withheld but a refresh token came back")
		}
		at, _ := authzVerify(t, e, tok.AccessToken, jose.ES256)
		if at["scope"] != strings.Join(kept, " ") {
			t.Errorf("access token scope %v", at["scope"])
		}
		id, _ := authzVerify(t, e, tok.Extra("id_token").(string), jose.RS256)
		if _, ok := id["fhirUser"]; ok {
			t.Error("fhirUser was withheld but the id_token carries it")
		}
		if _, ok := at["fhirUser"]; ok {
			t.Error("fhirUser was withheld but the access token carries it")
		}
		if got := e.introspector(t)(tok.AccessToken); got["fhirUser"] != nil {
			t.Errorf("fhirUser was withheld but introspection reports %v", got["fhirUser"])
		}
	})
}

func TestConsentTicketIsBound(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		consent := e.signIn(t, e.authURL(oauth2.GenerateVerifier()))
		stale := func(name string, p authzPage) {
			t.Helper()
			if p.status != http.StatusBadRequest || p.header.Get("Location") != "" || !strings.Contains(p.body, "sign in again") {
				t.Errorf("%s: %d Location %q, want a 400 page\n%s", name, p.status, p.header.Get("Location"), p.body)
			}
		}
		edited := func(field, value string) authzPage {
			p := consent
			p.hidden = map[string]string{}
			for k, v := range consent.hidden {
				p.hidden[k] = v
			}
			p.hidden[field] = value
			return p
		}
		ticket := consent.hidden["ticket"]
		payload, sig, _ := strings.Cut(ticket, ".")
		stale("forged signature", e.decide(t, edited("ticket", payload+"."+strings.Repeat("A", len(sig))), "allow", authzScopes, nil))
		stale("no ticket", e.decide(t, edited("ticket", ""), "allow", authzScopes, nil))

		// The ticket is for one request: the same sign-in cannot approve another.
		other, _ := url.Parse(e.authURL(oauth2.GenerateVerifier()))
		stale("other request", e.decide(t, edited("authz", other.Query().Encode()), "allow", authzScopes, nil))

		// Nor can another browser use it.
		stranger := authzBrowser(t)
		strangerLogin := e.get(t, stranger, e.authURL(oauth2.GenerateVerifier()))
		form := url.Values{"decision": {"allow"}, "scope": authzScopes, "csrf_token": {strangerLogin.hidden["csrf_token"]},
			"authz": {consent.hidden["authz"]}, "ticket": {ticket}}
		stale("other browser", e.post(t, stranger, e.iss+"/consent", form, nil))

		srv.Clock.Advance(11 * time.Minute)
		stale("expired", e.decide(t, consent, "allow", authzScopes, nil))
	})
}

func TestRoleChosenAtSignIn(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		u, err := srv.Store.GetUser(context.Background(), authzTenant, e.userID)
		if err != nil {
			t.Fatal(err)
		}
		u.Profiles = append(u.Profiles, storage.Profile{FHIRUser: "Patient/456", Label: "Patient"})
		if err := srv.Store.UpdateUser(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		verifier := oauth2.GenerateVerifier()
		login := e.get(t, e.browser, e.authURL(verifier))
		role := e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, authzEmail, authzPassword), nil)
		for _, want := range []string{`type="radio"`, `value="Practitioner/123"`, `value="Patient/456"`, "<legend>Act as</legend>", `action="` + e.iss + `/role"`} {
			if !strings.Contains(role.body, want) {
				t.Errorf("role page for two roles lacks %s", want)
			}
		}
		if p := e.post(t, e.browser, e.iss+"/role", stepForm(role, url.Values{}), nil); p.status != http.StatusBadRequest {
			t.Errorf("no role chosen: %d, want 400", p.status)
		}
		if p := e.post(t, e.browser, e.iss+"/role", stepForm(role, url.Values{"profile": {"Practitioner/999"}}), nil); p.status != http.StatusBadRequest {
			t.Errorf("a role the user does not hold: %d, want 400", p.status)
		}
		// Skipping the role page with its ticket does not reach a code.
		if p := e.decide(t, role, "allow", authzScopes, nil); p.status != http.StatusBadRequest || p.header.Get("Location") != "" {
			t.Errorf("consent before choosing a role: %d Location %q, want 400", p.status, p.header.Get("Location"))
		}
		// As a patient, the app is bound to their own record without a picker.
		consent := e.post(t, e.browser, e.iss+"/role", stepForm(role, url.Values{"profile": {"Patient/456"}}), nil)
		if consent.status != http.StatusOK || !strings.Contains(consent.body, `action="`+e.iss+`/consent"`) {
			t.Fatalf("after choosing the patient role: %d, want consent\n%s", consent.status, consent.body)
		}
		q := authzCallbackParams(t, e.decide(t, consent, "allow", consent.offered(), nil))
		tok, err := e.conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		at, _ := authzVerify(t, e, tok.AccessToken, jose.ES256)
		id, _ := authzVerify(t, e, tok.Extra("id_token").(string), jose.RS256)
		want := e.fhirBase + "/Patient/456"
		if at["fhirUser"] != want || id["fhirUser"] != want {
			t.Fatalf("fhirUser: access token %v, id_token %v, want %s", at["fhirUser"], id["fhirUser"], want)
		}
		if at["patient"] != "456" || tok.Extra("patient") != "456" {
			t.Errorf("patient: access token %v, token response %v, want 456", at["patient"], tok.Extra("patient"))
		}
	})
}

func TestCodeReuseRevokesTokens(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		introspect := e.introspector(t)
		verifier := oauth2.GenerateVerifier()
		code := e.code(t, verifier)

		status, first := e.redeem(t, code, verifier)
		access, _ := first["access_token"].(string)
		refresh, _ := first["refresh_token"].(string)
		if status != http.StatusOK || access == "" || refresh == "" {
			t.Fatalf("first redemption: %d %v", status, first)
		}
		if got := introspect(access); got["active"] != true || got["sub"] != e.userID {
			t.Errorf("fresh access token introspects as %v", got)
		}
		if st := authzUserinfo(t, e, access); st != http.StatusOK {
			t.Fatalf("userinfo with a fresh access token: %d", st)
		}

		status, second := e.redeem(t, code, verifier)
		if status != http.StatusBadRequest || second["error"] != "invalid_grant" {
			t.Fatalf("second redemption: %d %v, want 400 invalid_grant", status, second)
		}
		if st := authzUserinfo(t, e, access); st != http.StatusUnauthorized {
			t.Errorf("userinfo with the first access token after code reuse: %d, want 401", st)
		}
		if got := introspect(access); got["active"] != false {
			t.Errorf("after code reuse the first access token introspects as %v, want active:false", got)
		}
		if got := introspect(refresh); got["active"] != false {
			t.Errorf("after code reuse the refresh token introspects as %v, want active:false", got)
		}
		reuse, err := srv.Store.ListAudit(context.Background(), authzTenant, storage.AuditFilter{Type: "token.code_reuse"})
		if err != nil || len(reuse) != 1 || reuse[0].ClientID != authzClientID || reuse[0].Outcome != "failure" {
			t.Errorf("code reuse audit events: %+v %v", reuse, err)
		}
	})
}

func authzUserinfo(t *testing.T, e *authzEnv, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.iss+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestCodeExpiresAfterSixtySeconds(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		verifier := oauth2.GenerateVerifier()
		code := e.code(t, verifier)
		srv.Clock.Advance(61 * time.Second)
		_, err := e.conf.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
			t.Fatalf("redeeming a 61-second-old code: %v, want invalid_grant", err)
		}
	})
}

func TestCodeConcurrentRedemption(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		verifier := oauth2.GenerateVerifier()
		code := e.code(t, verifier)
		const n = 2
		statuses := make([]int, n)
		bodies := make([]map[string]any, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				statuses[i], bodies[i] = e.redeem(t, code, verifier)
			}()
		}
		close(start)
		wg.Wait()
		ok := 0
		for i, st := range statuses {
			switch {
			case st == http.StatusOK:
				ok++
			case bodies[i]["error"] != "invalid_grant":
				t.Errorf("losing redemption: %d %v, want invalid_grant", st, bodies[i])
			}
		}
		if ok != 1 {
			t.Fatalf("%d of %d concurrent redemptions got tokens (%v), want exactly 1", ok, n, statuses)
		}
	})
}

func TestAuthorizeResponseModeQuery(t *testing.T) {
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	e := authzSetup(t, srv)
	verifier := oauth2.GenerateVerifier()
	consent := e.signIn(t, e.authURL(verifier, oauth2.SetAuthURLParam("response_mode", "query")))
	q := authzCallbackParams(t, e.decide(t, consent, "allow", consent.offered(), nil))
	if q.Get("code") == "" || q.Get("iss") != e.iss {
		t.Fatalf("response_mode=query: %v", q)
	}
	for _, mode := range []string{"fragment", "form_post"} {
		p := e.get(t, e.browser, e.authURL(verifier, oauth2.SetAuthURLParam("response_mode", mode)))
		if p.status == http.StatusOK {
			t.Errorf("response_mode=%s was accepted; only query is supported", mode)
		}
	}
}

// TestAuthorizeResourceMeansAud: an app that names its FHIR server with
// RFC 8707's resource instead of SMART's aud gets tokens for it.
func TestAuthorizeResourceMeansAud(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	e := authzSetup(t, srv)
	verifier := oauth2.GenerateVerifier()
	u, _ := url.Parse(e.authURL(verifier))
	q := u.Query()
	q.Del("aud")
	q.Set("resource", e.fhirBase+"/")
	consent := e.signIn(t, e.iss+"/authorize?"+q.Encode())
	cb := authzCallbackParams(t, e.decide(t, consent, "allow", consent.offered(), nil))
	tok, err := e.conf.Exchange(context.Background(), cb.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	at, _ := authzVerify(t, e, tok.AccessToken, jose.ES256)
	if aud := authzAudience(at["aud"]); !slices.Equal(aud, []string{e.fhirBase}) {
		t.Errorf("access token aud %v, want [%s]", aud, e.fhirBase)
	}
}
