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
	env.fails(t, 1, "not found", "", "client", "initial-access-token", "--tenant", "nowhere")
}
