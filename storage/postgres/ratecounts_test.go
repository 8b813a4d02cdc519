package postgres_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/smartauth/smartauth/storage"
)

// TestCountRequests: one count per key and window, kept apart by tenant,
// none lost to concurrent callers, and swept once the window ends.
func TestCountRequests(t *testing.T) {
	s := newStore(t)
	rc, ok := s.(storage.RequestCounter)
	if !ok {
		t.Fatal("the PostgreSQL store offers no RequestCounter")
	}
	ctx := t.Context()
	for _, id := range []string{"a", "b"} {
		if err := s.CreateTenant(ctx, storage.Tenant{ID: id}, nil); err != nil {
			t.Fatal(err)
		}
	}
	w0 := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
	count := func(tenant string, start time.Time, keys ...string) []int64 {
		t.Helper()
		n, err := rc.CountRequests(ctx, tenant, keys, start, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	count("a", w0, "x", "y")
	if got := count("a", w0, "x", "z"); !slices.Equal(got, []int64{2, 1}) {
		t.Fatalf("counts = %v, want [2 1]", got)
	}
	if got := count("b", w0, "x"); !slices.Equal(got, []int64{1}) {
		t.Fatalf("another tenant's count = %v, want [1]", got)
	}
	if got := count("a", w0.Add(time.Minute), "x"); !slices.Equal(got, []int64{1}) {
		t.Fatalf("next window's count = %v, want [1]", got)
	}

	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { count("a", w0, "x", "y") })
	}
	wg.Wait()
	if got := count("a", w0, "x", "y"); !slices.Equal(got, []int64{23, 22}) {
		t.Fatalf("after concurrent counts = %v, want [23 22]", got)
	}

	n, err := s.SweepExpired(ctx, w0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Fatalf("swept %d rows, want the first window's 4", n)
	}
	if got := count("a", w0.Add(time.Minute), "x"); !slices.Equal(got, []int64{2}) {
		t.Fatalf("the current window's count = %v after a sweep, want [2]", got)
	}
}
