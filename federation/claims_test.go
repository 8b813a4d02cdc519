package federation

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/smartauth/smartauth/storage"
)

func TestMapClaims(t *testing.T) {
	cognito := storage.ClaimMapping{TenantClaim: "custom:tenant_id", PatientClaim: "custom:patient_id"}
	okta := storage.ClaimMapping{
		FHIRUserClaim: "fhirUser",
		GroupsClaim:   "groups",
		GroupRoles:    map[string]string{"Doctors": "Attending physician", "Nurses": "Nurse", "ICU": "Nurse"},
	}
	tests := []struct {
		name    string
		mapping storage.ClaimMapping
		claims  map[string]any
		want    Mapped
		reason  Reason
	}{
		{"no mapping", storage.ClaimMapping{}, map[string]any{"sub": "x"}, Mapped{}, ""},
		{"cognito patient", cognito, map[string]any{"custom:tenant_id": "acme", "custom:patient_id": "p-1"},
			Mapped{FHIRUser: "Patient/p-1", Patient: "p-1"}, ""},
		{"patient id given as a reference", cognito, map[string]any{"custom:tenant_id": "acme", "custom:patient_id": "Patient/p.2"},
			Mapped{FHIRUser: "Patient/p.2", Patient: "p.2"}, ""},
		{"cognito without patient", cognito, map[string]any{"custom:tenant_id": "acme"}, Mapped{}, ""},
		{"tenant claim absent", cognito, map[string]any{"custom:patient_id": "p-1"}, Mapped{}, ReasonTenantMissing},
		{"tenant claim empty", cognito, map[string]any{"custom:tenant_id": ""}, Mapped{}, ReasonTenantMissing},
		{"tenant claim null", cognito, map[string]any{"custom:tenant_id": nil}, Mapped{}, ReasonTenantMissing},
		{"another tenant", cognito, map[string]any{"custom:tenant_id": "other"}, Mapped{}, ReasonTenantMismatch},
		{"tenant differs in case", cognito, map[string]any{"custom:tenant_id": "ACME"}, Mapped{}, ReasonTenantMismatch},
		{"tenant with a space", cognito, map[string]any{"custom:tenant_id": "acme "}, Mapped{}, ReasonTenantMismatch},
		{"tenant claim a number", cognito, map[string]any{"custom:tenant_id": 7.0}, Mapped{}, ReasonBadClaim},
		{"tenant claim a list", cognito, map[string]any{"custom:tenant_id": []any{"acme"}}, Mapped{}, ReasonBadClaim},
		{"patient id with a slash", cognito, map[string]any{"custom:tenant_id": "acme", "custom:patient_id": "a/b"}, Mapped{}, ReasonBadClaim},
		{"patient id too long", cognito, map[string]any{"custom:tenant_id": "acme", "custom:patient_id": strings.Repeat("a", 65)}, Mapped{}, ReasonBadClaim},
		{"patient id a number", cognito, map[string]any{"custom:tenant_id": "acme", "custom:patient_id": 12.0}, Mapped{}, ReasonBadClaim},
		// Cognito sends an unset custom attribute as "": a clinician without a patient record.
		{"patient id empty", cognito, map[string]any{"custom:tenant_id": "acme", "custom:patient_id": ""}, Mapped{}, ""},
		{"patient id blank but fhirUser given",
			storage.ClaimMapping{PatientClaim: "pid", FHIRUserClaim: "fhirUser"}, map[string]any{"pid": "", "fhirUser": "Practitioner/9"},
			Mapped{FHIRUser: "Practitioner/9"}, ""},
		{"patient id a space", cognito, map[string]any{"custom:tenant_id": "acme", "custom:patient_id": " "}, Mapped{}, ReasonBadClaim},
		{"okta practitioner in two groups", okta, map[string]any{"fhirUser": "Practitioner/7", "groups": []any{"Nurses", "Doctors", "Everyone", "ICU"}},
			Mapped{FHIRUser: "Practitioner/7", Roles: []string{"Attending physician", "Nurse"}}, ""},
		{"single group as a string", okta, map[string]any{"groups": "Doctors"}, Mapped{Roles: []string{"Attending physician"}}, ""},
		{"no groups", okta, map[string]any{"fhirUser": "PractitionerRole/r1"}, Mapped{FHIRUser: "PractitionerRole/r1"}, ""},
		{"group names are case-sensitive", okta, map[string]any{"groups": []any{"doctors"}}, Mapped{}, ""},
		{"groups holding a number", okta, map[string]any{"groups": []any{"Doctors", 3.0}}, Mapped{}, ReasonBadClaim},
		{"groups an object", okta, map[string]any{"groups": map[string]any{"a": "b"}}, Mapped{}, ReasonBadClaim},
		{"fhirUser of a patient", okta, map[string]any{"fhirUser": "Patient/9"}, Mapped{FHIRUser: "Patient/9", Patient: "9"}, ""},
		{"fhirUser of a wrong type", okta, map[string]any{"fhirUser": "Observation/9"}, Mapped{}, ReasonBadClaim},
		{"fhirUser absolute", okta, map[string]any{"fhirUser": "https://fhir.example/Practitioner/9"}, Mapped{}, ReasonBadClaim},
		{"fhirUser empty", okta, map[string]any{"fhirUser": "", "groups": []any{"Nurses"}}, Mapped{Roles: []string{"Nurse"}}, ""},
		{"groups empty string", okta, map[string]any{"fhirUser": "Practitioner/7", "groups": ""}, Mapped{FHIRUser: "Practitioner/7"}, ""},
		{"groups empty list", okta, map[string]any{"groups": []any{}}, Mapped{}, ""},
		{"groups holding an empty name", okta, map[string]any{"groups": []any{"", "Doctors"}}, Mapped{Roles: []string{"Attending physician"}}, ""},
		{"fhirUser without id", okta, map[string]any{"fhirUser": "Practitioner/"}, Mapped{}, ReasonBadClaim},
		{"patient and fhirUser agree",
			storage.ClaimMapping{PatientClaim: "pid", FHIRUserClaim: "fhirUser"}, map[string]any{"pid": "9", "fhirUser": "Patient/9"},
			Mapped{FHIRUser: "Patient/9", Patient: "9"}, ""},
		{"patient and fhirUser disagree",
			storage.ClaimMapping{PatientClaim: "pid", FHIRUserClaim: "fhirUser"}, map[string]any{"pid": "9", "fhirUser": "Practitioner/9"},
			Mapped{}, ReasonBadClaim},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MapClaims("acme", tc.mapping, tc.claims)
			if tc.reason != "" {
				var re *RefusalError
				if !errors.As(err, &re) || re.Reason != tc.reason {
					t.Fatalf("MapClaims: got %v, %v; want refusal %q", got, err, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("MapClaims: %v", err)
			}
			if got.FHIRUser != tc.want.FHIRUser || got.Patient != tc.want.Patient || !slices.Equal(got.Roles, tc.want.Roles) {
				t.Fatalf("MapClaims = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestRefusalErrorClipsHostileValues(t *testing.T) {
	_, err := MapClaims("acme", storage.ClaimMapping{TenantClaim: "t"}, map[string]any{"t": strings.Repeat("é", 1000)})
	if err == nil || len(err.Error()) > 400 {
		t.Fatalf("error not clipped: %d bytes", len(err.Error()))
	}
}

func FuzzMapClaims(f *testing.F) {
	f.Add("acme", "p-1", "Practitioner/7", "Doctors")
	f.Add("other", "a/b", "Patient/", "")
	f.Add("", "", "Observation/1", "Nurses")
	mapping := storage.ClaimMapping{
		TenantClaim: "tid", PatientClaim: "pid", FHIRUserClaim: "fu", GroupsClaim: "groups",
		GroupRoles: map[string]string{"Doctors": "Doctor", "Nurses": "Nurse"},
	}
	f.Fuzz(func(t *testing.T, tenant, patient, fhirUser, group string) {
		claims := map[string]any{"tid": tenant, "pid": patient, "fu": fhirUser, "groups": []any{group}}
		got, err := MapClaims("acme", mapping, claims)
		if err != nil {
			var re *RefusalError
			if !errors.As(err, &re) || re.Reason == "" {
				t.Fatalf("error %v is not a refusal with a reason", err)
			}
			return
		}
		// Whatever was accepted came from this tenant and names a valid reference.
		if tenant != "acme" {
			t.Fatalf("accepted tenant claim %q for acme", tenant)
		}
		typ, id, ok := strings.Cut(got.FHIRUser, "/")
		if !ok || !slices.Contains(fhirUserTypes, typ) || !fhirID.MatchString(id) {
			t.Fatalf("fhirUser %q is not a valid reference", got.FHIRUser)
		}
		if got.Patient != "" && got.FHIRUser != "Patient/"+got.Patient {
			t.Fatalf("patient %q disagrees with fhirUser %q", got.Patient, got.FHIRUser)
		}
		for _, r := range got.Roles {
			if r != "Doctor" && r != "Nurse" {
				t.Fatalf("role %q comes from no mapping", r)
			}
		}
	})
}
