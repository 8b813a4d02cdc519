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
	Token string `json:"token"`
	// Ref names the token to list and revoke it.
	Ref       string    `json:"ref"`
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
		return initialAccessTokenJSON{Token: token, Ref: manage.InitialAccessTokenRef(token), ExpiresAt: exp,
			BackendServices: allow.BackendServices}, nil
	}
}

// outstandingTokenJSON is an unused, unexpired initial access token as
// "client list-initial-access-tokens" prints it: never its value.
type outstandingTokenJSON struct {
	Ref             string    `json:"ref"`
	BackendServices bool      `json:"backend_services"`
	CreatedBy       string    `json:"created_by"`
	CreatedAt       time.Time `json:"created_at"`
	ExpiresAt       time.Time `json:"expires_at"`
}

// listInitialAccessTokensCommand is "client list-initial-access-tokens".
func listInitialAccessTokensCommand(ctx context.Context, tenant *string) func(d *deps) (any, error) {
	return func(d *deps) (any, error) {
		ts, err := d.manage.ListInitialAccessTokens(ctx, *tenant)
		if err != nil {
			return nil, err
		}
		out := make([]outstandingTokenJSON, 0, len(ts))
		for _, t := range ts {
			out = append(out, outstandingTokenJSON{Ref: t.Ref, BackendServices: t.Allowance.BackendServices,
				CreatedBy: t.CreatedBy, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt})
		}
		return out, nil
	}
}

// revokeInitialAccessTokenCommand declares the flags of "client
// revoke-initial-access-token" and returns its action.
func revokeInitialAccessTokenCommand(ctx context.Context, fs *flag.FlagSet, tenant *string) func(d *deps) (any, error) {
	ref := fs.String("ref", "", "the token's ref, as printed when it was made or listed (required)")
	return func(d *deps) (any, error) {
		return map[string]string{"revoked": *ref}, d.manage.RevokeInitialAccessToken(ctx, *tenant, *ref, cliActor)
	}
}
