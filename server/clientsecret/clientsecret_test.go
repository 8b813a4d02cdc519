package clientsecret

import (
	"encoding/base64"
	"testing"
)

func TestGenerateAndMatch(t *testing.T) {
	secret, digest, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(secret)
	if err != nil || len(raw)*8 < 256 {
		t.Fatalf("secret %q carries %d bits, want at least 256", secret, len(raw)*8)
	}
	if !Matches(digest, secret) {
		t.Fatal("generated secret does not match its digest")
	}
	for _, wrong := range []string{"", secret[:len(secret)-1], secret + "x", string(digest)} {
		if Matches(digest, wrong) {
			t.Errorf("Matches accepted %q", wrong)
		}
	}
	if Matches(nil, "") || Matches([]byte("short"), "short") {
		t.Error("Matches accepted a malformed digest")
	}
	other, _, _ := Generate()
	if other == secret {
		t.Fatal("two generated secrets are equal")
	}
}
