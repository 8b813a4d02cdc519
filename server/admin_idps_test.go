package server_test

import (
	"context"
	"errors"
	"fmt"
	"html"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/smartauth/smartauth/federation/oidctest"
	"github.com/smartauth/smartauth/server"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// Client secrets typed into the identity-provider forms; no page, audit
// event or log line may repeat them.
const (
	idpFirstSecret  = "first-upstream-secret-4Kq9"
	idpSecondSecret = "second-upstream-secret-7Zx2"
)

// idpAddForm is a valid add form for an OpenID provider at issuer.
func idpAddForm(issuer string) url.Values {
	return url.Values{
		"id": {"corp"}, "display_name": {"Corporate sign-in"}, "type": {"oidc"}, "issuer": {issuer},
		"client_id": {"smartauth-acme"}, "client_secret": {idpFirstSecret},
		"domains":      {"corp.example\n*.staff.example"},
		"tenant_claim": {"custom:tenant_id"}, "fhir_user_claim": {"fhirUser"}, "groups_claim": {"groups"},
		"group_roles":     {"Doctors=Attending physician\nNurses=Ward nurse"},
		"federation_only": {"on"},
	}
}

// noSecretIn fails the test when text holds a typed client secret.
func noSecretIn(t *testing.T, where, text string) {
	t.Helper()
	for _, s := range []string{idpFirstSecret, idpSecondSecret} {
		if strings.Contains(text, s) {
			t.Errorf("%s shows a client secret", where)
		}
	}
}

// openIdPSecret returns the stored client secret of acme's provider corp.
func openIdPSecret(t *testing.T, srv *servertest.Server) string {
	t.Helper()
	p, err := srv.Store.GetIdentityProvider(context.Background(), "acme", "corp")
	if err != nil {
		t.Fatal(err)
	}
	secret, err := manage.OpenIdentityProviderSecret(srv.Sealer, p)
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

func TestAdminIdPActions(t *testing.T) {
	for _, backend := range servertest.Backends() {
		t.Run(backend.Name, func(t *testing.T) {
			e := newAdminEnv(t, backend.Open(t))
			ctx := context.Background()
			store := e.srv.Store
			up := oidctest.Start(t, oidctest.Options{})
			b := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
			var pages []string
			get := func(path string) authzPage {
				t.Helper()
				p := b.get(path)
				pages = append(pages, p.body)
				return p
			}
			post := func(path string, form url.Values) authzPage {
				t.Helper()
				p := b.post(path, form)
				pages = append(pages, p.body)
				return p
			}
			get("/admin/t/acme/idps")

			wantNoticeRedirect(t, e.srv, post("/admin/t/acme/idps", idpAddForm(up.Issuer())), "/admin/t/acme/idps/corp", "added")
			p, err := store.GetIdentityProvider(ctx, "acme", "corp")
			if err != nil {
				t.Fatal(err)
			}
			wantMapping := storage.ClaimMapping{TenantClaim: "custom:tenant_id", FHIRUserClaim: "fhirUser", GroupsClaim: "groups",
				GroupRoles: map[string]string{"Doctors": "Attending physician", "Nurses": "Ward nurse"}}
			if p.Type != storage.IdentityProviderOIDC || p.DisplayName != "Corporate sign-in" || p.Settings.Issuer != up.Issuer() ||
				p.Settings.ClientID != "smartauth-acme" || !p.FederationOnly || p.ClaimMapping.TenantClaim != wantMapping.TenantClaim ||
				p.ClaimMapping.FHIRUserClaim != wantMapping.FHIRUserClaim || p.ClaimMapping.GroupsClaim != wantMapping.GroupsClaim ||
				!maps.Equal(p.ClaimMapping.GroupRoles, wantMapping.GroupRoles) {
				t.Fatalf("stored provider %+v", p)
			}
			if got := openIdPSecret(t, e.srv); got != idpFirstSecret {
				t.Errorf("stored secret opens to %q", got)
			}
			routes, err := store.ListDomainRoutes(ctx, "acme")
			if err != nil {
				t.Fatal(err)
			}
			wantRoutes := []string{"corp.example/false/corp", "staff.example/true/corp"}
			if got := routeKeys(routes); !slices.Equal(got, wantRoutes) {
				t.Errorf("routes %v, want %v", got, wantRoutes)
			}
			if ev := lastAdminChange(t, store, "acme", "admin.idp.add"); ev.ActorID != e.acmeAdminID || ev.Subject != "corp" {
				t.Errorf("add audited as actor %q subject %q", ev.ActorID, ev.Subject)
			}
			list := get("/admin/t/acme/idps")
			for _, want := range []string{"Corporate sign-in", "<code>corp.example</code>", "<code>*.staff.example</code>", "secret set", up.Issuer()} {
				if !strings.Contains(list.body, want) {
					t.Errorf("providers list lacks %q", want)
				}
			}
			page := get("/admin/t/acme/idps/corp?notice=added")
			if !strings.Contains(page.body, "The identity provider was added.") || !strings.Contains(page.body, "Doctors=Attending physician") {
				t.Errorf("provider page lacks the notice or the group roles: %s", page.body)
			}

			// An edit with the secret left blank keeps the stored one.
			edit := idpAddForm(up.Issuer())
			edit.Del("domains")
			edit.Set("client_secret", "")
			edit.Set("display_name", "Corporate")
			edit.Set("scopes", "email groups")
			wantNoticeRedirect(t, e.srv, post("/admin/t/acme/idps/corp", edit), "/admin/t/acme/idps/corp", "updated")
			p, err = store.GetIdentityProvider(ctx, "acme", "corp")
			if err != nil {
				t.Fatal(err)
			}
			if p.DisplayName != "Corporate" || !slices.Equal(p.Settings.Scopes, []string{"email", "groups"}) {
				t.Errorf("provider after edit %+v", p)
			}
			if got := openIdPSecret(t, e.srv); got != idpFirstSecret {
				t.Errorf("a blank secret field changed the secret to %q", got)
			}
			ev := lastAdminChange(t, store, "acme", "admin.idp.update")
			if ev.ActorID != e.acmeAdminID || ev.Details["display_name"] != "Corporate" || ev.Details["client_secret"] != "" {
				t.Errorf("edit audited as %+v", ev)
			}
			// A typed secret replaces it, and the trail says so without it.
			edit.Set("client_secret", idpSecondSecret)
			wantNoticeRedirect(t, e.srv, post("/admin/t/acme/idps/corp", edit), "/admin/t/acme/idps/corp", "updated")
			if got := openIdPSecret(t, e.srv); got != idpSecondSecret {
				t.Errorf("secret after replacing it opens to %q", got)
			}
			if ev := lastAdminChange(t, store, "acme", "admin.idp.update"); ev.Details["client_secret"] != "replaced" {
				t.Errorf("secret change audited as %v", ev.Details)
			}

			// Domain routes, added and removed on the provider's page.
			wantNoticeRedirect(t, e.srv, post("/admin/t/acme/idps/corp/routes", url.Values{"domain": {"Clinic.Example"}, "include_subdomains": {"on"}}),
				"/admin/t/acme/idps/corp", "route_added")
			if ev := lastAdminChange(t, store, "acme", "admin.idp.route.add"); ev.ActorID != e.acmeAdminID || ev.Details["domain"] != "clinic.example" {
				t.Errorf("route add audited as %+v", ev)
			}
			wantNoticeRedirect(t, e.srv, post("/admin/t/acme/idps/corp/routes/delete", url.Values{"domain": {"corp.example"}}),
				"/admin/t/acme/idps/corp", "route_deleted")
			if ev := lastAdminChange(t, store, "acme", "admin.idp.route.delete"); ev.ActorID != e.acmeAdminID || ev.Details["domain"] != "corp.example" {
				t.Errorf("route delete audited as %+v", ev)
			}
			if routes, err = store.ListDomainRoutes(ctx, "acme"); err != nil {
				t.Fatal(err)
			}
			wantRoutes = []string{"clinic.example/true/corp", "staff.example/true/corp"}
			if got := routeKeys(routes); !slices.Equal(got, wantRoutes) {
				t.Errorf("routes %v, want %v", got, wantRoutes)
			}
			if page := get("/admin/t/acme/idps/corp"); !strings.Contains(page.body, "Remove clinic.example") || strings.Contains(page.body, "Remove corp.example") {
				t.Errorf("provider page's routes are not the stored ones: %s", page.body)
			}

			// Deleting asks first, then removes the provider and its routes.
			if confirm := get("/admin/t/acme/idps/corp/delete"); confirm.status != http.StatusOK || !strings.Contains(confirm.body, "the identity provider corp") {
				t.Fatalf("delete confirmation: status %d: %s", confirm.status, confirm.body)
			}
			if _, err := store.GetIdentityProvider(ctx, "acme", "corp"); err != nil {
				t.Fatal("the confirmation page deleted the provider")
			}
			wantNoticeRedirect(t, e.srv, post("/admin/t/acme/idps/corp/delete", nil), "/admin/t/acme/idps", "deleted")
			if _, err := store.GetIdentityProvider(ctx, "acme", "corp"); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("provider after delete: %v, want not found", err)
			}
			if routes, err := store.ListDomainRoutes(ctx, "acme"); err != nil || len(routes) != 0 {
				t.Errorf("routes after delete: %v, %v", routes, err)
			}
			if ev := lastAdminChange(t, store, "acme", "admin.idp.delete"); ev.ActorID != e.acmeAdminID || ev.Subject != "corp" {
				t.Errorf("delete audited as %+v", ev)
			}

			for i, body := range pages {
				noSecretIn(t, fmt.Sprintf("page %d", i), body)
			}
			events, err := store.ListAudit(ctx, "acme", storage.AuditFilter{})
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range events {
				noSecretIn(t, "audit event "+ev.Type, fmt.Sprint(ev.Details))
			}
			noSecretIn(t, "the log", e.srv.Logs())
		})
	}
}

// routeKeys writes routes as "domain/subdomains/provider".
func routeKeys(rs []storage.DomainRoute) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s/%v/%s", r.Domain, r.IncludeSubdomains, r.ProviderID))
	}
	return out
}

