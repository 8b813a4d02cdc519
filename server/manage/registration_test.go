package manage

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/smartauth/smartauth/storage"
)

func TestClientInputFromMetadata(t *testing.T) {
	tests := []struct {
		name       string
		md         RegistrationRequest
		wantType   storage.ClientType
		wantMethod string
		wantGrants []string
		wantCode   string // the RFC 7591 error code when refused
	}{
		{name: "defaults are client_secret_basic and authorization_code", md: RegistrationRequest{},
			wantType: storage.ClientConfidentialSymmetric, wantMethod: "client_secret_basic", wantGrants: []string{GrantAuthorizationCode}},
		{name: "none is public", md: RegistrationRequest{TokenEndpointAuthMethod: "none", ResponseTypes: []string{"code"}},
			wantType: storage.ClientPublic, wantMethod: "none", wantGrants: []string{GrantAuthorizationCode}},
		{name: "client_secret_post is symmetric", md: RegistrationRequest{TokenEndpointAuthMethod: "client_secret_post", GrantTypes: []string{GrantClientCredentials}},
			wantType: storage.ClientConfidentialSymmetric, wantMethod: "client_secret_post", wantGrants: []string{GrantClientCredentials}},
		{name: "private_key_jwt is asymmetric", md: RegistrationRequest{TokenEndpointAuthMethod: "private_key_jwt"},
			wantType: storage.ClientConfidentialAsymmetric, wantMethod: "private_key_jwt", wantGrants: []string{GrantAuthorizationCode}},
		{name: "null jwks is none", md: RegistrationRequest{TokenEndpointAuthMethod: "none", JWKS: json.RawMessage(" null ")},
			wantType: storage.ClientPublic, wantMethod: "none", wantGrants: []string{GrantAuthorizationCode}},

		{name: "client_secret_jwt", md: RegistrationRequest{TokenEndpointAuthMethod: "client_secret_jwt"}, wantCode: ErrCodeInvalidClientMetadata},
		{name: "token response type", md: RegistrationRequest{ResponseTypes: []string{"code", "token"}}, wantCode: ErrCodeInvalidClientMetadata},
		{name: "code without its grant", md: RegistrationRequest{ResponseTypes: []string{"code"}, GrantTypes: []string{GrantClientCredentials}},
			wantCode: ErrCodeInvalidClientMetadata},
		{name: "jwks not an object", md: RegistrationRequest{TokenEndpointAuthMethod: "private_key_jwt", JWKS: json.RawMessage(`"keys"`)},
			wantCode: ErrCodeInvalidClientMetadata},
		{name: "relative redirect", md: RegistrationRequest{RedirectURIs: []string{"/cb"}}, wantCode: ErrCodeInvalidRedirectURI},
		{name: "second redirect bad", md: RegistrationRequest{RedirectURIs: []string{"https://a.example/cb", "http://a.example/cb"}},
			wantCode: ErrCodeInvalidRedirectURI},
		{name: "launch right", md: RegistrationRequest{CanCreateLaunch: true}, wantCode: ErrCodeInvalidClientMetadata},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, method, err := clientInputFromMetadata("clinic", tc.md)
			if tc.wantCode != "" {
				var rerr *RegistrationError
				if !errors.As(err, &rerr) || rerr.Code != tc.wantCode || rerr.Description == "" || !errors.Is(err, ErrInvalid) {
					t.Fatalf("got %v, want a RegistrationError %s wrapping ErrInvalid", err, tc.wantCode)
				}
				return
			}
			if err != nil || in.Type != tc.wantType || method != tc.wantMethod || !slices.Equal(in.GrantTypes, tc.wantGrants) ||
				in.CanCreateLaunch || in.ID != "" || len(in.JWKS) != 0 {
				t.Fatalf("got %+v, %q, %v; want type %s, method %s, grants %v", in, method, err, tc.wantType, tc.wantMethod, tc.wantGrants)
			}
		})
	}
}

// registrationFixture is a service over a fresh store of each backend with
// the tenants alpha and beta; PostgreSQL only when TEST_DATABASE_URL is set.
func registrationFixture(t *testing.T, test func(t *testing.T, svc *Service, store storage.Storage, clock *opsClock)) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		for _, id := range []string{"alpha", "beta"} {
			fx.tenant(t, id)
		}
		test(t, fx.svc, fx.store, fx.clock)
	})
}

