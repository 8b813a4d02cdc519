// Package oidc is the generic OpenID Connect connector: discovery from the
// issuer, authorization code with PKCE S256, state and nonce, and ID token
// verification with go-oidc. Cognito and Okta are presets of it.
package oidc

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/smartauth/smartauth/federation"
)

// Config configures a connector to one OpenID provider.
type Config struct {
	// Issuer is the provider's issuer URL; discovery is read from it.
	Issuer       string
	ClientID     string
	ClientSecret string
	// Scopes are asked for besides "openid"; nil means "email profile".
	Scopes []string
	// UserInfo asks the userinfo endpoint for claims the ID token lacks.
	UserInfo bool
	// HTTPClient talks to the provider, and is required: whoever wires the
	// connector decides, by building it with NewHTTPClient, which addresses
	// a provider may be at.
	HTTPClient *http.Client
}

// Connector is a federation.Connector for one OpenID provider. It fetches
// the discovery document once and keeps it; go-oidc keeps the JWKS and
// fetches it again when a token names a key it does not know.
type Connector struct {
	cfg    Config
	client *http.Client

	mu       sync.Mutex
	provider *gooidc.Provider
}

var _ federation.Connector = (*Connector)(nil)

// New returns a connector; it does not contact the provider until first used.
func New(cfg Config) (*Connector, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.HTTPClient == nil {
		return nil, errors.New("oidc: an HTTP client is required")
	}
	if cfg.Scopes == nil {
		cfg.Scopes = []string{"email", "profile"}
	}
	return &Connector{cfg: cfg, client: cfg.HTTPClient}, nil
}

// Check reports whether the issuer and client id make a usable
// configuration, without contacting the provider.
func (cfg Config) Check() error {
	u, err := url.Parse(cfg.Issuer)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("oidc: issuer %q is not a URL without query or fragment", cfg.Issuer)
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())) {
		return fmt.Errorf("oidc: issuer %q must use https", cfg.Issuer)
	}
	if cfg.ClientID == "" {
		return errors.New("oidc: client id is required")
	}
	return nil
}

// NewHTTPClient returns a client for connectors: bounded in every phase, so
// a slow provider cannot hold a sign-in open, and following redirects only
// within one scheme and host, so a client secret sent to the token endpoint
// goes nowhere else. control, when not nil, vets the address of every
// connection after DNS resolution (server/netguard refuses non-public
// ones); such a client uses no proxy, since control would see only the
// proxy's address.
func NewHTTPClient(control func(network, address string, c syscall.RawConn) error) *http.Client {
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, Control: control}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
	}
	if control != nil {
		t.Proxy = nil
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: t, CheckRedirect: sameHostRedirects}
}

// sameHostRedirects follows at most a few redirects, each to the scheme and
// host of the first request.
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("oidc: too many redirects")
	}
	if first := via[0].URL; req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
		return fmt.Errorf("oidc: refusing a redirect from %s to another host", first.Host)
	}
	return nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// Issuer returns the issuer the connector trusts.
func (c *Connector) Issuer() string { return c.cfg.Issuer }

func (c *Connector) ctx(ctx context.Context) context.Context {
	return gooidc.ClientContext(ctx, c.client)
}

// discover returns the cached provider, fetching the discovery document the
// first time; a failure is not cached, so the next sign-in tries again.
func (c *Connector) discover(ctx context.Context) (*gooidc.Provider, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.provider != nil {
		return c.provider, nil
	}
	// go-oidc keeps this context for later JWKS fetches (without its
	// cancellation), so it carries only the HTTP client, not a deadline.
	p, err := gooidc.NewProvider(c.ctx(context.WithoutCancel(ctx)), c.cfg.Issuer)
	if err != nil {
		return nil, federation.Refuse(federation.ReasonUnavailable, err, "discovery of %s", c.cfg.Issuer)
	}
	c.provider = p
	return p, nil
}

func (c *Connector) oauth2Config(p *gooidc.Provider, redirectURI string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     c.cfg.ClientID,
		ClientSecret: c.cfg.ClientSecret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  redirectURI,
		Scopes:       append([]string{gooidc.ScopeOpenID}, c.cfg.Scopes...),
	}
}

// AuthURL returns the provider's authorization URL for a sign-in with
// PKCE S256 (the challenge of verifier), state and nonce.
func (c *Connector) AuthURL(ctx context.Context, state, nonce, verifier, redirectURI string) (string, error) {
	if state == "" || nonce == "" || len(verifier) < 43 {
		return "", errors.New("oidc: state, nonce and a PKCE verifier of at least 43 characters are required")
	}
	p, err := c.discover(ctx)
	if err != nil {
		return "", err
	}
	return c.oauth2Config(p, redirectURI).AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), gooidc.Nonce(nonce)), nil
}

