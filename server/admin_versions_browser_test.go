package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/smartauth/smartauth/server/browsertest"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
)

// TestAdminStaleSettingsInBrowser: an admin in Chromium saves settings from
// a page opened before another admin's change; the browser shows that
// nothing was saved and the settings as they now are, and saving again
// from there goes through.
func TestAdminStaleSettingsInBrowser(t *testing.T) {
	tab := browsertest.New(t)
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	ctx := context.Background()
	adminSignInInBrowser(t, tab, e.srv, "/admin/t/acme", tenantAdminEmail)
	tab.Navigate(e.srv.URL + "/admin/t/acme/settings")

	tn, err := e.srv.Store.GetTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Manage.UpdateTenant(ctx, manage.TenantUpdate{ID: "acme", Name: "Renamed elsewhere", FHIRBaseURLs: tn.FHIRBaseURLs,
		Version: tn.Version}, manage.Actor{ID: "another admin"}); err != nil {
		t.Fatal(err)
	}

	save := chromedp.Click(chromedp.CSS(`form[action$="/settings"] button[type="submit"]`))
	tab.Do(chromedp.Click(chromedp.CSS("#mfa-required")))
	if status := tab.Navigating(save); status != http.StatusConflict {
		t.Fatalf("saving a stale page: status %d, want 409: %s", status, tab.PageText())
	}
	if got := tab.Text("#page-error"); !strings.Contains(got, "Someone else changed these settings since you opened this page") {
		t.Errorf("the page says %q", got)
	}
	if name := browsertest.Eval[string](tab, `document.getElementById("name").value`); name != "Renamed elsewhere" {
		t.Errorf("the name field shows %q, want the name saved meanwhile", name)
	}
	if got, err := e.srv.Store.GetTenant(ctx, "acme"); err != nil || got.Policy.MFARequired || got.Name != "Renamed elsewhere" {
		t.Fatalf("the stale page changed the tenant: %+v, %v", got, err)
	}

	tab.Do(chromedp.Click(chromedp.CSS("#mfa-required")))
	if status := tab.Navigating(save); status != http.StatusOK {
		t.Fatalf("saving again: status %d: %s", status, tab.PageText())
	}
	if got := tab.Text(".notice"); !strings.Contains(got, "Settings saved.") {
		t.Errorf("after saving again the page says %q", got)
	}
	if got, err := e.srv.Store.GetTenant(ctx, "acme"); err != nil || !got.Policy.MFARequired || got.Name != "Renamed elsewhere" {
		t.Fatalf("after saving again: %+v, %v", got, err)
	}
}
