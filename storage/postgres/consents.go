package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/smartauth/smartauth/storage"
)

const consentColumns = `tenant_id, user_id, client_id, scopes, created_at, expires_at`

func scanConsent(row pgx.Row) (storage.Consent, error) {
	var c storage.Consent
	var scopes []byte
	var created, expires pgtype.Timestamptz
	if err := row.Scan(&c.TenantID, &c.UserID, &c.ClientID, &scopes, &created, &expires); err != nil {
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
	// Concurrent upserts of one key queue on its row or index entry, so
	// none fails with a unique violation.
	_, err = s.pool.Exec(ctx, `INSERT INTO consents (`+consentColumns+`) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (tenant_id, user_id, client_id) DO UPDATE
		SET scopes = EXCLUDED.scopes, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at`,
		c.TenantID, c.UserID, c.ClientID, scopes, tstz(c.CreatedAt), tstz(c.ExpiresAt))
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23503" { // foreign_key_violation
		// The foreign keys name the tenant, the user and the client.
		return fmt.Errorf("postgres: save consent: unknown tenant, user or client: %w", storage.ErrNotFound)
	}
	return wrap("save consent", err)
}

// GetConsent returns a user's consent to a client that has not expired at now.
func (s *Store) GetConsent(ctx context.Context, tenantID, userID, clientID string, now time.Time) (storage.Consent, error) {
	c, err := scanConsent(s.pool.QueryRow(ctx, `SELECT `+consentColumns+` FROM consents
		WHERE tenant_id = $1 AND user_id = $2 AND client_id = $3 AND (expires_at IS NULL OR expires_at > $4)`,
		tenantID, userID, clientID, now))
	return c, wrap("get consent", err)
}

// ListConsents returns a user's consents by client id, or with an empty
// userID every consent of the tenant by user id, then client id.
func (s *Store) ListConsents(ctx context.Context, tenantID, userID string) ([]storage.Consent, error) {
	query := `SELECT ` + consentColumns + ` FROM consents WHERE tenant_id = $1 ORDER BY user_id COLLATE "C", client_id COLLATE "C"`
	args := []any{tenantID}
	if userID != "" {
		query = `SELECT ` + consentColumns + ` FROM consents WHERE tenant_id = $1 AND user_id = $2 ORDER BY client_id COLLATE "C"`
		args = append(args, userID)
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, wrap("list consents", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.Consent, error) { return scanConsent(r) })
	return out, wrap("list consents", err)
}

// DeleteConsent removes a user's consent to a client and ends the user's
// grants to that client, in one transaction (see endGrants).
func (s *Store) DeleteConsent(ctx context.Context, tenantID, userID, clientID string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := mustAffect(tx.Exec(ctx, `DELETE FROM consents WHERE tenant_id = $1 AND user_id = $2 AND client_id = $3`,
			tenantID, userID, clientID))
		if err != nil {
			return err
		}
		return endGrants(ctx, tx, tenantID, false, `subject = $2 AND client_id = $3`, userID, clientID)
	})
	return wrap("delete consent", err)
}
