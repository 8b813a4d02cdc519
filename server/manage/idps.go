package manage

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

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
	now := s.timestamp()
	p, err := checkIdentityProvider(tenantID, in, now)
	if err != nil {
		return storage.IdentityProvider{}, nil, err
	}
	var routes []storage.DomainRoute
	for _, d := range in.Domains {
		nd, sub, err := parseDomain(d)
		if err != nil {
			return storage.IdentityProvider{}, nil, err
		}
		if slices.ContainsFunc(routes, func(r storage.DomainRoute) bool { return r.Domain == nd }) {
			return storage.IdentityProvider{}, nil, invalid("domain %q is given twice", d)
		}
		routes = append(routes, storage.DomainRoute{TenantID: tenantID, Domain: nd, ProviderID: in.ID, IncludeSubdomains: sub, CreatedAt: now})
	}
	if _, err := s.store.GetTenant(ctx, tenantID); err != nil {
		return storage.IdentityProvider{}, nil, fmt.Errorf("tenant %q: %w", tenantID, err)
	}
	if err := s.issuerFree(ctx, p); err != nil {
		return storage.IdentityProvider{}, nil, err
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

// issuerFree refuses p when another provider of its tenant has its issuer:
// token exchange picks the provider by the issuer of the token it is given,
// so a second one would be chosen, or passed over, by chance.
func (s *Service) issuerFree(ctx context.Context, p storage.IdentityProvider) error {
	ps, err := s.store.ListIdentityProviders(ctx, p.TenantID)
	if err != nil {
		return fmt.Errorf("identity providers of tenant %q: %w", p.TenantID, err)
	}
	for _, o := range ps {
		if o.ID != p.ID && o.Settings.Issuer == p.Settings.Issuer {
			return invalid("provider %q already has issuer %q; a tenant has one provider per issuer", o.ID, p.Settings.Issuer)
		}
	}
	return nil
}

// checkIdentityProvider validates in and returns the provider to store,
// without its sealed secret, created and updated at now.
func checkIdentityProvider(tenantID string, in IdentityProviderInput, now time.Time) (storage.IdentityProvider, error) {
	if !idpIDPattern.MatchString(in.ID) {
		return storage.IdentityProvider{}, invalid("provider id %q must be 1-64 lower-case letters, digits and inner hyphens", in.ID)
	}
	if in.ClientSecret != "" && (len(in.ClientSecret) > 1024 || !printable(in.ClientSecret)) {
		return storage.IdentityProvider{}, invalid("client secret must be 1-1024 printable characters")
	}
	p := storage.IdentityProvider{TenantID: tenantID, ID: in.ID, Type: in.Type, DisplayName: strings.TrimSpace(in.DisplayName),
		Settings: in.Settings, ClaimMapping: in.ClaimMapping, FederationOnly: in.FederationOnly, CreatedAt: now, UpdatedAt: now}
	// Building the connector configuration is the validation of the settings.
	cfg, err := oidc.ConfigFor(p, in.ClientSecret)
	if err == nil {
		err = cfg.Check()
	}
	if err != nil {
		return storage.IdentityProvider{}, invalid("%v", err)
	}
	p.Settings.Issuer = cfg.Issuer
	return p, nil
}

// parseDomain reads an email domain to route, in the form routes store it;
// a leading "*." asks for its subdomains too.
func parseDomain(d string) (domain string, subdomains bool, err error) {
	trimmed := strings.TrimSpace(d)
	subdomains = strings.HasPrefix(trimmed, "*.")
	domain, err = federation.NormalizeDomain(strings.TrimPrefix(trimmed, "*."))
	if err != nil {
		return "", false, invalid("domain %q: %v", d, err)
	}
	return domain, subdomains, nil
}

// UpdateIdentityProvider validates and stores new settings for an existing
// provider, checked as AddIdentityProvider checks them. A blank client
// secret keeps the sealed one, unless the settings that say where the
// secret is sent or whose it is (type, issuer, preset fields, client id)
// change: then the stored secret is dropped, the provider becomes a public
// client, and only a secret given with the change is kept. Domains are
// routed on their own, with AddDomainRoute and DeleteDomainRoute.
func (s *Service) UpdateIdentityProvider(ctx context.Context, tenantID string, in IdentityProviderInput, who Actor) (storage.IdentityProvider, error) {
	if len(in.Domains) > 0 {
		return storage.IdentityProvider{}, invalid("domains are not changed with the provider's settings: add or remove each domain route on its own")
	}
	p, err := checkIdentityProvider(tenantID, in, s.timestamp())
	if err != nil {
		return storage.IdentityProvider{}, err
	}
	old, err := s.store.GetIdentityProvider(ctx, tenantID, in.ID)
	if err != nil {
		return storage.IdentityProvider{}, fmt.Errorf("identity provider %q of tenant %q: %w", in.ID, tenantID, err)
	}
	if err := s.issuerFree(ctx, p); err != nil {
		return storage.IdentityProvider{}, err
	}
	p.CreatedAt = old.CreatedAt
	p.ClientSecretSealed = old.ClientSecretSealed
	// Whoever may edit the provider must not be able to send its stored
	// secret to an issuer they control, nor have it used for another client.
	dropped := in.ClientSecret == "" && len(old.ClientSecretSealed) > 0 && secretBoundSettingsChanged(old, p)
	if dropped {
		p.ClientSecretSealed = nil
	}
	if in.ClientSecret != "" {
		if p.ClientSecretSealed, err = s.keys.Sealer().Seal([]byte(in.ClientSecret), idpSecretAAD(tenantID, in.ID)); err != nil {
			return storage.IdentityProvider{}, fmt.Errorf("seal the client secret: %w", err)
		}
	}
	if err := s.store.UpdateIdentityProvider(ctx, p); err != nil {
		return storage.IdentityProvider{}, fmt.Errorf("update identity provider %q: %w", in.ID, err)
	}
	details := idpChanges(old, p)
	// The secret itself never reaches the trail; that it changed does.
	switch {
	case in.ClientSecret != "":
		details["client_secret"] = "replaced"
	case dropped:
		details["client_secret"] = "dropped"
	}
	return p, s.audit(ctx, tenantID, "admin.idp.update", who, p.ID, details)
}

// secretBoundSettingsChanged reports whether the settings a client secret
// belongs with differ: where it is sent (type, issuer and the preset fields
// the issuer is made of) or the client it authenticates.
func secretBoundSettingsChanged(old, p storage.IdentityProvider) bool {
	o, n := old.Settings, p.Settings
	return old.Type != p.Type || o.Issuer != n.Issuer || o.ClientID != n.ClientID ||
		o.OrgURL != n.OrgURL || o.AuthorizationServerID != n.AuthorizationServerID ||
		o.Region != n.Region || o.UserPoolID != n.UserPoolID || o.HostedUIDomain != n.HostedUIDomain
}

// idpChanges lists, for the audit trail, the settings that differ between
// two versions of a provider with their new values; none of them is secret.
func idpChanges(old, p storage.IdentityProvider) map[string]string {
	o, n := old.Settings, p.Settings
	om, nm := old.ClaimMapping, p.ClaimMapping
	return changes([]fieldChange{
		{"type", string(old.Type), string(p.Type)},
		{"display_name", old.DisplayName, p.DisplayName},
		{"issuer", o.Issuer, n.Issuer},
		{"client_id", o.ClientID, n.ClientID},
		{"scopes", strings.Join(o.Scopes, " "), strings.Join(n.Scopes, " ")},
		{"userinfo", fmt.Sprint(o.UserInfo), fmt.Sprint(n.UserInfo)},
		{"region", o.Region, n.Region},
		{"user_pool_id", o.UserPoolID, n.UserPoolID},
		{"hosted_ui_domain", o.HostedUIDomain, n.HostedUIDomain},
		{"org_url", o.OrgURL, n.OrgURL},
		{"authorization_server_id", o.AuthorizationServerID, n.AuthorizationServerID},
		{"tenant_claim", om.TenantClaim, nm.TenantClaim},
		{"patient_claim", om.PatientClaim, nm.PatientClaim},
		{"fhir_user_claim", om.FHIRUserClaim, nm.FHIRUserClaim},
		{"groups_claim", om.GroupsClaim, nm.GroupsClaim},
		{"group_roles", groupRoles(om.GroupRoles), groupRoles(nm.GroupRoles)},
		{"federation_only", fmt.Sprint(old.FederationOnly), fmt.Sprint(p.FederationOnly)},
	})
}

// groupRoles writes a group-to-role map as "group=role" pairs in group order.
func groupRoles(m map[string]string) string {
	pairs := make([]string, 0, len(m))
	for _, g := range slices.Sorted(maps.Keys(m)) {
		pairs = append(pairs, g+"="+m[g])
	}
	return strings.Join(pairs, " ")
}

// AddDomainRoute sends the people of an email domain of a tenant to one of
// its identity providers; a leading "*." on the domain also asks for its
// subdomains. A domain routed already is refused with storage.ErrAlreadyExists.
func (s *Service) AddDomainRoute(ctx context.Context, tenantID, providerID, domain string, includeSubdomains bool, who Actor) (storage.DomainRoute, error) {
	nd, sub, err := parseDomain(domain)
	if err != nil {
		return storage.DomainRoute{}, err
	}
	if _, err := s.store.GetIdentityProvider(ctx, tenantID, providerID); err != nil {
		return storage.DomainRoute{}, fmt.Errorf("identity provider %q of tenant %q: %w", providerID, tenantID, err)
	}
	r := storage.DomainRoute{TenantID: tenantID, Domain: nd, ProviderID: providerID, IncludeSubdomains: sub || includeSubdomains, CreatedAt: s.timestamp()}
	if err := s.store.CreateDomainRoute(ctx, r); err != nil {
		if errors.Is(err, storage.ErrAlreadyExists) {
			return storage.DomainRoute{}, fmt.Errorf("domain %s is already routed in tenant %q: remove its route first: %w", nd, tenantID, err)
		}
		return storage.DomainRoute{}, fmt.Errorf("route domain %s: %w", nd, err)
	}
	return r, s.audit(ctx, tenantID, "admin.idp.route.add", who, providerID, map[string]string{
		"domain": nd, "include_subdomains": fmt.Sprint(r.IncludeSubdomains),
	})
}

// DeleteDomainRoute removes the route of an email domain of a tenant, whose
// people then sign in with a local password.
func (s *Service) DeleteDomainRoute(ctx context.Context, tenantID, domain string, who Actor) error {
	nd, _, err := parseDomain(domain)
	if err != nil {
		return err
	}
	rs, err := s.store.ListDomainRoutes(ctx, tenantID)
	if err != nil {
		return fmt.Errorf("domain routes of tenant %q: %w", tenantID, err)
	}
	i := slices.IndexFunc(rs, func(r storage.DomainRoute) bool { return r.Domain == nd })
	if i < 0 {
		return fmt.Errorf("route of domain %s in tenant %q: %w", nd, tenantID, storage.ErrNotFound)
	}
	if err := s.store.DeleteDomainRoute(ctx, tenantID, nd); err != nil {
		return fmt.Errorf("delete the route of domain %s: %w", nd, err)
	}
	return s.audit(ctx, tenantID, "admin.idp.route.delete", who, rs[i].ProviderID, map[string]string{"domain": nd})
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
