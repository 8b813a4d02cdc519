package server_test

// The SMART gateway against a real FHIR server: medplum's FHIR router with
// its in-memory repository (testdata/fhirserver, started by gateway/fhirtest),
// seeded with two patients. Tokens come from the real sign-in, EHR launch
// and consent flow; every assertion is about what an app gets through
// {issuer}/fhir and what reaches the FHIR server behind it.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/smartauth/smartauth/gateway/fhirtest"
	"github.com/smartauth/smartauth/server"
	"github.com/smartauth/smartauth/server/audit"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/postgres"
	"github.com/smartauth/smartauth/storage/postgres/pgtest"
)

// gatewayUpstreamKey is the static credential the gateway sends upstream.
const gatewayUpstreamKey = "upstream-api-key-0123456789"

// gatewayRevocationDelay is short here so a revocation test need not wait long.
const gatewayRevocationDelay = 300 * time.Millisecond

type gatewayEnv struct {
	*authzEnv
	fhir   *fhirtest.Server
	seeded fhirtest.Seeded
	// base is the tenant's gateway FHIR base URL.
	base string
}

// forEachGatewayBackend is forEachBackend with a short gateway revocation delay.
func forEachGatewayBackend(t *testing.T, test func(t *testing.T, srv *servertest.Server)) {
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			test(t, servertest.StartConfig(t, b.Open(t), func(c *server.Config) { c.GatewayRevocationDelay = gatewayRevocationDelay }))
		})
	}
}

// gatewaySetup is authzSetup with a seeded FHIR server behind the tenant's
// gateway, the gateway's base among the tenant's FHIR base URLs (next to
// the one authzSetup gave it), and both patients in the roster.
func gatewaySetup(t *testing.T, srv *servertest.Server) *gatewayEnv {
	t.Helper()
	fhir := fhirtest.Start(t)
	seeded := fhir.Seed(t)
	fhir.ClearRequests(t)
	e := authzSetup(t, srv)
	ctx := context.Background()
	base := e.iss + "/fhir"
	tn, err := srv.Store.GetTenant(ctx, authzTenant)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Manage.UpdateTenant(ctx, manage.TenantUpdate{ID: authzTenant, Name: tn.Name, FHIRBaseURLs: append(tn.FHIRBaseURLs, base), Version: tn.Version}, authzActor); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Manage.SetGateway(ctx, authzTenant, manage.GatewayInput{UpstreamURL: fhir.BaseURL(), UpstreamAuth: storage.GatewayAuthHeader,
		HeaderName: "X-Api-Key", HeaderValue: gatewayUpstreamKey}, authzActor); err != nil {
		t.Fatal(err)
	}
	if err := srv.Store.UpsertPatients(ctx, authzTenant, []storage.Patient{
		{TenantID: authzTenant, ID: seeded.Alice.Patient, Family: "Example", Given: "Alice", Resource: []byte(`{"resourceType":"Patient"}`)},
		{TenantID: authzTenant, ID: seeded.Bob.Patient, Family: "Sample", Given: "Bob", Resource: []byte(`{"resourceType":"Patient"}`)},
	}); err != nil {
		t.Fatal(err)
	}
	e.fhirBase = base
	return &gatewayEnv{authzEnv: e, fhir: fhir, seeded: seeded, base: base}
}

// gatewayAppScopes are what the gateway tests' app may ask for.
var gatewayAppScopes = []string{"launch", "openid", "fhirUser", "offline_access", "patient/*.cruds", "user/*.cruds"}

// token signs in through an EHR launch for patient (none for no launch)
// and returns an access token with the requested scopes for the gateway.
func (g *gatewayEnv) token(t *testing.T, clientID, patient string, scopes ...string) string {
	t.Helper()
	e := g.as(clientID, scopes)
	var extra []oauth2.AuthCodeOption
	if patient != "" {
		launch := createLaunch(t, g.srv, authzTenant, clientID, g.userID, storage.LaunchContext{Patient: patient})
		extra = append(extra, oauth2.SetAuthURLParam("launch", launch))
	}
	verifier := oauth2.GenerateVerifier()
	login := e.get(t, e.browser, e.authURL(verifier, extra...))
	consent := e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, authzEmail, authzPassword), nil)
	q := authzCallbackParams(t, e.decide(t, consent, "allow", consent.offered(), nil))
	tok, err := e.conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Extra("scope"); got != strings.Join(scopes, " ") {
		t.Fatalf("granted scope %q, want %q", got, strings.Join(scopes, " "))
	}
	return tok.AccessToken
}

