package server_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// TestHomeLinks: the home page links to the admin pages and, once the demo
// tenant and its app exist, to the demo app on that tenant.
func TestHomeLinks(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		home := func() string {
			t.Helper()
			resp, err := http.Get(srv.URL + "/")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /: %d", resp.StatusCode)
			}
			return html.UnescapeString(string(body))
		}
		if body := home(); !strings.Contains(body, `<a href="/admin/" id="admin-link">`) || strings.Contains(body, "demo-app-link") {
			t.Errorf("home page without a demo: want the admin link only\n%s", body)
		}
		tn := srv.Tenant(t, "demo")
		if _, _, err := srv.Manage.CreateClient(context.Background(), manage.ClientInput{TenantID: "demo", ID: "demo-app", Name: "Demo app",
			Type: storage.ClientPublic, RedirectURIs: []string{srv.URL + "/demo-app/"}, Scopes: []string{"openid fhirUser"}},
			manage.Actor{ID: "test"}); err != nil {
			t.Fatal(err)
		}
		want := `<a href="/demo-app/?` + url.Values{"iss": {tn.FHIRBaseURLs[0]}, "tenant": {"demo"}}.Encode() + `" id="demo-app-link">`
		if body := home(); !strings.Contains(body, want) || !strings.Contains(body, `id="admin-link"`) {
			t.Errorf("home page with the demo lacks %s\n%s", want, body)
		}
	})
}
