package conformance

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/smartauth/smartauth/storage"
)

func consentFixture(tenantID, userID, clientID string) storage.Consent {
	return storage.Consent{
		TenantID:  tenantID,
		UserID:    userID,
		ClientID:  clientID,
		Scopes:    []string{"openid", "fhirUser", "launch", "patient/Observation.rs?category=laboratory|" + tenantID},
		CreatedAt: t0(),
		ExpiresAt: t0().Add(30 * 24 * time.Hour),
	}
}

// testGetLaunch: GetLaunch answers as ConsumeLaunch would, and never uses
// a launch up.
func testGetLaunch(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	l1 := launchFixture("acme", "l1")
	must(t, "create launch", s.CreateLaunch(ctx, l1))

	_, err := s.GetLaunch(ctx, "acme", "nope", t0())
	mustErr(t, "get unknown launch", err, storage.ErrNotFound)
	for i := range 2 {
		got, err := s.GetLaunch(ctx, "acme", "l1", t0())
		must(t, label("get launch, time %d", i+1), err)
		mustEqual(t, label("launch, time %d", i+1), got, l1)
	}
	_, err = s.GetLaunch(ctx, "acme", "l1", l1.ExpiresAt.Truncate(time.Microsecond))
	mustErr(t, "get launch at expiry", err, storage.ErrExpired)
	_, err = s.GetLaunch(ctx, "acme", "l1", l1.ExpiresAt.Add(time.Hour))
	mustErr(t, "get launch after expiry", err, storage.ErrExpired)

	// Looking did not use it up: it can still be consumed, once.
	got, err := s.ConsumeLaunch(ctx, "acme", "l1", t0())
	must(t, "consume launch after getting it", err)
	mustEqual(t, "consumed launch", got, l1)
	_, err = s.GetLaunch(ctx, "acme", "l1", t0())
	mustErr(t, "get used launch", err, storage.ErrConsumed)
	_, err = s.GetLaunch(ctx, "acme", "l1", t0().Add(time.Hour))
	mustErr(t, "get used launch after expiry", err, storage.ErrConsumed)

	bare := storage.Launch{TenantID: "acme", ID: "l-bare", CreatedAt: t0(), ExpiresAt: t0().Add(time.Minute)}
	must(t, "create launch without context", s.CreateLaunch(ctx, bare))
	got, err = s.GetLaunch(ctx, "acme", "l-bare", t0())
	must(t, "get launch without context", err)
	mustEqual(t, "launch without context", got, bare)
}