var backendRegistration = RegistrationRequest{ClientName: "Export", GrantTypes: []string{GrantClientCredentials}, Scope: "system/*.rs"}

// backendsAllowed lets a token register backendRegistration.
var backendsAllowed = InitialAccessAllowance{BackendServices: true}

func TestCreateInitialAccessToken(t *testing.T) {
	registrationFixture(t, func(t *testing.T, svc *Service, store storage.Storage, clock *opsClock) {
		ctx := t.Context()
		admin := Actor{ID: "admin-1", SourceIP: "192.0.2.1"}
		token, exp, err := svc.CreateInitialAccessToken(ctx, "alpha", 0, InitialAccessAllowance{}, admin)
		if err != nil {
			t.Fatal(err)
		}
		if raw, err := base64.RawURLEncoding.DecodeString(token); err != nil || len(raw) != 32 {
			t.Fatalf("token %q is not 256 random bits in base64url: %v", token, err)
		}
		if !exp.Equal(clock.Now().Add(24 * time.Hour)) {
			t.Fatalf("expires %v, want 24h from now", exp)
		}
		// Stored by its digest alone: the raw token finds nothing.
		if _, err := store.GetToken(ctx, "alpha", storage.KindInitialAccess, token); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("raw token looked up: %v, want ErrNotFound", err)
		}
		sum := sha256.Sum256([]byte(token))
		rec, err := store.GetToken(ctx, "alpha", storage.KindInitialAccess, hex.EncodeToString(sum[:]))
		if err != nil || !rec.Active || rec.Subject != admin.ID || !rec.ExpiresAt.Equal(exp) || bytes.Contains(rec.Data, []byte(token)) {
			t.Fatalf("stored record %+v, %v", rec, err)
		}
		events, err := store.ListAudit(ctx, "alpha", storage.AuditFilter{Type: "admin.initial_access_token.create"})
		if err != nil || len(events) != 1 || events[0].ActorID != admin.ID || events[0].Details["token_ref"] == "" ||
			events[0].Details["backend_services"] != "false" {
			t.Fatalf("audit %+v, %v", events, err)
		}

		// The allowance is kept with the token and recorded in the trail.
		backend, _, err := svc.CreateInitialAccessToken(ctx, "alpha", 0, backendsAllowed, admin)
		if err != nil {
			t.Fatal(err)
		}
		sum = sha256.Sum256([]byte(backend))
		rec, err = store.GetToken(ctx, "alpha", storage.KindInitialAccess, hex.EncodeToString(sum[:]))
		if allow, aerr := allowanceOf(rec); err != nil || aerr != nil || allow != backendsAllowed {
			t.Fatalf("stored allowance of %+v: %+v, %v, %v", rec, allow, err, aerr)
		}
		events, err = store.ListAudit(ctx, "alpha", storage.AuditFilter{Type: "admin.initial_access_token.create"})
		if err != nil || len(events) != 2 || events[1].Details["backend_services"] != "true" {
			t.Fatalf("audit %+v, %v", events, err)
		}

		_, exp, err = svc.CreateInitialAccessToken(ctx, "alpha", MaxInitialAccessTTL, InitialAccessAllowance{}, admin)
		if err != nil || !exp.Equal(clock.Now().Add(MaxInitialAccessTTL)) {
			t.Fatalf("30-day token: %v, %v", exp, err)
		}
		for _, ttl := range []time.Duration{-time.Second, MaxInitialAccessTTL + time.Second} {
			if _, _, err := svc.CreateInitialAccessToken(ctx, "alpha", ttl, InitialAccessAllowance{}, admin); !errors.Is(err, ErrInvalid) {
				t.Errorf("ttl %s: %v, want ErrInvalid", ttl, err)
			}
		}
		if _, _, err := svc.CreateInitialAccessToken(ctx, "nowhere", 0, InitialAccessAllowance{}, admin); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("unknown tenant: %v, want ErrNotFound", err)
		}
	})
}

