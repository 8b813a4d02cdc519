package manage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/smartauth/smartauth/federation/oidc"
	"github.com/smartauth/smartauth/server/netguard"
)

// Bounds on a discovery test: an operator waits for the answer, and a real
// discovery document is a few kilobytes.
const (
	discoveryTimeout  = 10 * time.Second
	maxDiscoveryBytes = 1 << 20
	// maxLoggedBytes bounds the part of an upstream's answer the log keeps.
	maxLoggedBytes = 300
)

// errDiscoveryRedirect refuses a redirect from the discovery document's
// address: it could lead anywhere, and sign-in reads the document from the
// issuer itself.
var errDiscoveryRedirect = errors.New("the provider answered with a redirect, which discovery does not follow")

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
	// Reason says what went wrong in words of ours, never the upstream's
	// answer, since the address may be one the operator cannot otherwise see.
	Reason string
	// Err is the cause, in full, for the log only: it may quote the answer.
	Err error
}

// Error says where discovery failed and why, in words safe to show an operator.
func (e *DiscoveryError) Error() string {
	return fmt.Sprintf("discovery at %s failed: %s", e.URL, e.Reason)
}

// Unwrap returns the cause.
func (e *DiscoveryError) Unwrap() error { return e.Err }

// TestDiscovery fetches the OpenID discovery document of a tenant's
// identity provider from its issuer, as sign-in will, and reports its
// endpoints. A provider that cannot be reached, answers with something
// other than a discovery document, names another issuer or lacks an
// endpoint sign-in needs yields a *DiscoveryError. Redirects are not
// followed, and the Service's HTTP client decides which addresses may be
// reached (by default only public ones).
func (s *Service) TestDiscovery(ctx context.Context, tenantID, providerID string) (DiscoveryResult, error) {
	p, err := s.store.GetIdentityProvider(ctx, tenantID, providerID)
	if err != nil {
		return DiscoveryResult{}, fmt.Errorf("identity provider %q of tenant %q: %w", providerID, tenantID, err)
	}
	cfg, err := oidc.ConfigFor(p, "")
	if err != nil {
		return DiscoveryResult{}, invalid("%v", err)
	}
	// go-oidc, at sign-in, reads the document from here and wants its
	// issuer to be the configured one exactly.
	wellKnown := strings.TrimSuffix(cfg.Issuer, "/") + "/.well-known/openid-configuration"
	fail := func(reason string, err error) (DiscoveryResult, error) {
		if err == nil {
			err = errors.New(reason)
		}
		return DiscoveryResult{}, &DiscoveryError{URL: wellKnown, Reason: reason, Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	client := *s.http
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return errDiscoveryRedirect }
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wellKnown, nil)
	if err != nil {
		return DiscoveryResult{}, invalid("discovery address %q: %v", wellKnown, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fail(unreachable(err), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDiscoveryBytes+1))
	if err != nil {
		return fail(unreachable(err), fmt.Errorf("read the answer: %w", err))
	}
	if len(body) > maxDiscoveryBytes {
		return fail(fmt.Sprintf("the answer is larger than %d bytes", maxDiscoveryBytes), nil)
	}
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Sprintf("the provider answered with HTTP status %d, not 200", resp.StatusCode),
			fmt.Errorf("HTTP %s: %s", resp.Status, excerpt(body)))
	}
	var doc DiscoveryResult
	if err := json.Unmarshal(body, &doc); err != nil {
		return fail("the answer is not a JSON discovery document",
			fmt.Errorf("Content-Type %q: %w: %s", resp.Header.Get("Content-Type"), err, excerpt(body)))
	}
	if doc.Issuer != cfg.Issuer {
		return fail("the document names another issuer: the issuer must match the provider's issuer exactly, trailing slash included",
			fmt.Errorf("the document names issuer %q, want %q", excerpt([]byte(doc.Issuer)), cfg.Issuer))
	}
	for _, f := range []struct{ name, value string }{
		{"authorization_endpoint", doc.AuthorizationEndpoint}, {"token_endpoint", doc.TokenEndpoint}, {"jwks_uri", doc.JWKSURI},
	} {
		if f.value == "" {
			return fail(fmt.Sprintf("the document has no %s, which sign-in needs", f.name), nil)
		}
	}
	return doc, nil
}

// unreachable says why a request got no usable answer, in words of ours.
func unreachable(err error) string {
	var timeout interface{ Timeout() bool }
	switch {
	case errors.Is(err, errDiscoveryRedirect):
		return errDiscoveryRedirect.Error()
	case errors.Is(err, netguard.ErrNotPublic):
		return "the issuer's address is not public, and reaching identity providers on private networks is not allowed (SMARTAUTH_IDP_PRIVATE_NETWORKS)"
	case errors.As(err, &timeout) && timeout.Timeout():
		return "the provider did not answer in time"
	}
	return "the provider could not be reached"
}

// excerpt is the start of an upstream answer, on one line, for the log.
func excerpt(b []byte) string {
	if len(b) > maxLoggedBytes {
		b = b[:maxLoggedBytes]
	}
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(string(b), ""))
	return s
}
