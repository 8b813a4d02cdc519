package manage

import (
	"context"
	"fmt"
)

// RevokeConsent forgets what a user agreed to let a client have, so the
// user is asked again at the client's next authorization, and ends the
// user's grants to that client: its refresh tokens stop working and
// introspection reports its access tokens inactive.
func (s *Service) RevokeConsent(ctx context.Context, tenantID, userID, clientID string, who Actor) error {
	if err := s.store.DeleteConsent(ctx, tenantID, userID, clientID); err != nil {
		return fmt.Errorf("consent of user %q to client %q in tenant %q: %w", userID, clientID, tenantID, err)
	}
	return s.audit(ctx, tenantID, "admin.consent.revoke", who, userID, map[string]string{"client_id": clientID})
}
