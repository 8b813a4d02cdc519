package oauth

import (
	"context"
	"errors"

	"github.com/ory/fosite"
	foauth2 "github.com/ory/fosite/handler/oauth2"
)

// revocationHandler is fosite's token revocation (RFC 7009 §2.1) except in
// one respect: when storage fails, fosite's handler answers
// temporarily_unavailable without the cause, and its endpoint writer then
// turns that into 200, so a revocation that did not happen looked like one
// that did and left nothing to log. Here the cause travels with the error.
type revocationHandler struct {
	store  *Store
	tokens foauth2.CoreStrategy
}

var _ fosite.RevocationHandler = (*revocationHandler)(nil)

// RevokeToken revokes the refresh and access tokens of the grant the token
// belongs to. As in fosite, the token is looked for as either kind, the
// hinted kind first; a token that is unknown or already inactive is not an
// error (RFC 7009 §2.2), and one issued to another client is refused.
func (h *revocationHandler) RevokeToken(ctx context.Context, token string, hint fosite.TokenType, client fosite.Client) error {
	lookups := []func() (fosite.Requester, error){
		func() (fosite.Requester, error) {
			return h.store.GetRefreshTokenSession(ctx, h.tokens.RefreshTokenSignature(ctx, token), nil)
		},
		func() (fosite.Requester, error) {
			return h.store.GetAccessTokenSession(ctx, h.tokens.AccessTokenSignature(ctx, token), nil)
		},
	}
	if hint == fosite.AccessToken {
		lookups[0], lookups[1] = lookups[1], lookups[0]
	}
	var req fosite.Requester
	var lookupErrs []error
	for _, lookup := range lookups {
		r, err := lookup()
		if err == nil {
			req = r
			break
		}
		lookupErrs = append(lookupErrs, err)
	}
	if req == nil {
		return revocationFailure(lookupErrs...)
	}
	if req.GetClient().GetID() != client.GetID() {
		return fosite.ErrUnauthorizedClient
	}
	// Either kind of token ends its whole grant (RFC 7009 §2.1); the store's
	// revocation of a family covers both kinds in one write.
	return revocationFailure(h.store.RevokeRefreshToken(ctx, req.GetID()))
}

// revocationFailure is nil when every error is nil or says the token is
// unknown or already inactive, which for revocation is success; otherwise
// the token may still be active, and the client should try again.
func revocationFailure(errs ...error) error {
	var failed []error
	for _, err := range errs {
		if err != nil && !errors.Is(err, fosite.ErrNotFound) && !errors.Is(err, fosite.ErrInactiveToken) {
			failed = append(failed, err)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return fosite.ErrTemporarilyUnavailable.WithWrap(errors.Join(failed...))
}
