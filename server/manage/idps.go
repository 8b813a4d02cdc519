package manage

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/smartauth/smartauth/federation"
	"github.com/smartauth/smartauth/federation/oidc"
	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/storage"
)

var idpIDPattern = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$`)

// IdentityProviderInput is what an operator gives to add an upstream identity provider.
type IdentityProviderInput struct {
	ID          string
	Type        storage.IdentityProviderType
	DisplayName string
	// Settings hold the issuer (type oidc) or the preset fields, and the client id.
	Settings storage.IdentityProviderSettings
	// ClientSecret is sealed under the master key before it is stored; empty for a public client.
	ClientSecret string
	ClaimMapping storage.ClaimMapping
	// Domains are email domains routed to the provider; a leading "*." includes subdomains.
	Domains        []string
	FederationOnly bool
}

// idpSecretAAD binds a sealed client secret to its tenant and provider, so
// a sealed blob copied to another row cannot be opened there.
func idpSecretAAD(tenantID, providerID string) []byte {
	return []byte(strings.Join([]string{"identity-provider-client-secret", tenantID, providerID}, "\x00"))
}

// OpenIdentityProviderSecret opens a provider's sealed client secret; a
// provider without one yields "".
func OpenIdentityProviderSecret(sealer *keys.Sealer, p storage.IdentityProvider) (string, error) {
	if len(p.ClientSecretSealed) == 0 {
		return "", nil
	}
	secret, err := sealer.Open(p.ClientSecretSealed, idpSecretAAD(p.TenantID, p.ID))
	if err != nil {
		return "", fmt.Errorf("open the client secret of identity provider %q of tenant %q (wrong master key, or the row was altered): %w", p.ID, p.TenantID, err)
	}
	return string(secret), nil
}

// AddIdentityProvider validates the input, stores the provider with its
// secret sealed, and routes its domains to it, all audited.
func (s *Service) AddIdentityProvider(ctx context.Context, tenantID string, in IdentityProviderInput, who Actor) (storage.IdentityProvider, []storage.DomainRoute, error) {
	if !idpIDPattern.MatchString(in.ID) {
		return storage.IdentityProvider{}, nil, invalid("provider id %q must be 1-64 lower-case letters, digits and inner hyphens", in.ID)
	}
	if in.ClientSecret != "" && (len(in.ClientSecret) > 1024 || !printable(in.ClientSecret)) {
		return storage.IdentityProvider{}, nil, invalid("client secret must be 1-1024 printable characters")
	}
	now := s.timestamp()
	p := storage.IdentityProvider{TenantID: tenantID, ID: in.ID, Type: in.Type, DisplayName: strings.TrimSpace(in.DisplayName),
		Settings: in.Settings, ClaimMapping: in.ClaimMapping, FederationOnly: in.FederationOnly, CreatedAt: now, UpdatedAt: now}
	// Building the connector configuration is the validation of the settings.
	cfg, err := oidc.ConfigFor(p, in.ClientSecret)
	if err == nil {
		_, err = oidc.New(cfg)
	}
	if err != nil {
		return storage.IdentityProvider{}, nil, invalid("%v", err)
	}
	p.Settings.Issuer = cfg.Issuer
	var routes []storage.DomainRoute
	for _, d := range in.Domains {
		sub := strings.HasPrefix(d, "*.")
		nd, err := federation.NormalizeDomain(strings.TrimPrefix(d, "*."))
		if err != nil {
			return storage.IdentityProvider{}, nil, invalid("domain %q: %v", d, err)
		}
		if slices.ContainsFunc(routes, func(r storage.DomainRoute) bool { return r.Domain == nd }) {
			return storage.IdentityProvider{}, nil, invalid("domain %q is given twice", d)
		}
		routes = append(routes, storage.DomainRoute{TenantID: tenantID, Domain: nd, ProviderID: in.ID, IncludeSubdomains: sub, CreatedAt: now})
	}
	if _, err := s.store.GetTenant(ctx, tenantID); err != nil {
		return storage.IdentityProvider{}, nil, fmt.Errorf("tenant %q: %w", tenantID, err)
	}
	if in.ClientSecret != "" {
		if p.ClientSecretSealed, err = s.keys.Sealer().Seal([]byte(in.ClientSecret), idpSecretAAD(tenantID, in.ID)); err != nil {
			return storage.IdentityProvider{}, nil, fmt.Errorf("seal the client secret: %w", err)
		}
	}
	if err := s.store.CreateIdentityProvider(ctx, p); err != nil {
		return storage.IdentityProvider{}, nil, fmt.Errorf("add identity provider %q: %w", in.ID, err)
	}
	for _, r := range routes {
		if err := s.store.CreateDomainRoute(ctx, r); err != nil {
			// Leave nothing half added: the provider goes, with any routes made.
			_ = s.store.DeleteIdentityProvider(ctx, tenantID, in.ID)
			return storage.IdentityProvider{}, nil, fmt.Errorf("route domain %q: %w", r.Domain, err)
		}
	}
	domains := make([]string, 0, len(routes))
	for _, r := range routes {
		domains = append(domains, r.Domain)
	}
	return p, routes, s.audit(ctx, tenantID, "admin.idp.add", who, in.ID, map[string]string{
		"type": string(p.Type), "issuer": p.Settings.Issuer, "client_id": p.Settings.ClientID,
		"domains": strings.Join(domains, " "), "federation_only": fmt.Sprint(p.FederationOnly),
	})
}

// DeleteIdentityProvider removes a provider and its domain routes, audited.
func (s *Service) DeleteIdentityProvider(ctx context.Context, tenantID, providerID string, who Actor) error {
	if err := s.store.DeleteIdentityProvider(ctx, tenantID, providerID); err != nil {
		return fmt.Errorf("delete identity provider %q: %w", providerID, err)
	}
	return s.audit(ctx, tenantID, "admin.idp.delete", who, providerID, nil)
}

// Routes returns a tenant's domain routes in the form federation.Match
// takes, each carrying its provider's federation-only option.
func Routes(ctx context.Context, store storage.Storage, tenantID string) ([]federation.Route, error) {
	rs, err := store.ListDomainRoutes(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	ps, err := store.ListIdentityProviders(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	only := map[string]bool{}
	for _, p := range ps {
		only[p.ID] = p.FederationOnly
	}
	out := make([]federation.Route, 0, len(rs))
	for _, r := range rs {
		out = append(out, federation.Route{Domain: r.Domain, IncludeSubdomains: r.IncludeSubdomains, ConnectorID: r.ProviderID, FederationOnly: only[r.ProviderID]})
	}
	return out, nil
}
