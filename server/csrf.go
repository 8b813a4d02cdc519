package server

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
)

// csrfField is the hidden form field that echoes the CSRF cookie.
const csrfField = "csrf_token"

// csrfTokenBytes is the size of the random CSRF value.
const csrfTokenBytes = 32

// errCSRF is what a person sees when a form post fails the CSRF check.
var errCSRF = &httpError{status: http.StatusForbidden, code: "csrf",
	description: "This form has expired or was sent from another site. Go back to the app and sign in again."}

// csrfCookieName is the double-submit cookie's name. Over https it carries
// the __Secure- prefix so browsers refuse it from plain http; __Host- would
// be stronger but requires Path=/, and the cookie is scoped to one tenant.
func (s *Server) csrfCookieName() string {
	if s.secure {
		return "__Secure-smartauth_csrf"
	}
	return "smartauth_csrf"
}

// csrfCookiePath scopes the cookie to the tenant's public path, so tenants
// never see each other's cookies.
func (s *Server) csrfCookiePath(tenantID string) string {
	u, err := url.Parse(s.Issuer(tenantID))
	if err != nil {
		return "/t/" + tenantID + "/"
	}
	return u.Path + "/"
}

// csrfToken returns the browser's CSRF token for pages with forms, setting
// a new cookie when the browser has none. It must run before the page's
// header is written.
func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request, tenantID string) (string, error) {
	return s.csrfTokenAt(w, r, s.csrfCookiePath(tenantID))
}

// csrfTokenAt is csrfToken with the cookie scoped to path.
func (s *Server) csrfTokenAt(w http.ResponseWriter, r *http.Request, path string) (string, error) {
	if c, err := r.Cookie(s.csrfCookieName()); err == nil && validCSRFToken(c.Value) {
		return c.Value, nil
	}
	b := make([]byte, csrfTokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("csrf token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{
		Name:     s.csrfCookieName(),
		Value:    token,
		Path:     path,
		HttpOnly: true,
		Secure:   s.secure,
		SameSite: http.SameSiteLaxMode,
	})
	return token, nil
}

// checkCSRF refuses a form post that a browser marks as from another
// origin, or whose hidden token does not match the cookie; it returns the
// verified token.
func (s *Server) checkCSRF(r *http.Request) (string, error) {
	// Our forms post to their own origin. A sibling subdomain is
	// "same-site" and could have planted a cookie, so only same-origin
	// posts (or browsers that do not say) pass.
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return "", errCSRF
	}
	c, err := r.Cookie(s.csrfCookieName())
	if err != nil || !validCSRFToken(c.Value) {
		return "", errCSRF
	}
	// Normally wellFormed has read the form already, and this reads nothing.
	if err := s.wellFormed(r); err != nil {
		return "", err
	}
	if subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostForm.Get(csrfField))) != 1 {
		return "", errCSRF
	}
	return c.Value, nil
}

// validCSRFToken accepts only values csrfToken could have made, so a
// planted cookie of another shape is replaced rather than trusted.
func validCSRFToken(v string) bool {
	b, err := base64.RawURLEncoding.DecodeString(v)
	return err == nil && len(b) == csrfTokenBytes
}
