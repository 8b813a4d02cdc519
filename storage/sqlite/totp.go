package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/smartauth/smartauth/storage"
)

// unknownUser turns a foreign key violation, which here can only name the
// user (or its tenant), into ErrNotFound.
func unknownUser(op string, err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		return fmt.Errorf("sqlite: %s: unknown user: %w", op, storage.ErrNotFound)
	}
	return wrap(op, err)
}

// SaveTOTPEnrollment stores a user's pending TOTP enrollment, replacing any
// earlier pending one, in one upsert.
func (s *Store) SaveTOTPEnrollment(ctx context.Context, e storage.TOTPEnrollment) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO totp_enrollments (tenant_id, user_id, secret_sealed, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (tenant_id, user_id) DO UPDATE
		SET secret_sealed = excluded.secret_sealed, created_at = excluded.created_at, expires_at = excluded.expires_at`,
		e.TenantID, e.UserID, e.SecretSealed, micros(e.CreatedAt), e.ExpiresAt.UnixMicro())
	return unknownUser("save totp enrollment", err)
}

// GetTOTPEnrollment returns a user's pending TOTP enrollment that has not expired at now.
func (s *Store) GetTOTPEnrollment(ctx context.Context, tenantID, userID string, now time.Time) (storage.TOTPEnrollment, error) {
	var e storage.TOTPEnrollment
	var created, expires sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT tenant_id, user_id, secret_sealed, created_at, expires_at FROM totp_enrollments
		WHERE tenant_id = ? AND user_id = ? AND expires_at > ?`, tenantID, userID, now.UnixMicro()).
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
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// Deleting the very enrollment that was checked, and only while it
		// is live, makes a concurrent Begin or Confirm lose cleanly.
		var pending []byte
		err := tx.QueryRowContext(ctx, `DELETE FROM totp_enrollments
			WHERE tenant_id = ? AND user_id = ? AND expires_at > ? RETURNING secret_sealed`,
			tenantID, userID, now.UnixMicro()).Scan(&pending)
		if err != nil {
			return err
		}
		if !bytes.Equal(pending, secretSealed) {
			return sql.ErrNoRows
		}
		err = mustAffect(tx.ExecContext(ctx, `UPDATE users SET totp_secret = ?, updated_at = ?, version = version + 1 WHERE tenant_id = ? AND id = ?`,
			secretSealed, micros(now), tenantID, userID))
		if err != nil {
			return err
		}
		return replaceRecoveryCodes(ctx, tx, tenantID, userID, recoveryHashes, now)
	})
	return unknownUser("confirm totp enrollment", err)
}

// ResetTOTP removes a user's TOTP secret, pending enrollment and recovery codes.
func (s *Store) ResetTOTP(ctx context.Context, tenantID, userID string, now time.Time) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		err := mustAffect(tx.ExecContext(ctx, `UPDATE users SET totp_secret = NULL, updated_at = ?, version = version + 1 WHERE tenant_id = ? AND id = ?`,
			micros(now), tenantID, userID))
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM totp_enrollments WHERE tenant_id = ? AND user_id = ?`, tenantID, userID); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM recovery_codes WHERE tenant_id = ? AND user_id = ?`, tenantID, userID)
		return err
	})
	return wrap("reset totp", err)
}

// UseTOTPStep raises the user's highest accepted TOTP step to step, in one
// conditional upsert; a step not above it yields ErrConsumed.
func (s *Store) UseTOTPStep(ctx context.Context, tenantID, userID string, step int64) error {
	res, err := s.w.ExecContext(ctx, `INSERT INTO totp_steps (tenant_id, user_id, last_step) VALUES (?, ?, ?)
		ON CONFLICT (tenant_id, user_id) DO UPDATE SET last_step = excluded.last_step
		WHERE totp_steps.last_step < excluded.last_step`, tenantID, userID, step)
	if err != nil {
		return unknownUser("use totp step", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return wrap("use totp step", err)
	}
	if n == 0 {
		return fmt.Errorf("sqlite: use totp step: %w", storage.ErrConsumed)
	}
	return nil
}

// ReplaceRecoveryCodes replaces all of a user's recovery codes in one transaction.
func (s *Store) ReplaceRecoveryCodes(ctx context.Context, tenantID, userID string, hashes [][]byte, now time.Time) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE tenant_id = ? AND id = ?`, tenantID, userID).Scan(&one); err != nil {
			return err
		}
		return replaceRecoveryCodes(ctx, tx, tenantID, userID, hashes, now)
	})
	return unknownUser("replace recovery codes", err)
}

func replaceRecoveryCodes(ctx context.Context, tx *sql.Tx, tenantID, userID string, hashes [][]byte, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM recovery_codes WHERE tenant_id = ? AND user_id = ?`, tenantID, userID); err != nil {
		return err
	}
	for _, h := range hashes {
		_, err := tx.ExecContext(ctx, `INSERT INTO recovery_codes (tenant_id, user_id, code_hash, created_at) VALUES (?, ?, ?, ?)`,
			tenantID, userID, h, micros(now))
		if err != nil {
			return err
		}
	}
	return nil
}

// ConsumeRecoveryCode marks an unused recovery code used, in one conditional update.
func (s *Store) ConsumeRecoveryCode(ctx context.Context, tenantID, userID string, hash []byte, now time.Time) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE recovery_codes SET used_at = ?
			WHERE tenant_id = ? AND user_id = ? AND code_hash = ? AND used_at IS NULL`,
			now.UnixMicro(), tenantID, userID, hash)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 1 {
			return err
		}
		var one int
		err = tx.QueryRowContext(ctx, `SELECT 1 FROM recovery_codes WHERE tenant_id = ? AND user_id = ? AND code_hash = ?`,
			tenantID, userID, hash).Scan(&one)
		if err != nil {
			return err
		}
		return storage.ErrConsumed
	})
	return wrap("consume recovery code", err)
}

// CountRecoveryCodes returns how many unused recovery codes a user has.
func (s *Store) CountRecoveryCodes(ctx context.Context, tenantID, userID string) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM recovery_codes WHERE tenant_id = ? AND user_id = ? AND used_at IS NULL`,
		tenantID, userID).Scan(&n)
	if err != nil {
		return 0, wrap("count recovery codes", err)
	}
	return n, nil
}
