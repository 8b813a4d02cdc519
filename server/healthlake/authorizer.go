package healthlake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Defaults for the optional Config fields. HealthLake wants an answer within
// one second, so every outbound call gets well under that.
const (
	DefaultTimeout         = 800 * time.Millisecond
	DefaultLeeway          = 30 * time.Second
	DefaultRefreshInterval = 10 * time.Second
)

// maxIntrospectionBytes bounds an introspection answer.
const maxIntrospectionBytes = 64 << 10

// algorithms are those smartauth signs access tokens with.
var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.PS256}

// Config says which tokens the authorizer accepts and what it answers.
type Config struct {
	// Issuer is the tenant's issuer URL, {base}/t/{tenant}.
	Issuer string
	// Audience is the datastore endpoint, which is also the FHIR base URL
	// the tenant puts in its tokens' aud.
	Audience string
	// IAMRoleARN is the role HealthLake assumes for an authorized request.
	IAMRoleARN string
	// IntrospectionClientID and IntrospectionClientSecret, when set, make
	// every token also pass the issuer's introspection endpoint, which is
	// the authority on revocation.
	IntrospectionClientID     string
	IntrospectionClientSecret string
	// HTTPClient makes the JWKS and introspection calls; nil means one with
	// DefaultTimeout.
	HTTPClient *http.Client
	// Leeway tolerates clock skew on exp, nbf and iat; zero means DefaultLeeway.
	Leeway time.Duration
	// RefreshInterval is the least time between JWKS fetches; zero means
	// DefaultRefreshInterval.
	RefreshInterval time.Duration
	// Now reads the clock; nil means time.Now.
	Now func() time.Time
	// Logger records why a token was refused; nil discards.
	Logger *slog.Logger
}

// Authorizer verifies tokens for one tenant and one datastore.
type Authorizer struct {
	cfg    Config
	keys   *keySet
	client *http.Client
	log    *slog.Logger
}

// New checks the configuration and returns an authorizer.
func New(cfg Config) (*Authorizer, error) {
	iss, err := url.Parse(cfg.Issuer)
	if err != nil || iss.Scheme == "" || iss.Host == "" {
		return nil, fmt.Errorf("issuer %q is not an absolute URL", cfg.Issuer)
	}
	if aud, err := url.Parse(cfg.Audience); err != nil || aud.Scheme == "" || aud.Host == "" {
		return nil, fmt.Errorf("audience %q is not an absolute URL", cfg.Audience)
	}
	if cfg.IAMRoleARN == "" {
		return nil, errors.New("an IAM role ARN is required")
	}
	if (cfg.IntrospectionClientID == "") != (cfg.IntrospectionClientSecret == "") {
		return nil, errors.New("introspection needs both a client id and a client secret")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: DefaultTimeout}
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Issuer = strings.TrimSuffix(cfg.Issuer, "/")
	return &Authorizer{
		cfg: cfg,
		keys: &keySet{
			url: cfg.Issuer + "/.well-known/jwks.json", client: cfg.HTTPClient,
			minInterval: cfg.RefreshInterval, now: cfg.Now,
		},
		client: cfg.HTTPClient,
		log:    cfg.Logger,
	}, nil
}

// Audience is the datastore endpoint this authorizer serves.
func (a *Authorizer) Audience() string { return a.cfg.Audience }

// Claims are the parts of a verified access token the answer needs.
type Claims struct {
	jwt.Claims
	Scope string `json:"scope"`
}

// refusal is a token fault: the answer is isAuthorized false, not an error.
type refusal struct{ reason string }

func (r *refusal) Error() string { return r.reason }

func refuse(format string, args ...any) error {
	return &refusal{reason: fmt.Sprintf(format, args...)}
}

