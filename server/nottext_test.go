package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/smartauth/smartauth/server"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// notTextSeeds are bytes no PostgreSQL text column holds, alone and inside
// ids and emails: a NUL, an overlong NUL, Latin-1, bytes never valid in
// UTF-8 and an encoded UTF-16 surrogate; and one plain value, so the
// probes are seen to pass with text as well.
var notTextSeeds = []string{
	"\x00", "app\x00", "\xc0\x80", "caf\xe9", "\xff\xfe", "\xed\xa0\x80",
	"dr.grey\x00@clinic.example", "pat-1\xff", "okafor",
}

// notTextEnv is a server with one of everything a request can name: a
// tenant, a public app, a confidential client, a user, a patient, an
// operator, and browsers part-way through sign-in.
type notTextEnv struct {
	srv                *servertest.Server
	iss                string
	confID, confSecret string
	backendToken       string
	opToken            string
	// browser has the tenant's CSRF cookie; login and picker are the hidden
	// fields of its sign-in page and of its patient picker.
	browser       *http.Client
	login, picker map[string]string
	// guest has the admin area's CSRF cookie, guestCSRF its value; admin is
	// a signed-in operator with adminCSRF.
	guest, admin         *http.Client
	guestCSRF, adminCSRF string
}

func newNotTextEnv(tb testing.TB, srv *servertest.Server) *notTextEnv {
	tb.Helper()
	ctx := context.Background()
	must := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
	}
	srv.Tenant(tb, "clinic")
	e := &notTextEnv{srv: srv, iss: srv.Issuer("clinic")}
	_, _, err := srv.Manage.CreateClient(ctx, manage.ClientInput{TenantID: "clinic", ID: "app", Name: "App", Type: storage.ClientPublic,
		RedirectURIs: []string{authzCallback}, Scopes: []string{"openid", "fhirUser", "launch", "launch/patient", "patient/*.rs"}}, testActor)
	must(err)
	conf, secret, err := srv.Manage.CreateClient(ctx, manage.ClientInput{TenantID: "clinic", Name: "EHR", Type: storage.ClientConfidentialSymmetric,
		Scopes: []string{"system/*.rs"}, GrantTypes: []string{manage.GrantClientCredentials, manage.GrantTokenExchange}, CanCreateLaunch: true}, testActor)
	must(err)
	e.confID, e.confSecret = conf.ID, secret
	_, e.backendToken = notTextToken(tb, e.iss+"/token", conf.ID, secret, "system/*.rs")
	_, err = srv.Manage.CreateUser(ctx, manage.UserInput{TenantID: "clinic", Email: authzEmail, Password: authzPassword,
		Profiles: []storage.Profile{{FHIRUser: "Practitioner/123"}}}, testActor)
	must(err)
	must(srv.Store.UpsertPatients(ctx, "clinic", []storage.Patient{{TenantID: "clinic", ID: "pat-1", Family: "Okafor", Given: "Ada",
		Resource: []byte(`{"resourceType":"Patient","id":"pat-1"}`)}}))
	must(srv.Manage.EnsureOperatorRealm(ctx))
	op, opSecret, err := srv.Manage.CreateClient(ctx, manage.ClientInput{TenantID: storage.OperatorRealm, Name: "automation",
		Type: storage.ClientConfidentialSymmetric, Scopes: []string{server.AdminScope}, GrantTypes: []string{manage.GrantClientCredentials}}, testActor)
	must(err)
	_, e.opToken = notTextToken(tb, srv.URL+"/admin/token", op.ID, opSecret, server.AdminScope)
	_, err = srv.Manage.CreateAdmin(ctx, "", operatorEmail, adminPassword, testActor)
	must(err)

	// A standalone launch asking for launch/patient: sign in, stop at the picker.
	e.browser = notTextBrowser(tb)
	authURL := e.iss + "/authorize?" + url.Values{"client_id": {"app"}, "redirect_uri": {authzCallback}, "response_type": {"code"},
		"scope": {"openid launch/patient patient/*.rs"}, "aud": {"https://fhir.example.org/clinic"}, "state": {authzState},
		"code_challenge": {strings.Repeat("c", 43)}, "code_challenge_method": {"S256"}}.Encode()
	status, body := notTextDo(tb, e.browser, mustRequest(tb, http.MethodGet, authURL, nil))
	e.login = hiddenFields(body)
	if status != http.StatusOK || e.login["authz"] == "" {
		tb.Fatalf("sign-in page: %d\n%s", status, body)
	}
	form := url.Values{"csrf_token": {e.login["csrf_token"]}, "authz": {e.login["authz"]}, "email": {authzEmail}, "password": {authzPassword}}
	status, body = notTextDo(tb, e.browser, formRequest(tb, http.MethodPost, e.iss+"/login", form))
	e.picker = hiddenFields(body)
	if status != http.StatusOK || e.picker["ticket"] == "" || !strings.Contains(body, `action="`+e.iss+`/patient"`) {
		tb.Fatalf("after sign-in: %d, want the patient picker\n%s", status, body)
	}

	// A stranger at the admin sign-in page, and a signed-in operator.
	e.guest = notTextBrowser(tb)
	status, body = notTextDo(tb, e.guest, mustRequest(tb, http.MethodGet, srv.URL+"/admin/login", nil))
	e.guestCSRF = hiddenFields(body)["csrf_token"]
	if status != http.StatusOK || e.guestCSRF == "" {
		tb.Fatalf("admin sign-in page: %d\n%s", status, body)
	}
	e.admin = notTextBrowser(tb)
	_, body = notTextDo(tb, e.admin, mustRequest(tb, http.MethodGet, srv.URL+"/admin/login", nil))
	e.adminCSRF = hiddenFields(body)["csrf_token"]
	_, body = notTextDo(tb, e.admin, formRequest(tb, http.MethodPost, srv.URL+"/admin/login",
		url.Values{"csrf_token": {e.adminCSRF}, "email": {operatorEmail}, "password": {adminPassword}}))
	m := manualKey.FindStringSubmatch(body)
	if m == nil {
		tb.Fatalf("no second-factor enrollment after the operator's password:\n%s", body)
	}
	code, err := totp.GenerateCodeCustom(strings.ReplaceAll(m[1], " ", ""), srv.Clock.Now(),
		totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	must(err)
	notTextDo(tb, e.admin, formRequest(tb, http.MethodPost, srv.URL+"/admin/mfa/enroll", url.Values{"csrf_token": {e.adminCSRF}, "code": {code}}))
	if status, body := notTextDo(tb, e.admin, mustRequest(tb, http.MethodGet, srv.URL+"/admin/t/clinic/users", nil)); status != http.StatusOK {
		tb.Fatalf("operator not signed in: %d\n%s", status, body)
	}
	return e
}

