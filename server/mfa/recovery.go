package mfa

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/storage"
)

// RecoveryCodeCount is how many recovery codes a user gets at a time.
const RecoveryCodeCount = 10

// A recovery code is 80 random bits written as 16 characters of Crockford's
// base32 (digits and capitals without I, L, O and U, so nothing is read
// two ways), shown in groups of four: XXXX-XXXX-XXXX-XXXX.
const (
	recoveryBytes    = 10
	recoveryAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)

var recoveryEncoding = base32.NewEncoding(recoveryAlphabet).WithPadding(base32.NoPadding)

// RecoveryCodes are freshly made recovery codes: show them once, never log them.
type RecoveryCodes []string

// String keeps the codes out of anything that formats them with %v.
func (RecoveryCodes) String() string { return "mfa.RecoveryCodes{redacted}" }

// LogValue keeps the codes out of structured logs.
func (c RecoveryCodes) LogValue() slog.Value { return slog.StringValue(c.String()) }

// newRecoveryCodes makes a set of recovery codes and their digests.
func (s *Service) newRecoveryCodes(tenantID, userID string) (RecoveryCodes, [][]byte, error) {
	codes := make(RecoveryCodes, RecoveryCodeCount)
	hashes := make([][]byte, RecoveryCodeCount)
	for i := range codes {
		b := make([]byte, recoveryBytes)
		if _, err := rand.Read(b); err != nil {
			return nil, nil, fmt.Errorf("mfa: recovery code: %w", err)
		}
		raw := recoveryEncoding.EncodeToString(b)
		codes[i] = groups(raw, 4, '-')
		h, err := s.recoveryHash(tenantID, userID, raw)
		if err != nil {
			return nil, nil, err
		}
		hashes[i] = h
	}
	return codes, hashes, nil
}

// recoveryHash is the digest under which a normalized recovery code is
// stored. The codes are 80 random bits, not chosen by people, so a slow
// password hash would buy nothing: no one can guess one from its digest.
// The digest is still keyed (HMAC-SHA256 under a per-tenant key derived
// from the master key), so a copy of the database alone does not even let
// someone test a guess offline; the user id in the message keeps equal
// codes of two users from having equal digests.
func (s *Service) recoveryHash(tenantID, userID, normalized string) ([]byte, error) {
	key, err := keys.DeriveKey(s.masterKey, "recovery-codes/"+tenantID)
	if err != nil {
		return nil, fmt.Errorf("mfa: %w", err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(userID))
	m.Write([]byte{0})
	m.Write([]byte(normalized))
	return m.Sum(nil), nil
}

// normalizeRecoveryCode turns what a person typed into the stored form:
// capitals, no spaces or dashes, and the letters Crockford's base32 reads
// as digits (O as 0, I and L as 1). It reports false for anything that
// cannot be a recovery code.
func normalizeRecoveryCode(typed string) (string, bool) {
	r := strings.NewReplacer(" ", "", "-", "", "\t", "", "O", "0", "I", "1", "L", "1")
	code := r.Replace(strings.ToUpper(typed))
	if len(code) != recoveryEncoding.EncodedLen(recoveryBytes) || strings.Trim(code, recoveryAlphabet) != "" {
		return "", false
	}
	return code, true
}

// UseRecoveryCode signs a user in with one of their recovery codes, which
// is then used up; it returns how many remain. Wrong recovery codes count
// against the same limit as wrong TOTP codes. Errors: ErrNotEnrolled,
// ErrThrottled, ErrWrongCode, ErrReplayed (the code was used before).
func (s *Service) UseRecoveryCode(ctx context.Context, tenantID, userID, code string) (remaining int, err error) {
	u, err := s.store.GetUser(ctx, tenantID, userID)
	if err != nil {
		return 0, fmt.Errorf("mfa: load user %s: %w", userID, err)
	}
	if !Enrolled(u) {
		return 0, ErrNotEnrolled
	}
	now := s.now()
	if err := s.attempt(ctx, tenantID, userID, now); err != nil {
		return 0, err
	}
	normalized, ok := normalizeRecoveryCode(code)
	if !ok {
		return 0, s.refuse(ctx, tenantID, userID, now, ErrWrongCode)
	}
	h, err := s.recoveryHash(tenantID, userID, normalized)
	if err != nil {
		return 0, err
	}
	err = s.store.ConsumeRecoveryCode(ctx, tenantID, userID, h, now)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return 0, s.refuse(ctx, tenantID, userID, now, ErrWrongCode)
	case errors.Is(err, storage.ErrConsumed):
		return 0, s.refuse(ctx, tenantID, userID, now, ErrReplayed)
	case err != nil:
		return 0, fmt.Errorf("mfa: use recovery code of user %s: %w", userID, err)
	}
	if err := s.succeeded(ctx, tenantID, userID); err != nil {
		return 0, err
	}
	return s.RecoveryCodesLeft(ctx, tenantID, userID)
}

// RegenerateRecoveryCodes replaces all of an enrolled user's recovery
// codes, used or not, with new ones, returned to be shown once.
func (s *Service) RegenerateRecoveryCodes(ctx context.Context, tenantID, userID string) (RecoveryCodes, error) {
	u, err := s.store.GetUser(ctx, tenantID, userID)
	if err != nil {
		return nil, fmt.Errorf("mfa: load user %s: %w", userID, err)
	}
	if !Enrolled(u) {
		return nil, ErrNotEnrolled
	}
	codes, hashes, err := s.newRecoveryCodes(tenantID, userID)
	if err != nil {
		return nil, err
	}
	if err := s.store.ReplaceRecoveryCodes(ctx, tenantID, userID, hashes, s.now()); err != nil {
		return nil, fmt.Errorf("mfa: replace recovery codes of user %s: %w", userID, err)
	}
	return codes, nil
}

// RecoveryCodesLeft returns how many unused recovery codes a user has.
func (s *Service) RecoveryCodesLeft(ctx context.Context, tenantID, userID string) (int, error) {
	n, err := s.store.CountRecoveryCodes(ctx, tenantID, userID)
	if err != nil {
		return 0, fmt.Errorf("mfa: count recovery codes of user %s: %w", userID, err)
	}
	return n, nil
}