// Exchange redeems code with the PKCE verifier, verifies the ID token
// (signature against the provider's JWKS, issuer, audience, expiry, and
// nonce), optionally merges userinfo, and returns the identity.
func (c *Connector) Exchange(ctx context.Context, code, verifier, redirectURI, nonce string) (federation.Identity, error) {
	if nonce == "" {
		return federation.Identity{}, errors.New("oidc: nonce is required")
	}
	p, err := c.discover(ctx)
	if err != nil {
		return federation.Identity{}, err
	}
	tok, err := c.oauth2Config(p, redirectURI).Exchange(c.ctx(ctx), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return federation.Identity{}, federation.Refuse(federation.ReasonExchangeFailed, err, "token endpoint")
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return federation.Identity{}, federation.Refuse(federation.ReasonNoIDToken, nil, "token response")
	}
	idt, err := p.Verifier(&gooidc.Config{ClientID: c.cfg.ClientID}).Verify(c.ctx(ctx), raw)
	if err != nil {
		return federation.Identity{}, federation.Refuse(classify(err), err, "ID token")
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return federation.Identity{}, federation.Refuse(federation.ReasonNonceMismatch, nil, "ID token")
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return federation.Identity{}, federation.Refuse(federation.ReasonMalformedToken, err, "ID token claims")
	}
	if c.cfg.UserInfo {
		if err := c.mergeUserInfo(ctx, p, tok, idt.Subject, claims); err != nil {
			return federation.Identity{}, err
		}
	}
	return identity(idt.Issuer, idt.Subject, claims), nil
}

// Subject token types Verify accepts (RFC 8693 §3).
const (
	TokenTypeIDToken = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeJWT     = "urn:ietf:params:oauth:token-type:jwt"
)

// Verify checks a token the provider issued that someone else presents, as
// in token exchange (RFC 8693): the signature against the provider's JWKS,
// the issuer and the expiry, and the audience. An ID token must be for the
// connector's client id. A JWT access token must name the client id in aud,
// or carry it in client_id (Cognito) or cid (Okta), whose access tokens are
// for an API rather than for the client. An API audience alone is not
// enough: every client of that API, however little trusted, holds such tokens. There is no nonce to check: the token was not
// asked for by this connector. A refused token yields a *federation.RefusalError.
func (c *Connector) Verify(ctx context.Context, raw, tokenType string) (federation.Identity, error) {
	var cfg gooidc.Config
	switch tokenType {
	case TokenTypeIDToken:
		cfg.ClientID = c.cfg.ClientID
	case TokenTypeJWT:
		// Several audiences are acceptable; they are checked below.
		cfg.SkipClientIDCheck = true
	default:
		return federation.Identity{}, fmt.Errorf("oidc: token type %q cannot be verified", tokenType)
	}
	p, err := c.discover(ctx)
	if err != nil {
		return federation.Identity{}, err
	}
	tok, err := p.Verifier(&cfg).Verify(c.ctx(ctx), raw)
	if err != nil {
		return federation.Identity{}, federation.Refuse(classify(err), err, "subject token")
	}
	claims := map[string]any{}
	if err := tok.Claims(&claims); err != nil {
		return federation.Identity{}, federation.Refuse(federation.ReasonMalformedToken, err, "subject token claims")
	}
	if tokenType == TokenTypeJWT && !c.acceptsAccessToken(tok.Audience, claims) {
		return federation.Identity{}, federation.Refuse(federation.ReasonWrongAudience, nil, "access token audience %q", tok.Audience)
	}
	if tok.Subject == "" {
		return federation.Identity{}, federation.Refuse(federation.ReasonMalformedToken, nil, "subject token has no sub")
	}
	return identity(tok.Issuer, tok.Subject, claims), nil
}

// acceptsAccessToken tells whether an upstream access token is meant for this connector's client.
func (c *Connector) acceptsAccessToken(aud []string, claims map[string]any) bool {
	for _, a := range aud {
		if a == c.cfg.ClientID {
			return true
		}
	}
	for _, k := range []string{"client_id", "cid"} {
		if v, _ := claims[k].(string); v != "" && v == c.cfg.ClientID {
			return true
		}
	}
	return false
}

// mergeUserInfo adds the userinfo claims the ID token lacks; the ID token,
// being signed, wins where both speak.
func (c *Connector) mergeUserInfo(ctx context.Context, p *gooidc.Provider, tok *oauth2.Token, subject string, claims map[string]any) error {
	ui, err := p.UserInfo(c.ctx(ctx), oauth2.StaticTokenSource(tok))
	if err != nil {
		return federation.Refuse(federation.ReasonUnavailable, err, "userinfo")
	}
	// OpenID Connect Core 5.3.2: a userinfo answer for another subject must not be used.
	if ui.Subject != subject {
		return federation.Refuse(federation.ReasonUserInfoMismatch, nil, "userinfo subject differs from the ID token's")
	}
	extra := map[string]any{}
	if err := ui.Claims(&extra); err != nil {
		return federation.Refuse(federation.ReasonUnavailable, err, "userinfo claims")
	}
	for k, v := range extra {
		if _, ok := claims[k]; !ok {
			claims[k] = v
		}
	}
	return nil
}

