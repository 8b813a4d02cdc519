package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/smartauth/smartauth/storage"
)

const tokenColumns = `tenant_id, kind, signature, request_id, client_id, subject, session_id, active, data, created_at, expires_at`

func scanToken(row pgx.Row) (storage.Token, error) {
	var t storage.Token
	var kind string
	var created, expires pgtype.Timestamptz
	err := row.Scan(&t.TenantID, &kind, &t.Signature, &t.RequestID, &t.ClientID, &t.Subject, &t.SessionID,
		&t.Active, &t.Data, &created, &expires)
	if err != nil {
		return storage.Token{}, err
	}
	t.Kind = storage.TokenKind(kind)
	t.CreatedAt, t.ExpiresAt = instant(created), instant(expires)
	return t, nil
}

// familyLockClass is the first key of the advisory lock that serialises the
// writes to one grant family: storing one of its records and revoking it.
// The second key is a hash of the tenant and request id. The class keeps
// these locks apart from any other advisory lock in the database.
const familyLockClass int32 = 0x666d6c79 // "fmly"

// lockFamily takes the family lock until the end of the transaction.
const lockFamily = `SELECT pg_advisory_xact_lock($1, hashtext($2::text || '/' || $3::text))`

// CreateToken stores a grant record, inactive if its request was revoked.
//
// The check for a revoked-request marker cannot share a statement with the
// insert: under READ COMMITTED that statement reads a snapshot taken before
// it ran, which misses a revocation committing meanwhile, and the revocation,
// whose own snapshot predates this insert, would miss the new record too.
// So both sides first take the family's lock, and the insert, a statement of
// its own, reads a snapshot taken once the lock is held: either the
// revocation committed before, and the insert sees its marker, or it waits
// for this insert to commit, and its update sees the new record. The two
// statements travel as one batch, one round trip, in one implicit
// transaction; a record of no request, or one alone in its request
// (Token.Alone), has no family revocation to race.
func (s *Store) CreateToken(ctx context.Context, t storage.Token) error {
	const insert = `INSERT INTO tokens (` + tokenColumns + `) SELECT $1, $2, $3, $4, $5, $6, $7,
		$8::boolean AND NOT EXISTS (SELECT 1 FROM revoked_requests WHERE tenant_id = $1 AND request_id = $4), $9, $10, $11`
	args := []any{t.TenantID, string(t.Kind), t.Signature, t.RequestID, t.ClientID, t.Subject, t.SessionID,
		t.Active, t.Data, tstz(t.CreatedAt), tstz(t.ExpiresAt)}
	if t.RequestID == "" || t.Alone {
		_, err := s.pool.Exec(ctx, insert, args...)
		return wrap("create token", err)
	}
	b := &pgx.Batch{}
	b.Queue(lockFamily, familyLockClass, t.TenantID, t.RequestID)
	b.Queue(insert, args...)
	return wrap("create token", s.pool.SendBatch(ctx, b).Close())
}

// GetToken returns a grant record whether or not it is still active.
func (s *Store) GetToken(ctx context.Context, tenantID string, kind storage.TokenKind, signature string) (storage.Token, error) {
	t, err := scanToken(s.pool.QueryRow(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE tenant_id = $1 AND kind = $2 AND signature = $3`,
		tenantID, string(kind), signature))
	return t, wrap("get token", err)
}

// ConsumeToken atomically marks an active record inactive and returns it as
// now stored. A record already inactive yields the record and an error
// wrapping ErrConsumed.
func (s *Store) ConsumeToken(ctx context.Context, tenantID string, kind storage.TokenKind, signature string) (storage.Token, error) {
	// Concurrent updates of the row queue on its lock and re-check "active"
	// once the winner commits, so exactly one of them gets the row back.
	t, err := scanToken(s.pool.QueryRow(ctx, `UPDATE tokens SET active = false
		WHERE tenant_id = $1 AND kind = $2 AND signature = $3 AND active RETURNING `+tokenColumns,
		tenantID, string(kind), signature))
	if !errors.Is(err, pgx.ErrNoRows) {
		return t, wrap("consume token", err)
	}
	// Nothing active matched: tell a used-up record from an absent one.
	t, err = scanToken(s.pool.QueryRow(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE tenant_id = $1 AND kind = $2 AND signature = $3`,
		tenantID, string(kind), signature))
	if err != nil {
		return storage.Token{}, wrap("consume token", err)
	}
	return t, fmt.Errorf("postgres: consume token: %w", storage.ErrConsumed)
}