func testConsents(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	for _, u := range []string{"u1", "u2"} {
		must(t, "create user "+u, s.CreateUser(ctx, userFixture("acme", u, u+"@acme.example")))
	}
	for _, c := range []string{"app", "b-app"} {
		must(t, "create client "+c, s.CreateClient(ctx, clientFixture("acme", c)))
	}

	c1 := consentFixture("acme", "u1", "app")
	must(t, "save consent", s.SaveConsent(ctx, c1))
	got, err := s.GetConsent(ctx, "acme", "u1", "app", t0())
	must(t, "get consent", err)
	mustEqual(t, "consent", got, c1)
	_, err = s.GetConsent(ctx, "acme", "u1", "b-app", t0())
	mustErr(t, "get consent to another client", err, storage.ErrNotFound)
	_, err = s.GetConsent(ctx, "acme", "u2", "app", t0())
	mustErr(t, "get consent of another user", err, storage.ErrNotFound)

	// A consent ends at its ExpiresAt, and is still listed until swept.
	_, err = s.GetConsent(ctx, "acme", "u1", "app", c1.ExpiresAt.Add(-time.Microsecond))
	must(t, "get consent just before expiry", err)
	_, err = s.GetConsent(ctx, "acme", "u1", "app", c1.ExpiresAt.Truncate(time.Microsecond))
	mustErr(t, "get consent at expiry", err, storage.ErrNotFound)
	_, err = s.GetConsent(ctx, "acme", "u1", "app", c1.ExpiresAt.Add(time.Hour))
	mustErr(t, "get consent after expiry", err, storage.ErrNotFound)

	// Saving again replaces the scopes and both times.
	replaced := c1
	replaced.Scopes = []string{"openid"}
	replaced.CreatedAt = t0().Add(time.Hour)
	replaced.ExpiresAt = time.Time{}
	must(t, "save consent again", s.SaveConsent(ctx, replaced))
	got, err = s.GetConsent(ctx, "acme", "u1", "app", t0().Add(24*365*100*time.Hour))
	must(t, "get consent without expiry a century on", err)
	mustEqual(t, "replaced consent", got, replaced)

	empty := consentFixture("acme", "u2", "app")
	empty.Scopes = nil
	others := []storage.Consent{consentFixture("acme", "u2", "b-app"), empty, consentFixture("acme", "u1", "b-app")}
	for _, c := range others {
		must(t, "save consent of "+c.UserID+" to "+c.ClientID, s.SaveConsent(ctx, c))
	}
	list, err := s.ListConsents(ctx, "acme", "u2")
	must(t, "list consents of u2", err)
	mustEqual(t, "consents of u2", list, []storage.Consent{empty, others[0]})
	list, err = s.ListConsents(ctx, "acme", "")
	must(t, "list consents of the tenant", err)
	mustEqual(t, "consents of the tenant", list, []storage.Consent{replaced, others[2], empty, others[0]})
	list, err = s.ListConsents(ctx, "acme", "nobody")
	must(t, "list consents of an unknown user", err)
	mustEqual(t, "consents of an unknown user", len(list), 0)

	for _, tc := range []struct {
		name string
		c    storage.Consent
	}{
		{"unknown user", consentFixture("acme", "ghost", "app")},
		{"unknown client", consentFixture("acme", "u1", "ghost")},
		{"unknown tenant", consentFixture("ghost", "u1", "app")},
	} {
		mustErr(t, "save consent of "+tc.name, s.SaveConsent(ctx, tc.c), storage.ErrNotFound)
	}

	must(t, "delete consent", s.DeleteConsent(ctx, "acme", "u1", "app"))
	_, err = s.GetConsent(ctx, "acme", "u1", "app", t0())
	mustErr(t, "get deleted consent", err, storage.ErrNotFound)
	mustErr(t, "delete deleted consent", s.DeleteConsent(ctx, "acme", "u1", "app"), storage.ErrNotFound)
	list, err = s.ListConsents(ctx, "acme", "")
	must(t, "list consents after delete", err)
	mustEqual(t, "consents after delete", list, []storage.Consent{others[2], empty, others[0]})
}

