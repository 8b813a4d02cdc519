// Package oauth composes fosite into smartauth's OAuth 2.0 and OpenID
// Connect engine: one provider per tenant, built from an explicit list of
// grants, backed by smartauth's Storage through the adapter in store.go,
// signing with the tenant's own keys.
package oauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"slices"
	"strings"
	"sync"
	"time"

	josev3 "github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	foauth2 "github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	fjwt "github.com/ory/fosite/token/jwt"

	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/server/smart"
	"github.com/smartauth/smartauth/storage"
)

// Lifetimes that apply when neither tenant nor client sets one.
const (
	DefaultAccessTokenTTL  = time.Hour
	DefaultRefreshTokenTTL = 90 * 24 * time.Hour
	DefaultIDTokenTTL      = time.Hour
	// AuthorizeCodeTTL is short: a code is redeemed by the app right away.
	AuthorizeCodeTTL = 60 * time.Second
)

// clockSkew tolerates clocks of replicas that disagree a little.
const clockSkew = 5 * time.Second

// IDTokenAlg signs ID tokens: RS256, which OpenID Connect requires every relying party to support.
const IDTokenAlg = "RS256"

// AccessTokenAlg returns the algorithm the tenant signs access tokens with:
// ES256 (small and fast) unless it chose RS256 or PS256, which some resource
// servers insist on.
func AccessTokenAlg(t storage.Tenant) string {
	return t.Policy.AccessTokenAlgOrDefault()
}

// verifiableAlgs are those an access token of any tenant may carry: a
// tenant may have changed its setting since a token still valid was signed.
var verifiableAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.PS256}

// Options configure the providers of every tenant.
type Options struct {
	Store storage.Storage
	Keys  *keys.Manager
	// MasterKey derives each tenant's HMAC secret for codes and refresh tokens.
	MasterKey []byte
	// Issuer returns a tenant's issuer URL.
	Issuer func(tenantID string) string
	// ClientAuth authenticates the client of token, introspection and revocation requests.
	ClientAuth func(tenantID string) fosite.ClientAuthenticationStrategy
	Now        func() time.Time
}

// Provider is one tenant's composed fosite provider.
type Provider struct {
	fosite.OAuth2Provider
	Config *fosite.Config
	Store  *Store
	Tenant storage.Tenant
	// tokens computes token signatures, the keys of grant records.
	tokens foauth2.CoreStrategy
}

// RefreshTokenSignature is the key under which a refresh token's record is
// stored; it says nothing about whether the token is valid.
func (p *Provider) RefreshTokenSignature(ctx context.Context, token string) string {
	return p.tokens.RefreshTokenSignature(ctx, token)
}

// Providers builds and caches a provider per tenant.
type Providers struct {
	opts Options
	mu   sync.Mutex
	m    map[string]*Provider
}

// NewProviders returns an empty provider cache.
func NewProviders(opts Options) *Providers {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Providers{opts: opts, m: map[string]*Provider{}}
}

// For returns the tenant's provider, rebuilding it when the tenant's
// settings changed since it was built.
func (ps *Providers) For(t storage.Tenant) (*Provider, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p, ok := ps.m[t.ID]; ok && sameSettings(p.Tenant, t) {
		return p, nil
	}
	p, err := ps.build(t)
	if err != nil {
		return nil, err
	}
	ps.m[t.ID] = p
	return p, nil
}

func sameSettings(a, b storage.Tenant) bool {
	if a.Policy != b.Policy || len(a.FHIRBaseURLs) != len(b.FHIRBaseURLs) {
		return false
	}
	for i := range a.FHIRBaseURLs {
		if a.FHIRBaseURLs[i] != b.FHIRBaseURLs[i] {
			return false
		}
	}
	return true
}

func orDefault(d storage.Duration, def time.Duration) time.Duration {
	if d > 0 {
		return time.Duration(d)
	}
	return def
}

