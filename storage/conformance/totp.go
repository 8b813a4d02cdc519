package conformance

import (
	"fmt"
	"testing"
	"time"

	"github.com/smartauth/smartauth/storage"
)

func enrollmentFixture(tenantID, userID, secret string) storage.TOTPEnrollment {
	return storage.TOTPEnrollment{
		TenantID:     tenantID,
		UserID:       userID,
		SecretSealed: []byte("\x00sealed-pending-" + tenantID + "/" + userID + "/" + secret),
		CreatedAt:    t0(),
		ExpiresAt:    t0().Add(15 * time.Minute),
	}
}

func hashes(prefix string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range n {
		out[i] = fmt.Appendf(nil, "\x00digest-%s-%d\xff", prefix, i)
	}
	return out
}

// testTOTPEnrollment: a pending enrollment leaves the confirmed secret alone
// until it is confirmed, once, and only with the secret that was checked.
func testTOTPEnrollment(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	u := userFixture("acme", "u1", "u1@acme.example")
	u.TOTPSecret = nil
	must(t, "create user", s.CreateUser(ctx, u))

	_, err := s.GetTOTPEnrollment(ctx, "acme", "u1", t0())
	mustErr(t, "get enrollment before any", err, storage.ErrNotFound)
	first := enrollmentFixture("acme", "u1", "first")
	must(t, "save enrollment", s.SaveTOTPEnrollment(ctx, first))
	got, err := s.GetTOTPEnrollment(ctx, "acme", "u1", t0())
	must(t, "get enrollment", err)
	mustEqual(t, "enrollment", got, first)
	_, err = s.GetTOTPEnrollment(ctx, "acme", "u1", first.ExpiresAt.Truncate(time.Microsecond))
	mustErr(t, "get enrollment at expiry", err, storage.ErrNotFound)

	// Pending is not enrolled: the user row is untouched.
	stored, err := s.GetUser(ctx, "acme", "u1")
	must(t, "get user", err)
	mustEqual(t, "user while pending", stored, u)

	// Saving again replaces the pending enrollment; the replaced secret can
	// no longer be confirmed.
	second := enrollmentFixture("acme", "u1", "second")
	second.CreatedAt = t0().Add(time.Minute)
	must(t, "save second enrollment", s.SaveTOTPEnrollment(ctx, second))
	got, err = s.GetTOTPEnrollment(ctx, "acme", "u1", t0())
	must(t, "get second enrollment", err)
	mustEqual(t, "second enrollment", got, second)
	codes := hashes("first", 10)
	mustErr(t, "confirm replaced enrollment",
		s.ConfirmTOTPEnrollment(ctx, "acme", "u1", first.SecretSealed, codes, t0()), storage.ErrNotFound)
	_, err = s.GetTOTPEnrollment(ctx, "acme", "u1", t0())
	must(t, "a refused confirmation keeps the pending enrollment", err)
	mustErr(t, "confirm expired enrollment",
		s.ConfirmTOTPEnrollment(ctx, "acme", "u1", second.SecretSealed, codes, second.ExpiresAt), storage.ErrNotFound)
	n, err := s.CountRecoveryCodes(ctx, "acme", "u1")
	must(t, "count recovery codes before confirmation", err)
	mustEqual(t, "recovery codes before confirmation", n, 0)

	confirmedAt := t0().Add(2 * time.Minute)
	must(t, "confirm enrollment", s.ConfirmTOTPEnrollment(ctx, "acme", "u1", second.SecretSealed, codes, confirmedAt))
	stored, err = s.GetUser(ctx, "acme", "u1")
	must(t, "get enrolled user", err)
	want := u
	want.TOTPSecret = second.SecretSealed
	want.UpdatedAt = confirmedAt
	want.Version++
	mustEqual(t, "enrolled user", stored, want)
	_, err = s.GetTOTPEnrollment(ctx, "acme", "u1", t0())
	mustErr(t, "get confirmed enrollment", err, storage.ErrNotFound)
	mustErr(t, "confirm again",
		s.ConfirmTOTPEnrollment(ctx, "acme", "u1", second.SecretSealed, codes, confirmedAt), storage.ErrNotFound)
	n, err = s.CountRecoveryCodes(ctx, "acme", "u1")
	must(t, "count recovery codes", err)
	mustEqual(t, "recovery codes after confirmation", n, 10)

	// A new pending enrollment leaves the confirmed secret in force.
	must(t, "save re-enrollment", s.SaveTOTPEnrollment(ctx, enrollmentFixture("acme", "u1", "third")))
	stored, err = s.GetUser(ctx, "acme", "u1")
	must(t, "get user while re-enrolling", err)
	mustEqual(t, "user while re-enrolling", stored, want)

	resetAt := t0().Add(time.Hour)
	must(t, "reset totp", s.ResetTOTP(ctx, "acme", "u1", resetAt))
	stored, err = s.GetUser(ctx, "acme", "u1")
	must(t, "get reset user", err)
	want.TOTPSecret = nil
	want.UpdatedAt = resetAt
	want.Version++
	mustEqual(t, "reset user", stored, want)
	_, err = s.GetTOTPEnrollment(ctx, "acme", "u1", t0())
	mustErr(t, "get enrollment after reset", err, storage.ErrNotFound)
	n, err = s.CountRecoveryCodes(ctx, "acme", "u1")
	must(t, "count recovery codes after reset", err)
	mustEqual(t, "recovery codes after reset", n, 0)

	for _, tc := range []struct {
		name string
		err  error
	}{
		{"save enrollment of an unknown user", s.SaveTOTPEnrollment(ctx, enrollmentFixture("acme", "ghost", "x"))},
		{"save enrollment in an unknown tenant", s.SaveTOTPEnrollment(ctx, enrollmentFixture("ghost", "u1", "x"))},
		{"confirm for an unknown user", s.ConfirmTOTPEnrollment(ctx, "acme", "ghost", []byte("x"), nil, t0())},
		{"reset an unknown user", s.ResetTOTP(ctx, "acme", "ghost", t0())},
		{"use a step of an unknown user", s.UseTOTPStep(ctx, "acme", "ghost", 1)},
		{"replace recovery codes of an unknown user", s.ReplaceRecoveryCodes(ctx, "acme", "ghost", hashes("g", 2), t0())},
		{"consume a recovery code of an unknown user", s.ConsumeRecoveryCode(ctx, "acme", "ghost", hashes("g", 1)[0], t0())},
	} {
		mustErr(t, tc.name, tc.err, storage.ErrNotFound)
	}

	// Pending enrollments expire and are swept; the user stays.
	must(t, "save enrollment to sweep", s.SaveTOTPEnrollment(ctx, enrollmentFixture("acme", "u1", "sweep")))
	swept, err := s.SweepExpired(ctx, t0().Add(15*time.Minute))
	must(t, "sweep", err)
	if swept < 1 {
		t.Fatalf("sweep removed %d rows, want at least the expired enrollment", swept)
	}
	must(t, "save enrollment after sweep", s.SaveTOTPEnrollment(ctx, enrollmentFixture("acme", "u1", "after")))
	_, err = s.GetTOTPEnrollment(ctx, "acme", "u1", t0())
	must(t, "get enrollment after sweep", err)
	_, err = s.GetUser(ctx, "acme", "u1")
	must(t, "get user after sweep", err)

	// Deleting the user deletes its second-factor records.
	must(t, "use a step", s.UseTOTPStep(ctx, "acme", "u1", 7))
	must(t, "replace recovery codes", s.ReplaceRecoveryCodes(ctx, "acme", "u1", hashes("x", 3), t0()))
	must(t, "delete user", s.DeleteUser(ctx, "acme", "u1"))
	must(t, "recreate user", s.CreateUser(ctx, u))
	_, err = s.GetTOTPEnrollment(ctx, "acme", "u1", t0())
	mustErr(t, "enrollment of the recreated user", err, storage.ErrNotFound)
	n, err = s.CountRecoveryCodes(ctx, "acme", "u1")
	must(t, "count recovery codes of the recreated user", err)
	mustEqual(t, "recovery codes of the recreated user", n, 0)
	must(t, "the recreated user starts with no step", s.UseTOTPStep(ctx, "acme", "u1", 1))
}

