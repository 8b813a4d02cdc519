package server_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// Accounts of the admin tests.
const (
	operatorEmail    = "ops@example.org"
	tenantAdminEmail = "admin@acme.example"
	adminPassword    = "correct horse battery staple"
)

// adminEnv is a server with tenants acme and other, an operator and an
// admin of acme.
type adminEnv struct {
	srv *servertest.Server
	// operatorID and acmeAdminID are the accounts' user ids.
	operatorID, acmeAdminID string
}

func newAdminEnv(t *testing.T, store storage.Storage) *adminEnv {
	t.Helper()
	srv := servertest.Start(t, store)
	srv.Tenant(t, "acme")
	srv.Tenant(t, "other")
	ctx := context.Background()
	op, err := srv.Manage.CreateAdmin(ctx, "", operatorEmail, adminPassword, manage.Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := srv.Manage.CreateAdmin(ctx, "acme", tenantAdminEmail, adminPassword, manage.Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return &adminEnv{srv: srv, operatorID: op.ID, acmeAdminID: admin.ID}
}

// adminBrowser is a signed-in admin's browser.
type adminBrowser struct {
	t    *testing.T
	srv  *servertest.Server
	c    *http.Client
	csrf string
	// totpKey is the manual key enrolled at first sign-in, for later sign-ins.
	totpKey string
}

// get fetches a path of the server.
func (b *adminBrowser) get(path string) authzPage {
	b.t.Helper()
	resp, err := b.c.Get(b.srv.URL + path)
	p := authzRead(b.t, resp, err)
	if tok := p.hidden["csrf_token"]; tok != "" {
		b.csrf = tok
	}
	return p
}

// post sends a form with the browser's CSRF token to a path of the server.
func (b *adminBrowser) post(path string, form url.Values) authzPage {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if form.Get("csrf_token") == "" {
		form.Set("csrf_token", b.csrf)
	}
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := b.c.Do(req)
	p := authzRead(b.t, resp, err)
	if tok := p.hidden["csrf_token"]; tok != "" {
		b.csrf = tok
	}
	return p
}

// adminSignIn signs in at an area ("/admin" or "/admin/t/acme") with
// password and TOTP, enrolling an authenticator when the account has none
// (totpKey empty), and returns the signed-in browser.
func adminSignIn(t *testing.T, srv *servertest.Server, area, email, totpKey string) *adminBrowser {
	t.Helper()
	b := &adminBrowser{t: t, srv: srv, c: authzBrowser(t), totpKey: totpKey}
	login := b.get(area + "/login")
	if login.status != http.StatusOK {
		t.Fatalf("sign-in page: status %d", login.status)
	}
	step := b.post(area+"/login", url.Values{"email": {email}, "password": {adminPassword}})
	if step.status != http.StatusOK {
		t.Fatalf("password step: status %d: %s", step.status, step.body)
	}
	if totpKey == "" {
		m := manualKey.FindStringSubmatch(step.body)
		if m == nil {
			t.Fatalf("no enrollment page after the password of a new admin: %s", step.body)
		}
		b.totpKey = m[1]
		codes := b.post(area+"/mfa/enroll", url.Values{"code": {totpCode(t, b.totpKey, srv.Clock.Now())}})
		if codes.status != http.StatusOK || len(recoveryCodes.FindAllString(codes.body, -1)) != 10 {
			t.Fatalf("enrollment: status %d, want the ten recovery codes: %s", codes.status, codes.body)
		}
	} else {
		done := b.post(area+"/mfa", url.Values{"code": {totpCode(t, totpKey, srv.Clock.Now())}})
		if done.status != http.StatusSeeOther {
			t.Fatalf("second factor: status %d: %s", done.status, done.body)
		}
	}
	home := b.get(area + "/")
	if home.status != http.StatusOK {
		t.Fatalf("admin home after sign-in: status %d", home.status)
	}
	return b
}

func TestAdminSignInAndIsolation(t *testing.T) {
	for _, backend := range servertest.Backends() {
		t.Run(backend.Name, func(t *testing.T) {
			e := newAdminEnv(t, backend.Open(t))
			op := adminSignIn(t, e.srv, "/admin", operatorEmail, "")
			home := op.get("/admin/")
			if !strings.Contains(home.body, "/admin/t/acme/") || !strings.Contains(home.body, "/admin/t/other/") {
				t.Errorf("operator home lacks the tenants: %s", home.body)
			}
			if strings.Contains(home.body, storage.OperatorRealm) {
				t.Error("operator home shows the operator realm as a tenant")
			}
			if p := op.get("/admin/t/other/"); p.status != http.StatusOK {
				t.Errorf("operator at other's overview: status %d", p.status)
			}

			admin := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
			for _, tc := range []struct {
				path, wantLocation string
			}{
				{"/admin/t/other/", "/admin/t/other/login"},
				{"/admin/", "/admin/login"},
			} {
				p := admin.get(tc.path)
				if p.status != http.StatusSeeOther || p.header.Get("Location") != e.srv.URL+tc.wantLocation {
					t.Errorf("acme's admin at %s: status %d to %q, want a redirect to %s", tc.path, p.status, p.header.Get("Location"), tc.wantLocation)
				}
			}
			// A second sign-in asks for the enrolled factor, not a new one,
			// and a code of the next time step: each is accepted only once.
			e.srv.Clock.Advance(30 * time.Second)
			again := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, admin.totpKey)
			if again.totpKey != admin.totpKey {
				t.Fatal("second sign-in enrolled again")
			}

			// Signing out ends the session.
			if p := again.post("/admin/t/acme/logout", nil); p.status != http.StatusSeeOther {
				t.Fatalf("sign out: status %d", p.status)
			}
			if p := again.get("/admin/t/acme/"); p.status != http.StatusSeeOther {
				t.Errorf("after sign-out: status %d, want a redirect to sign in", p.status)
			}
		})
	}
}

func TestAdminSignInRefusals(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	ctx := context.Background()
	// A user of acme who is not an admin.
	if _, err := e.srv.Manage.CreateUser(ctx, manage.UserInput{TenantID: "acme", Email: "nurse@acme.example", Password: adminPassword,
		Profiles: []storage.Profile{{FHIRUser: "Practitioner/1"}}}, manage.Actor{ID: "test"}); err != nil {
		t.Fatal(err)
	}
	b := &adminBrowser{t: t, srv: e.srv, c: authzBrowser(t)}
	b.get("/admin/t/acme/login")
	for _, tc := range []struct {
		name, area, email, password string
	}{
		{"not an admin", "/admin/t/acme", "nurse@acme.example", adminPassword},
		{"wrong password", "/admin/t/acme", tenantAdminEmail, "wrong"},
		{"tenant admin at the operator door", "/admin", tenantAdminEmail, adminPassword},
		{"operator at a tenant door", "/admin/t/acme", operatorEmail, adminPassword},
	} {
		p := b.post(tc.area+"/login", url.Values{"email": {tc.email}, "password": {tc.password}})
		if p.status != http.StatusUnauthorized || !strings.Contains(p.body, "The email or password is not right.") {
			t.Errorf("%s: status %d, want 401 with the one sign-in failure message", tc.name, p.status)
		}
	}
	// The second factor cannot be skipped: the password alone opens nothing.
	b.post("/admin/t/acme/login", url.Values{"email": {tenantAdminEmail}, "password": {adminPassword}})
	if p := b.get("/admin/t/acme/"); p.status != http.StatusSeeOther {
		t.Errorf("after the password alone: status %d, want a redirect to sign in", p.status)
	}
	// Nor can a wrong code finish enrollment.
	if p := b.post("/admin/t/acme/mfa/enroll", url.Values{"code": {"000000"}}); p.status != http.StatusUnauthorized {
		t.Errorf("wrong enrollment code: status %d, want 401", p.status)
	}
	// A form without the CSRF token is refused.
	if p := b.post("/admin/t/acme/login", url.Values{"csrf_token": {"x"}, "email": {tenantAdminEmail}, "password": {adminPassword}}); p.status != http.StatusForbidden {
		t.Errorf("sign-in without CSRF token: status %d, want 403", p.status)
	}

	events, err := e.srv.Store.ListAudit(ctx, "acme", storage.AuditFilter{Type: "login.failure"})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]bool{}
	for _, ev := range events {
		if ev.Details["area"] == "admin" {
			reasons[ev.Details["reason"]] = true
		}
	}
	for _, want := range []string{"not_admin", "wrong_password", "unknown_email"} {
		if !reasons[want] {
			t.Errorf("no admin login.failure with reason %s in acme's trail; got %v", want, reasons)
		}
	}
}