func TestRegisterClient(t *testing.T) {
	registrationFixture(t, func(t *testing.T, svc *Service, store storage.Storage, clock *opsClock) {
		ctx := t.Context()
		admin := Actor{ID: "admin-1"}
		token, _, err := svc.CreateInitialAccessToken(ctx, "alpha", time.Hour, backendsAllowed, admin)
		if err != nil {
			t.Fatal(err)
		}
		key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES384", Use: "sig"}}})
		md := RegistrationRequest{ClientName: "Chart", TokenEndpointAuthMethod: "private_key_jwt", JWKS: jwks,
			RedirectURIs: []string{"https://chart.example/cb"}, GrantTypes: []string{GrantAuthorizationCode, GrantClientCredentials},
			ResponseTypes: []string{"code"}, Scope: "openid  launch patient/*.rs", LaunchURI: "https://chart.example/launch"}
		res, err := svc.RegisterClient(ctx, "alpha", token, md, "198.51.100.7")
		if err != nil {
			t.Fatal(err)
		}
		c, err := store.GetClient(ctx, "alpha", res.ClientID)
		if err != nil {
			t.Fatal(err)
		}
		if c.Type != storage.ClientConfidentialAsymmetric || c.CanCreateLaunch || len(c.JWKS) == 0 || c.LaunchURI != md.LaunchURI ||
			!slices.Equal(c.Scopes, []string{"openid", "launch", "patient/*.rs"}) || !slices.Equal(c.RedirectURIs, md.RedirectURIs) {
			t.Fatalf("stored client %+v", c)
		}
		if res.ClientSecret != "" || res.ClientSecretExpiresAt != nil || res.ClientIDIssuedAt != clock.Now().Unix() ||
			res.Scope != "openid launch patient/*.rs" || res.TokenEndpointAuthMethod != "private_key_jwt" ||
			!slices.Equal(res.ResponseTypes, []string{"code"}) || !bytes.Equal(res.JWKS, c.JWKS) || !slices.Equal(res.GrantTypes, c.GrantTypes) {
			t.Fatalf("response %+v", res)
		}
		// CreateClient's own event names registration as the actor, from where it came.
		created, err := store.ListAudit(ctx, "alpha", storage.AuditFilter{Type: "admin.client.create"})
		if err != nil || len(created) != 1 || created[0].ActorID != "registration" || created[0].SourceIP != "198.51.100.7" {
			t.Fatalf("admin.client.create %+v, %v", created, err)
		}

		// Single use, and the record says it is used.
		if _, err := svc.RegisterClient(ctx, "alpha", token, backendRegistration, ""); !errors.Is(err, ErrInvalidInitialAccessToken) {
			t.Fatalf("reuse: %v, want ErrInvalidInitialAccessToken", err)
		}
		sum := sha256.Sum256([]byte(token))
		if rec, err := store.GetToken(ctx, "alpha", storage.KindInitialAccess, hex.EncodeToString(sum[:])); err != nil || rec.Active {
			t.Fatalf("used token record %+v, %v", rec, err)
		}

		// Expiry follows the service clock: good a second before, refused at it.
		expiring, _, err := svc.CreateInitialAccessToken(ctx, "beta", time.Minute, backendsAllowed, admin)
		if err != nil {
			t.Fatal(err)
		}
		clock.Add(time.Minute)
		if _, err := svc.RegisterClient(ctx, "beta", expiring, backendRegistration, ""); !errors.Is(err, ErrInvalidInitialAccessToken) {
			t.Fatalf("expired: %v, want ErrInvalidInitialAccessToken", err)
		}
		fresh, _, err := svc.CreateInitialAccessToken(ctx, "beta", time.Minute, backendsAllowed, admin)
		if err != nil {
			t.Fatal(err)
		}
		clock.Add(time.Minute - time.Second)
		if _, err := svc.RegisterClient(ctx, "alpha", fresh, backendRegistration, ""); !errors.Is(err, ErrInvalidInitialAccessToken) {
			t.Fatalf("beta's token at alpha: %v, want ErrInvalidInitialAccessToken", err)
		}
		if _, err := svc.RegisterClient(ctx, "beta", fresh, backendRegistration, ""); err != nil {
			t.Fatalf("a second before expiry: %v", err)
		}

		// Every refusal is in the audit trail with its reason.
		var reasons []string
		for _, tenant := range []string{"alpha", "beta"} {
			events, err := store.ListAudit(ctx, tenant, storage.AuditFilter{Type: "client.register"})
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range events {
				reasons = append(reasons, ev.Outcome+":"+ev.Details["reason"])
			}
		}
		slices.Sort(reasons)
		want := []string{"failure:expired_token", "failure:unknown_token", "failure:used_token", "success:", "success:"}
		if !slices.Equal(reasons, want) {
			t.Fatalf("client.register outcomes %v, want %v", reasons, want)
		}
	})
}