func (ps *Providers) build(t storage.Tenant) (*Provider, error) {
	secret, err := keys.DeriveKey(ps.opts.MasterKey, "oauth-hmac/"+t.ID)
	if err != nil {
		return nil, err
	}
	issuer := ps.opts.Issuer(t.ID)
	cfg := &fosite.Config{
		AccessTokenLifespan:   orDefault(t.Policy.AccessTokenTTL, DefaultAccessTokenTTL),
		RefreshTokenLifespan:  orDefault(t.Policy.RefreshTokenTTL, DefaultRefreshTokenTTL),
		IDTokenLifespan:       orDefault(t.Policy.IDTokenTTL, DefaultIDTokenTTL),
		AuthorizeCodeLifespan: AuthorizeCodeTTL,
		IDTokenIssuer:         issuer,
		AccessTokenIssuer:     issuer,
		TokenURL:              issuer + "/token",
		// SMART scopes hold dots and URLs; fosite's default matcher splits on dots.
		ScopeStrategy:                  smart.Strategy,
		AudienceMatchingStrategy:       tenantAudiences(t),
		EnforcePKCE:                    true,
		EnforcePKCEForPublicClients:    true,
		EnablePKCEPlainChallengeMethod: false,
		// online_access refresh tokens are bound to the sign-in session,
		// which the token endpoint checks on every refresh.
		RefreshTokenScopes:         []string{"offline_access", "online_access"},
		MinParameterEntropy:        fosite.MinParameterEntropy,
		JWTScopeClaimKey:           fjwt.JWTScopeFieldString,
		GlobalSecret:               secret,
		SendDebugMessagesToClients: false,
	}
	if ps.opts.ClientAuth != nil {
		cfg.ClientAuthenticationStrategy = ps.opts.ClientAuth(t.ID)
	}
	st := &Store{tenant: t.ID, store: ps.opts.Store, now: ps.opts.Now, clients: ps.clientLoader(t.ID)}
	hmacStrategy := compose.NewOAuth2HMACStrategy(cfg)
	access := &accessTokenStrategy{
		DefaultJWTStrategy: compose.NewOAuth2JWTStrategy(ps.keyGetter(t.ID, AccessTokenAlg(t)), hmacStrategy, cfg),
		verify:             ps.verifier(t.ID, issuer),
		now:                ps.opts.Now,
	}
	strategy := &compose.CommonStrategy{
		CoreStrategy:               access,
		OpenIDConnectTokenStrategy: compose.NewOpenIDConnectStrategy(ps.keyGetter(t.ID, IDTokenAlg), cfg),
		Signer:                     &fjwt.DefaultSigner{GetPrivateKey: ps.keyGetter(t.ID, IDTokenAlg)},
	}
	provider := compose.Compose(cfg, st, strategy,
		// The grants smartauth offers, and nothing else: no implicit, hybrid,
		// password or JWT-bearer grants.
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2ClientCredentialsGrantFactory,
		compose.OpenIDConnectExplicitFactory,
		compose.OpenIDConnectRefreshFactory,
		compose.OAuth2PKCEFactory,
		compose.OAuth2TokenIntrospectionFactory,
		// Revocation that keeps the cause of a storage failure (revocation.go).
		func(fosite.Configurator, any, any) any { return &revocationHandler{store: st, tokens: access} },
		// Token exchange (RFC 8693); the token endpoint says how to resolve subject tokens.
		func(fosite.Configurator, any, any) any {
			return &tokenExchangeHandler{
				helper: &foauth2.HandleHelper{AccessTokenStrategy: access, AccessTokenStorage: st, Config: cfg},
				config: cfg,
				tenant: t,
				now:    ps.opts.Now,
			}
		},
	)
	return &Provider{OAuth2Provider: provider, Config: cfg, Store: st, Tenant: t, tokens: access}, nil
}

// tenantAudiences allows exactly the tenant's FHIR base URLs as audiences,
// whatever the client: in SMART the aud a token is for is a FHIR server of
// the tenant, not a per-client list. fosite applies it again on refresh.
func tenantAudiences(t storage.Tenant) fosite.AudienceMatchingStrategy {
	return func(_ []string, needle []string) error {
		for _, aud := range needle {
			if !slices.Contains(t.FHIRBaseURLs, aud) {
				return fosite.ErrInvalidRequest.WithHintf("The audience %q is not a FHIR server of this tenant.", aud)
			}
		}
		return nil
	}
}

func (ps *Providers) clientLoader(tenantID string) func(ctx context.Context, id string) (*Client, error) {
	return func(ctx context.Context, id string) (*Client, error) {
		c, err := ps.opts.Store.GetClient(ctx, tenantID, id)
		if err != nil {
			return nil, mapErr(err)
		}
		return &Client{Client: c}, nil
	}
}

// keyGetter hands fosite the tenant's active private key as a go-jose v3
// JWK (fosite's own JOSE library), so the kid travels in the header.
func (ps *Providers) keyGetter(tenantID, alg string) func(context.Context) (any, error) {
	return func(ctx context.Context) (any, error) {
		k, err := ps.opts.Keys.ActiveKey(ctx, tenantID, alg)
		if err != nil {
			return nil, err
		}
		return &josev3.JSONWebKey{Key: k.Key, KeyID: k.KeyID, Algorithm: k.Algorithm, Use: "sig"}, nil
	}
}

// verifier checks an access token against every published key of the
// tenant, so tokens signed before a rotation or a change of algorithm stay
// valid until they expire. The key must be published for the token's
// algorithm, so an RS256 key never vouches for a PS256 signature.
func (ps *Providers) verifier(tenantID, issuer string) func(ctx context.Context, token string) error {
	return func(ctx context.Context, token string) error {
		_, err := ps.verify(ctx, tenantID, issuer, token)
		return err
	}
}

