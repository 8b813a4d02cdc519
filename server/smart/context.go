package smart

// Available is the launch context a grant has once the person has signed
// in, chosen a role and, where asked, a patient: it decides which of the
// scopes they approved can actually be granted.
type Available struct {
	// EHRLaunch means the request carried a launch value an EHR created.
	EHRLaunch bool
	// Patient and Encounter mean the grant is bound to one of each.
	Patient   bool
	Encounter bool
	// FHIRUser means the person acts as a FHIR profile (Practitioner/…, Patient/…).
	FHIRUser bool
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
// fhirUser needs a profile. Scopes that do not parse are kept: the caller
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
		if s.Context == "patient" && !a.Patient {
			return "No patient is selected, so patient-level access cannot be given."
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
		if !a.FHIRUser {
			return "Your account has no FHIR identity to share."
		}
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
