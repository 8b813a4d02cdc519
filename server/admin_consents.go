package server

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/smartauth/smartauth/storage"
)

// consentNotices are the consents page's notices after a change.
var consentNotices = map[string]string{
	"revoked": "Consent revoked. The app's tokens for this person no longer work, and the person is asked again at the app's next sign-in.",
}

// consentRow is one remembered consent as the consents page lists it.
type consentRow struct {
	UserID, ClientID string
	// Email and ClientName are empty when the user or client is gone.
	Email      string
	ClientName string
	Scopes     []string
	CreatedAt  time.Time
	// ExpiresAt is zero for a consent that does not expire.
	ExpiresAt time.Time
	Expired   bool
}

// consentsPage lists a tenant's remembered consents.
type consentsPage struct {
	adminPage
	Consents []consentRow
}

// adminConsents lists every remembered consent of a tenant, with the
// person's email and the app's name.
func (s *Server) adminConsents(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	ctx := r.Context()
	tenantID := ar.tenant.ID
	consents, err := s.store.ListConsents(ctx, tenantID, "")
	if err != nil {
		return fmt.Errorf("consents of tenant %q: %w", tenantID, err)
	}
	// One read of each list rather than one per consent.
	users, err := s.store.ListUsers(ctx, tenantID)
	if err != nil {
		return fmt.Errorf("users of tenant %q: %w", tenantID, err)
	}
	emails := make(map[string]string, len(users))
	for _, u := range users {
		emails[u.ID] = u.Email
	}
	clients, err := s.store.ListClients(ctx, tenantID)
	if err != nil {
		return fmt.Errorf("clients of tenant %q: %w", tenantID, err)
	}
	names := make(map[string]string, len(clients))
	for _, c := range clients {
		names[c.ID] = c.Name
	}
	page := consentsPage{adminPage: ar.page(s, "consents", "Consents")}
	page.Notice = consentNotices[r.URL.Query().Get("notice")]
	now := s.now()
	for _, c := range consents {
		page.Consents = append(page.Consents, consentRow{
			UserID: c.UserID, ClientID: c.ClientID, Email: emails[c.UserID], ClientName: names[c.ClientID],
			Scopes: c.Scopes, CreatedAt: c.CreatedAt, ExpiresAt: c.ExpiresAt,
			Expired: !c.ExpiresAt.IsZero() && !c.ExpiresAt.After(now),
		})
	}
	s.render(w, r, http.StatusOK, "admin_consents", page)
	return nil
}

// adminRevokeConsent forgets a person's consent to an app.
func (s *Server) adminRevokeConsent(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	userID, clientID := r.PostForm.Get("user_id"), r.PostForm.Get("client_id")
	err := s.manage.RevokeConsent(r.Context(), ar.tenant.ID, userID, clientID, ar.actor(r))
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound("That consent is not remembered; it may have been revoked already.")
	}
	if err != nil {
		return fmt.Errorf("revoke consent of user %q to client %q: %w", userID, clientID, err)
	}
	http.Redirect(w, r, s.areaURL(ar.area)+"/consents?notice=revoked", http.StatusSeeOther)
	return nil
}
