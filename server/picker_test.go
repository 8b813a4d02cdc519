package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// ehrScopes are what the EHR-launched test app registers.
var ehrScopes = []string{"openid", "fhirUser", "launch", "launch/patient", "launch/encounter", "patient/*.rs", "offline_access"}

// withApp registers another public app in the authz tenant and returns an
// environment that drives it with the given requested scopes.
func (e *authzEnv) withApp(t *testing.T, clientID string, registered, requested []string) *authzEnv {
	t.Helper()
	if _, _, err := e.srv.Manage.CreateClient(context.Background(), manage.ClientInput{TenantID: authzTenant, ID: clientID, Name: "App " + clientID,
		Type: storage.ClientPublic, RedirectURIs: []string{authzCallback}, Scopes: registered}, authzActor); err != nil {
		t.Fatal(err)
	}
	return e.as(clientID, requested)
}

// as is a copy of e that drives clientID, asking for the requested scopes.
func (e *authzEnv) as(clientID string, requested []string) *authzEnv {
	app := *e
	conf := *e.conf
	conf.ClientID, conf.Scopes = clientID, requested
	app.conf = &conf
	return &app
}

// createLaunch stores an EHR launch context for clientID and returns its value.
func createLaunch(t *testing.T, srv *servertest.Server, tenant, clientID, userID string, lc storage.LaunchContext) string {
	t.Helper()
	id := "launch-" + strings.ReplaceAll(oauth2.GenerateVerifier()[:24], "_", "x")
	now := srv.Clock.Now()
	if err := srv.Store.CreateLaunch(context.Background(), storage.Launch{TenantID: tenant, ID: id, ClientID: clientID, UserID: userID,
		Context: lc, CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	return id
}

// refusedAtApp checks that a page sends the browser back to the app with an
// OAuth error (and iss), and returns the error description.
func refusedAtApp(t *testing.T, name string, p authzPage, wantErr string) string {
	t.Helper()
	q := authzCallbackParams(t, p)
	if q.Get("error") != wantErr || q.Get("code") != "" || q.Get("iss") == "" {
		t.Errorf("%s: redirect %v, want error %s", name, q, wantErr)
	}
	return q.Get("error_description")
}

func TestEHRLaunch(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		base := authzSetup(t, srv)
		requested := []string{"launch", "launch/patient", "openid", "fhirUser", "patient/*.rs", "offline_access"}
		e := base.withApp(t, "ehr-app", ehrScopes, requested)
		banner := false
		lc := storage.LaunchContext{Patient: authzPatient, Encounter: "enc-9", FHIRContext: []byte(`[{"reference":"DiagnosticReport/7"}]`),
			NeedPatientBanner: &banner, SmartStyleURL: "https://ehr.example/style.json", Intent: "reconcile-medications"}
		launch := createLaunch(t, srv, authzTenant, "ehr-app", e.userID, lc)

		verifier := oauth2.GenerateVerifier()
		login := e.get(t, e.browser, e.authURL(verifier, oauth2.SetAuthURLParam("launch", launch)))
		// The EHR brought the patient: no picker, straight to consent.
		consent := e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, authzEmail, authzPassword), nil)
		if consent.status != http.StatusOK || !strings.Contains(consent.body, `action="`+e.iss+`/consent"`) {
			t.Fatalf("sign-in for an EHR launch: %d, want consent\n%s", consent.status, consent.body)
		}
		for _, want := range []string{"Ada Okafor", "Encounter/enc-9", "Know the patient the health record opened it for: Ada Okafor"} {
			if !strings.Contains(consent.body, want) {
				t.Errorf("consent page lacks %q", want)
			}
		}
		q := authzCallbackParams(t, e.decide(t, consent, "allow", consent.offered(), nil))
		tok, err := e.conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if got := tok.Extra("scope"); got != strings.Join(requested, " ") {
			t.Errorf("scope %q, want %q", got, strings.Join(requested, " "))
		}
		fhirContext, _ := json.Marshal(tok.Extra("fhirContext"))
		for k, want := range map[string]any{"patient": authzPatient, "encounter": "enc-9", "need_patient_banner": false,
			"smart_style_url": lc.SmartStyleURL, "intent": lc.Intent, "tenant": authzTenant} {
			if got := tok.Extra(k); got != want {
				t.Errorf("token response %s = %v, want %v", k, got, want)
			}
		}
		if string(fhirContext) != `[{"reference":"DiagnosticReport/7"}]` {
			t.Errorf("token response fhirContext %s", fhirContext)
		}
		at, _ := authzVerify(t, e, tok.AccessToken, jose.ES256)
		if at["patient"] != authzPatient || at["encounter"] != "enc-9" {
			t.Errorf("access token context: patient %v encounter %v", at["patient"], at["encounter"])
		}
		info := e.introspector(t)(tok.AccessToken)
		if info["active"] != true || info["patient"] != authzPatient || info["encounter"] != "enc-9" || info["intent"] != lc.Intent {
			t.Errorf("introspection %v lacks the launch context", info)
		}
		// The context survives a refresh.
		if st, body := e.refresh(t, tok.RefreshToken, nil); st != http.StatusOK || body["patient"] != authzPatient || body["encounter"] != "enc-9" {
			t.Errorf("refresh: %d %v, want the launch context again", st, body)
		}

		// A launch value is single-use.
		again := e.get(t, e.browser, e.authURL(oauth2.GenerateVerifier(), oauth2.SetAuthURLParam("launch", launch)))
		if desc := refusedAtApp(t, "reused launch", again, "invalid_request"); !strings.Contains(desc, "already been used") {
			t.Errorf("reused launch description %q", desc)
		}
		events, err := srv.Store.ListAudit(context.Background(), authzTenant, storage.AuditFilter{Type: "consent.grant"})
		if err != nil || len(events) != 1 || events[0].Details["launch"] != "ehr" || events[0].Details["patient"] != authzPatient {
			t.Errorf("consent audit %v, %v", events, err)
		}
	})
}