// fhirCall is one answer of the gateway.
type fhirCall struct {
	status int
	header http.Header
	body   string
	doc    map[string]any
}

func (g *gatewayEnv) call(t *testing.T, token, method, path, body string) fhirCall {
	t.Helper()
	req, err := http.NewRequest(method, g.base+"/"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	c := fhirCall{status: resp.StatusCode, header: resp.Header, body: string(b)}
	_ = json.Unmarshal(b, &c.doc)
	return c
}

// ids lists "Type/id" of a Bundle's entries, or of a single resource.
func (c fhirCall) ids() []string {
	var out []string
	add := func(r map[string]any) {
		if rt, _ := r["resourceType"].(string); rt != "" && rt != "OperationOutcome" {
			id, _ := r["id"].(string)
			out = append(out, rt+"/"+id)
		}
	}
	if c.doc["resourceType"] != "Bundle" {
		add(c.doc)
		return out
	}
	entries, _ := c.doc["entry"].([]any)
	for _, e := range entries {
		entry, _ := e.(map[string]any)
		r, _ := entry["resource"].(map[string]any)
		add(r)
	}
	slices.Sort(out)
	return out
}

// outcome reports whether the answer is a FHIR OperationOutcome.
func (c fhirCall) outcome() bool { return c.doc["resourceType"] == "OperationOutcome" }

func refsOf(typ string, ids ...string) []string {
	var out []string
	for _, id := range ids {
		out = append(out, typ+"/"+id)
	}
	return out
}

func sortedRefs(refs ...[]string) []string {
	out := slices.Concat(refs...)
	slices.Sort(out)
	return out
}

// bobsIDs are every id of Bob's records: none may appear in what a token
// for Alice gets.
func (g *gatewayEnv) bobsIDs() []string {
	b := g.seeded.Bob
	return append([]string{b.Patient, b.Condition, b.Encounter}, b.Observations...)
}

func (g *gatewayEnv) noneOfBobs(t *testing.T, what string, c fhirCall) {
	t.Helper()
	for _, id := range g.bobsIDs() {
		if strings.Contains(c.body, id) {
			t.Errorf("%s: the answer holds Bob's %s: %s", what, id, c.body)
		}
	}
	if strings.Contains(c.body, "Bob") || strings.Contains(c.body, "Sample") {
		t.Errorf("%s: the answer names Bob: %s", what, c.body)
	}
}

func TestGatewayConfinesPatientScopes(t *testing.T) {
	t.Parallel()
	forEachGatewayBackend(t, func(t *testing.T, srv *servertest.Server) {
		g := gatewaySetup(t, srv)
		g.withApp(t, "gw-app", gatewayAppScopes, nil)
		alice, bob := g.seeded.Alice, g.seeded.Bob
		tok := g.token(t, "gw-app", alice.Patient, "launch", "openid", "fhirUser", "patient/Observation.rs", "patient/Patient.rs")

		// Alice's own Observations, by id and by search.
		if c := g.call(t, tok, "GET", "Observation/"+alice.VitalSigns, ""); c.status != 200 || !slices.Equal(c.ids(), refsOf("Observation", alice.VitalSigns)) {
			t.Errorf("read own Observation: %d %v", c.status, c.ids())
		}
		if c := g.call(t, tok, "GET", "Observation", ""); c.status != 200 || !slices.Equal(c.ids(), sortedRefs(refsOf("Observation", alice.Observations...))) {
			t.Errorf("search Observation: %d %v, want Alice's two", c.status, c.ids())
		}
		// Nothing of Bob's, however it is asked for.
		type probe struct{ name, path string }
		for _, p := range []probe{
			{"by id", "Observation/" + bob.VitalSigns},
			{"by version", "Observation/" + bob.VitalSigns + "/_history/1"},
			{"by history", "Observation/" + bob.VitalSigns + "/_history"},
			{"by search for his subject", "Observation?subject=Patient/" + bob.Patient},
			{"by search for his id", "Observation?_id=" + bob.Laboratory},
			{"by _include", "Observation?_include=Observation:subject&_include=Observation:encounter"},
			{"by _revinclude", "Patient?_id=" + bob.Patient + "&_revinclude=Observation:subject"},
			{"by _revinclude from Alice", "Patient?_revinclude=Observation:subject"},
			{"by chained search", "Observation?subject:Patient.name=Bob"},
			{"by _has", "Patient?_has:Observation:subject:code=" + fhirtest.GlucoseCode},
			{"by type history", "Observation/_history"},
		} {
			c := g.call(t, tok, "GET", p.path, "")
			g.noneOfBobs(t, p.name, c)
			if c.status == 200 {
				for _, id := range c.ids() {
					if !slices.Contains(sortedRefs(refsOf("Observation", alice.Observations...), refsOf("Patient", alice.Patient)), id) {
						t.Errorf("%s: %s is not Alice's", p.name, id)
					}
				}
			}
		}
		// Types outside the scopes, and Bob himself, are refused before the
		// FHIR server is asked.
		g.fhir.ClearRequests(t)
		for _, path := range []string{"Condition/" + bob.Condition, "Encounter?patient=" + alice.Patient, "Patient/" + bob.Patient, "Patient/" + bob.Patient + "/$everything", "Condition/" + alice.Condition} {
			c := g.call(t, tok, "GET", path, "")
			if c.status != http.StatusForbidden || !c.outcome() {
				t.Errorf("GET %s: %d %s, want 403 with an OperationOutcome", path, c.status, c.body)
			}
		}
		if reqs := g.fhir.Requests(t); len(reqs) != 0 {
			t.Errorf("refused requests reached the FHIR server: %+v", reqs)
		}
		// medplum has no $everything; for Alice the gateway forwards it, and
		// whatever comes back is checked like any Bundle.
		g.noneOfBobs(t, "Patient/$everything", g.call(t, tok, "GET", "Patient/"+alice.Patient+"/$everything", ""))

		// The FHIR server saw the gateway's credential, the user, and never the app's token.
		g.fhir.ClearRequests(t)
		g.call(t, tok, "GET", "Observation/"+alice.Laboratory, "")
		reqs := g.fhir.Requests(t)
		if len(reqs) != 1 {
			t.Fatalf("upstream requests %+v, want one", reqs)
		}
		h := reqs[0].Header
		if h.Get("X-Api-Key") != gatewayUpstreamKey || h.Get("Authorization") != "" || h.Get("X-Smart-User") != "Practitioner/123" {
			t.Errorf("upstream request headers %v: want the gateway's key, the user, no Authorization", h)
		}
	})
}

func TestGatewayUserScopesAndWrites(t *testing.T) {
	t.Parallel()
	forEachGatewayBackend(t, func(t *testing.T, srv *servertest.Server) {
		g := gatewaySetup(t, srv)
		g.withApp(t, "gw-app", gatewayAppScopes, nil)
		alice, bob := g.seeded.Alice, g.seeded.Bob

		// A user-level token sees both patients.
		user := g.token(t, "gw-app", "", "user/Observation.rs", "user/Patient.rs")
		want := sortedRefs(refsOf("Observation", alice.Observations...), refsOf("Observation", bob.Observations...))
		if c := g.call(t, user, "GET", "Observation", ""); c.status != 200 || !slices.Equal(c.ids(), want) {
			t.Errorf("user/ search: %d %v, want %v", c.status, c.ids(), want)
		}
		if c := g.call(t, user, "GET", "Patient/"+bob.Patient, ""); c.status != 200 {
			t.Errorf("user/ read of Bob: %d", c.status)
		}
		// So does a backend service with system/ scopes, which the upstream
		// is told by its client id.
		backendID, secret := launchClient(t, srv, authzTenant, false)
		g.fhir.ClearRequests(t)
		if c := g.call(t, backendToken(t, srv, authzTenant, backendID, secret), "GET", "Observation", ""); c.status != 200 || !slices.Equal(c.ids(), want) {
			t.Errorf("system/ search: %d %v, want %v", c.status, c.ids(), want)
		}
		if reqs := g.fhir.Requests(t); len(reqs) != 1 || reqs[0].Header.Get("X-Smart-User") != backendID {
			t.Errorf("upstream requests %+v: want one naming the backend client %s", reqs, backendID)
		}
		// Writes its scopes do not allow are refused, with an OperationOutcome.
		obs := func(patient string) string {
			return `{"resourceType":"Observation","status":"final","code":{"text":"note"},"subject":{"reference":"Patient/` + patient + `"}}`
		}
		g.fhir.ClearRequests(t)
		for _, c := range []struct{ method, path, body string }{
			{"POST", "Observation", obs(alice.Patient)},
			{"DELETE", "Observation/" + bob.Laboratory, ""},
			{"POST", "", `{"resourceType":"Bundle","type":"transaction","entry":[]}`},
		} {
			if got := g.call(t, user, c.method, c.path, c.body); got.status != http.StatusForbidden || !got.outcome() {
				t.Errorf("%s %s with a read-only token: %d %s", c.method, c.path, got.status, got.body)
			}
		}
		if reqs := g.fhir.Requests(t); len(reqs) != 0 {
			t.Errorf("refused writes reached the FHIR server: %+v", reqs)
		}

		// A patient-level writer writes for its patient only.
		writer := g.token(t, "gw-app", alice.Patient, "launch", "patient/Observation.cru")
		created := g.call(t, writer, "POST", "Observation", obs(alice.Patient))
		if created.status != http.StatusCreated || !strings.HasPrefix(created.header.Get("Location"), g.base+"/Observation/") {
			t.Errorf("create for Alice: %d Location %q %s", created.status, created.header.Get("Location"), created.body)
		}
		if c := g.call(t, writer, "POST", "Observation", obs(bob.Patient)); c.status != http.StatusForbidden || !c.outcome() {
			t.Errorf("create for Bob: %d %s", c.status, c.body)
		}
		// Taking over Bob's Observation by rewriting it for Alice fails as if it did not exist.
		if c := g.call(t, writer, "PUT", "Observation/"+bob.Laboratory, strings.Replace(obs(alice.Patient), `{"resourceType":"Observation"`, `{"resourceType":"Observation","id":"`+bob.Laboratory+`"`, 1)); c.status != http.StatusNotFound {
			t.Errorf("update of Bob's Observation: %d %s", c.status, c.body)
		}
		if c := g.call(t, user, "GET", "Observation/"+bob.Laboratory, ""); !strings.Contains(c.body, `"Patient/`+bob.Patient+`"`) {
			t.Errorf("Bob's Observation changed: %s", c.body)
		}
		// Updating Alice's own works, and may not move it to Bob.
		id, _ := created.doc["id"].(string)
		own := strings.Replace(obs(alice.Patient), `{"resourceType":"Observation"`, `{"resourceType":"Observation","id":"`+id+`"`, 1)
		if c := g.call(t, writer, "PUT", "Observation/"+id, own); c.status != 200 {
			t.Errorf("update of Alice's Observation: %d %s", c.status, c.body)
		}
		moved := strings.Replace(own, alice.Patient, bob.Patient, 1)
		if c := g.call(t, writer, "PUT", "Observation/"+id, moved); c.status != http.StatusForbidden {
			t.Errorf("moving Alice's Observation to Bob: %d %s", c.status, c.body)
		}
		if c := g.call(t, writer, "DELETE", "Observation/"+id, ""); c.status != http.StatusForbidden {
			t.Errorf("delete without d: %d %s", c.status, c.body)
		}
	})
}

func TestGatewayRefusesTokens(t *testing.T) {
	t.Parallel()
	forEachGatewayBackend(t, func(t *testing.T, srv *servertest.Server) {
		g := gatewaySetup(t, srv)
		g.withApp(t, "gw-app", gatewayAppScopes, nil)
		alice := g.seeded.Alice
		path := "Observation/" + alice.VitalSigns
		unauthorized := func(what string, c fhirCall) {
			t.Helper()
			if c.status != http.StatusUnauthorized || !c.outcome() || !strings.HasPrefix(c.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: %d %s (WWW-Authenticate %q), want 401", what, c.status, c.body, c.header.Get("WWW-Authenticate"))
			}
		}
		unauthorized("no token", g.call(t, "", "GET", path, ""))
		unauthorized("not a token", g.call(t, "not-a-token", "GET", path, ""))

		// A token for the tenant's other FHIR server.
		other := *g
		other.authzEnv = g.as("gw-app", []string{"patient/Observation.rs", "launch"})
		other.authzEnv.fhirBase = "https://fhir.example.org/" + authzTenant
		unauthorized("token for another FHIR base", g.call(t, other.token(t, "gw-app", alice.Patient, "launch", "patient/Observation.rs"), "GET", path, ""))

		// A token of another tenant, whose own gateway has the same upstream.
		otherBase := srv.Issuer("other") + "/fhir"
		ctx := context.Background()
		if _, err := srv.Manage.CreateTenant(ctx, manage.TenantInput{ID: "other", Name: "Other", FHIRBaseURLs: []string{otherBase}}, authzActor); err != nil {
			t.Fatal(err)
		}
		id, secret := launchClient(t, srv, "other", false)
		unauthorized("another tenant's token", g.call(t, backendToken(t, srv, "other", id, secret), "GET", path, ""))

		// A revoked token stops working within the revocation delay.
		tok := g.token(t, "gw-app", alice.Patient, "launch", "patient/Observation.rs")
		if c := g.call(t, tok, "GET", path, ""); c.status != 200 {
			t.Fatalf("fresh token: %d %s", c.status, c.body)
		}
		resp, err := http.PostForm(g.iss+"/revoke", url.Values{"token": {tok}, "client_id": {"gw-app"}})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("revoke: %v %v", resp, err)
		}
		resp.Body.Close()
		time.Sleep(gatewayRevocationDelay + 100*time.Millisecond)
		unauthorized("revoked token", g.call(t, tok, "GET", path, ""))

		// The refusals are in the server's log, the token is not.
		if logs := srv.Logs(); strings.Contains(logs, tok) {
			t.Errorf("the access token was logged")
		}
	})
}

