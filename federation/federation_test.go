package federation

import (
	"errors"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	routes := []Route{
		{Domain: "clinic.example", ConnectorID: "okta"},
		{Domain: "Hospital.Example", IncludeSubdomains: true, ConnectorID: "cognito"},
		{Domain: "icu.hospital.example", IncludeSubdomains: true, ConnectorID: "icu"},
		{Domain: "bücher.example", ConnectorID: "idn"},
		{Domain: "not a domain", ConnectorID: "broken"},
	}
	tests := []struct {
		email string
		want  string
		err   error
	}{
		{"dr@clinic.example", "okta", nil},
		{"DR@CLINIC.EXAMPLE", "okta", nil},
		{"dr@sub.clinic.example", "", ErrNotRouted},
		{"nurse@hospital.example", "cognito", nil},
		{"nurse@ward.hospital.example", "cognito", nil},
		{"nurse@bed.icu.hospital.example", "icu", nil},
		{"x@notclinic.example", "", ErrNotRouted},
		{"x@xn--bcher-kva.example", "idn", nil},
		{"x@BÜCHER.example", "idn", nil},
		{"x@gmail.example", "", ErrNotRouted},
		{"weird\"@local\"@clinic.example", "okta", nil},
	}
	for _, tc := range tests {
		got, err := Match(tc.email, routes)
		if !errors.Is(err, tc.err) || got.ConnectorID != tc.want {
			t.Errorf("Match(%q) = %q, %v; want %q, %v", tc.email, got.ConnectorID, err, tc.want, tc.err)
		}
	}
	for _, bad := range []string{"", "no-at-sign", "@clinic.example", "dr@", "dr@localhost", "dr@exa mple.com"} {
		if _, err := Match(bad, routes); err == nil || errors.Is(err, ErrNotRouted) {
			t.Errorf("Match(%q): got %v, want an invalid-email error", bad, err)
		}
	}
}

func FuzzMatch(f *testing.F) {
	for _, s := range []string{"dr@clinic.example", "a@b.c", "@", "x@xn--bcher-kva.example", "x@a..b"} {
		f.Add(s)
	}
	routes := []Route{{Domain: "clinic.example", IncludeSubdomains: true, ConnectorID: "c"}}
	f.Fuzz(func(t *testing.T, email string) {
		r, err := Match(email, routes)
		if err != nil {
			return
		}
		// Whatever matched really is the domain or below it.
		d, derr := Domain(email)
		if derr != nil || r.ConnectorID != "c" || (d != "clinic.example" && !strings.HasSuffix(d, ".clinic.example")) {
			t.Fatalf("Match(%q) routed domain %q (%v) to %q", email, d, derr, r.ConnectorID)
		}
	})
}

func TestNormalizeDomain(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" means refused
	}{
		{"Acme.Example", "acme.example"},
		{" acme.example. ", "acme.example"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"sub.acme.example", "sub.acme.example"},
		{"x..example", ""},
		{".acme.example", ""},
		{"localhost", ""},
		{"", ""},
		{"acme example.org", ""},
		{"under_score.example", ""},
		{"-lead.example", ""},
		{strings.Repeat("a", 64) + ".example", ""},
		{strings.Repeat(strings.Repeat("a", 60)+".", 5) + "example", ""},
	} {
		got, err := NormalizeDomain(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("NormalizeDomain(%q) = %q, want refused", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
