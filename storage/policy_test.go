package storage

import (
	"encoding/json"
	"testing"
)

// TestAccessTokenAlgOrDefault shows a policy stored before the setting
// existed signs with ES256, and a stored choice is kept.
func TestAccessTokenAlgOrDefault(t *testing.T) {
	for _, tc := range []struct{ stored, want string }{
		{`{}`, "ES256"},
		{`{"mfa_required": true, "access_token_ttl": "10m"}`, "ES256"},
		{`{"access_token_alg": "RS256"}`, "RS256"},
		{`{"access_token_alg": "PS256"}`, "PS256"},
	} {
		var p TenantPolicy
		if err := json.Unmarshal([]byte(tc.stored), &p); err != nil {
			t.Fatalf("%s: %v", tc.stored, err)
		}
		if got := p.AccessTokenAlgOrDefault(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.stored, got, tc.want)
		}
	}
}
