package conformance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/smartauth/smartauth/storage"
)

// endGrantsCase is one storage method that ends many grant families at
// once, and which families it ends.
type endGrantsCase struct {
	name string
	// end ends the grants of user, or of client, or of user with client.
	end func(ctx context.Context, s storage.Storage, user, client string) error
	// ends reports whether end ends a family of subject with clientID.
	ends func(user, client, subject, clientID string) bool
}

var endGrantsCases = []endGrantsCase{
	{
		name: "DeleteConsent",
		end: func(ctx context.Context, s storage.Storage, user, client string) error {
			return s.DeleteConsent(ctx, "acme", user, client)
		},
		ends: func(user, client, subject, clientID string) bool { return subject == user && clientID == client },
	},
	{
		name: "DisableUser",
		end: func(ctx context.Context, s storage.Storage, user, _ string) error {
			u, err := s.GetUser(ctx, "acme", user)
			if err != nil {
				return err
			}
			u.Disabled = true
			return s.UpdateUser(ctx, u)
		},
		ends: func(user, _, subject, _ string) bool { return subject == user },
	},
	{
		name: "DeleteUser",
		end: func(ctx context.Context, s storage.Storage, user, _ string) error {
			return s.DeleteUser(ctx, "acme", user)
		},
		ends: func(user, _, subject, _ string) bool { return subject == user },
	},
	{
		name: "DeleteClient",
		end: func(ctx context.Context, s storage.Storage, _, client string) error {
			return s.DeleteClient(ctx, "acme", client)
		},
		ends: func(_, client, _, clientID string) bool { return clientID == client },
	},
}

// refreshSteps is how many times each family's refresh token is rotated in
// a round of testRaceEndGrants, unless its grants end first.
const refreshSteps = 6

// grantFamily is one grant family of testRaceEndGrants.
type grantFamily struct{ id, subject, client string }

// record names the record of one kind a family holds after step rotations.
func (f grantFamily) record(kind storage.TokenKind, step int) storage.Token {
	t := tokenFixture("acme", kind, fmt.Sprintf("%s-%s-%d", f.id, kind, step), f.id, f.client)
	t.Subject = f.subject
	return t
}

// refresh rotates the family's refresh token as the token endpoint does
// (consume the refresh token, deactivate the access token, store a new
// pair under the same request) until refreshSteps rotations are done or a
// refresh token is found consumed or gone, its grant ended. It calls
// rotated after each rotation stored.
func (f grantFamily) refresh(ctx context.Context, s storage.Storage, rotated func()) error {
	for step := 1; step <= refreshSteps; step++ {
		_, err := s.ConsumeToken(ctx, "acme", storage.KindRefreshToken, f.record(storage.KindRefreshToken, step-1).Signature)
		if errors.Is(err, storage.ErrConsumed) || errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("family %s: step %d: consume refresh token: %w", f.id, step, err)
		}
		if _, err := s.RevokeRequestKind(ctx, "acme", f.id, storage.KindAccessToken); err != nil {
			return fmt.Errorf("family %s: step %d: revoke access token: %w", f.id, step, err)
		}
		for _, kind := range []storage.TokenKind{storage.KindAccessToken, storage.KindRefreshToken} {
			if err := s.CreateToken(ctx, f.record(kind, step)); err != nil {
				return fmt.Errorf("family %s: step %d: create %s: %w", f.id, step, kind, err)
			}
		}
		rotated()
	}
	return nil
}

// testRaceEndGrants races each method that ends a person's or an app's
// grants in bulk against refreshes of those grants, each a consume of the
// old refresh token followed by the creation of a new pair under the same
// request. Whatever the interleaving, no record of a family the method
// ends is left active, even one whose records were all inactive, between
// the consume and the creation, when the method ran; families it does not
// end go on refreshing. Many rounds, since not every round straddles a
// refresh.
func testRaceEndGrants(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	for _, tc := range endGrantsCases {
		t.Run(tc.name, func(t *testing.T) {
			for round := range 4 * rounds {
				user, other := label("%s-%d-user", tc.name, round), label("%s-%d-other-user", tc.name, round)
				client, otherClient := label("%s-%d-app", tc.name, round), label("%s-%d-other-app", tc.name, round)
				must(t, "create user", s.CreateUser(ctx, userFixture("acme", user, "")))
				must(t, "create user", s.CreateUser(ctx, userFixture("acme", other, "")))
				must(t, "create client", s.CreateClient(ctx, clientFixture("acme", client)))
				must(t, "create client", s.CreateClient(ctx, clientFixture("acme", otherClient)))
				must(t, "save consent", s.SaveConsent(ctx, consentFixture("acme", user, client)))
				must(t, "save consent", s.SaveConsent(ctx, consentFixture("acme", user, otherClient)))
				families := []grantFamily{
					{client + "-f0", user, client},
					{client + "-f1", user, client},
					{client + "-f2", user, client},
					{client + "-f3", user, client},
					{otherClient + "-f", user, otherClient},
					{client + "-g", other, client},
				}
				for _, f := range families {
					must(t, "create access token", s.CreateToken(ctx, f.record(storage.KindAccessToken, 0)))
					must(t, "create refresh token", s.CreateToken(ctx, f.record(storage.KindRefreshToken, 0)))
				}
				// The grants end once the first family has rotated, not
				// before any refresh has begun, as they otherwise often do.
				begun := make(chan struct{})
				var once sync.Once
				errs := race(len(families)+1, func(i int) error {
					if i == len(families) {
						<-begun
						return tc.end(ctx, s, user, client)
					}
					return families[i].refresh(ctx, s, func() { once.Do(func() { close(begun) }) })
				})
				for i, err := range errs {
					must(t, label("round %d: goroutine %d", round, i), err)
				}
				for _, f := range families {
					ended := tc.ends(user, client, f.subject, f.client)
					for step := range refreshSteps + 1 {
						for _, kind := range []storage.TokenKind{storage.KindAccessToken, storage.KindRefreshToken} {
							sig := f.record(kind, step).Signature
							got, err := s.GetToken(ctx, "acme", kind, sig)
							switch {
							case errors.Is(err, storage.ErrNotFound):
								if !ended {
									t.Fatalf("round %d: %s, of a family %s does not end, is missing", round, sig, tc.name)
								}
							case err != nil:
								t.Fatalf("round %d: get %s: %v", round, sig, err)
							case ended && got.Active:
								t.Fatalf("round %d: %s is active after %s", round, sig, tc.name)
							}
						}
					}
					if !ended {
						last, err := s.GetToken(ctx, "acme", storage.KindRefreshToken, f.record(storage.KindRefreshToken, refreshSteps).Signature)
						must(t, label("round %d: last refresh token of family %s", round, f.id), err)
						if !last.Active {
							t.Fatalf("round %d: %s deactivated family %s, which it does not end", round, tc.name, f.id)
						}
					}
				}
			}
		})
	}
}
