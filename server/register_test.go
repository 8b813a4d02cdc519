package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

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

// initialToken issues an initial access token for tenant.
func initialToken(t *testing.T, srv *servertest.Server, tenant string) string {
	t.Helper()
	token, _, err := srv.Manage.CreateInitialAccessToken(context.Background(), tenant, 0, testActor)
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

const backendMetadata = `{"client_name": "Nightly export", "token_endpoint_auth_method": "client_secret_basic",
	"grant_types": ["client_credentials"], "scope": "system/*.rs", "software_id": "export-1", "logo_uri": "https://export.example/logo.png"}`

func TestRegisterConfidentialClientGetsTokens(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		srv.Tenant(t, "clinic")
		res := postRegistration(t, srv, "clinic", initialToken(t, srv, "clinic"), backendMetadata)
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
		res := postRegistration(t, srv, "clinic", initialToken(t, srv, "clinic"), `{"client_name": "Chart",
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
			token := initialToken(t, srv, "alpha")
			if res := postRegistration(t, srv, "alpha", token, backendMetadata); res.status != http.StatusCreated {
				t.Fatalf("first use: %d %v", res.status, res.body)
			}
			refusedToken(t, postRegistration(t, srv, "alpha", token, backendMetadata))
		})
		t.Run("other tenant's", func(t *testing.T) {
			token := initialToken(t, srv, "alpha")
			refusedToken(t, postRegistration(t, srv, "beta", token, backendMetadata))
			// Refused at beta, it still works at alpha.
			if res := postRegistration(t, srv, "alpha", token, backendMetadata); res.status != http.StatusCreated {
				t.Fatalf("at its own tenant: %d %v", res.status, res.body)
			}
		})
		t.Run("expired", func(t *testing.T) {
			token := initialToken(t, srv, "beta")
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
		token := initialToken(t, srv, "clinic")
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
