package sessions

import "context"

// Resume records a use of a live session from outside the browser, by its
// ID, as an online_access refresh does: the app's work on the person's
// behalf keeps their session from going idle, but never past the absolute
// time-out. It returns ErrEnded when the session was signed out, deleted or
// has expired, or its row cannot be trusted.
func (m *Manager) Resume(ctx context.Context, tenantID, id string) error {
	if id == "" {
		return ErrEnded
	}
	_, _, err := m.Tenant(tenantID).use(ctx, id)
	return err
}