// testTOTPSteps: a step is accepted only above every step accepted before.
func testTOTPSteps(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	for _, id := range []string{"u1", "u2"} {
		must(t, "create user "+id, s.CreateUser(ctx, userFixture("acme", id, id+"@acme.example")))
	}
	const step = 65_000_000 // about 2031 in 30-second steps
	must(t, "use a step", s.UseTOTPStep(ctx, "acme", "u1", step))
	mustErr(t, "use the same step again", s.UseTOTPStep(ctx, "acme", "u1", step), storage.ErrConsumed)
	mustErr(t, "use an earlier step", s.UseTOTPStep(ctx, "acme", "u1", step-1), storage.ErrConsumed)
	must(t, "another user's step is its own", s.UseTOTPStep(ctx, "acme", "u2", step))
	must(t, "use a later step", s.UseTOTPStep(ctx, "acme", "u1", step+1))
	mustErr(t, "use the later step again", s.UseTOTPStep(ctx, "acme", "u1", step+1), storage.ErrConsumed)
	// Resetting the second factor does not reopen used steps.
	must(t, "reset totp", s.ResetTOTP(ctx, "acme", "u1", t0()))
	mustErr(t, "use a step after reset", s.UseTOTPStep(ctx, "acme", "u1", step+1), storage.ErrConsumed)
}