func TestRegisterClientTokenRace(t *testing.T) {
	registrationFixture(t, func(t *testing.T, svc *Service, store storage.Storage, _ *opsClock) {
		token, _, err := svc.CreateInitialAccessToken(t.Context(), "alpha", 0, backendsAllowed, Actor{ID: "admin-1"})
		if err != nil {
			t.Fatal(err)
		}
		const racers = 8
		errs := make(chan error, racers)
		for range racers {
			go func() {
				_, err := svc.RegisterClient(context.Background(), "alpha", token, backendRegistration, "")
				errs <- err
			}()
		}
		won := 0
		for range racers {
			err := <-errs
			switch {
			case err == nil:
				won++
			case !errors.Is(err, ErrInvalidInitialAccessToken):
				t.Errorf("loser got %v, want ErrInvalidInitialAccessToken", err)
			}
		}
		clients, err := store.ListClients(t.Context(), "alpha")
		if won != 1 || err != nil || len(clients) != 1 {
			t.Fatalf("%d registrations won, %d clients (%v); want exactly one", won, len(clients), err)
		}
	})
}

func TestRegisterClientRefusedMetadataKeepsToken(t *testing.T) {
	registrationFixture(t, func(t *testing.T, svc *Service, store storage.Storage, _ *opsClock) {
		ctx := t.Context()
		token, _, err := svc.CreateInitialAccessToken(ctx, "alpha", 0, backendsAllowed, Actor{ID: "admin-1"})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			md   RegistrationRequest
			code string
		}{
			{"http redirect", RegistrationRequest{ClientName: "A", RedirectURIs: []string{"http://a.example/cb"}, Scope: "openid"}, ErrCodeInvalidRedirectURI},
			{"no name", RegistrationRequest{RedirectURIs: []string{"https://a.example/cb"}, Scope: "openid"}, ErrCodeInvalidClientMetadata},
			{"no redirect for code", RegistrationRequest{ClientName: "A", Scope: "openid"}, ErrCodeInvalidClientMetadata},
			{"bad scope", RegistrationRequest{ClientName: "A", RedirectURIs: []string{"https://a.example/cb"}, Scope: `a"b`}, ErrCodeInvalidClientMetadata},
			{"jwks for a secret client", RegistrationRequest{ClientName: "A", RedirectURIs: []string{"https://a.example/cb"}, Scope: "openid",
				JWKSURI: "https://a.example/jwks"}, ErrCodeInvalidClientMetadata},
		} {
			_, err := svc.RegisterClient(ctx, "alpha", token, tc.md, "")
			var rerr *RegistrationError
			if !errors.As(err, &rerr) || rerr.Code != tc.code {
				t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
			}
		}
		if _, err := svc.RegisterClient(ctx, "alpha", token, backendRegistration, ""); err != nil {
			t.Fatalf("after refused metadata the token should still register: %v", err)
		}
		events, err := store.ListAudit(ctx, "alpha", storage.AuditFilter{Type: "client.register"})
		if err != nil || len(events) != 6 || events[0].Outcome != "failure" || events[0].Details["error"] != ErrCodeInvalidRedirectURI ||
			events[0].Details["reason"] == "" {
			t.Fatalf("client.register events %+v, %v", events, err)
		}
	})
}