func TestGatewayDiscoveryAndAudit(t *testing.T) {
	t.Parallel()
	forEachGatewayBackend(t, func(t *testing.T, srv *servertest.Server) {
		g := gatewaySetup(t, srv)
		g.withApp(t, "gw-app", gatewayAppScopes, nil)
		alice, bob := g.seeded.Alice, g.seeded.Bob

		// Everything an app needs is found from the FHIR base URL.
		var conf map[string]any
		if resp := getJSON(t, g.base+"/.well-known/smart-configuration", &conf); resp.StatusCode != 200 || conf["issuer"] != g.iss || conf["token_endpoint"] != g.iss+"/token" {
			t.Errorf("smart-configuration at the FHIR base: %d %v", resp.StatusCode, conf)
		}
		md := g.call(t, "", "GET", "metadata", "")
		if md.status != 200 || md.doc["resourceType"] != "CapabilityStatement" || !strings.Contains(md.body, `"valueUri":"`+g.iss+`/authorize"`) ||
			!strings.Contains(md.body, "SMART-on-FHIR") || strings.Contains(md.body, g.fhir.BaseURL()) {
			t.Errorf("metadata: %d %s", md.status, md.body)
		}

		tok := g.token(t, "gw-app", alice.Patient, "launch", "patient/Observation.rs")
		g.call(t, tok, "GET", "Observation/"+alice.VitalSigns, "")
		g.call(t, tok, "GET", "Observation", "")
		g.call(t, tok, "GET", "Condition/"+bob.Condition, "")

		// Every request is audited, allowed or refused, with who and which patient.
		var events []storage.AuditEvent
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			var err error
			if events, err = srv.Store.ListAudit(context.Background(), authzTenant, storage.AuditFilter{ClientID: "gw-app"}); err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, e := range events {
				if strings.HasPrefix(e.Type, "fhir.") {
					n++
				}
			}
			if n >= 3 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		got := map[string]storage.AuditEvent{}
		for _, e := range events {
			if strings.HasPrefix(e.Type, "fhir.") {
				got[e.Type+" "+e.Outcome] = e
			}
		}
		read, search, refused := got["fhir.read success"], got["fhir.search-type success"], got["fhir.read failure"]
		if read.Subject != "Observation/"+alice.VitalSigns || read.ActorID != g.userID || read.Details["patient"] != "Patient/"+alice.Patient || read.Details["resource_type"] != "Observation" {
			t.Errorf("audit of the read: %+v", read)
		}
		if search.Details["resource_type"] != "Observation" || search.Details["patient"] != "Patient/"+alice.Patient {
			t.Errorf("audit of the search: %+v", search)
		}
		if refused.Subject != "Condition/"+bob.Condition || refused.Details["reason"] == "" {
			t.Errorf("audit of the refusal: %+v", refused)
		}
		// Exported as FHIR AuditEvents, each names its RESTful interaction.
		ae := audit.FHIRAuditEvent(search, g.iss)
		if ae.Type.Code != "rest" || !slices.ContainsFunc(ae.Subtype, func(c audit.Coding) bool {
			return c.System == "http://hl7.org/fhir/restful-interaction" && c.Code == "search-type"
		}) || ae.Action != "R" || ae.Outcome != "0" {
			t.Errorf("exported AuditEvent of the search: %+v", ae)
		}
		if ae := audit.FHIRAuditEvent(refused, g.iss); ae.Outcome != "4" || ae.OutcomeDesc == "" {
			t.Errorf("exported AuditEvent of the refusal: %+v", ae)
		}
	})
}