// verify checks a JWT access token's signature, issuer and lifetime and returns its claims.
func (ps *Providers) verify(ctx context.Context, tenantID, issuer, token string) (josejwt.Claims, error) {
	var claims josejwt.Claims
	tok, err := josejwt.ParseSigned(token, verifiableAlgs)
	if err != nil {
		return claims, fosite.ErrInvalidTokenFormat.WithWrap(err)
	}
	set, err := ps.opts.Keys.PublicJWKS(ctx, tenantID)
	if err != nil {
		return claims, fosite.ErrServerError.WithWrap(err)
	}
	if len(tok.Headers) != 1 {
		return claims, fosite.ErrTokenSignatureMismatch
	}
	candidates := set.Key(tok.Headers[0].KeyID)
	if len(candidates) == 0 {
		return claims, fosite.ErrTokenSignatureMismatch.WithDebug("no published key has the token's kid")
	}
	if candidates[0].Algorithm != tok.Headers[0].Algorithm {
		return claims, fosite.ErrTokenSignatureMismatch.WithDebug("the key with the token's kid is published for another algorithm")
	}
	if err := tok.Claims(candidates[0].Key, &claims); err != nil {
		return claims, fosite.ErrTokenSignatureMismatch.WithWrap(err)
	}
	if err := claims.ValidateWithLeeway(josejwt.Expected{Issuer: issuer, Time: ps.opts.Now()}, clockSkew); err != nil {
		if err == josejwt.ErrExpired {
			return claims, fosite.ErrTokenExpired.WithWrap(err)
		}
		return claims, fosite.ErrTokenClaim.WithWrap(err)
	}
	return claims, nil
}

// VerifyAccessToken checks a JWT access token of the tenant as a resource
// server would, without the store: the signature against the tenant's
// published keys, the issuer, the lifetime, and that audience (a FHIR base
// URL, a trailing slash ignored) is among its audiences. It returns when
// the token expires. Whether it was revoked is for IntrospectToken to say.
func (ps *Providers) VerifyAccessToken(ctx context.Context, t storage.Tenant, token, audience string) (time.Time, error) {
	claims, err := ps.verify(ctx, t.ID, ps.opts.Issuer(t.ID), token)
	if err != nil {
		return time.Time{}, err
	}
	want := strings.TrimSuffix(audience, "/")
	if !slices.ContainsFunc(claims.Audience, func(a string) bool { return strings.TrimSuffix(a, "/") == want }) {
		return time.Time{}, fosite.ErrTokenClaim.WithHint("The access token was issued for another FHIR server.")
	}
	if claims.Expiry == nil {
		return time.Time{}, fosite.ErrTokenClaim.WithHint("The access token has no expiry.")
	}
	return claims.Expiry.Time(), nil
}

// accessTokenStrategy is fosite's JWT strategy with two changes: the grant
// record remembers a digest of the token it issued, and validation checks
// that digest (or, without one, the signature against every published key
// instead of only the current one).
type accessTokenStrategy struct {
	*foauth2.DefaultJWTStrategy
	verify func(ctx context.Context, token string) error
	now    func() time.Time
}

// GenerateAccessToken signs a token and records its digest in the session,
// which fosite then stores with the grant record.
func (s *accessTokenStrategy) GenerateAccessToken(ctx context.Context, req fosite.Requester) (string, string, error) {
	token, sig, err := s.DefaultJWTStrategy.GenerateAccessToken(ctx, req)
	if err != nil {
		return "", "", err
	}
	if sess, ok := req.GetSession().(*Session); ok {
		d := sha256.Sum256([]byte(token))
		sess.AccessDigest = d[:]
	}
	return token, sig, nil
}

// ValidateAccessToken accepts a token only if it is exactly the one the
// grant record was issued for, and not expired. The record was found by the
// token's signature; the digest proves the rest of the token is unchanged,
// as a signature check would, at a fraction of the cost.
func (s *accessTokenStrategy) ValidateAccessToken(ctx context.Context, req fosite.Requester, token string) error {
	sess, _ := req.GetSession().(*Session)
	if sess == nil || len(sess.AccessDigest) == 0 {
		return s.verify(ctx, token)
	}
	d := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(d[:], sess.AccessDigest) != 1 {
		return fosite.ErrTokenSignatureMismatch.WithDebug("the token is not the one issued with this grant")
	}
	if exp := sess.GetExpiresAt(fosite.AccessToken); exp.IsZero() || !s.now().Before(exp) {
		return fosite.ErrTokenExpired
	}
	return nil
}

var (
	_ foauth2.CoreStrategy              = (*accessTokenStrategy)(nil)
	_ openid.OpenIDConnectTokenStrategy = (*openid.DefaultStrategy)(nil)
)
