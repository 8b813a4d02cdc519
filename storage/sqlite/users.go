package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/smartauth/smartauth/storage"
)

const userColumns = `tenant_id, id, email, password_hash, disabled, admin, totp_secret, profiles, created_at, updated_at, version`

func scanUser(sc scanner) (storage.User, error) {
	var u storage.User
	var profiles string
	var created, updated sql.NullInt64
	err := sc.Scan(&u.TenantID, &u.ID, &u.Email, &u.PasswordHash, &u.Disabled, &u.Admin, &u.TOTPSecret, &profiles, &created, &updated, &u.Version)
	if err != nil {
		return storage.User{}, err
	}
	if err := fromJSON(profiles, &u.Profiles); err != nil {
		return storage.User{}, fmt.Errorf("user %q: profiles: %w", u.ID, err)
	}
	u.CreatedAt, u.UpdatedAt = instant(created), instant(updated)
	return u, nil
}

// emailKey is the value the per-tenant email uniqueness applies to: the
// lowercased email, or NULL so that users without one never collide.
func emailKey(email string) any {
	if email == "" {
		return nil
	}
	return strings.ToLower(email)
}

// CreateUser stores a user with its profiles; emails are unique per tenant.
func (s *Store) CreateUser(ctx context.Context, u storage.User) error {
	profiles, err := listJSON(u.Profiles)
	if err != nil {
		return wrap("create user", err)
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO users (`+userColumns+`, email_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)`,
		u.TenantID, u.ID, u.Email, u.PasswordHash, u.Disabled, u.Admin, u.TOTPSecret, profiles, micros(u.CreatedAt), micros(u.UpdatedAt), emailKey(u.Email))
	return wrap("create user", err)
}

// GetUser returns one user of a tenant.
func (s *Store) GetUser(ctx context.Context, tenantID, userID string) (storage.User, error) {
	u, err := scanUser(s.r.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE tenant_id = ? AND id = ?`, tenantID, userID))
	return u, wrap("get user", err)
}

// GetUserByEmail finds a user by email, compared case-insensitively.
func (s *Store) GetUserByEmail(ctx context.Context, tenantID, email string) (storage.User, error) {
	u, err := scanUser(s.r.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE tenant_id = ? AND email_key = ?`, tenantID, emailKey(email)))
	return u, wrap("get user by email", err)
}

// ListUsers returns a tenant's users ordered by email, case-insensitively.
func (s *Store) ListUsers(ctx context.Context, tenantID string) ([]storage.User, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+userColumns+` FROM users WHERE tenant_id = ? ORDER BY coalesce(email_key, ''), id`, tenantID)
	if err != nil {
		return nil, wrap("list users", err)
	}
	defer rows.Close()
	var out []storage.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, wrap("list users", err)
		}
		out = append(out, u)
	}
	return out, wrap("list users", rows.Err())
}

// UpdateUser replaces every mutable field of a user but its TOTP secret.
// Its checks and its write share one write transaction, which holds the
// file's lock throughout, so no other change can come in between.
// Disabling the user ends its grants there too (see endGrants).
func (s *Store) UpdateUser(ctx context.Context, u storage.User) error {
	profiles, err := listJSON(u.Profiles)
	if err != nil {
		return wrap("update user", err)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		was, err := userStateOf(ctx, tx, u.TenantID, u.ID)
		if err != nil {
			return err
		}
		if was.version != u.Version {
			return storage.ErrConflict
		}
		if was.enabledAdmin() && (!u.Admin || u.Disabled) {
			if err := anotherOperator(ctx, tx, u.TenantID, u.ID); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE users SET email = ?, email_key = ?, password_hash = ?, disabled = ?,
			admin = ?, profiles = ?, updated_at = ?, version = version + 1 WHERE tenant_id = ? AND id = ?`,
			u.Email, emailKey(u.Email), u.PasswordHash, u.Disabled, u.Admin, profiles, micros(u.UpdatedAt), u.TenantID, u.ID)
		if err != nil || !u.Disabled {
			return err
		}
		return endGrants(ctx, tx, u.TenantID, false, `subject = ?2`, u.ID)
	})
	return wrap("update user", err)
}

// userState is what a change to a user is checked against.
type userState struct {
	version         int64
	admin, disabled bool
}

func (u userState) enabledAdmin() bool { return u.admin && !u.disabled }

