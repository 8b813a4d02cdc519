package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/smartauth/smartauth/storage"
)

const idpColumns = `tenant_id, id, type, display_name, settings, client_secret_sealed, claim_mapping, federation_only, created_at, updated_at`

func scanIdentityProvider(sc pgx.Row) (storage.IdentityProvider, error) {
	var p storage.IdentityProvider
	var settings, mapping []byte
	var created, updated pgtype.Timestamptz
	if err := sc.Scan(&p.TenantID, &p.ID, &p.Type, &p.DisplayName, &settings, &p.ClientSecretSealed, &mapping, &p.FederationOnly, &created, &updated); err != nil {
		return storage.IdentityProvider{}, err
	}
	if err := fromJSON(settings, &p.Settings); err != nil {
		return storage.IdentityProvider{}, fmt.Errorf("identity provider %q: settings: %w", p.ID, err)
	}
	if err := fromJSON(mapping, &p.ClaimMapping); err != nil {
		return storage.IdentityProvider{}, fmt.Errorf("identity provider %q: claim mapping: %w", p.ID, err)
	}
	p.CreatedAt, p.UpdatedAt = instant(created), instant(updated)
	return p, nil
}

func idpJSON(p storage.IdentityProvider) (settings, mapping string, err error) {
	if settings, err = toJSON(p.Settings); err != nil {
		return "", "", err
	}
	mapping, err = toJSON(p.ClaimMapping)
	return settings, mapping, err
}

