package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/postgres"
	"github.com/smartauth/smartauth/storage/postgres/pgtest"
	"github.com/smartauth/smartauth/storage/sqlite"
)

// countingStore is a real store that records the size of every AppendAudits
// call and, when release is set, holds the first call until release closes,
// so a test can queue events behind a write in flight.
type countingStore struct {
	storage.Storage
	held    chan struct{} // closed once the first call is being held
	release chan struct{}

	mu      sync.Mutex
	batches []int
	written map[string]int // events handed to AppendAudits, by tenant
}

func (c *countingStore) AppendAudits(ctx context.Context, tenantID string, events []storage.AuditEvent) ([]storage.AuditEvent, error) {
	c.mu.Lock()
	c.batches = append(c.batches, len(events))
	if c.written == nil {
		c.written = map[string]int{}
	}
	c.written[tenantID] += len(events)
	first := len(c.batches) == 1
	c.mu.Unlock()
	if first && c.release != nil {
		close(c.held)
		<-c.release
	}
	return c.Storage.AppendAudits(ctx, tenantID, events)
}

// sizes returns the sizes of the AppendAudits calls so far, in order.
func (c *countingStore) sizes() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.batches)
}

// handed is how many events of a tenant reached AppendAudits.
func (c *countingStore) handed(tenantID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.written[tenantID]
}

// holding wraps store so that its first AppendAudits call waits for release.
func holding(store storage.Storage) *countingStore {
	return &countingStore{Storage: store, held: make(chan struct{}), release: make(chan struct{})}
}

