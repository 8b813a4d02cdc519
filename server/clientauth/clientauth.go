// Package clientauth authenticates the OAuth client of a token, introspection
// or revocation request (RFC 6749 §2.3, RFC 7521/7523, SMART App Launch
// "Client Authentication: Asymmetric").
//
// It replaces fosite's default strategy, which for SMART pins one algorithm
// per client, skips keys without "use", does not cap an assertion's lifetime,
// records a jti before checking aud and answers a replay with 400 jti_known
// instead of 401 invalid_client.
//
// Exactly one method per request:
//
//   - client_secret_basic and client_secret_post, for confidential-symmetric clients;
//   - private_key_jwt, for confidential-asymmetric clients;
//   - none (client_id alone), for public clients.
package clientauth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/smartauth/smartauth/server/clientsecret"
	"github.com/smartauth/smartauth/server/textguard"
	"github.com/smartauth/smartauth/storage"
)

// Client authentication methods, as named in RFC 8414 metadata.
const (
	MethodNone          = "none"
	MethodSecretBasic   = "client_secret_basic"
	MethodSecretPost    = "client_secret_post"
	MethodPrivateKeyJWT = "private_key_jwt"
)

// AssertionType is the only client_assertion_type accepted (RFC 7523 §2.2).
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Defaults of Options.
const (
	DefaultFetchTimeout   = 5 * time.Second
	DefaultJWKSCacheTTL   = 10 * time.Minute
	DefaultJWKSMinRefetch = 30 * time.Second
	DefaultMaxJWKSBytes   = 256 << 10
)

// Options tune an Authenticator; the zero value gives the defaults.
type Options struct {
	// HTTPClient fetches JWKS URLs; nil means a plain client.
	HTTPClient *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// FetchTimeout bounds one JWKS fetch whatever HTTPClient does; zero means DefaultFetchTimeout.
	FetchTimeout time.Duration
	// JWKSCacheTTL is how long a fetched key set is used; zero means DefaultJWKSCacheTTL.
	JWKSCacheTTL time.Duration
	// JWKSMinRefetch is the least time between two fetches of one URL; zero means DefaultJWKSMinRefetch.
	JWKSMinRefetch time.Duration
	// MaxJWKSBytes caps a JWKS response body; zero means DefaultMaxJWKSBytes.
	MaxJWKSBytes int64
	// AllowPrivateNetworks lets the default client fetch JWKS URLs that
	// resolve to loopback, private or link-local addresses. Off by default:
	// a client's JWKS URL must not become a way to probe the internal network.
	AllowPrivateNetworks bool
}

// Authenticator authenticates OAuth clients of one server, for every tenant.
type Authenticator struct {
	store storage.Storage
	now   func() time.Time
	jwks  *jwksCache
}

// New returns an Authenticator that looks clients up in store.
func New(store storage.Storage, opts Options) *Authenticator {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = DefaultFetchTimeout
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = fetchClient(opts.FetchTimeout, opts.AllowPrivateNetworks)
	}
	if opts.JWKSCacheTTL <= 0 {
		opts.JWKSCacheTTL = DefaultJWKSCacheTTL
	}
	if opts.JWKSMinRefetch <= 0 {
		opts.JWKSMinRefetch = DefaultJWKSMinRefetch
	}
	if opts.MaxJWKSBytes <= 0 {
		opts.MaxJWKSBytes = DefaultMaxJWKSBytes
	}
	return &Authenticator{
		store: store,
		now:   opts.Now,
		jwks: &jwksCache{
			client:     opts.HTTPClient,
			now:        opts.Now,
			timeout:    opts.FetchTimeout,
			ttl:        opts.JWKSCacheTTL,
			minRefetch: opts.JWKSMinRefetch,
			maxBytes:   opts.MaxJWKSBytes,
			entries:    map[string]*jwksEntry{},
		},
	}
}

// Result is an authenticated client and how it proved itself.
type Result struct {
	Client storage.Client
	// Method is one of the Method constants.
	Method string
}

