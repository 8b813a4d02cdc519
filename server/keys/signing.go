package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/smartauth/smartauth/storage"
)

// Algorithms every tenant gets a key for: RS256 because OpenID Connect
// requires it of ID tokens, ES256 because it is smaller and faster.
var Algorithms = []string{"RS256", "ES256"}

// AccessTokenAlgorithms are those a tenant may sign access tokens with.
// PS256 gets an RSA key of its own rather than sharing the RS256 one: a JWK
// names one "alg", and strict validators refuse a PS256 signature by a key
// published as RS256; one key per algorithm is also the cryptographers'
// advice. A tenant holds a PS256 key only once it has chosen PS256.
var AccessTokenAlgorithms = []string{"RS256", "PS256", "ES256"}

// DefaultRetirement is how long a rotated-out key stays published, long
// enough for every token it signed to expire and every JWKS cache to refresh.
const DefaultRetirement = 7 * 24 * time.Hour

// Manager generates, rotates and serves a tenant's signing keys.
type Manager struct {
	store  storage.Storage
	sealer *Sealer
	now    func() time.Time

	mu      sync.Mutex
	cache   map[string]cachedPrivate
	lists   map[string]cachedList
	listTTL time.Duration
	// listGen counts forgets, so a list read before a forget is not kept
	// after it.
	listGen uint64
}

// ListCacheTTL is how long a tenant's key list is reused by default before
// it is read again, so signing costs no database round trip. A change made
// through this Manager applies at once; one made elsewhere applies when the
// server is told of it (Forget, fed by the PostgreSQL change feed), and at
// the latest after this time, which bounds it when there is no feed or the
// feed is down.
const ListCacheTTL = 10 * time.Second

type cachedList struct {
	keys []storage.SigningKey
	at   time.Time
}

type cachedPrivate struct {
	sealed []byte
	key    jose.JSONWebKey
}

// NewManager returns a Manager over store, sealing with sealer; now may be nil.
func NewManager(store storage.Storage, sealer *Sealer, now func() time.Time) *Manager {
	if now == nil {
		now = time.Now
	}
	return &Manager{store: store, sealer: sealer, now: now, cache: map[string]cachedPrivate{}, lists: map[string]cachedList{}, listTTL: ListCacheTTL}
}

// SetListCacheTTL changes how long a tenant's key list is reused; zero or less restores ListCacheTTL.
func (m *Manager) SetListCacheTTL(ttl time.Duration) {
	if ttl <= 0 {
		ttl = ListCacheTTL
	}
	m.mu.Lock()
	m.listTTL = ttl
	m.mu.Unlock()
}

// Forget drops what is cached of a tenant's keys, its key list and opened
// private keys, so the next use reads them again.
func (m *Manager) Forget(tenantID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.lists, tenantID)
	m.listGen++
	prefix := tenantID + "\x00"
	for k := range m.cache {
		if strings.HasPrefix(k, prefix) {
			delete(m.cache, k)
		}
	}
}

// ForgetAll drops what is cached of every tenant's keys.
func (m *Manager) ForgetAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.lists)
	clear(m.cache)
	m.listGen++
}

// Sealer returns the master-key sealer, for other secrets kept at rest.
func (m *Manager) Sealer() *Sealer {
	return m.sealer
}

