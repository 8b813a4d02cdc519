package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/ory/fosite"

	"github.com/smartauth/smartauth/server/oauth"
	"github.com/smartauth/smartauth/storage"
)

// introspectionResponse is RFC 7662 §2.2 plus the SMART context the token
// response carried, so a FHIR server learns the same patient and user.
type introspectionResponse struct {
	Active    bool     `json:"active"`
	Scope     string   `json:"scope,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Subject   string   `json:"sub,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	Issuer    string   `json:"iss,omitempty"`
	Audience  []string `json:"aud,omitempty"`
	IssuedAt  int64    `json:"iat,omitempty"`
	ExpiresAt int64    `json:"exp,omitempty"`
	FHIRUser  string   `json:"fhirUser,omitempty"`
	*oauth.Context
}

// introspect is the introspection endpoint (RFC 7662). It requires client
// authentication — any method the client is registered for — and answers
// active:false for every token it cannot vouch for.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) error {
	t, p, err := s.tenantProvider(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		s.writeOAuthError(w, r, http.StatusBadRequest, "invalid_request", "The request body could not be read as a form.")
		return nil
	}
	if err := singleParams(r.PostForm); err != nil {
		s.writeFositeError(w, r, err)
		return nil
	}
	if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		// A token is not a client credential: it would let any token holder
		// read every other token's context.
		s.writeOAuthError(w, r, http.StatusUnauthorized, "invalid_client", "Introspection requires client authentication.")
		return nil
	}
	client, err := p.Config.GetClientAuthenticationStrategy(ctx)(ctx, r, r.PostForm)
	if err != nil {
		setChallenge(w, err)
		s.writeFositeError(w, r, err)
		return nil
	}
	if client.IsPublic() {
		// A public client proves nothing by naming itself; letting it read
		// any token's context would open introspection to the world.
		s.writeOAuthError(w, r, http.StatusUnauthorized, "invalid_client", "Introspection requires a confidential client.")
		return nil
	}
	token := r.PostForm.Get("token")
	if token == "" {
		s.writeOAuthError(w, r, http.StatusBadRequest, "invalid_request", "The token parameter is missing.")
		return nil
	}
	resp := introspectionResponse{}
	// A bare session to decode the record into: introspection issues no ID
	// token, so the empty ID token claims NewSession prepares would be waste.
	use, ar, err := p.IntrospectToken(ctx, token, tokenUse(r.PostForm.Get("token_type_hint")), &oauth.Session{SMART: oauth.Context{Tenant: t.ID}})
	if err == nil {
		sess, _ := ar.GetSession().(*oauth.Session)
		if sess != nil {
			resp = introspectionResponse{
				Active:    true,
				Scope:     strings.Join(ar.GetGrantedScopes(), " "),
				ClientID:  ar.GetClient().GetID(),
				Subject:   sess.Subject,
				TokenType: "Bearer",
				Issuer:    s.Issuer(t.ID),
				Audience:  ar.GetGrantedAudience(),
				IssuedAt:  ar.GetRequestedAt().Unix(),
				ExpiresAt: sess.GetExpiresAt(fosite.TokenType(use)).Unix(),
				FHIRUser:  sess.SMART.FHIRUser,
				Context:   &sess.SMART,
			}
			if use == fosite.RefreshToken {
				resp.TokenType = "refresh_token"
			}
		}
	} else if errors.Is(err, storage.ErrUnavailable) {
		// Unknown is not inactive: told active:false, a FHIR server would
		// turn away every holder of a good token until the database is back.
		return err
	} else if !errors.Is(err, fosite.ErrInactiveToken) && !errors.Is(err, fosite.ErrNotFound) &&
		!errors.Is(err, fosite.ErrRequestUnauthorized) && !errors.Is(err, fosite.ErrTokenExpired) &&
		!errors.Is(err, fosite.ErrTokenSignatureMismatch) && !errors.Is(err, fosite.ErrInvalidTokenFormat) &&
		!errors.Is(err, fosite.ErrTokenClaim) {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func tokenUse(hint string) fosite.TokenUse {
	if hint == "refresh_token" {
		return fosite.RefreshToken
	}
	return fosite.AccessToken
}
