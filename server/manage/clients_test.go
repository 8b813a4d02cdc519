package manage

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server/clientsecret"
	"github.com/smartauth/smartauth/storage"
)

func TestCheckRedirectURI(t *testing.T) {
	tests := []struct {
		uri string
		ok  bool
	}{
		{"https://app.example/callback", true},
		{"https://app.example:8443/cb?tenant=1", true},
		{"http://127.0.0.1:5000/cb", true},
		{"http://[::1]/cb", true},
		{"http://localhost/cb", true},
		{"com.example.app:/oauth2redirect", true},
		{"http://app.example/cb", false},
		{"http://127.0.0.1.evil.example/cb", false},
		{"myapp:/cb", false},
		{"/relative/cb", false},
		{"https://app.example/cb#frag", false},
		{"https://*.example/cb", false},
		{"https:///nohost", false},
		{"", false},
	}
	for _, tc := range tests {
		err := checkRedirectURI(tc.uri)
		if (err == nil) != tc.ok {
			t.Errorf("checkRedirectURI(%q) = %v, want ok=%v", tc.uri, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("checkRedirectURI(%q): error %v does not wrap ErrInvalid", tc.uri, err)
		}
	}
}

func TestValidateClientDefaults(t *testing.T) {
	c, err := validateClient(ClientInput{Name: "x", Type: storage.ClientConfidentialAsymmetric, JWKSURL: "https://app.example/jwks",
		Scopes: []string{"system/*.rs openid", "openid"}, RedirectURIs: []string{"https://app.example/cb", "https://app.example/cb"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Scopes) != 2 || len(c.RedirectURIs) != 1 {
		t.Fatalf("duplicates kept: scopes %v, redirects %v", c.Scopes, c.RedirectURIs)
	}
	if len(c.GrantTypes) != 3 || c.GrantTypes[2] != GrantClientCredentials {
		t.Fatalf("asymmetric default grants %v", c.GrantTypes)
	}
	for _, bad := range []ClientInput{
		{Name: "x", Type: storage.ClientPublic, JWKSURL: "https://a.example/jwks", Scopes: []string{"openid"}, GrantTypes: []string{GrantRefreshToken}},
		{Name: "x", Type: storage.ClientConfidentialAsymmetric, JWKSURL: "http://a.example/jwks", Scopes: []string{"s"}, GrantTypes: []string{GrantClientCredentials}},
		{Name: "x", Type: storage.ClientPublic, Scopes: []string{"bad\"scope"}, GrantTypes: []string{GrantRefreshToken}},
		{Name: "x", Type: storage.ClientPublic, Scopes: []string{"s"}, GrantTypes: []string{"implicit"}},
		{ID: "white space", Name: "x", Type: storage.ClientPublic, Scopes: []string{"s"}, GrantTypes: []string{GrantRefreshToken}},
		{Name: "x", Type: storage.ClientPublic, Scopes: []string{"s"}, LaunchURI: "ftp://a.example", GrantTypes: []string{GrantRefreshToken}},
	} {
		if _, err := validateClient(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("validateClient(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

// TestBackendClientScopes: a client that no person signs in to (no
// authorization_code, no token exchange) may register system/ and custom
// scopes only; one that people also sign in to keeps patient and user
// scopes for those grants.
func TestBackendClientScopes(t *testing.T) {
	backend := []string{GrantClientCredentials}
	cases := []struct {
		name   string
		grants []string
		scopes string
		refuse string // the scope named in the refusal; empty when accepted
	}{
		{"system scopes", backend, "system/*.rs system/Observation.read", ""},
		{"custom and admin scopes", backend, "admin __export", ""},
		{"patient scopes and launch/patient", backend, "system/*.rs patient/*.read launch/patient", "patient/*.read"},
		{"launch/patient", backend, "launch/patient", "launch/patient"},
		{"user scope", backend, "user/*.rs", "user/*.rs"},
		{"launch", backend, "launch", "launch"},
		{"openid", backend, "openid", "openid"},
		{"fhirUser", backend, "fhirUser", "fhirUser"},
		{"offline_access", backend, "offline_access", "offline_access"},
		{"malformed SMART scope", backend, "patient/Observation.bogus", "patient/Observation.bogus"},
		{"with refresh_token", []string{GrantClientCredentials, GrantRefreshToken}, "patient/*.rs", "patient/*.rs"},
		{"with authorization_code", []string{GrantClientCredentials, GrantAuthorizationCode}, "openid launch/patient patient/*.rs user/*.rs system/*.rs", ""},
		{"with token exchange", []string{GrantClientCredentials, GrantTokenExchange}, "fhirUser patient/*.rs", ""},
		{"asymmetric default grants", nil, "openid launch/patient patient/*.rs", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := validateClient(ClientInput{Name: "Export", Type: storage.ClientConfidentialAsymmetric, JWKSURL: "https://export.example/jwks",
				RedirectURIs: []string{"https://export.example/cb"}, GrantTypes: tc.grants, Scopes: []string{tc.scopes}})
			if tc.refuse == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			mustRefuse(t, tc.scopes, err, ErrInvalid, `scope "`+tc.refuse+`" cannot be registered for a backend service`)
		})
	}
}

func TestUpdateClient(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		fx.tenant(t, "clinic")
		setup := Actor{ID: "setup"}
		inputs := map[string]ClientInput{
			"app": {TenantID: "clinic", ID: "app", Name: "App", Type: storage.ClientPublic, RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid"}},
			"svc": {TenantID: "clinic", ID: "svc", Name: "Service", Type: storage.ClientConfidentialSymmetric, Scopes: []string{"system/*.rs"},
				GrantTypes: []string{GrantClientCredentials}},
		}
		created := map[string]storage.Client{}
		secrets := map[string]string{}
		for id, in := range inputs {
			c, secret, err := fx.svc.CreateClient(ctx, in, setup)
			if err != nil {
				t.Fatal(err)
			}
			created[id], secrets[id] = c, secret
		}
		fx.clock.Add(time.Hour)
		who := Actor{ID: "op", SourceIP: "192.0.2.8"}

		refusals := []struct {
			name string
			in   ClientInput
			want error
			says string
		}{
			{"no id", ClientInput{TenantID: "clinic", Name: "x", Type: storage.ClientPublic, Scopes: []string{"s"}}, ErrInvalid, "id"},
			{"unknown client", ClientInput{TenantID: "clinic", ID: "ghost", Name: "x", Type: storage.ClientPublic, Scopes: []string{"s"}}, storage.ErrNotFound, ""},
			{"other tenant", ClientInput{TenantID: "other", ID: "app", Name: "x", Type: storage.ClientPublic, Scopes: []string{"s"}}, storage.ErrNotFound, ""},
			{"no scopes", ClientInput{TenantID: "clinic", ID: "app", Name: "App", Type: storage.ClientPublic, RedirectURIs: []string{"https://app.example/cb"}},
				ErrInvalid, "scope"},
			{"http redirect", ClientInput{TenantID: "clinic", ID: "app", Name: "App", Type: storage.ClientPublic, RedirectURIs: []string{"http://app.example/cb"},
				Scopes: []string{"openid"}}, ErrInvalid, "https"},
			{"public client with client_credentials", ClientInput{TenantID: "clinic", ID: "svc", Name: "S", Type: storage.ClientPublic, Scopes: []string{"s"},
				GrantTypes: []string{GrantClientCredentials}}, ErrInvalid, "public client"},
		}
		for _, tc := range refusals {
			t.Run(tc.name, func(t *testing.T) {
				_, _, err := fx.svc.UpdateClient(ctx, tc.in, who)
				mustRefuse(t, "update", err, tc.want, tc.says)
			})
		}
		for id, c := range created {
			if stored, err := fx.store.GetClient(ctx, "clinic", id); err != nil || !stored.UpdatedAt.Equal(c.UpdatedAt) {
				t.Fatalf("refused updates changed client %s: %+v, %v", id, stored, err)
			}
		}
		if es := fx.events(t, "clinic", "admin.client.update"); len(es) != 0 {
			t.Fatalf("refused updates were audited: %+v", es)
		}

		jwks := `{"keys":[{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","use":"sig"}]}`
		steps := []struct {
			name       string
			in         ClientInput
			newSecret  bool   // a new secret is returned
			keepSecret string // the secret that must still match; empty when none may
			changed    string
			secretNote string
		}{
			{"public stays public", ClientInput{TenantID: "clinic", ID: "app", Name: "App 2", Type: storage.ClientPublic,
				RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid", "launch"}}, false, "", "name scopes", ""},
			{"symmetric keeps its secret", ClientInput{TenantID: "clinic", ID: "svc", Name: "Service", Type: storage.ClientConfidentialSymmetric,
				Scopes: []string{"system/*.rs"}, GrantTypes: []string{GrantClientCredentials}, AccessTokenTTL: 5 * time.Minute},
				false, secrets["svc"], "access_token_ttl", ""},
			{"symmetric becomes asymmetric and loses its secret", ClientInput{TenantID: "clinic", ID: "svc", Name: "Service", Type: storage.ClientConfidentialAsymmetric,
				Scopes: []string{"system/*.rs"}, GrantTypes: []string{GrantClientCredentials}, JWKS: []byte(jwks), AccessTokenTTL: 5 * time.Minute},
				false, "", "type jwks", "removed"},
			{"public becomes symmetric and gets a secret", ClientInput{TenantID: "clinic", ID: "app", Name: "App 2", Type: storage.ClientConfidentialSymmetric,
				RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid", "launch"}}, true, "", "type", "issued"},
		}
		for _, st := range steps {
			fx.clock.Add(time.Minute)
			got, secret, err := fx.svc.UpdateClient(ctx, st.in, who)
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			stored, err := fx.store.GetClient(ctx, "clinic", st.in.ID)
			if err != nil {
				t.Fatal(err)
			}
			if stored.Name != st.in.Name || stored.Type != st.in.Type || !slices.Equal(stored.Scopes, got.Scopes) ||
				!stored.CreatedAt.Equal(created[st.in.ID].CreatedAt) || !stored.UpdatedAt.Equal(fx.clock.Now()) {
				t.Fatalf("%s: stored %+v", st.name, stored)
			}
			switch {
			case st.newSecret:
				if secret == "" || !clientsecret.Matches(stored.SecretHash, secret) || clientsecret.Matches(stored.SecretHash, secrets[st.in.ID]) {
					t.Fatalf("%s: returned secret %q does not match the stored digest", st.name, secret)
				}
			case st.keepSecret != "":
				if secret != "" || !clientsecret.Matches(stored.SecretHash, st.keepSecret) {
					t.Fatalf("%s: the old secret no longer matches (new secret %q)", st.name, secret)
				}
			default:
				if secret != "" || len(stored.SecretHash) != 0 {
					t.Fatalf("%s: a %s client holds a secret (returned %q)", st.name, stored.Type, secret)
				}
			}
			e := fx.lastEvent(t, "clinic", "admin.client.update", who, "", secret, secrets["svc"], string(stored.SecretHash))
			if e.Details["client_id"] != st.in.ID || e.Details["changed"] != st.changed || e.Details["secret"] != st.secretNote {
				t.Fatalf("%s: audit details %v; want changed %q, secret %q", st.name, e.Details, st.changed, st.secretNote)
			}
		}
	})
}
