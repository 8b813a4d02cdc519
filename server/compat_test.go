package server_test

// Compatibility tests: third-party Node libraries act as the app against a
// running smartauth, the way an app developer would use them. The Node side
// lives in testdata/compat (package.json, a committed lock file, one script
// per library); this file starts the script, plays the person in the
// browser with the authz helpers, and checks what the library ended up with.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// compatRequireEnv makes a missing Node.js or missing node_modules a failure
// instead of a skip; CI sets it.
const compatRequireEnv = "SMARTAUTH_REQUIRE_NODE"

// compatTimeout bounds every wait on the Node app, so nothing hangs.
const compatTimeout = 60 * time.Second

// compatScopes are what the compatibility apps register.
var compatScopes = []string{"openid", "fhirUser", "launch", "launch/patient", "patient/*.rs", "offline_access"}

// compatDir finds testdata/compat with its libraries installed and a node
// at least minMajor, or skips (fails under SMARTAUTH_REQUIRE_NODE=1).
func compatDir(t *testing.T, minMajor int, modules ...string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "testdata", "compat"))
	if err != nil {
		t.Fatal(err)
	}
	unavailable := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv(compatRequireEnv) == "1" {
			t.Fatalf("%s (%s=1 requires these tests to run)", msg, compatRequireEnv)
		}
		t.Skipf("%s; skipping the Node compatibility test (set %s=1 to fail instead)", msg, compatRequireEnv)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable("node is not installed")
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		unavailable("node --version: %v", err)
	}
	major, _ := strconv.Atoi(strings.SplitN(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), ".", 2)[0])
	if major < minMajor {
		unavailable("node %s is too old: this library needs Node.js %d or newer", strings.TrimSpace(string(out)), minMajor)
	}
	for _, m := range modules {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", m, "package.json")); err != nil {
			unavailable("%s is not installed: run `npm ci --no-audit --no-fund` in testdata/compat", m)
		}
	}
	return dir
}

// nodeApp is a running compatibility script and the events it printed.
type nodeApp struct {
	name   string
	events chan map[string]any
	mu     sync.Mutex
	output strings.Builder // everything it wrote, for failure messages
}

type lockedWriter struct{ a *nodeApp }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.a.mu.Lock()
	defer w.a.mu.Unlock()
	return w.a.output.Write(p)
}

func (a *nodeApp) log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.output.String()
}

// startNode runs script in dir with env added to the test's environment.
// The process is killed when the test ends.
func startNode(t *testing.T, dir, script string, env map[string]string) *nodeApp {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*compatTimeout)
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	a := &nodeApp{name: script, events: make(chan map[string]any, 16)}
	cmd.Stderr = lockedWriter{a}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start node %s: %v", script, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(a.events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
		for sc.Scan() {
			line := sc.Bytes()
			fmt.Fprintf(lockedWriter{a}, "%s\n", line)
			var ev map[string]any
			if json.Unmarshal(line, &ev) == nil && ev["event"] != nil {
				a.events <- ev
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = cmd.Wait()
	})
	return a
}

// next waits for the app's next event, which must be want.
func (a *nodeApp) next(t *testing.T, want string) map[string]any {
	t.Helper()
	select {
	case ev, ok := <-a.events:
		if !ok {
			t.Fatalf("%s ended without printing %q; its output:\n%s", a.name, want, a.log())
		}
		if ev["event"] != want {
			t.Fatalf("%s printed %q, want %q: %v\nits output:\n%s", a.name, ev["event"], want, ev, a.log())
		}
		return ev
	case <-time.After(compatTimeout):
		t.Fatalf("%s printed no %q within %s; its output:\n%s", a.name, want, compatTimeout, a.log())
	}
	return nil
}

// compatFHIR is a stand-in for the tenant's FHIR server: it serves
// /.well-known/smart-configuration by proxying smartauth's tenant document,
// as docs/fhir-server.md recommends, and answers Patient reads, keeping the
// bearer tokens it was shown.
type compatFHIR struct {
	base    string
	mu      sync.Mutex
	bearers []string
}