// testRecoveryCodes: each code is used once; replacing drops every old code.
func testRecoveryCodes(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	for _, id := range []string{"u1", "u2"} {
		must(t, "create user "+id, s.CreateUser(ctx, userFixture("acme", id, id+"@acme.example")))
	}
	count := func(what, user string, want int) {
		t.Helper()
		n, err := s.CountRecoveryCodes(ctx, "acme", user)
		must(t, "count recovery codes "+what, err)
		mustEqual(t, "recovery codes "+what, n, want)
	}
	count("of a user without any", "u1", 0)
	old := hashes("old", 10)
	must(t, "replace recovery codes", s.ReplaceRecoveryCodes(ctx, "acme", "u1", old, t0()))
	count("after replacing", "u1", 10)
	count("of another user", "u2", 0)

	must(t, "consume a code", s.ConsumeRecoveryCode(ctx, "acme", "u1", old[3], t0()))
	count("after one use", "u1", 9)
	mustErr(t, "consume the code again", s.ConsumeRecoveryCode(ctx, "acme", "u1", old[3], t0()), storage.ErrConsumed)
	mustErr(t, "consume an unknown code", s.ConsumeRecoveryCode(ctx, "acme", "u1", []byte("nope"), t0()), storage.ErrNotFound)
	mustErr(t, "consume a code as another user", s.ConsumeRecoveryCode(ctx, "acme", "u2", old[4], t0()), storage.ErrNotFound)
	count("after refused uses", "u1", 9)

	fresh := hashes("new", 10)
	must(t, "regenerate recovery codes", s.ReplaceRecoveryCodes(ctx, "acme", "u1", fresh, t0().Add(time.Hour)))
	count("after regenerating", "u1", 10)
	mustErr(t, "consume an old unused code", s.ConsumeRecoveryCode(ctx, "acme", "u1", old[0], t0()), storage.ErrNotFound)
	mustErr(t, "consume an old used code", s.ConsumeRecoveryCode(ctx, "acme", "u1", old[3], t0()), storage.ErrNotFound)
	must(t, "consume a new code", s.ConsumeRecoveryCode(ctx, "acme", "u1", fresh[0], t0()))
	must(t, "replace with none", s.ReplaceRecoveryCodes(ctx, "acme", "u1", nil, t0()))
	count("after replacing with none", "u1", 0)
}

