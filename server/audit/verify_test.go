package audit_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smartauth/smartauth/server/audit"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/postgres"
	"github.com/smartauth/smartauth/storage/postgres/pgtest"
	"github.com/smartauth/smartauth/storage/sqlite"
)

// rawExec runs a statement on the store's database around the store, with
// the append-only triggers off. Placeholders are written "?".
type rawExec func(t *testing.T, query string, args ...any)

// verifyBackends runs test on a migrated SQLite store, and on a PostgreSQL
// schema when TEST_DATABASE_URL is set, each with tenants acme and beta.
func verifyBackends(t *testing.T, test func(t *testing.T, store storage.Storage, raw rawExec)) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "smartauth.db")
		s, err := sqlite.Open(t.Context(), path)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		if _, err := s.Migrate(t.Context()); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		dropped := false
		raw := func(t *testing.T, query string, args ...any) {
			t.Helper()
			db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
			if err != nil {
				t.Fatalf("open %s: %v", path, err)
			}
			defer db.Close()
			if !dropped {
				for _, trigger := range []string{"audit_events_no_update", "audit_events_no_delete"} {
					if _, err := db.ExecContext(t.Context(), "DROP TRIGGER "+trigger); err != nil {
						t.Fatalf("drop %s: %v", trigger, err)
					}
				}
				dropped = true
			}
			if _, err := db.ExecContext(t.Context(), query, args...); err != nil {
				t.Fatalf("%s: %v", query, err)
			}
		}
		test(t, withVerifyTenants(t, s), raw)
	})
	t.Run("postgres", func(t *testing.T) {
		url := pgtest.URL(t)
		s, err := postgres.Open(t.Context(), url)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		if _, err := s.Migrate(t.Context()); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		raw := func(t *testing.T, query string, args ...any) {
			t.Helper()
			conn, err := pgx.Connect(t.Context(), url)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer conn.Close(context.Background())
			for _, trigger := range []string{"audit_events_no_update", "audit_events_no_delete"} {
				if _, err := conn.Exec(t.Context(), "ALTER TABLE audit_events DISABLE TRIGGER "+trigger); err != nil {
					t.Fatalf("disable %s: %v", trigger, err)
				}
			}
			if _, err := conn.Exec(t.Context(), dollarPlaceholders(query), args...); err != nil {
				t.Fatalf("%s: %v", query, err)
			}
		}
		test(t, withVerifyTenants(t, s), raw)
	})
}

