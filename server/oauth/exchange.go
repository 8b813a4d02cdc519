package oauth

import (
	"context"
	"time"

	"github.com/ory/fosite"
	foauth2 "github.com/ory/fosite/handler/oauth2"

	"github.com/smartauth/smartauth/storage"
)

// Token exchange (RFC 8693) identifiers.
const (
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	// TokenTypeAccessToken is the only token type smartauth issues by exchange.
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
)

// ErrInvalidTarget is RFC 8693 §2.2.2's error for a resource or audience the
// server will not issue a token for; fosite v0.49 does not define it.
var ErrInvalidTarget = &fosite.RFC6749Error{
	ErrorField:       "invalid_target",
	DescriptionField: "The requested resource or audience is not one this server issues tokens for.",
	CodeField:        400,
}

type exchangeKey struct{}

// WithExchange returns a context under which the token-exchange grant
// resolves subject tokens with f. The token endpoint sets it per request:
// verifying an upstream token needs the server's identity providers and
// users, which the per-tenant providers built here know nothing of.
func WithExchange(ctx context.Context, f ExchangeFunc) context.Context {
	return context.WithValue(ctx, exchangeKey{}, f)
}

// ExchangeFunc checks a token-exchange request of an authenticated,
// confidential client allowed the grant, and fills in what the token is
// for: the session's subject and SMART context, the granted scopes and
// audiences. It may set the session's access token expiry to the subject
// token's, which the issued token then does not outlive. It returns fosite
// errors (invalid_grant for a refused subject token, invalid_scope,
// invalid_target, invalid_request).
type ExchangeFunc func(ctx context.Context, tenant storage.Tenant, req fosite.AccessRequester) error

// tokenExchangeHandler is the token-exchange grant as a fosite token
// endpoint handler, so the access token it issues is signed, stored,
// introspected and revoked exactly like those of the other grants.
type tokenExchangeHandler struct {
	helper *foauth2.HandleHelper
	config fosite.AccessTokenLifespanProvider
	tenant storage.Tenant
	now    func() time.Time
}

var _ fosite.TokenEndpointHandler = (*tokenExchangeHandler)(nil)

func (h *tokenExchangeHandler) CanHandleTokenEndpointRequest(_ context.Context, req fosite.AccessRequester) bool {
	return req.GetGrantTypes().ExactOne(GrantTypeTokenExchange)
}

// CanSkipClientAuth is false: only an authenticated client may exchange.
func (h *tokenExchangeHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool {
	return false
}

func (h *tokenExchangeHandler) HandleTokenEndpointRequest(ctx context.Context, req fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, req) {
		return fosite.ErrUnknownRequest
	}
	client := req.GetClient()
	// A public client authenticates with nothing but its name, and anyone
	// can say a name: it could turn any upstream token into one of ours.
	if client.IsPublic() {
		return fosite.ErrInvalidClient.WithHint("Token exchange requires a confidential client that authenticates.")
	}
	if !client.GetGrantTypes().Has(GrantTypeTokenExchange) {
		return fosite.ErrUnauthorizedClient.WithHint("The client is not registered for token exchange.")
	}
	exchange, _ := ctx.Value(exchangeKey{}).(ExchangeFunc)
	if exchange == nil {
		return fosite.ErrUnsupportedGrantType.WithHint("Token exchange is not enabled.")
	}
	if err := exchange(ctx, h.tenant, req); err != nil {
		return err
	}
	ttl := fosite.GetEffectiveLifespan(client, fosite.GrantType(GrantTypeTokenExchange), fosite.AccessToken, h.config.GetAccessTokenLifespan(ctx))
	exp := h.now().UTC().Add(ttl)
	if limit := req.GetSession().GetExpiresAt(fosite.AccessToken); !limit.IsZero() && limit.Before(exp) {
		exp = limit
	}
	req.GetSession().SetExpiresAt(fosite.AccessToken, exp)
	return nil
}

// PopulateTokenEndpointResponse issues the access token; no refresh token,
// since the subject token's holder can exchange again while it is valid.
func (h *tokenExchangeHandler) PopulateTokenEndpointResponse(ctx context.Context, req fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, req) {
		return fosite.ErrUnknownRequest
	}
	ttl := fosite.GetEffectiveLifespan(req.GetClient(), fosite.GrantType(GrantTypeTokenExchange), fosite.AccessToken, h.config.GetAccessTokenLifespan(ctx))
	if _, err := h.helper.IssueAccessToken(ctx, ttl, req, resp); err != nil {
		return err
	}
	// RFC 8693 §2.2.1.
	resp.SetTokenType("Bearer")
	resp.SetExtra("issued_token_type", TokenTypeAccessToken)
	return nil
}
