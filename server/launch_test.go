package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// launchEnv is a tenant with an EHR allowed to create launches, a backend
// client that is not, and an app to launch.
type launchEnv struct {
	srv      *servertest.Server
	endpoint string
	// ehrToken and otherToken are client_credentials access tokens of the
	// EHR and of the client without the permission.
	ehrToken, otherToken string
	ehrID, ehrSecret     string
	userID               string
}

// launchClient registers a client_credentials client and returns its id and secret.
func launchClient(t *testing.T, srv *servertest.Server, tenant string, canLaunch bool) (string, string) {
	t.Helper()
	c, secret, err := srv.Manage.CreateClient(context.Background(), manage.ClientInput{
		TenantID: tenant, Name: "EHR", Type: storage.ClientConfidentialSymmetric, Scopes: []string{"system/*.rs"},
		GrantTypes: []string{manage.GrantClientCredentials}, CanCreateLaunch: canLaunch,
	}, testActor)
	if err != nil {
		t.Fatal(err)
	}
	return c.ID, secret
}

// backendToken gets an access token through client_credentials.
func backendToken(t *testing.T, srv *servertest.Server, tenant, id, secret string) string {
	t.Helper()
	status, body := postForm(t, tokenEndpoint(srv, tenant), url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}, id, secret)
	token, _ := body["access_token"].(string)
	if status != http.StatusOK || token == "" {
		t.Fatalf("client_credentials: %d %v", status, body)
	}
	return token
}

func launchSetup(t *testing.T, srv *servertest.Server) *launchEnv {
	t.Helper()
	ctx := context.Background()
	if _, err := srv.Manage.CreateTenant(ctx, manage.TenantInput{ID: "clinic", FHIRBaseURLs: []string{"https://fhir.example/r4", "https://fhir.example/r5"}}, testActor); err != nil {
		t.Fatal(err)
	}
	if _, _, err := srv.Manage.CreateClient(ctx, manage.ClientInput{
		TenantID: "clinic", ID: "chart", Name: "Chart", Type: storage.ClientPublic, RedirectURIs: []string{"https://app.example/cb"},
		Scopes: []string{"launch", "patient/*.rs"}, LaunchURI: "https://app.example/launch",
	}, testActor); err != nil {
		t.Fatal(err)
	}
	u, err := srv.Manage.CreateUser(ctx, manage.UserInput{TenantID: "clinic", Email: "dr@clinic.example",
		Profiles: []storage.Profile{{FHIRUser: "Practitioner/1"}}}, testActor)
	if err != nil {
		t.Fatal(err)
	}
	e := &launchEnv{srv: srv, endpoint: srv.Issuer("clinic") + "/launch", userID: u.ID}
	e.ehrID, e.ehrSecret = launchClient(t, srv, "clinic", true)
	e.ehrToken = backendToken(t, srv, "clinic", e.ehrID, e.ehrSecret)
	otherID, otherSecret := launchClient(t, srv, "clinic", false)
	e.otherToken = backendToken(t, srv, "clinic", otherID, otherSecret)
	return e
}

// postLaunch posts body to the launch API with token (none when empty) and
// returns the status, the headers and the decoded JSON answer.
func postLaunch(t *testing.T, endpoint, token, contentType, body string) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", endpoint, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("POST %s: %d, not JSON: %s", endpoint, resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, out
}

