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
			[]string{"fhirUser", "launch", "launch/patient", "launch/encounter", "launch/diagnosticreport", "patient/Observation.rs", "patient/*.read"}},
		{"standalone clinician with patient", Available{Patient: true, FHIRUser: true},
			[]string{"launch", "launch/encounter", "launch/diagnosticreport"}},
		{"ehr launch with patient and encounter", Available{EHRLaunch: true, Patient: true, Encounter: true, FHIRUser: true},
			nil},
		{"ehr launch without patient", Available{EHRLaunch: true, FHIRUser: true},
			[]string{"launch/patient", "launch/encounter", "patient/Observation.rs", "patient/*.read"}},
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
	f.Add("patient/Observation.rs launch/patient", true, false)
	f.Add("launch launch/encounter", false, true)
	f.Fuzz(func(t *testing.T, scopes string, patient, ehr bool) {
		in := strings.Fields(scopes)
		kept, refused := Contextual(in, Available{Patient: patient, EHRLaunch: ehr})
		if len(kept)+len(refused) != len(in) {
			t.Fatalf("lost scopes: %d + %d != %d", len(kept), len(refused), len(in))
		}
		if !patient {
			for _, k := range kept {
				if s, err := Parse(k); err == nil && s.Kind == KindResource && s.Context == "patient" {
					t.Fatalf("patient scope %q kept without a patient", k)
				}
			}
		}
	})
}