func TestEHRLaunchRefusals(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		base := authzSetup(t, srv)
		e := base.withApp(t, "ehr-app", ehrScopes, []string{"launch", "openid", "patient/*.rs"})
		other := base.withApp(t, "other-app", ehrScopes, []string{"launch", "openid", "patient/*.rs"})
		srv.Tenant(t, "elsewhere")
		ctx := storage.LaunchContext{Patient: authzPatient}
		start := func(app *authzEnv, launch string) authzPage {
			opts := []oauth2.AuthCodeOption{}
			if launch != "" {
				opts = append(opts, oauth2.SetAuthURLParam("launch", launch))
			}
			return app.get(t, app.browser, app.authURL(oauth2.GenerateVerifier(), opts...))
		}

		refusedAtApp(t, "unknown launch", start(e, "made-up-launch-value"), "invalid_request")
		refusedAtApp(t, "launch scope without launch", start(e, ""), "invalid_request")
		refusedAtApp(t, "another app's launch", start(e, createLaunch(t, srv, authzTenant, "other-app", "", ctx)), "invalid_request")
		refusedAtApp(t, "another tenant's launch", start(e, createLaunch(t, srv, "elsewhere", "ehr-app", "", ctx)), "invalid_request")
		// A launch for one FHIR server cannot be used to get tokens for another.
		tn, err := srv.Store.GetTenant(context.Background(), authzTenant)
		if err != nil {
			t.Fatal(err)
		}
		tn.FHIRBaseURLs = append(tn.FHIRBaseURLs, e.fhirBase+"-other")
		if err := srv.Store.UpdateTenant(context.Background(), tn); err != nil {
			t.Fatal(err)
		}
		otherServer, err := srv.Manage.LaunchApp(context.Background(), manage.LaunchInput{TenantID: authzTenant, ClientID: "ehr-app",
			Patient: authzPatient, Aud: e.fhirBase + "-other"}, authzActor)
		if err != nil {
			t.Fatal(err)
		}
		if desc := refusedAtApp(t, "launch for another FHIR server", start(e, otherServer.Launch), "invalid_request"); !strings.Contains(desc, "iss the EHR gave") {
			t.Errorf("launch for another FHIR server: description %q", desc)
		}
		expiring := createLaunch(t, srv, authzTenant, "ehr-app", "", ctx)
		srv.Clock.Advance(11 * time.Minute)
		if desc := refusedAtApp(t, "expired launch", start(e, expiring), "invalid_request"); !strings.Contains(desc, "expired") {
			t.Errorf("expired launch description %q", desc)
		}
		noScope := base.withApp(t, "plain-app", ehrScopes, []string{"openid", "patient/*.rs"})
		refusedAtApp(t, "launch without the launch scope", start(noScope, createLaunch(t, srv, authzTenant, "plain-app", "", ctx)), "invalid_scope")

		// A launch made for one person cannot be used by another.
		forSomeoneElse := createLaunch(t, srv, authzTenant, "other-app", "someone-else", ctx)
		login := start(other, forSomeoneElse)
		page := other.post(t, other.browser, other.iss+"/login", authzLoginForm(login, authzEmail, authzPassword), nil)
		if page.status != http.StatusForbidden || page.header.Get("Location") != "" {
			t.Errorf("launch for another user: %d Location %q, want 403", page.status, page.header.Get("Location"))
		}
	})
}

