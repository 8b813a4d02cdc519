package smart

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

const lab = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"

func TestParseValid(t *testing.T) {
	tests := []struct {
		in   string
		want Scope
	}{
		// v1
		{"patient/Observation.read", Scope{Kind: KindResource, Context: "patient", ResourceType: "Observation", Perms: PermRead | PermSearch, Version: 1}},
		{"user/*.write", Scope{Kind: KindResource, Context: "user", ResourceType: "*", Perms: PermCreate | PermUpdate | PermDelete, Version: 1}},
		{"system/*.*", Scope{Kind: KindResource, Context: "system", ResourceType: "*", Perms: PermAll, Version: 1}},
		{"patient/Patient.*", Scope{Kind: KindResource, Context: "patient", ResourceType: "Patient", Perms: PermAll, Version: 1}},
		// v2
		{"patient/Observation.rs", Scope{Kind: KindResource, Context: "patient", ResourceType: "Observation", Perms: PermRead | PermSearch, Version: 2}},
		{"user/*.cruds", Scope{Kind: KindResource, Context: "user", ResourceType: "*", Perms: PermAll, Version: 2}},
		{"system/*.rs", Scope{Kind: KindResource, Context: "system", ResourceType: "*", Perms: PermRead | PermSearch, Version: 2}},
		{"patient/Observation.c", Scope{Kind: KindResource, Context: "patient", ResourceType: "Observation", Perms: PermCreate, Version: 2}},
		{"system/Encounter.cud", Scope{Kind: KindResource, Context: "system", ResourceType: "Encounter", Perms: PermCreate | PermUpdate | PermDelete, Version: 2}},
		{"user/AllergyIntolerance.ds", Scope{Kind: KindResource, Context: "user", ResourceType: "AllergyIntolerance", Perms: PermDelete | PermSearch, Version: 2}},
		// granular: dots, slashes, colons and pipes in values
		{"patient/Observation.rs?category=" + lab, Scope{Kind: KindResource, Context: "patient", ResourceType: "Observation", Perms: PermRead | PermSearch, Version: 2,
			Query: url.Values{"category": {lab}}}},
		{"patient/Observation.rs?category=http%3A%2F%2Fterminology.hl7.org%2FCodeSystem%2Fobservation-category%7Claboratory", Scope{Kind: KindResource, Context: "patient", ResourceType: "Observation", Perms: PermRead | PermSearch, Version: 2,
			Query: url.Values{"category": {lab}}}},
		{"user/Observation.rs?code:in=http://valueset.example.org/ValueSet/diabetes-codes&status=final", Scope{Kind: KindResource, Context: "user", ResourceType: "Observation", Perms: PermRead | PermSearch, Version: 2,
			Query: url.Values{"code:in": {"http://valueset.example.org/ValueSet/diabetes-codes"}, "status": {"final"}}}},
		{"patient/Observation.rs?patient.birthdate=1990", Scope{Kind: KindResource, Context: "patient", ResourceType: "Observation", Perms: PermRead | PermSearch, Version: 2,
			Query: url.Values{"patient.birthdate": {"1990"}}}},
		{"patient/Observation.rs?date=ge2020-01-01T00:00:00%2B01:00", Scope{Kind: KindResource, Context: "patient", ResourceType: "Observation", Perms: PermRead | PermSearch, Version: 2,
			Query: url.Values{"date": {"ge2020-01-01T00:00:00+01:00"}}}},
		{"patient/*.rs?_security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|N", Scope{Kind: KindResource, Context: "patient", ResourceType: "*", Perms: PermRead | PermSearch, Version: 2,
			Query: url.Values{"_security": {"http://terminology.hl7.org/CodeSystem/v3-Confidentiality|N"}}}},
		// launch and identity
		{"launch", Scope{Kind: KindLaunch}},
		{"launch/patient", Scope{Kind: KindLaunchContext, ResourceType: "patient"}},
		{"launch/encounter", Scope{Kind: KindLaunchContext, ResourceType: "encounter"}},
		{"launch/diagnosticreport", Scope{Kind: KindLaunchContext, ResourceType: "diagnosticreport"}},
		{"launch/list?role=https://example.org/med-list-at-home", Scope{Kind: KindLaunchContext, ResourceType: "list", Role: "https://example.org/med-list-at-home"}},
		{"openid", Scope{Kind: KindOpenID}},
		{"fhirUser", Scope{Kind: KindFHIRUser}},
		{"profile", Scope{Kind: KindProfile}},
		{"offline_access", Scope{Kind: KindOfflineAccess}},
		{"online_access", Scope{Kind: KindOnlineAccess}},
		// outside SMART
		{"my-app:custom", Scope{Kind: KindOther}},
		{"__profilePhoto.manage", Scope{Kind: KindOther}},
		{"https://ehr.example.org/scopes/profilePhoto.manage", Scope{Kind: KindOther}},
		{"email", Scope{Kind: KindOther}},
		{"patient", Scope{Kind: KindOther}},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		tt.want.Raw = tt.in
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Parse(%q) =\n %+v, want\n %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []string{
		"",
		"patient/Observation.readrs",          // v1 and v2 mixed
		"patient/Observation.rsread",          // v2 then v1
		"patient/Observation.",                // empty permissions
		"patient/Observation",                 // no permissions at all
		"patient/Observation.sr",              // out of order
		"patient/Observation.rr",              // repeated
		"patient/Observation.dus",             // the specification's own bad example
		"patient/Observation.x",               // unknown letter
		"patient/Observation.Read",            // v1 words are lower case
		"patient/Observation.r.s",             // stray dot
		"patient/Observation.read?a=1",        // query on v1
		"patient/Observation.*?a=1",           // query on v1
		"patient/Observation.rs?",             // empty query
		"patient/Observation.rs?category",     // no '='
		"patient/Observation.rs?=x",           // empty name
		"patient/Observation.rs?a=",           // empty value
		"patient/Observation.rs?a=1&&b=2",     // empty part
		"patient/Observation.rs?a=%zz",        // bad escape
		"patient/Observation.rs?a=%4",         // truncated escape
		"patient/Observation.rs?a=%0A",        // decodes to a control character
		"patient/Observation.rs?a=%FF",        // decodes to invalid UTF-8
		"Patient/Observation.rs",              // context is lower case
		"PATIENT/*.rs",                        // context is lower case
		"patient/observation.rs",              // type is capitalised
		"patient/Obs-ervation.rs",             // type is letters
		"patient/Observation1.rs",             // type is letters
		"patient/.rs",                         // no type
		"patient/",                            // nothing
		"patient/**.rs",                       // double wildcard
		"patient/Observation?category=a.b.rs", // query before permissions
		"launch/",                             // no context type
		"launch/Patient",                      // launch types are lower case
		"launch/patient/x",                    // nested
		"launch/patient?x=1",                  // only role
		"launch/list?role=a&role=b",           // one role per scope
		"launch/list?role=",                   // empty role
		"Launch",                              // case-sensitive
		"OpenID",
		"fhiruser",
		"Offline_Access",
		"patient/Observation.rs category=x", // space
		"patient/Observation.rs?a=\"x\"",    // quote is not an NQCHAR
		"patient/Observation.rs?a=b\\c",     // backslash is not an NQCHAR
		"scopé",                             // non-ASCII
		"a\x00b",
		strings.Repeat("a", MaxLen+1),
	}
	for _, in := range tests {
		got, err := Parse(in)
		if err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", in, got)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) error %v does not wrap ErrInvalid", in, err)
		}
	}
	// A prefix that is not a SMART context is a custom scope, not an error:
	// registrations may hold scopes of other APIs.
	if s, err := Parse("practitioner/*.rs"); err != nil || s.Kind != KindOther {
		t.Errorf(`Parse("practitioner/*.rs") = %+v, %v; want KindOther`, s, err)
	}
}

