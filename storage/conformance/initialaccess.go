package conformance

import (
	"testing"
	"time"

	"github.com/smartauth/smartauth/storage"
)

// testListActiveTokens checks that ListActiveTokens, by which admins see the
// initial access tokens still outstanding, leaves out used and expired
// records, other kinds and other tenants, and orders the rest by age.
func testListActiveTokens(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	mustCreateTenant(t, s, "globex")
	now := t0().Add(time.Hour)

	token := func(tenantID, sig string, created, expires time.Time) storage.Token {
		tok := tokenFixture(tenantID, storage.KindInitialAccess, sig, "req-"+sig, "")
		tok.CreatedAt, tok.ExpiresAt = created, expires
		return tok
	}
	newer := token("acme", "sig-newer", t0().Add(2*time.Minute), now.Add(time.Hour))
	older := token("acme", "sig-older", t0().Add(time.Minute), now.Add(time.Minute))
	// Same creation time as newer: the signature breaks the tie.
	sameTime := token("acme", "sig-a-same-time", newer.CreatedAt, now.Add(time.Hour))
	used := token("acme", "sig-used", t0(), now.Add(time.Hour))
	expiresNow := token("acme", "sig-expires-now", t0(), now)
	expired := token("acme", "sig-expired", t0(), now.Add(-time.Second))
	otherKind := tokenFixture("acme", storage.KindAccessToken, "sig-access", "req-access", "app")
	otherKind.ExpiresAt = now.Add(time.Hour)
	otherTenant := token("globex", "sig-newer", t0(), now.Add(time.Hour))
	for _, tok := range []storage.Token{newer, older, sameTime, used, expiresNow, expired, otherKind, otherTenant} {
		must(t, "create "+tok.TenantID+"/"+tok.Signature, s.CreateToken(ctx, tok))
	}
	_, err := s.ConsumeToken(ctx, "acme", storage.KindInitialAccess, used.Signature)
	must(t, "consume a token", err)

	got, err := s.ListActiveTokens(ctx, "acme", storage.KindInitialAccess, now)
	must(t, "list active initial access tokens", err)
	mustEqual(t, "active initial access tokens of acme", got, []storage.Token{older, sameTime, newer})

	got, err = s.ListActiveTokens(ctx, "globex", storage.KindInitialAccess, now)
	must(t, "list globex's tokens", err)
	mustEqual(t, "active initial access tokens of globex", got, []storage.Token{otherTenant})

	got, err = s.ListActiveTokens(ctx, "acme", storage.KindInitialAccess, now.Add(2*time.Hour))
	must(t, "list once all have expired", err)
	if len(got) != 0 {
		t.Fatalf("list once all have expired: got %d records, want none", len(got))
	}
	got, err = s.ListActiveTokens(ctx, "ghost", storage.KindInitialAccess, now)
	must(t, "list an unknown tenant's tokens", err)
	if len(got) != 0 {
		t.Fatalf("list an unknown tenant's tokens: got %d records, want none", len(got))
	}
}
