-- +goose Up

-- Upstream OpenID Connect providers of a tenant. settings and claim_mapping
-- are JSON; the client secret arrives sealed under the master key, bound to
-- the tenant and provider id, and is never stored in clear.
CREATE TABLE identity_providers (
    tenant_id            text    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                   text    NOT NULL,
    type                 text    NOT NULL,
    display_name         text    NOT NULL DEFAULT '',
    settings             jsonb   NOT NULL DEFAULT '{}',
    client_secret_sealed bytea,
    claim_mapping        jsonb   NOT NULL DEFAULT '{}',
    federation_only      boolean NOT NULL DEFAULT false,
    created_at           timestamptz,
    updated_at           timestamptz,
    PRIMARY KEY (tenant_id, id)
);

-- An email domain goes to at most one provider per tenant; deleting the
-- provider deletes its routes.
CREATE TABLE domain_routes (
    tenant_id          text    NOT NULL,
    domain             text    NOT NULL,
    provider_id        text    NOT NULL,
    include_subdomains boolean NOT NULL DEFAULT false,
    created_at         timestamptz,
    PRIMARY KEY (tenant_id, domain),
    FOREIGN KEY (tenant_id, provider_id) REFERENCES identity_providers (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX domain_routes_provider_idx ON domain_routes (tenant_id, provider_id);

-- An upstream identity, named for ever by issuer and subject, links to one
-- user of the tenant.
CREATE TABLE identity_links (
    tenant_id  text NOT NULL,
    issuer     text NOT NULL,
    subject    text NOT NULL,
    user_id    text NOT NULL,
    created_at timestamptz,
    PRIMARY KEY (tenant_id, issuer, subject),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX identity_links_user_idx ON identity_links (tenant_id, user_id);

-- +goose Down
DROP TABLE identity_links;
DROP TABLE domain_routes;
DROP TABLE identity_providers;