func TestWithinAllowance(t *testing.T) {
	app := func(grants []string, scopes ...string) storage.Client {
		return storage.Client{GrantTypes: grants, Scopes: scopes}
	}
	code := []string{GrantAuthorizationCode, GrantRefreshToken}
	backend := []string{GrantClientCredentials}
	tests := []struct {
		name    string
		client  storage.Client
		allow   InitialAccessAllowance
		refused bool
	}{
		{"user-facing app", app(code, "openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter",
			"offline_access", "online_access", "patient/*.rs", "user/Observation.rs?category=laboratory", "patient/Patient.read"), InitialAccessAllowance{}, false},
		{"system scope", app(code, "openid", "system/*.rs"), InitialAccessAllowance{}, true},
		{"system v1 scope", app(code, "system/Patient.read"), InitialAccessAllowance{}, true},
		{"client credentials", app(backend, "patient/*.rs"), InitialAccessAllowance{}, true},
		{"backend service allowed", app(backend, "system/*.cruds"), backendsAllowed, false},
		{"backend service with an app's grants", app(append(code, GrantClientCredentials), "openid", "system/*.rs", "user/*.rs"), backendsAllowed, false},
		{"token exchange", app([]string{GrantTokenExchange}, "openid"), InitialAccessAllowance{}, true},
		{"token exchange with backends allowed", app([]string{GrantTokenExchange}, "openid"), backendsAllowed, true},
		{"custom scope", app(code, "openid", "__photo.manage"), InitialAccessAllowance{}, true},
		{"custom scope with backends allowed", app(backend, "system/*.rs", "email"), backendsAllowed, true},
		{"admin scope with backends allowed", app(backend, AdminScope), backendsAllowed, true},
		{"malformed SMART scope", app(code, "patient/*.xyz"), InitialAccessAllowance{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := withinAllowance(tc.client, tc.allow)
			if !tc.refused {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var rerr *RegistrationError
			if !errors.As(err, &rerr) || rerr.Code != ErrCodeInvalidClientMetadata || rerr.Description == "" {
				t.Fatalf("got %v, want invalid_client_metadata", err)
			}
		})
	}
}

func TestRegisterClientAllowance(t *testing.T) {
	registrationFixture(t, func(t *testing.T, svc *Service, store storage.Storage, _ *opsClock) {
		ctx := t.Context()
		admin := Actor{ID: "admin-1"}
		plain, _, err := svc.CreateInitialAccessToken(ctx, "alpha", 0, InitialAccessAllowance{}, admin)
		if err != nil {
			t.Fatal(err)
		}
		userApp := RegistrationRequest{ClientName: "Chart", TokenEndpointAuthMethod: "none", RedirectURIs: []string{"https://chart.example/cb"},
			GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken}, Scope: "openid fhirUser launch/patient patient/*.rs offline_access"}
		exchange := RegistrationRequest{ClientName: "Bridge", GrantTypes: []string{GrantTokenExchange}, Scope: "openid user/*.rs"}
		for _, tc := range []struct {
			name string
			md   RegistrationRequest
			want string // in the description
		}{
			{"backend service", backendRegistration, "backend services"},
			{"system scope on an app", RegistrationRequest{ClientName: "A", RedirectURIs: []string{"https://a.example/cb"}, Scope: "openid system/*.cruds"}, "system/*.cruds"},
			{"token exchange", exchange, GrantTokenExchange},
			{"launch right", RegistrationRequest{ClientName: "EHR", RedirectURIs: []string{"https://a.example/cb"}, Scope: "openid", CanCreateLaunch: true}, "can_create_launch"},
		} {
			_, err := svc.RegisterClient(ctx, "alpha", plain, tc.md, "")
			var rerr *RegistrationError
			if !errors.As(err, &rerr) || rerr.Code != ErrCodeInvalidClientMetadata || !strings.Contains(rerr.Description, tc.want) {
				t.Errorf("%s: %v, want invalid_client_metadata naming %q", tc.name, err, tc.want)
			}
		}
		// The refusals left the token usable for what it does allow.
		res, err := svc.RegisterClient(ctx, "alpha", plain, userApp, "")
		if err != nil {
			t.Fatalf("user-facing app after refusals: %v", err)
		}
		if c, err := store.GetClient(ctx, "alpha", res.ClientID); err != nil || c.CanCreateLaunch || slices.Contains(c.GrantTypes, GrantClientCredentials) {
			t.Fatalf("registered %+v, %v", c, err)
		}

		// An admin's allowance lets backend services through, and nothing more.
		backend, _, err := svc.CreateInitialAccessToken(ctx, "alpha", 0, backendsAllowed, admin)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.RegisterClient(ctx, "alpha", backend, exchange, ""); !errors.Is(err, ErrInvalid) {
			t.Fatalf("token exchange with backends allowed: %v, want refused", err)
		}
		// Even allowed, a backend service gets no patient scopes: it has no patient.
		patientBackend := RegistrationRequest{ClientName: "Export", GrantTypes: []string{GrantClientCredentials}, Scope: "patient/*.read launch/patient"}
		var rerr *RegistrationError
		if _, err := svc.RegisterClient(ctx, "alpha", backend, patientBackend, ""); !errors.As(err, &rerr) ||
			rerr.Code != ErrCodeInvalidClientMetadata || !strings.Contains(rerr.Description, `"patient/*.read"`) {
			t.Fatalf("backend service with patient scopes: %v, want invalid_client_metadata naming patient/*.read", err)
		}
		res, err = svc.RegisterClient(ctx, "alpha", backend, backendRegistration, "")
		if err != nil || !slices.Equal(res.GrantTypes, []string{GrantClientCredentials}) || res.Scope != "system/*.rs" {
			t.Fatalf("backend service with the allowance: %+v, %v", res, err)
		}
		clients, err := store.ListClients(ctx, "alpha")
		if err != nil || len(clients) != 2 {
			t.Fatalf("clients %+v, %v; want the app and the backend service", clients, err)
		}
	})
}

