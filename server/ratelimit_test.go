package server_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// limitedTenant creates a tenant with the given rate limits.
func limitedTenant(t *testing.T, srv *servertest.Server, id string, limits storage.RateLimits) {
	t.Helper()
	if _, err := srv.Manage.CreateTenant(context.Background(), manage.TenantInput{ID: id, FHIRBaseURLs: []string{"https://fhir.example.org/" + id},
		Policy: storage.TenantPolicy{RateLimits: limits}}, testActor); err != nil {
		t.Fatal(err)
	}
}

// fromAddress is an HTTP client whose requests come from another loopback
// address, which the server counts apart.
func fromAddress(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// post sends a form with Basic credentials through c and returns the answer.
func post(t *testing.T, c *http.Client, endpoint string, form url.Values, id, secret string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// wantLimited checks a refusal for a rate limit: 429, a Retry-After within
// the minute, and the OAuth error.
func wantLimited(t *testing.T, what string, status int, body map[string]any, header http.Header) {
	t.Helper()
	if status != http.StatusTooManyRequests || body["error"] != "temporarily_unavailable" {
		t.Fatalf("%s: %d %v, want 429 temporarily_unavailable", what, status, body)
	}
	if s, err := strconv.Atoi(header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
		t.Fatalf("%s: Retry-After %q, want 1 to 60 seconds", what, header.Get("Retry-After"))
	}
}

// postFull is postForm that also returns the headers.
func postFull(t *testing.T, endpoint string, form url.Values, id, secret string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("POST", endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("POST %s: %d, not JSON: %v", endpoint, resp.StatusCode, err)
	}
	return resp.StatusCode, body, resp.Header
}

// TestRateLimits: a client and an address past the tenant's limits get 429
// with Retry-After and the OAuth error at every limited endpoint; other
// clients, addresses and tenants do not; requests that fail to
// authenticate a client do not spend its allowance; the next window
// serves again.
func TestRateLimits(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		limitedTenant(t, srv, "rl", storage.RateLimits{ClientPerMinute: 3, AddressPerMinute: 5})
		srv.Tenant(t, "free")
		a, aSecret := backendClient(t, srv, "rl", storage.ClientConfidentialSymmetric, nil)
		b, bSecret := backendClient(t, srv, "rl", storage.ClientConfidentialSymmetric, nil)
		f, fSecret := backendClient(t, srv, "free", storage.ClientConfidentialSymmetric, nil)
		tok := tokenEndpoint(srv, "rl")
		other := fromAddress("127.0.0.2")

		for i := range 3 {
			if st := tokenStatus(t, srv, "rl", a, aSecret); st != http.StatusOK {
				t.Fatalf("client a, request %d: %d", i+1, st)
			}
		}
		st, body, h := postFull(t, tok, clientCredentials, a, aSecret)
		wantLimited(t, "client a past its limit", st, body, h)
		if st := tokenStatus(t, srv, "rl", b, bSecret); st != http.StatusOK {
			t.Fatalf("client b beside a limited a: %d", st)
		}
		// The address has made 4 requests served; the 5th reaches its limit.
		if st := tokenStatus(t, srv, "rl", b, bSecret); st != http.StatusOK {
			t.Fatalf("the address's 5th request: %d", st)
		}
		st, body, h = postFull(t, tok, clientCredentials, b, bSecret)
		wantLimited(t, "the address past its limit", st, body, h)
		for _, ep := range []string{"/introspect", "/revoke", "/register", "/launch"} {
			st, body, h := postFull(t, srv.Issuer("rl")+ep, url.Values{"token": {"x"}}, b, bSecret)
			wantLimited(t, ep+" from the limited address", st, body, h)
		}
		if resp := post(t, other, tok, clientCredentials, b, bSecret); resp.StatusCode != http.StatusOK {
			t.Fatalf("client b from another address: %d", resp.StatusCode)
		}
		if st := tokenStatus(t, srv, "free", f, fSecret); st != http.StatusOK {
			t.Fatalf("another tenant from the limited address: %d", st)
		}

		srv.Clock.Advance(time.Minute)
		// Wrong secrets naming a from another address are that address's
		// requests, not a's.
		for range 3 {
			if resp := post(t, other, tok, clientCredentials, a, "wrong"); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("wrong secret: %d", resp.StatusCode)
			}
		}
		for i := range 3 {
			if st := tokenStatus(t, srv, "rl", a, aSecret); st != http.StatusOK {
				t.Fatalf("next window, client a request %d: %d", i+1, st)
			}
		}
		if st := tokenStatus(t, srv, "rl", a, aSecret); st != http.StatusTooManyRequests {
			t.Fatalf("client a past its limit again: %d", st)
		}
	})
}