func TestCanonical(t *testing.T) {
	tests := []struct{ in, want string }{
		{"patient/Observation.read", "patient/Observation.rs"},
		{"user/*.write", "user/*.cud"},
		{"system/*.*", "system/*.cruds"},
		{"patient/Observation.rs", "patient/Observation.rs"},
		{"patient/Observation.rs?category=http%3A%2F%2Fx.org%7Clab", "patient/Observation.rs?category=http://x.org|lab"},
		{"patient/Observation.rs?status=final&category=lab&category=lab", "patient/Observation.rs?category=lab&status=final"},
		{"patient/Observation.rs?date=ge2020%2B01", "patient/Observation.rs?date=ge2020%2B01"},
		{"patient/Observation.rs?note=a+b%26c", "patient/Observation.rs?note=a%20b%26c"},
		{"launch/list?role=https%3A%2F%2Fx.org%2Fhome", "launch/list?role=https://x.org/home"},
		{"openid", "openid"},
		{"__custom", "__custom"},
	}
	for _, tt := range tests {
		s, err := Parse(tt.in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.in, err)
		}
		if got := s.Canonical(); got != tt.want {
			t.Errorf("Parse(%q).Canonical() = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCovers(t *testing.T) {
	tests := []struct {
		s, t string
		want bool
	}{
		{"patient/Observation.rs", "patient/Observation.rs", true},
		{"patient/Observation.rs", "patient/Observation.r", true},
		{"patient/Observation.rs", "patient/Observation.s", true},
		{"patient/Observation.r", "patient/Observation.rs", false},
		{"patient/Observation.rs", "patient/Observation.c", false},
		{"patient/*.rs", "patient/Observation.rs", true},
		{"patient/*.rs", "patient/*.rs", true},
		{"patient/Observation.rs", "patient/*.rs", false},
		{"patient/*.rs", "user/Observation.rs", false},
		{"user/*.cruds", "patient/Observation.r", false},
		{"system/*.cruds", "user/Observation.r", false},
		{"patient/Observation.rs", "patient/Condition.rs", false},
		// v1 and v2 mean the same thing
		{"patient/Observation.read", "patient/Observation.rs", true},
		{"patient/Observation.rs", "patient/Observation.read", true},
		{"patient/*.*", "patient/Observation.cruds", true},
		{"patient/*.write", "patient/Observation.read", false},
		{"patient/*.write", "patient/Observation.cu", true},
		{"patient/Observation.read", "patient/Observation.rs?category=" + lab, true},
		// granular
		{"patient/Observation.rs", "patient/Observation.rs?category=" + lab, true},
		{"patient/*.rs", "patient/Observation.r?category=" + lab, true},
		{"patient/Observation.rs?category=" + lab, "patient/Observation.rs", false},
		{"patient/Observation.rs?category=" + lab, "patient/Observation.rs?category=" + lab, true},
		{"patient/Observation.rs?category=" + lab, "patient/Observation.r?category=" + lab, true},
		{"patient/Observation.r?category=" + lab, "patient/Observation.rs?category=" + lab, false},
		{"patient/Observation.rs?category=" + lab, "patient/Observation.rs?category=vital-signs", false},
		{"patient/Observation.rs?category=" + lab, "patient/Observation.rs?category=" + lab + "&code=1", false},
		{"patient/Observation.rs?category=" + lab + "&code=1", "patient/Observation.rs?category=" + lab, false},
		{"patient/Observation.rs?a=1&b=2", "patient/Observation.rs?b=2&a=1", true},
		{"patient/Observation.rs?category=a%7Cb", "patient/Observation.rs?category=a|b", true},
		{"patient/*.rs?_security=N", "patient/Observation.rs?_security=N", true},
		{"patient/*.rs?_security=N", "patient/Observation.rs", false},
		// launch context
		{"launch/patient", "launch/patient", true},
		{"launch/patient", "launch/encounter", false},
		{"launch", "launch/patient", false},
		{"launch/patient", "launch", false},
		{"launch/list", "launch/list?role=https://x.org/home", true},
		{"launch/list?role=https://x.org/home", "launch/list", false},
		{"launch/list?role=https://x.org/home", "launch/list?role=https://x.org/away", false},
		// fixed names and others cover only themselves
		{"openid", "openid", true},
		{"openid", "fhirUser", false},
		{"offline_access", "online_access", false},
		{"online_access", "offline_access", false},
		{"__a", "__a", true},
		{"__a", "__b", false},
		{"https://x.org/s", "https://x.org/s", true},
		{"patient/*.cruds", "openid", false},
	}
	for _, tt := range tests {
		s, err := Parse(tt.s)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.s, err)
		}
		u, err := Parse(tt.t)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.t, err)
		}
		if got := s.Covers(u); got != tt.want {
			t.Errorf("%q.Covers(%q) = %v, want %v", tt.s, tt.t, got, tt.want)
		}
	}
}

func TestPermsString(t *testing.T) {
	tests := []struct {
		p    Perms
		want string
	}{
		{0, ""},
		{PermAll, "cruds"},
		{PermRead | PermSearch, "rs"},
		{PermSearch | PermCreate, "cs"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("Perms(%d).String() = %q, want %q", tt.p, got, tt.want)
		}
	}
}
