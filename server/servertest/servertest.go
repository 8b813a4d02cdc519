// Package servertest starts the whole smartauth server on loopback for
// end-to-end tests, over SQLite always and over PostgreSQL when
// TEST_DATABASE_URL is set.
package servertest

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server"
	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/server/logs"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/postgres"
	"github.com/smartauth/smartauth/storage/postgres/pgtest"
	"github.com/smartauth/smartauth/storage/sqlite"
)

// Backend opens a fresh, migrated store for one test.
type Backend struct {
	Name string
	Open func(t testing.TB) storage.Storage
}

// Backends lists SQLite, and PostgreSQL when TEST_DATABASE_URL is set.
func Backends() []Backend {
	bs := []Backend{{Name: "sqlite", Open: OpenSQLite}}
	if os.Getenv("TEST_DATABASE_URL") != "" {
		bs = append(bs, Backend{Name: "postgres", Open: OpenPostgres})
	}
	return bs
}

// OpenSQLite opens a migrated SQLite store in a temporary folder.
func OpenSQLite(t testing.TB) storage.Storage {
	t.Helper()
	s, _ := OpenSQLiteFile(t)
	return s
}

// OpenSQLiteFile is OpenSQLite that also names the database file, for tests
// that open a connection of their own to it beside the store's.
func OpenSQLiteFile(t testing.TB) (storage.Storage, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "smartauth.db")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// OpenPostgres opens a migrated PostgreSQL store in a fresh schema.
func OpenPostgres(t testing.TB) storage.Storage {
	t.Helper()
	s, err := postgres.Open(context.Background(), pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Clock is real time plus an offset that tests move forward. It keeps
// running because fosite stamps some times with the real clock.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

// NewClock returns a clock showing real time.
func NewClock() *Clock { return &Clock{} }

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// Server is a running smartauth with handles on its parts.
type Server struct {
	URL string
	// Server is the running server itself.
	Server *server.Server
	Store  storage.Storage
	Keys   *keys.Manager
	Manage *manage.Service
	Sealer *keys.Sealer
	Clock  *Clock
	logs   *syncBuffer
}

// Logs returns everything the server has logged so far.
func (s *Server) Logs() string { return s.logs.String() }

// Start runs the server on loopback over store until the test ends.
func Start(t testing.TB, store storage.Storage) *Server {
	t.Helper()
	return StartConfig(t, store, nil)
}

// StartConfig is Start with configure, when not nil, changing the server's
// configuration before the server is built. Like the serve command, it
// keeps the server's caches in step with the store's change feed, if any.
func StartConfig(t testing.TB, store storage.Storage, configure func(*server.Config)) *Server {
	t.Helper()
	masterKey := bytes.Repeat([]byte{0x42}, keys.MasterKeySize)
	sealer, err := keys.NewSealer(masterKey)
	if err != nil {
		t.Fatal(err)
	}
	clock := NewClock()
	km := keys.NewManager(store, sealer, clock.Now)
	buf := &syncBuffer{}
	ts := httptest.NewUnstartedServer(nil)
	base, _ := url.Parse("http://" + ts.Listener.Addr().String())
	cfg := server.Config{
		BaseURL:   base,
		Store:     store,
		Keys:      km,
		Logger:    logs.New(buf, slog.LevelDebug),
		Now:       clock.Now,
		MasterKey: masterKey,
		// Tests run their FHIR servers and identity providers on loopback.
		AllowPrivateFHIR: true,
		AllowPrivateIdP:  true,
	}
	if configure != nil {
		configure(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-registered first: the HTTP server stops, then the
	// change feed and the audit writer stop, then the store (opened before
	// Start) closes.
	t.Cleanup(srv.Close)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		srv.WatchChanges(watchCtx)
	}()
	t.Cleanup(func() {
		stopWatch()
		<-watchDone
	})
	ts.Config.Handler = srv
	ts.Start()
	t.Cleanup(ts.Close)
	return &Server{
		URL: ts.URL, Server: srv, Store: store, Keys: km, Manage: manage.New(store, km, clock.Now),
		Sealer: sealer, Clock: clock, logs: buf,
	}
}

// Tenant creates a tenant with its keys, failing the test on error.
func (s *Server) Tenant(t testing.TB, id string) storage.Tenant {
	t.Helper()
	tn, err := s.Manage.CreateTenant(context.Background(), manage.TenantInput{
		ID: id, Name: "Tenant " + id, FHIRBaseURLs: []string{"https://fhir.example.org/" + id},
	}, manage.Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

// Issuer is a tenant's issuer URL on this server.
func (s *Server) Issuer(tenantID string) string { return s.URL + "/t/" + tenantID }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
