// Package upstream holds what the SMART gateway needs to reach a tenant's
// upstream FHIR server: where it is, an HTTP client fit for proxying to it,
// and the credentials each forwarded request carries.
//
// The client connects only to public addresses unless the operator allows
// private networks, gives up after a timeout and follows no redirect: the
// gateway passes a 3xx back to the app rather than carry credentials to
// another place. Error texts name the tenant and the servers but never a
// client secret, a token or a static header value, so they are safe to log.
package upstream

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/smartauth/smartauth/server/fhirsearch"
	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/server/netguard"
	"github.com/smartauth/smartauth/storage"
)

// DefaultTimeout bounds each upstream request, and each token request,
// when Options.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// tokenEarlyExpiry is how long before its expiry a token is replaced, so a
// request never carries a token that expires on the way.
const tokenEarlyExpiry = 30 * time.Second

// ErrNotConfigured means the tenant has no gateway upstream.
var ErrNotConfigured = errors.New("no gateway upstream is configured for this tenant")

// ErrUpstreamAuth is wrapped by every failure to get the credentials of an
// upstream request: a token endpoint that refuses or cannot be reached, a
// sealed value that does not open, a client that is not configured. The
// gateway answers such a request with 502 or 503.
var ErrUpstreamAuth = errors.New("cannot authenticate to the upstream FHIR server")

// Options tune Authenticators; the zero value gives the defaults.
type Options struct {
	// Timeout bounds each request to an upstream or its token endpoint;
	// zero means DefaultTimeout.
	Timeout time.Duration
	// AllowPrivate lets the client reach loopback, private and link-local
	// addresses. Off by default, so that a tenant's setting cannot be used
	// to probe the internal network.
	AllowPrivate bool
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	return o
}

// NewHTTPClient returns the client of Authenticators: netguard's
// public-address rule unless allowPrivate, a timeout, and no redirect
// followed, so that a 3xx reaches the caller as it is.
func NewHTTPClient(timeout time.Duration, allowPrivate bool) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: netguard.Transport(timeout, allowPrivate),
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// headerAAD binds a sealed header value to its tenant and to where and
// under which name it is sent, so that editing the stored row to send it
// elsewhere makes it unopenable rather than leaking it.
func headerAAD(tenantID string, g storage.GatewaySettings) []byte {
	return []byte(strings.Join([]string{"gateway-header-value", tenantID, g.UpstreamURL, g.HeaderName}, "\x00"))
}

