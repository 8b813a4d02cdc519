package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/smartauth/smartauth/server/password"
	"github.com/smartauth/smartauth/storage"
)

// TestDemoOperatorStaysOnLoopback: a demo operator left in the database
// with its published password keeps the server off the network, since
// whoever reached it first could take the operator account.
func TestDemoOperatorStaysOnLoopback(t *testing.T) {
	onBothBackends(t, func(t *testing.T, env testEnv) {
		env["SMARTAUTH_DEMO"] = "true"
		_, banner, stop := startServe(t, env)
		if code := stop(); code != 0 {
			t.Fatalf("demo serve exited %d", code)
		}
		if hint := banner.String(); strings.Contains(hint, "DATABASE_URL") || !strings.Contains(hint, "--demo=false") {
			t.Errorf("the start-up hint says a DATABASE_URL turns the demo off, or not how to:\n%s", hint)
		}
		delete(env, "SMARTAUTH_DEMO")

		refusal := "the demo operator " + demoOperator + " can still sign in with its public password, and this server "
		understood := demoOnNetworkEnv + "=true (--" + demoOnNetworkFlag + ")"
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"every interface", []string{"serve", "--addr", "0.0.0.0:0"}, refusal + "listens on 0.0.0.0:0: "},
			{"public URL", []string{"serve", "--addr", "127.0.0.1:0", "--base-url", "https://auth.example"}, refusal + "has the public URL https://auth.example: "},
			{"demo off", []string{"serve", "--addr", "0.0.0.0:0", "--demo=false"}, understood},
		} {
			t.Run(tc.name, func(t *testing.T) {
				env.fails(t, 1, tc.want, "", tc.args...)
			})
		}

		// The long setting says the operator understands: it serves, and
		// without seeding the demo, which was not asked for.
		env["SMARTAUTH_BASE_URL"] = "https://auth.example"
		env[demoOnNetworkEnv] = "true"
		_, out, stop := startServe(t, env)
		if code := stop(); code != 0 || strings.Contains(out.String(), "Demo tenant") {
			t.Fatalf("understood: exit %d, output:\n%s", code, out)
		}
		delete(env, demoOnNetworkEnv)

		// Once its password is no longer the published one, the server serves.
		s := env.store(t)
		ctx := context.Background()
		u, err := s.GetUserByEmail(ctx, storage.OperatorRealm, demoOperator)
		if err != nil {
			t.Fatal(err)
		}
		if u.PasswordHash, err = password.Hash("a private passphrase"); err != nil {
			t.Fatal(err)
		}
		if err := s.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		_, _, stop = startServe(t, env)
		if code := stop(); code != 0 {
			t.Fatalf("serve after the password change exited %d", code)
		}
	})
}