func TestGatewayGranularScopes(t *testing.T) {
	t.Parallel()
	forEachGatewayBackend(t, func(t *testing.T, srv *servertest.Server) {
		g := gatewaySetup(t, srv)
		g.withApp(t, "gw-app", gatewayAppScopes, nil)
		alice := g.seeded.Alice
		tok := g.token(t, "gw-app", alice.Patient, "launch", "patient/Observation.rs?category="+fhirtest.CategorySystem+"|"+fhirtest.CategoryLaboratory)

		// The search is narrowed to the category, and so is what comes back.
		g.fhir.ClearRequests(t)
		if c := g.call(t, tok, "GET", "Observation", ""); c.status != 200 || !slices.Equal(c.ids(), refsOf("Observation", alice.Laboratory)) {
			t.Errorf("granular search: %d %v, want only the laboratory Observation", c.status, c.ids())
		}
		if reqs := g.fhir.Requests(t); len(reqs) != 1 || !strings.Contains(reqs[0].URL, "category=") || !strings.Contains(reqs[0].URL, "subject=Patient%2F"+alice.Patient) {
			t.Errorf("upstream search %+v: want the category and the patient added", reqs)
		}
		// Asking for the other category gets nothing, by search or by id.
		if c := g.call(t, tok, "GET", "Observation?category="+fhirtest.CategoryVitalSigns, ""); c.status != 200 || len(c.ids()) != 0 {
			t.Errorf("search for vital signs: %d %v", c.status, c.ids())
		}
		if c := g.call(t, tok, "GET", "Observation/"+alice.VitalSigns, ""); c.status != http.StatusNotFound {
			t.Errorf("read of the vital signs: %d %s", c.status, c.body)
		}
		if c := g.call(t, tok, "GET", "Observation/"+alice.Laboratory, ""); c.status != 200 {
			t.Errorf("read of the laboratory Observation: %d %s", c.status, c.body)
		}
	})
}

