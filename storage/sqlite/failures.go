package sqlite

import (
	"context"
	"time"
)

// RecordFailure counts one failed sign-in under key in one upsert: a window
// that began at or before now-window is over, so the count restarts at 1
// with a new window beginning at now. It returns the count after this failure.
func (s *Store) RecordFailure(ctx context.Context, tenantID, key string, now time.Time, window time.Duration) (int64, error) {
	var n int64
	err := s.w.QueryRowContext(ctx, `INSERT INTO signin_failures (tenant_id, key, count, window_start, expires_at)
		VALUES (?1, ?2, 1, ?3, ?4)
		ON CONFLICT (tenant_id, key) DO UPDATE SET
			count = CASE WHEN window_start <= ?5 THEN 1 ELSE count + 1 END,
			window_start = CASE WHEN window_start <= ?5 THEN excluded.window_start ELSE window_start END,
			expires_at = CASE WHEN window_start <= ?5 THEN excluded.expires_at ELSE expires_at END
		RETURNING count`,
		tenantID, key, now.UnixMicro(), now.Add(window).UnixMicro(), now.Add(-window).UnixMicro()).Scan(&n)
	if err != nil {
		return 0, wrap("record failure", err)
	}
	return n, nil
}

// FailureCount returns the failures counted under key in the window that
// covers now, or 0 when there are none or the window is over.
func (s *Store) FailureCount(ctx context.Context, tenantID, key string, now time.Time, window time.Duration) (int64, error) {
	var n int64
	err := s.r.QueryRowContext(ctx, `SELECT coalesce(sum(count), 0) FROM signin_failures
		WHERE tenant_id = ? AND key = ? AND window_start > ?`,
		tenantID, key, now.Add(-window).UnixMicro()).Scan(&n)
	if err != nil {
		return 0, wrap("failure count", err)
	}
	return n, nil
}

// ClearFailures forgets the failures counted under key; clearing a key
// with none is no error.
func (s *Store) ClearFailures(ctx context.Context, tenantID, key string) error {
	_, err := s.w.ExecContext(ctx, `DELETE FROM signin_failures WHERE tenant_id = ? AND key = ?`, tenantID, key)
	return wrap("clear failures", err)
}