// Verify checks the token's signature, issuer, audience, times and scope,
// and asks the introspection endpoint when configured. A token fault
// returns an error for which IsRefusal is true; any other error means the
// authorizer could not decide (the issuer unreachable, say).
func (a *Authorizer) Verify(ctx context.Context, token string) (Claims, error) {
	var c Claims
	tok, err := jwt.ParseSigned(token, algorithms)
	if err != nil {
		return c, refuse("not a signed JWT with an accepted algorithm: %v", err)
	}
	if len(tok.Headers) != 1 || tok.Headers[0].KeyID == "" {
		return c, refuse("the token names no kid")
	}
	h := tok.Headers[0]
	key, err := a.keys.key(ctx, h.KeyID)
	if errors.Is(err, errUnknownKey) {
		return c, refuse("the issuer publishes no key %q", h.KeyID)
	}
	if err != nil {
		return c, err
	}
	// An RSA key serves RS256 and PS256 alike; a key that names its
	// algorithm must be used with that one only.
	if key.Algorithm != "" && key.Algorithm != h.Algorithm {
		return c, refuse("the token is signed with %s but key %q is for %s", h.Algorithm, h.KeyID, key.Algorithm)
	}
	if err := tok.Claims(key.Public().Key, &c); err != nil {
		return c, refuse("signature: %v", err)
	}
	if c.Expiry == nil {
		return c, refuse("the token has no exp")
	}
	err = c.ValidateWithLeeway(jwt.Expected{
		Issuer: a.cfg.Issuer,
		Time:   a.cfg.Now(),
	}, a.cfg.Leeway)
	if err != nil {
		return c, refuse("claims: %v", err)
	}
	if !slices.ContainsFunc(c.Audience, func(aud string) bool { return sameEndpoint(aud, a.cfg.Audience) }) {
		return c, refuse("the token's audience %q is not this datastore", c.Audience)
	}
	if !hasResourceScope(c.Scope) {
		return c, refuse("the scope %q grants no FHIR resource", c.Scope)
	}
	if a.cfg.IntrospectionClientID != "" {
		active, err := a.introspect(ctx, token)
		if err != nil {
			return c, err
		}
		if !active {
			return c, refuse("introspection says the token is not active")
		}
	}
	return c, nil
}

// IsRefusal reports whether err from Verify is a fault of the token.
func IsRefusal(err error) bool {
	var r *refusal
	return errors.As(err, &r)
}

// hasResourceScope reports whether scope holds a patient/, user/ or
// system/ scope: without one the token reads nothing from the datastore.
func hasResourceScope(scope string) bool {
	for _, s := range strings.Fields(scope) {
		for _, p := range []string{"patient/", "user/", "system/"} {
			if rest, ok := strings.CutPrefix(s, p); ok && rest != "" {
				return true
			}
		}
	}
	return false
}

// introspect asks the issuer whether the token is still active (RFC 7662).
func (a *Authorizer) introspect(ctx context.Context, token string) (bool, error) {
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.Issuer+"/introspect", strings.NewReader(form.Encode()))
	if err != nil {
		return false, fmt.Errorf("introspection request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 §2.3.1 form-encodes the credentials inside Basic.
	req.SetBasicAuth(url.QueryEscape(a.cfg.IntrospectionClientID), url.QueryEscape(a.cfg.IntrospectionClientSecret))
	resp, err := a.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("introspect: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("introspect: status %d", resp.StatusCode)
	}
	var out struct {
		Active bool `json:"active"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxIntrospectionBytes)).Decode(&out); err != nil {
		return false, fmt.Errorf("decode introspection: %w", err)
	}
	return out.Active, nil
}

// Handle answers one HealthLake event. A bad token is answered with
// isAuthorized false and no error; an error means the function is
// misconfigured or cannot reach the issuer, and HealthLake fails the
// request rather than reading a refusal into it.
func (a *Authorizer) Handle(ctx context.Context, ev Event) (Response, error) {
	if !sameEndpoint(ev.DatastoreEndpoint, a.cfg.Audience) {
		return Response{}, fmt.Errorf("the event names datastore %q but this function serves %q", ev.DatastoreEndpoint, a.cfg.Audience)
	}
	token := strings.TrimSpace(ev.BearerToken)
	if scheme, rest, ok := strings.Cut(token, " "); ok && strings.EqualFold(scheme, "Bearer") {
		token = strings.TrimSpace(rest)
	}
	if token == "" {
		a.log.InfoContext(ctx, "token refused", "operation", ev.OperationName, "reason", "no bearer token")
		return Response{AuthPayload: AuthPayload{IsAuthorized: false}}, nil
	}
	c, err := a.Verify(ctx, token)
	if err != nil {
		if !IsRefusal(err) {
			return Response{}, fmt.Errorf("verify token: %w", err)
		}
		a.log.InfoContext(ctx, "token refused", "operation", ev.OperationName, "reason", err.Error())
		return Response{AuthPayload: AuthPayload{IsAuthorized: false}}, nil
	}
	p := AuthPayload{
		Iss:          c.Issuer,
		Aud:          ev.DatastoreEndpoint,
		Exp:          unix(c.Expiry),
		Iat:          unix(c.IssuedAt),
		Nbf:          unix(c.NotBefore),
		IsAuthorized: true,
		UID:          c.Subject,
		Scope:        c.Scope,
	}
	// HealthLake requires nbf; a token without one is valid from issue.
	if p.Nbf == 0 {
		p.Nbf = p.Iat
	}
	return Response{AuthPayload: p, IAMRoleARN: a.cfg.IAMRoleARN}, nil
}

func unix(d *jwt.NumericDate) int64 {
	if d == nil {
		return 0
	}
	return int64(*d)
}

// sameEndpoint compares datastore endpoints, which HealthLake writes with a
// trailing slash and operators often without.
func sameEndpoint(a, b string) bool {
	return a != "" && strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/")
}
