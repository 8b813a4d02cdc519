package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/smartauth/smartauth/storage"
)

var _ storage.ChangeFeed = (*Store)(nil)

// changeChannel is the channel the triggers of migration 00010 notify.
const changeChannel = "smartauth_changes"

// Reconnection waits double from the first to the last, with jitter, so
// replicas that lost the database together do not return in step; they
// start over from the first after a connection that lasted stableListen,
// so a connection that keeps dropping at once is not retried ever faster.
const (
	firstBackoff = 250 * time.Millisecond
	lastBackoff  = 30 * time.Second
	stableListen = time.Minute
)

// Between notifications the connection is pinged every pingInterval (the
// Store's feedPing), bounded by pingTimeout, so a connection the network
// silently dropped is noticed and replaced rather than waited on for ever.
const (
	pingInterval = 30 * time.Second
	pingTimeout  = 10 * time.Second
)

// WatchChanges listens for the changes every process makes to tenants,
// clients and signing keys, on a connection of its own outside the pool,
// and calls fn for each until ctx ends. After a failure it calls fn with
// the error, waits and connects again; each time it has connected (the
// first time too) it calls fn with Resync, since changes made while it was
// away were not notified to it. fn runs on this goroutine: it should return
// quickly, as notifications wait while it runs.
func (s *Store) WatchChanges(ctx context.Context, fn func(storage.Change)) {
	backoff := firstBackoff
	for {
		since, err := s.listen(ctx, fn)
		if ctx.Err() != nil {
			return
		}
		fn(storage.Change{Err: err})
		if !since.IsZero() && time.Since(since) >= stableListen {
			backoff = firstBackoff
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, lastBackoff)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// listen connects, listens and delivers notifications until the
// connection fails or ctx ends; since is when it started listening, zero
// if it never did.
func (s *Store) listen(ctx context.Context, fn func(storage.Change)) (since time.Time, err error) {
	// The pool's configuration, so the listener reaches the same database
	// and schema as every query.
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig)
	if err != nil {
		return time.Time{}, fmt.Errorf("postgres: change feed: connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
		defer cancel()
		conn.Close(cctx)
	}()
	var schema string
	if err := conn.QueryRow(ctx, `SELECT coalesce(current_schema(), '')`).Scan(&schema); err != nil {
		return time.Time{}, fmt.Errorf("postgres: change feed: read current schema: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+changeChannel); err != nil {
		return time.Time{}, fmt.Errorf("postgres: change feed: listen: %w", err)
	}
	since = time.Now()
	// Listening before resyncing: a change committed from here on is
	// notified, and one committed before is read afresh after the resync.
	fn(storage.Change{Resync: true})
	for {
		wctx, cancel := context.WithTimeout(ctx, s.feedPing)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return since, ctx.Err()
		case err == nil:
			if c, ok := parseChange(n.Payload, schema); ok {
				fn(c)
			}
		case pgconn.Timeout(err):
			pctx, cancel := context.WithTimeout(ctx, pingTimeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				return since, fmt.Errorf("postgres: change feed: ping: %w", err)
			}
		default:
			return since, fmt.Errorf("postgres: change feed: wait for notification: %w", err)
		}
	}
}

// changePayload is what the trigger sends; tenant and id are null when
// the payload would have been too long to send.
type changePayload struct {
	Schema string  `json:"schema"`
	Table  string  `json:"table"`
	Tenant *string `json:"tenant"`
	ID     *string `json:"id"`
}

// parseChange reads a notification's payload, refusing those of other
// schemas (other deployments or tests sharing the database) and any it
// cannot read.
func parseChange(payload, schema string) (storage.Change, bool) {
	var p changePayload
	if err := json.Unmarshal([]byte(payload), &p); err != nil || p.Schema != schema || p.Table == "" {
		return storage.Change{}, false
	}
	c := storage.Change{Table: p.Table}
	if p.Tenant != nil && p.ID != nil {
		c.TenantID, c.ID = *p.Tenant, *p.ID
	}
	return c, true
}