// notTextToken gets a client_credentials token, for setup.
func notTextToken(tb testing.TB, endpoint, id, secret, scope string) (int, string) {
	tb.Helper()
	status, body := postForm(tb, endpoint, url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}, id, secret)
	token, _ := body["access_token"].(string)
	if status != http.StatusOK || token == "" {
		tb.Fatalf("client_credentials at %s: %d %v", endpoint, status, body)
	}
	return status, token
}

// notTextBrowser keeps cookies and follows no redirect.
func notTextBrowser(tb testing.TB) *http.Client {
	tb.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func hiddenFields(body string) map[string]string {
	out := map[string]string{}
	for _, m := range authzHiddenInput.FindAllStringSubmatch(body, -1) {
		out[m[1]] = html.UnescapeString(m[2])
	}
	return out
}

func mustRequest(tb testing.TB, method, u string, body io.Reader) *http.Request {
	tb.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		tb.Fatal(err)
	}
	return req
}

func formRequest(tb testing.TB, method, u string, form url.Values) *http.Request {
	tb.Helper()
	req := mustRequest(tb, method, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req
}

func jsonRequest(tb testing.TB, method, u, token string, body any) *http.Request {
	tb.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		tb.Fatal(err)
	}
	req := mustRequest(tb, method, u, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// notTextDo sends a request and returns the status and body.
func notTextDo(tb testing.TB, c *http.Client, req *http.Request) (int, string) {
	tb.Helper()
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// headerSafe is bad with the bytes no HTTP header may carry (controls,
// NUL among them) replaced, keeping those a lenient client would send.
func headerSafe(bad string) string {
	b := []byte(bad)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = 'x'
		}
	}
	return string(b)
}

// basicHeader is an Authorization header of client_secret_basic (RFC 6749 §2.3.1).
func basicHeader(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// notTextProbe builds one request of a route family with bad in its ids,
// emails, path or parameters, and names the client that sends it.
type notTextProbe struct {
	name string
	req  func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request)
}

func notTextProbes() []notTextProbe {
	// Without cookies, and stopping at redirects, which may lead to the app.
	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	esc := url.PathEscape
	post := func(tb testing.TB, c *http.Client, u string, f url.Values, auth string) (*http.Client, *http.Request) {
		req := formRequest(tb, http.MethodPost, u, f)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		return c, req
	}
	get := func(tb testing.TB, c *http.Client, u string, auth string) (*http.Client, *http.Request) {
		req := mustRequest(tb, http.MethodGet, u, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		return c, req
	}
	authorize := func(e *notTextEnv, override url.Values) url.Values {
		v := url.Values{"client_id": {"app"}, "redirect_uri": {authzCallback}, "response_type": {"code"}, "scope": {"openid launch"},
			"aud": {"https://fhir.example.org/clinic"}, "state": {authzState}, "launch": {"l-1"},
			"code_challenge": {strings.Repeat("c", 43)}, "code_challenge_method": {"S256"}}
		for k, vs := range override {
			v[k] = vs
		}
		return v
	}
	return []notTextProbe{
		// Discovery and pages: the tenant in the path, any path.
		{"discovery tenant", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return get(tb, plain, e.srv.URL+"/t/"+esc(bad)+"/.well-known/smart-configuration", "")
		}},
		{"unknown path", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return get(tb, plain, e.iss+"/"+esc(bad)+"?q="+url.QueryEscape(bad), "")
		}},
		// Authorization: client_id, then every other parameter of a known client.
		{"authorize client_id", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return get(tb, plain, e.iss+"/authorize?"+authorize(e, url.Values{"client_id": {bad}}).Encode(), "")
		}},
		{"authorize-post client_id", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, plain, e.iss+"/authorize", authorize(e, url.Values{"client_id": {bad}}), "")
		}},
		{"authorize launch", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return get(tb, e.browser, e.iss+"/authorize?"+authorize(e, url.Values{"launch": {bad}}).Encode(), "")
		}},
		{"authorize scope, aud, state, login_hint", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return get(tb, e.browser, e.iss+"/authorize?"+authorize(e, url.Values{"scope": {"openid " + bad}, "aud": {bad},
				"state": {bad}, "login_hint": {bad}, bad: {bad}}).Encode(), "")
		}},
		// Token: each way a client names itself, and each credential looked up.
		{"token client_id", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, plain, e.iss+"/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {bad}, "code": {"a.b"},
				"redirect_uri": {authzCallback}, "code_verifier": {strings.Repeat("v", 43)}}, "")
		}},
		{"token Basic client id", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, plain, e.iss+"/token", url.Values{"grant_type": {"client_credentials"}}, basicHeader(bad, "secret"))
		}},
		{"token code", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, plain, e.iss+"/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {"app"}, "code": {bad + "." + bad},
				"redirect_uri": {authzCallback}, "code_verifier": {strings.Repeat("v", 43)}}, "")
		}},
		{"token refresh_token", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, plain, e.iss+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {bad + "." + bad}}, "")
		}},
		{"token scope and audience", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, plain, e.iss+"/token", url.Values{"grant_type": {"client_credentials"}, "scope": {bad},
				"audience": {bad}, "resource": {bad}}, basicHeader(e.confID, e.confSecret))
		}},
		{"token client_assertion", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, plain, e.iss+"/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {bad},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {bad}}, "")
		}},
		{"token exchange", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, plain, e.iss+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
				"subject_token": {bad}, "subject_token_type": {"urn:ietf:params:oauth:token-type:id_token"}, "audience": {bad}},
				basicHeader(e.confID, e.confSecret))
		}},
		{"operator token Basic client id", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, plain, e.srv.URL+"/admin/token", url.Values{"grant_type": {"client_credentials"}}, basicHeader(bad, "secret"))
		}},
		// Introspection and revocation: the client, then the token.
		{"introspect client_id", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, plain, e.iss+"/introspect", url.Values{"token": {"x"}, "client_id": {bad}, "client_secret": {"s"}}, "")
		}},
		{"introspect token", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, plain, e.iss+"/introspect", url.Values{"token": {bad + "." + bad}, "token_type_hint": {"refresh_token"}},
				basicHeader(e.confID, e.confSecret))
		}},
		{"revoke client_id", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, plain, e.iss+"/revoke", url.Values{"token": {"x"}, "client_id": {bad}}, "")
		}},
		{"revoke token", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, plain, e.iss+"/revoke", url.Values{"token": {bad + "." + bad}}, basicHeader(e.confID, e.confSecret))
		}},
		// Bearer APIs: the token itself, and JSON bodies.
		{"userinfo token", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, plain, e.iss+"/userinfo", url.Values{"access_token": {bad}}, "")
		}},
		{"userinfo bearer header", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return get(tb, plain, e.iss+"/userinfo", "Bearer "+headerSafe(bad)+"."+headerSafe(bad))
		}},
		{"launch bearer header", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return plain, jsonRequest(tb, http.MethodPost, e.iss+"/launch", headerSafe(bad)+"."+headerSafe(bad), map[string]any{"client_id": "app"})
		}},
		{"API bearer header", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return get(tb, plain, e.srv.URL+"/admin/api/v1/tenants/clinic/clients", "Bearer "+headerSafe(bad)+"."+headerSafe(bad))
		}},
		{"register token", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return plain, jsonRequest(tb, http.MethodPost, e.iss+"/register", url.QueryEscape(bad), map[string]any{"client_name": bad})
		}},
		{"register metadata", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			token, _, err := e.srv.Manage.CreateInitialAccessToken(context.Background(), "clinic", 0, manage.InitialAccessAllowance{}, testActor)
			if err != nil {
				tb.Fatal(err)
			}
			return plain, jsonRequest(tb, http.MethodPost, e.iss+"/register", token, map[string]any{"client_name": "App " + bad,
				"token_endpoint_auth_method": "none", "redirect_uris": []string{"https://app.example/" + bad}, "scope": "launch/patient " + bad})
		}},
		{"launch context", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return plain, jsonRequest(tb, http.MethodPost, e.iss+"/launch", e.backendToken, map[string]any{"client_id": bad, "patient": bad})
		}},
		// Sign-in steps: the email, the request carried in the form, the picker's search.
		{"login email", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, e.browser, e.iss+"/login", url.Values{"csrf_token": {e.login["csrf_token"]}, "authz": {e.login["authz"]},
				"email": {bad}, "password": {"wrong"}}, "")
		}},
		{"login email alone", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, e.browser, e.iss+"/login", url.Values{"csrf_token": {e.login["csrf_token"]}, "authz": {e.login["authz"]},
				"email": {"someone@" + bad}}, "")
		}},
		{"login request", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, e.browser, e.iss+"/login", url.Values{"csrf_token": {e.login["csrf_token"]},
				"authz": {authorize(e, url.Values{"client_id": {bad}, "launch": nil, "scope": {"openid"}}).Encode()}, "email": {authzEmail}}, "")
		}},
		{"patient search", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			f := url.Values{"name": {bad}, "birthdate": {bad}, "identifier": {bad}}
			for k, v := range e.picker {
				f.Set(k, v)
			}
			return post(tb, e.browser, e.iss+"/patient", f, "")
		}},
		{"patient choice", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			f := url.Values{"patient": {bad}}
			for k, v := range e.picker {
				f.Set(k, v)
			}
			return post(tb, e.browser, e.iss+"/patient", f, "")
		}},
		{"consent ticket", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, e.browser, e.iss+"/consent", url.Values{"csrf_token": {e.login["csrf_token"]}, "authz": {e.login["authz"]},
				"ticket": {bad}, "decision": {"allow"}, "scope": {bad}}, "")
		}},
		{"federation callback", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return get(tb, e.browser, e.iss+"/federation/callback?"+url.Values{"state": {bad}, "code": {bad}}.Encode(), "")
		}},
		{"logout", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return get(tb, e.browser, e.iss+"/logout?"+url.Values{"client_id": {bad}, "post_logout_redirect_uri": {bad},
				"id_token_hint": {bad}, "state": {bad}}.Encode(), "")
		}},
		// The admin area: sign-in, and a signed-in operator's pages.
		{"admin login email", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, e.guest, e.srv.URL+"/admin/login", url.Values{"csrf_token": {e.guestCSRF}, "email": {bad}, "password": {"x"}}, "")
		}},
		{"tenant admin login email", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, e.guest, e.srv.URL+"/admin/t/clinic/login", url.Values{"csrf_token": {e.guestCSRF}, "email": {bad}, "password": {"x"}}, "")
		}},
		{"admin user page", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return get(tb, e.admin, e.srv.URL+"/admin/t/clinic/users/"+esc(bad), "")
		}},
		{"admin client page", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return get(tb, e.admin, e.srv.URL+"/admin/t/clinic/clients/"+esc(bad)+"/edit", "")
		}},
		{"admin patient search", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return get(tb, e.admin, e.srv.URL+"/admin/t/clinic/patients?"+url.Values{"name": {bad}, "identifier": {bad}}.Encode(), "")
		}},
		{"admin new user", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return post(tb, e.admin, e.srv.URL+"/admin/t/clinic/users", url.Values{"csrf_token": {e.adminCSRF}, "email": {bad + "@clinic.example"},
				"password": {"a long enough password"}}, "")
		}},
		{"admin roster import", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			var body bytes.Buffer
			mw := multipart.NewWriter(&body)
			_ = mw.WriteField("csrf_token", e.adminCSRF)
			fw, _ := mw.CreateFormFile("roster", "patients.ndjson")
			// Raw bytes inside JSON strings, and NUL as JSON spells it.
			io.WriteString(fw, `{"resourceType":"Patient","id":"p-`+bad+`","name":[{"family":"`+bad+`"}]}`+"\n")
			io.WriteString(fw, `{"resourceType":"Patient","id":"p-nul","name":[{"family":"a\u0000b"}],"identifier":[{"value":"\u0000"}]}`+"\n")
			_ = mw.Close()
			req := mustRequest(tb, http.MethodPost, e.srv.URL+"/admin/t/clinic/patients/import", &body)
			req.Header.Set("Content-Type", mw.FormDataContentType())
			return e.admin, req
		}},
		// The admin API: ids in paths, search parameters and JSON bodies.
		{"API tenant", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return get(tb, plain, e.srv.URL+"/admin/api/v1/tenants/"+esc(bad), "Bearer "+e.opToken)
		}},
		{"API client", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return get(tb, plain, e.srv.URL+"/admin/api/v1/tenants/clinic/clients/"+esc(bad), "Bearer "+e.opToken)
		}},
		{"API user", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return get(tb, plain, e.srv.URL+"/admin/api/v1/tenants/clinic/users/"+esc(bad), "Bearer "+e.opToken)
		}},
		{"API user update", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return plain, jsonRequest(tb, http.MethodPatch, e.srv.URL+"/admin/api/v1/tenants/clinic/users/"+esc(bad), e.opToken, map[string]any{"disabled": true})
		}},
		{"API new user", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return plain, jsonRequest(tb, http.MethodPost, e.srv.URL+"/admin/api/v1/tenants/clinic/users", e.opToken,
				map[string]any{"email": bad + "@clinic.example", "profiles": []map[string]string{{"fhir_user": "Patient/" + bad}}})
		}},
		{"API identity provider", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return plain, jsonRequest(tb, http.MethodDelete, e.srv.URL+"/admin/api/v1/tenants/clinic/idps/"+esc(bad), e.opToken, nil)
		}},
		{"API domain route", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return plain, jsonRequest(tb, http.MethodDelete, e.srv.URL+"/admin/api/v1/tenants/clinic/domain-routes/"+esc(bad), e.opToken, nil)
		}},
		{"API patient search", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return get(tb, plain, e.srv.URL+"/admin/api/v1/tenants/clinic/patients?"+url.Values{"name": {bad}, "identifier": {bad}}.Encode(), "Bearer "+e.opToken)
		}},
		{"API consent", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return plain, jsonRequest(tb, http.MethodDelete, e.srv.URL+"/admin/api/v1/tenants/clinic/consents/"+esc(bad)+"/"+esc(bad), e.opToken, nil)
		}},
		{"API key", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return plain, jsonRequest(tb, http.MethodPost, e.srv.URL+"/admin/api/v1/tenants/clinic/keys/"+esc(bad)+"/retire", e.opToken, nil)
		}},
		{"API initial access token", func(tb testing.TB, e *notTextEnv, bad string) (*http.Client, *http.Request) {
			return plain, jsonRequest(tb, http.MethodDelete, e.srv.URL+"/admin/api/v1/tenants/clinic/initial-access-tokens/"+esc(bad), e.opToken, nil)
		}},
	}
}