func identity(issuer, subject string, claims map[string]any) federation.Identity {
	id := federation.Identity{Issuer: issuer, Subject: subject, Claims: claims}
	id.Email, _ = claims["email"].(string)
	switch v := claims["email_verified"].(type) {
	case bool:
		id.EmailVerified = v
	case string:
		// Cognito sends email_verified as the string "true" in some flows.
		id.EmailVerified = v == "true"
	}
	if amr, ok := claims["amr"].([]any); ok {
		for _, a := range amr {
			if s, ok := a.(string); ok {
				id.AMR = append(id.AMR, s)
			}
		}
	}
	return id
}

// classify turns go-oidc's verification errors into refusal reasons.
// go-oidc types only the expiry error, so the others are recognised by
// their messages; anything unrecognised is still refused.
func classify(err error) federation.Reason {
	var expired *gooidc.TokenExpiredError
	msg := err.Error()
	switch {
	case errors.As(err, &expired):
		return federation.ReasonExpired
	case strings.Contains(msg, "failed to verify signature"):
		return federation.ReasonBadSignature
	case strings.Contains(msg, "malformed jwt"), strings.Contains(msg, "not signed"), strings.Contains(msg, "unsupported algorithm"):
		return federation.ReasonMalformedToken
	case strings.Contains(msg, "issued by a different provider"):
		return federation.ReasonWrongIssuer
	case strings.Contains(msg, "expected audience"):
		return federation.ReasonWrongAudience
	}
	return federation.ReasonInvalidToken
}

// CognitoConfig is what an operator knows of an Amazon Cognito user pool.
type CognitoConfig struct {
	// Region is the AWS region, such as "eu-west-1".
	Region string
	// UserPoolID is the pool id, such as "eu-west-1_AbCdEf123".
	UserPoolID string
	// HostedUIDomain is the pool's sign-in domain, such as
	// "clinic.auth.eu-west-1.amazoncognito.com". The authorize and token
	// endpoints live there and are read from discovery; it is kept for the
	// operator's reference and checked to be a host name.
	HostedUIDomain string
	ClientID       string
	ClientSecret   string
}

var (
	awsRegion  = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]$`)
	hostName   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$`)
	oktaAuthID = regexp.MustCompile(`^[A-Za-z0-9]{1,64}$`)
)

// Cognito returns the connector configuration of a Cognito user pool,
// whose issuer is https://cognito-idp.{region}.amazonaws.com/{pool}.
func Cognito(c CognitoConfig) (Config, error) {
	if !awsRegion.MatchString(c.Region) {
		return Config{}, fmt.Errorf("oidc: cognito region %q is not an AWS region such as eu-west-1", c.Region)
	}
	// A pool id is the region, an underscore and an alphanumeric suffix.
	prefix, suffix, ok := strings.Cut(c.UserPoolID, "_")
	if !ok || prefix != c.Region || suffix == "" || !oktaAuthID.MatchString(suffix) {
		return Config{}, fmt.Errorf("oidc: cognito user pool id %q must be %s_ followed by letters and digits", c.UserPoolID, c.Region)
	}
	if c.HostedUIDomain != "" && !hostName.MatchString(c.HostedUIDomain) {
		return Config{}, fmt.Errorf("oidc: cognito hosted UI domain %q is not a host name", c.HostedUIDomain)
	}
	return Config{
		Issuer:       "https://cognito-idp." + c.Region + ".amazonaws.com/" + c.UserPoolID,
		ClientID:     c.ClientID,
		ClientSecret: c.ClientSecret,
		Scopes:       []string{"email", "profile"},
	}, nil
}

// OktaConfig is what an operator knows of an Okta authorization server.
type OktaConfig struct {
	// OrgURL is the Okta organization, such as "https://clinic.okta.com".
	OrgURL string
	// AuthorizationServerID is the custom authorization server; empty means "default".
	AuthorizationServerID string
	ClientID              string
	ClientSecret          string
}

// Okta returns the connector configuration of an Okta authorization
// server, whose issuer is {org}/oauth2/{id}.
func Okta(c OktaConfig) (Config, error) {
	org := strings.TrimRight(c.OrgURL, "/")
	u, err := url.Parse(org)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return Config{}, fmt.Errorf("oidc: okta org URL %q must be https://{your org host}", c.OrgURL)
	}
	id := c.AuthorizationServerID
	if id == "" {
		id = "default"
	}
	if !oktaAuthID.MatchString(id) {
		return Config{}, fmt.Errorf("oidc: okta authorization server id %q must be letters and digits", id)
	}
	return Config{
		Issuer:       org + "/oauth2/" + id,
		ClientID:     c.ClientID,
		ClientSecret: c.ClientSecret,
		Scopes:       []string{"email", "profile"},
	}, nil
}
