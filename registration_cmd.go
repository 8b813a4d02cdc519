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
}

// initialAccessTokenCommand declares the flags of "client
// initial-access-token" and returns its action.
func initialAccessTokenCommand(ctx context.Context, fs *flag.FlagSet, tenant *string) func(d *deps) (any, error) {
	ttl := fs.Duration("ttl", manage.DefaultInitialAccessTTL, "how long the token may be used to register one client (at most 720h)")
	return func(d *deps) (any, error) {
		token, exp, err := d.manage.CreateInitialAccessToken(ctx, *tenant, *ttl, cliActor)
		if err != nil {
			return nil, err
		}
		return initialAccessTokenJSON{Token: token, ExpiresAt: exp}, nil
	}
}