// NewKeys generates one sealed key per algorithm for a tenant, not yet
// stored: Algorithms and those of extra not among them.
func (m *Manager) NewKeys(tenantID string, extra ...string) ([]storage.SigningKey, error) {
	algs := slices.Clone(Algorithms)
	for _, alg := range extra {
		if !slices.Contains(algs, alg) {
			algs = append(algs, alg)
		}
	}
	out := make([]storage.SigningKey, 0, len(algs))
	for _, alg := range algs {
		k, err := m.generate(tenantID, alg)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// Rotate adds a new active key per algorithm and keeps the old ones published
// for retirement; it returns the tenant's keys afterwards.
func (m *Manager) Rotate(ctx context.Context, tenantID string, retirement time.Duration) ([]storage.SigningKey, error) {
	if retirement < 0 {
		return nil, errors.New("retirement window must not be negative")
	}
	// Every algorithm the tenant signs with, or has just chosen, gets a
	// successor, so a tenant that chose PS256 keeps a PS256 key. Both are
	// read afresh: another replica may have added the key a moment ago.
	t, err := m.store.GetTenant(ctx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("rotate keys of tenant %q: %w", tenantID, err)
	}
	m.forgetList(tenantID)
	current, err := m.list(ctx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("list keys of tenant %q: %w", tenantID, err)
	}
	extra := []string{t.Policy.AccessTokenAlgOrDefault()}
	for _, k := range current {
		if k.Status == storage.KeyActive {
			extra = append(extra, k.Alg)
		}
	}
	newKeys, err := m.NewKeys(tenantID, extra...)
	if err != nil {
		return nil, err
	}
	err = m.store.RotateSigningKeys(ctx, tenantID, newKeys, m.now().Add(retirement))
	m.forgetList(tenantID)
	if err != nil {
		return nil, fmt.Errorf("rotate keys of tenant %q: %w", tenantID, err)
	}
	return m.list(ctx, tenantID)
}

// EnsureKey gives the tenant an active key for alg if it has none, beside
// its other keys; it returns the kid of the key it added, or "" if it added none.
func (m *Manager) EnsureKey(ctx context.Context, tenantID, alg string) (string, error) {
	m.forgetList(tenantID)
	ks, err := m.list(ctx, tenantID)
	if err != nil {
		return "", fmt.Errorf("list keys of tenant %q: %w", tenantID, err)
	}
	for _, k := range ks {
		if k.Status == storage.KeyActive && k.Alg == alg {
			return "", nil
		}
	}
	k, err := m.generate(tenantID, alg)
	if err != nil {
		return "", err
	}
	err = m.store.AddSigningKeys(ctx, tenantID, []storage.SigningKey{k})
	m.forgetList(tenantID)
	if err != nil {
		return "", fmt.Errorf("add %s key to tenant %q: %w", alg, tenantID, err)
	}
	return k.KID, nil
}

// Retire marks one key retiring at retiresAt and forgets the cached list,
// so this process stops signing with it and publishing it at once.
func (m *Manager) Retire(ctx context.Context, tenantID, kid string, retiresAt time.Time) error {
	err := m.store.RetireSigningKey(ctx, tenantID, kid, retiresAt)
	m.forgetList(tenantID)
	if err != nil {
		return fmt.Errorf("retire key %q of tenant %q: %w", kid, tenantID, err)
	}
	return nil
}

// forgetList drops the tenant's cached key list.
func (m *Manager) forgetList(tenantID string) {
	m.mu.Lock()
	delete(m.lists, tenantID)
	m.listGen++
	m.mu.Unlock()
}

// list returns the tenant's keys, from the cache while it is fresh.
func (m *Manager) list(ctx context.Context, tenantID string) ([]storage.SigningKey, error) {
	now := m.now()
	m.mu.Lock()
	c, ok := m.lists[tenantID]
	ttl, gen := m.listTTL, m.listGen
	m.mu.Unlock()
	if ok && !now.Before(c.at) && now.Sub(c.at) < ttl {
		return c.keys, nil
	}
	ks, err := m.store.ListSigningKeys(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	// A forget while the list was read may stand for a change the read
	// missed; keeping the list would undo the forget until it expires.
	if m.listGen == gen {
		m.lists[tenantID] = cachedList{keys: ks, at: now}
	}
	m.mu.Unlock()
	return ks, nil
}

// Published reports whether a key belongs in the JWKS at now.
func Published(k storage.SigningKey, now time.Time) bool {
	return k.Status == storage.KeyActive || (k.Status == storage.KeyRetiring && now.Before(k.RetiresAt))
}

// PublicJWKS returns the tenant's active keys and those still inside their
// retirement window, public parts only.
func (m *Manager) PublicJWKS(ctx context.Context, tenantID string) (jose.JSONWebKeySet, error) {
	ks, err := m.list(ctx, tenantID)
	if err != nil {
		return jose.JSONWebKeySet{}, fmt.Errorf("list keys of tenant %q: %w", tenantID, err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	now := m.now()
	for _, k := range ks {
		if !Published(k, now) {
			continue
		}
		var jwk jose.JSONWebKey
		if err := json.Unmarshal(k.PublicJWK, &jwk); err != nil {
			return jose.JSONWebKeySet{}, fmt.Errorf("key %s of tenant %q: %w", k.KID, tenantID, err)
		}
		set.Keys = append(set.Keys, jwk)
	}
	return set, nil
}

// ActiveKey returns the tenant's active private key for alg, opened in memory.
func (m *Manager) ActiveKey(ctx context.Context, tenantID, alg string) (jose.JSONWebKey, error) {
	// A cached list may predate a key another replica just added for a new
	// setting, so a miss reads the list once more; a hit costs nothing extra.
	for attempt := 0; attempt < 2; attempt++ {
		if attempt > 0 {
			m.forgetList(tenantID)
		}
		ks, err := m.list(ctx, tenantID)
		if err != nil {
			return jose.JSONWebKey{}, fmt.Errorf("list keys of tenant %q: %w", tenantID, err)
		}
		for _, k := range ks {
			if k.Status == storage.KeyActive && k.Alg == alg {
				return m.open(k)
			}
		}
	}
	return jose.JSONWebKey{}, fmt.Errorf("tenant %q has no active %s key: %w", tenantID, alg, storage.ErrNotFound)
}

// open unseals a private key, caching by kid since opening an RSA key is costly.
func (m *Manager) open(k storage.SigningKey) (jose.JSONWebKey, error) {
	cacheKey := k.TenantID + "\x00" + k.KID
	m.mu.Lock()
	c, ok := m.cache[cacheKey]
	m.mu.Unlock()
	if ok && string(c.sealed) == string(k.PrivateSealed) {
		return c.key, nil
	}
	raw, err := m.sealer.Open(k.PrivateSealed, keyAAD(k.TenantID, k.KID))
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("key %s of tenant %q: %w", k.KID, k.TenantID, err)
	}
	var jwk jose.JSONWebKey
	if err := json.Unmarshal(raw, &jwk); err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("key %s of tenant %q: %w", k.KID, k.TenantID, err)
	}
	m.mu.Lock()
	m.cache[cacheKey] = cachedPrivate{sealed: k.PrivateSealed, key: jwk}
	m.mu.Unlock()
	return jwk, nil
}

func (m *Manager) generate(tenantID, alg string) (storage.SigningKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case "RS256", "PS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return storage.SigningKey{}, fmt.Errorf("unsupported signing algorithm %q", alg)
	}
	if err != nil {
		return storage.SigningKey{}, fmt.Errorf("generate %s key: %w", alg, err)
	}
	jwk := jose.JSONWebKey{Key: priv, Algorithm: alg, Use: "sig"}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return storage.SigningKey{}, fmt.Errorf("thumbprint: %w", err)
	}
	// The RFC 7638 thumbprint makes the kid unique and derivable from the key.
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	privJSON, err := jwk.MarshalJSON()
	if err != nil {
		return storage.SigningKey{}, fmt.Errorf("encode private key: %w", err)
	}
	pubJSON, err := jwk.Public().MarshalJSON()
	if err != nil {
		return storage.SigningKey{}, fmt.Errorf("encode public key: %w", err)
	}
	sealed, err := m.sealer.Seal(privJSON, keyAAD(tenantID, jwk.KeyID))
	if err != nil {
		return storage.SigningKey{}, fmt.Errorf("seal private key: %w", err)
	}
	return storage.SigningKey{
		TenantID:      tenantID,
		KID:           jwk.KeyID,
		Alg:           alg,
		Status:        storage.KeyActive,
		PublicJWK:     pubJSON,
		PrivateSealed: sealed,
		CreatedAt:     m.now().UTC().Truncate(time.Microsecond),
	}, nil
}

func keyAAD(tenantID, kid string) []byte {
	return []byte("smartauth signing key\x00" + tenantID + "\x00" + kid)
}
