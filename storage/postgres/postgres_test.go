package postgres_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/conformance"
	"github.com/smartauth/smartauth/storage/postgres"
	"github.com/smartauth/smartauth/storage/postgres/pgtest"
)

// newStore opens a migrated store on a fresh schema.
func newStore(t *testing.T) storage.Storage {
	t.Helper()
	s := openStore(t, pgtest.URL(t))
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return s
}

func openStore(t *testing.T, url string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), url)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// newRawStore opens a store as newStore does, and a reader of its schema
// that goes around the store.
func newRawStore(t *testing.T) (storage.Storage, conformance.RawRows) {
	t.Helper()
	url := pgtest.URL(t)
	s := openStore(t, url)
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return s, func(t *testing.T, table string) [][]any {
		t.Helper()
		conn, err := pgx.Connect(t.Context(), url)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer conn.Close(t.Context())
		rows, err := conn.Query(t.Context(), `SELECT * FROM `+table)
		if err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
		if err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		return out
	}
}

func TestBasic(t *testing.T)           { conformance.RunBasic(t, newStore) }
func TestTenantIsolation(t *testing.T) { conformance.RunTenantIsolation(t, newStore) }
func TestConcurrency(t *testing.T)     { conformance.RunConcurrency(t, newStore) }
func TestAtRest(t *testing.T)          { conformance.RunAtRest(t, newRawStore) }

func TestMigrateIsIdempotent(t *testing.T) {
	s := openStore(t, pgtest.URL(t))
	first, err := s.Migrate(t.Context())
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	second, err := s.Migrate(t.Context())
	if err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	if first < 1 || second != first {
		t.Fatalf("versions: got %d then %d, want the same positive version", first, second)
	}
}

// TestConcurrentMigrate starts two replicas on one empty schema at once;
// the session lock must let both finish, at the same version.
func TestConcurrentMigrate(t *testing.T) {
	url := pgtest.URL(t)
	stores := []*postgres.Store{openStore(t, url), openStore(t, url)}
	versions := make([]int64, len(stores))
	errs := make([]error, len(stores))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			<-start
			versions[i], errs[i] = s.Migrate(t.Context())
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: migrate: %v", i, err)
		}
	}
	if versions[0] < 1 || versions[0] != versions[1] {
		t.Fatalf("versions: got %v, want one positive version twice", versions)
	}
	// The schema works for both.
	if err := stores[0].CreateTenant(t.Context(), storage.Tenant{ID: "acme"}, nil); err != nil {
		t.Fatalf("create tenant: %v", err)
	}
	if _, err := stores[1].GetTenant(t.Context(), "acme"); err != nil {
		t.Fatalf("get tenant from the other replica: %v", err)
	}
}

// TestAuditAppendOnly shows the database itself refuses to change or remove
// an audit row, even for a writer going around the store.
func TestAuditAppendOnly(t *testing.T) {
	url := pgtest.URL(t)
	s := openStore(t, url)
	ctx := t.Context()
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if err := s.CreateTenant(ctx, storage.Tenant{ID: "acme", Name: "Acme"}, nil); err != nil {
		t.Fatalf("create tenant: %v", err)
	}
	if _, err := s.AppendAudit(ctx, storage.AuditEvent{TenantID: "acme", Type: "login.success"}); err != nil {
		t.Fatalf("append: %v", err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	for _, stmt := range []string{
		`UPDATE audit_events SET type = 'login.failure'`,
		`DELETE FROM audit_events`,
	} {
		if _, err := conn.Exec(ctx, stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: got %v, want the append-only refusal", stmt, err)
		}
	}
	events, err := s.ListAudit(ctx, "acme", storage.AuditFilter{})
	if err != nil || len(events) != 1 || events[0].Type != "login.success" {
		t.Fatalf("audit after refused writes: %v, %v", events, err)
	}
}