// backends runs test on a fresh SQLite store, and on a fresh PostgreSQL
// schema when TEST_DATABASE_URL is set; each has tenants acme and beta.
func backends(t *testing.T, test func(t *testing.T, store storage.Storage)) {
	t.Run("sqlite", func(t *testing.T) {
		s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "smartauth.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if _, err := s.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		test(t, withTenants(t, s))
	})
	t.Run("postgres", func(t *testing.T) {
		if os.Getenv("TEST_DATABASE_URL") == "" {
			t.Skip("TEST_DATABASE_URL not set")
		}
		s, err := postgres.Open(t.Context(), pgtest.URL(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if _, err := s.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		test(t, withTenants(t, s))
	})
}

func withTenants(t *testing.T, s storage.Storage) storage.Storage {
	t.Helper()
	for _, id := range []string{"acme", "beta"} {
		if err := s.CreateTenant(t.Context(), storage.Tenant{ID: id, Name: id}, nil); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func event(tenantID, subject string) storage.AuditEvent {
	return storage.AuditEvent{TenantID: tenantID, Type: "token.issue", Outcome: "success", ClientID: "app", Subject: subject}
}

// queued is how many events of a tenant wait behind the write in flight.
func queued(w *Writer, tenantID string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending[tenantID])
}

func isClosed(w *Writer) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

// waitQueued returns once n events of a tenant are queued.
func waitQueued(w *Writer, tenantID string, n int) {
	for queued(w, tenantID) < n {
		runtime.Gosched()
	}
}

// appendAll starts one Append per event and returns a function that waits
// for all of them and returns their errors in order.
func appendAll(ctx context.Context, w *Writer, events []storage.AuditEvent) func() []error {
	errs := make([]error, len(events))
	var wg sync.WaitGroup
	for i, e := range events {
		wg.Go(func() { errs[i] = w.Append(ctx, e) })
	}
	return func() []error {
		wg.Wait()
		return errs
	}
}

// checkTrail fails unless the tenant's trail verifies and holds exactly the
// given subjects, each once.
func checkTrail(t *testing.T, store storage.Storage, tenantID string, subjects []string) {
	t.Helper()
	trail, err := store.ListAudit(t.Context(), tenantID, storage.AuditFilter{Limit: 100000})
	if err != nil {
		t.Fatalf("list audit of %s: %v", tenantID, err)
	}
	if err := storage.VerifyChain(trail); err != nil {
		t.Fatalf("audit chain of %s: %v", tenantID, err)
	}
	var got []string
	for _, e := range trail {
		got = append(got, e.Subject)
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(subjects))
	if !slices.Equal(got, want) {
		t.Fatalf("audit of %s: got %d events %v, want %d %v", tenantID, len(got), got, len(want), want)
	}
}

func TestLoneEventIsWrittenAtOnce(t *testing.T) {
	backends(t, func(t *testing.T, store storage.Storage) {
		cs := &countingStore{Storage: store}
		w := NewWriter(cs, nil, Options{})
		defer w.Close()
		if err := w.Append(t.Context(), event("acme", "u1")); err != nil {
			t.Fatalf("append: %v", err)
		}
		// Append returned, so the event is stored already, by one call.
		checkTrail(t, store, "acme", []string{"u1"})
		if got := cs.sizes(); !slices.Equal(got, []int{1}) {
			t.Fatalf("AppendAudits calls: got sizes %v, want [1]", got)
		}
	})
}

func TestConcurrentAppends(t *testing.T) {
	backends(t, func(t *testing.T, store storage.Storage) {
		cs := &countingStore{Storage: store}
		w := NewWriter(cs, nil, Options{MaxBatch: 16})
		defer w.Close()
		const writers, perWriter = 32, 20
		want := map[string][]string{}
		errs := make([]error, writers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range writers {
			tenant := "acme"
			if i%4 == 0 {
				tenant = "beta"
			}
			for j := range perWriter {
				want[tenant] = append(want[tenant], fmt.Sprintf("w%d-e%d", i, j))
			}
			wg.Go(func() {
				<-start
				for j := range perWriter {
					if err := w.Append(t.Context(), event(tenant, fmt.Sprintf("w%d-e%d", i, j))); err != nil {
						errs[i] = fmt.Errorf("event %d: %w", j, err)
						return
					}
				}
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("writer %d: %v", i, err)
			}
		}
		checkTrail(t, store, "acme", want["acme"])
		checkTrail(t, store, "beta", want["beta"])

		sizes := cs.sizes()
		total := 0
		for _, n := range sizes {
			if n < 1 || n > 16 {
				t.Fatalf("AppendAudits calls: got a batch of %d, want 1 to 16", n)
			}
			total += n
		}
		if total != writers*perWriter {
			t.Fatalf("AppendAudits calls: %d events in all, want %d", total, writers*perWriter)
		}
		// With 32 writers waiting on each write, writes must have been shared.
		if len(sizes) >= total {
			t.Fatalf("AppendAudits calls: %d for %d events, want fewer (batching)", len(sizes), total)
		}
		t.Logf("%d events in %d transactions", total, len(sizes))
	})
}

func TestBatchesFormBehindWriteInFlight(t *testing.T) {
	backends(t, func(t *testing.T, store storage.Storage) {
		cs := holding(store)
		w := NewWriter(cs, nil, Options{MaxBatch: 256})
		defer w.Close()
		firstDone := appendAll(t.Context(), w, []storage.AuditEvent{event("acme", "first")})
		<-cs.held
		var events []storage.AuditEvent
		subjects := []string{"first"}
		for i := range 300 {
			events = append(events, event("acme", fmt.Sprint("e", i)))
			subjects = append(subjects, fmt.Sprint("e", i))
		}
		done := appendAll(t.Context(), w, events)
		waitQueued(w, "acme", len(events))
		close(cs.release)

		for i, err := range append(firstDone(), done()...) {
			if err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
		}
		// The 300 events queued behind the first write go in two capped batches.
		if got := cs.sizes(); !slices.Equal(got, []int{1, 256, 44}) {
			t.Fatalf("AppendAudits calls: got sizes %v, want [1 256 44]", got)
		}
		checkTrail(t, store, "acme", subjects)
	})
}

func TestStoreErrorReachesEveryWaiter(t *testing.T) {
	backends(t, func(t *testing.T, store storage.Storage) {
		cs := holding(store)
		w := NewWriter(cs, nil, Options{})
		defer w.Close()
		// The store refuses events of a tenant that does not exist.
		firstDone := appendAll(t.Context(), w, []storage.AuditEvent{event("ghost", "first")})
		<-cs.held
		events := make([]storage.AuditEvent, 10)
		for i := range events {
			events[i] = event("ghost", fmt.Sprint("e", i))
		}
		done := appendAll(t.Context(), w, events)
		waitQueued(w, "ghost", len(events))
		close(cs.release)

		for i, err := range append(firstDone(), done()...) {
			if !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("append %d: got error %v, want %v", i, err, storage.ErrNotFound)
			}
		}
		if got := cs.sizes(); !slices.Equal(got, []int{1, 10}) {
			t.Fatalf("AppendAudits calls: got sizes %v, want [1 10]", got)
		}
		// Another tenant's events are unaffected.
		if err := w.Append(t.Context(), event("acme", "ok")); err != nil {
			t.Fatalf("append to acme after ghost's failure: %v", err)
		}
		checkTrail(t, store, "acme", []string{"ok"})
	})
}

func TestCloseFlushesQueuedEvents(t *testing.T) {
	backends(t, func(t *testing.T, store storage.Storage) {
		cs := holding(store)
		w := NewWriter(cs, nil, Options{})
		firstDone := appendAll(t.Context(), w, []storage.AuditEvent{event("acme", "first")})
		<-cs.held
		events := []storage.AuditEvent{event("acme", "a"), event("beta", "b1"), event("beta", "b2")}
		done := appendAll(t.Context(), w, events)
		waitQueued(w, "acme", 1)
		// beta's events are not held: wait until both are queued or written.
		for queued(w, "beta")+cs.handed("beta") < 2 {
			runtime.Gosched()
		}

		closed := make(chan struct{})
		go func() {
			w.Close()
			close(closed)
		}()
		// Close refuses new events at once, while it still waits for the
		// queued ones.
		for !isClosed(w) {
			runtime.Gosched()
		}
		if err := w.Append(t.Context(), event("acme", "late")); !errors.Is(err, ErrClosed) {
			t.Fatalf("append while closing: got %v, want %v", err, ErrClosed)
		}
		select {
		case <-closed:
			t.Fatal("Close returned while a write was in flight")
		default:
		}
		close(cs.release)
		<-closed

		for i, err := range append(firstDone(), done()...) {
			if err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
		}
		checkTrail(t, store, "acme", []string{"first", "a"})
		checkTrail(t, store, "beta", []string{"b1", "b2"})
		if err := w.Append(t.Context(), event("acme", "after")); !errors.Is(err, ErrClosed) {
			t.Fatalf("append after close: got %v, want %v", err, ErrClosed)
		}
		w.Close() // a second Close returns at once
		w.mu.Lock()
		defer w.mu.Unlock()
		if n := len(w.pending); n != 0 {
			t.Fatalf("after close: %d tenants still have a writer", n)
		}
	})
}

func TestCallerGivingUp(t *testing.T) {
	backends(t, func(t *testing.T, store storage.Storage) {
		cs := holding(store)
		w := NewWriter(cs, nil, Options{})
		firstDone := appendAll(t.Context(), w, []storage.AuditEvent{event("acme", "first")})
		<-cs.held

		// A caller whose context ends stops waiting; its queued event is
		// still written, and the others' are unaffected.
		ctx, cancel := context.WithCancel(t.Context())
		impatient := appendAll(ctx, w, []storage.AuditEvent{event("acme", "impatient")})
		waitQueued(w, "acme", 1)
		patient := appendAll(t.Context(), w, []storage.AuditEvent{event("acme", "patient")})
		waitQueued(w, "acme", 2)
		cancel()
		if err := impatient()[0]; !errors.Is(err, context.Canceled) {
			t.Fatalf("append with cancelled context: got %v, want %v", err, context.Canceled)
		}
		// An already cancelled context queues nothing.
		if err := w.Append(ctx, event("acme", "never")); !errors.Is(err, context.Canceled) {
			t.Fatalf("append with context cancelled before: got %v, want %v", err, context.Canceled)
		}
		close(cs.release)
		if err := firstDone()[0]; err != nil {
			t.Fatalf("first append: %v", err)
		}
		if err := patient()[0]; err != nil {
			t.Fatalf("patient append: %v", err)
		}
		w.Close()
		checkTrail(t, store, "acme", []string{"first", "impatient", "patient"})
	})
}

// failingStore fails its first n AppendAudits calls, as a store that is down would.
type failingStore struct {
	storage.Storage
	mu    sync.Mutex
	fails int
	calls int
}

func (f *failingStore) AppendAudits(ctx context.Context, tenantID string, events []storage.AuditEvent) ([]storage.AuditEvent, error) {
	f.mu.Lock()
	f.calls++
	fail := f.calls <= f.fails
	f.mu.Unlock()
	if fail {
		return nil, fmt.Errorf("append: %w", storage.ErrUnavailable)
	}
	return f.Storage.AppendAudits(ctx, tenantID, events)
}

func TestEnqueuedEventsSurviveAStoreOutage(t *testing.T) {
	backends(t, func(t *testing.T, store storage.Storage) {
		fs := &failingStore{Storage: store, fails: 3}
		w := NewWriter(fs, nil, Options{MaxBatch: 4})
		var subjects []string
		for i := range 10 {
			s := fmt.Sprintf("read-%d", i)
			subjects = append(subjects, s)
			if err := w.Enqueue(event("acme", s)); err != nil {
				t.Fatalf("Enqueue %d: %v", i, err)
			}
		}
		w.Close()
		// Every event is stored, once, in the order it was queued, although
		// the first writes failed.
		checkTrail(t, store, "acme", subjects)
	})
}

func TestEnqueueRefusesPastTheBacklog(t *testing.T) {
	backends(t, func(t *testing.T, store storage.Storage) {
		cs := holding(store)
		w := NewWriter(cs, nil, Options{MaxQueue: 3})
		if err := w.Enqueue(event("acme", "first")); err != nil {
			t.Fatal(err)
		}
		<-cs.held // the first event is being written; the next wait behind it
		for i := range 3 {
			if err := w.Enqueue(event("acme", fmt.Sprint("queued-", i))); err != nil {
				t.Fatalf("Enqueue %d: %v", i, err)
			}
		}
		if err := w.Enqueue(event("acme", "one too many")); !errors.Is(err, ErrBacklog) {
			t.Errorf("Enqueue past the backlog: %v, want ErrBacklog", err)
		}
		// Another tenant's queue is its own.
		if err := w.Enqueue(event("beta", "other")); err != nil {
			t.Errorf("Enqueue for another tenant: %v", err)
		}
		close(cs.release)
		w.Close()
		checkTrail(t, store, "acme", []string{"first", "queued-0", "queued-1", "queued-2"})
		if err := w.Enqueue(event("acme", "late")); !errors.Is(err, ErrClosed) {
			t.Errorf("Enqueue after Close: %v, want ErrClosed", err)
		}
	})
}

func TestObserveWriteAndPending(t *testing.T) {
	backends(t, func(t *testing.T, store storage.Storage) {
		cs := holding(store)
		var mu sync.Mutex
		var sizes []int
		observe := func(d time.Duration, events int, err error) {
			if d <= 0 || err != nil {
				t.Errorf("observed a write of %v, err %v", d, err)
			}
			mu.Lock()
			sizes = append(sizes, events)
			mu.Unlock()
		}
		w := NewWriter(cs, nil, Options{ObserveWrite: observe})
		defer w.Close()
		firstDone := appendAll(t.Context(), w, []storage.AuditEvent{event("acme", "first")})
		<-cs.held
		done := appendAll(t.Context(), w, []storage.AuditEvent{event("acme", "a"), event("acme", "b")})
		waitQueued(w, "acme", 2)
		if n := w.Pending(); n != 2 {
			t.Fatalf("pending while the first write is held: %d, want 2", n)
		}
		close(cs.release)
		for i, err := range append(firstDone(), done()...) {
			if err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(sizes, []int{1, 2}) {
			t.Fatalf("observed batches %v, want [1 2]", sizes)
		}
		if n := w.Pending(); n != 0 {
			t.Fatalf("pending after every write: %d", n)
		}
	})
}