func startCompatFHIR(t *testing.T, iss string) *compatFHIR {
	t.Helper()
	f := &compatFHIR{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /r4/.well-known/smart-configuration", func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(iss + "/.well-known/smart-configuration")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for _, h := range []string{"Content-Type", "Cache-Control", "Access-Control-Allow-Origin"} {
			if v := resp.Header.Get(h); v != "" {
				w.Header().Set(h, v)
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
	mux.HandleFunc("GET /r4/Patient/{id}", func(w http.ResponseWriter, r *http.Request) {
		bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "no bearer token", http.StatusUnauthorized)
			return
		}
		f.mu.Lock()
		f.bearers = append(f.bearers, bearer)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/fhir+json")
		_ = json.NewEncoder(w).Encode(map[string]any{"resourceType": "Patient", "id": r.PathValue("id")})
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	f.base = ts.URL + "/r4"
	return f
}

func (f *compatFHIR) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.bearers)
}

// compatSetup is authzSetup with the tenant's FHIR base URL pointing at a
// running stand-in FHIR server.
func compatSetup(t *testing.T, srv *servertest.Server) (*authzEnv, *compatFHIR) {
	t.Helper()
	e := authzSetup(t, srv)
	fhir := startCompatFHIR(t, e.iss)
	ctx := context.Background()
	tn, err := srv.Store.GetTenant(ctx, authzTenant)
	if err != nil {
		t.Fatal(err)
	}
	// Nothing has asked the server for the tenant yet, so its cache holds
	// nothing stale.
	tn.FHIRBaseURLs = []string{fhir.base}
	if err := srv.Store.UpdateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	e.fhirBase = fhir.base
	return e, fhir
}

// registerCompatApp registers the Node app as a public client once it has
// said where it listens.
func registerCompatApp(t *testing.T, e *authzEnv, clientID, redirectURI string) {
	t.Helper()
	if _, _, err := e.srv.Manage.CreateClient(context.Background(), manage.ClientInput{TenantID: authzTenant, ID: clientID,
		Name: "Compat " + clientID, Type: storage.ClientPublic, RedirectURIs: []string{redirectURI}, Scopes: compatScopes}, authzActor); err != nil {
		t.Fatal(err)
	}
}

// toApp follows the consent answer back to the app's redirect URI, as the
// browser would; the app answers once it has finished its work.
func toApp(t *testing.T, e *authzEnv, p authzPage, redirectURI string) url.Values {
	t.Helper()
	loc := p.header.Get("Location")
	if p.status != http.StatusSeeOther || !strings.HasPrefix(loc, redirectURI+"?") {
		t.Fatalf("want a redirect to %s, got %d Location %q\n%s", redirectURI, p.status, loc, p.body)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	if q := u.Query(); q.Get("code") == "" || q.Get("iss") != e.iss {
		t.Fatalf("callback parameters %v: want a code and iss %s", q, e.iss)
	}
	if cb := e.get(t, e.browser, loc); cb.status != http.StatusOK {
		t.Fatalf("the app's callback answered %d: %s", cb.status, cb.body)
	}
	return u.Query()
}

// compatResult decodes the app's "result" event into into.
func compatResult(t *testing.T, ev map[string]any, into any) {
	t.Helper()
	b, _ := json.Marshal(ev)
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatalf("result %s: %v", b, err)
	}
}

