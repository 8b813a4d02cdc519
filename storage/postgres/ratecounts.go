package postgres

import (
	"context"
	"time"
)

// CountRequests adds one to each key's count in the window beginning at
// start in one statement: an insert of every key that becomes an update of
// the rows that exist. Rows are locked in the order of keys; callers that
// sort their keys never deadlock each other.
func (s *Store) CountRequests(ctx context.Context, tenantID string, keys []string, start time.Time, window time.Duration) ([]int64, error) {
	rows, err := s.pool.Query(ctx, `INSERT INTO rate_counts AS c (tenant_id, key, window_start, count, expires_at)
		SELECT $1, k, $2, 1, $3 FROM unnest($4::text[]) WITH ORDINALITY AS u(k, i) ORDER BY i
		ON CONFLICT (tenant_id, key, window_start) DO UPDATE SET count = c.count + 1
		RETURNING c.key, c.count`,
		tenantID, start, start.Add(window), keys)
	if err != nil {
		return nil, wrap("count requests", err)
	}
	defer rows.Close()
	byKey := make(map[string]int64, len(keys))
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return nil, wrap("count requests", err)
		}
		byKey[k] = n
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("count requests", err)
	}
	out := make([]int64, len(keys))
	for i, k := range keys {
		out[i] = byKey[k]
	}
	return out, nil
}
