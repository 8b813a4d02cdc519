package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
)

// forEachBackend runs a test against a fresh server on every backend.
func forEachBackend(t *testing.T, test func(t *testing.T, srv *servertest.Server)) {
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			test(t, servertest.Start(t, b.Open(t)))
		})
	}
}

func getJSON(t *testing.T, url string, into any) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if into != nil {
		if err := json.Unmarshal(body, into); err != nil {
			t.Fatalf("GET %s: %d, body is not JSON: %v\n%s", url, resp.StatusCode, err, body)
		}
	}
	return resp
}

func TestDiscoveryDocuments(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		srv.Tenant(t, "clinic")
		iss := srv.Issuer("clinic")

		var smart map[string]any
		resp := getJSON(t, iss+"/.well-known/smart-configuration", &smart)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("smart-configuration: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Error("smart-configuration is not open to other origins")
		}
		if smart["issuer"] != iss || smart["jwks_uri"] != iss+"/.well-known/jwks.json" {
			t.Fatalf("smart-configuration names the wrong issuer or jwks_uri: %v", smart)
		}
		for _, field := range []string{"capabilities", "grant_types_supported"} {
			if _, ok := smart[field].([]any); !ok {
				t.Errorf("smart-configuration lacks the required array %q", field)
			}
		}

		list := func(doc map[string]any, field string) []string {
			var out []string
			for _, v := range doc[field].([]any) {
				out = append(out, v.(string))
			}
			return out
		}
		// SMART App Launch 2.2 §Metadata: required fields, then recommended ones.
		for _, field := range []string{"issuer", "jwks_uri", "authorization_endpoint", "grant_types_supported", "token_endpoint",
			"capabilities", "code_challenge_methods_supported",
			"scopes_supported", "response_types_supported", "introspection_endpoint", "revocation_endpoint", "token_endpoint_auth_methods_supported"} {
			if smart[field] == nil {
				t.Errorf("smart-configuration lacks %s", field)
			}
		}
		// Exactly what works: each capability here has an end-to-end test, and
		// none that does not work (a standalone encounter choice) is claimed.
		wantCaps := []string{"authorize-post", "client-confidential-asymmetric", "client-confidential-symmetric", "client-public",
			"context-ehr-encounter", "context-ehr-patient", "context-passthrough-banner", "context-passthrough-style",
			"context-standalone-patient", "launch-ehr", "launch-standalone", "permission-offline", "permission-online", "permission-patient",
			"permission-user", "permission-v1", "permission-v2", "sso-openid-connect"}
		if got := slices.Sorted(slices.Values(list(smart, "capabilities"))); !slices.Equal(got, wantCaps) {
			t.Errorf("capabilities %v, want %v", got, wantCaps)
		}
		if got := list(smart, "code_challenge_methods_supported"); !slices.Equal(got, []string{"S256"}) {
			t.Errorf("code_challenge_methods_supported %v, want only S256", got)
		}
		for field, want := range map[string][]string{
			"token_endpoint_auth_signing_alg_values_supported": {"RS384", "ES384"},
			"token_endpoint_auth_methods_supported":            {"client_secret_basic", "client_secret_post", "private_key_jwt"},
			"grant_types_supported":                            {"authorization_code", "refresh_token", "client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"},
		} {
			for _, w := range want {
				if !slices.Contains(list(smart, field), w) {
					t.Errorf("%s lacks %s", field, w)
				}
			}
		}

		var oidc map[string]any
		resp = getJSON(t, iss+"/.well-known/openid-configuration", &oidc)
		if resp.StatusCode != 200 || oidc["issuer"] != iss || oidc["jwks_uri"] != smart["jwks_uri"] {
			t.Fatalf("openid-configuration: %d %v", resp.StatusCode, oidc)
		}

		// Whatever a document advertises must exist: no endpoint ahead of its code.
		for _, doc := range []map[string]any{smart, oidc} {
			for field, v := range doc {
				u, ok := v.(string)
				if !ok || !strings.HasPrefix(u, srv.URL) {
					continue
				}
				// Endpoints answer GET or POST; either must find something there.
				found := false
				for _, method := range []string{"GET", "POST"} {
					req, _ := http.NewRequest(method, u, nil)
					r, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					r.Body.Close()
					found = found || r.StatusCode != http.StatusNotFound
				}
				if !found {
					t.Errorf("%s advertises %s, which is not served", field, u)
				}
			}
		}
	})
}

