package main

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"
)

// TestKeysListCommand: keys list shows each key's state as the JWKS sees
// it, and only the public facts of a key.
func TestKeysListCommand(t *testing.T) {
	onBothBackends(t, func(t *testing.T, env testEnv) {
		env.ok(t, nil, "", "tenant", "create", "--id", "clinic", "--fhir-base-url", "https://fhir.example/r4")
		env.ok(t, nil, "", "tenant", "create", "--id", "other", "--fhir-base-url", "https://fhir.example/r4")
		env.ok(t, nil, "", "keys", "rotate", "--tenant", "clinic")
		s := env.store(t)
		ctx := context.Background()
		stored, err := s.ListSigningKeys(ctx, "clinic")
		if err != nil || len(stored) != 4 {
			t.Fatalf("stored keys: %d, %v", len(stored), err)
		}
		// One of the rotated-out keys has left the JWKS already.
		retired := stored[len(stored)-1]
		if err := s.RetireSigningKey(ctx, "clinic", retired.KID, time.Now().Add(-time.Minute).UTC().Truncate(time.Microsecond)); err != nil {
			t.Fatal(err)
		}

		code, out, errs := env.cli(t, "", "keys", "list", "--tenant", "clinic")
		if code != 0 {
			t.Fatalf("keys list: exit %d\n%s", code, errs)
		}
		var raw []map[string]any
		if err := json.Unmarshal([]byte(out), &raw); err != nil {
			t.Fatal(err)
		}
		public := []string{"kid", "alg", "status", "created_at", "retires_at"}
		for _, k := range raw {
			for field := range k {
				if !slices.Contains(public, field) {
					t.Errorf("keys list prints %q of key %v", field, k["kid"])
				}
			}
		}
		var ks []keyJSON
		env.ok(t, &ks, "", "keys", "list", "--tenant", "clinic")
		want := map[string]string{}
		for i, k := range stored {
			switch {
			case k.KID == retired.KID:
				want[k.KID] = "retired"
			case i < 2:
				want[k.KID] = "active" // newest first
			default:
				want[k.KID] = "retiring"
			}
		}
		if len(ks) != len(want) {
			t.Fatalf("keys list printed %d keys, want %d", len(ks), len(want))
		}
		for i, k := range ks {
			if k.KID != stored[i].KID || k.Alg != stored[i].Alg || k.Status != want[k.KID] || !k.CreatedAt.Equal(stored[i].CreatedAt) {
				t.Errorf("key %d: %+v, want kid %s alg %s status %s", i, k, stored[i].KID, stored[i].Alg, want[k.KID])
			}
			if (k.RetiresAt != nil) != (want[k.KID] != "active") {
				t.Errorf("key %s (%s) retires at %v", k.KID, k.Status, k.RetiresAt)
			}
		}

		var others []keyJSON
		env.ok(t, &others, "", "keys", "list", "--tenant", "other")
		if len(others) != 2 || slices.ContainsFunc(others, func(k keyJSON) bool { _, ok := want[k.KID]; return ok }) {
			t.Fatalf("another tenant's keys: %+v", others)
		}
	})
}
