package manage

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/storage"
)

func TestRetireKey(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		fx.tenant(t, "clinic")
		fx.tenant(t, "other")
		list := func(t *testing.T, tenantID string) map[string]storage.SigningKey {
			t.Helper()
			ks, err := fx.store.ListSigningKeys(ctx, tenantID)
			if err != nil {
				t.Fatal(err)
			}
			byKID := map[string]storage.SigningKey{}
			for _, k := range ks {
				byKID[k.KID] = k
			}
			return byKID
		}
		// active returns the tenant's active key of alg.
		active := func(t *testing.T, tenantID, alg string) storage.SigningKey {
			t.Helper()
			for _, k := range list(t, tenantID) {
				if k.Status == storage.KeyActive && k.Alg == alg {
					return k
				}
			}
			t.Fatalf("tenant %s has no active %s key", tenantID, alg)
			return storage.SigningKey{}
		}
		firstRS := active(t, "clinic", "RS256")
		who := Actor{ID: "op", SourceIP: "192.0.2.12"}

		refusals := []struct {
			name, tenant, kid string
			want              error
			says              string
		}{
			{"the only active RS256 key", "clinic", firstRS.KID, ErrInvalid, "rotate"},
			{"an unknown key", "clinic", "no-such-kid", storage.ErrNotFound, ""},
			{"a key of another tenant", "other", firstRS.KID, storage.ErrNotFound, ""},
			{"a key of an unknown tenant", "ghost", firstRS.KID, storage.ErrNotFound, ""},
		}
		for _, tc := range refusals {
			for _, compromised := range []bool{false, true} {
				mustRefuse(t, tc.name, fx.svc.RetireKey(ctx, tc.tenant, tc.kid, compromised, who), tc.want, tc.says)
			}
		}
		if k := list(t, "clinic")[firstRS.KID]; k.Status != storage.KeyActive {
			t.Fatalf("a refused retirement changed the key: %+v", k)
		}

		firstES := active(t, "clinic", "ES256")
		if _, err := fx.svc.RotateKeys(ctx, "clinic", keys.DefaultRetirement, who); err != nil {
			t.Fatal(err)
		}
		fx.clock.Add(time.Minute)

		// Retired in the ordinary way, a rotated-out key leaves ahead of its
		// window but stays published as long as a token it signed may live.
		if err := fx.svc.RetireKey(ctx, "clinic", firstES.KID, false, who); err != nil {
			t.Fatal(err)
		}
		if k := list(t, "clinic")[firstES.KID]; k.Status != storage.KeyRetiring || !k.RetiresAt.Equal(fx.clock.Now().Add(time.Hour)) {
			t.Fatalf("key %s retired in the ordinary way is %s until %v; want retiring in an hour, the access token lifetime", k.KID, k.Status, k.RetiresAt)
		}
		if set, err := fx.km.PublicJWKS(ctx, "clinic"); err != nil || len(set.Key(firstES.KID)) == 0 {
			t.Fatalf("a key retired in the ordinary way left the JWKS at once: %v", err)
		}
		e := fx.lastEvent(t, "clinic", "admin.keys.retire", who, "")
		if e.Details["kid"] != firstES.KID || e.Details["compromised"] != "false" {
			t.Fatalf("audit details %v", e.Details)
		}

		// A compromised one goes at once.
		retiredAt := fx.clock.Now()
		if err := fx.svc.RetireKey(ctx, "clinic", firstRS.KID, true, who); err != nil {
			t.Fatal(err)
		}
		k := list(t, "clinic")[firstRS.KID]
		if k.Status != storage.KeyRetiring || !k.RetiresAt.Equal(retiredAt) {
			t.Fatalf("retired key %s is %s until %v; want retiring at %v", k.KID, k.Status, k.RetiresAt, retiredAt)
		}
		// The service's own key manager, whose list was cached by the
		// rotation, neither signs with it nor publishes it from now on.
		km := fx.km
		set, err := km.PublicJWKS(ctx, "clinic")
		if err != nil {
			t.Fatal(err)
		}
		if len(set.Key(firstRS.KID)) != 0 || len(set.Keys) != 3 {
			t.Fatalf("JWKS after retirement holds %d keys, the retired one among them: %v", len(set.Keys), len(set.Key(firstRS.KID)) != 0)
		}
		signer, err := km.ActiveKey(ctx, "clinic", "RS256")
		if err != nil || signer.KeyID == firstRS.KID {
			t.Fatalf("signing key after retirement: %s, %v", signer.KeyID, err)
		}
		e = fx.lastEvent(t, "clinic", "admin.keys.retire", who, "")
		if e.Details["kid"] != firstRS.KID || e.Details["alg"] != "RS256" || e.Details["was"] != "retiring" || e.Details["compromised"] != "true" {
			t.Fatalf("audit details %v", e.Details)
		}
		for k, v := range e.Details {
			if len(v) > 100 {
				t.Fatalf("audit detail %s holds key material", k)
			}
		}
		// The other tenant's keys are untouched.
		if k := active(t, "other", "RS256"); k.Status != storage.KeyActive {
			t.Fatalf("the other tenant's key changed: %+v", k)
		}

		// Retiring it again never puts its retirement later.
		fx.clock.Add(time.Hour)
		for _, compromised := range []bool{false, true} {
			if err := fx.svc.RetireKey(ctx, "clinic", firstRS.KID, compromised, who); err != nil {
				t.Fatal(err)
			}
			if k := list(t, "clinic")[firstRS.KID]; !k.RetiresAt.Equal(retiredAt) {
				t.Fatalf("a second retirement (compromised %v) moved the time to %v, from %v", compromised, k.RetiresAt, retiredAt)
			}
		}
		// The new RS256 key is now the only active one and stays.
		newRS := active(t, "clinic", "RS256")
		mustRefuse(t, "retire the new only RS256 key", fx.svc.RetireKey(ctx, "clinic", newRS.KID, true, who), ErrInvalid, "only active RS256")
		if es := fx.events(t, "clinic", "admin.keys.retire"); len(es) != 4 {
			t.Fatalf("%d retirements audited, want 4", len(es))
		}
	})
}