// dollarPlaceholders rewrites "?" placeholders as PostgreSQL's $1, $2….
func dollarPlaceholders(query string) string {
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func withVerifyTenants(t testing.TB, s storage.Storage) storage.Storage {
	t.Helper()
	for _, id := range []string{"acme", "beta"} {
		if err := s.CreateTenant(t.Context(), storage.Tenant{ID: id, Name: id}, nil); err != nil {
			t.Fatalf("create tenant %s: %v", id, err)
		}
	}
	return s
}

// fill appends n varied events to a tenant's trail.
func fill(t testing.TB, store storage.Storage, tenantID string, n int) {
	t.Helper()
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for done := 0; done < n; {
		batch := make([]storage.AuditEvent, 0, 500)
		for ; done < n && len(batch) < cap(batch); done++ {
			e := storage.AuditEvent{
				Time: start.Add(time.Duration(done) * time.Millisecond), Type: "token.issue", Outcome: "success",
				ActorID: "u" + strconv.Itoa(done%7), ClientID: "app", Subject: "u" + strconv.Itoa(done%7), SourceIP: "192.0.2.1",
			}
			if done%3 == 0 {
				e.Type, e.Outcome = "login.failure", "failure"
				e.Details = map[string]string{"reason": "bad password", "email": fmt.Sprintf("u%d@example.com", done)}
			}
			batch = append(batch, e)
		}
		if _, err := store.AppendAudits(t.Context(), tenantID, batch); err != nil {
			t.Fatalf("append: %v", err)
		}
	}
}

// storedEvent reads one event of a tenant back from the store.
func storedEvent(t *testing.T, store storage.Storage, tenantID string, seq int64) storage.AuditEvent {
	t.Helper()
	events, err := store.ListAudit(t.Context(), tenantID, storage.AuditFilter{AfterSeq: seq - 1, Limit: 1})
	if err != nil || len(events) != 1 || events[0].Seq != seq {
		t.Fatalf("read event %d: %v, %d events", seq, err, len(events))
	}
	return events[0]
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name   string
		events int
		// tamper changes acme's trail around the store.
		tamper func(t *testing.T, store storage.Storage, raw rawExec)
		want   audit.ChainStatus
	}{
		{
			name: "empty trail",
			want: audit.ChainStatus{OK: true},
		},
		{
			name:   "trail longer than several pages",
			events: 2345,
			want:   audit.ChainStatus{Events: 2345, OK: true},
		},
		{
			name:   "altered row on the second page",
			events: 1200,
			tamper: func(t *testing.T, _ storage.Storage, raw rawExec) {
				raw(t, "UPDATE audit_events SET subject = 'mallory' WHERE tenant_id = 'acme' AND seq = 1100")
			},
			want: audit.ChainStatus{Events: 1099, BrokenAt: 1100, Problem: "event 1100: hash does not match its contents"},
		},
		{
			name:   "altered details",
			events: 10,
			tamper: func(t *testing.T, _ storage.Storage, raw rawExec) {
				raw(t, `UPDATE audit_events SET details = '{"reason":"typo"}' WHERE tenant_id = 'acme' AND seq = 7`)
			},
			want: audit.ChainStatus{Events: 6, BrokenAt: 7, Problem: "event 7: hash does not match its contents"},
		},
		{
			name:   "altered row with its hash recomputed",
			events: 20,
			tamper: func(t *testing.T, store storage.Storage, raw rawExec) {
				e := storedEvent(t, store, "acme", 7)
				e.Subject = "mallory"
				raw(t, "UPDATE audit_events SET subject = ?, hash = ? WHERE tenant_id = 'acme' AND seq = 7",
					e.Subject, storage.ChainHash(e.PrevHash, e))
			},
			want: audit.ChainStatus{Events: 7, BrokenAt: 8, Problem: "event 8: previous hash does not match the hash of event 7"},
		},
		{
			name:   "deleted row at a page boundary",
			events: 1200,
			tamper: func(t *testing.T, _ storage.Storage, raw rawExec) {
				raw(t, "DELETE FROM audit_events WHERE tenant_id = 'acme' AND seq = 1001")
			},
			want: audit.ChainStatus{Events: 1000, BrokenAt: 1001, Problem: "event 1001 is missing: the trail jumps from event 1000 to event 1002"},
		},
		{
			name:   "deleted middle rows",
			events: 20,
			tamper: func(t *testing.T, _ storage.Storage, raw rawExec) {
				raw(t, "DELETE FROM audit_events WHERE tenant_id = 'acme' AND seq BETWEEN 5 AND 9")
			},
			want: audit.ChainStatus{Events: 4, BrokenAt: 5, Problem: "event 5 is missing: the trail jumps from event 4 to event 10"},
		},
		{
			name:   "deleted first row",
			events: 5,
			tamper: func(t *testing.T, _ storage.Storage, raw rawExec) {
				raw(t, "DELETE FROM audit_events WHERE tenant_id = 'acme' AND seq = 1")
			},
			want: audit.ChainStatus{BrokenAt: 1, Problem: "event 1 is missing: the trail starts at event 2"},
		},
		{
			name:   "first row given a previous hash",
			events: 5,
			tamper: func(t *testing.T, store storage.Storage, raw rawExec) {
				e := storedEvent(t, store, "acme", 1)
				e.PrevHash = []byte("forged")
				raw(t, "UPDATE audit_events SET prev_hash = ?, hash = ? WHERE tenant_id = 'acme' AND seq = 1",
					e.PrevHash, storage.ChainHash(e.PrevHash, e))
			},
			want: audit.ChainStatus{BrokenAt: 1, Problem: "event 1: names a previous hash, but it is the first event"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verifyBackends(t, func(t *testing.T, store storage.Storage, raw rawExec) {
				fill(t, store, "acme", tt.events)
				fill(t, store, "beta", 3)
				if tt.tamper != nil {
					tt.tamper(t, store, raw)
				}
				got, err := audit.Verify(t.Context(), store, "acme")
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				// The head is the last intact event: sequence numbers start at 1.
				if got.Head.Seq != tt.want.Events || (got.Head.Seq > 0) != (got.Head.Hash != nil) {
					t.Errorf("Verify head = %+v, want event %d", got.Head, tt.want.Events)
				}
				if !sameStatus(got, tt.want) {
					t.Errorf("Verify = %+v, want %+v", got, tt.want)
				}
				// Tampering with one tenant's trail leaves another's intact.
				other, err := audit.Verify(t.Context(), store, "beta")
				if err != nil || !sameStatus(other, audit.ChainStatus{Events: 3, OK: true}) {
					t.Errorf("Verify(beta) = %+v, %v; want 3 intact events", other, err)
				}
			})
		})
	}
}

// sameStatus compares two statuses but for their heads, checked apart.
func sameStatus(a, b audit.ChainStatus) bool {
	return a.Events == b.Events && a.OK == b.OK && a.BrokenAt == b.BrokenAt && a.Problem == b.Problem
}

