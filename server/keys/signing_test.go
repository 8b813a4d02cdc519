package keys

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/sqlite"
)

// keyStore opens a SQLite store holding tenants a and b, each with its keys.
func keyStore(t *testing.T, m *Manager) storage.Storage {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	m.store = st
	for _, id := range []string{"a", "b"} {
		ks, err := m.NewKeys(id)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CreateTenant(ctx, storage.Tenant{ID: id, Name: id}, ks); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func activeKID(t *testing.T, m *Manager, tenantID string) string {
	t.Helper()
	k, err := m.ActiveKey(context.Background(), tenantID, "ES256")
	if err != nil {
		t.Fatal(err)
	}
	return k.KeyID
}

// TestForget shows a key change made elsewhere is used once the Manager is
// told of it, however long the list would otherwise be kept, and that
// forgetting one tenant keeps the others' keys.
func TestForget(t *testing.T) {
	ctx := context.Background()
	m := NewManager(nil, testSealer(t), nil)
	st := keyStore(t, m)
	m.SetListCacheTTL(time.Hour)
	oldA, oldB := activeKID(t, m, "a"), activeKID(t, m, "b")

	// Another process rotates a's keys.
	other := NewManager(st, m.sealer, nil)
	if _, err := other.Rotate(ctx, "a", time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := activeKID(t, m, "a"); got != oldA {
		t.Fatalf("key list not kept for the TTL: signs with %s, want the cached %s", got, oldA)
	}
	m.Forget("a")
	newA := activeKID(t, m, "a")
	if newA == oldA {
		t.Fatalf("still signs with %s after Forget", oldA)
	}
	m.mu.Lock()
	_, keptA := m.cache["a\x00"+oldA]
	_, keptB := m.cache["b\x00"+oldB]
	_, keptListB := m.lists["b"]
	m.mu.Unlock()
	if keptA {
		t.Errorf("the private key of a's old key is still held")
	}
	if !keptB || !keptListB {
		t.Errorf("forgetting a dropped b's keys: private %v, list %v", keptB, keptListB)
	}

	if _, err := other.Rotate(ctx, "b", time.Hour); err != nil {
		t.Fatal(err)
	}
	m.ForgetAll()
	if got := activeKID(t, m, "b"); got == oldB {
		t.Fatalf("b still signs with %s after ForgetAll", oldB)
	}
}

// forgetting calls during after reading the keys, as a Forget arriving
// while a list is read would.
type forgetting struct {
	storage.Storage
	during func()
}

func (f forgetting) ListSigningKeys(ctx context.Context, tenantID string) ([]storage.SigningKey, error) {
	ks, err := f.Storage.ListSigningKeys(ctx, tenantID)
	if f.during != nil {
		f.during()
	}
	return ks, err
}

// TestForgetDuringRead shows a list read before a Forget is not kept: the
// forget may stand for a change the read missed.
func TestForgetDuringRead(t *testing.T) {
	m := NewManager(nil, testSealer(t), nil)
	st := keyStore(t, m)
	m.SetListCacheTTL(time.Hour)
	m.store = forgetting{Storage: st, during: func() { m.Forget("a") }}
	activeKID(t, m, "a")
	m.mu.Lock()
	_, kept := m.lists["a"]
	m.mu.Unlock()
	if kept {
		t.Fatal("a list read across a Forget was kept")
	}
	m.store = st
	activeKID(t, m, "a")
	m.mu.Lock()
	_, kept = m.lists["a"]
	m.mu.Unlock()
	if !kept {
		t.Fatal("a list read with no Forget under way was not kept")
	}
}

// TestListCacheTTL shows the list is read again once older than the TTL.
func TestListCacheTTL(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	m := NewManager(nil, testSealer(t), func() time.Time { return now })
	st := keyStore(t, m)
	m.SetListCacheTTL(time.Minute)
	old := activeKID(t, m, "a")
	if _, err := NewManager(st, m.sealer, nil).Rotate(ctx, "a", time.Hour); err != nil {
		t.Fatal(err)
	}
	now = now.Add(ListCacheTTL)
	if got := activeKID(t, m, "a"); got != old {
		t.Fatalf("list dropped at the default TTL despite a longer one set")
	}
	now = now.Add(time.Minute)
	if got := activeKID(t, m, "a"); got == old {
		t.Fatalf("list kept past its TTL: signs with %q", got)
	}
}

// TestEnsureKey shows a tenant gains a PS256 key beside its others only
// once, that rotation then keeps one, and that another process's Manager
// finds the new key at once however long it keeps lists.
func TestEnsureKey(t *testing.T) {
	ctx := context.Background()
	m := NewManager(nil, testSealer(t), nil)
	st := keyStore(t, m)
	other := NewManager(st, m.sealer, nil)
	other.SetListCacheTTL(time.Hour)
	if _, err := other.ActiveKey(ctx, "a", "ES256"); err != nil {
		t.Fatal(err)
	}
	beforeES := activeKID(t, m, "a")

	for i, want := range []bool{true, false} {
		kid, err := m.EnsureKey(ctx, "a", "PS256")
		if err != nil {
			t.Fatal(err)
		}
		if added := kid != ""; added != want {
			t.Fatalf("call %d: added = %v, want %v", i+1, added, want)
		}
	}
	ps, err := other.ActiveKey(ctx, "a", "PS256")
	if err != nil {
		t.Fatalf("the other Manager does not find the added key: %v", err)
	}
	if ps.Algorithm != "PS256" {
		t.Errorf("key alg = %q, want PS256", ps.Algorithm)
	}
	if got := activeKID(t, m, "a"); got != beforeES {
		t.Errorf("adding a PS256 key changed the active ES256 key")
	}
	if _, err := m.ActiveKey(ctx, "b", "PS256"); err == nil {
		t.Error("tenant b has a PS256 key it never asked for")
	}

	ks, err := m.Rotate(ctx, "a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	active := map[string]int{}
	for _, k := range ks {
		if k.Status == storage.KeyActive {
			active[k.Alg]++
		}
	}
	if active["PS256"] != 1 || active["RS256"] != 1 || active["ES256"] != 1 {
		t.Errorf("active keys per algorithm after rotation = %v, want one each of RS256, PS256, ES256", active)
	}

	// A tenant whose setting names PS256 gets one at rotation even without one before.
	b, err := st.GetTenant(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	b.Policy.AccessTokenAlg = "PS256"
	if err := st.UpdateTenant(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Rotate(ctx, "b", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ActiveKey(ctx, "b", "PS256"); err != nil {
		t.Errorf("rotation left tenant b, set to PS256, without a PS256 key: %v", err)
	}
}