// userStateOf reads a user's state inside a write transaction.
func userStateOf(ctx context.Context, tx *sql.Tx, tenantID, userID string) (userState, error) {
	var u userState
	err := tx.QueryRowContext(ctx, `SELECT version, admin, disabled FROM users WHERE tenant_id = ? AND id = ?`,
		tenantID, userID).Scan(&u.version, &u.admin, &u.disabled)
	return u, err
}

// anotherOperator returns ErrLastOperator when userID is in the operator
// realm and no other enabled operator remains; other tenants may be left
// without an admin, since an operator can always add one.
func anotherOperator(ctx context.Context, tx *sql.Tx, tenantID, userID string) error {
	if tenantID != storage.OperatorRealm {
		return nil
	}
	var found bool
	err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE tenant_id = ? AND id <> ? AND admin AND NOT disabled)`,
		tenantID, userID).Scan(&found)
	if err != nil {
		return err
	}
	if !found {
		return storage.ErrLastOperator
	}
	return nil
}

// DeleteUser removes a user and its sessions and ends its grants (see
// endGrants), in one transaction.
func (s *Store) DeleteUser(ctx context.Context, tenantID, userID string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		was, err := userStateOf(ctx, tx, tenantID, userID)
		if err != nil {
			return err
		}
		if was.enabledAdmin() {
			if err := anotherOperator(ctx, tx, tenantID, userID); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM users WHERE tenant_id = ? AND id = ?`, tenantID, userID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE tenant_id = ? AND user_id = ?`, tenantID, userID); err != nil {
			return err
		}
		return endGrants(ctx, tx, tenantID, false, `subject = ?2`, userID)
	})
	return wrap("delete user", err)
}

const sessionColumns = `tenant_id, id, user_id, data, created_at, updated_at, expires_at`

// CreateSession stores a browser session.
func (s *Store) CreateSession(ctx context.Context, ss storage.Session) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO sessions (`+sessionColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		ss.TenantID, ss.ID, ss.UserID, ss.Data, micros(ss.CreatedAt), micros(ss.UpdatedAt), micros(ss.ExpiresAt))
	return wrap("create session", err)
}

// GetSession returns a session that has not expired (ErrNotFound otherwise).
func (s *Store) GetSession(ctx context.Context, tenantID, sessionID string, now time.Time) (storage.Session, error) {
	var ss storage.Session
	var created, updated, expires sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE tenant_id = ? AND id = ? AND expires_at > ?`,
		tenantID, sessionID, now.UnixMicro()).
		Scan(&ss.TenantID, &ss.ID, &ss.UserID, &ss.Data, &created, &updated, &expires)
	if err != nil {
		return storage.Session{}, wrap("get session", err)
	}
	ss.CreatedAt, ss.UpdatedAt, ss.ExpiresAt = instant(created), instant(updated), instant(expires)
	return ss, nil
}

// UpdateSession replaces a session's data, user, update time and expiry.
func (s *Store) UpdateSession(ctx context.Context, ss storage.Session) error {
	err := mustAffect(s.w.ExecContext(ctx, `UPDATE sessions SET user_id = ?, data = ?, updated_at = ?, expires_at = ?
		WHERE tenant_id = ? AND id = ?`,
		ss.UserID, ss.Data, micros(ss.UpdatedAt), micros(ss.ExpiresAt), ss.TenantID, ss.ID))
	return wrap("update session", err)
}

// TouchSession sets the update time and expiry of a session live at usedAt.
func (s *Store) TouchSession(ctx context.Context, tenantID, sessionID string, usedAt, expiresAt time.Time) error {
	err := mustAffect(s.w.ExecContext(ctx, `UPDATE sessions SET updated_at = ?, expires_at = ?
		WHERE tenant_id = ? AND id = ? AND expires_at > ?`,
		micros(usedAt), micros(expiresAt), tenantID, sessionID, usedAt.UnixMicro()))
	return wrap("touch session", err)
}

// DeleteSession removes one session.
func (s *Store) DeleteSession(ctx context.Context, tenantID, sessionID string) error {
	err := mustAffect(s.w.ExecContext(ctx, `DELETE FROM sessions WHERE tenant_id = ? AND id = ?`, tenantID, sessionID))
	return wrap("delete session", err)
}

// DeleteUserSessions removes every session of a user.
func (s *Store) DeleteUserSessions(ctx context.Context, tenantID, userID string) error {
	_, err := s.w.ExecContext(ctx, `DELETE FROM sessions WHERE tenant_id = ? AND user_id = ?`, tenantID, userID)
	return wrap("delete user sessions", err)
}
