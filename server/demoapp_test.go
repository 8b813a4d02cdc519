package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/smartauth/smartauth/server"
	"github.com/smartauth/smartauth/server/browsertest"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

const (
	demoAppTenant   = "clinic"
	demoAppClientID = "demo-app"
	demoAppEmail    = "dr.demo@clinic.example"
	demoAppPassword = "a demo passphrase for the browser"
	// demoAppScope is a standalone launch without patient context.
	demoAppScope = "openid fhirUser user/*.rs offline_access"
)

// demoAppEnv is a tenant with the demo app registered and one clinician.
type demoAppEnv struct {
	srv      *servertest.Server
	iss      string
	fhirBase string
}

func demoAppSetup(t *testing.T, srv *servertest.Server) *demoAppEnv {
	t.Helper()
	ctx := context.Background()
	tn := srv.Tenant(t, demoAppTenant)
	if _, _, err := srv.Manage.CreateClient(ctx, manage.ClientInput{
		TenantID: demoAppTenant, ID: demoAppClientID, Name: "Demo app", Type: storage.ClientPublic,
		RedirectURIs: []string{srv.URL + "/demo-app/"},
		Scopes:       []string{"openid fhirUser launch launch/patient offline_access patient/*.rs user/*.rs"},
		LaunchURI:    srv.URL + "/demo-app/?tenant=" + demoAppTenant,
	}, manage.Actor{ID: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Manage.CreateUser(ctx, manage.UserInput{TenantID: demoAppTenant, Email: demoAppEmail, Password: demoAppPassword,
		Profiles: []storage.Profile{{FHIRUser: "Practitioner/123", Label: "Attending physician"}}}, manage.Actor{ID: "test"}); err != nil {
		t.Fatal(err)
	}
	return &demoAppEnv{srv: srv, iss: srv.Issuer(demoAppTenant), fhirBase: tn.FHIRBaseURLs[0]}
}

// appURL is the demo app's address as the start-up banner prints it.
func (e *demoAppEnv) appURL() string {
	return e.srv.URL + "/demo-app/?" + url.Values{"tenant": {demoAppTenant}, "iss": {e.fhirBase}}.Encode()
}

// start opens the app, starts a standalone launch with scope and returns
// the authorization request the app sent, as the sign-in page's address.
func (e *demoAppEnv) start(t *testing.T, tab *browsertest.Tab, scope string) url.Values {
	t.Helper()
	tab.Navigate(e.appURL())
	tab.WaitFor(`document.body.dataset.status === "ready"`)
	if got := browsertest.Eval[string](tab, `document.getElementById("aud").value`); got != e.fhirBase {
		t.Errorf("the form's FHIR server is %q, want %q from iss", got, e.fhirBase)
	}
	if status := tab.Navigating(chromedp.SetValue(chromedp.CSS("#scope"), scope), chromedp.Click(chromedp.CSS("#start"))); status != http.StatusOK {
		t.Fatalf("the authorization endpoint answered %d", status)
	}
	u, err := url.Parse(tab.Location())
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Scheme + "://" + u.Host + u.Path; got != e.iss+"/authorize" {
		t.Fatalf("the app went to %s, want the tenant's authorization endpoint", got)
	}
	return u.Query()
}

// signIn fills in the sign-in page and waits for the consent page.
func (e *demoAppEnv) signIn(t *testing.T, tab *browsertest.Tab) {
	t.Helper()
	if status := signInInBrowser(t, tab, demoAppEmail, demoAppPassword); status != http.StatusOK {
		t.Fatalf("sign-in answered %d, want the consent page", status)
	}
	tab.Text(`button[name="decision"][value="allow"]`)
}

// decide clicks Allow or Deny and waits until the app has finished with the response.
func (e *demoAppEnv) decide(t *testing.T, tab *browsertest.Tab, decision string) string {
	t.Helper()
	tab.Navigating(chromedp.Click(chromedp.CSS(`button[name="decision"][value="` + decision + `"]`)))
	tab.WaitFor(`["done", "error"].includes(document.body.dataset.status)`)
	// The result (or the error) stands alone: no empty Start form above it.
	if display := browsertest.Eval[string](tab, `getComputedStyle(document.getElementById("start-form")).display`); display != "none" {
		t.Errorf("the start form shows (display %s) on the result view", display)
	}
	return browsertest.Eval[string](tab, `document.body.dataset.status`)
}

// shownJSON reads a JSON document the app shows in an element.
func shownJSON(t *testing.T, tab *browsertest.Tab, selector string) map[string]any {
	t.Helper()
	var v map[string]any
	text := tab.Text(selector)
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		t.Fatalf("%s does not show JSON: %v\n%s", selector, err, text)
	}
	return v
}

// jwtPayload decodes a JWT's payload without verifying it, as the app does.
func jwtPayload(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// noConsoleErrors fails the test on any console error: a Content Security
// Policy refusal, a failed request or an exception in the app.
func noConsoleErrors(t *testing.T, tab *browsertest.Tab) {
	t.Helper()
	if errs := tab.ConsoleErrors(); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}

var pkceS256 = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

func TestDemoAppStandaloneLaunch(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := demoAppSetup(t, srv)
		tab := browsertest.New(t)

		req := e.start(t, tab, demoAppScope)
		for k, want := range map[string]string{
			"response_type": "code", "client_id": demoAppClientID, "redirect_uri": srv.URL + "/demo-app/",
			"scope": demoAppScope, "aud": e.fhirBase, "code_challenge_method": "S256",
		} {
			if got := req.Get(k); got != want {
				t.Errorf("authorization request %s = %q, want %q", k, got, want)
			}
		}
		if !pkceS256.MatchString(req.Get("code_challenge")) || len(req.Get("state")) < 32 || req.Has("launch") {
			t.Errorf("authorization request: code_challenge %q, state %q, launch %q", req.Get("code_challenge"), req.Get("state"), req.Get("launch"))
		}

		e.signIn(t, tab)
		if status := e.decide(t, tab, "allow"); status != "done" {
			t.Fatalf("the app ended in %q: %s", status, tab.PageText())
		}

		resp := shownJSON(t, tab, "#token-response")
		want := strings.Fields(demoAppScope)
		if got := strings.Fields(resp["scope"].(string)); !sameSet(got, want) {
			t.Errorf("granted scope %v, want %v", got, want)
		}
		if got := tab.Text("#granted-scope"); got != resp["scope"] {
			t.Errorf("the app shows granted scope %q, the response says %q", got, resp["scope"])
		}
		for _, k := range []string{"access_token", "refresh_token", "id_token"} {
			if s, _ := resp[k].(string); s == "" {
				t.Errorf("token response has no %s: %v", k, resp)
			}
		}

		access := shownJSON(t, tab, "#access-token-payload")
		if access["iss"] != e.iss {
			t.Errorf("access token iss %v, want %s", access["iss"], e.iss)
		}
		if aud := access["aud"]; aud != e.fhirBase && !slices.Contains(anyStrings(aud), e.fhirBase) {
			t.Errorf("access token aud %v, want %s", aud, e.fhirBase)
		}
		if token, _ := resp["access_token"].(string); token != "" && !jsonEqual(access, jwtPayload(t, token)) {
			t.Errorf("the app's decoded payload %v differs from the token's %v", access, jwtPayload(t, token))
		}
		if header := shownJSON(t, tab, "#access-token-header"); header["alg"] == nil {
			t.Errorf("access token header without alg: %v", header)
		}

		fhirUser := e.fhirBase + "/Practitioner/123"
		if id := shownJSON(t, tab, "#id-token-payload"); id["fhirUser"] != fhirUser {
			t.Errorf("id_token fhirUser %v, want %s", id["fhirUser"], fhirUser)
		}
		if got := tab.Text("#context-fhir-user"); got != fhirUser {
			t.Errorf("the app shows fhirUser %q, want %q", got, fhirUser)
		}
		if got := tab.Text("#context-patient"); got != "none" {
			t.Errorf("the app shows patient %q without patient context", got)
		}

		// The single-use code leaves the address bar, and the flow's state
		// (the PKCE verifier) leaves storage.
		if loc := tab.Location(); loc != srv.URL+"/demo-app/" {
			t.Errorf("address after the exchange: %s", loc)
		}
		if n := browsertest.Eval[int](tab, `sessionStorage.length`); n != 0 {
			t.Errorf("%d items left in sessionStorage", n)
		}
		noConsoleErrors(t, tab)
	})
}

