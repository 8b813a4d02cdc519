package manage

import (
	"context"
	"errors"
	"fmt"

	"github.com/smartauth/smartauth/storage"
)

// AdminScope is the scope a client_credentials token needs for the JSON
// admin API; only admins may give it to a client.
const AdminScope = "admin"

// EnsureOperatorRealm creates the operator realm, the tenant row that holds
// operators, their API clients, sessions and audit trail, unless it exists.
// It has signing keys of its own, for the tokens of operator API clients.
func (s *Service) EnsureOperatorRealm(ctx context.Context) error {
	_, err := s.store.GetTenant(ctx, storage.OperatorRealm)
	if err == nil {
		return nil
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("operator realm: %w", err)
	}
	t := storage.Tenant{ID: storage.OperatorRealm, Name: "Operators", CreatedAt: s.timestamp()}
	ks, err := s.keys.NewKeys(t.ID)
	if err != nil {
		return fmt.Errorf("operator realm: %w", err)
	}
	err = s.store.CreateTenant(ctx, t, ks)
	if errors.Is(err, storage.ErrAlreadyExists) {
		// Another replica or command created it in between.
		return nil
	}
	if err != nil {
		return fmt.Errorf("create operator realm: %w", err)
	}
	return nil
}

// CreateAdmin creates an admin account: an operator when tenantID is empty,
// otherwise an admin of that tenant. A second factor is enrolled at the
// account's first sign-in, which cannot finish without one.
func (s *Service) CreateAdmin(ctx context.Context, tenantID, email, password string, who Actor) (storage.User, error) {
	if password == "" {
		return storage.User{}, invalid("an admin needs a password")
	}
	if tenantID == "" {
		if err := s.EnsureOperatorRealm(ctx); err != nil {
			return storage.User{}, err
		}
		tenantID = storage.OperatorRealm
	}
	return s.CreateUser(ctx, UserInput{TenantID: tenantID, Email: email, Password: password, Admin: true}, who)
}
