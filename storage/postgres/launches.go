package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/smartauth/smartauth/storage"
)

// launchColumns are a launch's columns; id holds storage.LaunchKey of the
// launch value, never the value itself.
const launchColumns = `tenant_id, id, client_id, user_id, aud, context, created_at, expires_at`

// scanLaunch reads a launch row found by the raw value launchID. The row
// holds only the key, so the launch gets launchID back as its ID.
func scanLaunch(row pgx.Row, launchID string) (storage.Launch, error) {
	var l storage.Launch
	var key string
	var launchContext []byte
	var created, expires pgtype.Timestamptz
	if err := row.Scan(&l.TenantID, &key, &l.ClientID, &l.UserID, &l.Aud, &launchContext, &created, &expires); err != nil {
		return storage.Launch{}, err
	}
	if err := fromJSON(launchContext, &l.Context); err != nil {
		return storage.Launch{}, fmt.Errorf("launch %s: context: %w", key, err)
	}
	l.ID = launchID
	l.CreatedAt, l.ExpiresAt = instant(created), instant(expires)
	return l, nil
}

// CreateLaunch stores an EHR launch context under the key of its value.
func (s *Store) CreateLaunch(ctx context.Context, l storage.Launch) error {
	// Every value has a non-empty key, so the column's check no longer
	// catches an empty one.
	if l.ID == "" {
		return errors.New("postgres: create launch: empty id")
	}
	launchContext, err := toJSON(l.Context)
	if err != nil {
		return wrap("create launch", err)
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO launches (`+launchColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		l.TenantID, storage.LaunchKey(l.ID), l.ClientID, l.UserID, l.Aud, launchContext, tstz(l.CreatedAt), tstz(l.ExpiresAt))
	return wrap("create launch", err)
}

// ConsumeLaunch returns a launch context and marks it used, once.
func (s *Store) ConsumeLaunch(ctx context.Context, tenantID, launchID string, now time.Time) (storage.Launch, error) {
	key := storage.LaunchKey(launchID)
	l, err := scanLaunch(s.pool.QueryRow(ctx, `UPDATE launches SET used_at = $3
		WHERE tenant_id = $1 AND id = $2 AND used_at IS NULL AND expires_at > $3 RETURNING `+launchColumns,
		tenantID, key, now), launchID)
	if !errors.Is(err, pgx.ErrNoRows) {
		return l, wrap("consume launch", err)
	}
	// Tell apart why nothing matched; "used" wins over "expired".
	var used bool
	err = s.pool.QueryRow(ctx, `SELECT used_at IS NOT NULL FROM launches WHERE tenant_id = $1 AND id = $2`, tenantID, key).Scan(&used)
	if err != nil {
		return storage.Launch{}, wrap("consume launch", err)
	}
	if used {
		return storage.Launch{}, fmt.Errorf("postgres: consume launch: %w", storage.ErrConsumed)
	}
	return storage.Launch{}, fmt.Errorf("postgres: consume launch: %w", storage.ErrExpired)
}

// GetLaunch returns a launch context without using it up. Unknown:
// ErrNotFound; used: ErrConsumed, even once expired; at or past ExpiresAt:
// ErrExpired.
func (s *Store) GetLaunch(ctx context.Context, tenantID, launchID string, now time.Time) (storage.Launch, error) {
	var used bool
	l, err := scanLaunch(usedAlso{s.pool.QueryRow(ctx, `SELECT `+launchColumns+`, used_at IS NOT NULL FROM launches WHERE tenant_id = $1 AND id = $2`,
		tenantID, storage.LaunchKey(launchID)), &used}, launchID)
	if err != nil {
		return storage.Launch{}, wrap("get launch", err)
	}
	// The same order of refusals as ConsumeLaunch: "used" wins over "expired".
	switch {
	case used:
		return storage.Launch{}, fmt.Errorf("postgres: get launch: %w", storage.ErrConsumed)
	case !now.Before(l.ExpiresAt):
		return storage.Launch{}, fmt.Errorf("postgres: get launch: %w", storage.ErrExpired)
	}
	return l, nil
}

// usedAlso scans a launch row followed by whether it was used, so GetLaunch
// reuses scanLaunch for the launch columns.
type usedAlso struct {
	row  pgx.Row
	used *bool
}

func (u usedAlso) Scan(dest ...any) error {
	return u.row.Scan(append(dest, u.used)...)
}
