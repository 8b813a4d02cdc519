// Package manage holds the administrative operations shared by the CLI and
// the admin UI: validated creation of tenants, clients and users, roster
// imports and key rotation, each recorded in the tenant's audit trail.
package manage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/storage"
)

// ErrInvalid marks input an operator must correct; its message says how.
var ErrInvalid = errors.New("invalid input")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Actor is who performs an operation, for the audit trail.
type Actor struct {
	// ID names the operator, or "cli" for the command line.
	ID       string
	SourceIP string
}

// Service performs administrative operations against one store.
type Service struct {
	store storage.Storage
	keys  *keys.Manager
	now   func() time.Time
}

// New returns a Service; now may be nil.
func New(store storage.Storage, km *keys.Manager, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, keys: km, now: now}
}

func (s *Service) timestamp() time.Time {
	return s.now().UTC().Truncate(time.Microsecond)
}

// audit records an administrative change; a failure is returned because an
// unrecorded admin change is one compliance cannot see.
func (s *Service) audit(ctx context.Context, tenantID, typ string, who Actor, subject string, details map[string]string) error {
	_, err := s.store.AppendAudit(ctx, storage.AuditEvent{
		TenantID: tenantID,
		Time:     s.timestamp(),
		Type:     typ,
		Outcome:  "success",
		ActorID:  who.ID,
		Subject:  subject,
		SourceIP: who.SourceIP,
		Details:  details,
	})
	if err != nil {
		return fmt.Errorf("record audit event %s: %w", typ, err)
	}
	return nil
}

// RotateKeys adds new active signing keys to a tenant and retires the old
// ones after the retirement window.
func (s *Service) RotateKeys(ctx context.Context, tenantID string, retirement time.Duration, who Actor) ([]storage.SigningKey, error) {
	if retirement < 0 {
		return nil, invalid("retirement window must not be negative")
	}
	if _, err := s.store.GetTenant(ctx, tenantID); err != nil {
		return nil, fmt.Errorf("tenant %q: %w", tenantID, err)
	}
	ks, err := s.keys.Rotate(ctx, tenantID, retirement)
	if err != nil {
		return nil, err
	}
	return ks, s.audit(ctx, tenantID, "admin.keys.rotate", who, "", map[string]string{"retirement": retirement.String()})
}