// Error is a failed client authentication. Status, Code and Description may
// be shown to the client; Cause is for the log only.
type Error struct {
	// Status is the HTTP status: 400, 401, or 500 when storage failed.
	Status int
	// Code is the OAuth error code: invalid_request, invalid_client or server_error.
	Code string
	// Description is safe to show: it never holds a secret, assertion or key.
	Description string
	// ClientID is the client the request claimed to be, if it named one.
	ClientID string
	// Method is the method the request attempted, if it got that far.
	Method string
	// Cause is the underlying reason, for the log.
	Cause error
}

// Error returns the code, description and cause.
func (e *Error) Error() string {
	msg := "client authentication: " + e.Code + ": " + e.Description
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// WWWAuthenticate returns the WWW-Authenticate header value the response
// must carry, or "" when none is needed: RFC 6749 §5.2 requires a challenge
// of the scheme used when a client that tried the Authorization header fails
// with 401.
func (e *Error) WWWAuthenticate(realm string) string {
	if e.Status != http.StatusUnauthorized || e.Method != MethodSecretBasic {
		return ""
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(realm)
	return `Basic realm="` + r + `"`
}

// Leeway is the clock skew tolerated on an assertion's exp, iat and nbf.
const Leeway = 30 * time.Second

// MaxAssertionLifetime caps how far ahead an assertion's exp may be (SMART
// App Launch: no more than five minutes in the future).
const MaxAssertionLifetime = 5 * time.Minute

// Authenticate identifies and authenticates the client of r for tenantID.
//
// form must be the request body's parameters (r.PostForm), never the query:
// credentials in the URL are refused by RFC 6749 §2.3.1 and end up in logs.
// endpoint is the URL a client assertion's aud must name, the tenant's token
// endpoint. A failure is always an *Error.
func (a *Authenticator) Authenticate(ctx context.Context, tenantID, endpoint string, r *http.Request, form url.Values) (Result, error) {
	for _, p := range []string{"client_id", "client_secret", "client_assertion", "client_assertion_type"} {
		if len(form[p]) > 1 {
			return Result{}, invalidRequest("", "", "parameter "+p+" is repeated", nil)
		}
	}
	if len(r.Header.Values("Authorization")) > 1 {
		return Result{}, invalidRequest("", MethodSecretBasic, "more than one Authorization header", nil)
	}
	formID := form.Get("client_id")
	hasBasic := r.Header.Get("Authorization") != ""
	// An empty client_secret counts as none: some libraries send one for
	// public clients, and an empty secret can never match.
	hasSecret := form.Get("client_secret") != ""
	hasAssertion := form.Get("client_assertion") != "" || form.Get("client_assertion_type") != ""

	n := 0
	for _, has := range []bool{hasBasic, hasSecret, hasAssertion} {
		if has {
			n++
		}
	}
	if n > 1 {
		return Result{}, invalidRequest(formID, "", "use exactly one client authentication method", nil)
	}
	switch {
	case hasBasic:
		return a.secretBasic(ctx, tenantID, r, formID)
	case hasSecret:
		return a.secret(ctx, tenantID, formID, form.Get("client_secret"), MethodSecretPost)
	case hasAssertion:
		return a.privateKeyJWT(ctx, tenantID, endpoint, form)
	case formID != "":
		return a.none(ctx, tenantID, formID)
	default:
		return Result{}, invalidClient("", "", "client authentication is required", nil)
	}
}

// secretBasic checks an Authorization: Basic header (RFC 6749 §2.3.1).
func (a *Authenticator) secretBasic(ctx context.Context, tenantID string, r *http.Request, formID string) (Result, error) {
	id, secret, err := parseBasic(r.Header.Get("Authorization"))
	if err != nil {
		// err is one of parseBasic's fixed messages, which quote nothing.
		return Result{}, invalidClient(formID, MethodSecretBasic, "invalid Authorization header: "+err.Error(), nil)
	}
	if formID != "" && formID != id {
		return Result{}, invalidClient(id, MethodSecretBasic, "client_id does not match the Basic credentials", nil)
	}
	return a.secret(ctx, tenantID, id, secret, MethodSecretBasic)
}

// parseBasic decodes Basic credentials whose id and secret were each
// form-urlencoded before base64, as RFC 6749 §2.3.1 requires. Errors never
// quote the header, which carries the secret.
func parseBasic(header string) (id, secret string, err error) {
	scheme, rest, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", errors.New("authorization scheme is not Basic")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", errors.New("credentials are not base64")
	}
	encID, encSecret, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", errors.New("credentials have no colon")
	}
	if id, err = url.QueryUnescape(encID); err != nil {
		return "", "", errors.New("client id is not form-urlencoded")
	}
	if secret, err = url.QueryUnescape(encSecret); err != nil {
		return "", "", errors.New("client secret is not form-urlencoded")
	}
	if id == "" {
		return "", "", errors.New("client id is empty")
	}
	return id, secret, nil
}

