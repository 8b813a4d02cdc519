package smart

import "strings"

// Role is who a person acts as once signed in: the FHIR resource type of
// the profile they chose (the part of fhirUser before the slash), or
// RoleNone for a person without one. It is not the role of a launch
// context scope (Scope.Role).
type Role string

// The roles a profile may give. Only the clinician roles reach user/
// scopes; any other resource type is no clinician either.
const (
	RoleNone             Role = ""
	RolePatient          Role = "Patient"
	RoleRelatedPerson    Role = "RelatedPerson"
	RolePractitioner     Role = "Practitioner"
	RolePractitionerRole Role = "PractitionerRole"
	RolePerson           Role = "Person"
)

// RoleOf is the role of a profile reference such as "Practitioner/123".
func RoleOf(fhirUser string) Role {
	typ, _, _ := strings.Cut(fhirUser, "/")
	return Role(typ)
}

// Clinician reports whether the role acts for an organization's staff, who
// see what their account may see rather than one patient's record.
func (r Role) Clinician() bool {
	return r == RolePractitioner || r == RolePractitionerRole
}

// Available is the launch context a grant has once the person has signed
// in, chosen a role and, where asked, a patient: it decides which of the
// scopes they approved can actually be granted.
type Available struct {
	// EHRLaunch means the request carried a launch value an EHR created.
	EHRLaunch bool
	// Patient and Encounter mean the grant is bound to one of each.
	Patient   bool
	Encounter bool
	// Role is the profile the person acts as; RoleNone means they have no
	// FHIR identity to share.
	Role Role
}

// Refusal is a scope left out for want of context, with the reason in
// words a person can read on the consent page.
type Refusal struct {
	Scope  string
	Reason string
}

// Contextual keeps the scopes the context can back and drops the others.
// A patient-level resource scope means nothing without a patient, so it is
// never granted without one; launch needs an EHR launch; launch/patient and
// launch/encounter need the patient or encounter they ask for; other
// launch context types (launch/diagnosticreport…) only come from an EHR;
// fhirUser needs a profile. The role limits the rest: user/ scopes are for
// clinicians (Practitioner, PractitionerRole), since for anyone else they
// would reach beyond the one record that is theirs to share, so a patient,
// a related person or someone without a clinician profile gets patient/
// scopes only; system/ scopes are for backend services (see ForBackend),
// never for a person. Scopes that do not parse are kept: the caller
// has already checked them against the client's registration, and a custom
// scope needs no clinical context.
func Contextual(scopes []string, a Available) (kept []string, refused []Refusal) {
	for _, raw := range scopes {
		s, err := Parse(raw)
		if err != nil {
			kept = append(kept, raw)
			continue
		}
		if reason := missingContext(s, a); reason != "" {
			refused = append(refused, Refusal{Scope: raw, Reason: reason})
			continue
		}
		kept = append(kept, raw)
	}
	return kept, refused
}

func missingContext(s Scope, a Available) string {
	switch s.Kind {
	case KindResource:
		switch s.Context {
		case "patient":
			if !a.Patient {
				return "No patient is selected, so patient-level access cannot be given."
			}
		case "user":
			switch {
			case a.Role.Clinician():
			case a.Role == RolePatient || a.Role == RoleRelatedPerson:
				return "You are acting for a patient, so the app may see that patient's record only, not everything your account can reach."
			default:
				return "Access to everything your account can reach is only for clinicians, and you are not acting as one."
			}
		case "system":
			return "System-wide access is only for backend services, never for a person signing in."
		}
	case KindLaunch:
		if !a.EHRLaunch {
			return "The app was not opened from a health record system."
		}
	case KindLaunchContext:
		switch s.ResourceType {
		case "patient":
			if !a.Patient {
				return "No patient is selected."
			}
		case "encounter":
			if !a.Encounter {
				return "No encounter can be chosen when the app is opened on its own."
			}
		default:
			if !a.EHRLaunch {
				return "This context can only come from a health record system."
			}
		}
	case KindFHIRUser:
		if a.Role == RoleNone {
			return "Your account has no FHIR identity to share."
		}
	}
	return ""
}

// ForBackend keeps the scopes a backend service may hold and refuses the
// others. A backend service (the client_credentials grant) acts as itself:
// nobody signs in, no patient is chosen and no EHR launches it. So it may
// hold system/ scopes and scopes outside SMART, but no patient/ or user/
// scope, no launch context, no identity (openid, fhirUser, profile) and no
// refresh token (offline_access, online_access). A scope that does not
// parse is refused too, as nothing here can vouch for it.
func ForBackend(scopes []string) (kept []string, refused []Refusal) {
	for _, raw := range scopes {
		if reason := notForBackend(raw); reason != "" {
			refused = append(refused, Refusal{Scope: raw, Reason: reason})
			continue
		}
		kept = append(kept, raw)
	}
	return kept, refused
}

func notForBackend(raw string) string {
	s, err := Parse(raw)
	if err != nil {
		return err.Error()
	}
	switch s.Kind {
	case KindResource:
		switch s.Context {
		case "patient":
			return "patient-level access needs a patient in context, and a backend service has none"
		case "user":
			return "user-level access needs a person signed in, and a backend service acts as itself"
		}
	case KindLaunch, KindLaunchContext:
		return "launch context comes with a person opening an app, never to a backend service"
	case KindOpenID, KindFHIRUser, KindProfile:
		return "identity scopes describe a person signed in, and a backend service acts as itself"
	case KindOfflineAccess, KindOnlineAccess:
		return "a backend service gets no refresh token; it asks for a new access token instead"
	}
	return ""
}

// Essential reports whether a scope is part of how the app works rather
// than data the person may hold back: signing in (openid) and the launch
// context it was opened with. The consent page shows these without a
// choice; the person can still deny the whole request.
func Essential(raw string) bool {
	s, err := Parse(raw)
	if err != nil {
		return false
	}
	return s.Kind == KindOpenID || s.Kind == KindLaunch || s.Kind == KindLaunchContext
}

// WantsPatient reports whether a request asks for a patient to be chosen
// at launch (launch/patient).
func WantsPatient(requested []string) bool {
	for _, raw := range requested {
		if s, err := Parse(raw); err == nil && s.Kind == KindLaunchContext && s.ResourceType == "patient" {
			return true
		}
	}
	return false
}