// testTOTPStaysInTenant: two tenants with the same user id never see or use
// each other's enrollments, steps or recovery codes.
func testTOTPStaysInTenant(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	codes := hashes("shared", 3)
	for _, id := range []string{"alpha", "beta"} {
		mustCreateTenant(t, s, id)
		u := userFixture(id, "u1", "u1@example.org")
		u.TOTPSecret = nil
		must(t, "create user in "+id, s.CreateUser(ctx, u))
		must(t, "save enrollment in "+id, s.SaveTOTPEnrollment(ctx, enrollmentFixture(id, "u1", "same")))
		must(t, "replace recovery codes in "+id, s.ReplaceRecoveryCodes(ctx, id, "u1", codes, t0()))
	}
	mustCreateTenant(t, s, "empty")

	// alpha's records, named under another tenant, are not found.
	alphaSecret := enrollmentFixture("alpha", "u1", "same").SecretSealed
	_, err := s.GetTOTPEnrollment(ctx, "empty", "u1", t0())
	mustErr(t, "get enrollment under the empty tenant", err, storage.ErrNotFound)
	mustErr(t, "confirm alpha's enrollment under beta",
		s.ConfirmTOTPEnrollment(ctx, "beta", "u1", alphaSecret, nil, t0()), storage.ErrNotFound)
	mustErr(t, "consume a code under the empty tenant", s.ConsumeRecoveryCode(ctx, "empty", "u1", codes[0], t0()), storage.ErrNotFound)
	mustErr(t, "reset under the empty tenant", s.ResetTOTP(ctx, "empty", "u1", t0()), storage.ErrNotFound)
	mustErr(t, "use a step under the empty tenant", s.UseTOTPStep(ctx, "empty", "u1", 5), storage.ErrNotFound)

	// Using alpha's records leaves beta's alone.
	must(t, "confirm alpha's enrollment", s.ConfirmTOTPEnrollment(ctx, "alpha", "u1", alphaSecret, codes, t0()))
	must(t, "consume alpha's code", s.ConsumeRecoveryCode(ctx, "alpha", "u1", codes[0], t0()))
	must(t, "use alpha's step", s.UseTOTPStep(ctx, "alpha", "u1", 5))
	got, err := s.GetTOTPEnrollment(ctx, "beta", "u1", t0())
	must(t, "get beta's enrollment", err)
	mustEqual(t, "beta's enrollment", got, enrollmentFixture("beta", "u1", "same"))
	u, err := s.GetUser(ctx, "beta", "u1")
	must(t, "get beta's user", err)
	mustEqual(t, "beta's secret", len(u.TOTPSecret), 0)
	n, err := s.CountRecoveryCodes(ctx, "beta", "u1")
	must(t, "count beta's codes", err)
	mustEqual(t, "beta's codes", n, 3)
	must(t, "consume beta's code", s.ConsumeRecoveryCode(ctx, "beta", "u1", codes[0], t0()))
	must(t, "use beta's step", s.UseTOTPStep(ctx, "beta", "u1", 5))

	must(t, "reset alpha", s.ResetTOTP(ctx, "alpha", "u1", t0()))
	n, err = s.CountRecoveryCodes(ctx, "beta", "u1")
	must(t, "count beta's codes after alpha's reset", err)
	mustEqual(t, "beta's codes after alpha's reset", n, 2)
}

// testRaceUseTOTPStep: of concurrent uses of one step, exactly one wins.
func testRaceUseTOTPStep(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	must(t, "create user", s.CreateUser(ctx, userFixture("acme", "u1", "u1@acme.example")))
	for round := range rounds {
		step := int64(1000 + round)
		errs := race(racers, func(int) error { return s.UseTOTPStep(ctx, "acme", "u1", step) })
		exactlyOneWinner(t, label("round %d", round), errs, storage.ErrConsumed)
	}
	// The first use of a user races with itself too: no row exists yet.
	must(t, "create user u2", s.CreateUser(ctx, userFixture("acme", "u2", "u2@acme.example")))
	errs := race(racers, func(int) error { return s.UseTOTPStep(ctx, "acme", "u2", 1) })
	exactlyOneWinner(t, "first use", errs, storage.ErrConsumed)
}

// testRaceConsumeRecoveryCode: of concurrent uses of one code, exactly one wins.
func testRaceConsumeRecoveryCode(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	must(t, "create user", s.CreateUser(ctx, userFixture("acme", "u1", "u1@acme.example")))
	codes := hashes("race", rounds)
	must(t, "replace recovery codes", s.ReplaceRecoveryCodes(ctx, "acme", "u1", codes, t0()))
	for round := range rounds {
		errs := race(racers, func(int) error { return s.ConsumeRecoveryCode(ctx, "acme", "u1", codes[round], t0()) })
		exactlyOneWinner(t, label("round %d", round), errs, storage.ErrConsumed)
	}
	n, err := s.CountRecoveryCodes(ctx, "acme", "u1")
	must(t, "count recovery codes", err)
	mustEqual(t, "recovery codes left", n, 0)
}
