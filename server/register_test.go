package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// registrationResult is one answer of the registration endpoint.
type registrationResult struct {
	status int
	header http.Header
	body   map[string]any
}

// postRegistration posts client metadata with an initial access token (none
// when empty) to a tenant's registration endpoint.
func postRegistration(t *testing.T, srv *servertest.Server, tenant, token, metadata string) registrationResult {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.Issuer(tenant)+"/register", strings.NewReader(metadata))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("register: %d, not JSON: %s", resp.StatusCode, raw)
	}
	return registrationResult{status: resp.StatusCode, header: resp.Header, body: body}
}

// initialToken issues an initial access token for tenant, for the apps the
// allowance lets it register.
func initialToken(t *testing.T, srv *servertest.Server, tenant string, allow manage.InitialAccessAllowance) string {
	t.Helper()
	token, _, err := srv.Manage.CreateInitialAccessToken(context.Background(), tenant, 0, allow, testActor)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// refusedToken asserts the answer every bad initial access token gets.
func refusedToken(t *testing.T, res registrationResult) {
	t.Helper()
	if res.status != http.StatusUnauthorized || res.body["error"] != "invalid_token" ||
		!strings.Contains(res.header.Get("WWW-Authenticate"), `Bearer error="invalid_token"`) {
		t.Fatalf("got %d %v, WWW-Authenticate %q; want 401 invalid_token with a Bearer challenge",
			res.status, res.body, res.header.Get("WWW-Authenticate"))
	}
}

// userFacing and backends are the two allowances an initial access token
// may carry.
var (
	userFacing = manage.InitialAccessAllowance{}
	backends   = manage.InitialAccessAllowance{BackendServices: true}
)

// appMetadata registers an app that people sign in to, which any initial
// access token may.
const appMetadata = `{"client_name": "Chart", "token_endpoint_auth_method": "none", "redirect_uris": ["https://chart.example/cb"],
	"grant_types": ["authorization_code", "refresh_token"], "scope": "openid fhirUser launch launch/patient patient/*.rs offline_access"}`

const backendMetadata = `{"client_name": "Nightly export", "token_endpoint_auth_method": "client_secret_basic",
	"grant_types": ["client_credentials"], "scope": "system/*.rs", "software_id": "export-1", "logo_uri": "https://export.example/logo.png"}`

func TestRegisterConfidentialClientGetsTokens(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		srv.Tenant(t, "clinic")
		res := postRegistration(t, srv, "clinic", initialToken(t, srv, "clinic", backends), backendMetadata)
		if res.status != http.StatusCreated {
			t.Fatalf("register: %d %v", res.status, res.body)
		}
		if res.header.Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control %q, want no-store", res.header.Get("Cache-Control"))
		}
		id, _ := res.body["client_id"].(string)
		secret, _ := res.body["client_secret"].(string)
		if id == "" || len(secret) < 43 || res.body["client_secret_expires_at"] != float64(0) ||
			res.body["client_id_issued_at"] == nil || res.body["scope"] != "system/*.rs" ||
			res.body["token_endpoint_auth_method"] != "client_secret_basic" || res.body["response_types"] != nil {
			t.Fatalf("registration response %v", res.body)
		}
		if grants, _ := res.body["grant_types"].([]any); len(grants) != 1 || grants[0] != "client_credentials" {
			t.Fatalf("grant_types %v, want only client_credentials", res.body["grant_types"])
		}

		// The returned secret works at the token endpoint, a wrong one does not.
		backendToken(t, srv, "clinic", id, secret)
		status, body := postForm(t, tokenEndpoint(srv, "clinic"), url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}, id, secret+"x")
		if status != http.StatusUnauthorized {
			t.Fatalf("wrong secret: %d %v", status, body)
		}

		// The audit trail says who authorized the registration.
		events, err := srv.Store.ListAudit(context.Background(), "clinic", storage.AuditFilter{Type: "client.register"})
		if err != nil || len(events) != 1 || events[0].Outcome != "success" || events[0].ClientID != id ||
			events[0].Details["token_created_by"] != testActor.ID {
			t.Fatalf("client.register events %+v, %v", events, err)
		}
	})
}

