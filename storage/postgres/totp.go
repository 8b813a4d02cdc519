package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/smartauth/smartauth/storage"
)

// unknownUser turns a foreign key violation, which here can only name the
// user (or its tenant), into ErrNotFound.
func unknownUser(op string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23503" { // foreign_key_violation
		return fmt.Errorf("postgres: %s: unknown user: %w", op, storage.ErrNotFound)
	}
	return wrap(op, err)
}

// lockUser locks a user's row for the transaction, so writers of one user's
// second-factor records queue instead of interleaving; an unknown user is
// pgx.ErrNoRows.
func lockUser(ctx context.Context, tx pgx.Tx, tenantID, userID string) error {
	var one int
	return tx.QueryRow(ctx, `SELECT 1 FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, tenantID, userID).Scan(&one)
}

// SaveTOTPEnrollment stores a user's pending TOTP enrollment, replacing any
// earlier pending one, in one upsert.
func (s *Store) SaveTOTPEnrollment(ctx context.Context, e storage.TOTPEnrollment) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO totp_enrollments (tenant_id, user_id, secret_sealed, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (tenant_id, user_id) DO UPDATE
		SET secret_sealed = EXCLUDED.secret_sealed, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at`,
		e.TenantID, e.UserID, e.SecretSealed, tstz(e.CreatedAt), e.ExpiresAt)
	return unknownUser("save totp enrollment", err)
}

// GetTOTPEnrollment returns a user's pending TOTP enrollment that has not expired at now.
func (s *Store) GetTOTPEnrollment(ctx context.Context, tenantID, userID string, now time.Time) (storage.TOTPEnrollment, error) {
	var e storage.TOTPEnrollment
	var created, expires pgtype.Timestamptz
	err := s.pool.QueryRow(ctx, `SELECT tenant_id, user_id, secret_sealed, created_at, expires_at FROM totp_enrollments
		WHERE tenant_id = $1 AND user_id = $2 AND expires_at > $3`, tenantID, userID, now).
		Scan(&e.TenantID, &e.UserID, &e.SecretSealed, &created, &expires)
	if err != nil {
		return storage.TOTPEnrollment{}, wrap("get totp enrollment", err)
	}
	e.CreatedAt, e.ExpiresAt = instant(created), instant(expires)
	return e, nil
}

// ConfirmTOTPEnrollment makes a pending enrollment the user's TOTP secret
// and replaces the recovery codes, in one transaction.
func (s *Store) ConfirmTOTPEnrollment(ctx context.Context, tenantID, userID string, secretSealed []byte, recoveryHashes [][]byte, now time.Time) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockUser(ctx, tx, tenantID, userID); err != nil {
			return err
		}
		// Deleting the very enrollment that was checked, and only while it
		// is live, makes a concurrent Begin or Confirm lose cleanly.
		var pending []byte
		err := tx.QueryRow(ctx, `DELETE FROM totp_enrollments
			WHERE tenant_id = $1 AND user_id = $2 AND expires_at > $3 RETURNING secret_sealed`,
			tenantID, userID, now).Scan(&pending)
		if err != nil {
			return err
		}
		if !bytes.Equal(pending, secretSealed) {
			return pgx.ErrNoRows
		}
		err = mustAffect(tx.Exec(ctx, `UPDATE users SET totp_secret = $1, updated_at = $2, version = version + 1 WHERE tenant_id = $3 AND id = $4`,
			secretSealed, tstz(now), tenantID, userID))
		if err != nil {
			return err
		}
		return replaceRecoveryCodes(ctx, tx, tenantID, userID, recoveryHashes, now)
	})
	return wrap("confirm totp enrollment", err)
}

// ResetTOTP removes a user's TOTP secret, pending enrollment and recovery codes.
func (s *Store) ResetTOTP(ctx context.Context, tenantID, userID string, now time.Time) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := mustAffect(tx.Exec(ctx, `UPDATE users SET totp_secret = NULL, updated_at = $1, version = version + 1 WHERE tenant_id = $2 AND id = $3`,
			tstz(now), tenantID, userID))
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM totp_enrollments WHERE tenant_id = $1 AND user_id = $2`, tenantID, userID); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM recovery_codes WHERE tenant_id = $1 AND user_id = $2`, tenantID, userID)
		return err
	})
	return wrap("reset totp", err)
}

// UseTOTPStep raises the user's highest accepted TOTP step to step, in one
// conditional upsert; a step not above it yields ErrConsumed. A concurrent
// upsert of the same user waits for the first to commit and then sees its
// step, so exactly one of them raises it.
func (s *Store) UseTOTPStep(ctx context.Context, tenantID, userID string, step int64) error {
	tag, err := s.pool.Exec(ctx, `INSERT INTO totp_steps AS t (tenant_id, user_id, last_step) VALUES ($1, $2, $3)
		ON CONFLICT (tenant_id, user_id) DO UPDATE SET last_step = EXCLUDED.last_step
		WHERE t.last_step < EXCLUDED.last_step`, tenantID, userID, step)
	if err != nil {
		return unknownUser("use totp step", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: use totp step: %w", storage.ErrConsumed)
	}
	return nil
}

// ReplaceRecoveryCodes replaces all of a user's recovery codes in one transaction.
func (s *Store) ReplaceRecoveryCodes(ctx context.Context, tenantID, userID string, hashes [][]byte, now time.Time) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockUser(ctx, tx, tenantID, userID); err != nil {
			return err
		}
		return replaceRecoveryCodes(ctx, tx, tenantID, userID, hashes, now)
	})
	return wrap("replace recovery codes", err)
}

func replaceRecoveryCodes(ctx context.Context, tx pgx.Tx, tenantID, userID string, hashes [][]byte, now time.Time) error {
	if _, err := tx.Exec(ctx, `DELETE FROM recovery_codes WHERE tenant_id = $1 AND user_id = $2`, tenantID, userID); err != nil {
		return err
	}
	for _, h := range hashes {
		_, err := tx.Exec(ctx, `INSERT INTO recovery_codes (tenant_id, user_id, code_hash, created_at) VALUES ($1, $2, $3, $4)`,
			tenantID, userID, h, tstz(now))
		if err != nil {
			return err
		}
	}
	return nil
}

// ConsumeRecoveryCode marks an unused recovery code used, in one
// conditional update: a concurrent use waits for the first to commit and
// then finds the code used.
func (s *Store) ConsumeRecoveryCode(ctx context.Context, tenantID, userID string, hash []byte, now time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE recovery_codes SET used_at = $1
		WHERE tenant_id = $2 AND user_id = $3 AND code_hash = $4 AND used_at IS NULL`,
		now, tenantID, userID, hash)
	if err != nil {
		return wrap("consume recovery code", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var one int
	err = s.pool.QueryRow(ctx, `SELECT 1 FROM recovery_codes WHERE tenant_id = $1 AND user_id = $2 AND code_hash = $3`,
		tenantID, userID, hash).Scan(&one)
	if err != nil {
		return wrap("consume recovery code", err)
	}
	return fmt.Errorf("postgres: consume recovery code: %w", storage.ErrConsumed)
}

// CountRecoveryCodes returns how many unused recovery codes a user has.
func (s *Store) CountRecoveryCodes(ctx context.Context, tenantID, userID string) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM recovery_codes WHERE tenant_id = $1 AND user_id = $2 AND used_at IS NULL`,
		tenantID, userID).Scan(&n)
	if err != nil {
		return 0, wrap("count recovery codes", err)
	}
	return n, nil
}