func TestDemoAppShowsDenial(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := demoAppSetup(t, srv)
		tab := browsertest.New(t)
		e.start(t, tab, demoAppScope)
		e.signIn(t, tab)
		if status := e.decide(t, tab, "deny"); status != "error" {
			t.Fatalf("the app ended in %q after a denial: %s", status, tab.PageText())
		}
		if got := tab.Text("#error-code"); got != "access_denied" {
			t.Errorf("the app shows error %q, want access_denied", got)
		}
		if tab.Text("#error-description") == "" {
			t.Error("the app shows no error_description")
		}
		if browsertest.Eval[bool](tab, `!document.getElementById("result").hidden`) {
			t.Error("the app shows a token response after a denial")
		}
		noConsoleErrors(t, tab)
	})
}

// TestDemoAppEHRLaunch opens the app at the launch URL an EHR gets for a
// launch context; the app starts at once, and the context reaches its tokens.
func TestDemoAppEHRLaunch(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	e := demoAppSetup(t, srv)
	launch, err := srv.Manage.LaunchApp(context.Background(), manage.LaunchInput{
		TenantID: demoAppTenant, ClientID: demoAppClientID, Patient: "p-42", Encounter: "e-7",
	}, manage.Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	tab := browsertest.New(t)
	tab.Navigate(launch.LaunchURL)
	tab.Text(`input[name="email"]`)
	u, err := url.Parse(tab.Location())
	if err != nil {
		t.Fatal(err)
	}
	req := u.Query()
	if req.Get("launch") != launch.Launch || !slices.Contains(strings.Fields(req.Get("scope")), "launch") || req.Get("aud") != e.fhirBase {
		t.Fatalf("EHR launch request: launch %q, scope %q, aud %q", req.Get("launch"), req.Get("scope"), req.Get("aud"))
	}
	e.signIn(t, tab)
	if status := e.decide(t, tab, "allow"); status != "done" {
		t.Fatalf("the app ended in %q: %s", status, tab.PageText())
	}
	resp := shownJSON(t, tab, "#token-response")
	if resp["patient"] != "p-42" || resp["encounter"] != "e-7" {
		t.Errorf("token response context: patient %v, encounter %v", resp["patient"], resp["encounter"])
	}
	if got := tab.Text("#context-patient"); got != "p-42" {
		t.Errorf("the app shows patient %q, want p-42", got)
	}
	if got := tab.Text("#context-encounter"); got != "e-7" {
		t.Errorf("the app shows encounter %q, want e-7", got)
	}
	noConsoleErrors(t, tab)
}

// TestDemoAppRefusesForeignResponses checks that the app redeems a code
// only for a request it made in this tab, from the issuer it asked.
func TestDemoAppRefusesForeignResponses(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	e := demoAppSetup(t, srv)
	tab := browsertest.New(t)

	tab.Navigate(srv.URL + "/demo-app/?" + url.Values{"code": {"forged"}, "state": {"unknown-state"}, "iss": {e.iss}}.Encode())
	tab.WaitFor(`document.body.dataset.status === "error"`)
	if got := tab.Text("#error-code"); got != "invalid_state" {
		t.Errorf("a response with an unknown state: the app shows %q, want invalid_state", got)
	}

	// A response to a real request, but naming another issuer (a mix-up).
	req := e.start(t, tab, demoAppScope)
	tab.Navigate(srv.URL + "/demo-app/?" + url.Values{"code": {"forged"}, "state": {req.Get("state")}, "iss": {"https://attacker.example/t/clinic"}}.Encode())
	tab.WaitFor(`document.body.dataset.status === "error"`)
	if got := tab.Text("#error-code"); got != "invalid_issuer" {
		t.Errorf("a response from another issuer: the app shows %q, want invalid_issuer", got)
	}
	if strings.Contains(srv.Logs(), e.iss+"/token") || strings.Contains(srv.Logs(), `"/t/clinic/token"`) {
		t.Error("the app sent a refused response's code to the token endpoint")
	}
}

func TestDemoAppServed(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	resp, err := http.Get(srv.URL + "/demo-app/?tenant=clinic&iss=https://fhir.example.org/clinic")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /demo-app/: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("demo app CSP %q lacks %s", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") || strings.Contains(csp, "*") {
		t.Errorf("demo app CSP %q is not strict", csp)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("demo app page Cache-Control %q; its address carries codes", resp.Header.Get("Cache-Control"))
	}
	page := string(body)
	if !strings.Contains(page, `<script src="/demo-app/app.js" defer></script>`) || strings.Count(page, "<script") != 1 || strings.Contains(page, "style=") {
		t.Error("the demo app page must load only its own script, with no inline script or style")
	}
	if strings.Contains(page, "//cdn") || strings.Contains(page, "https://") {
		t.Error("the demo app page loads something from elsewhere")
	}

	for path, ctype := range map[string]string{"/demo-app/app.js": "text/javascript", "/demo-app/app.css": "text/css"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		etag := resp.Header.Get("ETag")
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || etag == "" {
			t.Errorf("GET %s: %d %q ETag %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), etag)
			continue
		}
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("If-None-Match", etag)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("conditional GET %s: %d, want 304", path, resp.StatusCode)
		}
	}
	for _, path := range []string{"/demo-app/index.html", "/demo-app/nope.js", "/demo-app/app.js/"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func anyStrings(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func jsonEqual(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// withGateway makes the tenant's gateway one of its FHIR base URLs and, when
// upstream is not empty, has the gateway forward there.
func (e *demoAppEnv) withGateway(t *testing.T, upstream string) string {
	t.Helper()
	ctx := context.Background()
	gw := e.iss + "/fhir"
	tn, err := e.srv.Store.GetTenant(ctx, demoAppTenant)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tn.FHIRBaseURLs, gw) {
		if _, err := e.srv.Manage.UpdateTenant(ctx, manage.TenantUpdate{ID: demoAppTenant, Name: tn.Name,
			FHIRBaseURLs: append(tn.FHIRBaseURLs, gw), Version: tn.Version}, manage.Actor{ID: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	if upstream != "" {
		if _, err := e.srv.Manage.SetGateway(ctx, demoAppTenant, manage.GatewayInput{UpstreamURL: upstream}, manage.Actor{ID: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	return gw
}

// gatewayLaunch runs an EHR launch of the demo app for patient p-42 against
// the tenant's gateway in a fresh browser and returns the tab once the app
// is done.
func (e *demoAppEnv) gatewayLaunch(t *testing.T, gw string) *browsertest.Tab {
	t.Helper()
	launch, err := e.srv.Manage.LaunchApp(context.Background(), manage.LaunchInput{
		TenantID: demoAppTenant, ClientID: demoAppClientID, Patient: "p-42", Aud: gw,
	}, manage.Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	tab := browsertest.New(t)
	tab.Navigate(launch.LaunchURL)
	tab.Text(`input[name="email"]`)
	e.signIn(t, tab)
	if status := e.decide(t, tab, "allow"); status != "done" {
		t.Fatalf("the app ended in %q: %s", status, tab.PageText())
	}
	if got := tab.Text("#fhir-request"); got != "GET "+gw+"/Patient/p-42" {
		t.Errorf("the app's FHIR request: %q", got)
	}
	return tab
}

// TestDemoAppThroughGateway: with the tenant's gateway as its FHIR server,
// the app discovers there, and after the launch reads the patient in
// context through it, showing the OperationOutcome when the gateway has no
// upstream and the Patient once it has.
func TestDemoAppThroughGateway(t *testing.T) {
	t.Parallel()
	// The gateway's settings change beside the server, as with the CLI; on
	// SQLite the server sees them when its tenant cache expires, so that
	// is made immediate here.
	srv := servertest.StartConfig(t, servertest.OpenSQLite(t), func(c *server.Config) { c.TenantCacheTTL = time.Nanosecond })
	e := demoAppSetup(t, srv)
	gw := e.withGateway(t, "")

	// The form offers the gateway as the FHIR server.
	tab := browsertest.New(t)
	tab.Navigate(e.appURL())
	tab.WaitFor(`document.body.dataset.status === "ready"`)
	if got := tab.Text("#gateway-base"); got != gw {
		t.Errorf("the form names the gateway %q, want %q", got, gw)
	}
	browsertest.Eval[bool](tab, `(document.getElementById("use-gateway").click(), true)`)
	if got := browsertest.Eval[string](tab, `document.getElementById("aud").value`); got != gw {
		t.Errorf("after Use the gateway, the FHIR server is %q, want %q", got, gw)
	}
	noConsoleErrors(t, tab)

	tab = e.gatewayLaunch(t, gw)
	if got := tab.Text("#fhir-status"); got != "503" {
		t.Errorf("without an upstream the read answered %q, want 503", got)
	}
	if oo := shownJSON(t, tab, "#fhir-response"); oo["resourceType"] != "OperationOutcome" || !strings.Contains(tab.Text("#fhir-response"), "No upstream FHIR server is configured") {
		t.Errorf("without an upstream the app shows %v", oo)
	}
	if !strings.Contains(srv.Logs(), "/t/clinic/fhir/.well-known/smart-configuration") {
		t.Error("the app did not discover at the gateway's FHIR base")
	}

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		if r.URL.Path != "/fhir/Patient/p-42" {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}`)
			return
		}
		io.WriteString(w, `{"resourceType":"Patient","id":"p-42","name":[{"family":"Gateway","given":["Greta"]}]}`)
	}))
	t.Cleanup(upstream.Close)
	e.withGateway(t, upstream.URL+"/fhir")
	tab = e.gatewayLaunch(t, gw)
	if got := tab.Text("#fhir-status"); got != "200" {
		t.Errorf("with an upstream the read answered %q, want 200", got)
	}
	if p := shownJSON(t, tab, "#fhir-response"); p["resourceType"] != "Patient" || p["id"] != "p-42" {
		t.Errorf("with an upstream the app shows %v", p)
	}
	noConsoleErrors(t, tab)
}
