// Package mfa is the TOTP second factor of local sign-in: enrollment with a
// QR code, verification that accepts no code twice and throttles wrong codes
// across replicas, single-use recovery codes, and the rule deciding when a
// sign-in needs a second factor. It holds no HTTP; handlers call it and
// audit what it returns.
//
// Seeds are stored only sealed with AES-GCM under a key derived from the
// master key, bound to the tenant and user; recovery codes only as keyed
// digests. No seed, code or recovery code appears in an error.
package mfa

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/storage"
)

// The TOTP parameters every authenticator app understands (RFC 6238
// defaults): SHA-1, six digits, thirty-second steps.
const (
	period    = 30
	digits    = otp.DigitsSix
	algorithm = otp.AlgorithmSHA1
	// seedSize is 160 bits, the HMAC-SHA1 block the RFC recommends.
	seedSize = 20
	// skew accepts the step before and after the current one, for phones
	// whose clocks drift and people who type slowly.
	skew = 1
)

// EnrollmentTTL is how long a started enrollment waits for its first code.
const EnrollmentTTL = 15 * time.Minute

// Refused codes (TOTP or recovery, wrong or replayed) are counted per user
// in the database's failure counters, so the limit holds across replicas.
// Once a user has MaxFailures in a window, which starts at the first
// failure, every attempt is refused without checking the code until the
// window is over. A correct code clears the count. A second count, of
// refused codes only, caps them at MaxDailyFailures a day, and a correct
// code does not clear it: five guesses every fifteen minutes would
// otherwise add up to hundreds a day against someone who knows the password.
const (
	// ThrottleWindow is how long wrong codes are counted.
	ThrottleWindow = 15 * time.Minute
	// MaxFailures is how many refused codes a user may enter in a window.
	MaxFailures = 5
	// DailyWindow and MaxDailyFailures bound refused codes over a day.
	DailyWindow      = 24 * time.Hour
	MaxDailyFailures = 20
)

// Errors a check returns; Reason names each for the audit trail.
var (
	// ErrWrongCode means the code is not the user's current one (or not one of their recovery codes).
	ErrWrongCode = errors.New("mfa: wrong code")
	// ErrReplayed means the code was right but has been used already.
	ErrReplayed = errors.New("mfa: code already used")
	// ErrThrottled means too many wrong codes; the code was not checked.
	ErrThrottled = errors.New("mfa: too many wrong codes")
	// ErrNotEnrolled means the user has no confirmed second factor.
	ErrNotEnrolled = errors.New("mfa: not enrolled")
	// ErrNoEnrollment means no enrollment is waiting for confirmation (never begun, expired, or replaced).
	ErrNoEnrollment = errors.New("mfa: no enrollment pending")
)

// Reason returns the audit reason of an error from this package, such as
// "wrong_code", or "" for any other error.
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrWrongCode):
		return "wrong_code"
	case errors.Is(err, ErrReplayed):
		return "replayed_code"
	case errors.Is(err, ErrThrottled):
		return "throttled"
	case errors.Is(err, ErrNotEnrolled):
		return "not_enrolled"
	case errors.Is(err, ErrNoEnrollment):
		return "no_pending_enrollment"
	}
	return ""
}

// Service enrolls and checks second factors.
type Service struct {
	store     storage.Storage
	sealer    *keys.Sealer
	masterKey []byte
	now       func() time.Time
}

// New returns a Service storing in store, sealing seeds under a key derived
// from masterKey, and reading time from now.
func New(store storage.Storage, masterKey []byte, now func() time.Time) (*Service, error) {
	if len(masterKey) != keys.MasterKeySize {
		return nil, fmt.Errorf("mfa: master key must be %d bytes, got %d", keys.MasterKeySize, len(masterKey))
	}
	// A key of its own, so a sealed seed cannot be opened as, or swapped
	// for, any other sealed secret.
	k, err := keys.DeriveKey(masterKey, "totp-seed")
	if err != nil {
		return nil, fmt.Errorf("mfa: %w", err)
	}
	sealer, err := keys.NewSealer(k)
	if err != nil {
		return nil, fmt.Errorf("mfa: %w", err)
	}
	return &Service{store: store, sealer: sealer, masterKey: slices.Clone(masterKey), now: now}, nil
}