// secret checks a client secret, from the Basic header or the form.
func (a *Authenticator) secret(ctx context.Context, tenantID, clientID, secret, method string) (Result, error) {
	if clientID == "" {
		return Result{}, invalidClient("", method, "client_id is required with client_secret", nil)
	}
	c, err := a.client(ctx, tenantID, clientID, method)
	if err != nil {
		return Result{}, err
	}
	if c.Type != storage.ClientConfidentialSymmetric {
		return Result{}, wrongType(c, method)
	}
	if !clientsecret.Matches(c.SecretHash, secret) {
		return Result{}, invalidClient(clientID, method, "invalid client secret", nil)
	}
	return Result{Client: c, Method: method}, nil
}

// none accepts a public client that names itself and nothing more.
func (a *Authenticator) none(ctx context.Context, tenantID, clientID string) (Result, error) {
	c, err := a.client(ctx, tenantID, clientID, MethodNone)
	if err != nil {
		return Result{}, err
	}
	if c.Type != storage.ClientPublic {
		return Result{}, wrongType(c, MethodNone)
	}
	return Result{Client: c, Method: MethodNone}, nil
}

// client looks a client up within the tenant, so another tenant's client is
// as unknown as one never registered. An id that is not text, from a Basic
// header or an assertion's claims, names no client and is not looked up.
func (a *Authenticator) client(ctx context.Context, tenantID, clientID, method string) (storage.Client, error) {
	if !textguard.Valid(clientID) {
		return storage.Client{}, invalidClient("", method, "the client id is not text", nil)
	}
	c, err := a.store.GetClient(ctx, tenantID, clientID)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Client{}, invalidClient(clientID, method, "unknown client", err)
	}
	if err != nil {
		return storage.Client{}, serverError(clientID, method, fmt.Errorf("look up client: %w", err))
	}
	return c, nil
}

// wrongType refuses a method the client's type does not allow, naming the
// method it should use so that a developer can fix the request.
func wrongType(c storage.Client, method string) *Error {
	want := map[storage.ClientType]string{
		storage.ClientPublic:                 MethodNone + " (client_id alone)",
		storage.ClientConfidentialSymmetric:  MethodSecretBasic + " or " + MethodSecretPost,
		storage.ClientConfidentialAsymmetric: MethodPrivateKeyJWT,
	}[c.Type]
	if want == "" {
		return invalidClient(c.ID, method, "client cannot authenticate", fmt.Errorf("client type %q", c.Type))
	}
	return invalidClient(c.ID, method, "this client must authenticate with "+want,
		fmt.Errorf("%s client used %s", c.Type, method))
}

func invalidRequest(clientID, method, desc string, cause error) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Description: desc, ClientID: clientID, Method: method, Cause: cause}
}

func invalidClient(clientID, method, desc string, cause error) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: "invalid_client", Description: desc, ClientID: clientID, Method: method, Cause: cause}
}

func serverError(clientID, method string, cause error) *Error {
	return &Error{Status: http.StatusInternalServerError, Code: "server_error", Description: "client authentication could not be completed", ClientID: clientID, Method: method, Cause: cause}
}

// allowedAlgs returns the signature algorithms a client assertion may use;
// HMAC and "none" are absent, so go-jose refuses them while parsing.
// Algorithms names the client assertion signing algorithms accepted, for discovery.
func Algorithms() []string {
	var out []string
	for _, a := range allowedAlgs() {
		out = append(out, string(a))
	}
	return out
}

func allowedAlgs() []jose.SignatureAlgorithm {
	return []jose.SignatureAlgorithm{
		jose.RS256, jose.RS384, jose.RS512,
		jose.PS256, jose.PS384, jose.PS512,
		jose.ES256, jose.ES384, jose.ES512,
	}
}