// CreateIdentityProvider stores an identity provider of a tenant.
func (s *Store) CreateIdentityProvider(ctx context.Context, p storage.IdentityProvider) error {
	settings, mapping, err := idpJSON(p)
	if err != nil {
		return wrap("create identity provider", err)
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO identity_providers (`+idpColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		p.TenantID, p.ID, string(p.Type), p.DisplayName, settings, p.ClientSecretSealed, mapping, p.FederationOnly, tstz(p.CreatedAt), tstz(p.UpdatedAt))
	return wrap("create identity provider", err)
}

// GetIdentityProvider returns one identity provider of a tenant.
func (s *Store) GetIdentityProvider(ctx context.Context, tenantID, providerID string) (storage.IdentityProvider, error) {
	p, err := scanIdentityProvider(s.pool.QueryRow(ctx, `SELECT `+idpColumns+` FROM identity_providers WHERE tenant_id = $1 AND id = $2`, tenantID, providerID))
	return p, wrap("get identity provider", err)
}

// ListIdentityProviders returns a tenant's identity providers ordered by id.
func (s *Store) ListIdentityProviders(ctx context.Context, tenantID string) ([]storage.IdentityProvider, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+idpColumns+` FROM identity_providers WHERE tenant_id = $1 ORDER BY id COLLATE "C"`, tenantID)
	if err != nil {
		return nil, wrap("list identity providers", err)
	}
	defer rows.Close()
	var out []storage.IdentityProvider
	for rows.Next() {
		p, err := scanIdentityProvider(rows)
		if err != nil {
			return nil, wrap("list identity providers", err)
		}
		out = append(out, p)
	}
	return out, wrap("list identity providers", rows.Err())
}

// UpdateIdentityProvider replaces every mutable field of an identity provider.
func (s *Store) UpdateIdentityProvider(ctx context.Context, p storage.IdentityProvider) error {
	settings, mapping, err := idpJSON(p)
	if err != nil {
		return wrap("update identity provider", err)
	}
	err = mustAffect(s.pool.Exec(ctx, `UPDATE identity_providers
		SET type = $1, display_name = $2, settings = $3, client_secret_sealed = $4, claim_mapping = $5, federation_only = $6, updated_at = $7
		WHERE tenant_id = $8 AND id = $9`,
		string(p.Type), p.DisplayName, settings, p.ClientSecretSealed, mapping, p.FederationOnly, tstz(p.UpdatedAt), p.TenantID, p.ID))
	return wrap("update identity provider", err)
}

// DeleteIdentityProvider removes an identity provider; its routes go with it.
func (s *Store) DeleteIdentityProvider(ctx context.Context, tenantID, providerID string) error {
	err := mustAffect(s.pool.Exec(ctx, `DELETE FROM identity_providers WHERE tenant_id = $1 AND id = $2`, tenantID, providerID))
	return wrap("delete identity provider", err)
}

// CreateDomainRoute sends an email domain to an identity provider.
func (s *Store) CreateDomainRoute(ctx context.Context, r storage.DomainRoute) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO domain_routes (tenant_id, domain, provider_id, include_subdomains, created_at) VALUES ($1, $2, $3, $4, $5)`,
		r.TenantID, r.Domain, r.ProviderID, r.IncludeSubdomains, tstz(r.CreatedAt))
	return wrap("create domain route", err)
}

// ListDomainRoutes returns a tenant's domain routes ordered by domain.
func (s *Store) ListDomainRoutes(ctx context.Context, tenantID string) ([]storage.DomainRoute, error) {
	rows, err := s.pool.Query(ctx, `SELECT tenant_id, domain, provider_id, include_subdomains, created_at
		FROM domain_routes WHERE tenant_id = $1 ORDER BY domain COLLATE "C"`, tenantID)
	if err != nil {
		return nil, wrap("list domain routes", err)
	}
	defer rows.Close()
	var out []storage.DomainRoute
	for rows.Next() {
		var r storage.DomainRoute
		var created pgtype.Timestamptz
		if err := rows.Scan(&r.TenantID, &r.Domain, &r.ProviderID, &r.IncludeSubdomains, &created); err != nil {
			return nil, wrap("list domain routes", err)
		}
		r.CreatedAt = instant(created)
		out = append(out, r)
	}
	return out, wrap("list domain routes", rows.Err())
}

// DeleteDomainRoute removes the route of one domain.
func (s *Store) DeleteDomainRoute(ctx context.Context, tenantID, domain string) error {
	err := mustAffect(s.pool.Exec(ctx, `DELETE FROM domain_routes WHERE tenant_id = $1 AND domain = $2`, tenantID, domain))
	return wrap("delete domain route", err)
}

const linkColumns = `tenant_id, issuer, subject, user_id, created_at`

func scanIdentityLink(sc pgx.Row) (storage.IdentityLink, error) {
	var l storage.IdentityLink
	var created pgtype.Timestamptz
	err := sc.Scan(&l.TenantID, &l.Issuer, &l.Subject, &l.UserID, &created)
	l.CreatedAt = instant(created)
	return l, err
}

// CreateIdentityLink links an upstream identity to a user.
func (s *Store) CreateIdentityLink(ctx context.Context, l storage.IdentityLink) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO identity_links (`+linkColumns+`) VALUES ($1, $2, $3, $4, $5)`,
		l.TenantID, l.Issuer, l.Subject, l.UserID, tstz(l.CreatedAt))
	return wrap("create identity link", err)
}

// GetIdentityLink returns the link of an upstream identity.
func (s *Store) GetIdentityLink(ctx context.Context, tenantID, issuer, subject string) (storage.IdentityLink, error) {
	l, err := scanIdentityLink(s.pool.QueryRow(ctx, `SELECT `+linkColumns+` FROM identity_links
		WHERE tenant_id = $1 AND issuer = $2 AND subject = $3`, tenantID, issuer, subject))
	return l, wrap("get identity link", err)
}

// ListIdentityLinks returns a user's links ordered by issuer, then subject.
func (s *Store) ListIdentityLinks(ctx context.Context, tenantID, userID string) ([]storage.IdentityLink, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+linkColumns+` FROM identity_links
		WHERE tenant_id = $1 AND user_id = $2 ORDER BY issuer COLLATE "C", subject COLLATE "C"`, tenantID, userID)
	if err != nil {
		return nil, wrap("list identity links", err)
	}
	defer rows.Close()
	var out []storage.IdentityLink
	for rows.Next() {
		l, err := scanIdentityLink(rows)
		if err != nil {
			return nil, wrap("list identity links", err)
		}
		out = append(out, l)
	}
	return out, wrap("list identity links", rows.Err())
}

// DeleteIdentityLink removes the link of an upstream identity.
func (s *Store) DeleteIdentityLink(ctx context.Context, tenantID, issuer, subject string) error {
	err := mustAffect(s.pool.Exec(ctx, `DELETE FROM identity_links WHERE tenant_id = $1 AND issuer = $2 AND subject = $3`, tenantID, issuer, subject))
	return wrap("delete identity link", err)
}