func TestRevokeConsent(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		fx.tenant(t, "clinic")
		fx.tenant(t, "other")
		setup := Actor{ID: "setup"}
		u, err := fx.svc.CreateUser(ctx, UserInput{TenantID: "clinic", Email: "pat@clinic.example"}, setup)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := fx.svc.CreateClient(ctx, ClientInput{TenantID: "clinic", ID: "app", Name: "App", Type: storage.ClientPublic,
			RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"patient/*.rs"}}, setup); err != nil {
			t.Fatal(err)
		}
		if err := fx.store.SaveConsent(ctx, storage.Consent{TenantID: "clinic", UserID: u.ID, ClientID: "app", Scopes: []string{"patient/*.rs"},
			CreatedAt: fx.clock.Now()}); err != nil {
			t.Fatal(err)
		}
		who := Actor{ID: "op", SourceIP: "192.0.2.13"}
		tests := []struct {
			name, tenant, user, client string
			err                        error
		}{
			{"through another tenant", "other", u.ID, "app", storage.ErrNotFound},
			{"to another client", "clinic", u.ID, "other-app", storage.ErrNotFound},
			{"given", "clinic", u.ID, "app", nil},
			{"revoked already", "clinic", u.ID, "app", storage.ErrNotFound},
		}
		for _, tc := range tests {
			err := fx.svc.RevokeConsent(ctx, tc.tenant, tc.user, tc.client, who)
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("%s: got %v, want %v", tc.name, err, tc.err)
			}
		}
		if _, err := fx.store.GetConsent(ctx, "clinic", u.ID, "app", fx.clock.Now()); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("the consent is still there: %v", err)
		}
		e := fx.lastEvent(t, "clinic", "admin.consent.revoke", who, u.ID)
		if e.Details["client_id"] != "app" {
			t.Fatalf("audit details %v", e.Details)
		}
		if es := fx.events(t, "clinic", "admin.consent.revoke"); len(es) != 1 {
			t.Fatalf("%d revocations audited, want 1", len(es))
		}
	})
}

