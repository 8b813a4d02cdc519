package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/smartauth/smartauth/server/browsertest"
	"github.com/smartauth/smartauth/server/servertest"
)

// adminSignInInBrowser signs in at an admin area ("/admin" or
// "/admin/t/acme") in Chromium, enrolling an authenticator app as a new
// admin does, and leaves the tab on the area's first page.
func adminSignInInBrowser(t *testing.T, tab *browsertest.Tab, srv *servertest.Server, area, email string) {
	t.Helper()
	tab.Navigate(srv.URL + area + "/login")
	tab.Do(chromedp.SendKeys(chromedp.CSS(`input[name="email"]`), email))
	if status := tab.Navigating(chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), adminPassword+"\n")); status != http.StatusOK {
		t.Fatalf("password step: status %d: %s", status, tab.PageText())
	}
	key := tab.Text("#manual-key")
	if status := tab.Navigating(chromedp.SendKeys(chromedp.CSS(`input[name="code"]`), totpCode(t, key, srv.Clock.Now())+"\n")); status != http.StatusOK {
		t.Fatalf("enrollment: status %d: %s", status, tab.PageText())
	}
	if !strings.Contains(tab.PageText(), "Save your recovery codes") {
		t.Fatalf("no recovery codes after enrollment: %s", tab.PageText())
	}
	if status := tab.Navigating(chromedp.Click(chromedp.CSS("#continue"))); status != http.StatusOK {
		t.Fatalf("continue to the admin pages: status %d", status)
	}
}

// browserFetchStatus fetches a URL from the tab's page with its cookies and
// returns the HTTP status.
func browserFetchStatus(tab *browsertest.Tab, url string) int {
	return browsertest.EvalPromise[int](tab, `fetch(`+jsString(url)+`, {credentials: "include"}).then(r => r.status)`)
}

func jsString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// TestAdminInBrowser: a tenant admin in Chromium reaches neither another
// tenant's pages nor its API; the audit page lists the admin's actions with a
// verified chain, and shows the break once a row is rewritten in the database.
func TestAdminInBrowser(t *testing.T) {
	tab := browsertest.New(t)
	b := tamperableBackends(t)[0]
	e := newAdminEnv(t, b.store)
	adminSignInInBrowser(t, tab, e.srv, "/admin/t/acme", tenantAdminEmail)

	// Another tenant's page sends the browser to that tenant's sign-in.
	tab.Navigate(e.srv.URL + "/admin/t/other/")
	if loc := tab.Location(); loc != e.srv.URL+"/admin/t/other/login" {
		t.Errorf("acme's admin at other's pages ended at %s, want other's sign-in", loc)
	}
	// The browser's cookies are no credential for the admin API.
	tab.Navigate(e.srv.URL + "/admin/t/acme/")
	for _, path := range []string{"/admin/api/v1/tenants/other/clients", "/admin/api/v1/tenants/acme/clients"} {
		if status := browserFetchStatus(tab, e.srv.URL+path); status != http.StatusUnauthorized {
			t.Errorf("fetch %s with the admin's cookies: status %d, want 401", path, status)
		}
	}

	// The audit page shows the sign-in just made, under a verified chain.
	tab.Navigate(e.srv.URL + "/admin/t/acme/audit")
	if got := tab.Text("#chain-status"); !strings.Contains(got, "Chain verified") {
		t.Fatalf("chain status %q, want verified", got)
	}
	events := tab.Text("#audit-events")
	for _, want := range []string{"mfa.enroll", "login.success", "admin.user.create", e.acmeAdminID} {
		if !strings.Contains(events, want) {
			t.Errorf("audit table lacks %q:\n%s", want, events)
		}
	}

	// A row rewritten behind the server's back breaks the chain there, as
	// the whole-trail check the page links to shows.
	b.tamper(t, "acme", 2, "consent.grant")
	if status := tab.Navigating(chromedp.Click(chromedp.CSS("#full-check"))); status != http.StatusOK {
		t.Fatalf("check the whole trail: status %d", status)
	}
	if got := tab.Text("#chain-status"); !strings.Contains(got, "Chain broken at event 2") {
		t.Errorf("after tampering, chain status %q, want broken at event 2", got)
	}
}

// unlabelledFields lists, by id or name, the visible form fields of the
// page that have neither a <label> nor an aria-label.
const unlabelledFields = `Array.from(document.querySelectorAll("input, select, textarea"))
	.filter(f => f.type !== "hidden" && f.labels.length === 0 && !f.getAttribute("aria-label"))
	.map(f => f.id || f.name)`

// TestAdminPagesOnAPhone: every admin page an admin uses is labelled for
// screen readers and keyboard users, and fits a phone's width without
// scrolling sideways.
func TestAdminPagesOnAPhone(t *testing.T) {
	tab := browsertest.New(t)
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	adminSignInInBrowser(t, tab, e.srv, "/admin", operatorEmail)
	tab.Do(chromedp.EmulateViewport(375, 812))
	for _, path := range []string{
		"/admin/", "/admin/operators", "/admin/audit", "/admin/tenants/new",
		"/admin/t/acme/", "/admin/t/acme/settings", "/admin/t/acme/clients", "/admin/t/acme/clients/new",
		"/admin/t/acme/users", "/admin/t/acme/users/" + e.acmeAdminID, "/admin/t/acme/idps", "/admin/t/acme/patients",
		"/admin/t/acme/keys", "/admin/t/acme/consents", "/admin/t/acme/audit",
	} {
		tab.Navigate(e.srv.URL + path)
		if loc := tab.Location(); loc != e.srv.URL+path {
			t.Errorf("%s: ended at %s", path, loc)
			continue
		}
		if missing := browsertest.Eval[[]string](tab, unlabelledFields); len(missing) > 0 {
			t.Errorf("%s: fields without a label: %v", path, missing)
		}
		if width := browsertest.Eval[int](tab, `document.documentElement.scrollWidth`); width > 375 {
			t.Errorf("%s: %d pixels wide on a 375-pixel phone screen", path, width)
		}
	}
}
