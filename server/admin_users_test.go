package server_test

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/password"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// lastAdminChange returns the newest audit event of a type in a tenant's
// trail, failing the test when there is none.
func lastAdminChange(t *testing.T, store storage.Storage, tenantID, typ string) storage.AuditEvent {
	t.Helper()
	events, err := store.ListAudit(context.Background(), tenantID, storage.AuditFilter{Type: typ, Descending: true, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) == 0 {
		t.Fatalf("no %s event in the audit trail of %s", typ, tenantID)
	}
	return events[0]
}

// wantNoticeRedirect checks that a page is a 303 to a path of the server with
// the given notice code.
func wantNoticeRedirect(t *testing.T, srv *servertest.Server, p authzPage, path, notice string) {
	t.Helper()
	want := srv.URL + path + "?notice=" + notice
	if p.status != http.StatusSeeOther || p.header.Get("Location") != want {
		t.Fatalf("status %d to %q, want a redirect to %s: %s", p.status, p.header.Get("Location"), want, p.body)
	}
}

func TestAdminUserActions(t *testing.T) {
	for _, backend := range servertest.Backends() {
		t.Run(backend.Name, func(t *testing.T) {
			e := newAdminEnv(t, backend.Open(t))
			ctx := context.Background()
			store := e.srv.Store
			b := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
			b.get("/admin/t/acme/users")

			created := b.post("/admin/t/acme/users", url.Values{
				"email": {"nurse@acme.example"}, "password": {"first password of the nurse"},
				"profiles": {"Practitioner/7=Charge nurse\n\nPatient/9"},
			})
			loc := created.header.Get("Location")
			prefix := e.srv.URL + "/admin/t/acme/users/"
			if created.status != http.StatusSeeOther || !strings.HasPrefix(loc, prefix) || !strings.HasSuffix(loc, "?notice=created") {
				t.Fatalf("create: status %d to %q: %s", created.status, loc, created.body)
			}
			id := strings.TrimSuffix(strings.TrimPrefix(loc, prefix), "?notice=created")
			u, err := store.GetUser(ctx, "acme", id)
			if err != nil {
				t.Fatal(err)
			}
			wantProfiles := []storage.Profile{{FHIRUser: "Practitioner/7", Label: "Charge nurse"}, {FHIRUser: "Patient/9", Label: "Patient"}}
			if u.Email != "nurse@acme.example" || u.Admin || !slices.Equal(u.Profiles, wantProfiles) || password.Verify(u.PasswordHash, "first password of the nurse") != nil {
				t.Fatalf("created user %+v", u)
			}
			if ev := lastAdminChange(t, store, "acme", "admin.user.create"); ev.ActorID != e.acmeAdminID || ev.Subject != id {
				t.Errorf("create audited as actor %q subject %q, want %q and %q", ev.ActorID, ev.Subject, e.acmeAdminID, id)
			}
			page := b.get("/admin/t/acme/users/" + id + "?notice=created")
			if !strings.Contains(page.body, "The user was created.") || !strings.Contains(page.body, "Practitioner/7=Charge nurse") {
				t.Errorf("user page after create lacks the notice or the profiles: %s", page.body)
			}
			list := b.get("/admin/t/acme/users")
			if !strings.Contains(list.body, "nurse@acme.example") || !strings.Contains(list.body, "<code>Practitioner/7</code> Charge nurse") {
				t.Errorf("users list lacks the new user: %s", list.body)
			}
			// A notice is named by code; text in the query is never shown.
			if p := b.get("/admin/t/acme/users?notice=%3Cb%3Eforged"); strings.Contains(p.body, "forged") {
				t.Error("the users page reflects the notice parameter")
			}

			for _, tc := range []struct {
				name, path string
				form       url.Values
				notice     string
				audit      string
				check      func(u storage.User) bool
			}{
				{"profiles", "/profiles", url.Values{"profiles": {"Practitioner/8=Ward nurse"}}, "profiles", "admin.user.set_profiles",
					func(u storage.User) bool {
						return slices.Equal(u.Profiles, []storage.Profile{{FHIRUser: "Practitioner/8", Label: "Ward nurse"}})
					}},
				{"make admin", "/admin", url.Values{"admin": {"true"}}, "admin_granted", "admin.user.set_admin",
					func(u storage.User) bool { return u.Admin }},
				{"withdraw admin", "/admin", url.Values{"admin": {"false"}}, "admin_withdrawn", "admin.user.set_admin",
					func(u storage.User) bool { return !u.Admin }},
				{"disable", "/disabled", url.Values{"disabled": {"true"}}, "disabled", "admin.user.disable",
					func(u storage.User) bool { return u.Disabled }},
				{"enable", "/disabled", url.Values{"disabled": {"false"}}, "enabled", "admin.user.enable",
					func(u storage.User) bool { return !u.Disabled }},
				{"reset password", "/password", url.Values{"password": {"second password of the nurse"}}, "password", "admin.user.reset_password",
					func(u storage.User) bool {
						return password.Verify(u.PasswordHash, "second password of the nurse") == nil
					}},
				{"reset second factor", "/second-factor/reset", nil, "second_factor", "admin.user.reset_mfa",
					func(u storage.User) bool { return len(u.TOTPSecret) == 0 }},
			} {
				p := b.post("/admin/t/acme/users/"+id+tc.path, tc.form)
				wantNoticeRedirect(t, e.srv, p, "/admin/t/acme/users/"+id, tc.notice)
				u, err := store.GetUser(ctx, "acme", id)
				if err != nil {
					t.Fatal(err)
				}
				if !tc.check(u) {
					t.Errorf("%s: stored user %+v", tc.name, u)
				}
				if ev := lastAdminChange(t, store, "acme", tc.audit); ev.ActorID != e.acmeAdminID || ev.Subject != id {
					t.Errorf("%s: audited as actor %q subject %q, want %q and %q", tc.name, ev.ActorID, ev.Subject, e.acmeAdminID, id)
				}
			}
			for _, ev := range []string{"admin.user.create", "admin.user.reset_password"} {
				if d := lastAdminChange(t, store, "acme", ev).Details; strings.Contains(strings.Join(slices.Collect(maps.Values(d)), " "), "password of the nurse") {
					t.Errorf("%s details carry the password: %v", ev, d)
				}
			}

			// Deleting asks first, then removes the user.
			if confirm := b.get("/admin/t/acme/users/" + id + "/delete"); confirm.status != http.StatusOK ||
				!strings.Contains(confirm.body, "nurse@acme.example") || !strings.Contains(confirm.body, `action="`+e.srv.URL+"/admin/t/acme/users/"+id+`/delete"`) {
				t.Fatalf("delete confirmation: status %d: %s", confirm.status, confirm.body)
			}
			if _, err := store.GetUser(ctx, "acme", id); err != nil {
				t.Fatal("the confirmation page deleted the user")
			}
			wantNoticeRedirect(t, e.srv, b.post("/admin/t/acme/users/"+id+"/delete", nil), "/admin/t/acme/users", "deleted")
			if _, err := store.GetUser(ctx, "acme", id); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("user after delete: %v, want not found", err)
			}
			if ev := lastAdminChange(t, store, "acme", "admin.user.delete"); ev.ActorID != e.acmeAdminID || ev.Details["email"] != "nurse@acme.example" {
				t.Errorf("delete audited as %+v", ev)
			}
			if p := b.get("/admin/t/acme/users/" + id); p.status != http.StatusNotFound {
				t.Errorf("deleted user's page: status %d, want 404", p.status)
			}
		})
	}
}