func TestPatientScopesNeedPatientContext(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		base := authzSetup(t, srv)
		// No launch/patient and no EHR launch: nobody chose a patient, so
		// patient/ scopes cannot be granted; launch/encounter cannot be
		// chosen in a standalone launch.
		e := base.withApp(t, "no-context", ehrScopes, []string{"openid", "fhirUser", "launch/encounter", "patient/*.rs", "offline_access"})
		verifier := oauth2.GenerateVerifier()
		consent := e.signIn(t, e.authURL(verifier))
		if !strings.Contains(consent.body, `id="consent-refused"`) || !strings.Contains(consent.body, "No patient is selected") ||
			!strings.Contains(consent.body, "No encounter can be chosen") {
			t.Errorf("consent page does not say why patient/*.rs and launch/encounter are left out\n%s", consent.body)
		}
		q := authzCallbackParams(t, e.decide(t, consent, "allow", append(consent.offered(), "patient/*.rs", "launch/encounter"), nil))
		tok, err := e.conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if got := tok.Extra("scope"); got != "openid fhirUser offline_access" {
			t.Errorf("scope %q, want only the scopes that need no patient or encounter", got)
		}
		if tok.Extra("patient") != nil || tok.Extra("encounter") != nil {
			t.Errorf("context without a launch: patient %v encounter %v", tok.Extra("patient"), tok.Extra("encounter"))
		}
	})
}

func TestPatientPicker(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		login := e.get(t, e.browser, e.authURL(oauth2.GenerateVerifier()))
		picker := e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, authzEmail, authzPassword), nil)
		search := func(name string, form url.Values) authzPage {
			return e.post(t, e.browser, e.iss+"/patient", stepForm(picker, form), nil)
		}
		for name, tc := range map[string]struct {
			form url.Values
			want []string
		}{
			"by name prefix":   {url.Values{"name": {"OKA"}}, []string{"pat-1", "pat-2"}},
			"by given name":    {url.Values{"name": {"ben"}}, []string{"pat-2"}},
			"by birth date":    {url.Values{"birthdate": {"1980-02-03"}}, []string{"pat-1"}},
			"by identifier":    {url.Values{"identifier": {"MRN-1001"}}, []string{"pat-1"}},
			"nothing matching": {url.Values{"name": {"zzz"}}, nil},
		} {
			p := search(name, tc.form)
			var got []string
			for _, id := range []string{"pat-1", "pat-2"} {
				if strings.Contains(p.body, `name="patient" value="`+id+`"`) {
					got = append(got, id)
				}
			}
			if p.status != http.StatusOK || !slices.Equal(got, tc.want) {
				t.Errorf("%s: %d found %v, want %v", name, p.status, got, tc.want)
			}
		}
		if p := search("empty", url.Values{}); p.status != http.StatusOK || !strings.Contains(p.body, `name="patient" value="pat-1"`) ||
			!strings.Contains(p.body, `name="patient" value="pat-2"`) || strings.Contains(p.body, `id="next-page"`) {
			t.Errorf("empty search: %d, want the whole roster on one page\n%s", p.status, p.body)
		}
		if p := search("unknown", url.Values{"patient": {"not-in-roster"}}); p.status != http.StatusBadRequest {
			t.Errorf("choosing a patient outside the roster: %d, want 400", p.status)
		}
		// The picker's ticket has no patient yet: consent with it is refused.
		if p := e.decide(t, picker, "allow", authzScopes, nil); p.status != http.StatusBadRequest || p.header.Get("Location") != "" {
			t.Errorf("consent before a patient was chosen: %d Location %q, want 400", p.status, p.header.Get("Location"))
		}
		// A patient of another tenant is unknown here.
		srv.Tenant(t, "elsewhere")
		if err := srv.Store.UpsertPatients(context.Background(), "elsewhere", []storage.Patient{{TenantID: "elsewhere", ID: "foreign-1", Family: "Okafor",
			Resource: []byte(`{"resourceType":"Patient","id":"foreign-1"}`)}}); err != nil {
			t.Fatal(err)
		}
		if p := search("foreign", url.Values{"patient": {"foreign-1"}}); p.status != http.StatusBadRequest {
			t.Errorf("choosing another tenant's patient: %d, want 400", p.status)
		}
		if p := search("foreign by name", url.Values{"name": {"okafor"}}); strings.Contains(p.body, "foreign-1") {
			t.Error("the picker shows another tenant's patient")
		}
	})
}

