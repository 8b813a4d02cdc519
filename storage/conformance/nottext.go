package conformance

import (
	"errors"
	"testing"
	"time"

	"github.com/smartauth/smartauth/storage"
)

// notText are values some databases cannot hold as text: a NUL, Latin-1
// and bytes that are never UTF-8.
var notText = []string{"a\x00b", "caf\xe9", "\xff\xfe"}

// foundNothing fails t unless err is nil (when the caller saw an empty
// answer), ErrNotFound, or ErrInvalidInput: the only answers a store may give
// to a key it cannot hold.
func foundNothing(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrInvalidInput) {
		t.Errorf("%s: %v, want ErrNotFound or ErrInvalidInput", what, err)
	}
}

// testNotText looks up, searches and writes text that is not UTF-8 or holds
// a NUL: nothing matches it, and a write either stores it or is refused with
// ErrInvalidInput, never with an error a caller would take for an outage.
func testNotText(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	must(t, "create client", s.CreateClient(ctx, clientFixture("acme", "app")))
	for _, bad := range notText {
		_, err := s.GetTenant(ctx, bad)
		foundNothing(t, "GetTenant", err)
		_, err = s.GetClient(ctx, "acme", bad)
		foundNothing(t, "GetClient", err)
		_, err = s.GetUser(ctx, "acme", bad)
		foundNothing(t, "GetUser", err)
		_, err = s.GetUserByEmail(ctx, "acme", bad)
		foundNothing(t, "GetUserByEmail", err)
		_, err = s.GetPatient(ctx, "acme", bad)
		foundNothing(t, "GetPatient", err)
		_, err = s.GetToken(ctx, "acme", storage.KindRefreshToken, bad)
		foundNothing(t, "GetToken", err)
		_, err = s.GetLaunch(ctx, "acme", bad, t0())
		foundNothing(t, "GetLaunch", err)
		_, err = s.GetSession(ctx, "acme", bad, t0())
		foundNothing(t, "GetSession", err)
		_, err = s.GetIdentityLink(ctx, "acme", bad, bad)
		foundNothing(t, "GetIdentityLink", err)

		ps, err := s.SearchPatients(ctx, "acme", storage.PatientQuery{Name: bad, Identifier: bad})
		foundNothing(t, "SearchPatients", err)
		if len(ps) != 0 {
			t.Errorf("SearchPatients(%q) found %d patients", bad, len(ps))
		}
		n, err := s.FailureCount(ctx, "acme", bad, t0(), time.Hour)
		foundNothing(t, "FailureCount", err)
		if n != 0 {
			t.Errorf("FailureCount(%q) = %d", bad, n)
		}

		_, err = s.RecordFailure(ctx, "acme", bad, t0(), time.Hour)
		foundNothing(t, "RecordFailure", err)
		c := clientFixture("acme", bad)
		foundNothing(t, "CreateClient", s.CreateClient(ctx, c))
		u := userFixture("acme", "u-"+bad, bad+"@example.org")
		foundNothing(t, "CreateUser", s.CreateUser(ctx, u))
	}
}
