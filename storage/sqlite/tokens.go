package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/smartauth/smartauth/storage"
)

const tokenColumns = `tenant_id, kind, signature, request_id, client_id, subject, session_id, active, data, created_at, expires_at`

func scanToken(sc scanner) (storage.Token, error) {
	var t storage.Token
	var kind string
	var created, expires sql.NullInt64
	err := sc.Scan(&t.TenantID, &kind, &t.Signature, &t.RequestID, &t.ClientID, &t.Subject, &t.SessionID,
		&t.Active, &t.Data, &created, &expires)
	if err != nil {
		return storage.Token{}, err
	}
	t.Kind = storage.TokenKind(kind)
	t.CreatedAt, t.ExpiresAt = instant(created), instant(expires)
	return t, nil
}

// CreateToken stores a grant record, inactive if its request was revoked.
// The marker check and the insert are one statement, so one write
// transaction: SQLite runs one writer at a time, so RevokeRequest commits
// wholly before or wholly after it.
func (s *Store) CreateToken(ctx context.Context, t storage.Token) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO tokens (`+tokenColumns+`) SELECT ?, ?, ?, ?, ?, ?, ?,
		? AND NOT EXISTS (SELECT 1 FROM revoked_requests WHERE tenant_id = ?1 AND request_id = ?4), ?, ?, ?`,
		t.TenantID, string(t.Kind), t.Signature, t.RequestID, t.ClientID, t.Subject, t.SessionID,
		t.Active, t.Data, micros(t.CreatedAt), micros(t.ExpiresAt))
	return wrap("create token", err)
}

// GetToken returns a grant record whether or not it is still active.
func (s *Store) GetToken(ctx context.Context, tenantID string, kind storage.TokenKind, signature string) (storage.Token, error) {
	t, err := scanToken(s.r.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE tenant_id = ? AND kind = ? AND signature = ?`,
		tenantID, string(kind), signature))
	return t, wrap("get token", err)
}

