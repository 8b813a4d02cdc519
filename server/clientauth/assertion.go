package clientauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/smartauth/smartauth/server/textguard"
	"github.com/smartauth/smartauth/storage"
)

// minRSABits is the smallest RSA modulus accepted for an assertion key.
const minRSABits = 2048

// privateKeyJWT authenticates a client by a signed JWT assertion (RFC 7523
// §2.2, SMART App Launch "Client Authentication: Asymmetric").
func (a *Authenticator) privateKeyJWT(ctx context.Context, tenantID, endpoint string, form url.Values) (Result, error) {
	const m = MethodPrivateKeyJWT
	formID := form.Get("client_id")
	if form.Get("client_assertion_type") != AssertionType {
		return Result{}, invalidRequest(formID, m, "client_assertion_type must be "+AssertionType, nil)
	}
	raw := form.Get("client_assertion")
	if raw == "" {
		return Result{}, invalidRequest(formID, m, "client_assertion is required", nil)
	}
	if endpoint == "" {
		// An empty endpoint would let an assertion with an empty aud pass.
		return Result{}, serverError(formID, m, errors.New("no token endpoint to check aud against"))
	}
	tok, err := jwt.ParseSigned(raw, allowedAlgs())
	if err != nil {
		return Result{}, invalidClient(formID, m,
			"client assertion must be a JWT signed with RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or ES512",
			fmt.Errorf("parse client assertion: %w", err))
	}

	// The claims name the client whose keys will verify them; nothing is
	// trusted before that.
	var claimed jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&claimed); err != nil {
		return Result{}, invalidClient(formID, m, "client assertion claims are malformed", fmt.Errorf("read client assertion claims: %w", err))
	}
	id := claimed.Issuer
	switch {
	case id == "":
		return Result{}, invalidClient(formID, m, "client assertion has no iss", nil)
	case claimed.Subject != id:
		return Result{}, invalidClient(id, m, "client assertion sub must equal iss, the client id", nil)
	case formID != "" && formID != id:
		return Result{}, invalidClient(id, m, "client_id does not match the client assertion's iss", nil)
	}
	c, err := a.client(ctx, tenantID, id, m)
	if err != nil {
		return Result{}, err
	}
	if c.Type != storage.ClientConfidentialAsymmetric {
		return Result{}, wrongType(c, m)
	}

	claims, aerr := a.verify(ctx, c, tok)
	if aerr != nil {
		return Result{}, aerr
	}
	exp, aerr := checkClaims(claims, endpoint, a.now(), c.ID)
	if aerr != nil {
		return Result{}, aerr
	}
	// Recorded only now, so an assertion that failed any check cannot burn
	// the jti of a later, valid one. It is kept until exp plus the leeway,
	// the last instant checkClaims would still accept it.
	err = a.store.RecordAssertionJTI(ctx, tenantID, c.ID, claims.ID, exp.Add(Leeway))
	if errors.Is(err, storage.ErrAlreadyExists) {
		return Result{}, invalidClient(c.ID, m, "client assertion replayed: its jti was already used", err)
	}
	if err != nil {
		return Result{}, serverError(c.ID, m, fmt.Errorf("record client assertion jti: %w", err))
	}
	return Result{Client: c, Method: m}, nil
}

