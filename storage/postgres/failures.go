package postgres

import (
	"context"
	"time"
)

// RecordFailure counts one failed sign-in under key in one upsert: a window
// that began at or before now-window is over, so the count restarts at 1
// with a new window beginning at now. It returns the count after this
// failure. Concurrent upserts of one key queue on its row lock, so no
// failure is lost.
func (s *Store) RecordFailure(ctx context.Context, tenantID, key string, now time.Time, window time.Duration) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `INSERT INTO signin_failures AS f (tenant_id, key, count, window_start, expires_at)
		VALUES ($1, $2, 1, $3, $4)
		ON CONFLICT (tenant_id, key) DO UPDATE SET
			count = CASE WHEN f.window_start <= $5 THEN 1 ELSE f.count + 1 END,
			window_start = CASE WHEN f.window_start <= $5 THEN excluded.window_start ELSE f.window_start END,
			expires_at = CASE WHEN f.window_start <= $5 THEN excluded.expires_at ELSE f.expires_at END
		RETURNING f.count`,
		tenantID, key, now, now.Add(window), now.Add(-window)).Scan(&n)
	if err != nil {
		return 0, wrap("record failure", err)
	}
	return n, nil
}

// FailureCount returns the failures counted under key in the window that
// covers now, or 0 when there are none or the window is over.
func (s *Store) FailureCount(ctx context.Context, tenantID, key string, now time.Time, window time.Duration) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(sum(count), 0)::bigint FROM signin_failures
		WHERE tenant_id = $1 AND key = $2 AND window_start > $3`,
		tenantID, key, now.Add(-window)).Scan(&n)
	if err != nil {
		return 0, wrap("failure count", err)
	}
	return n, nil
}

// ClearFailures forgets the failures counted under key; clearing a key
// with none is no error.
func (s *Store) ClearFailures(ctx context.Context, tenantID, key string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM signin_failures WHERE tenant_id = $1 AND key = $2`, tenantID, key)
	return wrap("clear failures", err)
}
