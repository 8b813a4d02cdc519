package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/smartauth/smartauth/server/servertest"
)

func TestSecurityHeadersEverywhere(t *testing.T) {
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	srv.Tenant(t, "clinic")
	for _, tc := range []struct {
		path   string
		status int
		page   bool
	}{
		{"/", 200, true},
		{"/t/clinic/", 200, true},
		{"/nowhere", 404, true},
		{"/t/clinic/.well-known/smart-configuration", 200, false},
		{"/t/clinic/.well-known/jwks.json", 200, false},
		{"/t/ghost/.well-known/jwks.json", 404, false},
		{"/healthz", 200, false},
		{"/static/style.css", 200, false},
	} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.path, resp.StatusCode, tc.status)
		}
		csp := h.Get("Content-Security-Policy")
		if h.Get("X-Frame-Options") != "DENY" || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s may be framed: XFO %q, CSP %q", tc.path, h.Get("X-Frame-Options"), csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: nosniff %q, referrer policy %q", tc.path, h.Get("X-Content-Type-Options"), h.Get("Referrer-Policy"))
		}
		if h.Get("X-Request-Id") == "" {
			t.Errorf("%s: no request id", tc.path)
		}
		if tc.page && (!strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "form-action 'self'") ||
			!strings.HasPrefix(h.Get("Content-Type"), "text/html")) {
			t.Errorf("%s: page without the page CSP: %q", tc.path, csp)
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	srv.Tenant(t, "clinic")
	resp, err := http.Post(srv.URL+"/t/clinic/.well-known/jwks.json", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST to the JWKS: %d, want 405", resp.StatusCode)
	}
}

func TestCORSPreflight(t *testing.T) {
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	srv.Tenant(t, "clinic")
	req, _ := http.NewRequest(http.MethodOptions, srv.URL+"/t/clinic/.well-known/smart-configuration", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "GET")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "GET") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	store := servertest.OpenSQLite(t)
	srv := servertest.Start(t, store)
	for _, p := range []string{"/healthz", "/readyz"} {
		var body map[string]string
		if resp := getJSON(t, srv.URL+p, &body); resp.StatusCode != 200 || body["status"] != "ok" {
			t.Fatalf("%s: %d %v", p, resp.StatusCode, body)
		}
	}
	store.Close()
	var body map[string]string
	if resp := getJSON(t, srv.URL+"/readyz", &body); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz with the database gone: %d %v, want 503", resp.StatusCode, body)
	}
	if resp := getJSON(t, srv.URL+"/healthz", nil); resp.StatusCode != 200 {
		t.Fatalf("healthz with the database gone: %d, want 200 (the process is alive)", resp.StatusCode)
	}
}

// TestDrainingIsNotReady: once shutdown begins, readiness fails so load
// balancers move away, while requests still in flight or on their way are served.
func TestDrainingIsNotReady(t *testing.T) {
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	srv.Server.Drain()
	var body map[string]string
	if resp := getJSON(t, srv.URL+"/readyz", &body); resp.StatusCode != http.StatusServiceUnavailable || body["reason"] != "shutting down" {
		t.Errorf("readyz while draining: %d %v, want 503 shutting down", resp.StatusCode, body)
	}
	for _, p := range []string{"/healthz", "/t/nobody/.well-known/smart-configuration"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Errorf("%s while draining: %d, want it still served", p, resp.StatusCode)
		}
	}
}

func TestRequestIDAndAccessLog(t *testing.T) {
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	req, _ := http.NewRequest("GET", srv.URL+"/healthz", nil)
	req.Header.Set("X-Request-Id", "trace-abc.123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Request-Id"); got != "trace-abc.123" {
		t.Fatalf("a well-formed incoming request id was not kept: %q", got)
	}
	req.Header.Set("X-Request-Id", "evil\"id with spaces")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Request-Id"); got == "" || strings.ContainsAny(got, "\" ") {
		t.Fatalf("a malformed request id was echoed: %q", got)
	}
	logs := srv.Logs()
	if !strings.Contains(logs, `"request_id":"trace-abc.123"`) || !strings.Contains(logs, `"path":"/healthz"`) {
		t.Fatalf("access log lacks request id or path:\n%s", logs)
	}
}

func TestTenantPage(t *testing.T) {
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	srv.Tenant(t, "clinic")
	resp, err := http.Get(srv.URL + "/t/clinic/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(body)
	for _, want := range []string{"Tenant clinic", srv.Issuer("clinic") + "/.well-known/smart-configuration", "https://fhir.example.org/clinic"} {
		if !strings.Contains(page, want) {
			t.Errorf("tenant page lacks %q", want)
		}
	}
}
