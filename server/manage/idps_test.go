package manage

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smartauth/smartauth/storage"
)

func TestUpdateIdentityProvider(t *testing.T) {
	const firstSecret, secondSecret = "first-upstream-secret", "second-upstream-secret"
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		fx.tenant(t, "clinic")
		in := IdentityProviderInput{ID: "corp", Type: storage.IdentityProviderOIDC, DisplayName: "Corp",
			Settings:     storage.IdentityProviderSettings{Issuer: "https://idp.example", ClientID: "smartauth"},
			ClientSecret: firstSecret, Domains: []string{"example.org"}}
		added, _, err := fx.svc.AddIdentityProvider(ctx, "clinic", in, Actor{ID: "setup"})
		if err != nil {
			t.Fatal(err)
		}
		secretOf := func(t *testing.T) string {
			t.Helper()
			p, err := fx.store.GetIdentityProvider(ctx, "clinic", "corp")
			if err != nil {
				t.Fatal(err)
			}
			secret, err := OpenIdentityProviderSecret(fx.km.Sealer(), p)
			if err != nil {
				t.Fatal(err)
			}
			return secret
		}
		who := Actor{ID: "op", SourceIP: "192.0.2.10"}
		edit := in
		edit.Domains, edit.ClientSecret = nil, ""

		refusals := []struct {
			name   string
			change func(*IdentityProviderInput)
			want   error
			says   string
		}{
			{"domains", func(in *IdentityProviderInput) { in.Domains = []string{"example.net"} }, ErrInvalid, "domain route"},
			{"issuer over http", func(in *IdentityProviderInput) { in.Settings.Issuer = "http://idp.example" }, ErrInvalid, "https"},
			{"no client id", func(in *IdentityProviderInput) { in.Settings.ClientID = "" }, ErrInvalid, "client id"},
			{"secret with a newline", func(in *IdentityProviderInput) { in.ClientSecret = "a\nb" }, ErrInvalid, "printable"},
			{"unknown type", func(in *IdentityProviderInput) { in.Type = "saml" }, ErrInvalid, "type"},
			{"unknown provider", func(in *IdentityProviderInput) { in.ID = "ghost" }, storage.ErrNotFound, ""},
		}
		for _, tc := range refusals {
			t.Run(tc.name, func(t *testing.T) {
				in := edit
				tc.change(&in)
				_, err := fx.svc.UpdateIdentityProvider(ctx, "clinic", in, who)
				mustRefuse(t, "update", err, tc.want, tc.says)
			})
		}
		if _, err := fx.svc.UpdateIdentityProvider(ctx, "other", edit, who); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("update through another tenant: %v", err)
		}
		if es := fx.events(t, "clinic", "admin.idp.update"); len(es) != 0 || secretOf(t) != firstSecret {
			t.Fatalf("refused updates were audited (%d) or changed the secret", len(es))
		}

		steps := []struct {
			name    string
			change  func(*IdentityProviderInput)
			secret  string // the secret stored afterwards
			changed string
			note    string // what the audit says of the secret
		}{
			{"blank secret keeps the sealed one", func(in *IdentityProviderInput) {
				in.DisplayName = "Corp SSO"
				in.ClaimMapping = storage.ClaimMapping{GroupsClaim: "groups", GroupRoles: map[string]string{"nurses": "Nurse", "doctors": "Physician"}}
			}, firstSecret, "display_name groups_claim group_roles", ""},
			{"new secret replaces it", func(in *IdentityProviderInput) { in.ClientSecret = secondSecret; in.FederationOnly = true },
				secondSecret, "federation_only", "replaced"},
		}
		for _, st := range steps {
			fx.clock.Add(time.Minute)
			st.change(&edit)
			got, err := fx.svc.UpdateIdentityProvider(ctx, "clinic", edit, who)
			edit.ClientSecret = ""
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			stored, err := fx.store.GetIdentityProvider(ctx, "clinic", "corp")
			if err != nil {
				t.Fatal(err)
			}
			if stored.DisplayName != got.DisplayName || !stored.CreatedAt.Equal(added.CreatedAt) || !stored.UpdatedAt.Equal(fx.clock.Now()) {
				t.Fatalf("%s: stored %+v", st.name, stored)
			}
			if s := secretOf(t); s != st.secret {
				t.Fatalf("%s: stored secret %q, want %q", st.name, s, st.secret)
			}
			e := fx.lastEvent(t, "clinic", "admin.idp.update", who, "corp", firstSecret, secondSecret, string(stored.ClientSecretSealed))
			if e.Details["changed"] != st.changed || e.Details["client_secret"] != st.note {
				t.Fatalf("%s: audit details %v; want changed %q, client_secret %q", st.name, e.Details, st.changed, st.note)
			}
		}
		if e := fx.lastEvent(t, "clinic", "admin.idp.update", who, "corp"); e.Details["federation_only"] != "true" {
			t.Fatalf("audit details %v", e.Details)
		}
	})
}