func TestRegisterPublicClientRedirectIsExact(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		tn := srv.Tenant(t, "clinic")
		res := postRegistration(t, srv, "clinic", initialToken(t, srv, "clinic", userFacing), `{"client_name": "Chart",
			"token_endpoint_auth_method": "none", "redirect_uris": ["https://chart.example/cb"],
			"grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
			"scope": "openid fhirUser launch/patient patient/*.rs", "launch_uri": "https://chart.example/launch"}`)
		if res.status != http.StatusCreated || res.body["client_secret"] != nil || res.body["client_secret_expires_at"] != nil ||
			res.body["launch_uri"] != "https://chart.example/launch" {
			t.Fatalf("register public client: %d %v", res.status, res.body)
		}
		id := res.body["client_id"].(string)
		browser := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		for _, tc := range []struct {
			redirect string
			want     int
		}{
			{"https://chart.example/cb", http.StatusOK},
			{"https://chart.example/cb/evil", http.StatusBadRequest},
			{"https://other.example/cb", http.StatusBadRequest},
		} {
			conf := &oauth2.Config{ClientID: id, RedirectURL: tc.redirect, Scopes: []string{"openid", "launch/patient"},
				Endpoint: oauth2.Endpoint{AuthURL: srv.Issuer("clinic") + "/authorize"}}
			u := conf.AuthCodeURL("state-registered-1", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("aud", tn.FHIRBaseURLs[0]))
			resp, err := browser.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want || resp.Header.Get("Location") != "" {
				t.Errorf("authorize with %s: %d Location %q, want %d", tc.redirect, resp.StatusCode, resp.Header.Get("Location"), tc.want)
			}
		}
	})
}

func TestRegisterRefusesBadInitialAccessTokens(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		srv.Tenant(t, "alpha")
		srv.Tenant(t, "beta")

		t.Run("missing", func(t *testing.T) {
			refusedToken(t, postRegistration(t, srv, "alpha", "", backendMetadata))
		})
		t.Run("unknown", func(t *testing.T) {
			refusedToken(t, postRegistration(t, srv, "alpha", "bm90LWEtcmVhbC10b2tlbi1qdXN0LWd1ZXNzd29yaw", backendMetadata))
		})
		t.Run("reused", func(t *testing.T) {
			token := initialToken(t, srv, "alpha", backends)
			if res := postRegistration(t, srv, "alpha", token, backendMetadata); res.status != http.StatusCreated {
				t.Fatalf("first use: %d %v", res.status, res.body)
			}
			refusedToken(t, postRegistration(t, srv, "alpha", token, backendMetadata))
		})
		t.Run("other tenant's", func(t *testing.T) {
			token := initialToken(t, srv, "alpha", backends)
			refusedToken(t, postRegistration(t, srv, "beta", token, backendMetadata))
			// Refused at beta, it still works at alpha.
			if res := postRegistration(t, srv, "alpha", token, backendMetadata); res.status != http.StatusCreated {
				t.Fatalf("at its own tenant: %d %v", res.status, res.body)
			}
		})
		t.Run("expired", func(t *testing.T) {
			token := initialToken(t, srv, "beta", backends)
			srv.Clock.Advance(24*time.Hour + time.Second)
			refusedToken(t, postRegistration(t, srv, "beta", token, backendMetadata))
		})

		clients, err := srv.Store.ListClients(context.Background(), "beta")
		if err != nil || len(clients) != 0 {
			t.Fatalf("beta has clients %v, %v; no refused registration may create one", clients, err)
		}
	})
}

