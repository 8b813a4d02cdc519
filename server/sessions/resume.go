package sessions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/smartauth/smartauth/storage"
)

// Resume records a use of a live session from outside the browser, by its
// ID, as an online_access refresh does: the app's work on the person's
// behalf keeps their session from going idle, but never past the absolute
// time-out. It returns ErrEnded when the session was signed out, deleted or
// has expired, or its row cannot be trusted.
func (m *Manager) Resume(ctx context.Context, tenantID, id string) error {
	if id == "" {
		return ErrEnded
	}
	st := m.Tenant(tenantID)
	now := st.now()
	row, err := m.store.GetSession(ctx, tenantID, id, now)
	if errors.Is(err, storage.ErrNotFound) {
		return ErrEnded
	}
	if err != nil {
		return fmt.Errorf("sessions: resume: %w", err)
	}
	p, ok := st.open(row)
	if !ok {
		return ErrEnded
	}
	created := time.UnixMicro(p.Created).UTC()
	if !now.Before(st.expiry(row.UpdatedAt, created)) {
		return ErrEnded
	}
	err = m.store.TouchSession(ctx, tenantID, id, now, st.expiry(now, created))
	if errors.Is(err, storage.ErrNotFound) {
		return ErrEnded
	}
	if err != nil {
		return fmt.Errorf("sessions: resume: %w", err)
	}
	return nil
}