func TestPatientPickerPagesThroughRoster(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		// 30 more patients after the two Okafors: 32 make two pages of 25.
		var more []storage.Patient
		for i := range 30 {
			id := fmt.Sprintf("roster-%02d", i)
			more = append(more, storage.Patient{TenantID: authzTenant, ID: id, Family: "Zeller", Given: fmt.Sprintf("P%02d", i),
				Resource: []byte(`{"resourceType":"Patient","id":"` + id + `"}`)})
		}
		if err := srv.Store.UpsertPatients(context.Background(), authzTenant, more); err != nil {
			t.Fatal(err)
		}
		login := e.get(t, e.browser, e.authURL(oauth2.GenerateVerifier()))
		picker := e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, authzEmail, authzPassword), nil)
		listed := regexp.MustCompile(`name="patient" value="([^"]+)"`)
		ids := func(p authzPage) []string {
			var got []string
			for _, m := range listed.FindAllStringSubmatch(p.body, -1) {
				got = append(got, m[1])
			}
			return got
		}
		first := e.post(t, e.browser, e.iss+"/patient", stepForm(picker, url.Values{"name": {" "}}), nil)
		got := ids(first)
		if first.status != http.StatusOK || len(got) != 25 || got[0] != "pat-1" || got[1] != "pat-2" || got[24] != "roster-22" {
			t.Fatalf("first page: %d %v", first.status, got)
		}
		if !strings.Contains(first.body, "Patients 1–25") || !strings.Contains(first.body, `name="offset" value="25" id="next-page"`) ||
			strings.Contains(first.body, `id="previous-page"`) {
			t.Errorf("first page lacks its heading or a next page only\n%s", first.body)
		}
		second := e.post(t, e.browser, e.iss+"/patient", stepForm(first, url.Values{"offset": {"25"}}), nil)
		got = ids(second)
		if second.status != http.StatusOK || len(got) != 7 || got[0] != "roster-23" || got[6] != "roster-29" {
			t.Fatalf("second page: %d %v", second.status, got)
		}
		if !strings.Contains(second.body, "Patients 26–32") || !strings.Contains(second.body, `name="offset" value="0" id="previous-page"`) ||
			strings.Contains(second.body, `id="next-page"`) {
			t.Errorf("second page lacks its heading or a previous page only\n%s", second.body)
		}
		// An offset off the page grid is rounded down to a page; nonsense is the first page.
		if p := e.post(t, e.browser, e.iss+"/patient", stepForm(first, url.Values{"offset": {"27"}}), nil); !slices.Equal(ids(p), got) {
			t.Errorf("offset 27: %v, want the second page", ids(p))
		}
		for _, bad := range []string{"-5", "x", ""} {
			if p := e.post(t, e.browser, e.iss+"/patient", stepForm(first, url.Values{"offset": {bad}}), nil); p.status != http.StatusOK || len(ids(p)) != 25 {
				t.Errorf("offset %q: %d %v", bad, p.status, ids(p))
			}
		}
		if p := e.post(t, e.browser, e.iss+"/patient", stepForm(first, url.Values{"offset": {"99999999999999999999"}}), nil); p.status != http.StatusOK ||
			len(ids(p)) != 0 || !strings.Contains(p.body, "No more patients") {
			t.Errorf("offset past the roster: %d %v", p.status, ids(p))
		}
		// A listed patient can be chosen from a later page.
		consent := e.post(t, e.browser, e.iss+"/patient", stepForm(second, url.Values{"patient": {"roster-29"}}), nil)
		if consent.status != http.StatusOK || !strings.Contains(consent.body, `action="`+e.iss+`/consent"`) || !strings.Contains(consent.body, "P29 Zeller") {
			t.Errorf("choosing from the second page: %d\n%s", consent.status, consent.body)
		}
	})
}