// checkClaims checks the verified claims of an assertion at time now and
// returns its expiry.
func checkClaims(cl jwt.Claims, endpoint string, now time.Time, clientID string) (time.Time, *Error) {
	const m = MethodPrivateKeyJWT
	if !cl.Audience.Contains(endpoint) {
		return time.Time{}, invalidClient(clientID, m, "client assertion aud must name this token endpoint",
			fmt.Errorf("aud %q lacks %q", []string(cl.Audience), endpoint))
	}
	if cl.Expiry == nil {
		return time.Time{}, invalidClient(clientID, m, "client assertion has no exp", nil)
	}
	exp := cl.Expiry.Time()
	if now.After(exp.Add(Leeway)) {
		return time.Time{}, invalidClient(clientID, m, "client assertion has expired",
			fmt.Errorf("exp %s, now %s", exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
	}
	if exp.Sub(now) > MaxAssertionLifetime+Leeway {
		return time.Time{}, invalidClient(clientID, m, "client assertion exp must be at most 5 minutes ahead",
			fmt.Errorf("exp %s, now %s", exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
	}
	if cl.NotBefore != nil && cl.NotBefore.Time().After(now.Add(Leeway)) {
		return time.Time{}, invalidClient(clientID, m, "client assertion is not valid yet (nbf)", nil)
	}
	if cl.IssuedAt != nil && cl.IssuedAt.Time().After(now.Add(Leeway)) {
		return time.Time{}, invalidClient(clientID, m, "client assertion iat is in the future", nil)
	}
	if cl.ID == "" {
		return time.Time{}, invalidClient(clientID, m, "client assertion has no jti", nil)
	}
	if !textguard.Valid(cl.ID) {
		// Refused alike on every store: PostgreSQL could not record it.
		return time.Time{}, invalidClient(clientID, m, "client assertion jti is not text (not UTF-8, or holds a NUL)", nil)
	}
	return exp, nil
}

// verify checks the assertion's signature against the client's keys and
// returns its claims.
func (a *Authenticator) verify(ctx context.Context, c storage.Client, tok *jwt.JSONWebToken) (jwt.Claims, *Error) {
	const m = MethodPrivateKeyJWT
	h := tok.Headers[0]
	keys, aerr := a.clientKeys(ctx, c, false)
	if aerr != nil {
		return jwt.Claims{}, aerr
	}
	cands := candidates(keys, h)
	if len(cands) == 0 && len(c.JWKS) == 0 {
		// The client may have rotated to a key we have not fetched yet.
		if keys, aerr = a.clientKeys(ctx, c, true); aerr != nil {
			return jwt.Claims{}, aerr
		}
		cands = candidates(keys, h)
	}
	if len(cands) == 0 {
		if h.KeyID != "" {
			return jwt.Claims{}, invalidClient(c.ID, m, "no registered signing key of the client fits the assertion's kid and alg",
				fmt.Errorf("kid %q, alg %s", h.KeyID, h.Algorithm))
		}
		return jwt.Claims{}, invalidClient(c.ID, m, "no registered signing key of the client fits the assertion's alg",
			fmt.Errorf("alg %s", h.Algorithm))
	}
	var errs []error
	for _, k := range cands {
		var cl jwt.Claims
		err := tok.Claims(k, &cl)
		if err == nil {
			return cl, nil
		}
		errs = append(errs, err)
	}
	return jwt.Claims{}, invalidClient(c.ID, m, "client assertion signature is invalid",
		fmt.Errorf("tried %d keys: %w", len(cands), errors.Join(errs...)))
}

// clientKeys returns the client's registered keys: the inline set if it has
// one, else the set at its JWKS URL (fetched again if refresh).
func (a *Authenticator) clientKeys(ctx context.Context, c storage.Client, refresh bool) ([]jose.JSONWebKey, *Error) {
	const m = MethodPrivateKeyJWT
	switch {
	case len(c.JWKS) > 0:
		keys, err := parseJWKS(c.JWKS)
		if err != nil {
			return nil, invalidClient(c.ID, m, "the client's registered keys are unusable", fmt.Errorf("inline JWKS: %w", err))
		}
		return keys, nil
	case c.JWKSURL != "":
		keys, err := a.jwks.keys(ctx, c.JWKSURL, refresh)
		if err != nil {
			return nil, invalidClient(c.ID, m, "the client's keys could not be fetched from its JWKS URL", err)
		}
		return keys, nil
	default:
		return nil, invalidClient(c.ID, m, "the client has no registered keys", nil)
	}
}

// candidates returns the public keys of set that may have signed a JWT with
// header h: those with its kid when it names one, else all; in either case
// only signing keys whose type, curve and alg fit h's alg. Keys without
// "use" count as signing keys (RFC 7517 §4.2 makes "use" optional), and no
// client is pinned to one algorithm.
func candidates(set []jose.JSONWebKey, h jose.Header) []any {
	var out []any
	for _, k := range set {
		if h.KeyID != "" && k.KeyID != h.KeyID {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != h.Algorithm {
			continue
		}
		if pub := publicKeyFor(k, h.Algorithm); pub != nil {
			out = append(out, pub)
		}
	}
	return out
}

// publicKeyFor returns k's public key if it can verify alg, else nil.
func publicKeyFor(k jose.JSONWebKey, alg string) any {
	switch pub := k.Public().Key.(type) {
	case *rsa.PublicKey:
		if (strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")) && pub.N.BitLen() >= minRSABits {
			return pub
		}
	case *ecdsa.PublicKey:
		if curveFor(alg) == pub.Curve {
			return pub
		}
	}
	return nil
}

// curveFor returns the curve an ECDSA alg requires (RFC 7518 §3.4), or nil.
func curveFor(alg string) elliptic.Curve {
	switch jose.SignatureAlgorithm(alg) {
	case jose.ES256:
		return elliptic.P256()
	case jose.ES384:
		return elliptic.P384()
	case jose.ES512:
		return elliptic.P521()
	}
	return nil
}
