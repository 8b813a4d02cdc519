package server_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

func TestAdminKeys(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	ctx := context.Background()
	old, err := e.srv.Store.ListSigningKeys(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	op := adminSignIn(t, e.srv, "/admin", operatorEmail, "")
	p := op.get("/admin/t/acme/keys")
	if p.status != http.StatusOK || !strings.Contains(p.body, `value="24h"`) || !strings.Contains(p.body, "at least the longest token lifetime, 1h,") {
		t.Fatalf("keys page: status %d, want the 24h default window: %s", p.status, p.body)
	}
	for _, k := range old {
		if !strings.Contains(p.body, "<code>"+k.KID+"</code>") {
			t.Errorf("keys page does not list %s", k.KID)
		}
	}

	for _, tc := range []struct{ retirement, want string }{
		{"soon", `Retirement window "soon" is not a duration`},
		{"-1h", "retirement window must not be negative"},
		{"999999h", "retirement window 999999h0m0s is longer than the most allowed, 720h0m0s (30 days)"},
		{"1s", "retirement window 1s is shorter than the access token lifetime, 1h0m0s: tokens the old keys already signed would stop verifying"},
		{"59m", "retirement window 59m0s is shorter than the access token lifetime, 1h0m0s"},
	} {
		p := op.post("/admin/t/acme/keys/rotate", url.Values{"retirement": {tc.retirement}})
		if p.status != http.StatusBadRequest || !strings.Contains(html.UnescapeString(p.body), tc.want) ||
			!strings.Contains(p.body, `value="`+tc.retirement+`"`) {
			t.Errorf("rotate with %q: status %d, want 400 with %q and the typed window: %s", tc.retirement, p.status, tc.want, p.body)
		}
	}
	if ks, _ := e.srv.Store.ListSigningKeys(ctx, "acme"); len(ks) != len(old) {
		t.Fatalf("a refused rotation changed the keys: %d, want %d", len(ks), len(old))
	}

	before := e.srv.Clock.Now()
	wantRedirect(t, e.srv, "rotate", op.post("/admin/t/acme/keys/rotate", url.Values{"retirement": {"1h"}}), "/admin/t/acme/keys?notice=rotated")
	after := e.srv.Clock.Now()
	ks, err := e.srv.Store.ListSigningKeys(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]storage.SigningKey{}
	var fresh []string
	for _, k := range ks {
		status[k.KID] = k
		if k.Status == storage.KeyActive {
			fresh = append(fresh, k.KID)
		}
	}
	for _, k := range old {
		got := status[k.KID]
		if got.Status != storage.KeyRetiring || got.RetiresAt.Before(before.Add(time.Hour).Truncate(time.Second)) || got.RetiresAt.After(after.Add(time.Hour)) {
			t.Errorf("old key %s after rotation: %s until %v, want retiring an hour from now", k.KID, got.Status, got.RetiresAt)
		}
	}
	if len(fresh) != len(old) {
		t.Fatalf("%d active keys after rotation, want %d", len(fresh), len(old))
	}
	if ev := newestAudit(t, e.srv, "acme", "admin.keys.rotate"); ev.ActorID != "operator:"+e.operatorID || ev.Details["retirement"] != "1h0m0s" {
		t.Errorf("rotation audit: actor %q, details %v", ev.ActorID, ev.Details)
	}
	if p := op.get("/admin/t/acme/keys?notice=rotated"); !strings.Contains(p.body, "New signing keys are active.") || !strings.Contains(p.body, fresh[0]) {
		t.Errorf("keys page after rotation: %s", p.body)
	}

	// Retire one of the replaced keys: it stays published for the access
	// token lifetime, so tokens it signed still verify.
	kept := old[1].KID
	wantRedirect(t, e.srv, "retire", op.post("/admin/t/acme/keys/retire", url.Values{"kid": {kept}}), "/admin/t/acme/keys?notice=retired")
	if ks, err := e.srv.Store.ListSigningKeys(ctx, "acme"); err != nil {
		t.Fatal(err)
	} else {
		for _, k := range ks {
			if k.KID == kept && (k.Status != storage.KeyRetiring || !k.RetiresAt.After(e.srv.Clock.Now().Add(59*time.Minute))) {
				t.Errorf("key retired in the ordinary way: %s until %v, want published for the next hour", k.Status, k.RetiresAt)
			}
		}
	}
	if ev := newestAudit(t, e.srv, "acme", "admin.keys.retire"); ev.Details["kid"] != kept || ev.Details["compromised"] != "false" {
		t.Errorf("retirement audit: details %v", ev.Details)
	}

	// Retire another at once, as compromised.
	gone := old[0].KID
	wantRedirect(t, e.srv, "retire", op.post("/admin/t/acme/keys/retire", url.Values{"kid": {gone}, "compromised": {"yes"}}), "/admin/t/acme/keys?notice=removed")
	now := e.srv.Clock.Now()
	if k, err := e.srv.Store.ListSigningKeys(ctx, "acme"); err != nil {
		t.Fatal(err)
	} else {
		for _, k := range k {
			if k.KID == gone && (k.Status != storage.KeyRetiring || k.RetiresAt.After(now)) {
				t.Errorf("retired key: %s until %v, want gone by %v", k.Status, k.RetiresAt, now)
			}
		}
	}
	if ev := newestAudit(t, e.srv, "acme", "admin.keys.retire"); ev.ActorID != "operator:"+e.operatorID || ev.Details["kid"] != gone || ev.Details["compromised"] != "true" {
		t.Errorf("retirement audit: actor %q, details %v", ev.ActorID, ev.Details)
	}
	p = op.get("/admin/t/acme/keys?notice=removed")
	if strings.Contains(p.body, `name="kid" value="`+gone+`"`) || !strings.Contains(p.body, "retired") || !strings.Contains(p.body, "tokens it signed no longer verify") {
		t.Errorf("keys page still offers to retire the retired key: %s", p.body)
	}

	// The last active key of an algorithm stays; an unknown key is not found.
	for _, tc := range []struct {
		kid    string
		status int
		want   string
	}{
		{fresh[0], http.StatusBadRequest, "rotate the keys first"},
		{"no-such-key", http.StatusNotFound, "no signing key with that id"},
	} {
		p := op.post("/admin/t/acme/keys/retire", url.Values{"kid": {tc.kid}})
		if p.status != tc.status || !strings.Contains(p.body, tc.want) {
			t.Errorf("retire %s: status %d, want %d with %q: %s", tc.kid, p.status, tc.status, tc.want, p.body)
		}
	}

	// A tenant's admin names only the tenant's own keys.
	otherKeys, err := e.srv.Store.ListSigningKeys(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	admin := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
	if p := admin.post("/admin/t/acme/keys/retire", url.Values{"kid": {otherKeys[0].KID}}); p.status != http.StatusNotFound {
		t.Errorf("acme's admin retiring other's key through acme: status %d, want 404", p.status)
	}
	if after, _ := e.srv.Store.ListSigningKeys(ctx, "other"); after[0].Status != storage.KeyActive {
		t.Errorf("other's key changed: %+v", after[0])
	}
}
