package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/sqlite"
)

// migratedSQLite opens a fresh, migrated SQLite store, closed after the test.
func migratedSQLite(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestClientCache(t *testing.T) {
	ctx := context.Background()
	st := migratedSQLite(t)
	if err := st.CreateTenant(ctx, storage.Tenant{ID: "t", Name: "t", FHIRBaseURLs: []string{"https://f.example"}}, nil); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := newClientCache(st, ClientCacheTTL, func() time.Time { return now })
	cl := storage.Client{TenantID: "t", ID: "c", Name: "one", Type: storage.ClientPublic}
	if err := st.CreateClient(ctx, cl); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetClient(ctx, "t", "c"); err != nil || got.Name != "one" {
		t.Fatalf("first read: %+v %v", got, err)
	}

	// A change behind the cache's back shows once the entry is stale.
	cl.Name = "two"
	if err := st.UpdateClient(ctx, cl); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.GetClient(ctx, "t", "c"); got.Name != "one" {
		t.Fatalf("fresh entry not served from memory: %q", got.Name)
	}
	now = now.Add(ClientCacheTTL)
	if got, _ := c.GetClient(ctx, "t", "c"); got.Name != "two" {
		t.Fatalf("stale entry served: %q", got.Name)
	}

	// Changes through the cache take effect at once.
	cl.Name = "three"
	if err := c.UpdateClient(ctx, cl); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.GetClient(ctx, "t", "c"); got.Name != "three" {
		t.Fatalf("after update through the cache: %q", got.Name)
	}
	if err := c.DeleteClient(ctx, "t", "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetClient(ctx, "t", "c"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted client still served: %v", err)
	}
	// Tenants do not share entries.
	if _, err := c.GetClient(ctx, "other", "c"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("another tenant's lookup: %v", err)
	}
}

