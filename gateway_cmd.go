package main

import (
	"context"
	"flag"
	"io"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/storage"
)

// gatewayJSON shows a tenant's gateway settings; a static header value is
// never printed, only that it is sealed.
type gatewayJSON struct {
	Tenant       string `json:"tenant"`
	UpstreamURL  string `json:"upstream_url"`
	UpstreamAuth string `json:"upstream_auth"`
	HeaderName   string `json:"header_name,omitempty"`
	HeaderValue  string `json:"header_value,omitempty"`
	UserHeader   string `json:"user_header"`
}

// gatewayCommand declares the flags of "tenant set-gateway" and "tenant
// clear-gateway" and returns the action and required flags.
func gatewayCommand(ctx context.Context, verb string, fs *flag.FlagSet, tenant *string, stdin io.Reader) (func(d *deps) (any, error), []string) {
	if verb == "clear-gateway" {
		return func(d *deps) (any, error) {
			if err := d.manage.ClearGateway(ctx, *tenant, cliActor); err != nil {
				return nil, err
			}
			return map[string]any{"tenant": *tenant, "gateway": nil}, nil
		}, nil
	}
	var in manage.GatewayInput
	fs.StringVar(&in.UpstreamURL, "upstream-url", "", "FHIR base URL the tenant's gateway forwards to (required)")
	fs.StringVar(&in.UpstreamAuth, "upstream-auth", storage.GatewayAuthNone,
		"how the gateway authenticates upstream: none, client_credentials (the tenant's patient search client), header (value read from stdin) or forward (the app's token)")
	fs.StringVar(&in.HeaderName, "header-name", "", "name of the static header of --upstream-auth header, such as X-Api-Key")
	fs.StringVar(&in.UserHeader, "user-header", "", "header carrying the user's identity upstream (default "+storage.DefaultGatewayUserHeader+")")
	return func(d *deps) (any, error) {
		if in.UpstreamAuth == storage.GatewayAuthHeader {
			value, err := readClientSecret(stdin, "tenant set-gateway --upstream-auth header reads the header value from stdin: pipe it in")
			if err != nil {
				return nil, err
			}
			in.HeaderValue = value
		}
		g, err := d.manage.SetGateway(ctx, *tenant, in, cliActor)
		if err != nil {
			return nil, err
		}
		return gatewayView(*tenant, g), nil
	}, []string{"upstream-url"}
}

func gatewayView(tenantID string, g storage.GatewaySettings) gatewayJSON {
	v := gatewayJSON{Tenant: tenantID, UpstreamURL: g.UpstreamURL, UpstreamAuth: g.UpstreamAuth, HeaderName: g.HeaderName, UserHeader: g.UserHeader}
	if v.UpstreamAuth == "" {
		v.UpstreamAuth = storage.GatewayAuthNone
	}
	if v.UserHeader == "" {
		v.UserHeader = storage.DefaultGatewayUserHeader
	}
	if g.HeaderValueSealed != "" {
		v.HeaderValue = "(sealed)"
	}
	return v
}