// TestVerifyFrom: going on from a checked head finds what changed at the
// head or after it.
func TestVerifyFrom(t *testing.T) {
	verifyBackends(t, func(t *testing.T, store storage.Storage, raw rawExec) {
		ctx := t.Context()
		fill(t, store, "acme", 20)
		full, err := audit.Verify(ctx, store, "acme")
		if err != nil || !full.OK || full.Head.Seq != 20 {
			t.Fatalf("full check: %+v, %v", full, err)
		}
		fill(t, store, "acme", 5)
		got, err := audit.VerifyFrom(ctx, store, "acme", full.Head)
		if err != nil || !got.OK || got.Events != 25 || got.Head.Seq != 25 {
			t.Fatalf("VerifyFrom over 5 new events: %+v, %v; want 25 intact", got, err)
		}
		if got, err := audit.VerifyFrom(ctx, store, "acme", audit.ChainHead{Seq: 20, Hash: []byte("not event 20's hash")}); err != nil ||
			got.OK || got.BrokenAt != 20 {
			t.Errorf("VerifyFrom a head with another hash: %+v, %v; want broken at 20", got, err)
		}

		raw(t, "UPDATE audit_events SET subject = 'mallory' WHERE tenant_id = 'acme' AND seq = 23")
		if got, err := audit.VerifyFrom(ctx, store, "acme", full.Head); err != nil || got.OK || got.BrokenAt != 23 {
			t.Errorf("VerifyFrom over an altered new event: %+v, %v; want broken at 23", got, err)
		}
		// The head itself rewritten, its hash recomputed to match.
		e := storedEvent(t, store, "acme", 20)
		e.Subject = "mallory"
		raw(t, "UPDATE audit_events SET subject = ?, hash = ? WHERE tenant_id = 'acme' AND seq = 20", e.Subject, storage.ChainHash(e.PrevHash, e))
		if got, err := audit.VerifyFrom(ctx, store, "acme", full.Head); err != nil || got.OK || got.BrokenAt != 20 ||
			got.Problem != "event 20: changed since it was checked" {
			t.Errorf("VerifyFrom over a rewritten head: %+v, %v; want broken at 20", got, err)
		}
		raw(t, "DELETE FROM audit_events WHERE tenant_id = 'acme' AND seq = 20")
		if got, err := audit.VerifyFrom(ctx, store, "acme", full.Head); err != nil || got.OK || got.BrokenAt != 20 {
			t.Errorf("VerifyFrom a deleted head: %+v, %v; want broken at 20", got, err)
		}
	})
}

// cappedStore returns at most limit events per ListAudit call, and fails the
// call after fail successful ones when fail is positive.
type cappedStore struct {
	storage.Storage
	limit int
	fail  int
	calls int
}

var errUnavailable = errors.New("database unavailable")

func (c *cappedStore) ListAudit(ctx context.Context, tenantID string, f storage.AuditFilter) ([]storage.AuditEvent, error) {
	c.calls++
	if c.fail > 0 && c.calls > c.fail {
		return nil, errUnavailable
	}
	f.Limit = min(f.Limit, c.limit)
	return c.Storage.ListAudit(ctx, tenantID, f)
}

func TestVerifyReadsPastShortPages(t *testing.T) {
	verifyBackends(t, func(t *testing.T, store storage.Storage, raw rawExec) {
		fill(t, store, "acme", 700)
		capped := &cappedStore{Storage: store, limit: 300}
		got, err := audit.Verify(t.Context(), capped, "acme")
		if err != nil || !sameStatus(got, audit.ChainStatus{Events: 700, OK: true}) {
			t.Fatalf("Verify = %+v, %v; want 700 intact events", got, err)
		}
		// A break beyond the first short page is still found.
		raw(t, "UPDATE audit_events SET subject = 'mallory' WHERE tenant_id = 'acme' AND seq = 650")
		got, err = audit.Verify(t.Context(), capped, "acme")
		if err != nil || got.OK || got.BrokenAt != 650 {
			t.Fatalf("Verify = %+v, %v; want broken at 650", got, err)
		}
	})
}

func TestVerifyStorageError(t *testing.T) {
	verifyBackends(t, func(t *testing.T, store storage.Storage, _ rawExec) {
		fill(t, store, "acme", 1500)
		got, err := audit.Verify(t.Context(), &cappedStore{Storage: store, limit: 1000, fail: 1}, "acme")
		if !errors.Is(err, errUnavailable) {
			t.Fatalf("Verify error = %v, want the storage error", err)
		}
		if !sameStatus(got, audit.ChainStatus{}) || got.Head.Seq != 0 {
			t.Errorf("Verify status = %+v with an error, want zero", got)
		}
	})
}

// BenchmarkVerify measures how fast the viewer's chain check walks a long
// trail on SQLite; ns/op divided by the events is the cost of one event.
func BenchmarkVerify(b *testing.B) {
	const events = 20000
	s, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "smartauth.db"))
	if err != nil {
		b.Fatalf("open: %v", err)
	}
	b.Cleanup(func() { s.Close() })
	if _, err := s.Migrate(b.Context()); err != nil {
		b.Fatalf("migrate: %v", err)
	}
	store := withVerifyTenants(b, s)
	fill(b, store, "acme", events)
	b.ResetTimer()
	for b.Loop() {
		st, err := audit.Verify(b.Context(), store, "acme")
		if err != nil || !st.OK || st.Events != events {
			b.Fatalf("verify: %+v, %v", st, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/events, "ns/event")
}