func TestLaunchAPI(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := launchSetup(t, srv)
		ctx := context.Background()

		status, header, body := postLaunch(t, e.endpoint, e.ehrToken, "application/json", `{
			"client_id": "chart", "patient": "123", "encounter": "enc-1",
			"fhirContext": [{"reference": "DiagnosticReport/7"}, {"canonical": "http://example.org/Questionnaire/q|2", "type": "Questionnaire"}],
			"need_patient_banner": false, "smart_style_url": "https://ehr.example/style.json", "intent": "reconcile-medications",
			"user": "dr@clinic.example", "aud": "https://fhir.example/r5"}`)
		if status != http.StatusCreated {
			t.Fatalf("create launch: %d %v", status, body)
		}
		value, _ := body["launch"].(string)
		if len(value) < 43 || body["expires_in"] != float64(600) || body["iss"] != "https://fhir.example/r5" {
			t.Fatalf("launch response %v", body)
		}
		if header.Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control %q, want no-store", header.Get("Cache-Control"))
		}
		launchURL, err := url.Parse(body["launch_url"].(string))
		if err != nil || launchURL.Host != "app.example" || launchURL.Path != "/launch" ||
			launchURL.Query().Get("iss") != "https://fhir.example/r5" || launchURL.Query().Get("launch") != value {
			t.Fatalf("launch_url %v", body["launch_url"])
		}
		l, err := srv.Store.GetLaunch(ctx, "clinic", value, srv.Clock.Now())
		if err != nil {
			t.Fatalf("the returned launch value finds no usable launch: %v", err)
		}
		banner := l.Context.NeedPatientBanner
		if l.ClientID != "chart" || l.UserID != e.userID || l.Context.Patient != "123" || l.Context.Encounter != "enc-1" ||
			banner == nil || *banner || l.Context.Intent != "reconcile-medications" || l.Context.SmartStyleURL != "https://ehr.example/style.json" ||
			!bytes.Contains(l.Context.FHIRContext, []byte(`"DiagnosticReport/7"`)) {
			t.Fatalf("stored launch %+v", l)
		}
		events, err := srv.Store.ListAudit(ctx, "clinic", storage.AuditFilter{Type: "launch.create"})
		if err != nil || len(events) != 1 || events[0].ActorID != "client:"+e.ehrID || events[0].ClientID != "chart" ||
			events[0].Details["patient"] != "123" || events[0].SourceIP == "" {
			t.Fatalf("launch.create audit: %+v, %v", events, err)
		}

		// The smallest request: just the app, launched against the first FHIR base URL.
		status, _, body = postLaunch(t, e.endpoint, e.ehrToken, "application/json; charset=utf-8", `{"client_id":"chart"}`)
		if status != http.StatusCreated || body["iss"] != "https://fhir.example/r4" || body["launch"] == value {
			t.Fatalf("minimal launch: %d %v", status, body)
		}
	})
}

func TestLaunchAPIRefusesCallers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := launchSetup(t, srv)
		const body = `{"client_id":"chart","patient":"123"}`

		// Another tenant's EHR, with the permission there, is a stranger here.
		srv.Tenant(t, "other")
		foreignID, foreignSecret := launchClient(t, srv, "other", true)
		foreign := backendToken(t, srv, "other", foreignID, foreignSecret)
		if status, _, got := postLaunch(t, srv.Issuer("other")+"/launch", foreign, "application/json", `{"client_id":"nope"}`); status != http.StatusBadRequest {
			t.Fatalf("the foreign token does not work in its own tenant: %d %v", status, got)
		}

		// A revoked token of the EHR.
		revokedID, revokedSecret := launchClient(t, srv, "clinic", true)
		revoked := backendToken(t, srv, "clinic", revokedID, revokedSecret)
		if status, _, got := postLaunch(t, e.endpoint, revoked, "application/json", body); status != http.StatusCreated {
			t.Fatalf("the token to revoke does not work before: %d %v", status, got)
		}
		if status, got := postForm(t, srv.Issuer("clinic")+"/revoke", url.Values{"token": {revoked}}, revokedID, revokedSecret); status != http.StatusOK {
			t.Fatalf("revoke: %d %v", status, got)
		}

		tests := []struct {
			name, token string
			status      int
			code        string
		}{
			{"no token", "", http.StatusUnauthorized, "invalid_token"},
			{"garbage token", "not-a-token", http.StatusUnauthorized, "invalid_token"},
			{"tampered token", e.ehrToken[:len(e.ehrToken)-4] + "AAAA", http.StatusUnauthorized, "invalid_token"},
			{"revoked token", revoked, http.StatusUnauthorized, "invalid_token"},
			{"token of another tenant", foreign, http.StatusUnauthorized, "invalid_token"},
			{"client without the permission", e.otherToken, http.StatusForbidden, "insufficient_scope"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				status, header, got := postLaunch(t, e.endpoint, tc.token, "application/json", body)
				if status != tc.status || got["error"] != tc.code {
					t.Fatalf("got %d %v, want %d %s", status, got, tc.status, tc.code)
				}
				if !strings.Contains(header.Get("WWW-Authenticate"), `Bearer error="`+tc.code+`"`) {
					t.Fatalf("WWW-Authenticate %q", header.Get("WWW-Authenticate"))
				}
			})
		}
		// A Basic credential is not a bearer token.
		req, _ := http.NewRequest("POST", e.endpoint, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth(e.ehrID, e.ehrSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("Basic credentials: %d, want 401", resp.StatusCode)
		}

		// Refusals create nothing: only the one launch made with the revoked
		// token's client before revocation is audited.
		events, err := srv.Store.ListAudit(context.Background(), "clinic", storage.AuditFilter{Type: "launch.create"})
		if err != nil || len(events) != 1 {
			t.Fatalf("launch.create events after refusals: %d, %v", len(events), err)
		}

		// The EHR's token stops working when it expires.
		srv.Clock.Advance(2 * time.Hour)
		if status, _, got := postLaunch(t, e.endpoint, e.ehrToken, "application/json", body); status != http.StatusUnauthorized || got["error"] != "invalid_token" {
			t.Fatalf("expired token: %d %v", status, got)
		}
	})
}

