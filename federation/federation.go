// Package federation delegates sign-in to upstream identity providers
// (Cognito, Okta, any OpenID Connect provider) chosen by the email domain a
// person types. This file holds the contract every provider implements and
// the routing by domain; the OpenID Connect connector lives in
// federation/oidc.
package federation

import (
	"context"
	"errors"
	"strings"

	"golang.org/x/net/idna"
)

// Identity is what an upstream provider asserts about a person, before
// smartauth links it to a user.
type Identity struct {
	// Issuer and Subject together identify the person at the provider for ever.
	Issuer  string
	Subject string
	Email   string
	// EmailVerified is the provider's word that the email belongs to the person.
	EmailVerified bool
	// AMR lists the authentication methods used (RFC 8176), e.g. "mfa".
	AMR []string
	// Claims are the ID token's claims, for claim mapping.
	Claims map[string]any
}

// Connector is one upstream identity provider of a tenant. The caller
// chooses state, nonce and the PKCE verifier, keeps them in the person's
// session, and checks state itself when the browser comes back.
type Connector interface {
	// AuthURL returns where to send the browser: the provider's
	// authorization endpoint with PKCE S256, state and nonce.
	AuthURL(ctx context.Context, state, nonce, verifier, redirectURI string) (string, error)
	// Exchange redeems the authorization code and returns the identity its
	// verified ID token asserts; a refused token yields a *RefusalError.
	Exchange(ctx context.Context, code, verifier, redirectURI, nonce string) (Identity, error)
}

// ErrNotRouted means no provider is configured for an email's domain.
var ErrNotRouted = errors.New("federation: no identity provider for this email domain")

// Route sends the people of one email domain to one connector.
type Route struct {
	// Domain is matched exactly, and its subdomains too when IncludeSubdomains is set.
	Domain            string
	IncludeSubdomains bool
	ConnectorID       string
	// FederationOnly forbids local passwords for the domain.
	FederationOnly bool
}

// Domain returns the normalized domain of an email address: lower case,
// internationalized names in their ASCII (punycode) form.
func Domain(email string) (string, error) {
	at := strings.LastIndexByte(email, '@')
	if at <= 0 || at == len(email)-1 {
		return "", errors.New("federation: not an email address")
	}
	return NormalizeDomain(email[at+1:])
}

// domainNames converts and checks domain names as a resolver would see them.
// idna.Lookup alone lets empty labels ("x..example") and over-long names
// through; VerifyDNSLength refuses them. A Profile is immutable, so sharing
// one is safe.
var domainNames = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.VerifyDNSLength(true))

// NormalizeDomain returns a domain in the form routes are stored and matched:
// lower case, internationalized names in ASCII (punycode), no final dot.
func NormalizeDomain(d string) (string, error) {
	d = strings.TrimSuffix(strings.TrimSpace(d), ".")
	ascii, err := domainNames.ToASCII(d)
	if err != nil || ascii == "" || !strings.Contains(ascii, ".") {
		return "", errors.New("federation: not a valid email domain")
	}
	return strings.ToLower(ascii), nil
}

// Match picks the route for an email: the exact domain first, then the
// longest parent domain whose route includes subdomains.
func Match(email string, routes []Route) (Route, error) {
	domain, err := Domain(email)
	if err != nil {
		return Route{}, err
	}
	best, bestLen := Route{}, -1
	for _, r := range routes {
		rd, err := NormalizeDomain(r.Domain)
		if err != nil {
			continue
		}
		switch {
		case rd == domain:
			return r, nil
		case r.IncludeSubdomains && strings.HasSuffix(domain, "."+rd) && len(rd) > bestLen:
			best, bestLen = r, len(rd)
		}
	}
	if bestLen < 0 {
		return Route{}, ErrNotRouted
	}
	return best, nil
}