// TestAdminStore shows administrative writes read the database and drop
// what this process cached, so an admin's change applies here at once.
func TestAdminStore(t *testing.T) {
	ctx := context.Background()
	st := migratedSQLite(t)
	if err := st.CreateTenant(ctx, storage.Tenant{ID: "t", Name: "one", FHIRBaseURLs: []string{"https://f.example"}}, nil); err != nil {
		t.Fatal(err)
	}
	cl := storage.Client{TenantID: "t", ID: "c", Name: "one", Type: storage.ClientPublic}
	if err := st.CreateClient(ctx, cl); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clock := func() time.Time { return now }
	clients, tenants := newClientCache(st, ClientCacheTTL, clock), newTenantCache(st, TenantCacheTTL, clock)
	admin := adminStore{clientCache: clients, tenants: tenants}
	if _, err := clients.GetClient(ctx, "t", "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := tenants.get(ctx, "t"); err != nil {
		t.Fatal(err)
	}

	// A change made elsewhere is what an admin edit starts from.
	cl.Name = "two"
	if err := st.UpdateClient(ctx, cl); err != nil {
		t.Fatal(err)
	}
	if got, err := admin.GetClient(ctx, "t", "c"); err != nil || got.Name != "two" {
		t.Fatalf("admin read %q, %v; want the database's two", got.Name, err)
	}
	// An admin's deletion and tenant edit apply to this process at once.
	if err := admin.DeleteClient(ctx, "t", "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := clients.GetClient(ctx, "t", "c"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("client deleted by an admin still served: %v", err)
	}
	tn, err := st.GetTenant(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	tn.Name = "two"
	if err := admin.UpdateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	if got, err := tenants.get(ctx, "t"); err != nil || got.Name != "two" {
		t.Fatalf("tenant after an admin edit: %q, %v", got.Name, err)
	}
}

// TestCacheForgetDuringLoad shows a value loaded before a forget is not
// kept: the forget may stand for a change the load missed.
func TestCacheForgetDuringLoad(t *testing.T) {
	ctx := context.Background()
	var c *ttlCache[string, int]
	loads, during := 0, func() {}
	c = newTTLCache(time.Hour, time.Now, func(context.Context, string) (int, error) {
		loads++
		during()
		return loads, nil
	})
	during = func() { c.forget("other") }
	if v, _ := c.get(ctx, "k"); v != 1 {
		t.Fatalf("first load: %d", v)
	}
	during = func() {}
	if v, _ := c.get(ctx, "k"); v != 2 {
		t.Fatalf("a value loaded across a forget was kept: got %d, want a second load", v)
	}
	if v, _ := c.get(ctx, "k"); v != 2 {
		t.Fatalf("a value loaded with no forget under way was not kept: got %d", v)
	}
}

// TestForgetChanged feeds change events to a server's caches, with TTLs
// far longer than the test, and shows each event drops what it names and
// no more, and that a lost or resumed feed drops everything.
func TestForgetChanged(t *testing.T) {
	ctx := context.Background()
	st := migratedSQLite(t)
	sealer, err := keys.NewSealer(bytes.Repeat([]byte{1}, keys.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	km := keys.NewManager(st, sealer, nil)
	km.SetListCacheTTL(time.Hour)
	for _, id := range []string{"a", "b"} {
		ks, err := km.NewKeys(id)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CreateTenant(ctx, storage.Tenant{ID: id, Name: "one"}, ks); err != nil {
			t.Fatal(err)
		}
		for _, c := range []string{"c", "d"} {
			if err := st.CreateClient(ctx, storage.Client{TenantID: id, ID: c, Name: "one", Type: storage.ClientPublic}); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := &Server{
		log:     slog.New(slog.DiscardHandler),
		clients: newClientCache(st, time.Hour, time.Now),
		tenants: newTenantCache(st, time.Hour, time.Now),
		keys:    km,
	}
	// rename changes every record behind the caches' back; seen reports
	// which of them the caches now answer with.
	gen := 0
	rename := func() {
		gen++
		name := fmt.Sprint(gen)
		for _, id := range []string{"a", "b"} {
			tn, err := st.GetTenant(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			tn.Name = name
			if err := st.UpdateTenant(ctx, tn); err != nil {
				t.Fatal(err)
			}
			for _, c := range []string{"c", "d"} {
				cl, err := st.GetClient(ctx, id, c)
				if err != nil {
					t.Fatal(err)
				}
				cl.Name = name
				if err := st.UpdateClient(ctx, cl); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := keys.NewManager(st, sealer, nil).Rotate(ctx, id, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
	}
	activeKID := func(tenantID string) string {
		k, err := km.ActiveKey(ctx, tenantID, "ES256")
		if err != nil {
			t.Fatal(err)
		}
		return k.KeyID
	}
	newest := func(tenantID string) string {
		ks, err := st.ListSigningKeys(ctx, tenantID)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range ks {
			if k.Status == storage.KeyActive && k.Alg == "ES256" {
				return k.KID
			}
		}
		t.Fatalf("tenant %s has no active key", tenantID)
		return ""
	}
	seen := func() []string {
		var out []string
		for _, id := range []string{"a", "b"} {
			tn, err := s.tenants.get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if tn.Name == fmt.Sprint(gen) {
				out = append(out, "tenant "+id)
			}
			for _, c := range []string{"c", "d"} {
				cl, err := s.clients.GetClient(ctx, id, c)
				if err != nil {
					t.Fatal(err)
				}
				if cl.Name == fmt.Sprint(gen) {
					out = append(out, "client "+id+"/"+c)
				}
			}
			if activeKID(id) == newest(id) {
				out = append(out, "keys "+id)
			}
		}
		return out
	}

	everything := []string{"tenant a", "client a/c", "client a/d", "keys a", "tenant b", "client b/c", "client b/d", "keys b"}
	for _, tc := range []struct {
		name   string
		change storage.Change
		want   []string
	}{
		{"one client", storage.Change{Table: storage.ChangedClients, TenantID: "a", ID: "d"}, []string{"client a/d"}},
		{"clients of a tenant", storage.Change{Table: storage.ChangedClients, TenantID: "b"}, []string{"client b/c", "client b/d"}},
		{"every client", storage.Change{Table: storage.ChangedClients}, []string{"client a/c", "client a/d", "client b/c", "client b/d"}},
		{"one tenant", storage.Change{Table: storage.ChangedTenants, TenantID: "b", ID: "b"}, []string{"tenant b"}},
		{"every tenant", storage.Change{Table: storage.ChangedTenants}, []string{"tenant a", "tenant b"}},
		{"one tenant's keys", storage.Change{Table: storage.ChangedSigningKeys, TenantID: "a", ID: "some-kid"}, []string{"keys a"}},
		{"every tenant's keys", storage.Change{Table: storage.ChangedSigningKeys}, []string{"keys a", "keys b"}},
		{"another table", storage.Change{Table: "users", TenantID: "a", ID: "u"}, nil},
		{"feed lost", storage.Change{Err: errors.New("connection reset")}, everything},
		{"feed resumed", storage.Change{Resync: true}, everything},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen() // fill the caches
			rename()
			s.forgetChanged(tc.change)
			got, want := seen(), slices.Clone(tc.want)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("fresh after the change: %q, want %q", got, want)
			}
		})
	}
}
