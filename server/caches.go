package server

import (
	"context"
	"sync"
	"time"

	"github.com/smartauth/smartauth/storage"
)

// ClientCacheTTL is how long a client registration is reused from memory.
// A change made on another replica or by the CLI (a rotated secret, a
// deleted client) takes effect here within this time.
const ClientCacheTTL = 5 * time.Second

// clientCacheMax bounds the cache; past it the cache starts over.
const clientCacheMax = 10000

// clientCache is the store with GetClient answered from memory while fresh,
// so the token and introspection endpoints do not read the same client row
// on every request (it would cost a database round trip each time).
type clientCache struct {
	storage.Storage
	now func() time.Time

	mu sync.Mutex
	m  map[[2]string]cachedClient
}

type cachedClient struct {
	c  storage.Client
	at time.Time
}

func newClientCache(s storage.Storage, now func() time.Time) *clientCache {
	return &clientCache{Storage: s, now: now, m: map[[2]string]cachedClient{}}
}

// GetClient returns a client, from memory when read less than ClientCacheTTL ago.
func (c *clientCache) GetClient(ctx context.Context, tenantID, clientID string) (storage.Client, error) {
	key := [2]string{tenantID, clientID}
	now := c.now()
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && !now.Before(e.at) && now.Sub(e.at) < ClientCacheTTL {
		return e.c, nil
	}
	cl, err := c.Storage.GetClient(ctx, tenantID, clientID)
	if err != nil {
		return cl, err
	}
	c.mu.Lock()
	if len(c.m) >= clientCacheMax {
		c.m = map[[2]string]cachedClient{}
	}
	c.m[key] = cachedClient{c: cl, at: now}
	c.mu.Unlock()
	return cl, nil
}

func (c *clientCache) forget(tenantID, clientID string) {
	c.mu.Lock()
	delete(c.m, [2]string{tenantID, clientID})
	c.mu.Unlock()
}

// UpdateClient writes through and drops the cached copy.
func (c *clientCache) UpdateClient(ctx context.Context, cl storage.Client) error {
	defer c.forget(cl.TenantID, cl.ID)
	return c.Storage.UpdateClient(ctx, cl)
}

// DeleteClient writes through and drops the cached copy.
func (c *clientCache) DeleteClient(ctx context.Context, tenantID, clientID string) error {
	defer c.forget(tenantID, clientID)
	return c.Storage.DeleteClient(ctx, tenantID, clientID)
}

// TenantCacheTTL is how long a tenant's settings are reused from memory; a
// change (FHIR base URLs, token lifetimes) reaches every replica within it.
const TenantCacheTTL = 5 * time.Second

// tenantCache answers tenant lookups from memory while fresh, so a request
// does not cost a database round trip before it starts. Unknown tenants are
// not cached: a new tenant is usable at once.
type tenantCache struct {
	store storage.Storage
	now   func() time.Time

	mu sync.Mutex
	m  map[string]cachedTenant
}

type cachedTenant struct {
	t  storage.Tenant
	at time.Time
}

func newTenantCache(s storage.Storage, now func() time.Time) *tenantCache {
	return &tenantCache{store: s, now: now, m: map[string]cachedTenant{}}
}

func (c *tenantCache) get(ctx context.Context, id string) (storage.Tenant, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if ok && !now.Before(e.at) && now.Sub(e.at) < TenantCacheTTL {
		return e.t, nil
	}
	t, err := c.store.GetTenant(ctx, id)
	if err != nil {
		return t, err
	}
	c.mu.Lock()
	if len(c.m) >= clientCacheMax {
		c.m = map[string]cachedTenant{}
	}
	c.m[id] = cachedTenant{t: t, at: now}
	c.mu.Unlock()
	return t, nil
}
