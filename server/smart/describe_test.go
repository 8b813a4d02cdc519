package smart

import "testing"

func TestDescribe(t *testing.T) {
	tests := []struct{ in, want string }{
		{"patient/Observation.rs", "Read and search observation records for the current patient"},
		{"patient/Observation.read", "Read and search observation records for the current patient"},
		{"patient/Observation.rs?category=" + lab, "Read and search observation records for the current patient (only where category is laboratory)"},
		{"patient/Observation.rs?category=laboratory,vital-signs&status=final", "Read and search observation records for the current patient (only where category is laboratory or vital-signs and status is final)"},
		{"patient/Observation.rs?code=http://loinc.org|", "Read and search observation records for the current patient (only where code is http://loinc.org)"},
		{"patient/*.cruds", "Create, read, update, delete and search all kinds of records for the current patient, including kinds added later"},
		{"user/AllergyIntolerance.cud", "Create, update and delete allergy intolerance records that you can access"},
		{"user/*.write", "Create, update and delete all kinds of records that you can access, including kinds added later"},
		{"system/Observation.s", "Search observation records across the whole system"},
		{"launch", "Learn what you had open when you started it (such as the current patient)"},
		{"launch/patient", "Know which patient is selected"},
		{"launch/encounter", "Know which encounter (visit) is selected"},
		{"launch/list?role=https://x.org/home", "Know which list is selected for the role https://x.org/home"},
		{"openid", "Confirm who you are when you sign in"},
		{"fhirUser", "Know who you are (your FHIR identity)"},
		{"profile", "See your name and basic profile"},
		{"offline_access", "Stay signed in: get new tokens while you are away (offline)"},
		{"online_access", "Keep access while you stay signed in: get new tokens until you sign out (online)"},
		{"__photo.manage", "Other permission: __photo.manage"},
	}
	for _, tt := range tests {
		s, err := Parse(tt.in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.in, err)
		}
		if got := Describe(s); got != tt.want {
			t.Errorf("Describe(%q) =\n %q, want\n %q", tt.in, got, tt.want)
		}
	}
}
