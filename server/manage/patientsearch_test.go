package manage

import (
	"errors"
	"testing"
)

func TestValidatePatientSearch(t *testing.T) {
	good := PatientSearchInput{FHIRBaseURL: "https://fhir.example/r4/", TokenURL: "https://auth.example/token",
		ClientID: "picker", ClientSecret: "s3cret", Scope: "  system/Patient.rs   system/Patient.s "}
	src, err := validatePatientSearch(good)
	if err != nil {
		t.Fatal(err)
	}
	if src.FHIRBaseURL != "https://fhir.example/r4" || src.Scope != "system/Patient.rs system/Patient.s" || src.ClientSecretSealed != "" {
		t.Fatalf("normalized to %+v", src)
	}
	tests := []struct {
		name   string
		change func(*PatientSearchInput)
		ok     bool
	}{
		{"http on loopback", func(in *PatientSearchInput) {
			in.FHIRBaseURL, in.TokenURL = "http://127.0.0.1:8080/fhir", "http://localhost:9000/token"
		}, true},
		{"token URL with a query", func(in *PatientSearchInput) { in.TokenURL += "?tenant=1" }, true},
		{"no scope", func(in *PatientSearchInput) { in.Scope = "" }, true},
		{"http elsewhere", func(in *PatientSearchInput) { in.FHIRBaseURL = "http://fhir.example/r4" }, false},
		{"http token URL elsewhere", func(in *PatientSearchInput) { in.TokenURL = "http://auth.example/token" }, false},
		{"relative", func(in *PatientSearchInput) { in.FHIRBaseURL = "/r4" }, false},
		{"other scheme", func(in *PatientSearchInput) { in.TokenURL = "ftp://auth.example/token" }, false},
		{"user info", func(in *PatientSearchInput) { in.FHIRBaseURL = "https://u:p@fhir.example/r4" }, false},
		{"base with a query", func(in *PatientSearchInput) { in.FHIRBaseURL = "https://fhir.example/r4?x=1" }, false},
		{"fragment", func(in *PatientSearchInput) { in.TokenURL = "https://auth.example/token#x" }, false},
		{"no client id", func(in *PatientSearchInput) { in.ClientID = " " }, false},
		{"no secret", func(in *PatientSearchInput) { in.ClientSecret = "" }, false},
		{"control character in secret", func(in *PatientSearchInput) { in.ClientSecret = "a\nb" }, false},
		{"bad scope", func(in *PatientSearchInput) { in.Scope = `system/"x"` }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := good
			tc.change(&in)
			_, err := validatePatientSearch(in)
			if (err == nil) != tc.ok {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}
