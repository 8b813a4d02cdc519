package server_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// TestAccessTokenAlgorithms sets a tenant's access-token algorithm to each
// choice in turn through the admin API: discovery names it, a
// client_credentials token is signed with it by a key the JWKS publishes
// for it, and every token issued under an earlier choice stays active.
func TestAccessTokenAlgorithms(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := apiSetup(t, srv)
		iss := srv.Issuer("acme")
		id, secret := backendClient(t, srv, "acme", storage.ClientConfidentialSymmetric, nil)

		if got := discoveredAccessTokenAlgs(t, iss); !slices.Equal(got, []string{"ES256"}) {
			t.Fatalf("discovery before any choice names %v, want ES256", got)
		}
		type issued struct{ token, alg string }
		var earlier []issued
		for _, alg := range []string{"RS256", "PS256", "ES256"} {
			r := apiCall(t, "PUT", e.v1+"/tenants/acme", e.opToken, "", `{"fhir_base_urls": ["https://fhir.example.org/acme"], "access_token_alg": "`+alg+`"}`)
			apiWant(t, "set "+alg, r, http.StatusOK, "")
			if got := r.object(t)["access_token_alg"]; got != alg {
				t.Fatalf("tenant after setting %s shows access_token_alg %v", alg, got)
			}
			if got := discoveredAccessTokenAlgs(t, iss); !slices.Equal(got, []string{alg}) {
				t.Fatalf("discovery after setting %s names %v", alg, got)
			}

			status, body := postForm(t, iss+"/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"}}, id, secret)
			token, _ := body["access_token"].(string)
			if status != http.StatusOK || token == "" {
				t.Fatalf("client_credentials with %s: %d %v", alg, status, body)
			}
			earlier = append(earlier, issued{token, alg})
			for _, e := range earlier {
				verifyWithJWKS(t, iss, e.token, e.alg)
				if !introspectActiveAt(t, iss, id, secret, e.token) {
					t.Fatalf("after setting %s, the token signed with %s is not active", alg, e.alg)
				}
			}
		}
	})
}

// discoveredAccessTokenAlgs reads access_token_signing_alg_values_supported
// from both discovery documents, failing the test if they differ.
func discoveredAccessTokenAlgs(t *testing.T, iss string) []string {
	t.Helper()
	var smart, oidc struct {
		Algs []string `json:"access_token_signing_alg_values_supported"`
		ID   []string `json:"id_token_signing_alg_values_supported"`
	}
	getJSON(t, iss+"/.well-known/smart-configuration", &smart)
	getJSON(t, iss+"/.well-known/openid-configuration", &oidc)
	if !slices.Equal(smart.Algs, oidc.Algs) {
		t.Fatalf("SMART configuration names %v, OpenID configuration %v", smart.Algs, oidc.Algs)
	}
	if !slices.Equal(oidc.ID, []string{"RS256"}) {
		t.Fatalf("id_token_signing_alg_values_supported %v, want RS256", oidc.ID)
	}
	return smart.Algs
}

// verifyWithJWKS checks, as a strict resource server would, that token is
// signed with alg by a key the tenant's JWKS publishes for alg.
func verifyWithJWKS(t *testing.T, iss, token, alg string) {
	t.Helper()
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		t.Fatalf("access token is not a JWS signed with %s: %v", alg, err)
	}
	var set jose.JSONWebKeySet
	getJSON(t, iss+"/.well-known/jwks.json", &set)
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("%s token's kid %q is not in the JWKS once", alg, tok.Headers[0].KeyID)
	}
	if keys[0].Algorithm != alg || keys[0].Use != "sig" {
		t.Fatalf("%s token's key is published with alg %q, use %q", alg, keys[0].Algorithm, keys[0].Use)
	}
	var claims jwt.Claims
	if err := tok.Claims(keys[0].Key, &claims); err != nil {
		t.Fatalf("%s token does not verify against the JWKS: %v", alg, err)
	}
	if claims.Issuer != iss {
		t.Fatalf("%s token's iss %q, want %q", alg, claims.Issuer, iss)
	}
}

// introspectActiveAt reports what the issuer's introspection says of token.
func introspectActiveAt(t *testing.T, iss, id, secret, token string) bool {
	t.Helper()
	status, body := postForm(t, iss+"/introspect", url.Values{"token": {token}}, id, secret)
	if status != http.StatusOK {
		t.Fatalf("introspect: %d %v", status, body)
	}
	active, _ := body["active"].(bool)
	return active
}

// TestAccessTokenAlgRefusedByAPI shows the admin API refuses an algorithm
// outside the three, saying which are allowed, on create and update.
func TestAccessTokenAlgRefusedByAPI(t *testing.T) {
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	e := apiSetup(t, srv)
	for _, tc := range []struct{ method, path, body string }{
		{"PUT", "/tenants/acme", `{"fhir_base_urls": ["https://fhir.example.org/acme"], "access_token_alg": "HS256"}`},
		{"POST", "/tenants", `{"id": "new", "fhir_base_urls": ["https://fhir.example.org/new"], "access_token_alg": "none"}`},
	} {
		r := apiCall(t, tc.method, e.v1+tc.path, e.opToken, "", tc.body)
		apiWant(t, tc.method+" "+tc.path, r, http.StatusBadRequest, "invalid_request")
		if d, _ := r.object(t)["error_description"].(string); !strings.Contains(d, "must be one of RS256, PS256, ES256") {
			t.Errorf("%s %s: refusal says %q", tc.method, tc.path, d)
		}
	}
	if got := discoveredAccessTokenAlgs(t, srv.Issuer("acme")); !slices.Equal(got, []string{"ES256"}) {
		t.Errorf("after refusals discovery names %v, want ES256", got)
	}
}
