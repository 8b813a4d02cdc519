package sqlite_test

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/conformance"
	"github.com/smartauth/smartauth/storage/sqlite"
)

// newStore opens a migrated store in a fresh file under t.TempDir.
func newStore(t *testing.T) storage.Storage {
	t.Helper()
	return openStore(t, filepath.Join(t.TempDir(), "data", "smartauth.db"))
}

func openStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return s
}

// newRawStore opens a store as newStore does, and a reader of its file
// that goes around the store.
func newRawStore(t *testing.T) (storage.Storage, conformance.RawRows) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data", "smartauth.db")
	s := openStore(t, path)
	return s, func(t *testing.T, table string) [][]any {
		t.Helper()
		db, err := sql.Open("sqlite", path+"?_pragma=query_only(1)")
		if err != nil {
			t.Fatalf("open %s: %v", path, err)
		}
		defer db.Close()
		rows, err := db.QueryContext(t.Context(), `SELECT * FROM `+table)
		if err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		defer rows.Close()
		cols, err := rows.Columns()
		if err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		var out [][]any
		for rows.Next() {
			row := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range row {
				ptrs[i] = &row[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatalf("read %s: %v", table, err)
			}
			out = append(out, row)
		}
		if err := rows.Err(); err != nil {
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
	s := openStore(t, filepath.Join(t.TempDir(), "smartauth.db"))
	first, err := s.Migrate(t.Context())
	if err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	second, err := s.Migrate(t.Context())
	if err != nil {
		t.Fatalf("migrate a third time: %v", err)
	}
	if first < 1 || second != first {
		t.Fatalf("versions: got %d then %d, want the same positive version", first, second)
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "smartauth.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	created := time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)
	want := storage.Tenant{ID: "acme", Name: "Acme", FHIRBaseURLs: []string{"https://fhir.example/r4"}, CreatedAt: created}
	if err := s.CreateTenant(t.Context(), want, nil); err != nil {
		t.Fatalf("create tenant: %v", err)
	}
	event, err := s.AppendAudit(t.Context(), storage.AuditEvent{TenantID: "acme", Time: created, Type: "login"})
	if err != nil {
		t.Fatalf("append audit: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	s = openStore(t, path)
	got, err := s.GetTenant(t.Context(), "acme")
	if err != nil {
		t.Fatalf("get tenant after reopen: %v", err)
	}
	if got.Name != want.Name || !got.CreatedAt.Equal(want.CreatedAt) || len(got.FHIRBaseURLs) != 1 {
		t.Fatalf("tenant after reopen: got %+v, want %+v", got, want)
	}
	// The chain continues where it stopped.
	next, err := s.AppendAudit(t.Context(), storage.AuditEvent{TenantID: "acme", Time: created, Type: "logout"})
	if err != nil {
		t.Fatalf("append audit after reopen: %v", err)
	}
	trail, err := s.ListAudit(t.Context(), "acme", storage.AuditFilter{})
	if err != nil {
		t.Fatalf("list audit: %v", err)
	}
	if err := storage.VerifyChain(trail); err != nil || len(trail) != 2 || next.Seq != 2 || string(next.PrevHash) != string(event.Hash) {
		t.Fatalf("audit after reopen: %d events, next seq %d, verify: %v", len(trail), next.Seq, err)
	}
}

// TestTwoStoresOneFile covers two processes (here, two stores) writing the
// same file at once: their write locks meet in SQLite, where the busy
// timeout and immediate transactions must keep "database is locked" away.
func TestTwoStoresOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "smartauth.db")
	a := openStore(t, path)
	b := openStore(t, path)
	if err := a.CreateTenant(t.Context(), storage.Tenant{ID: "acme"}, nil); err != nil {
		t.Fatalf("create tenant: %v", err)
	}
	const writers, events = 4, 20
	errs := make(chan error, 2*writers)
	var wg sync.WaitGroup
	for i := range 2 * writers {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for j := range events {
				if _, err := s.AppendAudit(t.Context(), storage.AuditEvent{TenantID: "acme", Type: fmt.Sprintf("w%d-%d", i, j)}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}
	trail, err := b.ListAudit(t.Context(), "acme", storage.AuditFilter{})
	if err != nil {
		t.Fatalf("list audit: %v", err)
	}
	if err := storage.VerifyChain(trail); err != nil || len(trail) != 2*writers*events {
		t.Fatalf("audit: %d events, want %d; verify: %v", len(trail), 2*writers*events, err)
	}
}

func TestOpenRefusesNonFilePaths(t *testing.T) {
	for _, path := range []string{"", ":memory:", "file:x.db", "x.db?mode=ro"} {
		if s, err := sqlite.Open(t.Context(), path); err == nil {
			s.Close()
			t.Errorf("open %q: got no error", path)
		}
	}
}

// TestAuditAppendOnly shows the database itself refuses to change or remove
// an audit row, even for a writer going around the store.
func TestAuditAppendOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	s := openStore(t, path)
	ctx := t.Context()
	if err := s.CreateTenant(ctx, storage.Tenant{ID: "acme", Name: "Acme"}, nil); err != nil {
		t.Fatalf("create tenant: %v", err)
	}
	if _, err := s.AppendAudit(ctx, storage.AuditEvent{TenantID: "acme", Type: "login.success"}); err != nil {
		t.Fatalf("append: %v", err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer db.Close()
	for _, stmt := range []string{
		`UPDATE audit_events SET type = 'login.failure'`,
		`DELETE FROM audit_events`,
	} {
		if _, err := db.ExecContext(ctx, stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: got %v, want the append-only refusal", stmt, err)
		}
	}
	events, err := s.ListAudit(ctx, "acme", storage.AuditFilter{})
	if err != nil || len(events) != 1 || events[0].Type != "login.success" {
		t.Fatalf("audit after refused writes: %v, %v", events, err)
	}
}