func TestRememberedConsent(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		consent := e.signIn(t, e.authURL(oauth2.GenerateVerifier()))
		kept := []string{"fhirUser", "patient/*.rs"}
		authzCallbackParams(t, e.decide(t, consent, "allow", kept, url.Values{"remember": {"yes"}}))

		// The next time the app asks for no more than that, the code comes
		// right after the patient is chosen.
		narrower := e.as(authzClientID, []string{"openid", "launch/patient", "patient/*.rs"})
		verifier := oauth2.GenerateVerifier()
		login := narrower.get(t, narrower.browser, narrower.authURL(verifier))
		picker := narrower.post(t, narrower.browser, narrower.iss+"/login", authzLoginForm(login, authzEmail, authzPassword), nil)
		found := narrower.post(t, narrower.browser, narrower.iss+"/patient", stepForm(picker, url.Values{"patient": {authzPatient}}), nil)
		q := authzCallbackParams(t, found)
		tok, err := narrower.conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if got := tok.Extra("scope"); got != "openid launch/patient patient/*.rs" || tok.Extra("patient") != authzPatient {
			t.Errorf("remembered consent gave scope %q patient %v", got, tok.Extra("patient"))
		}

		// Asking for more than was remembered (offline_access was withheld) shows the page again.
		if p := e.signIn(t, e.authURL(oauth2.GenerateVerifier())); !strings.Contains(p.body, "offline_access") {
			t.Error("a request beyond the remembered consent did not show the consent page")
		}
		// So does prompt=consent.
		narrower.signIn(t, narrower.authURL(oauth2.GenerateVerifier(), oauth2.SetAuthURLParam("prompt", "consent")))

		events, err := srv.Store.ListAudit(context.Background(), authzTenant, storage.AuditFilter{Type: "consent.grant"})
		if err != nil || len(events) != 2 || events[0].Details["consent"] != "given_and_remembered" || events[1].Details["consent"] != "remembered" {
			t.Errorf("consent audit %v, %v", events, err)
		}
	})
}

func TestOneSignInOneCode(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		consent := e.signIn(t, e.authURL(oauth2.GenerateVerifier()))
		authzCallbackParams(t, e.decide(t, consent, "allow", consent.offered(), nil))
		// Posting the same consent form again, within the ticket's lifetime,
		// must not mint a second code.
		again := e.decide(t, consent, "allow", consent.offered(), nil)
		if again.status != http.StatusBadRequest || again.header.Get("Location") != "" || !strings.Contains(again.body, "already been used") {
			t.Fatalf("second post of one consent: %d Location %q, want a 400 page", again.status, again.header.Get("Location"))
		}
	})
}

