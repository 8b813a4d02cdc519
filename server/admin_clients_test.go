package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/smartauth/smartauth/server/clientsecret"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

var (
	shownSecret = regexp.MustCompile(`<code id="client-secret">([^<]+)</code>`)
	shownToken  = regexp.MustCompile(`<code id="registration-token">([^<]+)</code>`)
)

// clientFormValues is the registration form of a valid public SMART app;
// tests change what they need.
func clientFormValues() url.Values {
	return url.Values{
		"name":          {"Growth chart"},
		"type":          {"public"},
		"redirect_uris": {"https://growth.example/callback"},
		"scope":         {"openid", "fhirUser", "launch", "patient/*.rs"},
		"grant_type":    {"authorization_code", "refresh_token"},
		"launch_uri":    {"https://growth.example/launch"},
	}
}

// pageText is a page's body with HTML escapes undone, to find messages in.
func pageText(p authzPage) string { return html.UnescapeString(p.body) }

// auditOf returns the tenant's events of one type.
func auditOf(t *testing.T, srv *servertest.Server, tenantID, typ string) []storage.AuditEvent {
	t.Helper()
	events, err := srv.Store.ListAudit(context.Background(), tenantID, storage.AuditFilter{Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	return events
}

func TestAdminClientLifecycle(t *testing.T) {
	for _, backend := range servertest.Backends() {
		t.Run(backend.Name, func(t *testing.T) {
			e := newAdminEnv(t, backend.Open(t))
			ctx := context.Background()
			admin := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")

			form := admin.get("/admin/t/acme/clients/new")
			if form.status != http.StatusOK {
				t.Fatalf("new client form: status %d", form.status)
			}
			// The scope picker offers what discovery advertises.
			for _, want := range []string{`name="scope" value="patient/*.rs"`, `name="scope" value="launch/patient"`, `name="type" value="confidential-asymmetric"`} {
				if !strings.Contains(pageText(form), want) {
					t.Errorf("new client form lacks %s", want)
				}
			}

			// Register a confidential client: its secret is on this response only.
			f := clientFormValues()
			f.Set("client_id", "billing")
			f.Set("name", "Billing")
			f.Set("type", "confidential-symmetric")
			f.Set("redirect_uris", "https://billing.example/cb\r\nhttps://billing.example/cb2\r\n")
			f["scope"] = []string{"openid", "fhirUser", "user/*.rs"}
			f.Set("extra_scopes", "patient/Observation.rs?category=laboratory")
			f.Set("access_token_ttl", "15m")
			f.Set("can_create_launch", "yes")
			created := admin.post("/admin/t/acme/clients", f)
			m := shownSecret.FindStringSubmatch(created.body)
			if created.status != http.StatusOK || m == nil {
				t.Fatalf("register: status %d, want 200 with the secret: %s", created.status, created.body)
			}
			secret := m[1]
			if cc := created.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("the secret's page has Cache-Control %q, want no-store", cc)
			}
			c, err := e.srv.Store.GetClient(ctx, "acme", "billing")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(c.SecretHash, clientsecret.Digest(secret)) || bytes.Contains(c.SecretHash, []byte(secret)) {
				t.Errorf("stored secret is not the digest of the one shown")
			}
			if c.Name != "Billing" || c.Type != storage.ClientConfidentialSymmetric || c.AccessTokenTTL != 15*time.Minute || !c.CanCreateLaunch ||
				!slices.Equal(c.RedirectURIs, []string{"https://billing.example/cb", "https://billing.example/cb2"}) ||
				!sameSet(c.Scopes, []string{"openid", "fhirUser", "user/*.rs", "patient/Observation.rs?category=laboratory"}) ||
				c.LaunchURI != "https://growth.example/launch" {
				t.Errorf("stored client %+v differs from the form", c)
			}
			for _, path := range []string{"/admin/t/acme/clients", "/admin/t/acme/clients/billing/edit"} {
				p := admin.get(path)
				if p.status != http.StatusOK || strings.Contains(p.body, secret) {
					t.Errorf("%s: status %d; the secret must be shown only once", path, p.status)
				}
			}
			list := admin.get("/admin/t/acme/clients")
			for _, want := range []string{"/admin/t/acme/clients/billing/edit", "<code>billing</code>", "https://billing.example/cb2", "/admin/t/acme/clients/billing/launch"} {
				if !strings.Contains(list.body, want) {
					t.Errorf("client list lacks %s", want)
				}
			}

			// The edit form shows what is stored, granular scope in the free text.
			edit := pageText(admin.get("/admin/t/acme/clients/billing/edit"))
			for _, want := range []string{`value="Billing"`, `value="user/*.rs" checked`, `value="patient/Observation.rs?category=laboratory"`, `value="15m"`, `id="rotate"`} {
				if !strings.Contains(edit, want) {
					t.Errorf("edit form lacks %s", want)
				}
			}
			f = clientFormValues()
			f.Set("name", "Billing v2")
			f.Set("type", "confidential-symmetric")
			f.Set("redirect_uris", "https://billing.example/cb")
			f["scope"] = []string{"openid", "user/*.rs"}
			f.Set("client_id", "renamed") // ignored: the path names the client
			saved := admin.post("/admin/t/acme/clients/billing/edit", f)
			if saved.status != http.StatusSeeOther || saved.header.Get("Location") != e.srv.URL+"/admin/t/acme/clients/billing/edit?notice=saved" {
				t.Fatalf("save: status %d to %q: %s", saved.status, saved.header.Get("Location"), saved.body)
			}
			c2, err := e.srv.Store.GetClient(ctx, "acme", "billing")
			if err != nil {
				t.Fatal(err)
			}
			if c2.Name != "Billing v2" || !sameSet(c2.Scopes, []string{"openid", "user/*.rs"}) || len(c2.RedirectURIs) != 1 ||
				c2.AccessTokenTTL != 0 || c2.CanCreateLaunch || !bytes.Equal(c2.SecretHash, c.SecretHash) {
				t.Errorf("after the edit: %+v", c2)
			}
			if _, err := e.srv.Store.GetClient(ctx, "acme", "renamed"); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("the edit form renamed the client: %v", err)
			}
			if p := admin.get("/admin/t/acme/clients/billing/edit?notice=saved"); !strings.Contains(p.body, "Client saved.") {
				t.Error("no notice after saving")
			}
			if p := admin.get("/admin/t/acme/clients/billing/edit?notice=%3Cb%3Eforged"); strings.Contains(p.body, "forged") {
				t.Error("the page shows text from the query")
			}

			// Rotation shows a new secret once; the old one no longer matches.
			rotated := admin.post("/admin/t/acme/clients/billing/secret", nil)
			m = shownSecret.FindStringSubmatch(rotated.body)
			if rotated.status != http.StatusOK || m == nil || m[1] == secret {
				t.Fatalf("rotate: status %d, want a new secret: %s", rotated.status, rotated.body)
			}
			c3, err := e.srv.Store.GetClient(ctx, "acme", "billing")
			if err != nil {
				t.Fatal(err)
			}
			if !clientsecret.Matches(c3.SecretHash, m[1]) || clientsecret.Matches(c3.SecretHash, secret) {
				t.Error("after rotation the stored digest is not the new secret's alone")
			}

			// Deleting needs the confirmation ticked.
			if p := admin.post("/admin/t/acme/clients/billing/delete", nil); p.status != http.StatusBadRequest || !strings.Contains(p.body, "Tick the confirmation") {
				t.Errorf("delete without confirmation: status %d", p.status)
			}
			if _, err := e.srv.Store.GetClient(ctx, "acme", "billing"); err != nil {
				t.Fatalf("an unconfirmed delete removed the client: %v", err)
			}
			deleted := admin.post("/admin/t/acme/clients/billing/delete", url.Values{"confirm": {"yes"}})
			if deleted.status != http.StatusSeeOther || deleted.header.Get("Location") != e.srv.URL+"/admin/t/acme/clients?notice=deleted" {
				t.Fatalf("delete: status %d to %q", deleted.status, deleted.header.Get("Location"))
			}
			if _, err := e.srv.Store.GetClient(ctx, "acme", "billing"); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("after delete: %v, want not found", err)
			}
			if p := admin.get("/admin/t/acme/clients/billing/edit"); p.status != http.StatusNotFound {
				t.Errorf("a deleted client's page: status %d, want 404", p.status)
			}

			// Each change is in the trail, done by this admin.
			for _, typ := range []string{"admin.client.create", "admin.client.update", "admin.client.rotate_secret", "admin.client.delete"} {
				events := auditOf(t, e.srv, "acme", typ)
				if len(events) != 1 || events[0].ActorID != e.acmeAdminID || events[0].Details["client_id"] != "billing" || events[0].SourceIP == "" {
					t.Errorf("%s events %+v, want one by %s for billing with its source address", typ, events, e.acmeAdminID)
				}
			}
		})
	}
}

