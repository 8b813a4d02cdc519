package main

import (
	"context"
	"flag"
	"time"

	"github.com/smartauth/smartauth/server/manage"
)

// initialAccessTokenJSON is a new initial access token, printed once: only
// its digest is stored.
type initialAccessTokenJSON struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	// BackendServices says whether the token may register a backend service.
	BackendServices bool `json:"backend_services"`
}

// initialAccessTokenCommand declares the flags of "client
// initial-access-token" and returns its action.
func initialAccessTokenCommand(ctx context.Context, fs *flag.FlagSet, tenant *string) func(d *deps) (any, error) {
	ttl := fs.Duration("ttl", manage.DefaultInitialAccessTTL, "how long the token may be used to register one client (at most 720h)")
	backends := fs.Bool("allow-backend-services", false,
		"let the token register a backend service (client_credentials with system/ scopes), which reads and writes the whole tenant's data with no user signed in")
	return func(d *deps) (any, error) {
		allow := manage.InitialAccessAllowance{BackendServices: *backends}
		token, exp, err := d.manage.CreateInitialAccessToken(ctx, *tenant, *ttl, allow, cliActor)
		if err != nil {
			return nil, err
		}
		return initialAccessTokenJSON{Token: token, ExpiresAt: exp, BackendServices: allow.BackendServices}, nil
	}
}