// TestRateLimitsOff: a negative limit is none.
func TestRateLimitsOff(t *testing.T) {
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	limitedTenant(t, srv, "off", storage.RateLimits{ClientPerMinute: -1, AddressPerMinute: -1})
	id, secret := backendClient(t, srv, "off", storage.ClientConfidentialSymmetric, nil)
	for i := range 20 {
		if st := tokenStatus(t, srv, "off", id, secret); st != http.StatusOK {
			t.Fatalf("request %d without limits: %d", i+1, st)
		}
	}
}

// TestRateLimitsAcrossReplicas: two servers on one PostgreSQL database
// count together.
func TestRateLimitsAcrossReplicas(t *testing.T) {
	a, b, _, _ := replicas(t)
	limitedTenant(t, a, "shared", storage.RateLimits{ClientPerMinute: 4})
	id, secret := backendClient(t, a, "shared", storage.ClientConfidentialSymmetric, nil)
	for _, srv := range []*servertest.Server{a, a, b, b} {
		if st := tokenStatus(t, srv, "shared", id, secret); st != http.StatusOK {
			t.Fatalf("under the limit: %d", st)
		}
	}
	if st := tokenStatus(t, b, "shared", id, secret); st != http.StatusTooManyRequests {
		t.Fatalf("b after 4 requests on both replicas, 2 of them its own: %d, want 429", st)
	}
}

// TestAdminAPISetsRateLimits: the tenant PUT sets the limits, which take
// effect at once, keeps them when the body has none, and refuses too high
// a limit.
func TestAdminAPISetsRateLimits(t *testing.T) {
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	e := apiSetup(t, srv)
	v1 := e.v1 + "/tenants/acme"
	r := apiCall(t, "PUT", v1, e.acmeToken, "", `{"fhir_base_urls": ["https://fhir.acme.example/r4"], "rate_limits": {"client_per_minute": 2}}`)
	apiWant(t, "set rate limits", r, http.StatusOK, "")
	r = apiCall(t, "PUT", v1, e.acmeToken, "", `{"fhir_base_urls": ["https://fhir.acme.example/r4"], "mfa_offered": true}`)
	apiWant(t, "update without rate limits", r, http.StatusOK, "")
	var got struct {
		RateLimits storage.RateLimits `json:"rate_limits"`
	}
	r.json(t, &got)
	if got.RateLimits != (storage.RateLimits{ClientPerMinute: 2}) {
		t.Fatalf("rate limits after an update without them: %+v", got.RateLimits)
	}
	// The API client's token from setup counted once: the next reaches 2.
	admin := url.Values{"grant_type": {"client_credentials"}, "scope": {server.AdminScope}}
	if st, body := postForm(t, tokenEndpoint(srv, "acme"), admin, e.acmeID, e.acmeSecret); st != http.StatusOK {
		t.Fatalf("second token: %d %v", st, body)
	}
	if st, _ := postForm(t, tokenEndpoint(srv, "acme"), admin, e.acmeID, e.acmeSecret); st != http.StatusTooManyRequests {
		t.Fatalf("third token with a limit of 2: %d, want 429", st)
	}
	r = apiCall(t, "PUT", v1, e.acmeToken, "", `{"fhir_base_urls": ["https://fhir.acme.example/r4"], "rate_limits": {"address_per_minute": 2000000}}`)
	apiWant(t, "too high a limit", r, http.StatusBadRequest, "invalid_request")
}