func TestRegisterRefusesBadMetadata(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		srv.Tenant(t, "clinic")
		token := initialToken(t, srv, "clinic", backends)
		for _, tc := range []struct {
			name, metadata, want string
		}{
			{"http redirect", `{"client_name": "A", "token_endpoint_auth_method": "none", "redirect_uris": ["http://app.example/cb"], "scope": "openid"}`,
				"invalid_redirect_uri"},
			{"fragment in redirect", `{"client_name": "A", "token_endpoint_auth_method": "none", "redirect_uris": ["https://app.example/cb#x"], "scope": "openid"}`,
				"invalid_redirect_uri"},
			{"unsupported auth method", `{"client_name": "A", "token_endpoint_auth_method": "client_secret_jwt", "redirect_uris": ["https://app.example/cb"], "scope": "openid"}`,
				"invalid_client_metadata"},
			{"implicit response type", `{"client_name": "A", "token_endpoint_auth_method": "none", "redirect_uris": ["https://app.example/cb"], "response_types": ["token"], "scope": "openid"}`,
				"invalid_client_metadata"},
			{"public client credentials", `{"client_name": "A", "token_endpoint_auth_method": "none", "grant_types": ["client_credentials"], "scope": "system/*.rs"}`,
				"invalid_client_metadata"},
			{"no scope", `{"client_name": "A", "token_endpoint_auth_method": "none", "redirect_uris": ["https://app.example/cb"]}`,
				"invalid_client_metadata"},
			{"private_key_jwt without keys", `{"client_name": "A", "token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"], "scope": "system/*.rs"}`,
				"invalid_client_metadata"},
			{"admin API scope", `{"client_name": "A", "token_endpoint_auth_method": "client_secret_basic", "grant_types": ["client_credentials"], "scope": "admin"}`,
				"invalid_client_metadata"},
			{"redirect_uris not a list", `{"client_name": "A", "redirect_uris": "https://app.example/cb", "scope": "openid"}`,
				"invalid_client_metadata"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res := postRegistration(t, srv, "clinic", token, tc.metadata)
				if res.status != http.StatusBadRequest || res.body["error"] != tc.want || res.body["error_description"] == "" {
					t.Fatalf("got %d %v, want 400 %s", res.status, res.body, tc.want)
				}
			})
		}
		// Refused metadata did not use the token up.
		if res := postRegistration(t, srv, "clinic", token, backendMetadata); res.status != http.StatusCreated {
			t.Fatalf("after refusals: %d %v", res.status, res.body)
		}
	})
}

func TestRegistrationEndpointAdvertised(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		srv.Tenant(t, "clinic")
		iss := srv.Issuer("clinic")
		for _, doc := range []string{"smart-configuration", "openid-configuration"} {
			var got map[string]any
			getJSON(t, iss+"/.well-known/"+doc, &got)
			if got["registration_endpoint"] != iss+"/register" {
				t.Errorf("%s registration_endpoint %v, want %s", doc, got["registration_endpoint"], iss+"/register")
			}
		}
	})
}

func TestRegisterDefaultsToUserFacingApps(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		srv.Tenant(t, "clinic")
		token := initialToken(t, srv, "clinic", userFacing)
		for _, tc := range []struct {
			name, metadata, want string
		}{
			{"backend service", backendMetadata, "backend services"},
			{"client credentials with user scopes", `{"client_name": "A", "grant_types": ["client_credentials"], "scope": "user/*.rs"}`, "client_credentials"},
			{"system scope on an app", `{"client_name": "A", "token_endpoint_auth_method": "none", "redirect_uris": ["https://a.example/cb"], "scope": "openid system/*.cruds"}`,
				"system/*.cruds"},
			{"token exchange", `{"client_name": "A", "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"], "scope": "openid"}`, "token-exchange"},
			{"launch right", `{"client_name": "A", "redirect_uris": ["https://a.example/cb"], "scope": "openid launch", "can_create_launch": true}`, "can_create_launch"},
			{"custom scope", `{"client_name": "A", "token_endpoint_auth_method": "none", "redirect_uris": ["https://a.example/cb"], "scope": "openid email"}`, "email"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res := postRegistration(t, srv, "clinic", token, tc.metadata)
				desc, _ := res.body["error_description"].(string)
				if res.status != http.StatusBadRequest || res.body["error"] != "invalid_client_metadata" || !strings.Contains(desc, tc.want) {
					t.Fatalf("got %d %v, want 400 invalid_client_metadata naming %q", res.status, res.body, tc.want)
				}
			})
		}
		if clients, err := srv.Store.ListClients(context.Background(), "clinic"); err != nil || len(clients) != 0 {
			t.Fatalf("clients %v, %v; a refused registration creates none", clients, err)
		}
		// The refusals did not use the token up: it registers an app.
		res := postRegistration(t, srv, "clinic", token, appMetadata)
		if res.status != http.StatusCreated {
			t.Fatalf("app after refusals: %d %v", res.status, res.body)
		}
		c, err := srv.Store.GetClient(context.Background(), "clinic", res.body["client_id"].(string))
		if err != nil || c.CanCreateLaunch || c.Type != storage.ClientPublic {
			t.Fatalf("registered %+v, %v", c, err)
		}

		// A token that allows backend services still refuses token exchange.
		res = postRegistration(t, srv, "clinic", initialToken(t, srv, "clinic", backends),
			`{"client_name": "A", "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"], "scope": "openid"}`)
		if res.status != http.StatusBadRequest || res.body["error"] != "invalid_client_metadata" {
			t.Fatalf("token exchange with backend services allowed: %d %v", res.status, res.body)
		}
	})
}