func TestAdminDisabledLosesSession(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	b := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
	u, err := e.srv.Store.GetUser(context.Background(), "acme", e.acmeAdminID)
	if err != nil {
		t.Fatal(err)
	}
	u.Admin = false
	if err := e.srv.Store.UpdateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	if p := b.get("/admin/t/acme/"); p.status != http.StatusSeeOther {
		t.Errorf("after losing admin rights: status %d, want a redirect to sign in", p.status)
	}
}

// TestAdminPasswordResetEndsPendingSignIn: a browser that passed the
// password step cannot finish the sign-in once the password is reset.
func TestAdminPasswordResetEndsPendingSignIn(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	key := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "").totpKey
	b := &adminBrowser{t: t, srv: e.srv, c: authzBrowser(t)}
	b.get("/admin/t/acme/login")
	if p := b.post("/admin/t/acme/login", url.Values{"email": {tenantAdminEmail}, "password": {adminPassword}}); p.status != http.StatusOK {
		t.Fatalf("password step: status %d", p.status)
	}
	if err := e.srv.Manage.ResetPassword(context.Background(), "acme", e.acmeAdminID, "a-new-password-for-acme", manage.Actor{ID: "test"}); err != nil {
		t.Fatal(err)
	}
	if p := b.post("/admin/t/acme/mfa", url.Values{"code": {totpCode(t, key, e.srv.Clock.Now().Add(30*time.Second))}}); p.status != http.StatusBadRequest ||
		!strings.Contains(p.body, "Sign in again") {
		t.Errorf("second factor after a password reset: status %d, want 400 asking to sign in again", p.status)
	}
	if p := b.get("/admin/t/acme/"); p.status != http.StatusSeeOther {
		t.Errorf("admin home after the refused step: status %d, want a redirect to sign in", p.status)
	}
}