// sameScopes compares space-separated scope lists as sets.
func sameScopes(a, b string) bool {
	x, y := strings.Fields(a), strings.Fields(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// fhirclientResult is what testdata/compat/fhirclient.mjs prints.
type fhirclientResult struct {
	ServerURL        string         `json:"serverUrl"`
	CodeVerifierUsed bool           `json:"codeVerifierUsed"`
	TokenResponse    map[string]any `json:"tokenResponse"`
	PatientID        string         `json:"patientId"`
	EncounterID      *string        `json:"encounterId"`
	FHIRUser         string         `json:"fhirUser"`
	UserType         string         `json:"userType"`
	UserID           string         `json:"userId"`
	IDToken          map[string]any `json:"idToken"`
	PatientResource  map[string]any `json:"patientResource"`
	Refreshed        *struct {
		AccessToken  string `json:"accessToken"`
		RefreshToken string `json:"refreshToken"`
		Scope        string `json:"scope"`
	} `json:"refreshed"`
	RefreshError string `json:"refreshError"`
	// Requests are the answers to COMPAT_REQUESTS, in its order.
	Requests []fhirclientRequest `json:"requests"`
}

// fhirclientRequest is what client.request(path) gave the app: the
// resource or Bundle, or the error it failed with.
type fhirclientRequest struct {
	Path     string         `json:"path"`
	Resource map[string]any `json:"resource"`
	Error    string         `json:"error"`
	Status   int            `json:"status"`
}

// runFHIRClient launches the fhirclient app against the FHIR server at
// fhirBase and returns what it printed: a standalone launch when ehrLaunch
// is nil, otherwise an EHR launch with the launch value ehrLaunch creates
// once the app is registered. extraEnv is added to the app's environment.
func runFHIRClient(t *testing.T, dir string, e *authzEnv, fhirBase, clientID, scope string, extraEnv map[string]string, ehrLaunch func() string) fhirclientResult {
	t.Helper()
	env := map[string]string{"SMARTAUTH_CLIENT_ID": clientID, "COMPAT_SCOPE": scope}
	maps.Copy(env, extraEnv)
	if ehrLaunch == nil {
		env["COMPAT_ISS"] = fhirBase
	}
	app := startNode(t, dir, "fhirclient.mjs", env)
	listening := app.next(t, "listening")
	appBase, _ := listening["base"].(string)
	redirectURI, _ := listening["redirectUri"].(string)
	registerCompatApp(t, e, clientID, redirectURI)

	// The EHR opens the app's launch URL with iss and launch (SMART App
	// Launch, EHR launch); a standalone launch opens it bare.
	launchURL, launch := appBase+"/launch", ""
	if ehrLaunch != nil {
		launch = ehrLaunch()
		launchURL += "?" + url.Values{"iss": {fhirBase}, "launch": {launch}}.Encode()
	}
	start := e.get(t, e.browser, launchURL)
	authURL := start.header.Get("Location")
	if start.status != http.StatusFound || !strings.HasPrefix(authURL, e.iss+"/authorize?") {
		t.Fatalf("the app's launch answered %d Location %q, want a redirect to %s/authorize\n%s\n%s", start.status, authURL, e.iss, start.body, app.log())
	}
	u, _ := url.Parse(authURL)
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		t.Errorf("fhirclient did not use PKCE S256 though the server advertises it: %s", authURL)
	}
	if q.Get("aud") != fhirBase || q.Get("client_id") != clientID || q.Get("launch") != launch || q.Get("state") == "" {
		t.Errorf("authorization request %v: want aud %s, client_id %s, launch %q and a state", q, fhirBase, clientID, launch)
	}

	consent := e.signIn(t, authURL)
	toApp(t, e, e.decide(t, consent, "allow", consent.offered(), nil), redirectURI)
	var res fhirclientResult
	compatResult(t, app.next(t, "result"), &res)
	return res
}

// checkFHIRClient checks what fhirclient holds after ready() and refresh().
func checkFHIRClient(t *testing.T, e *authzEnv, fhir *compatFHIR, res fhirclientResult, clientID, wantScope string) {
	t.Helper()
	tr := res.TokenResponse
	wantFHIRUser := e.fhirBase + "/Practitioner/123"
	if res.ServerURL != fhir.base || !res.CodeVerifierUsed {
		t.Errorf("serverUrl %q, PKCE verifier kept %v", res.ServerURL, res.CodeVerifierUsed)
	}
	if scope, _ := tr["scope"].(string); !sameScopes(scope, wantScope) {
		t.Errorf("token response scope %q, want %q", scope, wantScope)
	}
	if res.PatientID != authzPatient || tr["patient"] != authzPatient {
		t.Errorf("getPatientId() %q, token response patient %v, want %s", res.PatientID, tr["patient"], authzPatient)
	}
	if res.FHIRUser != "Practitioner/123" && res.FHIRUser != wantFHIRUser {
		t.Errorf("getFhirUser() %q, want %s", res.FHIRUser, wantFHIRUser)
	}
	if res.UserType != "Practitioner" || res.UserID != "123" {
		t.Errorf("getUserType() %q, getUserId() %q, want Practitioner and 123", res.UserType, res.UserID)
	}
	if res.IDToken["iss"] != e.iss || res.IDToken["sub"] != e.userID || res.IDToken["fhirUser"] != wantFHIRUser ||
		!slices.Contains(authzAudience(res.IDToken["aud"]), clientID) {
		t.Errorf("getIdToken() %v: want iss %s, sub %s, aud %s, fhirUser %s", res.IDToken, e.iss, e.userID, clientID, wantFHIRUser)
	}
	// fhirclient only decodes the ID token; check its signature here.
	raw, _ := tr["id_token"].(string)
	if claims, _ := authzVerify(t, e, raw, jose.RS256); claims["sub"] != e.userID {
		t.Errorf("id_token sub %v", claims["sub"])
	}
	at, _ := tr["access_token"].(string)
	if res.PatientResource["id"] != authzPatient || !slices.Equal(fhir.seen(), []string{at}) {
		t.Errorf("client.patient.read() gave %v; the FHIR server saw bearer tokens %v, want the access token", res.PatientResource, fhir.seen())
	}

	// The refresh has since retired this access token, so it is checked
	// as a FHIR server validating offline would.
	claims, _ := authzVerify(t, e, at, jose.ES256)
	if claims["patient"] != authzPatient || claims["client_id"] != clientID || !slices.Equal(authzAudience(claims["aud"]), []string{fhir.base}) {
		t.Errorf("fhirclient's access token claims %v: want patient %s, client_id %s, aud %s", claims, authzPatient, clientID, fhir.base)
	}
	rt, _ := tr["refresh_token"].(string)
	if res.RefreshError != "" || res.Refreshed == nil {
		// fhirclient refreshes for a public app with grant_type and
		// refresh_token only, no client_id, as SMART App Launch 2.2 (step 7,
		// "For public apps, authentication is not possible (and thus not
		// required)") lists the parameters.
		t.Errorf("client.refresh() failed: %s\n(fhirclient posts a public app's refresh without client_id; the token endpoint must find the client from the refresh token)", res.RefreshError)
		return
	}
	r := res.Refreshed
	if r.AccessToken == "" || r.AccessToken == at || r.RefreshToken == "" || r.RefreshToken == rt || !sameScopes(r.Scope, wantScope) {
		t.Errorf("client.refresh(): access token new %v, refresh token rotated %v, scope %q",
			r.AccessToken != "" && r.AccessToken != at, r.RefreshToken != "" && r.RefreshToken != rt, r.Scope)
	}
	if info := e.introspector(t)(r.AccessToken); info["active"] != true || info["patient"] != authzPatient || info["fhirUser"] != wantFHIRUser {
		t.Errorf("introspection of the refreshed access token: %v", info)
	}
}

func TestCompatFHIRClientStandaloneLaunch(t *testing.T) {
	t.Parallel()
	dir := compatDir(t, 18, "fhirclient")
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e, fhir := compatSetup(t, srv)
		const scope = "launch/patient openid fhirUser patient/*.rs offline_access"
		res := runFHIRClient(t, dir, e, fhir.base, "fhirclient-standalone", scope, nil, nil)
		checkFHIRClient(t, e, fhir, res, "fhirclient-standalone", scope)
		if res.EncounterID != nil {
			t.Errorf("standalone launch: getEncounterId() %q, want none", *res.EncounterID)
		}
	})
}