func TestLaunchAPIRefusesBadInput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := launchSetup(t, srv)
		tests := []struct {
			name, contentType, body, want string
		}{
			{"not JSON", "application/json", `{"client_id":`, "not a valid JSON object"},
			{"form body", "application/x-www-form-urlencoded", `client_id=chart`, "application/json"},
			{"unknown field", "application/json", `{"client_id":"chart","patient_id":"123"}`, "patient_id"},
			{"two objects", "application/json", `{"client_id":"chart"} {}`, "one JSON object"},
			{"no client", "application/json", `{"patient":"123"}`, "client_id"},
			{"unknown client", "application/json", `{"client_id":"ghost"}`, "not registered"},
			{"backend client", "application/json", `{"client_id":"` + e.ehrID + `"}`, "authorization_code"},
			{"patient reference", "application/json", `{"client_id":"chart","patient":"Patient/123"}`, "FHIR id"},
			{"bad encounter", "application/json", `{"client_id":"chart","encounter":"a b"}`, "encounter"},
			{"fhirContext object", "application/json", `{"client_id":"chart","fhirContext":{"reference":"Observation/1"}}`, "fhirContext"},
			{"fhirContext without reference", "application/json", `{"client_id":"chart","fhirContext":[{"type":"Observation"}]}`, "reference"},
			{"style URL over http", "application/json", `{"client_id":"chart","smart_style_url":"http://ehr.example/s.json"}`, "smart_style_url"},
			{"banner not a boolean", "application/json", `{"client_id":"chart","need_patient_banner":"yes"}`, "need_patient_banner"},
			{"intent with spaces", "application/json", `{"client_id":"chart","intent":"do it"}`, "intent"},
			{"unknown user", "application/json", `{"client_id":"chart","user":"nobody@clinic.example"}`, "not a user"},
			{"foreign aud", "application/json", `{"client_id":"chart","aud":"https://fhir.evil.example/r4"}`, "aud"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				status, _, got := postLaunch(t, e.endpoint, e.ehrToken, tc.contentType, tc.body)
				desc, _ := got["error_description"].(string)
				if status != http.StatusBadRequest || got["error"] != "invalid_request" || !strings.Contains(desc, tc.want) {
					t.Fatalf("got %d %v, want 400 invalid_request about %q", status, got, tc.want)
				}
				if strings.Contains(desc, "invalid input") {
					t.Fatalf("description %q carries the internal error prefix", desc)
				}
			})
		}
		events, err := srv.Store.ListAudit(context.Background(), "clinic", storage.AuditFilter{Type: "launch.create"})
		if err != nil || len(events) != 0 {
			t.Fatalf("refused launches were audited: %d, %v", len(events), err)
		}
	})
}
