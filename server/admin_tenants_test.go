package server_test

import (
	"bytes"
	"context"
	"errors"
	"html"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// newestAudit returns the newest event of type typ in a tenant's trail,
// failing the test when there is none.
func newestAudit(t *testing.T, srv *servertest.Server, tenantID, typ string) storage.AuditEvent {
	t.Helper()
	events, err := srv.Store.ListAudit(context.Background(), tenantID, storage.AuditFilter{Type: typ, Descending: true, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) == 0 {
		t.Fatalf("no %s event in %s's audit trail", typ, tenantID)
	}
	return events[0]
}

// adminEventsBy counts the admin.* events of a tenant recorded for actor.
func adminEventsBy(t *testing.T, srv *servertest.Server, tenantID, actor string) int {
	t.Helper()
	events, err := srv.Store.ListAudit(context.Background(), tenantID, storage.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range events {
		if ev.ActorID == actor && strings.HasPrefix(ev.Type, "admin.") {
			n++
		}
	}
	return n
}

// postFile sends a multipart form with the roster file, as a browser
// uploads one; csrf is sent as the form's token unless empty.
func postFile(b *adminBrowser, path, csrf string, content []byte) authzPage {
	b.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if csrf != "" {
		if err := mw.WriteField("csrf_token", csrf); err != nil {
			b.t.Fatal(err)
		}
	}
	if content != nil {
		fw, err := mw.CreateFormFile("roster", "patients.ndjson")
		if err != nil {
			b.t.Fatal(err)
		}
		if _, err := fw.Write(content); err != nil {
			b.t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		b.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+path, &body)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := b.c.Do(req)
	return authzRead(b.t, resp, err)
}

// wantRedirect fails unless p is a 303 to path on the server.
func wantRedirect(t *testing.T, srv *servertest.Server, what string, p authzPage, path string) {
	t.Helper()
	if p.status != http.StatusSeeOther || p.header.Get("Location") != srv.URL+path {
		t.Fatalf("%s: status %d to %q, want 303 to %s: %s", what, p.status, p.header.Get("Location"), path, p.body)
	}
}

func TestAdminCreateTenant(t *testing.T) {
	for _, backend := range servertest.Backends() {
		t.Run(backend.Name, func(t *testing.T) {
			e := newAdminEnv(t, backend.Open(t))
			ctx := context.Background()
			op := adminSignIn(t, e.srv, "/admin", operatorEmail, "")
			if home := op.get("/admin/"); !strings.Contains(home.body, `href="`+e.srv.URL+`/admin/tenants/new"`) {
				t.Fatalf("operator home has no way to a new tenant: %s", home.body)
			}
			if p := op.get("/admin/tenants/new"); p.status != http.StatusOK || !strings.Contains(p.body, `name="fhir_base_urls"`) {
				t.Fatalf("new tenant form: status %d: %s", p.status, p.body)
			}

			valid := url.Values{"id": {"clinic"}, "name": {"Clinic <One>"},
				"fhir_base_urls": {"https://fhir.clinic.example/r4/\n\n https://fhir2.clinic.example \n"}, "mfa": {"offered"}}
			with := func(k, v string) url.Values {
				f := url.Values{}
				for key, vs := range valid {
					f[key] = slices.Clone(vs)
				}
				f.Set(k, v)
				return f
			}
			for _, tc := range []struct {
				name   string
				form   url.Values
				status int
				want   string
			}{
				{"bad id", with("id", "Clinic One"), http.StatusBadRequest, "must be 1-63 lowercase letters"},
				{"no FHIR base URL", with("fhir_base_urls", " \n"), http.StatusBadRequest, "at least one FHIR base URL is required"},
				{"bad FHIR base URL", with("fhir_base_urls", "ftp://fhir.clinic.example"), http.StatusBadRequest, "must be an absolute http(s) URL"},
				{"no MFA choice", with("mfa", ""), http.StatusBadRequest, "Choose whether people are asked for a second factor."},
				{"existing id", with("id", "acme"), http.StatusConflict, "already exists"},
			} {
				p := op.post("/admin/tenants", tc.form)
				if p.status != tc.status || !strings.Contains(html.UnescapeString(p.body), tc.want) {
					t.Errorf("%s: status %d, want %d with %q: %s", tc.name, p.status, tc.status, tc.want, p.body)
				}
				// What was typed comes back, escaped, to be corrected.
				if !strings.Contains(p.body, `value="Clinic &lt;One&gt;"`) {
					t.Errorf("%s: the typed name is not kept", tc.name)
				}
			}
			if _, err := e.srv.Store.GetTenant(ctx, "clinic"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("a refused form created the tenant: %v", err)
			}
			if acme, _ := e.srv.Store.GetTenant(ctx, "acme"); acme.Name != "Tenant acme" {
				t.Fatalf("creating a tenant with acme's id changed acme: %+v", acme)
			}

			wantRedirect(t, e.srv, "create", op.post("/admin/tenants", valid), "/admin/t/clinic/settings?notice=tenant_created")
			tn, err := e.srv.Store.GetTenant(ctx, "clinic")
			if err != nil {
				t.Fatal(err)
			}
			if tn.Name != "Clinic <One>" || !slices.Equal(tn.FHIRBaseURLs, []string{"https://fhir.clinic.example/r4", "https://fhir2.clinic.example"}) ||
				!tn.Policy.MFAOffered || tn.Policy.MFARequired {
				t.Errorf("stored tenant: %+v", tn)
			}
			if ks, err := e.srv.Store.ListSigningKeys(ctx, "clinic"); err != nil || len(ks) == 0 {
				t.Errorf("new tenant's keys: %d, %v", len(ks), err)
			}
			if ev := newestAudit(t, e.srv, "clinic", "admin.tenant.create"); ev.ActorID != "operator:"+e.operatorID {
				t.Errorf("audit actor %q, want operator:%s", ev.ActorID, e.operatorID)
			}
			settings := op.get("/admin/t/clinic/settings?notice=tenant_created")
			if settings.status != http.StatusOK || !strings.Contains(settings.body, "Tenant created with its signing keys.") {
				t.Errorf("settings after create: status %d: %s", settings.status, settings.body)
			}
			if home := op.get("/admin/"); !strings.Contains(home.body, "/admin/t/clinic/") {
				t.Error("operator home does not list the new tenant")
			}
		})
	}
}

func TestAdminSettings(t *testing.T) {
	for _, backend := range servertest.Backends() {
		t.Run(backend.Name, func(t *testing.T) {
			e := newAdminEnv(t, backend.Open(t))
			ctx := context.Background()
			admin := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
			p := admin.get("/admin/t/acme/settings")
			if p.status != http.StatusOK || !strings.Contains(p.body, `value="Tenant acme"`) ||
				!strings.Contains(p.body, "https://fhir.example.org/acme</textarea>") ||
				!strings.Contains(p.body, `id="mfa-none" name="mfa" value="none" checked`) {
				t.Fatalf("settings page does not show the tenant: status %d: %s", p.status, p.body)
			}
			// A tenant with an old name in the cache: the overview reads it.
			admin.get("/admin/t/acme/")

			form := url.Values{"name": {"Acme Health"}, "fhir_base_urls": {"https://fhir.acme.example/r4\nhttps://fhir.example.org/acme"},
				"mfa": {"required"}, "allow_email_linking": {"on"}, "jit_provisioning": {"on"},
				"access_token_ttl": {"15m"}, "refresh_token_ttl": {""}, "id_token_ttl": {"5m"}, "access_token_alg": {"RS256"},
				"client_rate_limit": {"600"}, "address_rate_limit": {"Off"}}
			wantRedirect(t, e.srv, "save", admin.post("/admin/t/acme/settings", form), "/admin/t/acme/settings?notice=saved")

			tn, err := e.srv.Store.GetTenant(ctx, "acme")
			if err != nil {
				t.Fatal(err)
			}
			want := storage.TenantPolicy{MFARequired: true, AllowEmailLinking: true, JITProvisioning: true,
				AccessTokenTTL: storage.Duration(15 * time.Minute), IDTokenTTL: storage.Duration(5 * time.Minute), AccessTokenAlg: "RS256",
				RateLimits: storage.RateLimits{ClientPerMinute: 600, AddressPerMinute: -1}}
			if tn.Name != "Acme Health" || tn.Policy != want ||
				!slices.Equal(tn.FHIRBaseURLs, []string{"https://fhir.acme.example/r4", "https://fhir.example.org/acme"}) {
				t.Errorf("stored tenant: %+v", tn)
			}
			ev := newestAudit(t, e.srv, "acme", "admin.tenant.update")
			if ev.ActorID != e.acmeAdminID || ev.Details["access_token_ttl"] != "15m0s" || !strings.Contains(ev.Details["changed"], "mfa_required") {
				t.Errorf("audit event: actor %q, details %v", ev.ActorID, ev.Details)
			}
			p = admin.get("/admin/t/acme/settings?notice=saved")
			for _, want := range []string{"Settings saved.", `value="Acme Health"`, `value="15m"`, `value="5m"`,
				`id="mfa-required" name="mfa" value="required" checked`, `id="jit_provisioning" name="jit_provisioning" checked`,
				`id="alg-rs256" name="access_token_alg" value="RS256" checked`, `name="client_rate_limit" type="text" inputmode="numeric" value="600"`,
				`name="address_rate_limit" type="text" inputmode="numeric" value="off"`} {
				if !strings.Contains(p.body, want) {
					t.Errorf("settings after saving lack %q", want)
				}
			}
			// The new name shows at once, though tenants are cached.
			if p := admin.get("/admin/t/acme/"); !strings.Contains(p.body, "<h1>Acme Health</h1>") {
				t.Errorf("overview after saving shows the old name: %s", p.body)
			}

			for _, tc := range []struct {
				field, value, want string
			}{
				{"access_token_ttl", "soon", `Access token lifetime "soon" is not a duration`},
				{"refresh_token_ttl", "30s", "refresh token lifetime 30s must be between"},
				{"id_token_ttl", "48h", "ID token lifetime 48h0m0s must be between"},
				{"fhir_base_urls", "", "at least one FHIR base URL is required"},
				{"fhir_base_urls", "https://fhir.acme.example/r4?x=1", "must not have a query"},
				{"mfa", "sometimes", "Choose whether people are asked for a second factor."},
				{"access_token_alg", "HS256", `access token algorithm "HS256" must be one of RS256, PS256, ES256`},
				{"client_rate_limit", "lots", `The client rate limit must be a number of requests a minute`},
				{"address_rate_limit", "2000000", "the address rate limit 2000000 must be at most 1000000"},
			} {
				bad := url.Values{}
				for k, vs := range form {
					bad[k] = slices.Clone(vs)
				}
				bad.Set("name", "Typed Name")
				bad.Set(tc.field, tc.value)
				p := admin.post("/admin/t/acme/settings", bad)
				if p.status != http.StatusBadRequest || !strings.Contains(html.UnescapeString(p.body), tc.want) {
					t.Errorf("%s=%q: status %d, want 400 with %q: %s", tc.field, tc.value, p.status, tc.want, p.body)
				}
				if !strings.Contains(p.body, `value="Typed Name"`) {
					t.Errorf("%s=%q: the typed name is not kept", tc.field, tc.value)
				}
			}
			if tn, _ := e.srv.Store.GetTenant(ctx, "acme"); tn.Name != "Acme Health" || tn.Policy.AccessTokenAlg != "RS256" {
				t.Errorf("a refused form changed the tenant: %+v", tn)
			}
		})
	}
}

// TestAdminTenantPagesRefuseOthers checks every page of tenants, settings,
// keys, consents and patients against a tenant admin of another tenant and
// against posts without the CSRF token.
func TestAdminTenantPagesRefuseOthers(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	ctx := context.Background()
	ks, err := e.srv.Store.ListSigningKeys(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	admin := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")

	for _, tc := range []struct{ path, login string }{
		{"/admin/tenants/new", "/admin/login"},
		{"/admin/t/other/settings", "/admin/t/other/login"},
		{"/admin/t/other/keys", "/admin/t/other/login"},
		{"/admin/t/other/consents", "/admin/t/other/login"},
		{"/admin/t/other/patients", "/admin/t/other/login"},
	} {
		wantRedirect(t, e.srv, "acme's admin at "+tc.path, admin.get(tc.path), tc.login)
	}
	posts := []struct {
		path string
		form url.Values
	}{
		{"/admin/tenants", url.Values{"id": {"mine"}, "name": {"Mine"}, "fhir_base_urls": {"https://fhir.example.org/mine"}, "mfa": {"none"}}},
		{"/admin/t/other/settings", url.Values{"name": {"Taken"}, "fhir_base_urls": {"https://evil.example"}, "mfa": {"none"}}},
		{"/admin/t/other/keys/rotate", url.Values{"retirement": {"0s"}}},
		{"/admin/t/other/keys/retire", url.Values{"kid": {ks[0].KID}}},
		{"/admin/t/other/consents/revoke", url.Values{"user_id": {"u"}, "client_id": {"c"}}},
	}
	for _, tc := range posts {
		if p := admin.post(tc.path, tc.form); p.status != http.StatusForbidden {
			t.Errorf("acme's admin posting to %s: status %d, want 403", tc.path, p.status)
		}
	}
	if p := postFile(admin, "/admin/t/other/patients/import", admin.csrf, []byte(`{"resourceType":"Patient","id":"x"}`)); p.status != http.StatusForbidden {
		t.Errorf("acme's admin importing into other: status %d, want 403", p.status)
	}
	if _, err := e.srv.Store.GetTenant(ctx, "mine"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a tenant admin created a tenant: %v", err)
	}
	other, err := e.srv.Store.GetTenant(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	after, err := e.srv.Store.ListSigningKeys(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	if other.Name != "Tenant other" || len(after) != len(ks) || after[0].Status != storage.KeyActive {
		t.Errorf("acme's admin changed other: %+v, keys %+v", other, after)
	}
	if n, err := e.srv.Store.SearchPatients(ctx, "other", storage.PatientQuery{}); err != nil || len(n) != 0 {
		t.Errorf("other's roster after acme's admin imported into it: %d, %v", len(n), err)
	}

	// Acme's own pages refuse posts without the token, multipart included.
	acmeKeys, err := e.srv.Store.ListSigningKeys(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		form url.Values
	}{
		{"/admin/t/acme/settings", url.Values{"name": {"Forged"}, "fhir_base_urls": {"https://evil.example"}, "mfa": {"none"}}},
		{"/admin/t/acme/keys/rotate", url.Values{"retirement": {"0s"}}},
		{"/admin/t/acme/keys/retire", url.Values{"kid": {acmeKeys[0].KID}}},
		{"/admin/t/acme/consents/revoke", url.Values{"user_id": {"u"}, "client_id": {"c"}}},
	} {
		tc.form.Set("csrf_token", "forged")
		if p := admin.post(tc.path, tc.form); p.status != http.StatusForbidden {
			t.Errorf("post to %s without the CSRF token: status %d, want 403", tc.path, p.status)
		}
	}
	if p := postFile(admin, "/admin/t/acme/patients/import", "", []byte(`{"resourceType":"Patient","id":"x"}`)); p.status != http.StatusForbidden {
		t.Errorf("import without the CSRF token: status %d, want 403", p.status)
	}
	if n := adminEventsBy(t, e.srv, "acme", e.acmeAdminID); n != 0 {
		t.Errorf("%d admin changes recorded from refused posts", n)
	}
	op := adminSignIn(t, e.srv, "/admin", operatorEmail, "")
	if p := op.post("/admin/tenants", url.Values{"csrf_token": {"forged"}, "id": {"mine"}, "fhir_base_urls": {"https://fhir.example.org/mine"}, "mfa": {"none"}}); p.status != http.StatusForbidden {
		t.Errorf("operator creating a tenant without the CSRF token: status %d, want 403", p.status)
	}
	if _, err := e.srv.Store.GetTenant(ctx, "mine"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a forged post created a tenant: %v", err)
	}
}
