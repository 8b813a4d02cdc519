package fhirsearch

import (
	"encoding/base64"
	"fmt"
	"strings"
	"sync"

	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/storage"
)

// secretAAD binds a sealed secret to its tenant and to every place it or
// the token it buys is sent, so that editing the stored row to point the
// source elsewhere makes the secret unopenable rather than leaking it.
func secretAAD(tenantID string, src storage.PatientSearchSource) []byte {
	return []byte(strings.Join([]string{"patient-search-client-secret", tenantID, src.FHIRBaseURL, src.TokenURL, src.ClientID}, "\x00"))
}

// SealSecret seals a source's client secret under the master key, for
// src.ClientSecretSealed; src's other fields must already be final.
func SealSecret(sealer *keys.Sealer, tenantID string, src storage.PatientSearchSource, secret string) (string, error) {
	sealed, err := sealer.Seal([]byte(secret), secretAAD(tenantID, src))
	if err != nil {
		return "", fmt.Errorf("seal the patient search client secret: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sealed), nil
}

// OpenSecret opens src.ClientSecretSealed.
func OpenSecret(sealer *keys.Sealer, tenantID string, src storage.PatientSearchSource) (string, error) {
	sealed, err := base64.StdEncoding.DecodeString(src.ClientSecretSealed)
	if err != nil {
		return "", fmt.Errorf("open the patient search client secret of tenant %q: not base64: %w", tenantID, err)
	}
	secret, err := sealer.Open(sealed, secretAAD(tenantID, src))
	if err != nil {
		return "", fmt.Errorf("open the patient search client secret of tenant %q (wrong master key, or the setting was altered in the database): %w", tenantID, err)
	}
	return string(secret), nil
}

// Searchers keeps one Searcher per tenant, so that a token is reused across
// requests, and builds a new one when the tenant's setting changes.
type Searchers struct {
	sealer *keys.Sealer
	opts   Options

	mu sync.Mutex
	m  map[string]cached
}

type cached struct {
	src      storage.PatientSearchSource
	searcher *Searcher
}

// NewSearchers returns Searchers that open client secrets with sealer.
func NewSearchers(sealer *keys.Sealer, opts Options) *Searchers {
	return &Searchers{sealer: sealer, opts: opts.withDefaults(), m: map[string]cached{}}
}

// For returns the Searcher of the tenant's patient search source, or
// ErrNotConfigured when the tenant has none.
func (ss *Searchers) For(t storage.Tenant) (*Searcher, error) {
	src := t.Policy.PatientSearch
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if src.FHIRBaseURL == "" {
		delete(ss.m, t.ID)
		return nil, ErrNotConfigured
	}
	if c, ok := ss.m[t.ID]; ok && c.src == src {
		return c.searcher, nil
	}
	secret, err := OpenSecret(ss.sealer, t.ID, src)
	if err != nil {
		return nil, err
	}
	s, err := New(t.ID, src, secret, ss.opts)
	if err != nil {
		return nil, err
	}
	ss.m[t.ID] = cached{src: src, searcher: s}
	return s, nil
}
