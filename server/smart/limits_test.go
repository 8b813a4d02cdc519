package smart

import (
	"strings"
	"testing"
)

func TestWithinLimits(t *testing.T) {
	scopes := func(n int) string {
		s := make([]string, n)
		for i := range s {
			s[i] = "patient/Observation.rs"
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		name string
		raw  string
		want bool
	}{
		{"empty", "", true},
		{"a real request", "openid fhirUser launch/patient patient/*.rs offline_access", true},
		{"spaces only", strings.Repeat(" ", MaxParamLen), true},
		{"MaxScopes scopes", scopes(MaxScopes), true},
		{"one scope too many", scopes(MaxScopes + 1), false},
		{"one scope too many, tab-separated", strings.Repeat("a\t", MaxScopes+1), false},
		{"extra spaces do not count", "  a   b  " + strings.Repeat(" ", 300), true},
		{"exactly MaxParamLen", strings.Repeat("a", MaxParamLen), true},
		{"one byte too long", strings.Repeat("a", MaxParamLen+1), false},
		{"40,000 scopes", strings.Repeat("patient/R.rs ", 40000), false},
	} {
		if got := WithinLimits(tc.raw); got != tc.want {
			t.Errorf("%s: WithinLimits = %v, want %v", tc.name, got, tc.want)
		}
	}
}
