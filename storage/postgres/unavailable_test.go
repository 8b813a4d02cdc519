package postgres_test

import (
	"errors"
	"testing"

	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/postgres/pgtest"
)

// TestUnavailableWhileDatabaseUnreachable takes the database away from a
// store that was using it: reads and writes fail with ErrUnavailable, on
// pooled connections that broke and on new ones that are refused, and the
// same store works again once the database is back.
func TestUnavailableWhileDatabaseUnreachable(t *testing.T) {
	proxy, viaProxy := pgtest.NewProxy(t, pgtest.URL(t))
	s := openStore(t, viaProxy)
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if _, err := s.GetTenant(t.Context(), "clinic"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("before the outage: %v, want ErrNotFound", err)
	}

	proxy.Cut()
	for i := range 3 {
		if _, err := s.GetTenant(t.Context(), "clinic"); !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("read %d during the outage: %v, want ErrUnavailable", i, err)
		}
		if err := s.DeleteToken(t.Context(), "clinic", storage.KindAccessToken, "sig"); !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("write %d during the outage: %v, want ErrUnavailable", i, err)
		}
	}

	proxy.Restore()
	if _, err := s.GetTenant(t.Context(), "clinic"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("after the outage: %v, want ErrNotFound", err)
	}
}