// TestGatewayWithoutUpstream: a tenant has a gateway once its base is one of
// the tenant's FHIR base URLs. Discovery works there before an upstream is
// set, and reads say that none is; a tenant without either has no gateway.
func TestGatewayWithoutUpstream(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	ctx := context.Background()
	srv.Tenant(t, "other")
	tn := srv.Tenant(t, "clinic")
	get := func(tenant, path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.Issuer(tenant) + "/fhir" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/.well-known/smart-configuration", "/metadata", "/Patient/p1"} {
		if status, body := get("other", path); status != http.StatusNotFound {
			t.Errorf("GET %s of a tenant without a gateway: %d %s", path, status, body)
		}
	}

	base := srv.Issuer("clinic") + "/fhir"
	if _, err := srv.Manage.UpdateTenant(ctx, manage.TenantUpdate{ID: tn.ID, Name: tn.Name, FHIRBaseURLs: append(tn.FHIRBaseURLs, base), Version: tn.Version}, testActor); err != nil {
		t.Fatal(err)
	}
	if status, body := get("clinic", "/.well-known/smart-configuration"); status != http.StatusOK || !strings.Contains(body, `"issuer":"`+srv.Issuer("clinic")+`"`) {
		t.Errorf("smart-configuration at the gateway base without an upstream: %d %s", status, body)
	}
	if status, body := get("clinic", "/metadata"); status != http.StatusOK || !strings.Contains(body, `"resourceType":"CapabilityStatement"`) ||
		!strings.Contains(body, `"valueUri":"`+srv.Issuer("clinic")+`/authorize"`) {
		t.Errorf("metadata at the gateway base without an upstream: %d %s", status, body)
	}
	if status, body := get("clinic", "/Patient/p1"); status != http.StatusServiceUnavailable || !strings.Contains(body, `"resourceType":"OperationOutcome"`) ||
		!strings.Contains(body, "No upstream FHIR server is configured") {
		t.Errorf("a read without an upstream: %d %s", status, body)
	}
}

