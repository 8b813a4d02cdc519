// Package ratelimit counts requests per key in fixed windows and says which
// keys are over their limit. It knows nothing of HTTP: the server names the
// keys (a client, a source address) and their limits.
//
// The algorithm is a fixed window aligned to the clock (a minute begins at
// :00), chosen because a shared counter then needs one row per key and
// window and one atomic upsert per request, and because the instant a key
// may come back is exact, which Retry-After needs. Its known weakness, up
// to twice the limit across the boundary of two windows, is acceptable for
// a limit meant to stop floods rather than meter use.
//
// Requests are counted after they are served and refused before: Count
// adds one request to each key and marks a key that reached its limit
// blocked, in memory, until its window ends; Blocked, called before the
// next request is served, asks only that memory. So a refused request costs
// no database round trip, a flood of them costs nothing, and the counter
// sees only the requests actually served. Where the counter is shared by
// several replicas, each learns that a key is over from its own next count,
// so a key may get one request more per replica (and those in flight) than
// its limit in a window.
package ratelimit

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Counter counts requests. Count adds one to the count of each key of a
// tenant in the window that began at start and lasts window, and returns
// the counts after it, in the order of keys. Keys are distinct.
type Counter interface {
	CountRequests(ctx context.Context, tenantID string, keys []string, start time.Time, window time.Duration) ([]int64, error)
}

// Key is a counter name and its limit per window; a limit of zero or less
// means the key is not limited and not counted.
type Key struct {
	Name  string
	Limit int64
}

// Limiter refuses the keys whose counter reached its limit until their
// window ends.
type Limiter struct {
	counter Counter
	window  time.Duration

	mu      sync.Mutex
	blocked map[tenantKey]time.Time
	pruned  time.Time
}

type tenantKey struct{ tenant, key string }

// New returns a limiter counting with c in windows of the given length.
func New(c Counter, window time.Duration) *Limiter {
	return &Limiter{counter: c, window: window, blocked: map[tenantKey]time.Time{}}
}

// Window is the length of the limiter's windows.
func (l *Limiter) Window() time.Duration { return l.window }

// Blocked reports whether any of names is refused at now, and if so how long
// until all of them may come back.
func (l *Limiter) Blocked(tenantID string, names []string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	for _, n := range names {
		if until, ok := l.blocked[tenantKey{tenantID, n}]; ok && until.After(now) {
			wait = max(wait, until.Sub(now))
		}
	}
	return wait, wait > 0
}

// Count counts one request under each key with a limit and marks those
// whose count reached their limit blocked until the window ends.
func (l *Limiter) Count(ctx context.Context, tenantID string, keys []Key, now time.Time) error {
	keys = slices.DeleteFunc(slices.Clone(keys), func(k Key) bool { return k.Limit <= 0 })
	if len(keys) == 0 {
		return nil
	}
	// One order for every caller, so that concurrent counts of the same
	// keys in one statement take their row locks in the same order.
	slices.SortFunc(keys, func(a, b Key) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.Name
	}
	start := now.Truncate(l.window)
	counts, err := l.counter.CountRequests(ctx, tenantID, names, start, l.window)
	if err != nil {
		return err
	}
	end := start.Add(l.window)
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, k := range keys {
		if i < len(counts) && counts[i] >= k.Limit {
			l.blocked[tenantKey{tenantID, k.Name}] = end
		}
	}
	if start.After(l.pruned) {
		// Once a window: forget the blocks that ended.
		l.pruned = start
		for k, until := range l.blocked {
			if !until.After(now) {
				delete(l.blocked, k)
			}
		}
	}
	return nil
}

// Memory is a Counter kept in this process, for a store no other process
// shares. It keeps only the latest window.
type Memory struct {
	mu     sync.Mutex
	start  time.Time
	counts map[tenantKey]int64
}

// NewMemory returns an empty in-memory counter.
func NewMemory() *Memory { return &Memory{counts: map[tenantKey]int64{}} }

// CountRequests implements Counter. A count for a window before the latest
// one seen (a request that read the clock just before the boundary) goes
// to the latest window.
func (m *Memory) CountRequests(_ context.Context, tenantID string, keys []string, start time.Time, _ time.Duration) ([]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if start.After(m.start) {
		m.start = start
		clear(m.counts)
	}
	out := make([]int64, len(keys))
	for i, k := range keys {
		tk := tenantKey{tenantID, k}
		m.counts[tk]++
		out[i] = m.counts[tk]
	}
	return out, nil
}
