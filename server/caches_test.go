package server

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/sqlite"
)

func TestClientCache(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateTenant(ctx, storage.Tenant{ID: "t", Name: "t", FHIRBaseURLs: []string{"https://f.example"}}, nil); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := newClientCache(st, func() time.Time { return now })
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
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateTenant(ctx, storage.Tenant{ID: "t", Name: "one", FHIRBaseURLs: []string{"https://f.example"}}, nil); err != nil {
		t.Fatal(err)
	}
	cl := storage.Client{TenantID: "t", ID: "c", Name: "one", Type: storage.ClientPublic}
	if err := st.CreateClient(ctx, cl); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clock := func() time.Time { return now }
	clients, tenants := newClientCache(st, clock), newTenantCache(st, clock)
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
