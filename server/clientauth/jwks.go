package clientauth

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
	"golang.org/x/sync/singleflight"
)

// jwksCache holds the key sets fetched from clients' JWKS URLs.
type jwksCache struct {
	client     *http.Client
	now        func() time.Time
	timeout    time.Duration
	ttl        time.Duration
	minRefetch time.Duration
	maxBytes   int64

	mu      sync.Mutex
	entries map[string]*jwksEntry
	group   singleflight.Group
}

// jwksEntry is what is known of one URL.
type jwksEntry struct {
	// keys is the last set fetched, or nil once it is older than the TTL and
	// a fetch failed.
	keys      []jose.JSONWebKey
	fetchedAt time.Time
	// attempt is when the URL was last fetched, successfully or not.
	attempt time.Time
	// err is why the last attempt failed; nil after a success.
	err error
}

// keys returns the key set published at url. With refresh, the caller did
// not find its key in the set it got before and wants the URL fetched again;
// that happens at most once per minRefetch per URL, whoever asks.
func (c *jwksCache) keys(ctx context.Context, url string, refresh bool) ([]jose.JSONWebKey, error) {
	now := c.now()
	c.mu.Lock()
	e := c.entries[url]
	fresh := e != nil && e.keys != nil && now.Sub(e.fetchedAt) < c.ttl
	if fresh && !refresh {
		c.mu.Unlock()
		return e.keys, nil
	}
	if e != nil && now.Sub(e.attempt) < c.minRefetch {
		// Fetched moments ago: answer from that attempt so that neither a
		// flood of unknown kids nor a failing server makes us hammer it.
		defer c.mu.Unlock()
		return e.answer()
	}
	var seen time.Time
	if e != nil {
		seen = e.attempt
	}
	c.mu.Unlock()

	v, err, _ := c.group.Do(url, func() (any, error) {
		c.mu.Lock()
		if e := c.entries[url]; e != nil && !e.attempt.Equal(seen) {
			// Another caller's fetch finished between our look and now.
			defer c.mu.Unlock()
			return e.answer()
		}
		c.mu.Unlock()
		// The fetch is shared with every concurrent caller, so one caller
		// giving up must not cancel it for the others.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		keys, err := c.fetch(fctx, url)
		at := c.now()
		c.mu.Lock()
		defer c.mu.Unlock()
		e := c.entries[url]
		if e == nil {
			e = &jwksEntry{}
			c.entries[url] = e
		}
		e.attempt = at
		e.err = err
		if err != nil {
			// A set still within its TTL stays usable: a failed refetch
			// for an unknown kid must not lock out the client's known keys.
			if e.keys != nil && at.Sub(e.fetchedAt) >= c.ttl {
				e.keys = nil
			}
			return nil, err
		}
		e.keys, e.fetchedAt = keys, at
		return keys, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]jose.JSONWebKey), nil
}

// answer returns the outcome of the entry's last attempt: the keys if any
// are still held, else the error.
func (e *jwksEntry) answer() ([]jose.JSONWebKey, error) {
	if e.keys != nil {
		return e.keys, nil
	}
	return nil, e.err
}

// fetch GETs url and parses the body as a JSON Web Key Set.
func (c *jwksCache) fetch(ctx context.Context, url string) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS %s: %w", url, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		// The client's error already names the URL.
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS %s: status %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS %s: read body: %w", url, err)
	}
	if int64(len(body)) > c.maxBytes {
		return nil, fmt.Errorf("fetch JWKS %s: body exceeds %d bytes", url, c.maxBytes)
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS %s: %w", url, err)
	}
	return keys, nil
}

// parseJWKS parses a JSON Web Key Set. Keys go-jose cannot read (a key type
// it does not know, say) are skipped rather than failing the whole set,
// since they could not verify an assertion anyway.
func parseJWKS(raw []byte) ([]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("parse JWKS: %w", err)
	}
	if set.Keys == nil {
		return nil, errors.New("parse JWKS: no keys member")
	}
	keys := make([]jose.JSONWebKey, 0, len(set.Keys))
	for _, rk := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(rk); err != nil {
			continue
		}
		keys = append(keys, k)
	}
	return keys, nil
}