func TestCompatFHIRClientEHRLaunch(t *testing.T) {
	t.Parallel()
	dir := compatDir(t, 18, "fhirclient")
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e, fhir := compatSetup(t, srv)
		const clientID = "fhirclient-ehr"
		const scope = "launch openid fhirUser patient/*.rs offline_access"
		res := runFHIRClient(t, dir, e, fhir.base, clientID, scope, nil, func() string {
			return createLaunch(t, srv, authzTenant, clientID, e.userID, storage.LaunchContext{Patient: authzPatient, Encounter: "enc-9"})
		})
		checkFHIRClient(t, e, fhir, res, clientID, scope)
		if res.EncounterID == nil || *res.EncounterID != "enc-9" || res.TokenResponse["encounter"] != "enc-9" {
			t.Errorf("EHR launch: getEncounterId() %v, token response encounter %v, want enc-9", res.EncounterID, res.TokenResponse["encounter"])
		}
	})
}

// openidResult is what testdata/compat/openid-client.mjs prints.
type openidResult struct {
	Issuer                 string         `json:"issuer"`
	Tokens                 map[string]any `json:"tokens"`
	IDTokenClaims          map[string]any `json:"idTokenClaims"`
	Userinfo               map[string]any `json:"userinfo"`
	Refreshed              map[string]any `json:"refreshed"`
	RefreshedIDTokenClaims map[string]any `json:"refreshedIdTokenClaims"`
}

