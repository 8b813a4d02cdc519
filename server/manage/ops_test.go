package manage

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/postgres"
	"github.com/smartauth/smartauth/storage/postgres/pgtest"
	"github.com/smartauth/smartauth/storage/sqlite"
)

// opsClock is a clock a test moves by hand, so that times it checks are exact.
type opsClock struct {
	mu sync.Mutex
	t  time.Time
}

func newOpsClock() *opsClock {
	return &opsClock{t: time.Date(2030, 3, 4, 5, 6, 7, 0, time.UTC)}
}

func (c *opsClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *opsClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// opsFixture is a Service over a fresh store, with the clock it runs on.
type opsFixture struct {
	svc   *Service
	store storage.Storage
	km    *keys.Manager
	clock *opsClock
}

// eachOpsStore runs f against a fresh, migrated SQLite store and, when
// TEST_DATABASE_URL is set, a fresh PostgreSQL schema.
func eachOpsStore(t *testing.T, f func(t *testing.T, fx *opsFixture)) {
	t.Helper()
	backends := []struct {
		name string
		open func(t *testing.T) storage.Storage
	}{
		{"sqlite", func(t *testing.T) storage.Storage {
			s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "smartauth.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			if _, err := s.Migrate(t.Context()); err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"postgres", func(t *testing.T) storage.Storage {
			s, err := postgres.Open(t.Context(), pgtest.URL(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			if _, err := s.Migrate(t.Context()); err != nil {
				t.Fatal(err)
			}
			return s
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			store := b.open(t)
			sealer, err := keys.NewSealer(bytes.Repeat([]byte{9}, keys.MasterKeySize))
			if err != nil {
				t.Fatal(err)
			}
			clock := newOpsClock()
			km := keys.NewManager(store, sealer, clock.Now)
			f(t, &opsFixture{svc: New(store, km, clock.Now), store: store, km: km, clock: clock})
		})
	}
}

// tenant creates a tenant with one FHIR base URL.
func (fx *opsFixture) tenant(t *testing.T, id string) storage.Tenant {
	t.Helper()
	tn, err := fx.svc.CreateTenant(t.Context(), TenantInput{ID: id, FHIRBaseURLs: []string{"https://fhir.example/" + id}}, Actor{ID: "setup"})
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

// events returns a tenant's audit events of one type, oldest first.
func (fx *opsFixture) events(t *testing.T, tenantID, typ string) []storage.AuditEvent {
	t.Helper()
	es, err := fx.store.ListAudit(t.Context(), tenantID, storage.AuditFilter{Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// lastEvent returns a tenant's newest audit event of one type and checks
// who it names and that none of secrets appears in its details.
func (fx *opsFixture) lastEvent(t *testing.T, tenantID, typ string, who Actor, subject string, secrets ...string) storage.AuditEvent {
	t.Helper()
	es := fx.events(t, tenantID, typ)
	if len(es) == 0 {
		t.Fatalf("no %s event in tenant %q", typ, tenantID)
	}
	e := es[len(es)-1]
	if e.ActorID != who.ID || e.SourceIP != who.SourceIP || e.Subject != subject || e.Outcome != "success" {
		t.Fatalf("%s event: actor %q from %q, subject %q, outcome %q; want %q from %q, subject %q",
			typ, e.ActorID, e.SourceIP, e.Subject, e.Outcome, who.ID, who.SourceIP, subject)
	}
	for k, v := range e.Details {
		for _, secret := range secrets {
			if secret != "" && strings.Contains(k+"="+v, secret) {
				t.Fatalf("%s event: detail %s holds a secret", typ, k)
			}
		}
	}
	return e
}

// mustRefuse checks that err wraps want; for ErrInvalid it also checks that
// the message says what to correct.
func mustRefuse(t *testing.T, what string, err, want error, says string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got %v, want an error wrapping %v", what, err, want)
	}
	if says != "" && !strings.Contains(err.Error(), says) {
		t.Fatalf("%s: error %q does not say %q", what, err, says)
	}
}
