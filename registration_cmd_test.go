package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/sqlite"
)

func TestInitialAccessTokenCommand(t *testing.T) {
	env := newEnv(t)
	env.ok(t, nil, "", "tenant", "create", "--id", "clinic", "--fhir-base-url", "https://fhir.example/r4")

	var got initialAccessTokenJSON
	before := time.Now()
	env.ok(t, &got, "", "client", "initial-access-token", "--tenant", "clinic", "--ttl", "2h")
	if len(got.Token) != 43 || got.ExpiresAt.Before(before.Add(2*time.Hour-time.Second)) || got.ExpiresAt.After(time.Now().Add(2*time.Hour)) ||
		got.BackendServices {
		t.Fatalf("printed %+v, want a 256-bit token good for 2h, for user-facing apps only", got)
	}
	var def initialAccessTokenJSON
	env.ok(t, &def, "", "client", "initial-access-token", "--tenant", "clinic")
	if d := time.Until(def.ExpiresAt); d < 23*time.Hour || d > 24*time.Hour {
		t.Fatalf("default lifetime ends in %s, want 24h", d)
	}

	// The allowance is printed.
	var backend initialAccessTokenJSON
	env.ok(t, &backend, "", "client", "initial-access-token", "--tenant", "clinic", "--allow-backend-services")
	if !backend.BackendServices {
		t.Fatalf("printed %+v, want backend services allowed", backend)
	}

	// At rest only the digest: the token is nowhere in the database files.
	dir := env["SMARTAUTH_DATA_DIR"]
	files, _ := filepath.Glob(filepath.Join(dir, "smartauth.db*"))
	if len(files) == 0 {
		t.Fatal("no database file")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), got.Token) {
			t.Fatalf("%s holds the initial access token in the clear", filepath.Base(f))
		}
	}
	store, err := sqlite.Open(context.Background(), filepath.Join(dir, "smartauth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	sum := sha256.Sum256([]byte(got.Token))
	rec, err := store.GetToken(context.Background(), "clinic", storage.KindInitialAccess, hex.EncodeToString(sum[:]))
	if err != nil || !rec.Active || rec.Subject != cliActor.ID || !rec.ExpiresAt.Equal(got.ExpiresAt) {
		t.Fatalf("stored record %+v, %v", rec, err)
	}

	// The allowance is kept with the token.
	for _, tc := range []struct {
		token string
		want  bool
	}{{got.Token, false}, {backend.Token, true}} {
		sum := sha256.Sum256([]byte(tc.token))
		rec, err := store.GetToken(context.Background(), "clinic", storage.KindInitialAccess, hex.EncodeToString(sum[:]))
		var allow manage.InitialAccessAllowance
		if err != nil || json.Unmarshal(rec.Data, &allow) != nil || allow.BackendServices != tc.want {
			t.Fatalf("stored allowance of %+v: %+v, %v; want backend services %v", rec, allow, err, tc.want)
		}
	}

	env.fails(t, 2, "--tenant is required", "", "client", "initial-access-token")
	env.fails(t, 1, "at most 720h", "", "client", "initial-access-token", "--tenant", "clinic", "--ttl", "721h")
	env.fails(t, 1, `no tenant "nowhere"`, "", "client", "initial-access-token", "--tenant", "nowhere")
}

func TestInitialAccessTokenListAndRevokeCommands(t *testing.T) {
	env := newEnv(t)
	env.ok(t, nil, "", "tenant", "create", "--id", "clinic", "--fhir-base-url", "https://fhir.example/r4")
	var plain, backend initialAccessTokenJSON
	env.ok(t, &plain, "", "client", "initial-access-token", "--tenant", "clinic")
	env.ok(t, &backend, "", "client", "initial-access-token", "--tenant", "clinic", "--allow-backend-services")

	var listed []outstandingTokenJSON
	env.ok(t, &listed, "", "client", "list-initial-access-tokens", "--tenant", "clinic")
	if len(listed) != 2 || listed[0].Ref != plain.Ref || listed[0].BackendServices || listed[1].Ref != backend.Ref || !listed[1].BackendServices ||
		listed[0].CreatedBy != cliActor.ID || !listed[0].ExpiresAt.Equal(plain.ExpiresAt) {
		t.Fatalf("listed %+v, want the two tokens just made, by their refs", listed)
	}
	for _, o := range listed {
		if strings.Contains(o.Ref, plain.Token) || len(o.Ref) >= len(plain.Token) {
			t.Fatalf("a listed ref %q gives the token away", o.Ref)
		}
	}

	env.ok(t, nil, "", "client", "revoke-initial-access-token", "--tenant", "clinic", "--ref", backend.Ref)
	listed = nil
	env.ok(t, &listed, "", "client", "list-initial-access-tokens", "--tenant", "clinic")
	if len(listed) != 1 || listed[0].Ref != plain.Ref {
		t.Fatalf("listed after revoking %s: %+v, want only %s", backend.Ref, listed, plain.Ref)
	}
	env.fails(t, 1, `no outstanding initial access token "`+backend.Ref+`" in tenant "clinic"`, "", "client", "revoke-initial-access-token", "--tenant", "clinic", "--ref", backend.Ref)
	env.fails(t, 2, "--ref is required", "", "client", "revoke-initial-access-token", "--tenant", "clinic")
}
