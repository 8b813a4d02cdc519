package ratelimit

import (
	"context"
	"testing"
	"time"
)

// serve counts a request under keys unless one of them is blocked, and
// reports whether it was served.
func serve(t *testing.T, l *Limiter, tenant string, now time.Time, keys ...Key) bool {
	t.Helper()
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.Name
	}
	if _, blocked := l.Blocked(tenant, names, now); blocked {
		return false
	}
	if err := l.Count(context.Background(), tenant, keys, now); err != nil {
		t.Fatal(err)
	}
	return true
}

func TestLimitPerKeyAndWindow(t *testing.T) {
	l := New(NewMemory(), time.Minute)
	t0 := time.Date(2025, 1, 1, 10, 0, 15, 0, time.UTC)
	a, b := Key{"a", 3}, Key{"b", 3}
	for i := range 3 {
		if !serve(t, l, "t1", t0, a) {
			t.Fatalf("request %d refused under the limit", i+1)
		}
	}
	if serve(t, l, "t1", t0, a) {
		t.Fatal("fourth request served over a limit of 3")
	}
	wait, blocked := l.Blocked("t1", []string{"b", "a"}, t0)
	if !blocked || wait != 45*time.Second {
		t.Fatalf("Blocked = %v, %v; want 45s until the minute ends", wait, blocked)
	}
	if !serve(t, l, "t1", t0, b) || !serve(t, l, "t2", t0, a) {
		t.Fatal("another key or tenant was refused")
	}
	if !serve(t, l, "t1", t0.Add(45*time.Second), a) {
		t.Fatal("refused in the next window")
	}
}

func TestUnlimitedKeyIsNotCounted(t *testing.T) {
	l := New(NewMemory(), time.Minute)
	now := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
	for range 10 {
		if !serve(t, l, "t", now, Key{"off", 0}, Key{"on", 100}) {
			t.Fatal("refused without a limit reached")
		}
	}
	if serve(t, l, "t", now, Key{"a", 1}) != true || serve(t, l, "t", now, Key{"a", 1}, Key{"off", 0}) {
		t.Fatal("a request naming a blocked key beside an unlimited one was served")
	}
}

// Two limiters on one counter, as two replicas on one database: the second
// learns from its own count that the first used the limit up.
func TestSharedCounter(t *testing.T) {
	c := NewMemory()
	r1, r2 := New(c, time.Minute), New(c, time.Minute)
	now := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
	k := Key{"k", 4}
	serve(t, r1, "t", now, k)
	serve(t, r1, "t", now, k)
	serve(t, r2, "t", now, k)
	if !serve(t, r2, "t", now, k) {
		t.Fatal("fourth request refused")
	}
	if serve(t, r2, "t", now, k) {
		t.Fatal("r2 served a fifth request after it counted the fourth")
	}
	// r1 has not yet seen the count reach the limit: it serves one more.
	if !serve(t, r1, "t", now, k) || serve(t, r1, "t", now, k) {
		t.Fatal("r1 did not block after its own count passed the limit")
	}
}
