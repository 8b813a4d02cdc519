package manage

import (
	"context"
	"fmt"
	"io"
	"net/mail"
	"regexp"
	"strings"

	"github.com/smartauth/smartauth/server/password"
	"github.com/smartauth/smartauth/server/roster"
	"github.com/smartauth/smartauth/storage"
)

// fhirUserPattern is a relative reference to a resource type SMART allows as fhirUser.
var fhirUserPattern = regexp.MustCompile(`^(Practitioner|PractitionerRole|Patient|RelatedPerson|Person)/[A-Za-z0-9\-.]{1,64}$`)

// UserInput is what an operator gives to create a local user.
type UserInput struct {
	TenantID string
	Email    string
	// Password is hashed with argon2id; empty for a federated-only user.
	Password string
	Profiles []storage.Profile
}

// ParseProfile reads "Practitioner/123" or "Practitioner/123=Attending physician".
func ParseProfile(s string) (storage.Profile, error) {
	ref, label, _ := strings.Cut(strings.TrimSpace(s), "=")
	p := storage.Profile{FHIRUser: strings.TrimSpace(ref), Label: strings.TrimSpace(label)}
	if !fhirUserPattern.MatchString(p.FHIRUser) {
		return p, invalid("profile %q must be Practitioner/, PractitionerRole/, Patient/, RelatedPerson/ or Person/ followed by a FHIR id", s)
	}
	if p.Label == "" {
		p.Label, _, _ = strings.Cut(p.FHIRUser, "/")
	}
	return p, nil
}

// CreateUser validates and stores a local user.
func (s *Service) CreateUser(ctx context.Context, in UserInput, who Actor) (storage.User, error) {
	if _, err := s.store.GetTenant(ctx, in.TenantID); err != nil {
		return storage.User{}, fmt.Errorf("tenant %q: %w", in.TenantID, err)
	}
	addr, err := mail.ParseAddress(strings.TrimSpace(in.Email))
	if err != nil || addr.Name != "" || !strings.Contains(addr.Address, "@") {
		return storage.User{}, invalid("email %q is not a plain email address", in.Email)
	}
	u := storage.User{TenantID: in.TenantID, ID: randomID(), Email: addr.Address}
	if in.Password != "" {
		if u.PasswordHash, err = password.Hash(in.Password); err != nil {
			return storage.User{}, invalid("%v", err)
		}
	}
	for _, p := range in.Profiles {
		p, err := ParseProfile(p.FHIRUser + "=" + p.Label)
		if err != nil {
			return storage.User{}, err
		}
		for _, q := range u.Profiles {
			if q.FHIRUser == p.FHIRUser {
				return storage.User{}, invalid("profile %s is given twice", p.FHIRUser)
			}
		}
		u.Profiles = append(u.Profiles, p)
	}
	u.CreatedAt = s.timestamp()
	u.UpdatedAt = u.CreatedAt
	if err := s.store.CreateUser(ctx, u); err != nil {
		return storage.User{}, fmt.Errorf("create user %s: %w", u.Email, err)
	}
	return u, s.audit(ctx, u.TenantID, "admin.user.create", who, u.ID, nil)
}

// ImportPatients parses FHIR Patient resources from r and upserts them into
// the tenant's roster, all or none.
func (s *Service) ImportPatients(ctx context.Context, tenantID string, r io.Reader, who Actor) (roster.Result, error) {
	if _, err := s.store.GetTenant(ctx, tenantID); err != nil {
		return roster.Result{}, fmt.Errorf("tenant %q: %w", tenantID, err)
	}
	res, err := roster.Parse(tenantID, r)
	if err != nil {
		return roster.Result{}, invalid("%v", err)
	}
	now := s.timestamp()
	for i := range res.Patients {
		res.Patients[i].UpdatedAt = now
	}
	if err := s.store.UpsertPatients(ctx, tenantID, res.Patients); err != nil {
		return roster.Result{}, fmt.Errorf("import patients: %w", err)
	}
	return res, s.audit(ctx, tenantID, "admin.patients.import", who, "", map[string]string{"count": fmt.Sprint(len(res.Patients))})
}