func TestInitialAccessTokensInTheAdminAPI(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := apiSetup(t, srv)
		base := e.v1 + "/tenants/acme/initial-access-tokens"
		issue := func(body string, wantBackends bool) string {
			t.Helper()
			r := apiCall(t, "POST", base, e.acmeToken, "", body)
			apiWant(t, "issue "+body, r, http.StatusCreated, "")
			m := r.object(t)
			token, _ := m["token"].(string)
			if token == "" || m["backend_services"] != wantBackends {
				t.Fatalf("issued %s, want backend_services %v", r.body, wantBackends)
			}
			if ev := apiLastEvent(t, srv, "acme", "admin.initial_access_token.create"); ev.Details["backend_services"] != fmt.Sprint(wantBackends) {
				t.Fatalf("create event %+v, want backend_services %v", ev, wantBackends)
			}
			return token
		}
		app := issue("", false)
		backend := issue(`{"ttl": "2h", "backend_services": true}`, true)
		apiWant(t, "allowance not a boolean", apiCall(t, "POST", base, e.acmeToken, "", `{"backend_services": "yes"}`), http.StatusBadRequest, "invalid_request")

		type listed struct {
			Ref             string    `json:"ref"`
			BackendServices bool      `json:"backend_services"`
			CreatedBy       string    `json:"created_by"`
			CreatedAt       time.Time `json:"created_at"`
			ExpiresAt       time.Time `json:"expires_at"`
		}
		list := func() []listed {
			t.Helper()
			r := apiCall(t, "GET", base, e.acmeToken, "", "")
			apiWant(t, "list", r, http.StatusOK, "")
			if strings.Contains(string(r.body), app) || strings.Contains(string(r.body), backend) {
				t.Fatalf("the list shows a token: %s", r.body)
			}
			var out []listed
			r.json(t, &out)
			return out
		}
		got := list()
		if len(got) != 2 || len(got[0].Ref) != 16 || got[0].BackendServices || !got[1].BackendServices ||
			got[1].CreatedBy != "client:"+e.acmeID || got[1].ExpiresAt.Sub(got[1].CreatedAt) != 2*time.Hour {
			t.Fatalf("outstanding %+v", got)
		}

		// Each token registers what it allows; a used token leaves the list.
		if res := postRegistration(t, srv, "acme", app, backendMetadata); res.status != http.StatusBadRequest {
			t.Fatalf("backend service with an app's token: %d %v", res.status, res.body)
		}
		if res := postRegistration(t, srv, "acme", backend, backendMetadata); res.status != http.StatusCreated {
			t.Fatalf("backend service with the allowance: %d %v", res.status, res.body)
		}
		if got = list(); len(got) != 1 || got[0].BackendServices {
			t.Fatalf("after one registration %+v, want the app's token only", got)
		}

		// Revoked, the token no longer registers anything, and it is audited.
		ref := got[0].Ref
		apiWant(t, "revoke in another tenant", apiCall(t, "DELETE", e.v1+"/tenants/other/initial-access-tokens/"+ref, e.opToken, "", ""), http.StatusNotFound, "not_found")
		apiWant(t, "revoke", apiCall(t, "DELETE", base+"/"+ref, e.acmeToken, "", ""), http.StatusNoContent, "")
		if ev := apiLastEvent(t, srv, "acme", "admin.initial_access_token.revoke"); ev.ActorID != "client:"+e.acmeID || ev.Details["token_ref"] != ref {
			t.Fatalf("revoke event %+v", ev)
		}
		refusedToken(t, postRegistration(t, srv, "acme", app, appMetadata))
		apiWant(t, "revoke again", apiCall(t, "DELETE", base+"/"+ref, e.acmeToken, "", ""), http.StatusNotFound, "not_found")
		if got = list(); len(got) != 0 {
			t.Fatalf("after revoking %+v, want none", got)
		}
		apiWant(t, "another tenant's list", apiCall(t, "GET", e.v1+"/tenants/other/initial-access-tokens", e.acmeToken, "", ""), http.StatusForbidden, "")
	})
}
