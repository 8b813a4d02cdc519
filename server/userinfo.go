package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/ory/fosite"

	"github.com/smartauth/smartauth/server/oauth"
	"github.com/smartauth/smartauth/storage"
)

// userinfo is the OpenID Connect UserInfo endpoint: it tells an app holding
// an access token with the openid scope who the user is.
func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) error {
	t, p, err := s.tenantProvider(r)
	if err != nil {
		return err
	}
	token := fosite.AccessTokenFromRequest(r)
	if token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_request"`)
		s.writeOAuthError(w, r, http.StatusUnauthorized, "invalid_request", "An access token is required.")
		return nil
	}
	use, ar, err := p.IntrospectToken(r.Context(), token, fosite.AccessToken, oauth.NewSession(t.ID), "openid")
	if err == nil && use != fosite.AccessToken {
		err = fosite.ErrRequestUnauthorized.WithHint("Only an access token is accepted.")
	}
	if errors.Is(err, storage.ErrUnavailable) {
		return err
	}
	if err != nil {
		rfc := fosite.ErrorToRFC6749Error(err)
		code := "invalid_token"
		if rfc.ErrorField == fosite.ErrInvalidScope.ErrorField {
			code = "insufficient_scope"
		}
		w.Header().Set("WWW-Authenticate", `Bearer error="`+code+`"`)
		s.writeOAuthError(w, r, http.StatusUnauthorized, code, "The access token is not valid for userinfo.",
			"reason", rfc.ErrorField, "hint", rfc.HintField, "debug", rfc.DebugField)
		return nil
	}
	sess, _ := ar.GetSession().(*oauth.Session)
	if sess == nil || sess.Subject == "" || sess.Backend {
		// A client_credentials token has no user behind it.
		s.writeOAuthError(w, r, http.StatusForbidden, "insufficient_scope", "The access token was not issued to a user.")
		return nil
	}
	info := map[string]any{"sub": sess.Subject}
	if sess.SMART.FHIRUser != "" && strings.Contains(" "+strings.Join(ar.GetGrantedScopes(), " ")+" ", " fhirUser ") {
		info["fhirUser"] = sess.SMART.FHIRUser
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}