// testDeleteConsentEndsGrants: deleting a consent deactivates the user's
// grant records for that client, and those of that family stored later are
// born inactive; other users' and other clients' grants stay active.
func testDeleteConsentEndsGrants(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	for _, u := range []string{"u1", "u2"} {
		must(t, "create user "+u, s.CreateUser(ctx, userFixture("acme", u, u+"@acme.example")))
	}
	for _, c := range []string{"app", "b-app"} {
		must(t, "create client "+c, s.CreateClient(ctx, clientFixture("acme", c)))
	}
	must(t, "save consent", s.SaveConsent(ctx, consentFixture("acme", "u1", "app")))

	grant := func(sig, requestID, subject, clientID string, kind storage.TokenKind) storage.Token {
		tok := tokenFixture("acme", kind, sig, requestID, clientID)
		tok.Subject = subject
		must(t, "create token "+sig, s.CreateToken(ctx, tok))
		return tok
	}
	ended := []storage.Token{
		grant("u1-app-access", "req-1", "u1", "app", storage.KindAccessToken),
		grant("u1-app-refresh", "req-1", "u1", "app", storage.KindRefreshToken),
		grant("u1-app-refresh-2", "req-2", "u1", "app", storage.KindRefreshToken),
	}
	kept := []storage.Token{
		grant("u2-app-refresh", "req-3", "u2", "app", storage.KindRefreshToken),
		grant("u1-b-app-refresh", "req-4", "u1", "b-app", storage.KindRefreshToken),
	}

	must(t, "delete consent", s.DeleteConsent(ctx, "acme", "u1", "app"))
	for _, tok := range ended {
		got, err := s.GetToken(ctx, "acme", tok.Kind, tok.Signature)
		must(t, "get "+tok.Signature, err)
		if got.Active {
			t.Errorf("%s still active after its consent was deleted", tok.Signature)
		}
	}
	for _, tok := range kept {
		got, err := s.GetToken(ctx, "acme", tok.Kind, tok.Signature)
		must(t, "get "+tok.Signature, err)
		if !got.Active {
			t.Errorf("%s deactivated by deleting another user's or client's consent", tok.Signature)
		}
	}
	// A refresh that was in flight stores its new tokens after the delete:
	// they are born inactive.
	late := grant("u1-app-late", "req-1", "u1", "app", storage.KindAccessToken)
	got, err := s.GetToken(ctx, "acme", late.Kind, late.Signature)
	must(t, "get late token", err)
	if got.Active {
		t.Error("a token stored for a revoked family after the consent was deleted is active")
	}
	mustErr(t, "delete the consent again", s.DeleteConsent(ctx, "acme", "u1", "app"), storage.ErrNotFound)
}

// testConsentsEndWithUserAndClient: deleting a user or a client deletes its
// consents, and only its own.
func testConsentsEndWithUserAndClient(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	for _, u := range []string{"u1", "u2"} {
		must(t, "create user "+u, s.CreateUser(ctx, userFixture("acme", u, u+"@acme.example")))
	}
	for _, c := range []string{"app", "b-app"} {
		must(t, "create client "+c, s.CreateClient(ctx, clientFixture("acme", c)))
	}
	for _, u := range []string{"u1", "u2"} {
		for _, c := range []string{"app", "b-app"} {
			must(t, "save consent", s.SaveConsent(ctx, consentFixture("acme", u, c)))
		}
	}
	remaining := func(what string, want ...string) {
		t.Helper()
		list, err := s.ListConsents(ctx, "acme", "")
		must(t, "list consents "+what, err)
		got := []string{}
		for _, c := range list {
			got = append(got, c.UserID+"/"+c.ClientID)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("consents %s: got %v, want %v", what, got, want)
		}
	}
	must(t, "delete user", s.DeleteUser(ctx, "acme", "u1"))
	remaining("after deleting u1", "u2/app", "u2/b-app")
	must(t, "delete client", s.DeleteClient(ctx, "acme", "b-app"))
	remaining("after deleting b-app", "u2/app")
}

