-- +goose Up

-- Upstream OpenID Connect providers of a tenant. settings and claim_mapping
-- are JSON; the client secret arrives sealed under the master key, bound to
-- the tenant and provider id, and is never stored in clear.
CREATE TABLE identity_providers (
    tenant_id            TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                   TEXT    NOT NULL,
    type                 TEXT    NOT NULL,
    display_name         TEXT    NOT NULL DEFAULT '',
    settings             TEXT    NOT NULL DEFAULT '{}',
    client_secret_sealed BLOB,
    claim_mapping        TEXT    NOT NULL DEFAULT '{}',
    federation_only      INTEGER NOT NULL DEFAULT 0,
    created_at           INTEGER,
    updated_at           INTEGER,
    PRIMARY KEY (tenant_id, id)
) STRICT;

-- An email domain goes to at most one provider per tenant; deleting the
-- provider deletes its routes.
CREATE TABLE domain_routes (
    tenant_id          TEXT    NOT NULL,
    domain             TEXT    NOT NULL,
    provider_id        TEXT    NOT NULL,
    include_subdomains INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER,
    PRIMARY KEY (tenant_id, domain),
    FOREIGN KEY (tenant_id, provider_id) REFERENCES identity_providers (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX domain_routes_provider_idx ON domain_routes (tenant_id, provider_id);

-- An upstream identity, named for ever by issuer and subject, links to one
-- user of the tenant.
CREATE TABLE identity_links (
    tenant_id  TEXT NOT NULL,
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    created_at INTEGER,
    PRIMARY KEY (tenant_id, issuer, subject),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX identity_links_user_idx ON identity_links (tenant_id, user_id);

-- +goose Down
DROP TABLE identity_links;
DROP TABLE domain_routes;
DROP TABLE identity_providers;