// TestUpdateIdentityProviderDropsSecret: a blank secret keeps the stored
// one only while the secret would go to the same issuer for the same
// client; any change to those drops it, audited without the value.
func TestUpdateIdentityProviderDropsSecret(t *testing.T) {
	const stored, given = "stored-upstream-secret", "given-upstream-secret"
	oidcIdP := IdentityProviderInput{Type: storage.IdentityProviderOIDC,
		Settings: storage.IdentityProviderSettings{Issuer: "https://idp.example", ClientID: "smartauth", Scopes: []string{"email"}}}
	okta := IdentityProviderInput{Type: storage.IdentityProviderOkta,
		Settings: storage.IdentityProviderSettings{OrgURL: "https://clinic.okta.com", ClientID: "smartauth"}}
	cognito := IdentityProviderInput{Type: storage.IdentityProviderCognito,
		Settings: storage.IdentityProviderSettings{Region: "eu-west-1", UserPoolID: "eu-west-1_Pool1", HostedUIDomain: "clinic.auth.eu-west-1.amazoncognito.com", ClientID: "smartauth"}}
	tests := []struct {
		name   string
		start  IdentityProviderInput
		change func(*IdentityProviderInput)
		secret string // the secret stored afterwards
		note   string // what the audit says of the secret
	}{
		{"display name and scopes", oidcIdP, func(in *IdentityProviderInput) { in.DisplayName = "Renamed"; in.Settings.Scopes = []string{"profile"} }, stored, ""},
		{"issuer", oidcIdP, func(in *IdentityProviderInput) { in.Settings.Issuer = "https://attacker.example" }, "", "dropped"},
		{"issuer with a new secret", oidcIdP, func(in *IdentityProviderInput) { in.Settings.Issuer = "https://idp2.example"; in.ClientSecret = given }, given, "replaced"},
		{"client id", oidcIdP, func(in *IdentityProviderInput) { in.Settings.ClientID = "another-client" }, "", "dropped"},
		{"type", oidcIdP, func(in *IdentityProviderInput) {
			in.Type = storage.IdentityProviderOkta
			in.Settings = storage.IdentityProviderSettings{OrgURL: "https://idp.example", ClientID: "smartauth"}
		}, "", "dropped"},
		{"okta org URL", okta, func(in *IdentityProviderInput) { in.Settings.OrgURL = "https://attacker.okta.com" }, "", "dropped"},
		{"okta authorization server", okta, func(in *IdentityProviderInput) { in.Settings.AuthorizationServerID = "aus9other" }, "", "dropped"},
		{"okta client id", okta, func(in *IdentityProviderInput) { in.Settings.ClientID = "another-client" }, "", "dropped"},
		{"cognito user pool", cognito, func(in *IdentityProviderInput) { in.Settings.UserPoolID = "eu-west-1_Pool2" }, "", "dropped"},
		{"cognito region", cognito, func(in *IdentityProviderInput) {
			in.Settings.Region = "us-east-1"
			in.Settings.UserPoolID = "us-east-1_Pool1"
		}, "", "dropped"},
		{"cognito hosted UI domain", cognito, func(in *IdentityProviderInput) { in.Settings.HostedUIDomain = "attacker.example.com" }, "", "dropped"},
		{"cognito display name", cognito, func(in *IdentityProviderInput) { in.DisplayName = "Pool" }, stored, ""},
	}
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		who := Actor{ID: "op"}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				// A tenant per case: a tenant has one provider per issuer.
				tenant := "clinic-" + string(rune('a'+i))
				fx.tenant(t, tenant)
				in := tc.start
				in.ID = "idp-" + string(rune('a'+i))
				in.ClientSecret = stored
				if _, _, err := fx.svc.AddIdentityProvider(ctx, tenant, in, Actor{ID: "setup"}); err != nil {
					t.Fatal(err)
				}
				in.ClientSecret = ""
				tc.change(&in)
				got, err := fx.svc.UpdateIdentityProvider(ctx, tenant, in, who)
				if err != nil {
					t.Fatal(err)
				}
				p, err := fx.store.GetIdentityProvider(ctx, tenant, in.ID)
				if err != nil {
					t.Fatal(err)
				}
				secret, err := OpenIdentityProviderSecret(fx.km.Sealer(), p)
				if err != nil {
					t.Fatal(err)
				}
				if secret != tc.secret || (tc.secret == "") != (len(p.ClientSecretSealed) == 0) || len(got.ClientSecretSealed) != len(p.ClientSecretSealed) {
					t.Fatalf("stored secret %q (%d sealed bytes), want %q", secret, len(p.ClientSecretSealed), tc.secret)
				}
				e := fx.lastEvent(t, tenant, "admin.idp.update", who, in.ID, stored, given)
				if e.Details["client_secret"] != tc.note {
					t.Fatalf("audit details %v; want client_secret %q", e.Details, tc.note)
				}
			})
		}
	})
}

