package healthlake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// maxJWKSBytes bounds the JWKS body: a tenant publishes a handful of keys,
// and an answer much larger than that is not one we should hold in memory.
const maxJWKSBytes = 1 << 20

// errUnknownKey reports a kid the issuer does not publish.
var errUnknownKey = errors.New("no published key has this kid")

// keySet caches one issuer's JWKS. It fetches again when a token names a kid
// it does not hold, but never sooner than minInterval after the last fetch,
// so a stream of made-up kids costs the issuer at most one fetch per
// interval.
type keySet struct {
	url         string
	client      *http.Client
	minInterval time.Duration
	now         func() time.Time

	mu    sync.Mutex
	keys  jose.JSONWebKeySet
	tried time.Time // last fetch attempt, successful or not
}

// key returns the published key with this kid, fetching the JWKS when the
// kid is unknown and the interval allows. Holding the lock while fetching
// makes concurrent misses share one fetch.
func (k *keySet) key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if found := k.keys.Key(kid); len(found) > 0 {
		return found[0], nil
	}
	if !k.tried.IsZero() && k.now().Sub(k.tried) < k.minInterval {
		return jose.JSONWebKey{}, errUnknownKey
	}
	k.tried = k.now()
	set, err := k.fetch(ctx)
	if err != nil {
		return jose.JSONWebKey{}, err
	}
	k.keys = set
	if found := k.keys.Key(kid); len(found) > 0 {
		return found[0], nil
	}
	return jose.JSONWebKey{}, errUnknownKey
}

func (k *keySet) fetch(ctx context.Context) (jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return set, fmt.Errorf("jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return set, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return set, fmt.Errorf("fetch jwks: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return set, fmt.Errorf("read jwks: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return set, fmt.Errorf("jwks is larger than %d bytes", maxJWKSBytes)
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return set, fmt.Errorf("decode jwks: %w", err)
	}
	return set, nil
}