func TestAdminClientPublicRedirectsToItsPage(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	admin := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
	p := admin.post("/admin/t/acme/clients", clientFormValues())
	loc, err := url.Parse(p.header.Get("Location"))
	if p.status != http.StatusSeeOther || err != nil || loc.Query().Get("notice") != "created" {
		t.Fatalf("register a public client: status %d to %q, want a redirect with a notice", p.status, p.header.Get("Location"))
	}
	// The id was generated, and a public client has no secret to show.
	id := strings.TrimSuffix(strings.TrimPrefix(loc.Path, "/admin/t/acme/clients/"), "/edit")
	c, err := e.srv.Store.GetClient(context.Background(), "acme", id)
	if err != nil {
		t.Fatalf("generated client %q: %v", id, err)
	}
	if c.Type != storage.ClientPublic || len(c.SecretHash) != 0 {
		t.Errorf("public client stored as %s with a secret digest of %d bytes", c.Type, len(c.SecretHash))
	}
	page := admin.get(loc.RequestURI())
	if !strings.Contains(page.body, "Client registered.") || strings.Contains(page.body, `id="rotate"`) {
		t.Error("a public client's page lacks the notice or offers a secret rotation")
	}
}

func TestAdminClientValidation(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	ctx := context.Background()
	if _, _, err := e.srv.Manage.CreateClient(ctx, manage.ClientInput{TenantID: "acme", ID: "taken", Name: "Taken", Type: storage.ClientPublic,
		RedirectURIs: []string{"https://taken.example/cb"}, Scopes: []string{"openid"}}, manage.Actor{ID: "test"}); err != nil {
		t.Fatal(err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privateJWKS, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: priv, KeyID: "k1", Algorithm: "ES384", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	admin := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")

	for _, tc := range []struct {
		name string
		edit func(url.Values)
		want string
	}{
		{"http redirect URI off loopback", func(f url.Values) { f.Set("redirect_uris", "http://growth.example/callback") },
			`redirect URI "http://growth.example/callback" must use https (http only on loopback)`},
		{"redirect URI with a wildcard", func(f url.Values) { f.Set("redirect_uris", "https://*.growth.example/cb") }, "must not contain wildcards"},
		{"JWKS that is not JSON", func(f url.Values) { f.Set("type", "confidential-asymmetric"); f.Set("jwks", "{not json") },
			"inline JWKS is not a JSON Web Key Set"},
		{"JWKS with a private key", func(f url.Values) { f.Set("type", "confidential-asymmetric"); f.Set("jwks", string(privateJWKS)) },
			"inline JWKS key 1 holds a private key"},
		{"JWKS URL not https", func(f url.Values) {
			f.Set("type", "confidential-asymmetric")
			f.Set("jwks_url", "http://growth.example/jwks")
		}, `JWKS URL "http://growth.example/jwks" must be an absolute https URL`},
		{"keys for a client without keys", func(f url.Values) { f.Set("jwks_url", "https://growth.example/jwks") }, "only a confidential-asymmetric client has a JWKS"},
		{"scope outside the SMART grammar", func(f url.Values) { f.Set("extra_scopes", "patient/Observation.xyz") }, `invalid scope "patient/Observation.xyz"`},
		{"no scope", func(f url.Values) { f.Del("scope") }, "at least one allowed scope is required"},
		{"public client with client credentials", func(f url.Values) { f.Add("grant_type", "client_credentials") },
			"a public client cannot use client_credentials"},
		{"backend service with patient scopes", func(f url.Values) {
			f.Set("type", "confidential-symmetric")
			f["grant_type"] = []string{"client_credentials"}
			f["scope"] = []string{"patient/*.rs", "launch"}
		}, `scope "patient/*.rs" cannot be registered for a backend service`},
		{"lifetime in no notation", func(f url.Values) { f.Set("access_token_ttl", "forever") }, `access token lifetime "forever" must be a duration`},
		{"lifetime too long", func(f url.Values) { f.Set("access_token_ttl", "48h") }, "access token lifetime 48h0m0s must be between"},
		{"launch URI not https", func(f url.Values) { f.Set("launch_uri", "http://growth.example/launch") }, "launch URI"},
		{"client id taken", func(f url.Values) { f.Set("client_id", "taken") }, `a client with id "taken" is already registered`},
		{"client id with a slash", func(f url.Values) { f.Set("client_id", "a/b") }, `client id "a/b" may hold only`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := clientFormValues()
			f.Set("name", "Typed name")
			tc.edit(f)
			p := admin.post("/admin/t/acme/clients", f)
			text := pageText(p)
			if p.status != http.StatusBadRequest || !strings.Contains(text, tc.want) {
				t.Fatalf("status %d, want 400 with %q; page error: %s", p.status, tc.want, pageError(text))
			}
			// What was typed is still there to correct.
			if !strings.Contains(text, `value="Typed name"`) || !strings.Contains(text, f.Get("redirect_uris")) {
				t.Error("the refused form lost what was typed")
			}
			all, err := e.srv.Store.ListClients(ctx, "acme")
			if err != nil {
				t.Fatal(err)
			}
			if slices.ContainsFunc(all, func(c storage.Client) bool { return c.Name == "Typed name" }) {
				t.Error("a refused form registered a client")
			}
		})
	}

	// An edit is refused the same way and changes nothing.
	f := clientFormValues()
	f.Set("name", "Changed")
	f.Set("redirect_uris", "http://taken.example/cb")
	if p := admin.post("/admin/t/acme/clients/taken/edit", f); p.status != http.StatusBadRequest || !strings.Contains(pageText(p), "must use https") {
		t.Errorf("bad edit: status %d", p.status)
	}
	if c, err := e.srv.Store.GetClient(ctx, "acme", "taken"); err != nil || c.Name != "Taken" {
		t.Errorf("a refused edit changed the client: %+v %v", c, err)
	}
	// Rotation is only for clients with a secret.
	if p := admin.post("/admin/t/acme/clients/taken/secret", nil); p.status != http.StatusBadRequest || shownSecret.MatchString(p.body) {
		t.Errorf("rotating a public client's secret: status %d", p.status)
	}
	// A form without the CSRF token is refused before anything happens.
	f = clientFormValues()
	f.Set("csrf_token", "forged")
	if p := admin.post("/admin/t/acme/clients", f); p.status != http.StatusForbidden {
		t.Errorf("register without the CSRF token: status %d, want 403", p.status)
	}
	if p := admin.post("/admin/t/acme/clients/taken/delete", url.Values{"confirm": {"yes"}, "csrf_token": {"forged"}}); p.status != http.StatusForbidden {
		t.Errorf("delete without the CSRF token: status %d, want 403", p.status)
	}
	if _, err := e.srv.Store.GetClient(ctx, "acme", "taken"); err != nil {
		t.Errorf("a forged delete removed the client: %v", err)
	}
}

// pageError is the error a page shows, for failure messages.
func pageError(text string) string {
	_, after, ok := strings.Cut(text, `id="page-error">`)
	if !ok {
		return "(none)"
	}
	msg, _, _ := strings.Cut(after, "<")
	return msg
}

func TestAdminClientTenantIsolation(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	ctx := context.Background()
	for _, c := range []struct{ tenant, id, name string }{
		{"acme", "acme-app", "Acme app"}, {"other", "other-app", "Other app"},
		{"acme", "shared", "Acme shared"}, {"other", "shared", "Other shared"},
	} {
		if _, _, err := e.srv.Manage.CreateClient(ctx, manage.ClientInput{TenantID: c.tenant, ID: c.id, Name: c.name, Type: storage.ClientPublic,
			RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid"}, LaunchURI: "https://app.example/launch"}, manage.Actor{ID: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	admin := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")

	list := admin.get("/admin/t/acme/clients")
	if !strings.Contains(list.body, "Acme app") || strings.Contains(list.body, "Other app") || strings.Contains(list.body, "Other shared") {
		t.Errorf("acme's client list shows another tenant's clients or misses its own")
	}
	// Other's area is closed to acme's admin.
	if p := admin.get("/admin/t/other/clients"); p.status != http.StatusSeeOther || p.header.Get("Location") != e.srv.URL+"/admin/t/other/login" {
		t.Errorf("acme's admin at other's clients: status %d to %q", p.status, p.header.Get("Location"))
	}
	if p := admin.post("/admin/t/other/clients/other-app/delete", url.Values{"confirm": {"yes"}}); p.status != http.StatusForbidden {
		t.Errorf("acme's admin deleting in other's area: status %d, want 403", p.status)
	}
	// Other's client ids are unknown in acme's area.
	for _, tc := range []struct {
		method, path string
		form         url.Values
	}{
		{http.MethodGet, "/admin/t/acme/clients/other-app/edit", nil},
		{http.MethodGet, "/admin/t/acme/clients/other-app/launch", nil},
		{http.MethodPost, "/admin/t/acme/clients/other-app/edit", clientFormValues()},
		{http.MethodPost, "/admin/t/acme/clients/other-app/secret", nil},
		{http.MethodPost, "/admin/t/acme/clients/other-app/delete", url.Values{"confirm": {"yes"}}},
		{http.MethodPost, "/admin/t/acme/clients/other-app/launch", url.Values{"patient_id": {"p-1"}}},
	} {
		var p authzPage
		if tc.method == http.MethodGet {
			p = admin.get(tc.path)
		} else {
			p = admin.post(tc.path, tc.form)
		}
		if p.status != http.StatusNotFound {
			t.Errorf("%s %s: status %d, want 404", tc.method, tc.path, p.status)
		}
	}
	if c, err := e.srv.Store.GetClient(ctx, "other", "other-app"); err != nil || c.Name != "Other app" {
		t.Errorf("other's client after acme's admin tried: %+v %v", c, err)
	}
	// The same id in both tenants: acme's edit changes acme's alone.
	f := clientFormValues()
	f.Set("name", "Acme shared, edited")
	if p := admin.post("/admin/t/acme/clients/shared/edit", f); p.status != http.StatusSeeOther {
		t.Fatalf("edit acme's shared: status %d", p.status)
	}
	if c, err := e.srv.Store.GetClient(ctx, "other", "shared"); err != nil || c.Name != "Other shared" {
		t.Errorf("acme's edit reached other's client: %+v %v", c, err)
	}

	// An operator manages every tenant's clients, named as an operator in the trail.
	op := adminSignIn(t, e.srv, "/admin", operatorEmail, "")
	if p := op.post("/admin/t/other/clients/other-app/delete", url.Values{"confirm": {"yes"}}); p.status != http.StatusSeeOther {
		t.Fatalf("operator deleting other's client: status %d", p.status)
	}
	events := auditOf(t, e.srv, "other", "admin.client.delete")
	if len(events) != 1 || events[0].ActorID != "operator:"+e.operatorID {
		t.Errorf("operator's delete in the trail: %+v", events)
	}
	if len(auditOf(t, e.srv, "acme", "admin.client.delete")) != 0 {
		t.Error("other's delete was recorded in acme's trail")
	}
}

func TestAdminClientLaunch(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	ctx := context.Background()
	const secondBase = "https://fhir2.example.org/acme"
	// A second FHIR server, set before any request reads the tenant.
	tn, err := e.srv.Store.GetTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	tn.FHIRBaseURLs = append(tn.FHIRBaseURLs, secondBase)
	if err := e.srv.Store.UpdateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Store.UpsertPatients(ctx, "acme", []storage.Patient{
		{TenantID: "acme", ID: "p-1", Family: "Okafor", Given: "Ada", BirthDate: "1980-02-03", Resource: []byte(`{"resourceType":"Patient","id":"p-1"}`)},
		{TenantID: "acme", ID: "p-2", Family: "Lindqvist", Given: "Maja", Resource: []byte(`{"resourceType":"Patient","id":"p-2"}`)},
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []manage.ClientInput{
		{TenantID: "acme", ID: "viewer", Name: "Viewer", Type: storage.ClientPublic, RedirectURIs: []string{"https://viewer.example/cb"},
			Scopes: []string{"launch", "patient/*.rs"}, LaunchURI: "https://viewer.example/launch?app=1"},
		{TenantID: "acme", ID: "nolaunch", Name: "No launch", Type: storage.ClientPublic, RedirectURIs: []string{"https://viewer.example/cb"},
			Scopes: []string{"openid"}},
	} {
		if _, _, err := e.srv.Manage.CreateClient(ctx, c, manage.Actor{ID: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	admin := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")

	page := admin.get("/admin/t/acme/clients/viewer/launch")
	if page.status != http.StatusOK {
		t.Fatalf("launch page: status %d", page.status)
	}
	// The launch post ends at the app, so the page's form-action allows it.
	if csp := page.header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://viewer.example;") {
		t.Errorf("launch page CSP %q does not let its form lead to the app", csp)
	}
	if !strings.Contains(page.body, `<option value="`+secondBase+`">`) {
		t.Error("launch page does not offer the tenant's second FHIR server")
	}
	found := admin.get("/admin/t/acme/clients/viewer/launch?name=okaf")
	if !strings.Contains(found.body, "Ada Okafor") || !strings.Contains(found.body, `name="patient" value="p-1"`) || strings.Contains(found.body, "Lindqvist") {
		t.Errorf("roster search for okaf: %s", found.body)
	}

	for _, tc := range []struct {
		name string
		form url.Values
		want string
	}{
		{"no patient", url.Values{}, "Choose a patient"},
		{"unknown patient", url.Values{"patient_id": {"nobody"}}, `Patient "nobody" is not in this organization's records`},
		{"two patients", url.Values{"patient": {"p-1"}, "patient_id": {"p-2"}}, "Choose one patient"},
		{"foreign FHIR server", url.Values{"patient_id": {"p-1"}, "aud": {"https://evil.example/fhir"}}, "is not one of the tenant's FHIR base URLs"},
		{"encounter that is a reference", url.Values{"patient_id": {"p-1"}, "encounter": {"Encounter/1"}}, "must be a FHIR id"},
	} {
		p := admin.post("/admin/t/acme/clients/viewer/launch", tc.form)
		if p.status != http.StatusBadRequest || !strings.Contains(pageText(p), tc.want) {
			t.Errorf("%s: status %d, want 400 with %q; page error: %s", tc.name, p.status, tc.want, pageError(pageText(p)))
		}
	}
	if n := len(auditOf(t, e.srv, "acme", "launch.create")); n != 0 {
		t.Fatalf("%d launches created by refused forms", n)
	}

	for _, tc := range []struct {
		name                    string
		form                    url.Values
		patient, encounter, iss string
	}{
		{"picked from the search, on the second FHIR server", url.Values{"patient": {"p-1"}, "encounter": {"e-9"}, "aud": {secondBase}}, "p-1", "e-9", secondBase},
		{"typed id, first FHIR server", url.Values{"patient_id": {"p-2"}}, "p-2", "", "https://fhir.example.org/acme"},
	} {
		p := admin.post("/admin/t/acme/clients/viewer/launch", tc.form)
		loc, err := url.Parse(p.header.Get("Location"))
		if p.status != http.StatusSeeOther || err != nil {
			t.Fatalf("%s: status %d to %q: %s", tc.name, p.status, p.header.Get("Location"), p.body)
		}
		q := loc.Query()
		if got := loc.Scheme + "://" + loc.Host + loc.Path; got != "https://viewer.example/launch" || q.Get("app") != "1" || q.Get("iss") != tc.iss || q.Get("launch") == "" {
			t.Errorf("%s: redirect to %s, want the app's launch URI with its query, iss %s and a launch", tc.name, loc, tc.iss)
		}
		l, err := e.srv.Store.GetLaunch(ctx, "acme", q.Get("launch"), time.Now())
		if err != nil {
			t.Fatalf("%s: stored launch: %v", tc.name, err)
		}
		if l.ClientID != "viewer" || l.Context.Patient != tc.patient || l.Context.Encounter != tc.encounter || l.Aud != tc.iss {
			t.Errorf("%s: stored launch %+v", tc.name, l)
		}
	}
	events := auditOf(t, e.srv, "acme", "launch.create")
	if len(events) != 2 || events[0].ActorID != e.acmeAdminID || events[0].Details["patient"] != "p-1" || events[0].ClientID != "viewer" {
		t.Errorf("launch.create events %+v, want two by the admin", events)
	}

	if p := admin.get("/admin/t/acme/clients/nolaunch/launch"); p.status != http.StatusBadRequest {
		t.Errorf("launch page of a client without a launch URI: status %d, want 400", p.status)
	}
	if p := admin.post("/admin/t/acme/clients/viewer/launch", url.Values{"patient_id": {"p-1"}, "csrf_token": {"forged"}}); p.status != http.StatusForbidden {
		t.Errorf("launch without the CSRF token: status %d, want 403", p.status)
	}
}

func TestAdminClientRegistrationToken(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	admin := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
	for _, hours := range []string{"0", "lots", "1000"} {
		if p := admin.post("/admin/t/acme/clients/registration-token", url.Values{"ttl_hours": {hours}}); p.status != http.StatusBadRequest ||
			shownToken.MatchString(p.body) || !strings.Contains(p.body, `value="`+hours+`"`) {
			t.Errorf("ttl %q: status %d, want 400 keeping what was typed", hours, p.status)
		}
	}

	p := admin.post("/admin/t/acme/clients/registration-token", url.Values{"ttl_hours": {"2"}})
	m := shownToken.FindStringSubmatch(p.body)
	if p.status != http.StatusOK || m == nil || !strings.Contains(p.body, e.srv.Issuer("acme")+"/register") {
		t.Fatalf("create token: status %d: %s", p.status, p.body)
	}
	events := auditOf(t, e.srv, "acme", "admin.initial_access_token.create")
	if len(events) != 1 || events[0].ActorID != e.acmeAdminID {
		t.Errorf("token events %+v, want one by the admin", events)
	}

	// The token shown registers one client, once.
	register := func() int {
		body := `{"client_name":"Self-registered","redirect_uris":["https://self.example/cb"],"token_endpoint_auth_method":"none","scope":"openid launch"}`
		req, err := http.NewRequest(http.MethodPost, e.srv.Issuer("acme")+"/register", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+m[1])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := register(); status != http.StatusCreated {
		t.Fatalf("register with the token: status %d, want 201", status)
	}
	if status := register(); status != http.StatusUnauthorized {
		t.Errorf("second use of the token: status %d, want 401", status)
	}
}

func TestAdminRegistrationTokenAllowanceAndRevocation(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	ctx := context.Background()
	admin := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
	const tokensPage = "/admin/t/acme/clients/registration-tokens"

	p := admin.get(tokensPage)
	if p.status != http.StatusOK || !strings.Contains(p.body, `id="backend_services"`) || strings.Contains(p.body, `aria-describedby="backend-services-warning" checked`) ||
		!strings.Contains(p.body, "nobody signed in") || !strings.Contains(p.body, "No registration tokens are waiting") {
		t.Fatalf("tokens page: status %d: %s", p.status, p.body)
	}
	// A refused form keeps the box as it was ticked.
	if p := admin.post("/admin/t/acme/clients/registration-token", url.Values{"ttl_hours": {"0"}, "backend_services": {"yes"}}); p.status != http.StatusBadRequest ||
		!strings.Contains(p.body, `aria-describedby="backend-services-warning" checked`) {
		t.Errorf("refused form: status %d, want 400 with the box still ticked: %s", p.status, p.body)
	}

	issue := func(form url.Values, wantAllows string) string {
		t.Helper()
		p := admin.post("/admin/t/acme/clients/registration-token", form)
		m := shownToken.FindStringSubmatch(p.body)
		if p.status != http.StatusOK || m == nil || !strings.Contains(p.body, wantAllows) {
			t.Fatalf("create token %v: status %d, want a token for %q: %s", form, p.status, wantAllows, p.body)
		}
		return m[1]
	}
	app := issue(url.Values{"ttl_hours": {"2"}}, "An app people sign in to (")
	backend := issue(url.Values{"ttl_hours": {"2"}, "backend_services": {"yes"}}, "or a backend service")
	events := auditOf(t, e.srv, "acme", "admin.initial_access_token.create")
	if len(events) != 2 || events[0].Details["backend_services"] != "false" || events[1].Details["backend_services"] != "true" {
		t.Fatalf("create events %+v, want the allowance of each", events)
	}

	// The list names tokens by a digest prefix, never the token.
	tokens, err := e.srv.Manage.ListInitialAccessTokens(ctx, "acme")
	if err != nil || len(tokens) != 2 {
		t.Fatalf("outstanding %+v, %v", tokens, err)
	}
	p = admin.get(tokensPage)
	if p.status != http.StatusOK || strings.Contains(p.body, app) || strings.Contains(p.body, backend) ||
		!strings.Contains(p.body, tokens[0].Ref) || !strings.Contains(p.body, tokens[1].Ref) ||
		!strings.Contains(p.body, "Apps or backend services") || !strings.Contains(p.body, tenantAdminEmail) {
		t.Fatalf("tokens page lists: status %d: %s", p.status, p.body)
	}

	p = admin.post(tokensPage+"/revoke", url.Values{"ref": {tokens[1].Ref}})
	if p.status != http.StatusSeeOther || !strings.HasSuffix(p.header.Get("Location"), tokensPage+"?notice=revoked") {
		t.Fatalf("revoke: status %d to %q", p.status, p.header.Get("Location"))
	}
	if ev := auditOf(t, e.srv, "acme", "admin.initial_access_token.revoke"); len(ev) != 1 || ev[0].ActorID != e.acmeAdminID || ev[0].Details["token_ref"] != tokens[1].Ref {
		t.Fatalf("revoke events %+v", ev)
	}
	if p := admin.get(tokensPage + "?notice=revoked"); strings.Contains(p.body, tokens[1].Ref) || !strings.Contains(p.body, "revoked") || !strings.Contains(p.body, tokens[0].Ref) {
		t.Errorf("after revoking: %s", p.body)
	}
	if p := admin.post(tokensPage+"/revoke", url.Values{"ref": {tokens[1].Ref}}); p.status != http.StatusNotFound {
		t.Errorf("revoke again: status %d, want 404", p.status)
	}
	if p := admin.post(tokensPage+"/revoke", url.Values{"ref": {tokens[0].Ref}, "csrf_token": {"forged"}}); p.status != http.StatusForbidden {
		t.Errorf("revoke without the CSRF token: status %d, want 403", p.status)
	}

	// The revoked backend token registers nothing; the app's token registers an app but not a backend service.
	register := func(token, body string) int {
		req, err := http.NewRequest(http.MethodPost, e.srv.Issuer("acme")+"/register", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	backendBody := `{"client_name":"Export","grant_types":["client_credentials"],"scope":"system/*.rs"}`
	if status := register(backend, backendBody); status != http.StatusUnauthorized {
		t.Errorf("revoked token: status %d, want 401", status)
	}
	if status := register(app, backendBody); status != http.StatusBadRequest {
		t.Errorf("backend service with an app's token: status %d, want 400", status)
	}
	if status := register(app, `{"client_name":"Self-registered","redirect_uris":["https://self.example/cb"],"token_endpoint_auth_method":"none","scope":"openid launch"}`); status != http.StatusCreated {
		t.Errorf("app with an app's token: status %d, want 201", status)
	}
}
