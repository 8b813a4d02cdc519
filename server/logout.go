package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/smartauth/smartauth/server/sessions"
	"github.com/smartauth/smartauth/storage"
)

// logoutPage is what templates/logout.html shows.
type logoutPage struct {
	Tenant storage.Tenant
	Action string
	CSRF   string
	// Params are the RP-initiated logout parameters, carried through the form.
	ClientID    string
	RedirectURI string
	State       string
	Done        bool
}

// logout is the end_session endpoint (OpenID Connect RP-Initiated Logout
// 1.0). GET asks the person to confirm, so a link on another site cannot
// sign anyone out; the confirmed POST ends the browser session, and with it
// every online_access grant bound to it, then returns to the app when it
// named a post_logout_redirect_uri it registered.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	t, err := s.tenant(r)
	if err != nil {
		return err
	}
	if r.Method == http.MethodGet {
		if err := r.ParseForm(); err != nil {
			return browserError(http.StatusBadRequest, "The sign-out request could not be read.")
		}
		redirect, err := s.postLogoutRedirect(r, t.ID, r.Form)
		if err != nil {
			return err
		}
		csrf, err := s.csrfToken(w, r, t.ID)
		if err != nil {
			return err
		}
		page := logoutPage{Tenant: t, Action: s.Issuer(t.ID) + "/logout", CSRF: csrf, ClientID: r.Form.Get("client_id"), State: r.Form.Get("state")}
		if redirect != "" {
			page.RedirectURI = r.Form.Get("post_logout_redirect_uri")
		}
		s.renderFlow(w, r, http.StatusOK, "logout", page, page.RedirectURI)
		return nil
	}
	if _, err := s.checkCSRF(r); err != nil {
		return err
	}
	redirect, err := s.postLogoutRedirect(r, t.ID, r.PostForm)
	if err != nil {
		return err
	}
	st := s.sessions.Tenant(t.ID)
	sess, err := st.Get(r, sessions.CookieName)
	if err != nil {
		return fmt.Errorf("load browser session: %w", err)
	}
	if userID := sessions.UserID(sess); userID != "" {
		s.audit(r, storage.AuditEvent{TenantID: t.ID, Type: "logout", Outcome: "success", Subject: userID,
			ClientID: r.PostForm.Get("client_id")})
	}
	if err := st.Destroy(r, w, sess); err != nil {
		return fmt.Errorf("end browser session: %w", err)
	}
	// Forms of the signed-out sign-in are bound to this cookie: drop it too.
	http.SetCookie(w, &http.Cookie{Name: s.csrfCookieName(), Value: "", Path: s.csrfCookiePath(t.ID), MaxAge: -1,
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
	if redirect != "" {
		w.Header().Set("Location", redirect)
		w.WriteHeader(http.StatusSeeOther)
		return nil
	}
	s.render(w, r, http.StatusOK, "logout", logoutPage{Tenant: t, Done: true})
	return nil
}

// postLogoutRedirect checks a post_logout_redirect_uri: it needs the
// client_id of a client of this tenant that registered it, byte for byte,
// as a redirect URI. It returns the address to send the browser to, with
// state, or "" when none was asked for.
func (s *Server) postLogoutRedirect(r *http.Request, tenantID string, form url.Values) (string, error) {
	raw := form.Get("post_logout_redirect_uri")
	if raw == "" {
		return "", nil
	}
	refuse := browserError(http.StatusBadRequest,
		"The app asked to return to an address it has not registered, so you were not signed out. Contact the app's developer.")
	clientID := form.Get("client_id")
	if clientID == "" {
		return "", refuse
	}
	c, err := s.store.GetClient(r.Context(), tenantID, clientID)
	if errors.Is(err, storage.ErrNotFound) {
		return "", refuse
	}
	if err != nil {
		return "", fmt.Errorf("load client: %w", err)
	}
	if !slices.Contains(c.RedirectURIs, raw) {
		return "", refuse
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", refuse
	}
	if state := form.Get("state"); state != "" {
		q := u.Query()
		q.Set("state", state)
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}