// FuzzNotText sends text no database can hold (invalid UTF-8, NUL) in
// every kind of id, email, path and parameter, on every backend: each is
// the client's mistake, answered with a 4xx, and nothing fails on the
// server's side, not even quietly in the log.
func FuzzNotText(f *testing.F) {
	for _, s := range notTextSeeds {
		f.Add(s)
	}
	var envs []*notTextEnv
	for _, b := range servertest.Backends() {
		envs = append(envs, newNotTextEnv(f, servertest.Start(f, b.Open(f))))
	}
	probes := notTextProbes()
	f.Fuzz(func(t *testing.T, bad string) {
		for i, e := range envs {
			logged := len(e.srv.Logs())
			for _, p := range probes {
				c, req := p.req(t, e, bad)
				if status, body := notTextDo(t, c, req); status >= 500 {
					t.Errorf("%s, %s, %q: %d\n%s", servertest.Backends()[i].Name, p.name, bad, status, body)
				}
			}
			for _, line := range strings.Split(e.srv.Logs()[logged:], "\n") {
				if strings.Contains(line, `"level":"ERROR"`) {
					t.Errorf("%s, %q: the server logged a failure: %s", servertest.Backends()[i].Name, bad, line)
				}
			}
		}
	})
}

// TestJSONWithNULRefused sends a NUL, as JSON writes it, in the fields of
// JSON APIs: refused as the client's mistake on every backend, before
// anything is stored or used up.
func TestJSONWithNULRefused(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := apiSetup(t, srv)
		r := apiCall(t, http.MethodPost, e.v1+"/tenants/acme/users", e.opToken, "", `{"email":"a\u0000b@acme.example"}`)
		apiWant(t, "new user with a NUL in the email", r, http.StatusBadRequest, "invalid_request")
		if users, err := srv.Store.ListUsers(context.Background(), "acme"); err != nil || len(users) != 0 {
			t.Errorf("users after the refusal: %d, %v", len(users), err)
		}

		token := initialToken(t, srv, "acme", userFacing)
		res := postRegistration(t, srv, "acme", token, `{"client_name":"Chart\u0000","token_endpoint_auth_method":"none",
			"redirect_uris":["https://chart.example/cb"],"scope":"launch/patient"}`)
		if res.status != http.StatusBadRequest || res.body["error"] != manage.ErrCodeInvalidClientMetadata {
			t.Errorf("registration with a NUL in the name: %d %v", res.status, res.body)
		}
		// The token was not used up by a registration that could not succeed.
		res = postRegistration(t, srv, "acme", token, `{"client_name":"Chart","token_endpoint_auth_method":"none",
			"redirect_uris":["https://chart.example/cb"],"scope":"launch/patient"}`)
		if res.status != http.StatusCreated {
			t.Errorf("registration after the refusal: %d %v", res.status, res.body)
		}
	})
}
