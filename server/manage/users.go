package manage

import (
	"context"
	"fmt"
	"io"
	"net/mail"
	"regexp"
	"slices"
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
	// Admin lets the user into the admin UI: of their tenant, or, in the
	// operator realm, of every tenant.
	Admin bool
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

// checkProfiles checks each profile as ParseProfile does and refuses one
// FHIR identity given twice, since the role picker tells them apart by it.
func checkProfiles(in []storage.Profile) ([]storage.Profile, error) {
	var out []storage.Profile
	for _, p := range in {
		p, err := ParseProfile(p.FHIRUser + "=" + p.Label)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(out, func(q storage.Profile) bool { return q.FHIRUser == p.FHIRUser }) {
			return nil, invalid("profile %s is given twice", p.FHIRUser)
		}
		out = append(out, p)
	}
	return out, nil
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
	u := storage.User{TenantID: in.TenantID, ID: randomID(), Email: addr.Address, Admin: in.Admin, Version: 1}
	if in.Password != "" {
		if u.PasswordHash, err = password.Hash(in.Password); err != nil {
			return storage.User{}, invalid("%v", err)
		}
	}
	if u.Profiles, err = checkProfiles(in.Profiles); err != nil {
		return storage.User{}, err
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

// user returns one user of a tenant; an unknown one yields an error
// wrapping storage.ErrNotFound.
func (s *Service) user(ctx context.Context, tenantID, userID string) (storage.User, error) {
	u, err := s.store.GetUser(ctx, tenantID, userID)
	if err != nil {
		return storage.User{}, fmt.Errorf("user %q of tenant %q: %w", userID, tenantID, err)
	}
	return u, nil
}

// saveUser stores an edited user and, when end is set, signs it out
// everywhere, so the change cannot be outlived by a session begun before it.
func (s *Service) saveUser(ctx context.Context, u storage.User, end bool) error {
	u.UpdatedAt = s.timestamp()
	if err := s.store.UpdateUser(ctx, u); err != nil {
		return fmt.Errorf("update user %q: %w", u.ID, err)
	}
	if !end {
		return nil
	}
	return s.endSessions(ctx, u.TenantID, u.ID)
}

func (s *Service) endSessions(ctx context.Context, tenantID, userID string) error {
	if err := s.store.DeleteUserSessions(ctx, tenantID, userID); err != nil {
		return fmt.Errorf("end the sessions of user %q: %w", userID, err)
	}
	return nil
}

// keepAnOperator refuses a change that takes u, as stored before it, out of
// the enabled operators when no other is left: nobody could then sign in to
// manage anything, and only the command line could repair it. Two such
// changes made at the same moment can each see the other operator; the
// command line remains the way back.
func (s *Service) keepAnOperator(ctx context.Context, u storage.User, change string) error {
	if u.TenantID != storage.OperatorRealm || !u.Admin || u.Disabled {
		return nil
	}
	us, err := s.store.ListUsers(ctx, storage.OperatorRealm)
	if err != nil {
		return fmt.Errorf("list operators: %w", err)
	}
	if !slices.ContainsFunc(us, func(o storage.User) bool { return o.ID != u.ID && o.Admin && !o.Disabled }) {
		return invalid("%s %s would leave no enabled operator: add or enable another operator first", change, u.Email)
	}
	return nil
}

// SetUserDisabled disables or enables a user. Disabling ends the user's
// sessions and deactivates the tokens issued to it; the last enabled
// operator cannot be disabled.
func (s *Service) SetUserDisabled(ctx context.Context, tenantID, userID string, disabled bool, who Actor) error {
	u, err := s.user(ctx, tenantID, userID)
	if err != nil {
		return err
	}
	typ := "admin.user.enable"
	if disabled {
		typ = "admin.user.disable"
		if err := s.keepAnOperator(ctx, u, "disabling"); err != nil {
			return err
		}
	}
	u.Disabled = disabled
	if err := s.saveUser(ctx, u, disabled); err != nil {
		return err
	}
	return s.audit(ctx, tenantID, typ, who, u.ID, nil)
}

// ResetPassword sets a user's password, hashed with argon2id, and ends the
// user's sessions, so whoever knew the old one is signed out.
func (s *Service) ResetPassword(ctx context.Context, tenantID, userID, newPassword string, who Actor) error {
	hash, err := password.Hash(newPassword)
	if err != nil {
		return invalid("%v", err)
	}
	u, err := s.user(ctx, tenantID, userID)
	if err != nil {
		return err
	}
	u.PasswordHash = hash
	if err := s.saveUser(ctx, u, true); err != nil {
		return err
	}
	return s.audit(ctx, tenantID, "admin.user.reset_password", who, u.ID, nil)
}

// ResetSecondFactor removes a user's TOTP secret, pending enrollment and
// recovery codes, for one who lost the device, and ends the user's
// sessions; the user enrolls again at the next sign-in that needs it.
func (s *Service) ResetSecondFactor(ctx context.Context, tenantID, userID string, who Actor) error {
	if err := s.store.ResetTOTP(ctx, tenantID, userID, s.timestamp()); err != nil {
		return fmt.Errorf("reset the second factor of user %q of tenant %q: %w", userID, tenantID, err)
	}
	if err := s.endSessions(ctx, tenantID, userID); err != nil {
		return err
	}
	return s.audit(ctx, tenantID, "admin.user.reset_mfa", who, userID, nil)
}

// SetProfiles replaces the FHIR identities a user may act as, checked as
// CreateUser checks them; an empty list leaves the user none.
func (s *Service) SetProfiles(ctx context.Context, tenantID, userID string, profiles []storage.Profile, who Actor) error {
	ps, err := checkProfiles(profiles)
	if err != nil {
		return err
	}
	u, err := s.user(ctx, tenantID, userID)
	if err != nil {
		return err
	}
	u.Profiles = ps
	if err := s.saveUser(ctx, u, false); err != nil {
		return err
	}
	refs := make([]string, 0, len(ps))
	for _, p := range ps {
		refs = append(refs, p.FHIRUser)
	}
	return s.audit(ctx, tenantID, "admin.user.set_profiles", who, u.ID, map[string]string{"profiles": strings.Join(refs, " ")})
}

// SetAdmin grants or withdraws a user's admin rights: over the tenant, or,
// in the operator realm, over every tenant. Withdrawing them ends the
// user's sessions, admin ones included; the last enabled operator keeps them.
func (s *Service) SetAdmin(ctx context.Context, tenantID, userID string, admin bool, who Actor) error {
	u, err := s.user(ctx, tenantID, userID)
	if err != nil {
		return err
	}
	if !admin {
		if err := s.keepAnOperator(ctx, u, "withdrawing operator rights from"); err != nil {
			return err
		}
	}
	u.Admin = admin
	if err := s.saveUser(ctx, u, !admin); err != nil {
		return err
	}
	return s.audit(ctx, tenantID, "admin.user.set_admin", who, u.ID, map[string]string{"admin": fmt.Sprint(admin)})
}

// DeleteUser removes a user with its sessions, consents and identity links
// and deactivates the tokens issued to it; the last enabled operator cannot
// be deleted. The audit event keeps the email, as the id then names no one.
func (s *Service) DeleteUser(ctx context.Context, tenantID, userID string, who Actor) error {
	u, err := s.user(ctx, tenantID, userID)
	if err != nil {
		return err
	}
	if err := s.keepAnOperator(ctx, u, "deleting"); err != nil {
		return err
	}
	if err := s.store.DeleteUser(ctx, tenantID, userID); err != nil {
		return fmt.Errorf("delete user %q: %w", userID, err)
	}
	return s.audit(ctx, tenantID, "admin.user.delete", who, u.ID, map[string]string{"email": u.Email})
}