// seedAAD binds a sealed seed to its tenant and user, so a sealed seed
// copied onto another user's row does not open.
func seedAAD(tenantID, userID string) []byte {
	return []byte("totp-seed\x00" + tenantID + "\x00" + userID)
}

// Enrolled reports whether a user has a confirmed second factor.
func Enrolled(u storage.User) bool { return len(u.TOTPSecret) > 0 }

// Enrollment is what a person needs to add the account to an authenticator
// app. It holds the seed: show it once and never log it.
type Enrollment struct {
	// URL is the otpauth:// key URI the QR code encodes.
	URL string
	// ManualKey is the base32 seed in groups of four, for typing into an app.
	ManualKey string
	// QRCode is the key URI as a PNG QR code in a data: URL, for an img
	// src; it is built here from PNG bytes only (html/template needs it
	// as template.URL).
	QRCode string
	// ExpiresAt is when the enrollment stops accepting its first code.
	ExpiresAt time.Time
}

// String keeps the seed out of anything that formats an Enrollment.
func (Enrollment) String() string { return "mfa.Enrollment{redacted}" }

// LogValue keeps the seed out of structured logs.
func (e Enrollment) LogValue() slog.Value { return slog.StringValue(e.String()) }

// Begin starts a TOTP enrollment for a user, replacing any enrollment of
// theirs still waiting for confirmation. The user's confirmed second factor,
// if any, stays in force until Confirm succeeds.
func (s *Service) Begin(ctx context.Context, tenant storage.Tenant, user storage.User) (Enrollment, error) {
	seed := make([]byte, seedSize)
	if _, err := rand.Read(seed); err != nil {
		return Enrollment{}, fmt.Errorf("mfa: generate key for user %s: %w", user.ID, err)
	}
	key, err := enrollmentKey(tenant, user, seed)
	if err != nil {
		return Enrollment{}, err
	}
	sealed, err := s.sealer.Seal([]byte(key.Secret()), seedAAD(tenant.ID, user.ID))
	if err != nil {
		return Enrollment{}, fmt.Errorf("mfa: seal seed of user %s: %w", user.ID, err)
	}
	now := s.now()
	e := storage.TOTPEnrollment{TenantID: tenant.ID, UserID: user.ID, SecretSealed: sealed,
		CreatedAt: now, ExpiresAt: now.Add(EnrollmentTTL)}
	if err := s.store.SaveTOTPEnrollment(ctx, e); err != nil {
		return Enrollment{}, fmt.Errorf("mfa: save enrollment of user %s: %w", user.ID, err)
	}
	return present(key, e.ExpiresAt)
}

// Pending shows a user's pending enrollment again, for a page that must be
// drawn once more (after a mistyped code) without changing the key the
// person already scanned; ErrNoEnrollment when none is pending.
func (s *Service) Pending(ctx context.Context, tenant storage.Tenant, user storage.User) (Enrollment, error) {
	e, err := s.store.GetTOTPEnrollment(ctx, tenant.ID, user.ID, s.now())
	if errors.Is(err, storage.ErrNotFound) {
		return Enrollment{}, ErrNoEnrollment
	}
	if err != nil {
		return Enrollment{}, fmt.Errorf("mfa: load enrollment of user %s: %w", user.ID, err)
	}
	secret, err := s.sealer.Open(e.SecretSealed, seedAAD(tenant.ID, user.ID))
	if err != nil {
		return Enrollment{}, fmt.Errorf("mfa: open enrollment of user %s: %w", user.ID, err)
	}
	seed, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(string(secret))
	if err != nil {
		return Enrollment{}, fmt.Errorf("mfa: enrollment of user %s: %w", user.ID, err)
	}
	key, err := enrollmentKey(tenant, user, seed)
	if err != nil {
		return Enrollment{}, err
	}
	return present(key, e.ExpiresAt)
}