func TestJWKSPerTenant(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		srv.Tenant(t, "alpha")
		srv.Tenant(t, "beta")
		sets := map[string]jose.JSONWebKeySet{}
		for _, id := range []string{"alpha", "beta"} {
			var set jose.JSONWebKeySet
			resp := getJSON(t, srv.Issuer(id)+"/.well-known/jwks.json", &set)
			if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Fatalf("jwks of %s: %d, CORS %q", id, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
			}
			var algs []string
			for _, k := range set.Keys {
				if !k.IsPublic() || k.Use != "sig" || k.KeyID == "" {
					t.Fatalf("jwks of %s publishes a key that is private, unlabelled or not for signing: %+v", id, k)
				}
				algs = append(algs, k.Algorithm)
			}
			slices.Sort(algs)
			if !slices.Equal(algs, []string{"ES256", "RS256"}) {
				t.Fatalf("jwks of %s has algorithms %v, want ES256 and RS256", id, algs)
			}
			sets[id] = set
		}
		for _, k := range sets["alpha"].Keys {
			if beta := sets["beta"]; len(beta.Key(k.KeyID)) > 0 {
				t.Fatalf("tenants share key %s", k.KeyID)
			}
		}

		// A token signed for alpha verifies under alpha's JWKS and never under beta's.
		priv, err := srv.Keys.ActiveKey(context.Background(), "alpha", "ES256")
		if err != nil {
			t.Fatal(err)
		}
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv}, nil)
		if err != nil {
			t.Fatal(err)
		}
		jws, err := signer.Sign([]byte(`{"iss":"alpha"}`))
		if err != nil {
			t.Fatal(err)
		}
		compact, _ := jws.CompactSerialize()
		parsed, err := jose.ParseSigned(compact, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		if !verifiesUnder(parsed, sets["alpha"]) {
			t.Fatal("alpha's token does not verify under alpha's JWKS")
		}
		if verifiesUnder(parsed, sets["beta"]) {
			t.Fatal("alpha's token verifies under beta's JWKS")
		}
	})
}

func verifiesUnder(jws *jose.JSONWebSignature, set jose.JSONWebKeySet) bool {
	for _, k := range set.Keys {
		if _, err := jws.Verify(k); err == nil {
			return true
		}
	}
	return false
}

func TestKeyRotationWindow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		srv.Tenant(t, "clinic")
		before := jwksKIDs(t, srv, "clinic")
		if _, err := srv.Manage.RotateKeys(context.Background(), "clinic", time.Hour, manage.Actor{ID: "test"}); err != nil {
			t.Fatal(err)
		}
		during := jwksKIDs(t, srv, "clinic")
		if len(during) != 4 {
			t.Fatalf("during the retirement window the JWKS has %d keys, want the 2 old and 2 new", len(during))
		}
		for _, kid := range before {
			if !slices.Contains(during, kid) {
				t.Fatalf("old key %s left the JWKS inside its retirement window", kid)
			}
		}
		newKey, err := srv.Keys.ActiveKey(context.Background(), "clinic", "RS256")
		if err != nil || slices.Contains(before, newKey.KeyID) {
			t.Fatalf("the active key after rotation is not a new one: %v", err)
		}
		srv.Clock.Advance(time.Hour + time.Second)
		after := jwksKIDs(t, srv, "clinic")
		if len(after) != 2 || !slices.Contains(after, newKey.KeyID) {
			t.Fatalf("after the window the JWKS holds %v, want only the 2 new keys", after)
		}
		for _, kid := range before {
			if slices.Contains(after, kid) {
				t.Fatalf("retired key %s is still published", kid)
			}
		}
	})
}

func jwksKIDs(t *testing.T, srv *servertest.Server, tenant string) []string {
	t.Helper()
	var set jose.JSONWebKeySet
	getJSON(t, srv.Issuer(tenant)+"/.well-known/jwks.json", &set)
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KeyID)
	}
	return kids
}

func TestUnknownTenant(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		srv.Tenant(t, "real")
		for _, path := range []string{
			"/t/ghost/.well-known/smart-configuration",
			"/t/ghost/.well-known/openid-configuration",
			"/t/ghost/.well-known/jwks.json",
			"/t/Not_A_Slug/.well-known/jwks.json",
		} {
			var body map[string]string
			resp := getJSON(t, srv.URL+path, &body)
			if resp.StatusCode != 404 || body["error"] != "not_found" || body["error_description"] == "" {
				t.Errorf("%s: %d %v, want 404 with an error body", path, resp.StatusCode, body)
			}
		}
		resp, err := http.Get(srv.URL + "/t/ghost/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || !strings.Contains(string(body), "<h1>Not Found</h1>") {
			t.Errorf("unknown tenant page: %d\n%s", resp.StatusCode, body)
		}
	})
}