func TestAdminIdPValidation(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	ctx := context.Background()
	up := oidctest.Start(t, oidctest.Options{})
	b := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
	b.get("/admin/t/acme/idps")
	wantNoticeRedirect(t, e.srv, b.post("/admin/t/acme/idps", idpAddForm(up.Issuer())), "/admin/t/acme/idps/corp", "added")
	before, err := e.srv.Store.ListAudit(ctx, "acme", storage.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	with := func(edit func(url.Values)) url.Values {
		f := idpAddForm(up.Issuer())
		f.Set("id", "second")
		f.Set("domains", "second.example")
		edit(f)
		return f
	}
	for _, tc := range []struct {
		name, path string
		form       url.Values
		// message is part of the error shown; kept is typed text the page must keep.
		message, kept string
	}{
		{"id", "/admin/t/acme/idps", with(func(f url.Values) { f.Set("id", "Not An Id") }),
			"must be 1-64 lower-case letters", "smartauth-acme"},
		{"issuer", "/admin/t/acme/idps", with(func(f url.Values) { f.Set("issuer", "http://idp.example.org") }),
			"must use https", "second.example"},
		{"cognito region", "/admin/t/acme/idps", with(func(f url.Values) { f.Set("type", "cognito"); f.Set("region", "mars-1") }),
			"is not an AWS region", "mars-1"},
		{"okta org", "/admin/t/acme/idps", with(func(f url.Values) { f.Set("type", "okta"); f.Set("org_url", "clinic.okta.com") }),
			"must be https://", "clinic.okta.com"},
		{"group role", "/admin/t/acme/idps", with(func(f url.Values) { f.Set("group_roles", "Doctors") }),
			"must be group=role label", "second.example"},
		{"bad domain", "/admin/t/acme/idps", with(func(f url.Values) { f.Set("domains", "not a domain") }),
			"not a valid email domain", "not a domain"},
		{"taken id", "/admin/t/acme/idps", with(func(f url.Values) { f.Set("id", "corp") }),
			"taken already", "second.example"},
		{"edit without client id", "/admin/t/acme/idps/corp", with(func(f url.Values) { f.Del("domains"); f.Set("client_id", "") }),
			"client id is required", "Corporate sign-in"},
		{"routed domain", "/admin/t/acme/idps/corp/routes", url.Values{"domain": {"corp.example"}},
			"That domain is routed already", "corp.example"},
		{"route to no domain", "/admin/t/acme/idps/corp/routes", url.Values{"domain": {"intranet"}},
			"not a valid email domain", "intranet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := b.post(tc.path, tc.form)
			if p.status != http.StatusBadRequest || !strings.Contains(html.UnescapeString(p.body), tc.message) {
				t.Fatalf("status %d, want 400 with %q: %s", p.status, tc.message, p.body)
			}
			if !strings.Contains(p.body, `role="alert"`) {
				t.Error("the message is not marked as an alert")
			}
			if !strings.Contains(p.body, tc.kept) {
				t.Errorf("the page lost the typed %q", tc.kept)
			}
			noSecretIn(t, "the page", p.body)
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
	ps, err := e.srv.Store.ListIdentityProviders(ctx, "acme")
	if err != nil || len(ps) != 1 || ps[0].Settings.ClientID != "smartauth-acme" {
		t.Errorf("providers after refusals: %+v, %v", ps, err)
	}
	if got := openIdPSecret(t, e.srv); got != idpFirstSecret {
		t.Errorf("a refused edit changed the secret to %q", got)
	}
}

func TestAdminIdPDiscovery(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	ctx := context.Background()
	up := oidctest.Start(t, oidctest.Options{Shape: oidctest.ShapeOkta})
	missing := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(missing.Close)
	// A document that names another issuer than the one it was fetched for.
	imposter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"issuer":"https://elsewhere.example","authorization_endpoint":"https://elsewhere.example/a","token_endpoint":"https://elsewhere.example/t","jwks_uri":"https://elsewhere.example/k"}`)
	}))
	t.Cleanup(imposter.Close)

	cases := []struct {
		id, issuer string
		// want are parts of the page; wantError says whether it reports a failure.
		want      []string
		wantError bool
	}{
		{"working", up.Issuer(), []string{"Discovery works.", "<code>" + up.Issuer() + "</code>", "Token endpoint"}, false},
		{"missing", missing.URL, []string{"discovery at " + missing.URL + "/.well-known/openid-configuration failed", "404"}, true},
		{"imposter", imposter.URL, []string{"discovery at " + imposter.URL + "/.well-known/openid-configuration failed", "names another issuer"}, true},
	}
	for _, tc := range cases {
		if _, _, err := e.srv.Manage.AddIdentityProvider(ctx, "acme", manage.IdentityProviderInput{ID: tc.id, Type: storage.IdentityProviderOIDC,
			Settings: storage.IdentityProviderSettings{Issuer: tc.issuer, ClientID: "smartauth-acme"}}, manage.Actor{ID: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	b := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
	for _, tc := range cases {
		t.Run(tc.id, func(t *testing.T) {
			b.get("/admin/t/acme/idps/" + tc.id)
			p := b.post("/admin/t/acme/idps/"+tc.id+"/discovery", nil)
			if p.status != http.StatusOK {
				t.Fatalf("status %d: %s", p.status, p.body)
			}
			body := html.UnescapeString(p.body)
			for _, want := range tc.want {
				if !strings.Contains(body, want) {
					t.Errorf("page lacks %q: %s", want, p.body)
				}
			}
			if got := strings.Contains(p.body, `id="discovery-error"`); got != tc.wantError {
				t.Errorf("page reports a failure: %v, want %v", got, tc.wantError)
			}
		})
	}
	// Only a post tests discovery: a link cannot make the server fetch.
	if p := b.get("/admin/t/acme/idps/working/discovery"); p.status == http.StatusOK {
		t.Error("discovery answered a GET")
	}
}

// TestIdPDiscoveryRefusesPrivateAddresses: unless the operator allows
// private networks for identity providers, a tenant's administrator cannot
// make the server fetch from loopback with a discovery test, on the page or
// through the API, and what such an address answers is never shown.
func TestIdPDiscoveryRefusesPrivateAddresses(t *testing.T) {
	srv := servertest.StartConfig(t, servertest.OpenSQLite(t), func(c *server.Config) { c.AllowPrivateIdP = false })
	srv.Tenant(t, "acme")
	ctx := context.Background()
	if _, err := srv.Manage.CreateAdmin(ctx, "acme", tenantAdminEmail, adminPassword, manage.Actor{ID: "test"}); err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int32
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "internal-only answer", http.StatusTeapot)
	}))
	t.Cleanup(internal.Close)
	up := oidctest.Start(t, oidctest.Options{Shape: oidctest.ShapeOkta})
	for id, issuer := range map[string]string{"internal": internal.URL, "provider": up.Issuer()} {
		if _, _, err := srv.Manage.AddIdentityProvider(ctx, "acme", manage.IdentityProviderInput{ID: id, Type: storage.IdentityProviderOIDC,
			Settings: storage.IdentityProviderSettings{Issuer: issuer, ClientID: "smartauth-acme"}}, manage.Actor{ID: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(t *testing.T, where, text string) {
		t.Helper()
		if !strings.Contains(text, "not public") || strings.Contains(text, "internal-only answer") || strings.Contains(text, "418") {
			t.Errorf("%s: want the private address refused, and nothing it says: %s", where, text)
		}
	}

	b := adminSignIn(t, srv, "/admin/t/acme", tenantAdminEmail, "")
	for _, id := range []string{"internal", "provider"} {
		b.get("/admin/t/acme/idps/" + id)
		p := b.post("/admin/t/acme/idps/"+id+"/discovery", nil)
		if p.status != http.StatusOK || !strings.Contains(p.body, `id="discovery-error"`) {
			t.Fatalf("page discovery of %s: %d, want a reported failure: %s", id, p.status, p.body)
		}
		refused(t, "page discovery of "+id, html.UnescapeString(p.body))
	}

	id, secret := apiClient(t, srv, "acme")
	tok := apiToken(t, tokenEndpoint(srv, "acme"), id, secret, server.AdminScope)
	r := apiCall(t, "POST", srv.URL+"/admin/api/v1/tenants/acme/idps/internal/discovery-test", tok, "", "")
	apiWant(t, "API discovery of a private address", r, http.StatusOK, "")
	if m := r.object(t); m["ok"] != false {
		t.Errorf("API discovery of a private address: %s", r.body)
	}
	refused(t, "API discovery", string(r.body))
	if hits.Load() != 0 {
		t.Errorf("the server on loopback was reached %d times", hits.Load())
	}
}

func TestAdminIdPIsolation(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	ctx := context.Background()
	up := oidctest.Start(t, oidctest.Options{})
	if _, _, err := e.srv.Manage.AddIdentityProvider(ctx, "other", manage.IdentityProviderInput{ID: "theirs", Type: storage.IdentityProviderOIDC,
		Settings: storage.IdentityProviderSettings{Issuer: up.Issuer(), ClientID: "smartauth-other"},
		Domains:  []string{"other.example"}}, manage.Actor{ID: "test"}); err != nil {
		t.Fatal(err)
	}
	b := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
	for _, path := range []string{"/admin/t/other/idps", "/admin/t/other/idps/theirs"} {
		p := b.get(path)
		if p.status != http.StatusSeeOther || p.header.Get("Location") != e.srv.URL+"/admin/t/other/login" {
			t.Errorf("acme's admin at %s: status %d to %q, want a redirect to other's sign-in", path, p.status, p.header.Get("Location"))
		}
	}
	for _, tc := range []struct {
		path   string
		form   url.Values
		status int
	}{
		{"/admin/t/other/idps", idpAddForm(up.Issuer()), http.StatusForbidden},
		{"/admin/t/other/idps/theirs/delete", nil, http.StatusForbidden},
		{"/admin/t/other/idps/theirs/routes/delete", url.Values{"domain": {"other.example"}}, http.StatusForbidden},
		// Through acme's own pages, other's provider and routes are nothing.
		{"/admin/t/acme/idps/theirs/delete", nil, http.StatusNotFound},
		{"/admin/t/acme/idps/theirs/routes/delete", url.Values{"domain": {"other.example"}}, http.StatusNotFound},
		{"/admin/t/acme/idps/theirs/discovery", nil, http.StatusNotFound},
		{"/admin/t/acme/idps/theirs/routes", url.Values{"domain": {"planted.example"}}, http.StatusNotFound},
	} {
		if p := b.post(tc.path, tc.form); p.status != tc.status {
			t.Errorf("acme's admin posting to %s: status %d, want %d", tc.path, p.status, tc.status)
		}
	}
	if p := b.get("/admin/t/acme/idps/theirs"); p.status != http.StatusNotFound {
		t.Errorf("other's provider through acme's pages: status %d, want 404", p.status)
	}
	if _, err := e.srv.Store.GetIdentityProvider(ctx, "other", "theirs"); err != nil {
		t.Errorf("other's provider after acme's attempts: %v", err)
	}
	routes, err := e.srv.Store.ListDomainRoutes(ctx, "other")
	if err != nil || !slices.Equal(routeKeys(routes), []string{"other.example/false/theirs"}) {
		t.Errorf("other's routes after acme's attempts: %v, %v", routeKeys(routes), err)
	}
	if ps, err := e.srv.Store.ListIdentityProviders(ctx, "acme"); err != nil || len(ps) != 0 {
		t.Errorf("acme's providers: %v, %v", ps, err)
	}
}