var compatNonceParam = regexp.MustCompile(`^[A-Za-z0-9_-]{16,}$`)

func TestCompatOpenIDClient(t *testing.T) {
	t.Parallel()
	// openid-client 6 supports Node.js 20 and newer.
	dir := compatDir(t, 20, "openid-client")
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e, fhir := compatSetup(t, srv)
		const clientID = "openid-client-app"
		const scope = "openid fhirUser offline_access launch/patient patient/*.rs"
		app := startNode(t, dir, "openid-client.mjs", map[string]string{
			"SMARTAUTH_ISSUER": e.iss, "SMARTAUTH_CLIENT_ID": clientID, "COMPAT_SCOPE": scope, "COMPAT_AUD": fhir.base,
		})
		authz := app.next(t, "authorize")
		authURL, _ := authz["url"].(string)
		redirectURI, _ := authz["redirectUri"].(string)
		registerCompatApp(t, e, clientID, redirectURI)

		u, err := url.Parse(authURL)
		if err != nil || !strings.HasPrefix(authURL, e.iss+"/authorize?") {
			t.Fatalf("authorization URL %q: %v", authURL, err)
		}
		q := u.Query()
		if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || !compatNonceParam.MatchString(q.Get("state")) ||
			!compatNonceParam.MatchString(q.Get("nonce")) || q.Get("redirect_uri") != redirectURI {
			t.Errorf("authorization request %v: want PKCE S256, state, nonce and redirect_uri %s", q, redirectURI)
		}

		consent := e.signIn(t, authURL)
		toApp(t, e, e.decide(t, consent, "allow", consent.offered(), nil), redirectURI)
		var res openidResult
		compatResult(t, app.next(t, "result"), &res)

		wantFHIRUser := e.fhirBase + "/Practitioner/123"
		if res.Issuer != e.iss {
			t.Errorf("discovered issuer %q, want %s", res.Issuer, e.iss)
		}
		tok := res.Tokens
		if s, _ := tok["scope"].(string); !sameScopes(s, scope) || tok["patient"] != authzPatient || tok["token_type"] != "bearer" && tok["token_type"] != "Bearer" {
			t.Errorf("token response: scope %v, patient %v, token_type %v", tok["scope"], tok["patient"], tok["token_type"])
		}
		// openid-client validated the ID token (signature, iss, aud, exp,
		// nonce) before handing out these claims.
		c := res.IDTokenClaims
		if c["iss"] != e.iss || c["sub"] != e.userID || c["nonce"] != q.Get("nonce") || c["fhirUser"] != wantFHIRUser {
			t.Errorf("ID token claims %v: want iss %s, sub %s, the nonce sent and fhirUser %s", c, e.iss, e.userID, wantFHIRUser)
		}
		if res.Userinfo["sub"] != e.userID || res.Userinfo["fhirUser"] != wantFHIRUser {
			t.Errorf("userinfo %v: want sub %s and fhirUser %s", res.Userinfo, e.userID, wantFHIRUser)
		}
		r := res.Refreshed
		if r["access_token"] == nil || r["access_token"] == tok["access_token"] || r["refresh_token"] == nil || r["refresh_token"] == tok["refresh_token"] {
			t.Errorf("refresh: want a new access token and a rotated refresh token, got %v", r)
		}
		if s, _ := r["scope"].(string); !sameScopes(s, scope) || r["patient"] != authzPatient {
			t.Errorf("refresh response: scope %v, patient %v", r["scope"], r["patient"])
		}
		if rc := res.RefreshedIDTokenClaims; rc != nil && rc["sub"] != e.userID {
			t.Errorf("refreshed ID token claims %v", rc)
		}
		at, _ := r["access_token"].(string)
		if info := e.introspector(t)(at); info["active"] != true || info["client_id"] != clientID || info["patient"] != authzPatient {
			t.Errorf("introspection of the refreshed access token: %v", info)
		}
	})
}
