package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/smartauth/smartauth/storage"
)

// GetLaunch returns a launch context without using it up. Unknown:
// ErrNotFound; used: ErrConsumed, even once expired; at or past ExpiresAt:
// ErrExpired.
func (s *Store) GetLaunch(ctx context.Context, tenantID, launchID string, now time.Time) (storage.Launch, error) {
	var used sql.NullInt64
	l, err := scanLaunch(usedAlso{s.r.QueryRowContext(ctx, `SELECT `+launchColumns+`, used_at FROM launches WHERE tenant_id = ? AND id = ?`,
		tenantID, launchID), &used})
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