// fakeFHIR is a FHIR server with a client_credentials token endpoint that
// holds one patient, remote-7, and answers Patient search and read only
// with the token it issued.
func fakeFHIR(t *testing.T) *httptest.Server {
	t.Helper()
	const token = "fhir-access-token"
	patient := `{"resourceType":"Patient","id":"remote-7","name":[{"family":"Okafor","given":["Chidi"]}],"birthDate":"1990-09-09"}`
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		if id, secret, ok := r.BasicAuth(); !ok || id != "picker" || secret != "picker-secret" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600}`, token)
	})
	authorized := func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			return false
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		return true
	}
	mux.HandleFunc("GET /fhir/Patient", func(w http.ResponseWriter, r *http.Request) {
		if !authorized(w, r) {
			return
		}
		var entries []string
		if strings.HasPrefix("okafor", strings.ToLower(r.URL.Query().Get("name"))) && r.URL.Query().Get("name") != "" {
			entries = append(entries, `{"resource":`+patient+`}`)
		}
		fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","entry":[%s]}`, strings.Join(entries, ","))
	})
	mux.HandleFunc("GET /fhir/Patient/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !authorized(w, r) {
			return
		}
		if r.PathValue("id") != "remote-7" {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"resourceType":"OperationOutcome"}`)
			return
		}
		fmt.Fprint(w, patient)
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

func TestPatientPickerSearchesFHIRServer(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		fhir := fakeFHIR(t)
		if _, err := srv.Manage.SetPatientSearch(context.Background(), authzTenant, manage.PatientSearchInput{
			FHIRBaseURL: fhir.URL + "/fhir", TokenURL: fhir.URL + "/token", ClientID: "picker", ClientSecret: "picker-secret",
		}, authzActor); err != nil {
			t.Fatal(err)
		}
		verifier := oauth2.GenerateVerifier()
		login := e.get(t, e.browser, e.authURL(verifier))
		picker := e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, authzEmail, authzPassword), nil)
		found := e.post(t, e.browser, e.iss+"/patient", stepForm(picker, url.Values{"name": {"okafor"}}), nil)
		for _, id := range []string{"pat-1", "pat-2", "remote-7"} {
			if !strings.Contains(found.body, `name="patient" value="`+id+`"`) {
				t.Errorf("search lacks %s from the roster and the FHIR server\n%s", id, found.body)
			}
		}
		if p := e.post(t, e.browser, e.iss+"/patient", stepForm(found, url.Values{"patient": {"remote-404"}}), nil); p.status != http.StatusBadRequest {
			t.Errorf("choosing a patient neither source holds: %d, want 400", p.status)
		}
		consent := e.post(t, e.browser, e.iss+"/patient", stepForm(found, url.Values{"patient": {"remote-7"}}), nil)
		if !strings.Contains(consent.body, "Chidi Okafor") {
			t.Fatalf("consent for the FHIR server's patient: %d\n%s", consent.status, consent.body)
		}
		q := authzCallbackParams(t, e.decide(t, consent, "allow", consent.offered(), nil))
		tok, err := e.conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if tok.Extra("patient") != "remote-7" {
			t.Errorf("patient %v, want remote-7", tok.Extra("patient"))
		}

		// With the FHIR server down, the roster still answers, and the page says the list may be short.
		fhir.Close()
		again := e.post(t, e.browser, e.iss+"/login", authzLoginForm(e.get(t, e.browser, e.authURL(oauth2.GenerateVerifier())), authzEmail, authzPassword), nil)
		partial := e.post(t, e.browser, e.iss+"/patient", stepForm(again, url.Values{"name": {"okafor"}}), nil)
		if partial.status != http.StatusOK || !strings.Contains(partial.body, `value="pat-1"`) || !strings.Contains(partial.body, `id="picker-notice"`) {
			t.Errorf("search with the FHIR server down: %d\n%s", partial.status, partial.body)
		}
	})
}

// TestOnlyCliniciansPickPatients: a person who is not a clinician (a
// related person, or someone with no FHIR profile) is never shown the
// tenant's patients, and gets no patient context to choose.
func TestOnlyCliniciansPickPatients(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	e := authzSetup(t, srv)
	for _, profiles := range [][]storage.Profile{{{FHIRUser: "RelatedPerson/5", Label: "Parent"}}, nil} {
		u, err := srv.Store.GetUser(context.Background(), authzTenant, e.userID)
		if err != nil {
			t.Fatal(err)
		}
		u.Profiles = profiles
		if err := srv.Store.UpdateUser(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		consent := e.signIn(t, e.authURL(oauth2.GenerateVerifier()))
		if !strings.Contains(consent.body, "No patient is selected") {
			t.Errorf("profiles %v: consent does not say the patient scopes are left out", profiles)
		}
		// The consent page's ticket cannot be used to search or pick a patient.
		if p := e.post(t, e.browser, e.iss+"/patient", stepForm(consent, url.Values{"patient": {authzPatient}}), nil); p.status != http.StatusBadRequest {
			t.Errorf("profiles %v: picking a patient: %d, want 400", profiles, p.status)
		}
		if p := e.post(t, e.browser, e.iss+"/patient", stepForm(consent, url.Values{"name": {"okafor"}}), nil); strings.Contains(p.body, authzPatient) {
			t.Errorf("profiles %v: the roster was shown", profiles)
		}
	}
}