// ConsumeToken atomically marks an active record inactive and returns it as
// now stored. A record already inactive yields the record and an error
// wrapping ErrConsumed.
func (s *Store) ConsumeToken(ctx context.Context, tenantID string, kind storage.TokenKind, signature string) (storage.Token, error) {
	var t storage.Token
	consumed := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		t, err = scanToken(tx.QueryRowContext(ctx, `UPDATE tokens SET active = 0
			WHERE tenant_id = ? AND kind = ? AND signature = ? AND active = 1 RETURNING `+tokenColumns,
			tenantID, string(kind), signature))
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		// Nothing active matched: the record is used up, or absent.
		t, err = scanToken(tx.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE tenant_id = ? AND kind = ? AND signature = ?`,
			tenantID, string(kind), signature))
		consumed = err == nil
		return err
	})
	if err != nil {
		return storage.Token{}, wrap("consume token", err)
	}
	if consumed {
		return t, fmt.Errorf("sqlite: consume token: %w", storage.ErrConsumed)
	}
	return t, nil
}

// RevokeRequest marks every record of one request inactive and returns how
// many were active. It first records the request as revoked, in the same
// write transaction, so a record stored for it afterwards is born inactive.
// The marker lasts an hour, or longer while a record of the family is kept.
func (s *Store) RevokeRequest(ctx context.Context, tenantID, requestID string) (int64, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO revoked_requests (tenant_id, request_id, expires_at)
			SELECT ?1, ?2, max(?3, coalesce((SELECT max(expires_at) FROM tokens WHERE tenant_id = ?1 AND request_id = ?2), 0))
			WHERE EXISTS (SELECT 1 FROM tenants WHERE id = ?1)
			ON CONFLICT (tenant_id, request_id) DO UPDATE SET expires_at = max(revoked_requests.expires_at, excluded.expires_at)`,
			tenantID, requestID, time.Now().Add(time.Hour).UnixMicro()); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE tokens SET active = 0 WHERE tenant_id = ? AND request_id = ? AND active = 1`,
			tenantID, requestID)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, wrap("revoke request", err)
}

// RevokeRequestKind marks the records of one kind in one request inactive
// and returns how many were active.
func (s *Store) RevokeRequestKind(ctx context.Context, tenantID, requestID string, kind storage.TokenKind) (int64, error) {
	res, err := s.w.ExecContext(ctx, `UPDATE tokens SET active = 0 WHERE tenant_id = ? AND request_id = ? AND kind = ? AND active = 1`,
		tenantID, requestID, string(kind))
	if err != nil {
		return 0, wrap("revoke request kind", err)
	}
	n, err := res.RowsAffected()
	return n, wrap("revoke request kind", err)
}

// endGrants ends, inside tx, every grant family of a tenant that holds a
// record matching match, a condition on tokens whose parameters start at ?2
// with args for values: it marks each family revoked, as RevokeRequest
// does, then deactivates the matching records, or deletes them with remove.
// The write transaction runs alone, so no record of these families is
// stored between the marker and the update.
//
// A family is marked if any record of it is still stored, consumed and
// expired ones included. A refresh between consuming the old refresh token
// and storing the new pair leaves its family no active record, yet stores
// that pair afterwards; and a record expired by the database's clock may
// not be by the server's. Each marker costs a row for an hour or so.
func endGrants(ctx context.Context, tx *sql.Tx, tenantID string, remove bool, match string, args ...any) error {
	args = append([]any{tenantID}, args...)
	hour := fmt.Sprintf("?%d", len(args)+1)
	if _, err := tx.ExecContext(ctx, `INSERT INTO revoked_requests (tenant_id, request_id, expires_at)
		SELECT DISTINCT ?1, f.request_id, max(`+hour+`, (SELECT max(expires_at) FROM tokens WHERE tenant_id = ?1 AND request_id = f.request_id))
		FROM tokens AS f WHERE f.tenant_id = ?1 AND f.request_id <> '' AND `+match+`
		ON CONFLICT (tenant_id, request_id) DO UPDATE SET expires_at = max(revoked_requests.expires_at, excluded.expires_at)`,
		append(args, time.Now().Add(time.Hour).UnixMicro())...); err != nil {
		return fmt.Errorf("mark grant families revoked: %w", err)
	}
	end := `UPDATE tokens SET active = 0 WHERE tenant_id = ?1 AND active = 1 AND ` + match
	if remove {
		end = `DELETE FROM tokens WHERE tenant_id = ?1 AND ` + match
	}
	if _, err := tx.ExecContext(ctx, end, args...); err != nil {
		return fmt.Errorf("end grant records: %w", err)
	}
	return nil
}

// DeleteToken removes one grant record.
func (s *Store) DeleteToken(ctx context.Context, tenantID string, kind storage.TokenKind, signature string) error {
	err := mustAffect(s.w.ExecContext(ctx, `DELETE FROM tokens WHERE tenant_id = ? AND kind = ? AND signature = ?`,
		tenantID, string(kind), signature))
	return wrap("delete token", err)
}

// ListActiveTokens returns a tenant's active, unexpired records of one kind,
// oldest first.
func (s *Store) ListActiveTokens(ctx context.Context, tenantID string, kind storage.TokenKind, now time.Time) ([]storage.Token, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+tokenColumns+` FROM tokens
		WHERE tenant_id = ? AND kind = ? AND active = 1 AND expires_at > ? ORDER BY created_at, signature`,
		tenantID, string(kind), micros(now))
	if err != nil {
		return nil, wrap("list active tokens", err)
	}
	defer rows.Close()
	var out []storage.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, wrap("list active tokens", err)
		}
		out = append(out, t)
	}
	return out, wrap("list active tokens", rows.Err())
}

// RecordAssertionJTI remembers a client assertion's jti until expiresAt; a
// jti already remembered yields ErrAlreadyExists.
func (s *Store) RecordAssertionJTI(ctx context.Context, tenantID, clientID, jti string, expiresAt time.Time) error {
	res, err := s.w.ExecContext(ctx, `INSERT INTO assertion_jtis (tenant_id, client_id, jti, expires_at) VALUES (?, ?, ?, ?)
		ON CONFLICT DO NOTHING`, tenantID, clientID, jti, micros(expiresAt))
	if err != nil {
		return wrap("record assertion jti", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return wrap("record assertion jti", err)
	}
	if n == 0 {
		return fmt.Errorf("sqlite: record assertion jti: %w", storage.ErrAlreadyExists)
	}
	return nil
}

// SweepExpired deletes expired sessions, grant records, revoked-request
// markers, launches, assertion jtis, sign-in failure counters, consents and
// pending TOTP enrollments, and returns how many rows went. A consent
// without expiry has a NULL expires_at, which no comparison matches, so it
// stays.
func (s *Store) SweepExpired(ctx context.Context, now time.Time) (int64, error) {
	var total int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for _, table := range []string{"sessions", "tokens", "launches", "assertion_jtis", "revoked_requests", "signin_failures", "consents", "totp_enrollments"} {
			res, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE expires_at <= ?`, now.UnixMicro())
			if err != nil {
				return fmt.Errorf("%s: %w", table, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("%s: %w", table, err)
			}
			total += n
		}
		return nil
	})
	if err != nil {
		return 0, wrap("sweep expired", err)
	}
	return total, nil
}
