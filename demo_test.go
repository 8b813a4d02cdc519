package main

import (
	"context"
	"strings"
	"testing"

	"github.com/smartauth/smartauth/server/password"
	"github.com/smartauth/smartauth/storage"
)

// TestDemoOperatorStaysOnLoopback: a demo operator left in the database
// with its published password keeps the server off the network, since
// whoever reached it first could take the operator account.
func TestDemoOperatorStaysOnLoopback(t *testing.T) {
	onBothBackends(t, func(t *testing.T, env testEnv) {
		env["SMARTAUTH_DEMO"] = "true"
		_, banner, stop := startServe(t, env)
		if code := stop(); code != 0 {
			t.Fatalf("demo serve exited %d", code)
		}
		if hint := banner.String(); strings.Contains(hint, "DATABASE_URL") || !strings.Contains(hint, "--demo=false") {
			t.Errorf("the start-up hint says a DATABASE_URL turns the demo off, or not how to:\n%s", hint)
		}
		delete(env, "SMARTAUTH_DEMO")

		refusal := "the demo operator " + demoOperator + " can still sign in with its public password, and this server "
		understood := demoOnNetworkEnv + "=true (--" + demoOnNetworkFlag + ")"
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"every interface", []string{"serve", "--addr", "0.0.0.0:0"}, refusal + "listens on 0.0.0.0:0: "},
			{"public URL", []string{"serve", "--addr", "127.0.0.1:0", "--base-url", "https://auth.example"}, refusal + "has the public URL https://auth.example: "},
			{"demo off", []string{"serve", "--addr", "0.0.0.0:0", "--demo=false"}, understood},
		} {
			t.Run(tc.name, func(t *testing.T) {
				env.fails(t, 1, tc.want, "", tc.args...)
			})
		}

		// The long setting says the operator understands: it serves, and
		// without seeding the demo, which was not asked for.
		env["SMARTAUTH_BASE_URL"] = "https://auth.example"
		env[demoOnNetworkEnv] = "true"
		_, out, stop := startServe(t, env)
		if code := stop(); code != 0 || strings.Contains(out.String(), "Demo tenant") {
			t.Fatalf("understood: exit %d, output:\n%s", code, out)
		}
		delete(env, demoOnNetworkEnv)

		// Once its password is no longer the published one, the server serves.
		s := env.store(t)
		ctx := context.Background()
		u, err := s.GetUserByEmail(ctx, storage.OperatorRealm, demoOperator)
		if err != nil {
			t.Fatal(err)
		}
		if u.PasswordHash, err = password.Hash("a private passphrase"); err != nil {
			t.Fatal(err)
		}
		if err := s.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		_, _, stop = startServe(t, env)
		if code := stop(); code != 0 {
			t.Fatalf("serve after the password change exited %d", code)
		}
	})
}
