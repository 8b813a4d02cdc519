package smart

import (
	"slices"
	"strings"
	"testing"
)

// fuzzSeeds are shared by the fuzz targets so each starts from every shape of scope.
func fuzzSeeds() []string {
	return []string{
		"patient/Observation.read", "user/*.write", "system/*.*", "patient/Observation.rs",
		"user/*.cruds", "system/Encounter.cud", "patient/Observation.rs?category=" + lab,
		"patient/Observation.rs?category=http%3A%2F%2Fx%7Clab&status=final",
		"patient/Observation.rs?note=a+b", "patient/*.rs?_security=N",
		"launch", "launch/patient", "launch/list?role=https://x.org/home",
		"openid", "fhirUser", "profile", "offline_access", "online_access",
		"__custom", "https://x.org/s", "patient/Observation.sr", "Patient/*.rs",
		"patient/Observation.", "patient/Observation.readrs",
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse(in)
		if err != nil {
			return
		}
		if s.Raw != in {
			t.Fatalf("Parse(%q).Raw = %q", in, s.Raw)
		}
		if !s.Covers(s) {
			t.Fatalf("%q does not cover itself", in)
		}
		if !Strategy([]string{in}, in) {
			t.Fatalf("Strategy does not find %q in itself", in)
		}
		if s.Kind == KindResource && (s.Perms == 0 || s.Perms&^PermAll != 0 || (s.Version != 1 && s.Version != 2)) {
			t.Fatalf("Parse(%q) = %+v: bad permissions or version", in, s)
		}
		if Describe(s) == "" {
			t.Fatalf("Describe(%q) is empty", in)
		}
		c := s.Canonical()
		if len(c) > MaxLen {
			return // re-encoding ' ' as %20 may lengthen a scope past the bound
		}
		s2, err := Parse(c)
		if err != nil {
			t.Fatalf("Parse(%q) ok but its canonical form %q does not parse: %v", in, c, err)
		}
		if s2.Kind != s.Kind || !s.Covers(s2) || !s2.Covers(s) {
			t.Fatalf("%q and its canonical form %q differ in meaning", in, c)
		}
		if c2 := s2.Canonical(); c2 != c {
			t.Fatalf("canonical form of %q is not stable: %q then %q", in, c, c2)
		}
	})
}

func FuzzGrant(f *testing.F) {
	f.Add("patient/Observation.rs openid", "patient/*.rs openid", "patient/Observation.rs")
	f.Add("patient/Observation.rs?category="+lab+" launch/patient", "patient/*.read launch/patient", "patient/*.cruds launch/patient")
	f.Add("patient/Observation.crs patient/Observation.rs", "patient/Observation.r patient/*.s", "patient/*.*")
	seeds := fuzzSeeds()
	for i := 0; i+2 < len(seeds); i++ {
		f.Add(seeds[i], seeds[i+1]+" "+seeds[i], seeds[i+2]+" "+seeds[i])
	}
	f.Fuzz(func(t *testing.T, req, alw, apr string) {
		requested, allowed, approved := strings.Fields(req), strings.Fields(alw), strings.Fields(apr)
		granted, dropped := Grant(requested, allowed, approved)

		// Every requested scope lands once, in one list, in request order.
		var unique []string
		for _, r := range requested {
			if !slices.Contains(unique, r) {
				unique = append(unique, r)
			}
		}
		merged := slices.DeleteFunc(slices.Clone(unique), func(r string) bool {
			return !slices.Contains(granted, r) && !slices.Contains(dropped, r)
		})
		if len(merged) != len(unique) || len(granted)+len(dropped) != len(unique) {
			t.Fatalf("granted %q + dropped %q is not the requested set %q", granted, dropped, unique)
		}
		if !isSubsequence(granted, unique) || !isSubsequence(dropped, unique) {
			t.Fatalf("granted %q or dropped %q out of request order %q", granted, dropped, unique)
		}

		for _, g := range granted {
			s, err := Parse(g)
			if err != nil {
				t.Fatalf("granted %q does not parse: %v", g, err)
			}
			if !coveredPerInteraction(s, allowed) {
				t.Fatalf("granted %q is not covered by allowed %q", g, allowed)
			}
			if !coveredPerInteraction(s, approved) {
				t.Fatalf("granted %q is not covered by approved %q", g, approved)
			}
		}

		// Granting again what was granted changes nothing.
		again, _ := Grant(granted, allowed, approved)
		if !slices.Equal(again, granted) {
			t.Fatalf("Grant is not idempotent: %q then %q", granted, again)
		}
	})
}

// coveredPerInteraction checks coverage independently of coveredBy: each
// single interaction of a resource scope must be covered by one scope of
// set on its own, and any other scope must be covered whole.
func coveredPerInteraction(t Scope, set []string) bool {
	parts := []Scope{t}
	if t.Kind == KindResource {
		parts = nil
		for i := range len(permLetters) {
			if t.Perms&(1<<i) != 0 {
				one := t
				one.Perms = 1 << i
				parts = append(parts, one)
			}
		}
	}
	for _, part := range parts {
		ok := false
		for _, raw := range set {
			if s, err := Parse(raw); err == nil && s.Covers(part) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// isSubsequence reports whether sub appears in seq in the same order.
func isSubsequence(sub, seq []string) bool {
	i := 0
	for _, s := range seq {
		if i < len(sub) && sub[i] == s {
			i++
		}
	}
	return i == len(sub)
}