// enrollmentKey is the TOTP key of a seed, labelled for authenticator apps
// with the tenant's name and the user's email.
func enrollmentKey(tenant storage.Tenant, user storage.User, seed []byte) (*otp.Key, error) {
	issuer := tenant.Name
	if issuer == "" {
		issuer = tenant.ID
	}
	account := user.Email
	if account == "" {
		account = user.ID
	}
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer: issuer, AccountName: account, Period: period, Secret: seed,
		Digits: digits, Algorithm: algorithm,
	})
	if err != nil {
		return nil, fmt.Errorf("mfa: key for user %s: %w", user.ID, err)
	}
	return key, nil
}

// present is what the enrollment page shows of a key.
func present(key *otp.Key, expires time.Time) (Enrollment, error) {
	qr, err := qrDataURL(key)
	if err != nil {
		return Enrollment{}, fmt.Errorf("mfa: QR code: %w", err)
	}
	return Enrollment{URL: key.URL(), ManualKey: groups(key.Secret(), 4, ' '), QRCode: qr, ExpiresAt: expires}, nil
}

func (s *Service) Confirm(ctx context.Context, tenantID, userID, code string) (RecoveryCodes, error) {
	now := s.now()
	e, err := s.store.GetTOTPEnrollment(ctx, tenantID, userID, now)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrNoEnrollment
	}
	if err != nil {
		return nil, fmt.Errorf("mfa: load enrollment of user %s: %w", userID, err)
	}
	if err := s.checkCode(ctx, tenantID, userID, e.SecretSealed, code, now); err != nil {
		return nil, err
	}
	codes, hashes, err := s.newRecoveryCodes(tenantID, userID)
	if err != nil {
		return nil, err
	}
	err = s.store.ConfirmTOTPEnrollment(ctx, tenantID, userID, e.SecretSealed, hashes, now)
	if errors.Is(err, storage.ErrNotFound) {
		// Begun again or confirmed elsewhere since it was loaded.
		return nil, ErrNoEnrollment
	}
	if err != nil {
		return nil, fmt.Errorf("mfa: confirm enrollment of user %s: %w", userID, err)
	}
	return codes, nil
}

// Verify checks a sign-in code against the user's confirmed second factor.
// Errors: ErrNotEnrolled, ErrThrottled, ErrWrongCode, ErrReplayed.
func (s *Service) Verify(ctx context.Context, tenantID, userID, code string) error {
	u, err := s.store.GetUser(ctx, tenantID, userID)
	if err != nil {
		return fmt.Errorf("mfa: load user %s: %w", userID, err)
	}
	if !Enrolled(u) {
		return ErrNotEnrolled
	}
	return s.checkCode(ctx, tenantID, userID, u.TOTPSecret, code, s.now())
}

// Reset removes a user's second factor, any pending enrollment and the
// recovery codes, for an administrator helping someone who lost their
// device. Steps already used stay used.
func (s *Service) Reset(ctx context.Context, tenantID, userID string) error {
	if err := s.store.ResetTOTP(ctx, tenantID, userID, s.now()); err != nil {
		return fmt.Errorf("mfa: reset user %s: %w", userID, err)
	}
	return nil
}

// Throttled reports whether a user has had too many wrong codes in the
// current window, so a page can say so before asking for a code.
func (s *Service) Throttled(ctx context.Context, tenantID, userID string) (bool, error) {
	n, err := s.store.FailureCount(ctx, tenantID, throttleKey(userID), s.now(), ThrottleWindow)
	if err != nil {
		return false, fmt.Errorf("mfa: count wrong codes of user %s: %w", userID, err)
	}
	return n >= MaxFailures, nil
}

// throttleKey names a user's wrong-code counter; the prefix keeps it apart
// from the sign-in counters of emails and addresses.
func throttleKey(userID string) string { return "mfa:" + userID }

