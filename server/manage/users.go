package manage

import (
	"context"
	"errors"
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

// EmailThrottleKey names the counter of an email's failed password
// sign-ins: compared case-insensitively, as GetUserByEmail does, and cut to
// the longest valid address. Sign-in counts under it and a new password
// clears it.
func EmailThrottleKey(email string) string {
	if len(email) > 320 {
		email = email[:320]
	}
	return "email:" + strings.ToLower(email)
}

// UserChange is an edit of one user: each field set is changed, all in one
// update of the stored user, so that the edit is made whole or not at all.
type UserChange struct {
	// Version is the version of the user the edit was made from; a user
	// changed since is refused with an error wrapping storage.ErrConflict.
	// Zero makes the edit to the user as it is now.
	Version int64
	// Profiles replaces the FHIR identities the user may act as, checked as
	// CreateUser checks them; an empty list leaves the user none.
	Profiles *[]storage.Profile
	// Admin grants or withdraws admin rights: over the tenant, or, in the
	// operator realm, over every tenant.
	Admin *bool
	// Disabled disables or enables the user.
	Disabled *bool
	// Password replaces the user's password; it is stored hashed with argon2id.
	Password *string
}

// maxEditAttempts bounds how often an edit of a user or tenant as it is now
// (Version zero) is made again when another change came between its read
// and its write; it is made afresh over each read, so no change is lost.
const maxEditAttempts = 3

// UpdateUser makes the changes of ch to a user in one storage update, then
// records one audit event per change, all in one append, and returns the
// user as stored. A change with no field set writes nothing.
//
// Disabling the user, withdrawing its admin rights or setting its password
// ends its sessions, so the change cannot be outlived by a session begun
// before it; disabling also deactivates the tokens issued to it. A new
// password clears the failed sign-ins counted against the user's email, so
// that a user locked out by them can sign in with it at once. The last
// enabled operator can neither be disabled nor lose its rights.
func (s *Service) UpdateUser(ctx context.Context, tenantID, userID string, ch UserChange, who Actor) (storage.User, error) {
	var profiles []storage.Profile
	if ch.Profiles != nil {
		ps, err := checkProfiles(*ch.Profiles)
		if err != nil {
			return storage.User{}, err
		}
		profiles = ps
	}
	var hash string
	if ch.Password != nil {
		h, err := password.Hash(*ch.Password)
		if err != nil {
			return storage.User{}, invalid("%v", err)
		}
		hash = h
	}
	for attempt := 1; ; attempt++ {
		u, err := s.user(ctx, tenantID, userID)
		if err != nil {
			return storage.User{}, err
		}
		if ch.Version != 0 && u.Version != ch.Version {
			return storage.User{}, fmt.Errorf("user %q of tenant %q is at version %d, the edit was made from %d: %w",
				userID, tenantID, u.Version, ch.Version, storage.ErrConflict)
		}
		if ch.Profiles == nil && ch.Admin == nil && ch.Disabled == nil && ch.Password == nil {
			return u, nil
		}
		edited := u
		if ch.Profiles != nil {
			edited.Profiles = profiles
		}
		if ch.Admin != nil {
			edited.Admin = *ch.Admin
		}
		if ch.Disabled != nil {
			edited.Disabled = *ch.Disabled
		}
		if ch.Password != nil {
			edited.PasswordHash = hash
		}
		edited.UpdatedAt = s.timestamp()
		err = s.store.UpdateUser(ctx, edited)
		switch {
		case errors.Is(err, storage.ErrConflict) && ch.Version == 0 && attempt < maxEditAttempts:
			continue
		case errors.Is(err, storage.ErrLastOperator):
			change := "withdrawing operator rights from"
			if edited.Disabled {
				change = "disabling"
			}
			return storage.User{}, invalid("%s %s would leave no enabled operator: add or enable another operator first", change, u.Email)
		case err != nil:
			return storage.User{}, fmt.Errorf("update user %q of tenant %q: %w", userID, tenantID, err)
		}
		edited.Version++
		return edited, s.afterUserChange(ctx, edited, ch, who)
	}
}

// ResetPassword sets the password of a user as it is now, as UpdateUser
// does: the user's sessions end and the failed sign-ins counted against its
// email are forgotten.
func (s *Service) ResetPassword(ctx context.Context, tenantID, userID, newPassword string, who Actor) error {
	_, err := s.UpdateUser(ctx, tenantID, userID, UserChange{Password: &newPassword}, who)
	return err
}

// afterUserChange does what follows a stored change: it ends sessions,
// clears the sign-in throttle after a new password, and audits each change.
func (s *Service) afterUserChange(ctx context.Context, u storage.User, ch UserChange, who Actor) error {
	end := ch.Password != nil || (ch.Disabled != nil && *ch.Disabled) || (ch.Admin != nil && !*ch.Admin)
	if end {
		if err := s.endSessions(ctx, u.TenantID, u.ID); err != nil {
			return err
		}
	}
	if ch.Password != nil && u.Email != "" {
		if err := s.store.ClearFailures(ctx, u.TenantID, EmailThrottleKey(u.Email)); err != nil {
			return fmt.Errorf("clear the failed sign-ins of user %q: %w", u.ID, err)
		}
	}
	var events []storage.AuditEvent
	add := func(typ string, details map[string]string) {
		events = append(events, storage.AuditEvent{TenantID: u.TenantID, Time: s.timestamp(), Type: typ, Outcome: "success",
			ActorID: who.ID, Subject: u.ID, SourceIP: who.SourceIP, Details: details})
	}
	if ch.Profiles != nil {
		refs := make([]string, 0, len(u.Profiles))
		for _, p := range u.Profiles {
			refs = append(refs, p.FHIRUser)
		}
		add("admin.user.set_profiles", map[string]string{"profiles": strings.Join(refs, " ")})
	}
	if ch.Admin != nil {
		add("admin.user.set_admin", map[string]string{"admin": fmt.Sprint(*ch.Admin)})
	}
	if ch.Disabled != nil {
		typ := "admin.user.enable"
		if *ch.Disabled {
			typ = "admin.user.disable"
		}
		add(typ, nil)
	}
	if ch.Password != nil {
		add("admin.user.reset_password", nil)
	}
	if _, err := s.store.AppendAudits(ctx, u.TenantID, events); err != nil {
		return fmt.Errorf("record the audit events of a change to user %q: %w", u.ID, err)
	}
	return nil
}

func (s *Service) endSessions(ctx context.Context, tenantID, userID string) error {
	if err := s.store.DeleteUserSessions(ctx, tenantID, userID); err != nil {
		return fmt.Errorf("end the sessions of user %q: %w", userID, err)
	}
	return nil
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

// DeleteUser removes a user with its sessions, consents and identity links
// and deactivates the tokens issued to it; the last enabled operator cannot
// be deleted. The audit event keeps the email, as the id then names no one.
func (s *Service) DeleteUser(ctx context.Context, tenantID, userID string, who Actor) error {
	u, err := s.user(ctx, tenantID, userID)
	if err != nil {
		return err
	}
	err = s.store.DeleteUser(ctx, tenantID, userID)
	if errors.Is(err, storage.ErrLastOperator) {
		return invalid("deleting %s would leave no enabled operator: add or enable another operator first", u.Email)
	}
	if err != nil {
		return fmt.Errorf("delete user %q: %w", userID, err)
	}
	return s.audit(ctx, tenantID, "admin.user.delete", who, u.ID, map[string]string{"email": u.Email})
}
