package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/storage"
)

// idpJSON shows an identity provider; the client secret is never printed,
// sealed or not.
type idpJSON struct {
	Tenant          string                           `json:"tenant"`
	ID              string                           `json:"id"`
	Type            storage.IdentityProviderType     `json:"type"`
	DisplayName     string                           `json:"display_name,omitempty"`
	Settings        storage.IdentityProviderSettings `json:"settings"`
	ClientSecretSet bool                             `json:"client_secret_set"`
	ClaimMapping    storage.ClaimMapping             `json:"claim_mapping"`
	FederationOnly  bool                             `json:"federation_only"`
	Domains         []string                         `json:"domains"`
}

func idpView(p storage.IdentityProvider, routes []storage.DomainRoute) idpJSON {
	v := idpJSON{Tenant: p.TenantID, ID: p.ID, Type: p.Type, DisplayName: p.DisplayName, Settings: p.Settings,
		ClientSecretSet: len(p.ClientSecretSealed) > 0, ClaimMapping: p.ClaimMapping, FederationOnly: p.FederationOnly, Domains: []string{}}
	for _, r := range routes {
		if r.ProviderID != p.ID {
			continue
		}
		d := r.Domain
		if r.IncludeSubdomains {
			d = "*." + d
		}
		v.Domains = append(v.Domains, d)
	}
	return v
}

// idpCommand declares the flags of "idp add|list|delete" and returns the
// action, the required flags and the records the command names.
func idpCommand(ctx context.Context, verb string, fs *flag.FlagSet, tenant *string, stdin io.Reader) (func(d *deps) (any, error), []string, func() []record) {
	switch verb {
	case "list":
		return func(d *deps) (any, error) {
			ps, err := d.store.ListIdentityProviders(ctx, *tenant)
			if err != nil {
				return nil, err
			}
			rs, err := d.store.ListDomainRoutes(ctx, *tenant)
			out := []idpJSON{}
			for _, p := range ps {
				out = append(out, idpView(p, rs))
			}
			return out, err
		}, nil, func() []record { return nil }
	case "delete":
		id := fs.String("id", "", "identity provider id (required)")
		return func(d *deps) (any, error) {
			if err := d.manage.DeleteIdentityProvider(ctx, *tenant, *id, cliActor); err != nil {
				return nil, err
			}
			return map[string]any{"tenant": *tenant, "id": *id, "deleted": true}, nil
		}, []string{"id"}, func() []record { return []record{idpRecord(*tenant, *id)} }
	}
	var in manage.IdentityProviderInput
	var typ string
	var domains, scopes, groupRoles listFlag
	var noSecret bool
	fs.StringVar(&in.ID, "id", "", "identity provider id, such as okta (required)")
	fs.StringVar(&typ, "type", "", "oidc, cognito or okta (required)")
	fs.StringVar(&in.DisplayName, "name", "", "display name")
	fs.StringVar(&in.Settings.Issuer, "issuer", "", "issuer URL (type oidc)")
	fs.StringVar(&in.Settings.Region, "region", "", "AWS region (type cognito)")
	fs.StringVar(&in.Settings.UserPoolID, "user-pool-id", "", "user pool id, such as eu-west-1_AbC123 (type cognito)")
	fs.StringVar(&in.Settings.HostedUIDomain, "hosted-ui-domain", "", "hosted UI domain (type cognito)")
	fs.StringVar(&in.Settings.OrgURL, "org-url", "", "Okta org URL, such as https://clinic.okta.com (type okta)")
	fs.StringVar(&in.Settings.AuthorizationServerID, "authorization-server-id", "", `Okta authorization server id (default "default")`)
	fs.StringVar(&in.Settings.ClientID, "client-id", "", "client id registered at the provider (required)")
	fs.BoolVar(&noSecret, "public", false, "the client has no secret (otherwise the secret is read from stdin)")
	fs.Var(&scopes, "scope", "scopes to ask for besides openid (repeatable; default email, profile)")
	fs.BoolVar(&in.Settings.UserInfo, "userinfo", false, "also read claims from the userinfo endpoint")
	fs.Var(&domains, "domain", `email domain routed to the provider; "*.example.org" includes subdomains (repeatable)`)
	fs.BoolVar(&in.FederationOnly, "federation-only", false, "no local passwords for the provider's domains")
	fs.StringVar(&in.ClaimMapping.TenantClaim, "tenant-claim", "", "claim that must equal the tenant id, such as custom:tenant_id")
	fs.StringVar(&in.ClaimMapping.PatientClaim, "patient-claim", "", "claim giving the Patient id, such as custom:patient_id")
	fs.StringVar(&in.ClaimMapping.FHIRUserClaim, "fhir-user-claim", "", "claim giving fhirUser, such as fhirUser")
	fs.StringVar(&in.ClaimMapping.GroupsClaim, "groups-claim", "", "claim listing groups, such as groups or cognito:groups")
	fs.Var(&groupRoles, "group-role", `group=role label, such as "Doctors=Attending physician" (repeatable)`)
	names := func() []record {
		rs := []record{creating(idpRecord(*tenant, in.ID))}
		for _, d := range domains {
			rs = append(rs, creating(domainRecord(*tenant, d)))
		}
		return rs
	}
	return func(d *deps) (any, error) {
		in.Type = storage.IdentityProviderType(typ)
		in.Domains = domains
		if len(scopes) > 0 {
			in.Settings.Scopes = strings.Fields(strings.Join(scopes, " "))
		}
		for _, gr := range groupRoles {
			g, role, ok := strings.Cut(gr, "=")
			if !ok || g == "" || role == "" {
				return nil, usageError{fmt.Sprintf("idp add: --group-role %q must be group=role label", gr)}
			}
			if in.ClaimMapping.GroupRoles == nil {
				in.ClaimMapping.GroupRoles = map[string]string{}
			}
			in.ClaimMapping.GroupRoles[g] = role
		}
		if !noSecret {
			secret, err := readClientSecret(stdin, "idp add reads the client secret from stdin: pipe it in, or pass --public")
			if err != nil {
				return nil, err
			}
			in.ClientSecret = secret
		}
		p, routes, err := d.manage.AddIdentityProvider(ctx, *tenant, in, cliActor)
		if err != nil {
			return nil, err
		}
		return idpView(p, routes), nil
	}, []string{"id", "type", "client-id"}, names
}