// TestOneProviderPerIssuer: a second provider with an issuer the tenant
// already has is refused, added or edited; another tenant may have it.
func TestOneProviderPerIssuer(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		fx.tenant(t, "clinic")
		fx.tenant(t, "other")
		in := func(id, issuer string) IdentityProviderInput {
			return IdentityProviderInput{ID: id, Type: storage.IdentityProviderOIDC,
				Settings: storage.IdentityProviderSettings{Issuer: issuer, ClientID: "smartauth"}}
		}
		who := Actor{ID: "op"}
		if _, _, err := fx.svc.AddIdentityProvider(ctx, "clinic", in("first", "https://idp.example"), who); err != nil {
			t.Fatal(err)
		}
		if _, _, err := fx.svc.AddIdentityProvider(ctx, "clinic", in("second", "https://idp.example"), who); !errors.Is(err, ErrInvalid) ||
			!strings.Contains(err.Error(), `"first"`) {
			t.Fatalf("a second provider for the issuer: %v, want ErrInvalid naming the first", err)
		}
		if _, _, err := fx.svc.AddIdentityProvider(ctx, "clinic", in("second", "https://idp2.example"), who); err != nil {
			t.Fatal(err)
		}
		if _, err := fx.svc.UpdateIdentityProvider(ctx, "clinic", in("second", "https://idp.example"), who); !errors.Is(err, ErrInvalid) {
			t.Fatalf("editing a provider onto another's issuer: %v, want ErrInvalid", err)
		}
		if _, err := fx.svc.UpdateIdentityProvider(ctx, "clinic", in("first", "https://idp.example"), who); err != nil {
			t.Fatalf("saving a provider with its own issuer: %v", err)
		}
		if _, _, err := fx.svc.AddIdentityProvider(ctx, "other", in("first", "https://idp.example"), who); err != nil {
			t.Fatalf("the issuer in another tenant: %v", err)
		}
	})
}

