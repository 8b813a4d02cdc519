package server

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/ory/fosite"

	"github.com/smartauth/smartauth/server/clientauth"
	"github.com/smartauth/smartauth/server/oauth"
	"github.com/smartauth/smartauth/storage"
)

// authedClient carries the authenticated client id out of fosite, for
// audit and rate limits.
type authedClient struct{ id string }

const authedClientKey ctxKey = iota + 100

func withAuthedClient(ctx context.Context) (context.Context, *authedClient) {
	if a, ok := ctx.Value(authedClientKey).(*authedClient); ok {
		return ctx, a // one holder per request, shared with rateLimited
	}
	a := &authedClient{}
	return context.WithValue(ctx, authedClientKey, a), a
}

// clientAuthStrategy is fosite's client authentication for one tenant,
// delegated to server/clientauth; every failure is audited.
func (s *Server) clientAuthStrategy(tenantID string) fosite.ClientAuthenticationStrategy {
	endpoint := s.Issuer(tenantID) + "/token"
	return func(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
		res, err := s.clientAuth.Authenticate(ctx, tenantID, endpoint, r, form)
		if err != nil {
			var ce *clientauth.Error
			if !errors.As(err, &ce) {
				return nil, fosite.ErrServerError.WithWrap(err)
			}
			s.logger(r).Info("client authentication failed", "tenant", tenantID, "client", ce.ClientID, "method", ce.Method, "err", err)
			s.audit(r, storage.AuditEvent{TenantID: tenantID, Type: "client.authenticate", Outcome: "failure", ClientID: ce.ClientID,
				Details: map[string]string{"method": ce.Method, "error": ce.Code, "reason": ce.Description}})
			switch ce.Code {
			case "invalid_request":
				return nil, fosite.ErrInvalidRequest.WithHint(ce.Description).WithWrap(ce)
			case "invalid_client":
				return nil, fosite.ErrInvalidClient.WithHint(ce.Description).WithWrap(ce)
			default:
				return nil, fosite.ErrServerError.WithWrap(ce)
			}
		}
		if a, ok := ctx.Value(authedClientKey).(*authedClient); ok {
			a.id = res.Client.ID
		}
		return &oauth.Client{Client: res.Client}, nil
	}
}

// setChallenge adds the WWW-Authenticate challenge RFC 6749 §5.2 requires
// when a client that used HTTP Basic fails to authenticate.
func setChallenge(w http.ResponseWriter, err error) {
	var ce *clientauth.Error
	if errors.As(err, &ce) {
		if h := ce.WWWAuthenticate("smartauth"); h != "" {
			w.Header().Set("WWW-Authenticate", h)
		}
	}
}
