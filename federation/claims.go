package federation

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/smartauth/smartauth/storage"
)

// Mapped is what an identity provider's claims say about a person at a tenant.
type Mapped struct {
	// FHIRUser is a relative reference such as "Patient/123"; empty when no claim gives one.
	FHIRUser string
	// Patient is the patient id when the person signs in as that patient.
	Patient string
	// Roles are the role labels given by the person's groups, sorted, without repeats.
	Roles []string
}

// fhirID is the FHIR id grammar: 1 to 64 letters, digits, '-' and '.'.
var fhirID = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// fhirUserTypes are the resource types SMART allows for fhirUser.
var fhirUserTypes = []string{"Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "Person"}

// present reports whether a claim carries a value. Providers such as Cognito
// send a custom attribute nobody filled in as "", so an empty string (or
// an empty list) means the same as an absent claim: a clinician whose
// patient attribute is blank has no patient record, not a bad one.
func present(claims map[string]any, name string) (any, bool) {
	v, ok := claims[name]
	switch v := v.(type) {
	case nil:
		return nil, false
	case string:
		return v, v != ""
	case []any:
		return v, len(v) > 0
	case []string:
		return v, len(v) > 0
	}
	return v, ok
}

// MapClaims applies a provider's claim mapping to the claims of a verified
// ID token for a sign-in to tenantID. It refuses, with a *RefusalError, a
// tenant claim that is absent or names another tenant, and a patient,
// fhirUser or groups claim whose value cannot be used, rather than guess.
func MapClaims(tenantID string, m storage.ClaimMapping, claims map[string]any) (Mapped, error) {
	var out Mapped
	if m.TenantClaim != "" {
		v, ok := present(claims, m.TenantClaim)
		if !ok {
			return Mapped{}, Refuse(ReasonTenantMissing, nil, "claim %q is absent", m.TenantClaim)
		}
		s, ok := v.(string)
		if !ok {
			return Mapped{}, Refuse(ReasonBadClaim, nil, "claim %q is not a string", m.TenantClaim)
		}
		// Exact comparison: a tenant id is a case-sensitive slug, and a
		// looser match could let one clinic's users into another.
		if s != tenantID {
			return Mapped{}, Refuse(ReasonTenantMismatch, nil, "claim %q names tenant %q, not %q", m.TenantClaim, clip(s), tenantID)
		}
	}
	if m.PatientClaim != "" {
		if v, ok := present(claims, m.PatientClaim); ok {
			s, ok := v.(string)
			// Some providers prefix the id with its type; accept that form too.
			s = strings.TrimPrefix(s, "Patient/")
			if !ok || !fhirID.MatchString(s) {
				return Mapped{}, Refuse(ReasonBadClaim, nil, "claim %q is not a FHIR Patient id", m.PatientClaim)
			}
			out.Patient, out.FHIRUser = s, "Patient/"+s
		}
	}
	if m.FHIRUserClaim != "" {
		if v, ok := present(claims, m.FHIRUserClaim); ok {
			s, _ := v.(string)
			typ, id, found := strings.Cut(s, "/")
			if !found || !slices.Contains(fhirUserTypes, typ) || !fhirID.MatchString(id) {
				return Mapped{}, Refuse(ReasonBadClaim, nil, "claim %q is not a relative reference to a %s", m.FHIRUserClaim, strings.Join(fhirUserTypes, ", "))
			}
			if out.FHIRUser != "" && out.FHIRUser != s {
				return Mapped{}, Refuse(ReasonBadClaim, nil, "claims %q and %q name different people", m.PatientClaim, m.FHIRUserClaim)
			}
			out.FHIRUser = s
			if typ == "Patient" {
				out.Patient = id
			}
		}
	}
	if m.GroupsClaim != "" {
		v, _ := present(claims, m.GroupsClaim)
		groups, err := stringList(v)
		if err != nil {
			return Mapped{}, Refuse(ReasonBadClaim, err, "claim %q", m.GroupsClaim)
		}
		for _, g := range groups {
			if role, ok := m.GroupRoles[g]; ok && role != "" && !slices.Contains(out.Roles, role) {
				out.Roles = append(out.Roles, role)
			}
		}
		slices.Sort(out.Roles)
	}
	return out, nil
}

// stringList reads a claim that lists strings: a JSON array of strings, or
// one string (some providers send a single group that way). Absent is empty.
func stringList(v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		if v == "" {
			return nil, nil
		}
		return []string{v}, nil
	case []string:
		return v, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("holds a %T, not a string", e)
			}
			if s != "" {
				out = append(out, s)
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("is a %T, not a list of strings", v)
	}
}

// clip shortens a value quoted in an error, so a hostile claim cannot flood the audit trail.
func clip(s string) string {
	if r := []rune(s); len(r) > 64 {
		return string(r[:64]) + "…"
	}
	return s
}
