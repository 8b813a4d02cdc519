package keys_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite"

	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/postgres"
	"github.com/smartauth/smartauth/storage/postgres/pgtest"
	"github.com/smartauth/smartauth/storage/sqlite"
)

// rawRows reads every (kid, public_jwk, private_sealed) straight from the database.
type rawRows func(t *testing.T) map[string][2][]byte

func TestPrivateKeysNeverStoredInClear(t *testing.T) {
	backends := map[string]func(t *testing.T) (storage.Storage, rawRows){
		"sqlite": func(t *testing.T) (storage.Storage, rawRows) {
			path := filepath.Join(t.TempDir(), "keys.db")
			s, err := sqlite.Open(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s, func(t *testing.T) map[string][2][]byte {
				db, err := sql.Open("sqlite", path)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				rows, err := db.Query(`SELECT kid, public_jwk, private_sealed FROM signing_keys`)
				if err != nil {
					t.Fatal(err)
				}
				defer rows.Close()
				out := map[string][2][]byte{}
				for rows.Next() {
					var kid string
					var pub, sealed []byte
					if err := rows.Scan(&kid, &pub, &sealed); err != nil {
						t.Fatal(err)
					}
					out[kid] = [2][]byte{pub, sealed}
				}
				return out
			}
		},
	}
	if os.Getenv("TEST_DATABASE_URL") != "" {
		backends["postgres"] = func(t *testing.T) (storage.Storage, rawRows) {
			url := pgtest.URL(t)
			s, err := postgres.Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s, func(t *testing.T) map[string][2][]byte {
				conn, err := pgx.Connect(context.Background(), url)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(context.Background())
				rows, err := conn.Query(context.Background(), `SELECT kid, public_jwk, private_sealed FROM signing_keys`)
				if err != nil {
					t.Fatal(err)
				}
				defer rows.Close()
				out := map[string][2][]byte{}
				for rows.Next() {
					var kid string
					var pub, sealed []byte
					if err := rows.Scan(&kid, &pub, &sealed); err != nil {
						t.Fatal(err)
					}
					out[kid] = [2][]byte{pub, sealed}
				}
				return out
			}
		}
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			store, raw := open(t)
			sealer, err := keys.NewSealer(bytes.Repeat([]byte{3}, keys.MasterKeySize))
			if err != nil {
				t.Fatal(err)
			}
			km := keys.NewManager(store, sealer, nil)
			ks, err := km.NewKeys("clinic")
			if err != nil {
				t.Fatal(err)
			}
			if err := store.CreateTenant(context.Background(), storage.Tenant{ID: "clinic", Name: "Clinic", FHIRBaseURLs: []string{"https://f.example"}}, ks); err != nil {
				t.Fatal(err)
			}
			rows := raw(t)
			if len(rows) != 2 {
				t.Fatalf("found %d key rows, want 2", len(rows))
			}
			for _, alg := range keys.Algorithms {
				priv, err := km.ActiveKey(context.Background(), "clinic", alg)
				if err != nil {
					t.Fatal(err)
				}
				privJSON, _ := priv.MarshalJSON()
				var fields map[string]string
				json.Unmarshal(privJSON, &fields)
				if fields["d"] == "" {
					t.Fatalf("%s: the opened key has no private part", alg)
				}
				row, ok := rows[priv.KeyID]
				if !ok {
					t.Fatalf("%s: key %s not in the table", alg, priv.KeyID)
				}
				for col, b := range map[string][]byte{"public_jwk": row[0], "private_sealed": row[1]} {
					for _, secret := range []string{fields["d"], fields["p"], fields["q"]} {
						if secret != "" && bytes.Contains(b, []byte(secret)) {
							t.Fatalf("%s: column %s holds private key material in the clear", alg, col)
						}
					}
					if bytes.Contains(b, []byte(`"d"`)) && col == "private_sealed" {
						t.Fatalf("%s: private_sealed looks like a plain JWK", alg)
					}
				}
				var pub jose.JSONWebKey
				if err := json.Unmarshal(row[0], &pub); err != nil || !pub.IsPublic() {
					t.Fatalf("%s: public_jwk is not a public key: %v", alg, err)
				}
				// Another master key cannot open what is stored.
				other, _ := keys.NewSealer(bytes.Repeat([]byte{4}, keys.MasterKeySize))
				if _, err := keys.NewManager(store, other, nil).ActiveKey(context.Background(), "clinic", alg); err == nil {
					t.Fatalf("%s: a different master key opened the stored key", alg)
				}
			}
		})
	}
}
