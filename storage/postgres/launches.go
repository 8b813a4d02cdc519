package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smartauth/smartauth/storage"
)

// GetLaunch returns a launch context without using it up. Unknown:
// ErrNotFound; used: ErrConsumed, even once expired; at or past ExpiresAt:
// ErrExpired.
func (s *Store) GetLaunch(ctx context.Context, tenantID, launchID string, now time.Time) (storage.Launch, error) {
	var used bool
	l, err := scanLaunch(usedAlso{s.pool.QueryRow(ctx, `SELECT `+launchColumns+`, used_at IS NOT NULL FROM launches WHERE tenant_id = $1 AND id = $2`,
		tenantID, launchID), &used})
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
