package manage

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"

	"github.com/smartauth/smartauth/federation/oidc"
)

// Bounds on a discovery test: an operator waits for the answer, and a real
// discovery document is a few kilobytes.
const (
	discoveryTimeout  = 10 * time.Second
	maxDiscoveryBytes = 1 << 20
	// maxReasonBytes bounds the part of an upstream's answer an error repeats.
	maxReasonBytes = 300
)

// DiscoveryResult is what an identity provider's OpenID discovery document
// says about it, as an operator checks it before routing people there.
type DiscoveryResult struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	JWKSURI               string   `json:"jwks_uri"`
	UserInfoEndpoint      string   `json:"userinfo_endpoint,omitempty"`
	ScopesSupported       []string `json:"scopes_supported,omitempty"`
}

// DiscoveryError is a failed discovery test: the provider could not be
// reached, or its answer is not a usable discovery document for its issuer.
type DiscoveryError struct {
	// URL is the discovery document's address.
	URL string
	// Err is the cause, in full, for the log.
	Err error
}

// Error says where discovery failed and why, briefly enough to show an operator.
func (e *DiscoveryError) Error() string {
	reason := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, e.Err.Error())
	if len(reason) > maxReasonBytes {
		reason = strings.ToValidUTF8(reason[:maxReasonBytes], "") + "…"
	}
	return fmt.Sprintf("discovery at %s failed: %s", e.URL, reason)
}

// Unwrap returns the cause.
func (e *DiscoveryError) Unwrap() error { return e.Err }

// TestDiscovery fetches the OpenID discovery document of a tenant's
// identity provider from its issuer, as sign-in will, and reports its
// endpoints. A provider that cannot be reached, answers with something
// other than a discovery document, names another issuer or lacks an
// endpoint sign-in needs yields a *DiscoveryError.
func (s *Service) TestDiscovery(ctx context.Context, tenantID, providerID string) (DiscoveryResult, error) {
	p, err := s.store.GetIdentityProvider(ctx, tenantID, providerID)
	if err != nil {
		return DiscoveryResult{}, fmt.Errorf("identity provider %q of tenant %q: %w", providerID, tenantID, err)
	}
	cfg, err := oidc.ConfigFor(p, "")
	if err != nil {
		return DiscoveryResult{}, invalid("%v", err)
	}
	wellKnown := strings.TrimSuffix(cfg.Issuer, "/") + "/.well-known/openid-configuration"
	ctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	client := *s.http
	client.Transport = cappedTransport{base: client.Transport}
	provider, err := gooidc.NewProvider(gooidc.ClientContext(ctx, &client), cfg.Issuer)
	if err != nil {
		return DiscoveryResult{}, &DiscoveryError{URL: wellKnown, Err: err}
	}
	var doc struct {
		Issuer                string   `json:"issuer"`
		AuthorizationEndpoint string   `json:"authorization_endpoint"`
		TokenEndpoint         string   `json:"token_endpoint"`
		JWKSURI               string   `json:"jwks_uri"`
		UserInfoEndpoint      string   `json:"userinfo_endpoint"`
		ScopesSupported       []string `json:"scopes_supported"`
	}
	if err := provider.Claims(&doc); err != nil {
		return DiscoveryResult{}, &DiscoveryError{URL: wellKnown, Err: err}
	}
	for _, f := range []struct{ name, value string }{
		{"authorization_endpoint", doc.AuthorizationEndpoint}, {"token_endpoint", doc.TokenEndpoint}, {"jwks_uri", doc.JWKSURI},
	} {
		if f.value == "" {
			return DiscoveryResult{}, &DiscoveryError{URL: wellKnown, Err: fmt.Errorf("the document has no %s, which sign-in needs", f.name)}
		}
	}
	return DiscoveryResult(doc), nil
}

// cappedTransport cuts off a response body past maxDiscoveryBytes, since
// go-oidc reads the whole body into memory.
type cappedTransport struct {
	base http.RoundTripper
}

func (t cappedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &cappedBody{body: resp.Body, left: maxDiscoveryBytes}
	return resp, nil
}

// cappedBody reads a body until more than left bytes have come, then fails.
type cappedBody struct {
	body io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, fmt.Errorf("the response is larger than %d bytes", maxDiscoveryBytes)
	}
	// Reading one byte past the limit tells a body of exactly the limit,
	// which ends there, from a longer one.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.body.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, fmt.Errorf("the response is larger than %d bytes", maxDiscoveryBytes)
	}
	return n, err
}

func (b *cappedBody) Close() error { return b.body.Close() }