func TestInitialAccessTokensListAndRevoke(t *testing.T) {
	registrationFixture(t, func(t *testing.T, svc *Service, store storage.Storage, clock *opsClock) {
		ctx := t.Context()
		admin := Actor{ID: "admin-1", SourceIP: "192.0.2.1"}
		issue := func(tenant string, ttl time.Duration, allow InitialAccessAllowance) string {
			t.Helper()
			token, _, err := svc.CreateInitialAccessToken(ctx, tenant, ttl, allow, admin)
			if err != nil {
				t.Fatal(err)
			}
			clock.Add(time.Second)
			return token
		}
		used := issue("alpha", 0, backendsAllowed)
		short := issue("alpha", time.Minute, InitialAccessAllowance{})
		first := issue("alpha", 0, InitialAccessAllowance{})
		second := issue("alpha", 2*time.Hour, backendsAllowed)
		issue("beta", 0, backendsAllowed)
		if _, err := svc.RegisterClient(ctx, "alpha", used, backendRegistration, ""); err != nil {
			t.Fatal(err)
		}
		clock.Add(time.Minute)

		got, err := svc.ListInitialAccessTokens(ctx, "alpha")
		if err != nil {
			t.Fatal(err)
		}
		ref := func(token string) string {
			sum := sha256.Sum256([]byte(token))
			return hex.EncodeToString(sum[:])[:16]
		}
		if len(got) != 2 || got[0].Ref != ref(first) || got[1].Ref != ref(second) || got[0].Allowance.BackendServices ||
			!got[1].Allowance.BackendServices || got[1].CreatedBy != admin.ID || !got[1].ExpiresAt.Equal(got[1].CreatedAt.Add(2*time.Hour)) {
			t.Fatalf("outstanding %+v; want first and second, not the used %s or the expired %s", got, ref(used), ref(short))
		}

		if err := svc.RevokeInitialAccessToken(ctx, "alpha", ref(second), admin); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.RegisterClient(ctx, "alpha", second, backendRegistration, ""); !errors.Is(err, ErrInvalidInitialAccessToken) {
			t.Fatalf("register with a revoked token: %v", err)
		}
		for _, tc := range []struct{ name, tenant, ref string }{
			{"revoked twice", "alpha", ref(second)},
			{"used", "alpha", ref(used)},
			{"expired", "alpha", ref(short)},
			{"another tenant's", "beta", ref(first)},
			{"empty", "alpha", ""},
			{"the whole token", "alpha", first},
		} {
			if err := svc.RevokeInitialAccessToken(ctx, tc.tenant, tc.ref, admin); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("revoke %s: %v, want ErrNotFound", tc.name, err)
			}
		}
		if _, err := svc.ListInitialAccessTokens(ctx, "nowhere"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("list of an unknown tenant: %v, want ErrNotFound", err)
		}
		got, err = svc.ListInitialAccessTokens(ctx, "alpha")
		if err != nil || len(got) != 1 || got[0].Ref != ref(first) {
			t.Fatalf("after revoking: %+v, %v", got, err)
		}
		events, err := store.ListAudit(ctx, "alpha", storage.AuditFilter{Type: "admin.initial_access_token.revoke"})
		if err != nil || len(events) != 1 || events[0].ActorID != admin.ID || events[0].SourceIP != admin.SourceIP ||
			events[0].Details["token_ref"] != ref(second) || events[0].Details["backend_services"] != "true" {
			t.Fatalf("revoke events %+v, %v", events, err)
		}
	})
}
