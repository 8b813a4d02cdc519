package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/postgres"
	"github.com/smartauth/smartauth/storage/postgres/pgtest"
)

// feedWait bounds how long a test waits for an event that should arrive
// in milliseconds; it only matters when the event never comes.
const feedWait = 10 * time.Second

// feed runs s's change feed until the test ends and returns its events.
func feed(t *testing.T, s *postgres.Store) <-chan storage.Change {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan storage.Change, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.WatchChanges(ctx, func(c storage.Change) { events <- c })
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return events
}

// next returns the next event, failing the test if none comes.
func next(t *testing.T, events <-chan storage.Change) storage.Change {
	t.Helper()
	select {
	case c := <-events:
		return c
	case <-time.After(feedWait):
		t.Fatal("no change event")
		return storage.Change{}
	}
}

// expect reads events until want arrives, failing on an error event or if
// want does not come.
func expect(t *testing.T, events <-chan storage.Change, want storage.Change) {
	t.Helper()
	deadline := time.After(feedWait)
	for {
		select {
		case c := <-events:
			if c.Err != nil {
				t.Fatalf("waiting for %+v: feed failed: %v", want, c.Err)
			}
			if c == want {
				return
			}
		case <-deadline:
			t.Fatalf("no event %+v", want)
		}
	}
}

// quiet fails the test if an event arrives within d.
func quiet(t *testing.T, events <-chan storage.Change, d time.Duration) {
	t.Helper()
	select {
	case c := <-events:
		t.Fatalf("unexpected event %+v", c)
	case <-time.After(d):
	}
}

func testKey(tenantID, kid string) storage.SigningKey {
	return storage.SigningKey{TenantID: tenantID, KID: kid, Alg: "ES256", Status: storage.KeyActive,
		PublicJWK: []byte("{}"), PrivateSealed: []byte("sealed"), CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
}

// TestChangeFeed shows each write to tenants, clients and signing keys,
// through the store or around it, reaches the feed naming its record, and
// that writes in another schema of the same database do not.
func TestChangeFeed(t *testing.T) {
	ctx := t.Context()
	url := pgtest.URL(t)
	s := openStore(t, url)
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	events := feed(t, s)
	if c := next(t, events); !c.Resync {
		t.Fatalf("first event %+v, want the resync of a new connection", c)
	}

	if err := s.CreateTenant(ctx, storage.Tenant{ID: "acme", Name: "Acme"}, []storage.SigningKey{testKey("acme", "k1")}); err != nil {
		t.Fatal(err)
	}
	expect(t, events, storage.Change{Table: storage.ChangedTenants, TenantID: "acme", ID: "acme"})
	expect(t, events, storage.Change{Table: storage.ChangedSigningKeys, TenantID: "acme", ID: "k1"})

	cl := storage.Client{TenantID: "acme", ID: "app", Name: "App", Type: storage.ClientPublic}
	if err := s.CreateClient(ctx, cl); err != nil {
		t.Fatal(err)
	}
	expect(t, events, storage.Change{Table: storage.ChangedClients, TenantID: "acme", ID: "app"})
	cl.Name = "App 2"
	if err := s.UpdateClient(ctx, cl); err != nil {
		t.Fatal(err)
	}
	expect(t, events, storage.Change{Table: storage.ChangedClients, TenantID: "acme", ID: "app"})
	tn, err := s.GetTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	tn.Name = "Acme 2"
	if err := s.UpdateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	expect(t, events, storage.Change{Table: storage.ChangedTenants, TenantID: "acme", ID: "acme"})
	if err := s.RetireSigningKey(ctx, "acme", "k1", time.Now()); err != nil {
		t.Fatal(err)
	}
	expect(t, events, storage.Change{Table: storage.ChangedSigningKeys, TenantID: "acme", ID: "k1"})

	// A write around the store, as by hand in psql, is seen too.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DELETE FROM clients WHERE tenant_id = 'acme' AND id = 'app'`); err != nil {
		t.Fatal(err)
	}
	expect(t, events, storage.Change{Table: storage.ChangedClients, TenantID: "acme", ID: "app"})
	// A rolled-back write is not.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE tenants SET name = 'never' WHERE id = 'acme'`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	// Another deployment in another schema of the database.
	other := openStore(t, pgtest.URL(t))
	if _, err := other.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := other.CreateTenant(ctx, storage.Tenant{ID: "acme", Name: "Other"}, nil); err != nil {
		t.Fatal(err)
	}
	quiet(t, events, 300*time.Millisecond)
}

// TestChangeFeedLongID shows a write whose notification would be too long
// for NOTIFY still commits, and reaches the feed as a change of every row.
func TestChangeFeedLongID(t *testing.T) {
	ctx := t.Context()
	s := openStore(t, pgtest.URL(t))
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	events := feed(t, s)
	if c := next(t, events); !c.Resync {
		t.Fatalf("first event %+v, want a resync", c)
	}
	if err := s.CreateTenant(ctx, storage.Tenant{ID: "acme"}, nil); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 9000)
	if err := s.CreateClient(ctx, storage.Client{TenantID: "acme", ID: long, Type: storage.ClientPublic}); err != nil {
		t.Fatalf("a long id broke the write: %v", err)
	}
	expect(t, events, storage.Change{Table: storage.ChangedClients})
}

// TestChangeFeedReconnects kills the feed's connection from the server
// side: the feed reports the loss, connects again, resyncs, and goes on
// delivering changes.
func TestChangeFeedReconnects(t *testing.T) {
	ctx := t.Context()
	// An application name of its own tells this test's sessions from those
	// of tests running beside it.
	var b [8]byte
	rand.Read(b[:])
	app := "feedtest_" + hex.EncodeToString(b[:])
	url := pgtest.URL(t) + "&application_name=" + app
	s := openStore(t, url)
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTenant(ctx, storage.Tenant{ID: "acme"}, nil); err != nil {
		t.Fatal(err)
	}
	events := feed(t, s)
	for round := range 3 {
		if c := next(t, events); !c.Resync {
			t.Fatalf("round %d: event %+v, want a resync", round, c)
		}
		admin, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		var killed int
		err = admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = $1 AND query = 'LISTEN smartauth_changes'`, app).Scan(&killed)
		admin.Close(ctx)
		if err != nil || killed != 1 {
			t.Fatalf("round %d: terminate the listener: %d sessions, %v", round, killed, err)
		}
		if c := next(t, events); c.Err == nil {
			t.Fatalf("round %d: event %+v, want the lost connection", round, c)
		}
	}
	if c := next(t, events); !c.Resync {
		t.Fatalf("event %+v, want a resync", c)
	}
	tn, err := s.GetTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	tn.Name = "after"
	if err := s.UpdateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	expect(t, events, storage.Change{Table: storage.ChangedTenants, TenantID: "acme", ID: "acme"})
}

// TestChangeFeedIdle shows that waiting past the ping interval with no
// change keeps the connection: the ping answers and nothing is reported.
func TestChangeFeedIdle(t *testing.T) {
	ctx := t.Context()
	s := openStore(t, pgtest.URL(t))
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	postgres.SetFeedPing(s, 50*time.Millisecond)
	events := feed(t, s)
	if c := next(t, events); !c.Resync {
		t.Fatalf("first event %+v, want a resync", c)
	}
	quiet(t, events, 500*time.Millisecond)
	if err := s.CreateTenant(ctx, storage.Tenant{ID: "acme"}, nil); err != nil {
		t.Fatal(err)
	}
	expect(t, events, storage.Change{Table: storage.ChangedTenants, TenantID: "acme", ID: "acme"})
}