// attempt counts one attempt against the user's limit before the code is
// checked, and refuses it once the limit is passed. Counting first, in one
// atomic upsert, means concurrent guesses on any number of replicas cannot
// get more than MaxFailures codes checked in a window; success clears the
// count (see succeeded).
func (s *Service) attempt(ctx context.Context, tenantID, userID string, now time.Time) error {
	daily, err := s.store.FailureCount(ctx, tenantID, dailyKey(userID), now, DailyWindow)
	if err != nil {
		return fmt.Errorf("mfa: count refused codes of user %s: %w", userID, err)
	}
	if daily >= MaxDailyFailures {
		return ErrThrottled
	}
	n, err := s.store.RecordFailure(ctx, tenantID, throttleKey(userID), now, ThrottleWindow)
	if err != nil {
		return fmt.Errorf("mfa: count attempt of user %s: %w", userID, err)
	}
	if n > MaxFailures {
		return ErrThrottled
	}
	return nil
}

// dailyKey names a user's count of refused codes over a day.
func dailyKey(userID string) string { return "mfa-day:" + userID }

// refuse counts a refused code against the user's daily limit and returns why it was refused.
func (s *Service) refuse(ctx context.Context, tenantID, userID string, now time.Time, why error) error {
	if _, err := s.store.RecordFailure(ctx, tenantID, dailyKey(userID), now, DailyWindow); err != nil {
		return fmt.Errorf("mfa: count refused code of user %s: %w", userID, err)
	}
	return why
}

// succeeded clears the user's count after a correct code.
func (s *Service) succeeded(ctx context.Context, tenantID, userID string) error {
	if err := s.store.ClearFailures(ctx, tenantID, throttleKey(userID)); err != nil {
		return fmt.Errorf("mfa: clear wrong codes of user %s: %w", userID, err)
	}
	return nil
}

// checkCode throttles, checks a code against a sealed seed, and records its
// time step so the code is never accepted again.
func (s *Service) checkCode(ctx context.Context, tenantID, userID string, sealed []byte, code string, now time.Time) error {
	if err := s.attempt(ctx, tenantID, userID, now); err != nil {
		return err
	}
	seed, err := s.sealer.Open(sealed, seedAAD(tenantID, userID))
	if err != nil {
		return fmt.Errorf("mfa: open seed of user %s: %w", userID, err)
	}
	step, ok, err := matchStep(string(seed), code, now)
	if err != nil {
		return fmt.Errorf("mfa: compute codes of user %s: %w", userID, err)
	}
	if !ok {
		return s.refuse(ctx, tenantID, userID, now, ErrWrongCode)
	}
	err = s.store.UseTOTPStep(ctx, tenantID, userID, step)
	if errors.Is(err, storage.ErrConsumed) {
		return s.refuse(ctx, tenantID, userID, now, ErrReplayed)
	}
	if err != nil {
		return fmt.Errorf("mfa: record code use of user %s: %w", userID, err)
	}
	return s.succeeded(ctx, tenantID, userID)
}

// matchStep returns the time step, within skew of now, whose code is code.
// Every candidate is computed and compared in constant time, so timing does
// not tell which step matched or how many digits were right.
func matchStep(seed, code string, now time.Time) (int64, bool, error) {
	code = strings.NewReplacer(" ", "", "-", "").Replace(code)
	if len(code) != digits.Length() || strings.Trim(code, "0123456789") != "" {
		return 0, false, nil
	}
	opts := totp.ValidateOpts{Period: period, Skew: 0, Digits: digits, Algorithm: algorithm}
	var step int64
	found := 0
	for off := -skew; off <= skew; off++ {
		at := now.Add(time.Duration(off) * period * time.Second)
		want, err := totp.GenerateCodeCustom(seed, at, opts)
		if err != nil {
			return 0, false, err
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			// The latest matching step wins, so a later code of the same
			// digits is not refused as a replay of an earlier one.
			step = at.Unix() / period
			found = 1
		}
	}
	return step, found == 1, nil
}

// groups splits s into groups of n characters joined by sep.
func groups(s string, n int, sep byte) string {
	var b strings.Builder
	for i := 0; i < len(s); i += n {
		if i > 0 {
			b.WriteByte(sep)
		}
		b.WriteString(s[i:min(i+n, len(s))])
	}
	return b.String()
}
