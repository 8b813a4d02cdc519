package server_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// auditCount counts a tenant's audit events.
func auditCount(t *testing.T, srv *servertest.Server, tenantID string) int {
	t.Helper()
	events, err := srv.Store.ListAudit(context.Background(), tenantID, storage.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(events)
}

// TestAdminUserStaleForms: every form of a user's page carries the version
// it was filled from; one sent after someone else changed the user is
// refused with 409 and the user as now stored, and nothing is written.
func TestAdminUserStaleForms(t *testing.T) {
	for _, backend := range servertest.Backends() {
		t.Run(backend.Name, func(t *testing.T) {
			e := newAdminEnv(t, backend.Open(t))
			ctx := context.Background()
			nurse, err := e.srv.Manage.CreateUser(ctx, manage.UserInput{TenantID: "acme", Email: "nurse@acme.example", Password: "first password of the nurse",
				Profiles: []storage.Profile{{FHIRUser: "Practitioner/7"}}}, manage.Actor{ID: "test"})
			if err != nil {
				t.Fatal(err)
			}
			b := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
			path := "/admin/t/acme/users/" + nurse.ID
			page := b.get(path)
			if n := strings.Count(page.body, `<input type="hidden" name="version" value="1">`); n != 4 {
				t.Fatalf("the user page has %d forms carrying version 1, want 4: %s", n, page.body)
			}
			opened := page.hidden["version"]

			// Another admin changes the user while the page is open.
			other, err := e.srv.Manage.UpdateUser(ctx, "acme", nurse.ID, manage.UserChange{Version: nurse.Version,
				Profiles: &[]storage.Profile{{FHIRUser: "Practitioner/99", Label: "Changed elsewhere"}}}, manage.Actor{ID: "another admin"})
			if err != nil {
				t.Fatal(err)
			}
			events := auditCount(t, e.srv, "acme")
			for _, tc := range []struct {
				name, action string
				form         url.Values
			}{
				{"profiles", "/profiles", url.Values{"profiles": {"Patient/5"}}},
				{"make admin", "/admin", url.Values{"admin": {"true"}}},
				{"disable", "/disabled", url.Values{"disabled": {"true"}}},
				{"reset password", "/password", url.Values{"password": {"a password from a stale page"}}},
			} {
				tc.form.Set("version", opened)
				p := b.post(path+tc.action, tc.form)
				if p.status != http.StatusConflict || !strings.Contains(p.body, "Someone else changed this user since you opened this page") ||
					!strings.Contains(p.body, `role="alert"`) {
					t.Fatalf("%s from a stale page: status %d, want 409 saying so: %s", tc.name, p.status, p.body)
				}
				// The page now shows the user as stored, to be edited from there.
				if !strings.Contains(p.body, "Practitioner/99=Changed elsewhere") || p.hidden["version"] != "2" {
					t.Errorf("%s: the 409 page does not show the current user (version %q): %s", tc.name, p.hidden["version"], p.body)
				}
			}
			got, err := e.srv.Store.GetUser(ctx, "acme", nurse.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != other.Version || got.Admin || got.Disabled || got.PasswordHash != nurse.PasswordHash ||
				!slices.Equal(got.Profiles, other.Profiles) {
				t.Fatalf("stale forms changed the user: %+v", got)
			}
			if n := auditCount(t, e.srv, "acme"); n != events {
				t.Fatalf("stale forms were audited: %d events, want %d", n, events)
			}

			// A form that comes back to be corrected stays an edit of its
			// version, so it cannot undo a change made while it was corrected.
			p := b.post(path+"/profiles", url.Values{"version": {"2"}, "profiles": {"Observation/1"}})
			if p.status != http.StatusBadRequest || p.hidden["version"] != "2" || !strings.Contains(p.body, "Observation/1") {
				t.Fatalf("a refused profile: status %d, version %q: %s", p.status, p.hidden["version"], p.body)
			}
			if _, err := e.srv.Manage.UpdateUser(ctx, "acme", nurse.ID, manage.UserChange{Admin: new(true)}, manage.Actor{ID: "another admin"}); err != nil {
				t.Fatal(err)
			}
			if p := b.post(path+"/profiles", url.Values{"version": {"2"}, "profiles": {"Patient/5"}}); p.status != http.StatusConflict {
				t.Fatalf("the corrected form, now stale: status %d, want 409", p.status)
			}
			if p := b.post(path+"/admin", url.Values{"version": {"not a version"}, "admin": {"false"}}); p.status != http.StatusBadRequest ||
				!strings.Contains(p.body, "this form is damaged") {
				t.Fatalf("a damaged version: status %d: %s", p.status, p.body)
			}

			// From the current version the change goes through.
			wantNoticeRedirect(t, e.srv, b.post(path+"/profiles", url.Values{"version": {"3"}, "profiles": {"Patient/5"}}), path, "profiles")
			if got, err := e.srv.Store.GetUser(ctx, "acme", nurse.ID); err != nil || got.Version != 4 || !got.Admin ||
				!slices.Equal(got.Profiles, []storage.Profile{{FHIRUser: "Patient/5", Label: "Patient"}}) {
				t.Fatalf("after a current form: %+v, %v", got, err)
			}
		})
	}
}

// TestAdminSettingsStaleForm: settings saved from a page opened before
// someone else's change are refused with 409 and the settings as now
// stored, and nothing is written.
func TestAdminSettingsStaleForm(t *testing.T) {
	for _, backend := range servertest.Backends() {
		t.Run(backend.Name, func(t *testing.T) {
			e := newAdminEnv(t, backend.Open(t))
			ctx := context.Background()
			admin := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
			page := admin.get("/admin/t/acme/settings")
			opened := page.hidden["version"]
			if opened != "1" {
				t.Fatalf("the settings form carries version %q, want 1", opened)
			}
			tn, err := e.srv.Store.GetTenant(ctx, "acme")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.srv.Manage.UpdateTenant(ctx, manage.TenantUpdate{ID: "acme", Name: "Renamed elsewhere", FHIRBaseURLs: tn.FHIRBaseURLs,
				Version: tn.Version}, manage.Actor{ID: "another admin"}); err != nil {
				t.Fatal(err)
			}
			events := auditCount(t, e.srv, "acme")
			form := url.Values{"version": {opened}, "name": {"Acme Health"}, "fhir_base_urls": {"https://fhir.acme.example/r4"},
				"mfa": {"required"}, "access_token_ttl": {"15m"}}
			p := admin.post("/admin/t/acme/settings", form)
			if p.status != http.StatusConflict || !strings.Contains(p.body, "Someone else changed these settings since you opened this page") {
				t.Fatalf("settings from a stale page: status %d, want 409 saying so: %s", p.status, p.body)
			}
			if !strings.Contains(html.UnescapeString(p.body), `value="Renamed elsewhere"`) || p.hidden["version"] != "2" ||
				!strings.Contains(p.body, `id="mfa-none" name="mfa" value="none" checked`) {
				t.Errorf("the 409 page does not show the current settings (version %q): %s", p.hidden["version"], p.body)
			}
			got, err := e.srv.Store.GetTenant(ctx, "acme")
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != 2 || got.Name != "Renamed elsewhere" || got.Policy.MFARequired || got.Policy.AccessTokenTTL != 0 ||
				!slices.Equal(got.FHIRBaseURLs, tn.FHIRBaseURLs) {
				t.Fatalf("a stale form changed the tenant: %+v", got)
			}
			if n := auditCount(t, e.srv, "acme"); n != events {
				t.Fatalf("a stale form was audited: %d events, want %d", n, events)
			}

			form.Set("version", p.hidden["version"])
			wantRedirect(t, e.srv, "save from the current version", admin.post("/admin/t/acme/settings", form), "/admin/t/acme/settings?notice=saved")
			if got, err := e.srv.Store.GetTenant(ctx, "acme"); err != nil || got.Version != 3 || got.Name != "Acme Health" || !got.Policy.MFARequired {
				t.Fatalf("after a current form: %+v, %v", got, err)
			}
		})
	}
}

// lockOut fails an admin's password sign-in until the area refuses to check
// it, and returns the browser.
func lockOut(t *testing.T, srv *servertest.Server, area, email string) *adminBrowser {
	t.Helper()
	b := &adminBrowser{t: t, srv: srv, c: authzBrowser(t)}
	b.get(area + "/login")
	for range 5 {
		if p := b.post(area+"/login", url.Values{"email": {email}, "password": {"not the password"}}); p.status != http.StatusUnauthorized {
			t.Fatalf("a wrong password: status %d, want 401", p.status)
		}
	}
	if p := b.post(area+"/login", url.Values{"email": {strings.ToUpper(email)}, "password": {adminPassword}}); p.status != http.StatusTooManyRequests {
		t.Fatalf("the right password after five wrong ones: status %d, want 429", p.status)
	}
	return b
}

// TestAdminPasswordResetLiftsLockOut: after an admin sets a user's password,
// on the user's page or through the API, the user signs in with it at once,
// though failed sign-ins had locked the email out.
func TestAdminPasswordResetLiftsLockOut(t *testing.T) {
	for _, backend := range servertest.Backends() {
		t.Run(backend.Name, func(t *testing.T) {
			srv := servertest.Start(t, backend.Open(t))
			e := apiSetup(t, srv)
			ctx := context.Background()
			if _, err := srv.Manage.CreateAdmin(ctx, "acme", tenantAdminEmail, adminPassword, manage.Actor{ID: "test"}); err != nil {
				t.Fatal(err)
			}
			const newPassword = "a new password from the admin"
			for _, tc := range []struct {
				name  string
				reset func(t *testing.T, userID string)
			}{
				{"admin page", func(t *testing.T, userID string) {
					b := adminSignIn(t, srv, "/admin/t/acme", tenantAdminEmail, "")
					page := b.get("/admin/t/acme/users/" + userID)
					p := b.post("/admin/t/acme/users/"+userID+"/password", url.Values{"version": {page.hidden["version"]}, "password": {newPassword}})
					wantNoticeRedirect(t, srv, p, "/admin/t/acme/users/"+userID, "password")
				}},
				{"admin API", func(t *testing.T, userID string) {
					r := apiCall(t, "POST", e.v1+"/tenants/acme/users/"+userID+"/password", e.acmeToken, "", `{"password": "`+newPassword+`"}`)
					apiWant(t, "set password", r, http.StatusNoContent, "")
				}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					email := strings.ReplaceAll(tc.name, " ", "-") + "@acme.example"
					deputy, err := srv.Manage.CreateAdmin(ctx, "acme", email, adminPassword, manage.Actor{ID: "test"})
					if err != nil {
						t.Fatal(err)
					}
					b := lockOut(t, srv, "/admin/t/acme", email)
					tc.reset(t, deputy.ID)
					if p := b.post("/admin/t/acme/login", url.Values{"email": {email}, "password": {newPassword}}); p.status != http.StatusOK ||
						!strings.Contains(p.body, `id="manual-key"`) {
						t.Fatalf("sign-in with the new password: status %d, want the second factor's enrollment: %s", p.status, p.body)
					}
				})
			}
		})
	}
}

// apiCallIfMatch is apiCall with an If-Match header.
func apiCallIfMatch(t *testing.T, method, u, token, ifMatch, body string) apiResponse {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	return apiSend(t, req)
}

// TestAdminAPIVersions: users and tenants show their version as ETag; a
// PATCH or PUT with an If-Match naming a version no longer current gets
// 412 and changes nothing; a PATCH of several fields is one update.
func TestAdminAPIVersions(t *testing.T) {
	for _, backend := range servertest.Backends() {
		t.Run(backend.Name, func(t *testing.T) {
			srv := servertest.Start(t, backend.Open(t))
			e := apiSetup(t, srv)
			ctx := context.Background()
			v1, tok := e.v1+"/tenants/acme", e.acmeToken
			etag := func(what string, r apiResponse, want string) {
				t.Helper()
				if got := r.header.Get("ETag"); got != want {
					t.Fatalf("%s: ETag %q, want %q", what, got, want)
				}
			}

			r := apiCall(t, "POST", v1+"/users", tok, "", `{"email": "dr@acme.example", "profiles": [{"fhir_user": "Practitioner/7"}]}`)
			apiWant(t, "create user", r, http.StatusCreated, "")
			etag("create user", r, `"1"`)
			id, _ := r.object(t)["id"].(string)
			user := v1 + "/users/" + id
			r = apiCall(t, "GET", user, tok, "", "")
			apiWant(t, "get user", r, http.StatusOK, "")
			etag("get user", r, `"1"`)

			events := auditCount(t, srv, "acme")
			r = apiCallIfMatch(t, "PATCH", user, tok, `"1"`, `{"admin": true, "disabled": true, "profiles": [{"fhir_user": "Patient/9"}]}`)
			apiWant(t, "patch three fields", r, http.StatusOK, "")
			etag("patch three fields: one update", r, `"2"`)
			if m := r.object(t); m["admin"] != true || m["disabled"] != true {
				t.Fatalf("patched user %s", r.body)
			}
			trail, err := srv.Store.ListAudit(ctx, "acme", storage.AuditFilter{AfterSeq: int64(events)})
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, ev := range trail {
				types = append(types, ev.Type)
			}
			if !slices.Equal(types, []string{"admin.user.set_profiles", "admin.user.set_admin", "admin.user.disable"}) {
				t.Fatalf("a patch of three fields audited as %v", types)
			}

			for _, tc := range []struct{ name, ifMatch string }{
				{"a stale version", `"1"`},
				{"a version never stored", `"3"`},
				{"a weak tag", `W/"2"`},
				{"no tag", `2`},
			} {
				r := apiCallIfMatch(t, "PATCH", user, tok, tc.ifMatch, `{"disabled": false, "admin": false}`)
				apiWant(t, "patch with "+tc.name, r, http.StatusPreconditionFailed, "precondition_failed")
			}
			stored, err := srv.Store.GetUser(ctx, "acme", id)
			if err != nil {
				t.Fatal(err)
			}
			if stored.Version != 2 || !stored.Disabled || !stored.Admin {
				t.Fatalf("refused patches changed the user: %+v", stored)
			}
			if n := auditCount(t, srv, "acme"); n != events+3 {
				t.Fatalf("refused patches were audited: %d events, want %d", n, events+3)
			}

			for i, tc := range []struct{ name, ifMatch string }{
				{"one of several tags", `"7", "2"`},
				{"any version", `*`},
				{"no If-Match", ``},
			} {
				r := apiCallIfMatch(t, "PATCH", user, tok, tc.ifMatch, `{"disabled": false}`)
				apiWant(t, "patch with "+tc.name, r, http.StatusOK, "")
				etag("patch with "+tc.name, r, `"`+strconv.Itoa(3+i)+`"`)
			}
			r = apiCallIfMatch(t, "PATCH", user, tok, `"5"`, `{}`)
			apiWant(t, "patch of no field", r, http.StatusOK, "")
			etag("patch of no field writes nothing", r, `"5"`)

			// Tenants.
			tenant := v1
			r = apiCall(t, "GET", tenant, tok, "", "")
			apiWant(t, "get tenant", r, http.StatusOK, "")
			etag("get tenant", r, `"1"`)
			const settings = `{"name": "Acme Health", "fhir_base_urls": ["https://fhir.acme.example/r4"], "mfa_required": true}`
			r = apiCallIfMatch(t, "PUT", tenant, tok, `"1"`, settings)
			apiWant(t, "put tenant", r, http.StatusOK, "")
			etag("put tenant", r, `"2"`)
			r = apiCallIfMatch(t, "PUT", tenant, tok, `"1"`, `{"name": "Stale", "fhir_base_urls": ["https://fhir.stale.example/r4"]}`)
			apiWant(t, "put tenant from a stale version", r, http.StatusPreconditionFailed, "precondition_failed")
			if tn, err := srv.Store.GetTenant(ctx, "acme"); err != nil || tn.Version != 2 || tn.Name != "Acme Health" || !tn.Policy.MFARequired {
				t.Fatalf("a stale put changed the tenant: %+v, %v", tn, err)
			}
			r = apiCall(t, "PUT", tenant, tok, "", settings)
			apiWant(t, "put tenant without If-Match", r, http.StatusOK, "")
			etag("put tenant without If-Match", r, `"3"`)
		})
	}
}
