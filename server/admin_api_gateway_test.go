package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/smartauth/smartauth/gateway/upstream"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// TestAdminAPITenantGateway: a tenant's gateway is shown without its header
// value, set by PUT in the tenant's own write, kept by a PUT without it,
// removed by null, and refused when incomplete.
func TestAdminAPITenantGateway(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := apiSetup(t, srv)
		ctx := context.Background()
		tok := e.acmeToken
		v1 := e.v1 + "/tenants/acme"
		const value = "gateway-api-key-write-only"
		const settings = `"name": "Acme", "fhir_base_urls": ["https://fhir.acme.example/r4"]`
		gateway := func(r apiResponse) map[string]any {
			t.Helper()
			g, _ := r.object(t)["gateway"].(map[string]any)
			return g
		}

		if g := gateway(apiCall(t, "GET", v1, tok, "", "")); g != nil {
			t.Fatalf("a new tenant has a gateway: %v", g)
		}
		r := apiCall(t, "PUT", v1, tok, "", `{`+settings+`, "gateway": {"upstream_url": "https://fhir.upstream.example/r4/",
			"upstream_auth": "header", "header_name": "x-api-key", "header_value": "`+value+`"}}`)
		apiWant(t, "set the gateway", r, http.StatusOK, "")
		apiSecretFree(t, "set the gateway", r, value, "header_value")
		want := map[string]any{"upstream_url": "https://fhir.upstream.example/r4", "upstream_auth": "header", "header_name": "X-Api-Key",
			"user_header": storage.DefaultGatewayUserHeader}
		if g := gateway(r); !sameMap(g, want) {
			t.Fatalf("gateway %v, want %v", g, want)
		}
		version := r.header.Get("ETag")
		if ev := apiLastEvent(t, srv, "acme", "admin.tenant.gateway.set"); ev.ActorID != "client:"+e.acmeID || ev.Details["header_name"] != "X-Api-Key" {
			t.Errorf("gateway set audited as %+v", ev)
		}
		stored, err := srv.Store.GetTenant(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := upstream.OpenHeader(srv.Keys.Sealer(), "acme", stored.Policy.Gateway); err != nil || got != value {
			t.Fatalf("stored header value opens to %q, %v", got, err)
		}

		r = apiCall(t, "GET", v1, tok, "", "")
		apiWant(t, "get the tenant", r, http.StatusOK, "")
		apiSecretFree(t, "get the tenant", r, value, "header_value")
		if g := gateway(r); !sameMap(g, want) || r.header.Get("ETag") != version {
			t.Fatalf("tenant shows gateway %v at %s, want %v at %s", g, r.header.Get("ETag"), want, version)
		}
		r = apiCall(t, "GET", e.v1+"/tenants", e.opToken, "", "")
		apiWant(t, "list tenants", r, http.StatusOK, "")
		apiSecretFree(t, "list tenants", r, value, "header_value")

		// Without a gateway, a PUT keeps it.
		r = apiCall(t, "PUT", v1, tok, "", `{`+settings+`, "mfa_offered": true}`)
		apiWant(t, "update without a gateway", r, http.StatusOK, "")
		if g := gateway(r); !sameMap(g, want) {
			t.Fatalf("gateway after an update without one: %v", g)
		}

		// Refusals change nothing.
		for _, tc := range []struct{ name, gateway, says string }{
			{"client_credentials without a patient search client", `{"upstream_url": "https://fhir.upstream.example/r4", "upstream_auth": "client_credentials"}`, "patient search"},
			{"header without a value", `{"upstream_url": "https://fhir.upstream.example/r4", "upstream_auth": "header", "header_name": "X-Api-Key"}`, "header value"},
			{"http elsewhere", `{"upstream_url": "http://fhir.upstream.example/r4"}`, "https"},
			{"hop-by-hop header", `{"upstream_url": "https://fhir.upstream.example/r4", "upstream_auth": "header", "header_name": "Connection", "header_value": "x"}`, "Connection"},
			{"unknown field", `{"upstream_url": "https://fhir.upstream.example/r4", "header_secret": "x"}`, "header_secret"},
			{"no upstream URL", `{}`, "upstream_url"},
		} {
			r := apiCall(t, "PUT", v1, tok, "", `{`+settings+`, "gateway": `+tc.gateway+`}`)
			apiWant(t, tc.name, r, http.StatusBadRequest, "invalid_request")
			if d, _ := r.object(t)["error_description"].(string); !strings.Contains(d, tc.says) {
				t.Errorf("%s: refusal says %q, want %q", tc.name, d, tc.says)
			}
		}
		stale := apiCallIfMatch(t, "PUT", v1, tok, version, `{`+settings+`, "gateway": null}`)
		apiWant(t, "remove with a stale version", stale, http.StatusPreconditionFailed, "precondition_failed")
		if g := gateway(apiCall(t, "GET", v1, tok, "", "")); !sameMap(g, want) {
			t.Fatalf("refusals changed the gateway: %v", g)
		}

		r = apiCall(t, "PUT", v1, tok, "", `{`+settings+`, "gateway": {"upstream_url": "https://fhir.upstream.example/r4", "upstream_auth": "forward", "user_header": "x-clinician"}}`)
		apiWant(t, "forward the app's token", r, http.StatusOK, "")
		if g := gateway(r); !sameMap(g, map[string]any{"upstream_url": "https://fhir.upstream.example/r4", "upstream_auth": "forward", "user_header": "X-Clinician"}) {
			t.Fatalf("forwarding gateway %v", g)
		}

		r = apiCall(t, "PUT", v1, tok, "", `{`+settings+`, "gateway": null}`)
		apiWant(t, "remove the gateway", r, http.StatusOK, "")
		if g := gateway(r); g != nil {
			t.Fatalf("gateway after removal: %v", g)
		}
		if ev := apiLastEvent(t, srv, "acme", "admin.tenant.gateway.clear"); ev.ActorID != "client:"+e.acmeID {
			t.Errorf("gateway removal audited as %+v", ev)
		}
		if stored, _ := srv.Store.GetTenant(ctx, "acme"); stored.Policy.Gateway != (storage.GatewaySettings{}) {
			t.Fatalf("stored gateway after removal: %+v", stored.Policy.Gateway)
		}

		// A new tenant may come with its gateway.
		r = apiCall(t, "POST", e.v1+"/tenants", e.opToken, "", `{"id": "beta", "fhir_base_urls": ["https://fhir.beta.example/r4"],
			"gateway": {"upstream_url": "https://fhir.upstream.example/beta", "upstream_auth": "header", "header_name": "X-Api-Key", "header_value": "`+value+`"}}`)
		apiWant(t, "create with a gateway", r, http.StatusCreated, "")
		apiSecretFree(t, "create with a gateway", r, value, "header_value")
		if g := gateway(r); g["upstream_url"] != "https://fhir.upstream.example/beta" || g["header_name"] != "X-Api-Key" {
			t.Fatalf("created with gateway %v", g)
		}
	})
}

// sameMap reports whether a decoded JSON object holds exactly want.
func sameMap(got, want map[string]any) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}