// TestGatewayDatabaseOutage takes PostgreSQL away from a gateway in use. A
// token validated moments before keeps working for the revocation delay,
// its reads audited from the queue once the database is back; past that,
// the gateway answers 503 with Retry-After, never a 401 that would send the
// app to sign in again; and it serves again, without a restart, once the
// database returns. The upstream is a plain HTTP server: what is tested is
// the gateway's side of the outage, not FHIR.
func TestGatewayDatabaseOutage(t *testing.T) {
	if !hasPostgres() {
		t.Skip("TEST_DATABASE_URL not set: the outage is simulated between the server and PostgreSQL")
	}
	t.Parallel()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		io.WriteString(w, `{"resourceType":"Observation","id":"o1","status":"final"}`)
	}))
	t.Cleanup(upstream.Close)
	proxy, viaProxy := pgtest.NewProxy(t, pgtest.URL(t))
	store, err := postgres.Open(context.Background(), viaProxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := store.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := servertest.Start(t, store)
	ctx := context.Background()
	base := srv.Issuer("clinic") + "/fhir"
	if _, err := srv.Manage.CreateTenant(ctx, manage.TenantInput{ID: "clinic", Name: "Clinic", FHIRBaseURLs: []string{base}}, testActor); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Manage.SetGateway(ctx, "clinic", manage.GatewayInput{UpstreamURL: upstream.URL + "/fhir"}, testActor); err != nil {
		t.Fatal(err)
	}
	id, secret := launchClient(t, srv, "clinic", false)
	token := backendToken(t, srv, "clinic", id, secret)
	read := func() answer {
		t.Helper()
		return send(t, "GET", base+"/Observation/o1", nil, bearer(token))
	}
	if a := read(); a.status != 200 {
		t.Fatalf("before the outage: %d %s", a.status, a.body)
	}

	proxy.Cut()
	// Within the revocation delay the cached tenant and token may still
	// serve the read, unless the change feed's lost connection has already
	// emptied the caches; either way it is never refused as unauthorized.
	allowed := 2 // the reads before and after the outage
	switch a := read(); a.status {
	case 200:
		allowed++
	case http.StatusServiceUnavailable:
	default:
		t.Errorf("during the outage, within the revocation delay: %d %s", a.status, a.body)
	}
	srv.Clock.Advance(server.TenantCacheTTL + time.Minute)
	a := read()
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" || !strings.Contains(a.body, "OperationOutcome") {
		t.Errorf("during the outage: %d Retry-After %q %s; want 503 with Retry-After and an OperationOutcome", a.status, a.header.Get("Retry-After"), a.body)
	}

	proxy.Restore()
	deadline := time.Now().Add(20 * time.Second)
	for a = read(); a.status != 200 && time.Now().Before(deadline); a = read() {
		time.Sleep(100 * time.Millisecond)
	}
	if a.status != 200 {
		t.Fatalf("after the outage: %d %s", a.status, a.body)
	}
	// Every allowed read is in the trail, one made during the outage too.
	for {
		events, err := store.ListAudit(ctx, "clinic", storage.AuditFilter{Type: "fhir.read"})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range events {
			if e.Outcome == "success" {
				n++
			}
		}
		if n >= allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d allowed fhir.read events stored, want %d: a read during the outage was lost", n, allowed)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
