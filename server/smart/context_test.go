package smart

import (
	"slices"
	"strings"
	"testing"
)

func TestContextual(t *testing.T) {
	all := []string{"openid", "fhirUser", "launch", "launch/patient", "launch/encounter", "launch/diagnosticreport",
		"patient/Observation.rs", "patient/*.read", "user/Patient.rs", "system/*.rs", "offline_access", "__custom"}
	cases := []struct {
		name    string
		avail   Available
		refused []string
	}{
		{"nothing", Available{},
			[]string{"fhirUser", "launch", "launch/patient", "launch/encounter", "launch/diagnosticreport", "patient/Observation.rs", "patient/*.read",
				"user/Patient.rs", "system/*.rs"}},
		{"standalone clinician with patient", Available{Patient: true, Role: RolePractitioner},
			[]string{"launch", "launch/encounter", "launch/diagnosticreport", "system/*.rs"}},
		{"ehr launch with patient and encounter", Available{EHRLaunch: true, Patient: true, Encounter: true, Role: RolePractitioner},
			[]string{"system/*.rs"}},
		{"ehr launch without patient", Available{EHRLaunch: true, Role: RolePractitioner},
			[]string{"launch/patient", "launch/encounter", "patient/Observation.rs", "patient/*.read", "system/*.rs"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			kept, refused := Contextual(all, c.avail)
			var got []string
			for _, r := range refused {
				if r.Reason == "" {
					t.Errorf("%s refused without a reason", r.Scope)
				}
				got = append(got, r.Scope)
			}
			if !slices.Equal(got, c.refused) {
				t.Errorf("refused %q, want %q", got, c.refused)
			}
			if len(kept)+len(refused) != len(all) {
				t.Errorf("kept %d + refused %d != %d requested", len(kept), len(refused), len(all))
			}
			for _, k := range kept {
				if slices.Contains(c.refused, k) {
					t.Errorf("%s both kept and refused", k)
				}
			}
		})
	}
}

// TestContextualByRole: the role a person acts as limits the resource
// scopes. Every case has an EHR launch with a patient and an encounter, so
// only the role decides.
func TestContextualByRole(t *testing.T) {
	const granular = "user/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
	requested := []string{"openid", "fhirUser", "profile", "launch", "launch/patient", "offline_access", "__custom",
		"patient/Observation.rs", "patient/*.read", "user/Patient.rs", "user/*.cruds", granular, "system/*.rs", "system/Patient.read"}
	users := []string{"user/Patient.rs", "user/*.cruds", granular}
	systems := []string{"system/*.rs", "system/Patient.read"}
	cases := []struct {
		role    Role
		refused []string
	}{
		{RolePatient, slices.Concat(users, systems)},
		{RoleRelatedPerson, slices.Concat(users, systems)},
		{RolePractitioner, systems},
		{RolePractitionerRole, systems},
		{RolePerson, slices.Concat(users, systems)},
		{RoleNone, slices.Concat([]string{"fhirUser"}, users, systems)},
		{Role("Device"), slices.Concat(users, systems)},
	}
	for _, c := range cases {
		t.Run(string(c.role), func(t *testing.T) {
			kept, refused := Contextual(requested, Available{EHRLaunch: true, Patient: true, Encounter: true, Role: c.role})
			var got []string
			for _, r := range refused {
				if r.Reason == "" {
					t.Errorf("%s refused without a reason", r.Scope)
				}
				got = append(got, r.Scope)
			}
			if !slices.Equal(got, c.refused) {
				t.Errorf("refused %q, want %q", got, c.refused)
			}
			want := slices.DeleteFunc(slices.Clone(requested), func(s string) bool { return slices.Contains(c.refused, s) })
			if !slices.Equal(kept, want) {
				t.Errorf("kept %q, want %q", kept, want)
			}
		})
	}
}

func TestRoleOf(t *testing.T) {
	for ref, want := range map[string]Role{
		"Practitioner/123": RolePractitioner, "PractitionerRole/9": RolePractitionerRole, "Patient/456": RolePatient,
		"RelatedPerson/5": RoleRelatedPerson, "Person/7": RolePerson, "": RoleNone,
	} {
		if got := RoleOf(ref); got != want {
			t.Errorf("RoleOf(%q) = %q, want %q", ref, got, want)
		}
	}
}

func TestForBackend(t *testing.T) {
	cases := []struct {
		scope string
		kept  bool
	}{
		{"system/*.rs", true},
		{"system/Observation.read", true},
		{"system/Observation.rs?category=laboratory", true},
		{"admin", true},
		{"__custom", true},
		{"patient/*.read", false},
		{"patient/Observation.rs", false},
		{"user/*.rs", false},
		{"launch", false},
		{"launch/patient", false},
		{"launch/encounter", false},
		{"openid", false},
		{"fhirUser", false},
		{"profile", false},
		{"offline_access", false},
		{"online_access", false},
		{"system/Observation.bogus", false},
	}
	for _, c := range cases {
		kept, refused := ForBackend([]string{c.scope})
		if got := len(kept) == 1; got != c.kept || len(kept)+len(refused) != 1 {
			t.Errorf("ForBackend(%q): kept %q refused %v, want kept %v", c.scope, kept, refused, c.kept)
		}
		if len(refused) == 1 && refused[0].Reason == "" {
			t.Errorf("ForBackend(%q) refused without a reason", c.scope)
		}
	}
}

func TestEssentialAndWantsPatient(t *testing.T) {
	for sc, want := range map[string]bool{
		"openid": true, "launch": true, "launch/patient": true, "launch/encounter": true,
		"fhirUser": false, "patient/*.rs": false, "offline_access": false, "bad scope": false,
	} {
		if got := Essential(sc); got != want {
			t.Errorf("Essential(%q) = %v, want %v", sc, got, want)
		}
	}
	if !WantsPatient([]string{"openid", "launch/patient"}) {
		t.Error("launch/patient not seen")
	}
	if WantsPatient([]string{"launch", "patient/*.rs", "launch/encounter"}) {
		t.Error("patient wanted without launch/patient")
	}
}

func FuzzContextual(f *testing.F) {
	f.Add("patient/Observation.rs launch/patient", true, false, "Practitioner")
	f.Add("launch launch/encounter user/*.rs", false, true, "Patient")
	f.Add("system/*.rs user/Observation.read", true, true, "")
	f.Fuzz(func(t *testing.T, scopes string, patient, ehr bool, role string) {
		in := strings.Fields(scopes)
		r := Role(role)
		kept, refused := Contextual(in, Available{Patient: patient, EHRLaunch: ehr, Role: r})
		if len(kept)+len(refused) != len(in) {
			t.Fatalf("lost scopes: %d + %d != %d", len(kept), len(refused), len(in))
		}
		for _, k := range kept {
			s, err := Parse(k)
			if err != nil || s.Kind != KindResource {
				continue
			}
			switch {
			case s.Context == "patient" && !patient:
				t.Fatalf("patient scope %q kept without a patient", k)
			case s.Context == "user" && !r.Clinician():
				t.Fatalf("user scope %q kept for role %q", k, role)
			case s.Context == "system":
				t.Fatalf("system scope %q kept for a person", k)
			}
		}
		backend, _ := ForBackend(in)
		for _, k := range backend {
			if s, err := Parse(k); err != nil || s.Kind != KindOther && !(s.Kind == KindResource && s.Context == "system") {
				t.Fatalf("backend kept %q", k)
			}
		}
	})
}