// RevokeRequest marks every record of one request inactive and returns how
// many were active. It first records the request as revoked, under the
// family lock that CreateToken takes too, so a record stored for it
// afterwards is born inactive (see CreateToken for why the lock). The marker
// lasts an hour, or longer while a record of the family is kept.
func (s *Store) RevokeRequest(ctx context.Context, tenantID, requestID string) (int64, error) {
	b := &pgx.Batch{}
	b.Queue(lockFamily, familyLockClass, tenantID, requestID)
	b.Queue(`WITH marker AS (
			INSERT INTO revoked_requests (tenant_id, request_id, expires_at)
			SELECT $1, $2, greatest(now() + interval '1 hour',
				(SELECT max(expires_at) FROM tokens WHERE tenant_id = $1 AND request_id = $2))
			WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1)
			ON CONFLICT (tenant_id, request_id) DO UPDATE
				SET expires_at = greatest(revoked_requests.expires_at, EXCLUDED.expires_at)
		)
		UPDATE tokens SET active = false WHERE tenant_id = $1 AND request_id = $2 AND active`,
		tenantID, requestID)
	br := s.pool.SendBatch(ctx, b)
	_, err := br.Exec()
	var tag pgconn.CommandTag
	if err == nil {
		tag, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, wrap("revoke request", err)
	}
	return tag.RowsAffected(), nil
}

