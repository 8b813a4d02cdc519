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

const userColumns = `tenant_id, id, email, password_hash, disabled, admin, totp_secret, profiles, created_at, updated_at, version`

func scanUser(row pgx.Row) (storage.User, error) {
	var u storage.User
	var profiles []byte
	var created, updated pgtype.Timestamptz
	err := row.Scan(&u.TenantID, &u.ID, &u.Email, &u.PasswordHash, &u.Disabled, &u.Admin, &u.TOTPSecret, &profiles, &created, &updated, &u.Version)
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
	_, err = s.pool.Exec(ctx, `INSERT INTO users (`+userColumns+`, email_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11)`,
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

// UpdateUser replaces every mutable field of a user but its TOTP secret, in
// one transaction that holds the user's row lock from the version check to
// the write; disabling the user ends its grants there too (see endGrants).
func (s *Store) UpdateUser(ctx context.Context, u storage.User) error {
	profiles, err := listJSON(u.Profiles)
	if err != nil {
		return wrap("update user", err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		was, err := lockUserForChange(ctx, tx, u.TenantID, u.ID)
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
		_, err = tx.Exec(ctx, `UPDATE users SET email = $3, email_key = $4, password_hash = $5, disabled = $6,
				profiles = $7, updated_at = $8, admin = $9, version = version + 1
			WHERE tenant_id = $1 AND id = $2`,
			u.TenantID, u.ID, u.Email, emailKey(u.Email), u.PasswordHash, u.Disabled, profiles, tstz(u.UpdatedAt), u.Admin)
		if err != nil || !u.Disabled {
			return err
		}
		return endGrants(ctx, tx, u.TenantID, false, `subject = $2`, u.ID)
	})
	return wrap("update user", err)
}

// DeleteUser removes a user and its sessions and ends its grants (see
// endGrants), in one transaction.
func (s *Store) DeleteUser(ctx context.Context, tenantID, userID string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		was, err := lockUserForChange(ctx, tx, tenantID, userID)
		if err != nil {
			return err
		}
		if was.enabledAdmin() {
			if err := anotherOperator(ctx, tx, tenantID, userID); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM users WHERE tenant_id = $1 AND id = $2`, tenantID, userID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2`, tenantID, userID); err != nil {
			return err
		}
		return endGrants(ctx, tx, tenantID, false, `subject = $2`, userID)
	})
	return wrap("delete user", err)
}

// userState is what a change to a user is checked against.
type userState struct {
	version         int64
	admin, disabled bool
}

func (u userState) enabledAdmin() bool { return u.admin && !u.disabled }

// lockUserForChange locks a user's row for the rest of tx and returns its
// state as committed now. In the operator realm it first takes the realm's
// tenant row lock, which every such change takes before any user row, so
// changes to operators run one after another and each sees the one before.
// That lock (FOR NO KEY UPDATE) does not hold up the foreign key checks of
// rows inserted for the realm meanwhile.
func lockUserForChange(ctx context.Context, tx pgx.Tx, tenantID, userID string) (userState, error) {
	if tenantID == storage.OperatorRealm {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM tenants WHERE id = $1 FOR NO KEY UPDATE`, tenantID).Scan(&one)
		if err != nil {
			return userState{}, err
		}
	}
	var u userState
	err := tx.QueryRow(ctx, `SELECT version, admin, disabled FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE`,
		tenantID, userID).Scan(&u.version, &u.admin, &u.disabled)
	return u, err
}

// anotherOperator returns ErrLastOperator when userID is in the operator
// realm and no other enabled operator remains; other tenants may be left
// without an admin, since an operator can always add one. Under the realm
// lock of lockUserForChange, the count cannot change before tx commits.
func anotherOperator(ctx context.Context, tx pgx.Tx, tenantID, userID string) error {
	if tenantID != storage.OperatorRealm {
		return nil
	}
	var found bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE tenant_id = $1 AND id <> $2 AND admin AND NOT disabled)`,
		tenantID, userID).Scan(&found)
	if err != nil {
		return err
	}
	if !found {
		return storage.ErrLastOperator
	}
	return nil
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
