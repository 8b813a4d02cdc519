package server

import (
	"context"
	"sync"
	"time"

	"github.com/smartauth/smartauth/storage"
)

// Tenant settings and client registrations are read on every OAuth request;
// keeping them in memory briefly makes a request cost one database round
// trip. A change made on another replica or by the CLI takes effect within
// the TTL; a change made through this process takes effect at once.
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
	c.mu.Unlock()
	if ok && !now.Before(e.at) && now.Sub(e.at) < c.ttl {
		return e.v, nil
	}
	v, err := c.load(ctx, k)
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	if len(c.m) >= cacheMax {
		c.m = map[K]cacheEntry[V]{}
	}
	c.m[k] = cacheEntry[V]{v: v, at: now}
	c.mu.Unlock()
	return v, nil
}

func (c *ttlCache[K, V]) forget(k K) {
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

// clientCache is the store with GetClient answered from memory while fresh.
type clientCache struct {
	storage.Storage
	clients *ttlCache[[2]string, storage.Client]
}

func newClientCache(s storage.Storage, now func() time.Time) *clientCache {
	return &clientCache{Storage: s, clients: newTTLCache(ClientCacheTTL, now, func(ctx context.Context, k [2]string) (storage.Client, error) {
		return s.GetClient(ctx, k[0], k[1])
	})}
}

// GetClient returns a client, from memory when read less than ClientCacheTTL ago.
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
func newTenantCache(s storage.Storage, now func() time.Time) *ttlCache[string, storage.Tenant] {
	return newTTLCache(TenantCacheTTL, now, s.GetTenant)
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