// SealHeader seals the value of a gateway's static header under the master
// key, for g.HeaderValueSealed; g's UpstreamURL and HeaderName must
// already be final.
func SealHeader(sealer *keys.Sealer, tenantID string, g storage.GatewaySettings, value string) (string, error) {
	sealed, err := sealer.Seal([]byte(value), headerAAD(tenantID, g))
	if err != nil {
		return "", fmt.Errorf("seal the gateway header value: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sealed), nil
}

// OpenHeader opens g.HeaderValueSealed.
func OpenHeader(sealer *keys.Sealer, tenantID string, g storage.GatewaySettings) (string, error) {
	sealed, err := base64.StdEncoding.DecodeString(g.HeaderValueSealed)
	if err != nil {
		return "", fmt.Errorf("open the gateway header value of tenant %q: not base64: %w", tenantID, err)
	}
	value, err := sealer.Open(sealed, headerAAD(tenantID, g))
	if err != nil {
		return "", fmt.Errorf("open the gateway header value of tenant %q (wrong master key, or the setting was altered in the database): %w", tenantID, err)
	}
	return string(value), nil
}

// Authenticators keeps one Authenticator per tenant, so that a token is
// reused across requests, and builds a new one when the tenant's gateway
// or patient search settings change.
type Authenticators struct {
	sealer *keys.Sealer
	opts   Options
	client *http.Client

	mu sync.Mutex
	m  map[string]cached
}

// cached is an Authenticator and the settings it was built from.
type cached struct {
	gateway storage.GatewaySettings
	search  storage.PatientSearchSource
	auth    *Authenticator
}

// NewAuthenticators returns Authenticators that open sealed values with
// sealer; they share one HTTP client, built from opts.
func NewAuthenticators(sealer *keys.Sealer, opts Options) *Authenticators {
	opts = opts.withDefaults()
	return &Authenticators{sealer: sealer, opts: opts, client: NewHTTPClient(opts.Timeout, opts.AllowPrivate), m: map[string]cached{}}
}

// For returns the Authenticator of the tenant's gateway upstream, or
// ErrNotConfigured when the tenant has none. Settings that cannot be used
// at all (an upstream URL that is not absolute, an unknown kind of
// authentication) are an error here; credentials that cannot be had are
// the error of Authorize, wrapping ErrUpstreamAuth.
func (as *Authenticators) For(t storage.Tenant) (*Authenticator, error) {
	g, search := t.Policy.Gateway, t.Policy.PatientSearch
	as.mu.Lock()
	defer as.mu.Unlock()
	if g.UpstreamURL == "" {
		delete(as.m, t.ID)
		return nil, ErrNotConfigured
	}
	if c, ok := as.m[t.ID]; ok && c.gateway == g && c.search == search {
		return c.auth, nil
	}
	a, err := as.build(t.ID, g, search)
	if err != nil {
		delete(as.m, t.ID)
		return nil, err
	}
	as.m[t.ID] = cached{gateway: g, search: search, auth: a}
	return a, nil
}

// Invalidate forgets the tenant's Authenticator, and with it any token
// kept, so that the next For builds a new one.
func (as *Authenticators) Invalidate(tenantID string) {
	as.mu.Lock()
	defer as.mu.Unlock()
	delete(as.m, tenantID)
}

// build makes the Authenticator of one tenant's settings.
func (as *Authenticators) build(tenantID string, g storage.GatewaySettings, search storage.PatientSearchSource) (*Authenticator, error) {
	base, err := url.Parse(g.UpstreamURL)
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("gateway of tenant %q: upstream URL %q is not an absolute http(s) URL", tenantID, g.UpstreamURL)
	}
	a := &Authenticator{
		tenantID:   tenantID,
		base:       base,
		client:     as.client,
		mode:       g.UpstreamAuth,
		userHeader: g.UserHeader,
	}
	if a.mode == "" {
		a.mode = storage.GatewayAuthNone
	}
	if a.userHeader == "" {
		a.userHeader = storage.DefaultGatewayUserHeader
	}
	switch a.mode {
	case storage.GatewayAuthNone, storage.GatewayAuthForward:
	case storage.GatewayAuthHeader:
		if g.HeaderName == "" || g.HeaderValueSealed == "" {
			a.authErr = fmt.Errorf("%w: gateway of tenant %q: header authentication without a header name and value", ErrUpstreamAuth, tenantID)
			break
		}
		value, err := OpenHeader(as.sealer, tenantID, g)
		if err != nil {
			a.authErr = fmt.Errorf("%w: %w", ErrUpstreamAuth, err)
			break
		}
		a.headerName, a.headerValue = http.CanonicalHeaderKey(g.HeaderName), value
	case storage.GatewayAuthClientCredentials:
		if search.TokenURL == "" || search.ClientID == "" || search.ClientSecretSealed == "" {
			a.authErr = fmt.Errorf("%w: gateway of tenant %q authenticates with the tenant's patient search client, which is not configured", ErrUpstreamAuth, tenantID)
			break
		}
		secret, err := fhirsearch.OpenSecret(as.sealer, tenantID, search)
		if err != nil {
			a.authErr = fmt.Errorf("%w: %w", ErrUpstreamAuth, err)
			break
		}
		cfg := &clientcredentials.Config{ClientID: search.ClientID, ClientSecret: secret, TokenURL: search.TokenURL, Scopes: strings.Fields(search.Scope)}
		a.fetcher = &tokenFetcher{tenantID: tenantID, cfg: cfg, client: as.client, timeout: as.opts.Timeout}
		a.tokens = a.newTokenSource()
	default:
		return nil, fmt.Errorf("gateway of tenant %q: unknown upstream authentication %q", tenantID, g.UpstreamAuth)
	}
	return a, nil
}

// Authenticator reaches one tenant's upstream FHIR server. It is safe for
// concurrent use and keeps a client_credentials token until shortly before
// it expires.
type Authenticator struct {
	tenantID   string
	base       *url.URL
	client     *http.Client
	mode       string
	userHeader string
	// headerName and headerValue are the static header of GatewayAuthHeader.
	headerName, headerValue string
	// authErr, when set, is why no request can be authorized.
	authErr error
	fetcher *tokenFetcher

	mu     sync.Mutex
	tokens oauth2.TokenSource
}

// Base returns the upstream's FHIR base URL; the copy is the caller's.
func (a *Authenticator) Base() *url.URL {
	u := *a.base
	if u.User != nil {
		user := *u.User
		u.User = &user
	}
	return &u
}

// Client returns the client to send upstream requests with: it connects
// only where the operator allows, times out, and follows no redirect.
func (a *Authenticator) Client() *http.Client {
	return a.client
}

// Mode returns how requests authenticate upstream, one of the
// storage.GatewayAuth constants.
func (a *Authenticator) Mode() string {
	return a.mode
}

// UserHeader names the header that carries the user's identity upstream.
func (a *Authenticator) UserHeader() string {
	return a.userHeader
}

// ForwardsToken reports whether the app's own access token goes upstream,
// which the gateway then copies onto each request itself.
func (a *Authenticator) ForwardsToken() bool {
	return a.mode == storage.GatewayAuthForward
}

// Authorize sets the upstream credentials on an outgoing request. Except
// when the app's token is forwarded, any Authorization header is removed
// first, so that the app's token never reaches the upstream by mistake;
// with GatewayAuthNone nothing else is set. A failure wraps
// ErrUpstreamAuth and never quotes a secret, token or header value.
func (a *Authenticator) Authorize(ctx context.Context, req *http.Request) error {
	if a.authErr != nil {
		return a.authErr
	}
	if a.mode == storage.GatewayAuthForward {
		return nil
	}
	req.Header.Del("Authorization")
	switch a.mode {
	case storage.GatewayAuthHeader:
		req.Header.Set(a.headerName, a.headerValue)
	case storage.GatewayAuthClientCredentials:
		if err := ctx.Err(); err != nil {
			return err
		}
		a.mu.Lock()
		ts := a.tokens
		a.mu.Unlock()
		tok, err := ts.Token()
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	}
	return nil
}

// ResetToken drops the token kept, if any, so that the next Authorize gets
// a new one: for when the upstream stopped accepting it (revoked, or its
// signing key rotated) before it expired.
func (a *Authenticator) ResetToken() {
	if a.fetcher == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tokens = a.newTokenSource()
}

func (a *Authenticator) newTokenSource() oauth2.TokenSource {
	return oauth2.ReuseTokenSourceWithExpiry(nil, a.fetcher, tokenEarlyExpiry)
}

// tokenFetcher gets a new token each time it is asked; a ReuseTokenSource
// in front of it keeps the token until shortly before it expires.
type tokenFetcher struct {
	tenantID string
	cfg      *clientcredentials.Config
	client   *http.Client
	timeout  time.Duration
}

// Token asks the token endpoint for a token.
func (f *tokenFetcher) Token() (*oauth2.Token, error) {
	// Not a request's context: a token fetch is shared by every request
	// waiting on the ReuseTokenSource, so it has its own deadline.
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	tok, err := f.cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, f.client))
	if err != nil {
		return nil, fmt.Errorf("%w: gateway of tenant %q: get a token from %s: %w", ErrUpstreamAuth, f.tenantID, f.cfg.TokenURL, f.explain(err))
	}
	return tok, nil
}

// explain rewrites a token endpoint error as the patient search does.
func (f *tokenFetcher) explain(err error) error {
	return fhirsearch.ExplainTokenError(err, f.cfg.ClientSecret)
}
