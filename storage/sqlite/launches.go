package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/smartauth/smartauth/storage"
)

// launchColumns are a launch's columns; id holds storage.LaunchKey of the
// launch value, never the value itself.
const launchColumns = `tenant_id, id, client_id, user_id, aud, context, created_at, expires_at`

// scanLaunch reads a launch row found by the raw value launchID. The row
// holds only the key, so the launch gets launchID back as its ID.
func scanLaunch(sc scanner, launchID string) (storage.Launch, error) {
	var l storage.Launch
	var key, launchContext string
	var created, expires sql.NullInt64
	if err := sc.Scan(&l.TenantID, &key, &l.ClientID, &l.UserID, &l.Aud, &launchContext, &created, &expires); err != nil {
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
		return errors.New("sqlite: create launch: empty id")
	}
	launchContext, err := toJSON(l.Context)
	if err != nil {
		return wrap("create launch", err)
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO launches (`+launchColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		l.TenantID, storage.LaunchKey(l.ID), l.ClientID, l.UserID, l.Aud, launchContext, micros(l.CreatedAt), micros(l.ExpiresAt))
	return wrap("create launch", err)
}

// ConsumeLaunch returns a launch context and marks it used, once.
func (s *Store) ConsumeLaunch(ctx context.Context, tenantID, launchID string, now time.Time) (storage.Launch, error) {
	key := storage.LaunchKey(launchID)
	var l storage.Launch
	var refusal error
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		l, err = scanLaunch(tx.QueryRowContext(ctx, `UPDATE launches SET used_at = ?
			WHERE tenant_id = ? AND id = ? AND used_at IS NULL AND expires_at > ? RETURNING `+launchColumns,
			now.UnixMicro(), tenantID, key, now.UnixMicro()), launchID)
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		// Tell apart why nothing matched; "used" wins over "expired".
		var used sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT used_at FROM launches WHERE tenant_id = ? AND id = ?`, tenantID, key).Scan(&used); err != nil {
			return err
		}
		refusal = storage.ErrExpired
		if used.Valid {
			refusal = storage.ErrConsumed
		}
		return nil
	})
	if err != nil {
		return storage.Launch{}, wrap("consume launch", err)
	}
	if refusal != nil {
		return storage.Launch{}, fmt.Errorf("sqlite: consume launch: %w", refusal)
	}
	return l, nil
}

// GetLaunch returns a launch context without using it up. Unknown:
// ErrNotFound; used: ErrConsumed, even once expired; at or past ExpiresAt:
// ErrExpired.
func (s *Store) GetLaunch(ctx context.Context, tenantID, launchID string, now time.Time) (storage.Launch, error) {
	var used sql.NullInt64
	l, err := scanLaunch(usedAlso{s.r.QueryRowContext(ctx, `SELECT `+launchColumns+`, used_at FROM launches WHERE tenant_id = ? AND id = ?`,
		tenantID, storage.LaunchKey(launchID)), &used}, launchID)
	if err != nil {
		return storage.Launch{}, wrap("get launch", err)
	}
	// The same order of refusals as ConsumeLaunch: "used" wins over "expired".
	switch {
	case used.Valid:
		return storage.Launch{}, fmt.Errorf("sqlite: get launch: %w", storage.ErrConsumed)
	case !now.Before(l.ExpiresAt):
		return storage.Launch{}, fmt.Errorf("sqlite: get launch: %w", storage.ErrExpired)
	}
	return l, nil
}

// usedAlso scans a launch row followed by its used_at column, so GetLaunch
// reuses scanLaunch for the launch columns.
type usedAlso struct {
	row  scanner
	used *sql.NullInt64
}

func (u usedAlso) Scan(dest ...any) error {
	return u.row.Scan(append(dest, u.used)...)
}
