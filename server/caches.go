package server

import (
	"context"
	"sync"
	"time"

	"github.com/smartauth/smartauth/server/metrics"
	"github.com/smartauth/smartauth/storage"
)

// Tenant settings and client registrations are read on every OAuth request;
// keeping them in memory briefly makes a request cost one database round
// trip. These are the default times (Config.ClientCacheTTL and
// Config.TenantCacheTTL change them). A change made through this process
// takes effect here at once. With PostgreSQL, a change made on another
// replica or by the CLI takes effect as soon as the change feed tells this
// process (see Server.WatchChanges), normally within milliseconds; the TTL
// bounds how long a stale copy lives only where that cannot happen: with
// SQLite, where a CLI command run beside the server is seen within the TTL,
// and while the feed is reconnecting.
const (
	ClientCacheTTL = 5 * time.Second
	TenantCacheTTL = 5 * time.Second
)

// cacheMax bounds a cache; past it the cache starts over.
const cacheMax = 10000

// ttlCache remembers values found by load for ttl. Misses and errors are
// not remembered, so something created is usable at once.
type ttlCache[K comparable, V any] struct {
	ttl  time.Duration
	now  func() time.Time
	load func(ctx context.Context, k K) (V, error)

	mu sync.Mutex
	m  map[K]cacheEntry[V]
	// gen counts forgets, so a value loaded before a forget is not kept
	// after it: the forget may stand for a change the load missed.
	gen uint64
	// stats counts hits and misses; nil counts nothing.
	stats *metrics.Cache
}

type cacheEntry[V any] struct {
	v  V
	at time.Time
}

func newTTLCache[K comparable, V any](ttl time.Duration, now func() time.Time, load func(context.Context, K) (V, error)) *ttlCache[K, V] {
	return &ttlCache[K, V]{ttl: ttl, now: now, load: load, m: map[K]cacheEntry[V]{}}
}

func (c *ttlCache[K, V]) get(ctx context.Context, k K) (V, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.m[k]
	gen := c.gen
	c.mu.Unlock()
	if ok && !now.Before(e.at) && now.Sub(e.at) < c.ttl {
		c.stats.Lookup(true)
		return e.v, nil
	}
	c.stats.Lookup(false)
	v, err := c.load(ctx, k)
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	if c.gen == gen {
		if len(c.m) >= cacheMax {
			c.m = map[K]cacheEntry[V]{}
		}
		c.m[k] = cacheEntry[V]{v: v, at: now}
	}
	c.mu.Unlock()
	return v, nil
}

func (c *ttlCache[K, V]) forget(k K) {
	c.mu.Lock()
	delete(c.m, k)
	c.gen++
	c.mu.Unlock()
}

// forgetIf drops the entries whose keys match.
func (c *ttlCache[K, V]) forgetIf(match func(K) bool) {
	c.mu.Lock()
	for k := range c.m {
		if match(k) {
			delete(c.m, k)
		}
	}
	c.gen++
	c.mu.Unlock()
}

func (c *ttlCache[K, V]) forgetAll() {
	c.mu.Lock()
	clear(c.m)
	c.gen++
	c.mu.Unlock()
}

// clientCache is the store with GetClient answered from memory while fresh.
type clientCache struct {
	storage.Storage
	clients *ttlCache[[2]string, storage.Client]
}

func newClientCache(s storage.Storage, ttl time.Duration, now func() time.Time) *clientCache {
	return &clientCache{Storage: s, clients: newTTLCache(ttl, now, func(ctx context.Context, k [2]string) (storage.Client, error) {
		return s.GetClient(ctx, k[0], k[1])
	})}
}

// GetClient returns a client, from memory when read recently and not changed since.
func (c *clientCache) GetClient(ctx context.Context, tenantID, clientID string) (storage.Client, error) {
	return c.clients.get(ctx, [2]string{tenantID, clientID})
}

// UpdateClient writes through and drops the cached copy.
func (c *clientCache) UpdateClient(ctx context.Context, cl storage.Client) error {
	defer c.clients.forget([2]string{cl.TenantID, cl.ID})
	return c.Storage.UpdateClient(ctx, cl)
}

// DeleteClient writes through and drops the cached copy.
func (c *clientCache) DeleteClient(ctx context.Context, tenantID, clientID string) error {
	defer c.clients.forget([2]string{tenantID, clientID})
	return c.Storage.DeleteClient(ctx, tenantID, clientID)
}

// newTenantCache answers tenant lookups from memory while fresh.
func newTenantCache(s storage.Storage, ttl time.Duration, now func() time.Time) *ttlCache[string, storage.Tenant] {
	return newTTLCache(ttl, now, s.GetTenant)
}

// adminStore is the store administrative changes go through: it reads from
// the database, never a cache, so an edit starts from the current record,
// and a client or tenant it changes is dropped from this process's caches,
// so the change applies here at once.
type adminStore struct {
	*clientCache
	tenants *ttlCache[string, storage.Tenant]
}

// GetClient reads the database, not the cache.
func (a adminStore) GetClient(ctx context.Context, tenantID, clientID string) (storage.Client, error) {
	return a.clientCache.Storage.GetClient(ctx, tenantID, clientID)
}

// UpdateTenant writes through and drops the cached copy.
func (a adminStore) UpdateTenant(ctx context.Context, t storage.Tenant) error {
	defer a.tenants.forget(t.ID)
	return a.clientCache.Storage.UpdateTenant(ctx, t)
}

// forgetChanged drops what the caches hold of a record another process
// changed; when the change feed may have missed changes (it lost its
// connection, or has just connected), it drops everything, since any
// cached record may be stale.
func (s *Server) forgetChanged(c storage.Change) {
	switch {
	case c.Err != nil:
		s.forgetAll()
		s.log.Warn("change feed lost its connection, reconnecting; caches forgotten", "err", c.Err)
	case c.Resync:
		// Forgotten before the line is logged, so whoever waits for the
		// line knows nothing cached before it survives.
		s.forgetAll()
		s.log.Info("change feed listening; caches forgotten")
	case c.Table == storage.ChangedClients && c.TenantID == "":
		s.clients.clients.forgetAll()
	case c.Table == storage.ChangedClients && c.ID == "":
		s.clients.clients.forgetIf(func(k [2]string) bool { return k[0] == c.TenantID })
	case c.Table == storage.ChangedClients:
		s.clients.clients.forget([2]string{c.TenantID, c.ID})
	case c.Table == storage.ChangedTenants && c.TenantID == "":
		s.tenants.forgetAll()
	case c.Table == storage.ChangedTenants:
		s.tenants.forget(c.TenantID)
	case c.Table == storage.ChangedSigningKeys && c.TenantID == "":
		s.keys.ForgetAll()
	case c.Table == storage.ChangedSigningKeys:
		s.keys.Forget(c.TenantID)
	}
}

func (s *Server) forgetAll() {
	s.clients.clients.forgetAll()
	s.tenants.forgetAll()
	s.keys.ForgetAll()
}
