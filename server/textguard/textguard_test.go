package textguard

import (
	"net/url"
	"testing"
)

func TestValid(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"", true},
		{"dr.grey@clinic.example", true},
		{"Zoë Ångström 山田", true},
		{"patient/Observation.rs?code=http://loinc.org|1234-5", true},
		{"a\x00b", false},
		{"\x00", false},
		{"caf\xe9", false},      // Latin-1, not UTF-8
		{"\xff\xfe", false},     // never valid in UTF-8
		{"\xed\xa0\x80", false}, // a UTF-16 surrogate encoded as UTF-8
		{"\xc0\xaf", false},     // an overlong encoding of '/'
		{"tab\tand\nnewline", true},
	} {
		if got := Valid(tc.in); got != tc.want {
			t.Errorf("Valid(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestValidValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   url.Values
		want bool
	}{
		{"empty", url.Values{}, true},
		{"text", url.Values{"client_id": {"app"}, "scope": {"openid", "fhirUser"}}, true},
		{"NUL in a value", url.Values{"client_id": {"app\x00"}}, false},
		{"bad UTF-8 in a later value", url.Values{"scope": {"openid", "\xff"}}, false},
		{"bad UTF-8 in a name", url.Values{"client\xff": {"app"}}, false},
		{"NUL in a name", url.Values{"\x00": {""}}, false},
	} {
		if got := ValidValues(tc.in); got != tc.want {
			t.Errorf("%s: ValidValues = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestValidJSON(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{`{"email":"dr.grey@clinic.example"}`, true},
		{`{"email":"a\u0000b"}`, false},
		{`{"a\u0000":1}`, false},
		{`{"profiles":[{"fhir_user":"Patient/\u0000"}]}`, false},
		{`{"note":"a backslash then u0000: \\u0000"}`, true},
		{"{\"name\":\"caf\xe9\"}", true}, // decoded as U+FFFD
		{`not JSON \u0000`, true},        // the decoder refuses it
		{``, true},
	} {
		if got := ValidJSON([]byte(tc.in)); got != tc.want {
			t.Errorf("ValidJSON(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
