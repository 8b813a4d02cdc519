package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/smartauth/smartauth/storage"
)

const userColumns = `tenant_id, id, email, password_hash, disabled, admin, totp_secret, profiles, created_at, updated_at`

func scanUser(row pgx.Row) (storage.User, error) {
	var u storage.User
	var profiles []byte
	var created, updated pgtype.Timestamptz
	err := row.Scan(&u.TenantID, &u.ID, &u.Email, &u.PasswordHash, &u.Disabled, &u.Admin, &u.TOTPSecret, &profiles, &created, &updated)
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
// lowercased email, or NULL so that users without one never collide. It is
// lowercased in Go, not SQL, so both backends agree on what "same" means.
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
	_, err = s.pool.Exec(ctx, `INSERT INTO users (`+userColumns+`, email_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		u.TenantID, u.ID, u.Email, u.PasswordHash, u.Disabled, u.Admin, u.TOTPSecret, profiles, tstz(u.CreatedAt), tstz(u.UpdatedAt), emailKey(u.Email))
	return wrap("create user", err)
}

// GetUser returns one user of a tenant.
func (s *Store) GetUser(ctx context.Context, tenantID, userID string) (storage.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE tenant_id = $1 AND id = $2`, tenantID, userID))
	return u, wrap("get user", err)
}

// GetUserByEmail finds a user by email, compared case-insensitively.
func (s *Store) GetUserByEmail(ctx context.Context, tenantID, email string) (storage.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE tenant_id = $1 AND email_key = $2`, tenantID, emailKey(email)))
	return u, wrap("get user by email", err)
}

// ListUsers returns a tenant's users ordered by email, case-insensitively.
func (s *Store) ListUsers(ctx context.Context, tenantID string) ([]storage.User, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+userColumns+` FROM users WHERE tenant_id = $1
		ORDER BY coalesce(email_key, '') COLLATE "C", id COLLATE "C"`, tenantID)
	if err != nil {
		return nil, wrap("list users", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.User, error) { return scanUser(r) })
	return out, wrap("list users", err)
}

// UpdateUser replaces every mutable field of a user but its TOTP secret.
func (s *Store) UpdateUser(ctx context.Context, u storage.User) error {
	profiles, err := listJSON(u.Profiles)
	if err != nil {
		return wrap("update user", err)
	}
	var n int64
	err = s.pool.QueryRow(ctx, `WITH updated AS (
			UPDATE users SET email = $3, email_key = $4, password_hash = $5, disabled = $6,
				profiles = $7, updated_at = $8, admin = $9 WHERE tenant_id = $1 AND id = $2 RETURNING id, disabled
		), grants_off AS (
			UPDATE tokens SET active = false
			WHERE tenant_id = $1 AND active AND subject IN (SELECT id FROM updated WHERE disabled)
		)
		SELECT count(*) FROM updated`,
		u.TenantID, u.ID, u.Email, emailKey(u.Email), u.PasswordHash, u.Disabled, profiles, tstz(u.UpdatedAt), u.Admin).Scan(&n)
	if err == nil && n == 0 {
		err = pgx.ErrNoRows
	}
	return wrap("update user", err)
}

// DeleteUser removes a user and its sessions, in one statement.
func (s *Store) DeleteUser(ctx context.Context, tenantID, userID string) error {
	var n int64
	err := s.pool.QueryRow(ctx, `WITH gone AS (
			DELETE FROM users WHERE tenant_id = $1 AND id = $2 RETURNING id
		), sessions_gone AS (
			DELETE FROM sessions WHERE tenant_id = $1 AND user_id IN (SELECT id FROM gone)
		), grants_off AS (
			UPDATE tokens SET active = false WHERE tenant_id = $1 AND active AND subject IN (SELECT id FROM gone)
		)
		SELECT count(*) FROM gone`, tenantID, userID).Scan(&n)
	if err == nil && n == 0 {
		err = pgx.ErrNoRows
	}
	return wrap("delete user", err)
}

const sessionColumns = `tenant_id, id, user_id, data, created_at, updated_at, expires_at`

// CreateSession stores a browser session.
func (s *Store) CreateSession(ctx context.Context, ss storage.Session) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO sessions (`+sessionColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		ss.TenantID, ss.ID, ss.UserID, ss.Data, tstz(ss.CreatedAt), tstz(ss.UpdatedAt), tstz(ss.ExpiresAt))
	return wrap("create session", err)
}

// GetSession returns a session that has not expired (ErrNotFound otherwise).
func (s *Store) GetSession(ctx context.Context, tenantID, sessionID string, now time.Time) (storage.Session, error) {
	var ss storage.Session
	var created, updated, expires pgtype.Timestamptz
	err := s.pool.QueryRow(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE tenant_id = $1 AND id = $2 AND expires_at > $3`,
		tenantID, sessionID, now).
		Scan(&ss.TenantID, &ss.ID, &ss.UserID, &ss.Data, &created, &updated, &expires)
	if err != nil {
		return storage.Session{}, wrap("get session", err)
	}
	ss.CreatedAt, ss.UpdatedAt, ss.ExpiresAt = instant(created), instant(updated), instant(expires)
	return ss, nil
}

// UpdateSession replaces a session's data, user, update time and expiry.
func (s *Store) UpdateSession(ctx context.Context, ss storage.Session) error {
	err := mustAffect(s.pool.Exec(ctx, `UPDATE sessions SET user_id = $3, data = $4, updated_at = $5, expires_at = $6
		WHERE tenant_id = $1 AND id = $2`,
		ss.TenantID, ss.ID, ss.UserID, ss.Data, tstz(ss.UpdatedAt), tstz(ss.ExpiresAt)))
	return wrap("update session", err)
}

// TouchSession sets the update time and expiry of a session live at usedAt.
func (s *Store) TouchSession(ctx context.Context, tenantID, sessionID string, usedAt, expiresAt time.Time) error {
	err := mustAffect(s.pool.Exec(ctx, `UPDATE sessions SET updated_at = $3, expires_at = $4
		WHERE tenant_id = $1 AND id = $2 AND expires_at > $3`,
		tenantID, sessionID, tstz(usedAt), tstz(expiresAt)))
	return wrap("touch session", err)
}

// DeleteSession removes one session.
func (s *Store) DeleteSession(ctx context.Context, tenantID, sessionID string) error {
	err := mustAffect(s.pool.Exec(ctx, `DELETE FROM sessions WHERE tenant_id = $1 AND id = $2`, tenantID, sessionID))
	return wrap("delete session", err)
}

// DeleteUserSessions removes every session of a user.
func (s *Store) DeleteUserSessions(ctx context.Context, tenantID, userID string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2`, tenantID, userID)
	return wrap("delete user sessions", err)
}
