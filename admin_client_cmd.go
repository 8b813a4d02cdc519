package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"strings"

	"github.com/smartauth/smartauth/server"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/storage"
)

// adminClientJSON is a new admin API client. The secret is printed this
// once: only its digest is stored.
type adminClientJSON struct {
	Tenant       string `json:"tenant,omitempty"`
	Operator     bool   `json:"operator"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Scope        string `json:"scope"`
	// TokenEndpoint is absolute when the base URL is known, else a path
	// below it.
	TokenEndpoint string `json:"token_endpoint"`
	APIBase       string `json:"api_base"`
}

// adminClientCommand declares the flags of "admin create-client" and
// returns its action: a confidential client for the client_credentials
// grant with the admin scope, of the operator realm (every tenant) or,
// with --tenant, of one tenant.
func adminClientCommand(ctx context.Context, fs *flag.FlagSet, env func(string) string) (func(d *deps) (any, error), []string) {
	tenant := fs.String("tenant", "", "make a client of this tenant's API only; without it, an operator's client for every tenant")
	name := fs.String("name", "", "display name, such as the automation it serves (required)")
	base := fs.String("base-url", env("SMARTAUTH_BASE_URL"), "public URL of the server, to print the token endpoint in full (SMARTAUTH_BASE_URL)")
	return func(d *deps) (any, error) {
		prefix := ""
		if *base != "" {
			u, err := url.Parse(*base)
			if err != nil || !u.IsAbs() || u.Host == "" {
				return nil, usageError{fmt.Sprintf("admin create-client: --base-url %q must be an absolute URL", *base)}
			}
			prefix = strings.TrimRight(u.String(), "/")
		}
		realm, tokenPath := storage.OperatorRealm, "/admin/token"
		if *tenant != "" {
			realm, tokenPath = *tenant, "/t/"+*tenant+"/token"
		} else if err := d.manage.EnsureOperatorRealm(ctx); err != nil {
			return nil, err
		}
		c, secret, err := d.manage.CreateClient(ctx, manage.ClientInput{
			TenantID: realm, Name: *name, Type: storage.ClientConfidentialSymmetric,
			Scopes: []string{server.AdminScope}, GrantTypes: []string{manage.GrantClientCredentials},
		}, cliActor)
		if err != nil {
			return nil, err
		}
		return adminClientJSON{Tenant: *tenant, Operator: *tenant == "", ClientID: c.ID, ClientSecret: secret,
			Scope: server.AdminScope, TokenEndpoint: prefix + tokenPath, APIBase: prefix + "/admin/api/v1"}, nil
	}, []string{"name"}
}
