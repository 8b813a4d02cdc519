package smart

import (
	"slices"
	"strings"
	"testing"
)

func TestGrant(t *testing.T) {
	granular := "patient/Observation.rs?category=" + lab
	tests := []struct {
		name                         string
		requested, allowed, approved string
		granted, dropped             string
	}{
		{
			name:      "everything allowed and approved",
			requested: "launch/patient openid fhirUser patient/*.rs offline_access",
			allowed:   "launch/patient openid fhirUser patient/*.rs offline_access",
			approved:  "launch/patient openid fhirUser patient/*.rs offline_access",
			granted:   "launch/patient openid fhirUser patient/*.rs offline_access",
		},
		{
			name:      "not in the registration is dropped",
			requested: "patient/*.rs patient/*.cruds user/*.rs system/*.rs __custom",
			allowed:   "patient/*.rs",
			approved:  "patient/*.rs patient/*.cruds user/*.rs system/*.rs __custom",
			granted:   "patient/*.rs",
			dropped:   "patient/*.cruds user/*.rs system/*.rs __custom",
		},
		{
			name:      "withheld by the person is dropped",
			requested: "openid fhirUser patient/Observation.rs patient/Condition.rs offline_access",
			allowed:   "openid fhirUser patient/*.rs offline_access",
			approved:  "openid fhirUser patient/Observation.rs",
			granted:   "openid fhirUser patient/Observation.rs",
			dropped:   "patient/Condition.rs offline_access",
		},
		{
			name:      "granular under a wildcard registration is granted as requested",
			requested: granular,
			allowed:   "patient/*.rs",
			approved:  granular,
			granted:   granular,
		},
		{
			name:      "granular registration does not cover the whole type",
			requested: "patient/Observation.rs " + granular,
			allowed:   granular,
			approved:  "patient/Observation.rs " + granular,
			granted:   granular,
			dropped:   "patient/Observation.rs",
		},
		{
			name:      "approving a wider scope approves the narrower request",
			requested: "patient/Observation.r",
			allowed:   "patient/*.cruds",
			approved:  "patient/*.rs",
			granted:   "patient/Observation.r",
		},
		{
			name:      "a wide registration never widens the grant",
			requested: "patient/Observation.r",
			allowed:   "patient/*.cruds user/*.cruds",
			approved:  "patient/*.cruds",
			granted:   "patient/Observation.r",
		},
		{
			name:      "v1 requested is answered in v1",
			requested: "patient/*.read user/Observation.write",
			allowed:   "patient/*.rs user/*.cruds",
			approved:  "patient/*.read user/Observation.write",
			granted:   "patient/*.read user/Observation.write",
		},
		{
			name:      "interactions add up across registered scopes",
			requested: "patient/Observation.rs patient/Observation.crs",
			allowed:   "patient/Observation.r patient/*.s",
			approved:  "patient/Observation.rs patient/Observation.crs",
			granted:   "patient/Observation.rs",
			dropped:   "patient/Observation.crs",
		},
		{
			name:      "duplicates granted once, order kept",
			requested: "openid patient/*.rs openid patient/*.rs bogus/X.rs bogus/X.rs",
			allowed:   "openid patient/*.rs",
			approved:  "openid patient/*.rs",
			granted:   "openid patient/*.rs",
			dropped:   "bogus/X.rs",
		},
		{
			name:      "invalid requested scopes are dropped",
			requested: "patient/Observation.sr Patient/*.rs patient/Observation. openid",
			allowed:   "patient/*.cruds openid",
			approved:  "patient/Observation.sr Patient/*.rs patient/Observation. openid",
			granted:   "openid",
			dropped:   "patient/Observation.sr Patient/*.rs patient/Observation.",
		},
		{
			name:      "invalid registered scopes cover nothing",
			requested: "patient/Observation.rs",
			allowed:   "patient/Observation.sr",
			approved:  "patient/Observation.rs",
			dropped:   "patient/Observation.rs",
		},
		{
			name:      "empty approval grants nothing",
			requested: "openid patient/*.rs",
			allowed:   "openid patient/*.rs",
			approved:  "",
			dropped:   "openid patient/*.rs",
		},
		{
			name:      "launch context with a role under a role-less registration",
			requested: "launch/list?role=https://x.org/home launch/encounter",
			allowed:   "launch/list launch/patient",
			approved:  "launch/list?role=https://x.org/home launch/encounter",
			granted:   "launch/list?role=https://x.org/home",
			dropped:   "launch/encounter",
		},
		{
			name:      "online and offline access are distinct",
			requested: "offline_access",
			allowed:   "online_access",
			approved:  "offline_access",
			dropped:   "offline_access",
		},
		{
			name: "nothing requested, nothing granted",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			granted, dropped := Grant(strings.Fields(tt.requested), strings.Fields(tt.allowed), strings.Fields(tt.approved))
			if !slices.Equal(granted, strings.Fields(tt.granted)) {
				t.Errorf("granted = %q, want %q", granted, strings.Fields(tt.granted))
			}
			if !slices.Equal(dropped, strings.Fields(tt.dropped)) {
				t.Errorf("dropped = %q, want %q", dropped, strings.Fields(tt.dropped))
			}
		})
	}
}

func TestGrantNilApprovedGrantsNothing(t *testing.T) {
	granted, dropped := Grant([]string{"openid"}, []string{"openid"}, nil)
	if len(granted) != 0 || !slices.Equal(dropped, []string{"openid"}) {
		t.Errorf("Grant with nil approved = %q, %q; want nothing granted", granted, dropped)
	}
}

func TestStrategy(t *testing.T) {
	tests := []struct {
		haystack, needle string
		want             bool
	}{
		{"patient/*.rs", "patient/Observation.rs?category=" + lab, true},
		{"patient/*.rs", "patient/Observation.rs", true},
		{"patient/*.rs", "patient/Observation.cruds", false},
		{"patient/Observation.r patient/Observation.s", "patient/Observation.rs", true},
		{"openid fhirUser", "openid", true},
		{"openid fhirUser", "offline_access", false},
		{"patient/*.rs", "patient/*.sr", false},
		{"patient/*.rs", "", false},
		{"", "openid", false},
		// fosite's hierarchic default would let "https://x.org" cover
		// "https://x.org.evil"; the grammar does not.
		{"https://x.org", "https://x.org.evil", false},
		{"patient/Observation.rs?category=lab", "patient/Observation.rs?category=lab.x", false},
		{"__a", "__a", true},
	}
	for _, tt := range tests {
		if got := Strategy(strings.Fields(tt.haystack), tt.needle); got != tt.want {
			t.Errorf("Strategy(%q, %q) = %v, want %v", tt.haystack, tt.needle, got, tt.want)
		}
	}
}
