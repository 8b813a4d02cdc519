package oauth

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/sqlite"
)

// TestVerifierAlgorithms shows the signature check of access tokens (for
// grants recorded without a digest) accepts each algorithm a tenant may have
// signed with, whatever its setting now, and only from a key published for
// that algorithm.
func TestVerifierAlgorithms(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "verify.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	sealer, err := keys.NewSealer(bytes.Repeat([]byte{3}, keys.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	km := keys.NewManager(st, sealer, nil)
	ks, err := km.NewKeys("clinic", "PS256")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateTenant(ctx, storage.Tenant{ID: "clinic", Policy: storage.TenantPolicy{AccessTokenAlg: "RS256"}}, ks); err != nil {
		t.Fatal(err)
	}
	const iss = "https://auth.example/t/clinic"
	ps := NewProviders(Options{Store: st, Keys: km})
	verify := ps.verifier("clinic", iss)

	sign := func(t *testing.T, keyAlg string, alg jose.SignatureAlgorithm, exp time.Time) string {
		t.Helper()
		k, err := km.ActiveKey(ctx, "clinic", keyAlg)
		if err != nil {
			t.Fatal(err)
		}
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: k}, nil)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := josejwt.Signed(signer).Claims(josejwt.Claims{Issuer: iss, Expiry: josejwt.NewNumericDate(exp)}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	later := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name   string
		keyAlg string
		alg    jose.SignatureAlgorithm
		exp    time.Time
		ok     bool
	}{
		{"ES256 from before a change", "ES256", jose.ES256, later, true},
		{"RS256, the setting now", "RS256", jose.RS256, later, true},
		{"PS256 from before a change", "PS256", jose.PS256, later, true},
		{"PS256 by the key published for RS256", "RS256", jose.PS256, later, false},
		{"RS256 by the key published for PS256", "PS256", jose.RS256, later, false},
		{"RS384, never offered", "RS256", jose.RS384, later, false},
		{"expired PS256", "PS256", jose.PS256, time.Now().Add(-time.Hour), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := verify(ctx, sign(t, tc.keyAlg, tc.alg, tc.exp))
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