func TestDomainRoutes(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		fx.tenant(t, "clinic")
		fx.tenant(t, "other")
		for _, tenantID := range []string{"clinic", "other"} {
			_, _, err := fx.svc.AddIdentityProvider(ctx, tenantID, IdentityProviderInput{ID: "corp", Type: storage.IdentityProviderOIDC,
				Settings: storage.IdentityProviderSettings{Issuer: "https://idp.example", ClientID: "smartauth"}, Domains: []string{"example.org"}}, Actor{ID: "setup"})
			if err != nil {
				t.Fatal(err)
			}
		}
		who := Actor{ID: "op", SourceIP: "192.0.2.11"}

		adds := []struct {
			name, domain, provider string
			subdomains             bool
			want                   storage.DomainRoute // zero when refused
			err                    error
			says                   string
		}{
			{"wildcard and case", " *.Example.COM ", "corp", false, storage.DomainRoute{Domain: "example.com", IncludeSubdomains: true}, nil, ""},
			{"subdomains asked for", "Clinic.Example.net.", "corp", true, storage.DomainRoute{Domain: "clinic.example.net", IncludeSubdomains: true}, nil, ""},
			{"internationalized", "bücher.example", "corp", false, storage.DomainRoute{Domain: "xn--bcher-kva.example"}, nil, ""},
			{"already routed", "EXAMPLE.org", "corp", false, storage.DomainRoute{}, storage.ErrAlreadyExists, "already routed"},
			{"not a domain", "localhost", "corp", false, storage.DomainRoute{}, ErrInvalid, "domain"},
			{"address, not domain", "dr@example.org", "corp", false, storage.DomainRoute{}, ErrInvalid, "domain"},
			{"unknown provider", "example.edu", "ghost", false, storage.DomainRoute{}, storage.ErrNotFound, ""},
		}
		for _, tc := range adds {
			r, err := fx.svc.AddDomainRoute(ctx, "clinic", tc.provider, tc.domain, tc.subdomains, who)
			if tc.err != nil {
				mustRefuse(t, tc.name, err, tc.err, tc.says)
				continue
			}
			if err != nil || r.Domain != tc.want.Domain || r.IncludeSubdomains != tc.want.IncludeSubdomains || r.ProviderID != tc.provider || r.TenantID != "clinic" {
				t.Fatalf("%s: route %+v, %v", tc.name, r, err)
			}
			e := fx.lastEvent(t, "clinic", "admin.idp.route.add", who, tc.provider)
			if e.Details["domain"] != tc.want.Domain {
				t.Fatalf("%s: audit details %v", tc.name, e.Details)
			}
		}
		if es := fx.events(t, "clinic", "admin.idp.route.add"); len(es) != 3 {
			t.Fatalf("%d route events, want 3: refused adds are not audited", len(es))
		}

		dels := []struct {
			name, domain string
			err          error
		}{
			{"by another spelling", "EXAMPLE.org.", nil},
			{"wildcard spelling", "*.example.com", nil},
			{"gone already", "example.org", storage.ErrNotFound},
			{"never routed", "example.edu", storage.ErrNotFound},
			{"not a domain", "nowhere", ErrInvalid},
		}
		for _, tc := range dels {
			err := fx.svc.DeleteDomainRoute(ctx, "clinic", tc.domain, who)
			if tc.err != nil {
				mustRefuse(t, tc.name, err, tc.err, "")
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			fx.lastEvent(t, "clinic", "admin.idp.route.delete", who, "corp")
		}
		rs, err := fx.store.ListDomainRoutes(ctx, "clinic")
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, r := range rs {
			left = append(left, r.Domain)
		}
		if !slices.Equal(left, []string{"clinic.example.net", "xn--bcher-kva.example"}) {
			t.Fatalf("routes left %v", left)
		}
		// The other tenant's route of the same domain was never touched.
		if rs, err := fx.store.ListDomainRoutes(ctx, "other"); err != nil || len(rs) != 1 || rs[0].Domain != "example.org" {
			t.Fatalf("routes of the other tenant: %+v, %v", rs, err)
		}
		if es := fx.events(t, "clinic", "admin.idp.route.delete"); len(es) != 2 {
			t.Fatalf("%d route deletions audited, want 2", len(es))
		}
	})
}
