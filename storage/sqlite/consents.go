package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/smartauth/smartauth/storage"
)

const consentColumns = `tenant_id, user_id, client_id, scopes, created_at, expires_at`

func scanConsent(sc scanner) (storage.Consent, error) {
	var c storage.Consent
	var scopes string
	var created, expires sql.NullInt64
	if err := sc.Scan(&c.TenantID, &c.UserID, &c.ClientID, &scopes, &created, &expires); err != nil {
		return storage.Consent{}, err
	}
	if err := fromJSON(scopes, &c.Scopes); err != nil {
		return storage.Consent{}, fmt.Errorf("consent of user %q to client %q: scopes: %w", c.UserID, c.ClientID, err)
	}
	c.CreatedAt, c.ExpiresAt = instant(created), instant(expires)
	return c, nil
}

// SaveConsent stores a user's consent to a client, replacing the scopes and
// times of an earlier one, in one upsert.
func (s *Store) SaveConsent(ctx context.Context, c storage.Consent) error {
	scopes, err := listJSON(c.Scopes)
	if err != nil {
		return wrap("save consent", err)
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO consents (`+consentColumns+`) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (tenant_id, user_id, client_id) DO UPDATE
		SET scopes = excluded.scopes, created_at = excluded.created_at, expires_at = excluded.expires_at`,
		c.TenantID, c.UserID, c.ClientID, scopes, micros(c.CreatedAt), micros(c.ExpiresAt))
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		// The foreign keys name the tenant, the user and the client.
		return fmt.Errorf("sqlite: save consent: unknown tenant, user or client: %w", storage.ErrNotFound)
	}
	return wrap("save consent", err)
}

// GetConsent returns a user's consent to a client that has not expired at now.
func (s *Store) GetConsent(ctx context.Context, tenantID, userID, clientID string, now time.Time) (storage.Consent, error) {
	c, err := scanConsent(s.r.QueryRowContext(ctx, `SELECT `+consentColumns+` FROM consents
		WHERE tenant_id = ? AND user_id = ? AND client_id = ? AND (expires_at IS NULL OR expires_at > ?)`,
		tenantID, userID, clientID, now.UnixMicro()))
	return c, wrap("get consent", err)
}

// ListConsents returns a user's consents by client id, or with an empty
// userID every consent of the tenant by user id, then client id.
func (s *Store) ListConsents(ctx context.Context, tenantID, userID string) ([]storage.Consent, error) {
	query := `SELECT ` + consentColumns + ` FROM consents WHERE tenant_id = ? ORDER BY user_id, client_id`
	args := []any{tenantID}
	if userID != "" {
		query = `SELECT ` + consentColumns + ` FROM consents WHERE tenant_id = ? AND user_id = ? ORDER BY client_id`
		args = append(args, userID)
	}
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, wrap("list consents", err)
	}
	defer rows.Close()
	var out []storage.Consent
	for rows.Next() {
		c, err := scanConsent(rows)
		if err != nil {
			return nil, wrap("list consents", err)
		}
		out = append(out, c)
	}
	return out, wrap("list consents", rows.Err())
}

// DeleteConsent removes a user's consent to a client and ends the user's
// grants to that client, in one transaction (see endGrants).
func (s *Store) DeleteConsent(ctx context.Context, tenantID, userID, clientID string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		err := mustAffect(tx.ExecContext(ctx, `DELETE FROM consents WHERE tenant_id = ? AND user_id = ? AND client_id = ?`,
			tenantID, userID, clientID))
		if err != nil {
			return err
		}
		return endGrants(ctx, tx, tenantID, false, `subject = ?2 AND client_id = ?3`, userID, clientID)
	})
	return wrap("delete consent", err)
}
