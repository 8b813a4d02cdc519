package gateway

import (
	"crypto/sha256"
	"sync"
	"time"
)

// DefaultRevocationDelay is how long a validated token is trusted without
// asking the store again: a revoked token stops working at the gateway at
// most this long after its revocation.
const DefaultRevocationDelay = 5 * time.Second

// maxCachedGrants bounds the cache; past it, the cache starts over rather
// than grow with every token an attacker can mint requests for.
const maxCachedGrants = 100_000

// Grants remembers validated tokens for a short while, so that a busy app
// costs one store lookup every few seconds instead of one per request. It
// keys by a digest, never keeping the token itself.
type Grants struct {
	delay time.Duration
	now   func() time.Time

	mu sync.RWMutex
	m  map[[32]byte]cachedGrant
}

type cachedGrant struct {
	tenant string
	base   string
	grant  Grant
	until  time.Time
}

// NewGrants returns a cache that trusts a validation for delay (zero means DefaultRevocationDelay).
func NewGrants(delay time.Duration, now func() time.Time) *Grants {
	if delay <= 0 {
		delay = DefaultRevocationDelay
	}
	if now == nil {
		now = time.Now
	}
	return &Grants{delay: delay, now: now, m: map[[32]byte]cachedGrant{}}
}

// Get returns the grant of a token validated for tenant and FHIR base
// within the delay and not expired since.
func (c *Grants) Get(tenant, base, token string) (Grant, bool) {
	key := sha256.Sum256([]byte(token))
	c.mu.RLock()
	e, ok := c.m[key]
	c.mu.RUnlock()
	if !ok || e.tenant != tenant || e.base != base || !c.now().Before(e.until) {
		return Grant{}, false
	}
	return e.grant, true
}

// Put remembers a token's grant until the delay passes or expires, whichever is sooner.
func (c *Grants) Put(tenant, base, token string, g Grant, expires time.Time) {
	until := c.now().Add(c.delay)
	if expires.Before(until) {
		until = expires
	}
	key := sha256.Sum256([]byte(token))
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedGrants {
		now := c.now()
		for k, e := range c.m {
			if !now.Before(e.until) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxCachedGrants {
			clear(c.m)
		}
	}
	c.m[key] = cachedGrant{tenant: tenant, base: base, grant: g, until: until}
}