func TestAdminUserValidation(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	ctx := context.Background()
	nurse, err := e.srv.Manage.CreateUser(ctx, manage.UserInput{TenantID: "acme", Email: "nurse@acme.example",
		Profiles: []storage.Profile{{FHIRUser: "Practitioner/7"}}}, manage.Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	b := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
	b.get("/admin/t/acme/users")
	before, err := e.srv.Store.ListAudit(ctx, "acme", storage.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		form       url.Values
		// message is part of the error shown; kept is typed text the page must keep.
		message, kept string
	}{
		{"email", "/admin/t/acme/users", url.Values{"email": {"not an email"}, "profiles": {"Patient/41"}},
			"is not a plain email address", "Patient/41"},
		{"profile", "/admin/t/acme/users", url.Values{"email": {"new@acme.example"}, "profiles": {"Observation/1"}},
			`profile &#34;Observation/1&#34; must be Practitioner/`, "new@acme.example"},
		{"short password", "/admin/t/acme/users", url.Values{"email": {"new@acme.example"}, "password": {"short"}},
			"password must be at least", "new@acme.example"},
		{"taken email", "/admin/t/acme/users", url.Values{"email": {"nurse@acme.example"}, "profiles": {"Patient/42"}},
			"A user with this email exists already", "Patient/42"},
		{"profile twice", "/admin/t/acme/users/" + nurse.ID + "/profiles", url.Values{"profiles": {"Patient/5\nPatient/5=Again"}},
			"profile Patient/5 is given twice", "Patient/5=Again"},
		{"short new password", "/admin/t/acme/users/" + nurse.ID + "/password", url.Values{"password": {"short"}},
			"password must be at least", ""},
		{"disable oneself", "/admin/t/acme/users/" + e.acmeAdminID + "/disabled", url.Values{"disabled": {"true"}},
			"you cannot disable your own account", ""},
		{"demote oneself", "/admin/t/acme/users/" + e.acmeAdminID + "/admin", url.Values{"admin": {"false"}},
			"you cannot withdraw admin rights from your own account", ""},
		{"delete oneself", "/admin/t/acme/users/" + e.acmeAdminID + "/delete", nil,
			"you cannot delete your own account", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := b.post(tc.path, tc.form)
			if p.status != http.StatusBadRequest || !strings.Contains(p.body, tc.message) {
				t.Fatalf("status %d, want 400 with %q: %s", p.status, tc.message, p.body)
			}
			if !strings.Contains(p.body, `role="alert"`) {
				t.Error("the message is not marked as an alert")
			}
			if tc.kept != "" && !strings.Contains(p.body, tc.kept) {
				t.Errorf("the page lost the typed %q", tc.kept)
			}
		})
	}
	after, err := e.srv.Store.ListAudit(ctx, "acme", storage.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range after[len(before):] {
		if strings.HasPrefix(ev.Type, "admin.") {
			t.Errorf("a refused change was recorded: %s", ev.Type)
		}
	}
	if us, err := e.srv.Store.ListUsers(ctx, "acme"); err != nil || len(us) != 2 {
		t.Errorf("users after refusals: %d, %v; want the admin and the nurse only", len(us), err)
	}
	me, err := e.srv.Store.GetUser(ctx, "acme", e.acmeAdminID)
	if err != nil || me.Disabled || !me.Admin {
		t.Errorf("the admin after refused changes to their own account: %+v, %v", me, err)
	}
}

func TestAdminUserIsolation(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	ctx := context.Background()
	theirs, err := e.srv.Manage.CreateUser(ctx, manage.UserInput{TenantID: "other", Email: "doc@other.example",
		Password: adminPassword}, manage.Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	b := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
	for _, tc := range []struct {
		path, wantLocation string
	}{
		{"/admin/t/other/users", "/admin/t/other/login"},
		{"/admin/t/other/users/" + theirs.ID, "/admin/t/other/login"},
		{"/admin/operators", "/admin/login"},
	} {
		p := b.get(tc.path)
		if p.status != http.StatusSeeOther || p.header.Get("Location") != e.srv.URL+tc.wantLocation {
			t.Errorf("acme's admin at %s: status %d to %q, want a redirect to %s", tc.path, p.status, p.header.Get("Location"), tc.wantLocation)
		}
	}
	for _, tc := range []struct {
		path   string
		form   url.Values
		status int
	}{
		// Another tenant's pages refuse a post from acme's admin.
		{"/admin/t/other/users", url.Values{"email": {"planted@other.example"}}, http.StatusForbidden},
		{"/admin/t/other/users/" + theirs.ID + "/disabled", url.Values{"disabled": {"true"}}, http.StatusForbidden},
		{"/admin/operators", url.Values{"email": {"planted@example.org"}, "password": {adminPassword}}, http.StatusForbidden},
		// Through acme's own pages, other's user is nobody.
		{"/admin/t/acme/users/" + theirs.ID + "/disabled", url.Values{"disabled": {"true"}}, http.StatusNotFound},
		{"/admin/t/acme/users/" + theirs.ID + "/password", url.Values{"password": {"a password acme chose"}}, http.StatusNotFound},
		{"/admin/t/acme/users/" + theirs.ID + "/delete", nil, http.StatusNotFound},
	} {
		if p := b.post(tc.path, tc.form); p.status != tc.status {
			t.Errorf("acme's admin posting to %s: status %d, want %d", tc.path, p.status, tc.status)
		}
	}
	if p := b.get("/admin/t/acme/users/" + theirs.ID); p.status != http.StatusNotFound {
		t.Errorf("other's user through acme's pages: status %d, want 404", p.status)
	}
	got, err := e.srv.Store.GetUser(ctx, "other", theirs.ID)
	if err != nil || got.Disabled || password.Verify(got.PasswordHash, adminPassword) != nil {
		t.Errorf("other's user after acme's attempts: %+v, %v", got, err)
	}
	for _, tenant := range []string{"other", storage.OperatorRealm} {
		us, err := e.srv.Store.ListUsers(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range us {
			if strings.HasPrefix(u.Email, "planted@") {
				t.Errorf("acme's admin created %s in %s", u.Email, tenant)
			}
		}
	}
}

func TestAdminUserDisableEndsAdminSession(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	admin := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
	op := adminSignIn(t, e.srv, "/admin", operatorEmail, "")
	op.get("/admin/t/acme/users/" + e.acmeAdminID)
	base := "/admin/t/acme/users/" + e.acmeAdminID
	wantNoticeRedirect(t, e.srv, op.post(base+"/disabled", url.Values{"disabled": {"true"}}), base, "disabled")
	if ev := lastAdminChange(t, e.srv.Store, "acme", "admin.user.disable"); ev.ActorID != "operator:"+e.operatorID || ev.Subject != e.acmeAdminID {
		t.Errorf("disable audited as actor %q subject %q", ev.ActorID, ev.Subject)
	}
	if p := admin.get("/admin/t/acme/users"); p.status != http.StatusSeeOther || p.header.Get("Location") != e.srv.URL+"/admin/t/acme/login" {
		t.Errorf("disabled admin's next page: status %d to %q, want a redirect to sign in", p.status, p.header.Get("Location"))
	}
	// Enabling again does not bring the old session back: it was ended.
	wantNoticeRedirect(t, e.srv, op.post(base+"/disabled", url.Values{"disabled": {"false"}}), base, "enabled")
	if p := admin.get("/admin/t/acme/users"); p.status != http.StatusSeeOther {
		t.Errorf("re-enabled admin's old session: status %d, want a redirect to sign in", p.status)
	}
}

func TestAdminUserResetSecondFactorAsksEnrollment(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	admin := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
	op := adminSignIn(t, e.srv, "/admin", operatorEmail, "")
	op.get("/admin/t/acme/users/" + e.acmeAdminID)
	base := "/admin/t/acme/users/" + e.acmeAdminID
	wantNoticeRedirect(t, e.srv, op.post(base+"/second-factor/reset", nil), base, "second_factor")
	if ev := lastAdminChange(t, e.srv.Store, "acme", "admin.user.reset_mfa"); ev.ActorID != "operator:"+e.operatorID || ev.Subject != e.acmeAdminID {
		t.Errorf("reset audited as actor %q subject %q", ev.ActorID, ev.Subject)
	}
	if p := admin.get("/admin/t/acme/"); p.status != http.StatusSeeOther {
		t.Errorf("after the reset, the admin's old session: status %d, want a redirect to sign in", p.status)
	}
	// The next sign-in shows the enrollment page (adminSignIn fails
	// otherwise) and a new key: the lost authenticator opens nothing.
	e.srv.Clock.Advance(30 * time.Second)
	again := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
	if again.totpKey == admin.totpKey {
		t.Error("enrollment after the reset showed the old key")
	}
}

func TestAdminUserOperators(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	ctx := context.Background()
	op := adminSignIn(t, e.srv, "/admin", operatorEmail, "")
	list := op.get("/admin/operators")
	if list.status != http.StatusOK || !strings.Contains(list.body, operatorEmail) {
		t.Fatalf("operators page: status %d: %s", list.status, list.body)
	}
	if p := op.post("/admin/operators", url.Values{"email": {"ops2@example.org"}}); p.status != http.StatusBadRequest ||
		!strings.Contains(p.body, "an admin needs a password") || !strings.Contains(p.body, "ops2@example.org") {
		t.Errorf("operator without a password: status %d: %s", p.status, p.body)
	}
	wantNoticeRedirect(t, e.srv, op.post("/admin/operators", url.Values{"email": {"ops2@example.org"}, "password": {adminPassword}}),
		"/admin/operators", "operator_created")
	ops, err := e.srv.Store.ListUsers(ctx, storage.OperatorRealm)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ops, func(u storage.User) bool { return u.Email == "ops2@example.org" })
	if i < 0 || !ops[i].Admin || ops[i].Disabled {
		t.Fatalf("operators after create: %+v", ops)
	}
	second := ops[i]
	if ev := lastAdminChange(t, e.srv.Store, storage.OperatorRealm, "admin.user.create"); ev.ActorID != "operator:"+e.operatorID || ev.Subject != second.ID {
		t.Errorf("create audited as actor %q subject %q", ev.ActorID, ev.Subject)
	}
	if p := op.post("/admin/operators", url.Values{"email": {"ops2@example.org"}, "password": {adminPassword}}); p.status != http.StatusBadRequest ||
		!strings.Contains(p.body, "An operator with this email exists already") {
		t.Errorf("operator added twice: status %d: %s", p.status, p.body)
	}

	// The new operator signs in, enrolling a second factor, until disabled.
	e.srv.Clock.Advance(30 * time.Second)
	secondBrowser := adminSignIn(t, e.srv, "/admin", "ops2@example.org", "")
	op.get("/admin/operators")
	wantNoticeRedirect(t, e.srv, op.post("/admin/operators/"+second.ID+"/disabled", url.Values{"disabled": {"true"}}), "/admin/operators", "operator_disabled")
	if u, err := e.srv.Store.GetUser(ctx, storage.OperatorRealm, second.ID); err != nil || !u.Disabled {
		t.Errorf("operator after disable: %+v, %v", u, err)
	}
	if ev := lastAdminChange(t, e.srv.Store, storage.OperatorRealm, "admin.user.disable"); ev.ActorID != "operator:"+e.operatorID || ev.Subject != second.ID {
		t.Errorf("disable audited as actor %q subject %q", ev.ActorID, ev.Subject)
	}
	if p := secondBrowser.get("/admin/"); p.status != http.StatusSeeOther {
		t.Errorf("disabled operator's next page: status %d, want a redirect to sign in", p.status)
	}
	// An operator cannot disable themselves from the page they are using.
	if p := op.post("/admin/operators/"+e.operatorID+"/disabled", url.Values{"disabled": {"true"}}); p.status != http.StatusBadRequest ||
		!strings.Contains(p.body, "you cannot disable your own account") {
		t.Errorf("operator disabling themselves: status %d: %s", p.status, p.body)
	}
	wantNoticeRedirect(t, e.srv, op.post("/admin/operators/"+second.ID+"/disabled", url.Values{"disabled": {"false"}}), "/admin/operators", "operator_enabled")
	if u, err := e.srv.Store.GetUser(ctx, storage.OperatorRealm, second.ID); err != nil || u.Disabled {
		t.Errorf("operator after enable: %+v, %v", u, err)
	}
}
