package server_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smartauth/smartauth/server"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/postgres"
	"github.com/smartauth/smartauth/storage/postgres/pgtest"
)

// replicaWait bounds how long a replica may take to apply another's
// change; the change feed takes milliseconds, the caches an hour.
const replicaWait = 10 * time.Second

// replicas starts two servers on one PostgreSQL schema with caches kept for
// an hour, so within a test only the change feed can make one see what the
// other changed. It returns them, the schema's URL, and the application
// name that marks b's database sessions.
func replicas(t *testing.T) (a, b *servertest.Server, dbURL, bApp string) {
	t.Helper()
	dbURL = pgtest.URL(t)
	var r [8]byte
	rand.Read(r[:])
	bApp = "replica_b_" + hex.EncodeToString(r[:])
	open := func(u string) storage.Storage {
		s, err := postgres.Open(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	longCaches := func(cfg *server.Config) {
		cfg.ClientCacheTTL = time.Hour
		cfg.TenantCacheTTL = time.Hour
		cfg.Keys.SetListCacheTTL(time.Hour)
	}
	a = servertest.StartConfig(t, open(dbURL), longCaches)
	b = servertest.StartConfig(t, open(dbURL+"&application_name="+bApp), longCaches)
	// A feed that connects forgets every cache; on a loaded machine that
	// can come after a test's first requests and undo what they cached.
	for _, srv := range []*servertest.Server{a, b} {
		eventually(t, "the change feed listens", func() bool {
			return strings.Contains(srv.Logs(), "change feed listening")
		})
	}
	return a, b, dbURL, bApp
}

// eventually polls cond until it holds, failing the test after replicaWait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(replicaWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", replicaWait, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var clientCredentials = url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}

// tokenStatus asks srv for a token and returns the status.
func tokenStatus(t *testing.T, srv *servertest.Server, tenant, id, secret string) int {
	t.Helper()
	status, _ := postForm(t, tokenEndpoint(srv, tenant), clientCredentials, id, secret)
	return status
}

// signingKID returns the kid of an access token srv issues now.
func signingKID(t *testing.T, srv *servertest.Server, tenant, id, secret string) string {
	t.Helper()
	status, body := postForm(t, tokenEndpoint(srv, tenant), clientCredentials, id, secret)
	tok, _ := body["access_token"].(string)
	if status != http.StatusOK || tok == "" {
		t.Fatalf("token: %d %v", status, body)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Kid string }
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

// publishedKIDs returns the kids of srv's JWKS for tenant.
func publishedKIDs(t *testing.T, srv *servertest.Server, tenant string) []string {
	t.Helper()
	resp, err := http.Get(srv.Issuer(tenant) + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct{ Keys []struct{ Kid string } }
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

// TestReplicasSeeChanges changes clients, a tenant and signing keys through
// replica a, or through the store as the CLI does, and shows replica b, which
// has them cached for an hour, applies each change at once.
func TestReplicasSeeChanges(t *testing.T) {
	a, b, _, _ := replicas(t)
	ctx := context.Background()

	t.Run("client deleted on another replica", func(t *testing.T) {
		a.Tenant(t, "one")
		id, secret := backendClient(t, a, "one", storage.ClientConfidentialSymmetric, nil)
		if got := tokenStatus(t, b, "one", id, secret); got != http.StatusOK {
			t.Fatalf("before: %d", got)
		}
		if err := a.Manage.DeleteClient(ctx, "one", id, testActor); err != nil {
			t.Fatal(err)
		}
		eventually(t, "b refuses the deleted client", func() bool {
			return tokenStatus(t, b, "one", id, secret) == http.StatusUnauthorized
		})
	})

	t.Run("secret rotated on another replica", func(t *testing.T) {
		a.Tenant(t, "two")
		id, secret := backendClient(t, a, "two", storage.ClientConfidentialSymmetric, nil)
		if got := tokenStatus(t, b, "two", id, secret); got != http.StatusOK {
			t.Fatalf("before: %d", got)
		}
		newSecret, err := a.Manage.RotateClientSecret(ctx, "two", id, testActor)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "b refuses the old secret", func() bool {
			return tokenStatus(t, b, "two", id, secret) == http.StatusUnauthorized
		})
		if got := tokenStatus(t, b, "two", id, newSecret); got != http.StatusOK {
			t.Fatalf("b with the new secret: %d", got)
		}
	})

	t.Run("client deleted through the store", func(t *testing.T) {
		a.Tenant(t, "three")
		id, secret := backendClient(t, a, "three", storage.ClientConfidentialSymmetric, nil)
		if got := tokenStatus(t, b, "three", id, secret); got != http.StatusOK {
			t.Fatalf("before: %d", got)
		}
		if err := a.Store.DeleteClient(ctx, "three", id); err != nil {
			t.Fatal(err)
		}
		eventually(t, "b refuses the deleted client", func() bool {
			return tokenStatus(t, b, "three", id, secret) == http.StatusUnauthorized
		})
	})

	t.Run("tenant changed through the store", func(t *testing.T) {
		a.Tenant(t, "four")
		id, secret := backendClient(t, a, "four", storage.ClientConfidentialSymmetric, nil)
		expiresIn := func() float64 {
			status, body := postForm(t, tokenEndpoint(b, "four"), clientCredentials, id, secret)
			if status != http.StatusOK {
				t.Fatalf("token: %d %v", status, body)
			}
			return body["expires_in"].(float64)
		}
		if got := expiresIn(); got < 3590 {
			t.Fatalf("before: expires in %v, want the default hour", got)
		}
		tn, err := a.Store.GetTenant(ctx, "four")
		if err != nil {
			t.Fatal(err)
		}
		tn.Policy.AccessTokenTTL = storage.Duration(10 * time.Minute)
		if err := a.Store.UpdateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
		eventually(t, "b applies the tenant's shorter token lifetime", func() bool {
			return expiresIn() <= 600
		})
	})

	t.Run("keys rotated and retired on another replica", func(t *testing.T) {
		a.Tenant(t, "five")
		id, secret := backendClient(t, a, "five", storage.ClientConfidentialSymmetric, nil)
		old := signingKID(t, b, "five", id, secret)
		if !slices.Contains(publishedKIDs(t, b, "five"), old) {
			t.Fatalf("b does not publish its signing key %s", old)
		}
		ks, err := a.Manage.RotateKeys(ctx, "five", time.Hour, testActor)
		if err != nil {
			t.Fatal(err)
		}
		var fresh string
		for _, k := range ks {
			if k.Status == storage.KeyActive && k.Alg == "ES256" {
				fresh = k.KID
			}
		}
		eventually(t, "b signs with the new key", func() bool {
			return signingKID(t, b, "five", id, secret) == fresh
		})
		if !slices.Contains(publishedKIDs(t, b, "five"), old) {
			t.Fatalf("b stopped publishing %s inside its retirement window", old)
		}
		if err := a.Manage.RetireKey(ctx, "five", old, true, testActor); err != nil {
			t.Fatal(err)
		}
		eventually(t, "b stops publishing the retired key", func() bool {
			return !slices.Contains(publishedKIDs(t, b, "five"), old)
		})
	})
}

// TestReplicaForgetsOnReconnect loses a change's notification, as happens
// while a replica's feed is disconnected, then breaks the replica's feed
// connection: once connected again it forgets what it cached, so the change
// applies.
func TestReplicaForgetsOnReconnect(t *testing.T) {
	a, b, dbURL, bApp := replicas(t)
	ctx := context.Background()
	a.Tenant(t, "acme")
	id, secret := backendClient(t, a, "acme", storage.ClientConfidentialSymmetric, nil)
	if got := tokenStatus(t, b, "acme", id, secret); got != http.StatusOK {
		t.Fatalf("before: %d", got)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	exec := func(sql string, args ...any) int64 {
		t.Helper()
		tag, err := conn.Exec(ctx, sql, args...)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return tag.RowsAffected()
	}

	exec(`ALTER TABLE clients DISABLE TRIGGER clients_notify_change`)
	if _, err := a.Manage.RotateClientSecret(ctx, "acme", id, testActor); err != nil {
		t.Fatal(err)
	}
	exec(`ALTER TABLE clients ENABLE TRIGGER clients_notify_change`)
	if got := tokenStatus(t, b, "acme", id, secret); got != http.StatusOK {
		t.Fatalf("b already refuses the old secret (%d): the lost change reached it", got)
	}

	var killed int
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND query = 'LISTEN smartauth_changes'`, bApp).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminate b's listener: %d sessions, %v", killed, err)
	}
	eventually(t, "b refuses the old secret after reconnecting", func() bool {
		return tokenStatus(t, b, "acme", id, secret) == http.StatusUnauthorized
	})
	eventually(t, "b logs the lost connection", func() bool {
		return strings.Contains(b.Logs(), "change feed lost its connection")
	})
}