// TestRotateKeysRetirementWindow: the window is bounded on both sides, and
// a refused rotation leaves the keys as they were.
func TestRotateKeysRetirementWindow(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		fx.tenant(t, "clinic")
		who := Actor{ID: "op"}
		count := func(t *testing.T) int {
			t.Helper()
			ks, err := fx.store.ListSigningKeys(ctx, "clinic")
			if err != nil {
				t.Fatal(err)
			}
			return len(ks)
		}
		before := count(t)
		for _, tc := range []struct {
			name   string
			window time.Duration
			says   string // part of the refusal; empty when accepted
		}{
			{"negative", -time.Hour, "negative"},
			{"a day past the cap", MaxRetirement + 24*time.Hour, "longer than the most allowed"},
			{"999999 hours", 999999 * time.Hour, "30 days"},
			{"a nanosecond past the cap", MaxRetirement + 1, "longer than the most allowed"},
		} {
			_, err := fx.svc.RotateKeys(ctx, "clinic", tc.window, who)
			mustRefuse(t, tc.name, err, ErrInvalid, tc.says)
		}
		if n := count(t); n != before {
			t.Fatalf("refused rotations changed the keys: %d, was %d", n, before)
		}
		for _, window := range []time.Duration{time.Hour, keys.DefaultRetirement, MaxRetirement} {
			if _, err := fx.svc.RotateKeys(ctx, "clinic", window, who); err != nil {
				t.Fatalf("retirement window %s: %v", window, err)
			}
		}
	})
}

// TestRotateKeysRetirementFloor: a window shorter than the longest lifetime
// of a token the old keys signed is refused, naming that lifetime, so
// rotation never cuts off tokens already issued.
func TestRotateKeysRetirementFloor(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		fx.tenant(t, "clinic")
		who := Actor{ID: "op"}
		steps := []struct {
			name   string
			change func(t *testing.T)
			floor  time.Duration
			what   string
		}{
			{"server default", func(*testing.T) {}, time.Hour, "the access token lifetime"},
			{"tenant's access token lifetime", func(t *testing.T) {
				if _, err := fx.svc.UpdateTenant(ctx, TenantUpdate{ID: "clinic", FHIRBaseURLs: []string{"https://fhir.example/clinic"},
					AccessTokenTTL: 2 * time.Hour}, who); err != nil {
					t.Fatal(err)
				}
			}, 2 * time.Hour, "the tenant's access token lifetime"},
			{"a client's own", func(t *testing.T) {
				if _, _, err := fx.svc.CreateClient(ctx, ClientInput{TenantID: "clinic", ID: "export", Name: "Export", Type: storage.ClientConfidentialSymmetric,
					Scopes: []string{"system/*.rs"}, GrantTypes: []string{GrantClientCredentials}, AccessTokenTTL: 3 * time.Hour}, who); err != nil {
					t.Fatal(err)
				}
			}, 3 * time.Hour, `the access token lifetime of client "export"`},
			{"the ID token lifetime", func(t *testing.T) {
				if _, err := fx.svc.UpdateTenant(ctx, TenantUpdate{ID: "clinic", FHIRBaseURLs: []string{"https://fhir.example/clinic"},
					AccessTokenTTL: 2 * time.Hour, IDTokenTTL: 4 * time.Hour}, who); err != nil {
					t.Fatal(err)
				}
			}, 4 * time.Hour, "the ID token lifetime"},
		}
		for _, st := range steps {
			t.Run(st.name, func(t *testing.T) {
				st.change(t)
				before, err := fx.store.ListSigningKeys(ctx, "clinic")
				if err != nil {
					t.Fatal(err)
				}
				for _, window := range []time.Duration{0, time.Second, st.floor - time.Second} {
					_, err := fx.svc.RotateKeys(ctx, "clinic", window, who)
					mustRefuse(t, window.String(), err, ErrInvalid, fmt.Sprintf("shorter than %s, %s", st.what, st.floor))
				}
				if after, _ := fx.store.ListSigningKeys(ctx, "clinic"); len(after) != len(before) {
					t.Fatalf("refused rotations changed the keys: %d, was %d", len(after), len(before))
				}
				if floor, what, err := fx.svc.RetirementFloor(ctx, "clinic"); err != nil || floor != st.floor || what != st.what {
					t.Fatalf("RetirementFloor = %s %q %v, want %s %q", floor, what, err, st.floor, st.what)
				}
				if _, err := fx.svc.RotateKeys(ctx, "clinic", st.floor, who); err != nil {
					t.Fatalf("window of exactly %s: %v", st.floor, err)
				}
			})
		}
	})
}