// TestDemoBannerAuthenticatorNote: the banner says the demo operator sets
// up an authenticator app at first sign-in only until they have.
func TestDemoBannerAuthenticatorNote(t *testing.T) {
	env := newEnv(t)
	const note = "an authenticator app is set up at first sign-in"
	_, banner, stop := startServe(t, env)
	if code := stop(); code != 0 || !strings.Contains(banner.String(), note) {
		t.Fatalf("first start: exit %d, banner lacks %q:\n%s", code, note, banner)
	}
	s := env.store(t)
	ctx := context.Background()
	u, err := s.GetUserByEmail(ctx, storage.OperatorRealm, demoOperator)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sealed := []byte("sealed seed")
	if err := s.SaveTOTPEnrollment(ctx, storage.TOTPEnrollment{TenantID: storage.OperatorRealm, UserID: u.ID, SecretSealed: sealed,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.ConfirmTOTPEnrollment(ctx, storage.OperatorRealm, u.ID, sealed, nil, now); err != nil {
		t.Fatal(err)
	}
	_, banner, stop = startServe(t, env)
	if code := stop(); code != 0 || strings.Contains(banner.String(), note) || !strings.Contains(banner.String(), "a code from the authenticator app") {
		t.Fatalf("after enrolment: exit %d, banner:\n%s", code, banner)
	}
}

// TestDemoGateway: the demo tenant's gateway is one of its FHIR base URLs
// and printed at start-up. Without an upstream, discovery works at its base
// and reads say no upstream is configured; with --demo-fhir-upstream, reads
// reach that FHIR server, and restarts leave the setting as it is.
func TestDemoGateway(t *testing.T) {
	env := newEnv(t)
	base, out, stop := startServe(t, env)
	iss := base + "/t/" + demoTenant
	gw := iss + "/fhir"
	for _, want := range []string{"FHIR gateway", gw + " (reads need an upstream: --demo-fhir-upstream)",
		base + "/demo-app/?tenant=demo&iss=" + gw, "--aud " + gw} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("start-up output lacks %q:\n%s", want, out.String())
		}
	}
	var conf map[string]any
	fetchJSON(t, gw+"/.well-known/smart-configuration", &conf)
	if conf["issuer"] != iss || conf["authorization_endpoint"] != iss+"/authorize" {
		t.Errorf("smart-configuration at the demo gateway: %v", conf)
	}
	var md map[string]any
	fetchJSON(t, gw+"/metadata", &md)
	if md["resourceType"] != "CapabilityStatement" || !strings.Contains(fmt.Sprint(md["rest"]), iss+"/token") {
		t.Errorf("metadata at the demo gateway: %v", md)
	}
	if status, body := demoGet(t, gw+"/Patient/demo-1", ""); status != http.StatusServiceUnavailable ||
		!strings.Contains(body, "OperationOutcome") || !strings.Contains(body, "No upstream FHIR server is configured") {
		t.Errorf("a read without an upstream: %d %s", status, body)
	}
	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}

	// A FHIR server behind the gateway, and a backend client to read it with.
	var seen atomic.Value
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.URL.Path + " " + r.Header.Get("X-Smart-User") + " " + r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/fhir+json")
		if r.URL.Path != "/fhir/Patient/demo-1" {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}`)
			return
		}
		io.WriteString(w, `{"resourceType":"Patient","id":"demo-1","name":[{"family":"Demo"}]}`)
	}))
	defer upstream.Close()
	var client map[string]any
	env.ok(t, &client, "", "client", "create", "--tenant", demoTenant, "--name", "Reader", "--type", "confidential-symmetric",
		"--scope", "system/Patient.rs", "--grant-type", "client_credentials")
	env["SMARTAUTH_DEMO_FHIR_UPSTREAM"] = upstream.URL + "/fhir/"
	env["SMARTAUTH_FHIR_PRIVATE_NETWORKS"] = "true"
	for range 2 {
		base, out, stop = startServe(t, env)
		gw = base + "/t/" + demoTenant + "/fhir"
		if want := gw + " (forwards to " + upstream.URL + "/fhir)"; !strings.Contains(out.String(), want) {
			t.Errorf("start-up output lacks %q:\n%s", want, out.String())
		}
		if status, body := demoGet(t, gw+"/Patient/demo-1", ""); status != http.StatusUnauthorized {
			t.Errorf("a read without a token: %d %s", status, body)
		}
		conf := clientcredentials.Config{ClientID: client["client_id"].(string), ClientSecret: client["client_secret"].(string),
			TokenURL: base + "/t/" + demoTenant + "/token", Scopes: []string{"system/Patient.rs"}}
		tok, err := conf.Token(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if status, body := demoGet(t, gw+"/Patient/demo-1", tok.AccessToken); status != http.StatusOK || !strings.Contains(body, `"family":"Demo"`) {
			t.Errorf("a read through the gateway: %d %s", status, body)
		}
		if got, want := seen.Load(), "/fhir/Patient/demo-1 "+client["client_id"].(string)+" "; got != want {
			t.Errorf("the upstream saw %q, want %q (no app token forwarded)", got, want)
		}
		if code := stop(); code != 0 {
			t.Fatalf("serve exited %d", code)
		}
	}

	// The gateway's base follows the server's address, and the upstream
	// was set once, not at every start.
	s := env.store(t)
	tn, err := s.GetTenant(context.Background(), demoTenant)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tn.FHIRBaseURLs, []string{demoFHIRBase, gw}) {
		t.Errorf("demo FHIR base URLs %v, want %s and %s", tn.FHIRBaseURLs, demoFHIRBase, gw)
	}
	events, err := s.ListAudit(context.Background(), demoTenant, storage.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range events {
		if e.Type == "admin.tenant.gateway.set" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the demo gateway upstream was set %d times, want once", n)
	}
}

// demoGet makes a GET with an optional bearer token and returns the status and body.
func demoGet(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