// RevokeRequestKind marks the records of one kind in one request inactive
// and returns how many were active.
func (s *Store) RevokeRequestKind(ctx context.Context, tenantID, requestID string, kind storage.TokenKind) (int64, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE tokens SET active = false WHERE tenant_id = $1 AND request_id = $2 AND kind = $3 AND active`,
		tenantID, requestID, string(kind))
	if err != nil {
		return 0, wrap("revoke request kind", err)
	}
	return tag.RowsAffected(), nil
}

// endGrants ends, inside tx, every grant family of a tenant that holds a
// record matching match, a condition on tokens whose parameters start at $2
// with args for values: it marks each family revoked, as RevokeRequest
// does, then deactivates the matching records, or deletes them with remove.
//
// A family is marked if any record of it is still stored, consumed and
// expired ones included. A refresh between consuming the old refresh token
// and storing the new pair leaves its family no active record, yet stores
// that pair afterwards; and a record expired by the database's clock may
// not be by the server's. Each marker costs a row for an hour or so.
//
// The family locks come first, for the reason CreateToken gives, and in the
// order of their keys: every bulk revocation takes its locks in that one
// order and no other family lock later, so two of them sharing families
// cannot wait on each other in a cycle. A family whose first record commits
// after the families are read began while this revocation ran, and counts
// as begun after it; the update still deactivates those of its records
// committed before the update runs.
func endGrants(ctx context.Context, tx pgx.Tx, tenantID string, remove bool, match string, args ...any) error {
	args = append([]any{tenantID}, args...)
	rows, err := tx.Query(ctx, `SELECT DISTINCT request_id, hashtext($1::text || '/' || request_id) FROM tokens
		WHERE tenant_id = $1 AND request_id <> '' AND `+match, args...)
	if err != nil {
		return fmt.Errorf("find grant families: %w", err)
	}
	var families []string
	var keys []int32
	var family string
	var key int32
	_, err = pgx.ForEachRow(rows, []any{&family, &key}, func() error {
		families = append(families, family)
		keys = append(keys, key)
		return nil
	})
	if err != nil {
		return fmt.Errorf("find grant families: %w", err)
	}
	if len(families) > 0 {
		// Keys shared by two families (hash collisions) are locked once;
		// unnest yields the rest in array order, so they are taken in turn.
		slices.Sort(keys)
		keys = slices.Compact(keys)
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::int4[]) AS k`,
			familyLockClass, keys); err != nil {
			return fmt.Errorf("lock grant families: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO revoked_requests (tenant_id, request_id, expires_at)
			SELECT $1, r, greatest(now() + interval '1 hour',
				(SELECT max(expires_at) FROM tokens WHERE tenant_id = $1 AND request_id = r))
			FROM unnest($2::text[]) AS r
			ON CONFLICT (tenant_id, request_id) DO UPDATE
				SET expires_at = greatest(revoked_requests.expires_at, EXCLUDED.expires_at)`,
			tenantID, families); err != nil {
			return fmt.Errorf("mark grant families revoked: %w", err)
		}
	}
	end := `UPDATE tokens SET active = false WHERE tenant_id = $1 AND active AND ` + match
	if remove {
		end = `DELETE FROM tokens WHERE tenant_id = $1 AND ` + match
	}
	if _, err := tx.Exec(ctx, end, args...); err != nil {
		return fmt.Errorf("end grant records: %w", err)
	}
	return nil
}

// DeleteToken removes one grant record.
func (s *Store) DeleteToken(ctx context.Context, tenantID string, kind storage.TokenKind, signature string) error {
	err := mustAffect(s.pool.Exec(ctx, `DELETE FROM tokens WHERE tenant_id = $1 AND kind = $2 AND signature = $3`,
		tenantID, string(kind), signature))
	return wrap("delete token", err)
}

// ListActiveTokens returns a tenant's active, unexpired records of one kind,
// oldest first.
func (s *Store) ListActiveTokens(ctx context.Context, tenantID string, kind storage.TokenKind, now time.Time) ([]storage.Token, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+tokenColumns+` FROM tokens
		WHERE tenant_id = $1 AND kind = $2 AND active AND expires_at > $3 ORDER BY created_at, signature COLLATE "C"`,
		tenantID, string(kind), tstz(now))
	if err != nil {
		return nil, wrap("list active tokens", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.Token, error) { return scanToken(r) })
	return out, wrap("list active tokens", err)
}

// RecordAssertionJTI remembers a client assertion's jti until expiresAt; a
// jti already remembered yields ErrAlreadyExists.
func (s *Store) RecordAssertionJTI(ctx context.Context, tenantID, clientID, jti string, expiresAt time.Time) error {
	// ON CONFLICT keeps replays out of the server log as unique violations;
	// a concurrent insert of the same key waits for the first to commit.
	tag, err := s.pool.Exec(ctx, `INSERT INTO assertion_jtis (tenant_id, client_id, jti, expires_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT DO NOTHING`, tenantID, clientID, jti, tstz(expiresAt))
	if err != nil {
		return wrap("record assertion jti", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: record assertion jti: %w", storage.ErrAlreadyExists)
	}
	return nil
}

// SweepExpired deletes expired sessions, grant records, revoked-request
// markers, launches, assertion jtis, sign-in failure counters, consents and
// pending TOTP enrollments, in one statement, and returns how many rows
// went. A consent without expiry has a NULL expires_at, which no comparison
// matches, so it stays.
func (s *Store) SweepExpired(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `WITH
		s AS (DELETE FROM sessions WHERE expires_at <= $1 RETURNING 1),
		t AS (DELETE FROM tokens WHERE expires_at <= $1 RETURNING 1),
		l AS (DELETE FROM launches WHERE expires_at <= $1 RETURNING 1),
		j AS (DELETE FROM assertion_jtis WHERE expires_at <= $1 RETURNING 1),
		r AS (DELETE FROM revoked_requests WHERE expires_at <= $1 RETURNING 1),
		f AS (DELETE FROM signin_failures WHERE expires_at <= $1 RETURNING 1),
		c AS (DELETE FROM consents WHERE expires_at <= $1 RETURNING 1),
		e AS (DELETE FROM totp_enrollments WHERE expires_at <= $1 RETURNING 1),
		q AS (DELETE FROM rate_counts WHERE expires_at <= $1 RETURNING 1)
		SELECT (SELECT count(*) FROM s) + (SELECT count(*) FROM t) + (SELECT count(*) FROM l) + (SELECT count(*) FROM j) + (SELECT count(*) FROM r)
			+ (SELECT count(*) FROM f) + (SELECT count(*) FROM c) + (SELECT count(*) FROM e) + (SELECT count(*) FROM q)`,
		now).Scan(&n)
	if err != nil {
		return 0, wrap("sweep expired", err)
	}
	return n, nil
}