// testConsentsStayInTenant: two tenants with the same user, client, consent
// and launch ids never see or change each other's.
func testConsentsStayInTenant(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	consents := map[string]storage.Consent{}
	for _, id := range []string{"alpha", "beta"} {
		mustCreateTenant(t, s, id)
		must(t, "create user in "+id, s.CreateUser(ctx, userFixture(id, "u1", "u1@example.org")))
		must(t, "create client in "+id, s.CreateClient(ctx, clientFixture(id, "app")))
		consents[id] = consentFixture(id, "u1", "app")
		must(t, "save consent in "+id, s.SaveConsent(ctx, consents[id]))
		must(t, "create launch in "+id, s.CreateLaunch(ctx, launchFixture(id, "l1")))
	}
	must(t, "create user u2 in beta", s.CreateUser(ctx, userFixture("beta", "u2", "u2@example.org")))
	mustCreateTenant(t, s, "empty")

	intact := func(id string) {
		t.Helper()
		got, err := s.GetConsent(ctx, id, "u1", "app", t0())
		must(t, "get consent of "+id, err)
		mustEqual(t, "consent of "+id, got, consents[id])
		list, err := s.ListConsents(ctx, id, "")
		must(t, "list consents of "+id, err)
		mustEqual(t, "consents of "+id, list, []storage.Consent{consents[id]})
		l, err := s.GetLaunch(ctx, id, "l1", t0())
		must(t, "get launch of "+id, err)
		mustEqual(t, "launch of "+id, l, launchFixture(id, "l1"))
	}
	intact("alpha")
	intact("beta")

	_, err := s.GetConsent(ctx, "empty", "u1", "app", t0())
	mustErr(t, "get consent under the empty tenant", err, storage.ErrNotFound)
	mustErr(t, "delete consent under the empty tenant", s.DeleteConsent(ctx, "empty", "u1", "app"), storage.ErrNotFound)
	mustErr(t, "save consent under the empty tenant", s.SaveConsent(ctx, consentFixture("empty", "u1", "app")), storage.ErrNotFound)
	for _, user := range []string{"", "u1"} {
		list, err := s.ListConsents(ctx, "empty", user)
		must(t, "list consents under the empty tenant", err)
		mustEqual(t, "consents under the empty tenant", len(list), 0)
	}
	// A user of beta cannot be named in a consent of alpha.
	mustErr(t, "save consent of beta's user in alpha", s.SaveConsent(ctx, consentFixture("alpha", "u2", "app")), storage.ErrNotFound)
	intact("beta")

	// Changing and deleting alpha's records leaves beta's alone.
	changed := consents["alpha"]
	changed.Scopes = []string{"openid"}
	must(t, "replace alpha's consent", s.SaveConsent(ctx, changed))
	intact("beta")
	_, err = s.ConsumeLaunch(ctx, "alpha", "l1", t0())
	must(t, "consume alpha's launch", err)
	intact("beta")
	must(t, "delete alpha's consent", s.DeleteConsent(ctx, "alpha", "u1", "app"))
	intact("beta")
	must(t, "save alpha's consent again", s.SaveConsent(ctx, changed))
	must(t, "delete alpha's user", s.DeleteUser(ctx, "alpha", "u1"))
	intact("beta")
	_, err = s.GetConsent(ctx, "alpha", "u1", "app", t0())
	mustErr(t, "get consent of alpha's deleted user", err, storage.ErrNotFound)
	must(t, "delete alpha's client", s.DeleteClient(ctx, "alpha", "app"))
	intact("beta")
}

// testRaceSaveConsent: concurrent saves of one consent all succeed and leave
// exactly one record, equal to one writer's.
func testRaceSaveConsent(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	must(t, "create user", s.CreateUser(ctx, userFixture("acme", "u1", "u1@acme.example")))
	must(t, "create client", s.CreateClient(ctx, clientFixture("acme", "app")))
	for round := range rounds {
		written := make([]storage.Consent, racers)
		errs := race(racers, func(i int) error {
			c := consentFixture("acme", "u1", "app")
			c.Scopes = []string{"openid", fmt.Sprintf("patient/Observation.rs?round=%d&writer=%d", round, i)}
			c.CreatedAt = t0().Add(time.Duration(round*racers+i) * time.Second)
			written[i] = c
			return s.SaveConsent(ctx, c)
		})
		for i, err := range errs {
			must(t, label("round %d: writer %d", round, i), err)
		}
		list, err := s.ListConsents(ctx, "acme", "u1")
		must(t, label("round %d: list consents", round), err)
		if len(list) != 1 {
			t.Fatalf("round %d: %d consents stored, want 1", round, len(list))
		}
		found := false
		for _, w := range written {
			found = found || slices.Equal(w.Scopes, list[0].Scopes) && w.CreatedAt.Truncate(time.Microsecond).Equal(list[0].CreatedAt)
		}
		if !found {
			t.Fatalf("round %d: stored consent %+v is no writer's", round, list[0])
		}
	}
}
