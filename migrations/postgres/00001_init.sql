-- +goose Up

-- Conventions: every tenant-scoped table starts its primary key with
-- tenant_id and cascades from tenants, so dropping a tenant drops its data.
-- Zero instants are stored as NULL. Lists are jsonb arrays. Opaque blobs
-- (hashes, sealed keys, serialized requests) are bytea so they round-trip
-- byte for byte.

CREATE TABLE tenants (
    id             text PRIMARY KEY CHECK (id <> ''),
    name           text NOT NULL DEFAULT '',
    fhir_base_urls jsonb NOT NULL DEFAULT '[]',
    policy         jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz
);

CREATE TABLE clients (
    tenant_id           text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                  text NOT NULL CHECK (id <> ''),
    name                text NOT NULL DEFAULT '',
    type                text NOT NULL DEFAULT '',
    secret_hash         bytea,
    redirect_uris       jsonb NOT NULL DEFAULT '[]',
    scopes              jsonb NOT NULL DEFAULT '[]',
    grant_types         jsonb NOT NULL DEFAULT '[]',
    jwks_url            text NOT NULL DEFAULT '',
    jwks                bytea,
    launch_uri          text NOT NULL DEFAULT '',
    can_create_launch   boolean NOT NULL DEFAULT false,
    access_token_ttl_ns bigint NOT NULL DEFAULT 0,
    created_at          timestamptz,
    updated_at          timestamptz,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE users (
    tenant_id     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id            text NOT NULL CHECK (id <> ''),
    email         text NOT NULL DEFAULT '',
    -- email_key is the lowercased email, NULL when there is none, so users
    -- without an email do not collide with each other.
    email_key     text,
    password_hash text NOT NULL DEFAULT '',
    disabled      boolean NOT NULL DEFAULT false,
    totp_secret   bytea,
    profiles      jsonb NOT NULL DEFAULT '[]',
    created_at    timestamptz,
    updated_at    timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email_key)
);

CREATE TABLE patients (
    tenant_id   text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          text NOT NULL CHECK (id <> ''),
    family      text NOT NULL DEFAULT '',
    given       text NOT NULL DEFAULT '',
    -- The *_key columns hold the lowercased names; the "C" collation lets a
    -- left-anchored LIKE use the index whatever the database's locale.
    family_key  text COLLATE "C" NOT NULL DEFAULT '',
    given_key   text COLLATE "C" NOT NULL DEFAULT '',
    birth_date  text NOT NULL DEFAULT '',
    gender      text NOT NULL DEFAULT '',
    identifiers jsonb NOT NULL DEFAULT '[]',
    resource    bytea,
    updated_at  timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX patients_family_idx ON patients (tenant_id, family_key);
CREATE INDEX patients_given_idx ON patients (tenant_id, given_key);
CREATE INDEX patients_birth_date_idx ON patients (tenant_id, birth_date);
-- Identifier search is a containment query: identifiers @> '[{"value": …}]'.
CREATE INDEX patients_identifiers_idx ON patients USING gin (identifiers jsonb_path_ops);

CREATE TABLE signing_keys (
    tenant_id      text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kid            text NOT NULL CHECK (kid <> ''),
    alg            text NOT NULL DEFAULT '',
    status         text NOT NULL DEFAULT '',
    public_jwk     bytea,
    -- private_sealed is the private JWK encrypted by the application; the
    -- database never sees it in the clear.
    private_sealed bytea,
    created_at     timestamptz,
    retires_at     timestamptz,
    PRIMARY KEY (tenant_id, kid)
);

CREATE TABLE sessions (
    tenant_id  text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id         text NOT NULL CHECK (id <> ''),
    user_id    text NOT NULL DEFAULT '',
    data       bytea,
    created_at timestamptz,
    updated_at timestamptz,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX sessions_user_idx ON sessions (tenant_id, user_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

CREATE TABLE tokens (
    tenant_id  text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind       text NOT NULL,
    signature  text NOT NULL CHECK (signature <> ''),
    request_id text NOT NULL DEFAULT '',
    client_id  text NOT NULL DEFAULT '',
    subject    text NOT NULL DEFAULT '',
    session_id text NOT NULL DEFAULT '',
    active     boolean NOT NULL,
    data       bytea,
    created_at timestamptz,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, kind, signature)
);
CREATE INDEX tokens_request_idx ON tokens (tenant_id, request_id);
CREATE INDEX tokens_client_idx ON tokens (tenant_id, client_id);
CREATE INDEX tokens_expires_idx ON tokens (expires_at);

CREATE TABLE launches (
    tenant_id  text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id         text NOT NULL CHECK (id <> ''),
    client_id  text NOT NULL DEFAULT '',
    user_id    text NOT NULL DEFAULT '',
    context    jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz,
    expires_at timestamptz NOT NULL,
    -- used_at is set once, by the one ConsumeLaunch that wins.
    used_at    timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX launches_expires_idx ON launches (expires_at);

CREATE TABLE assertion_jtis (
    tenant_id  text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    client_id  text NOT NULL,
    jti        text NOT NULL CHECK (jti <> ''),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, client_id, jti)
);
CREATE INDEX assertion_jtis_expires_idx ON assertion_jtis (expires_at);

CREATE TABLE audit_events (
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    seq       bigint NOT NULL CHECK (seq > 0),
    time      timestamptz NOT NULL,
    type      text NOT NULL DEFAULT '',
    outcome   text NOT NULL DEFAULT '',
    actor_id  text NOT NULL DEFAULT '',
    client_id text NOT NULL DEFAULT '',
    subject   text NOT NULL DEFAULT '',
    source_ip text NOT NULL DEFAULT '',
    details   jsonb NOT NULL DEFAULT '{}',
    prev_hash bytea,
    hash      bytea NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_events_time_idx ON audit_events (tenant_id, time);

-- +goose Down
DROP TABLE audit_events;
DROP TABLE assertion_jtis;
DROP TABLE launches;
DROP TABLE tokens;
DROP TABLE sessions;
DROP TABLE signing_keys;
DROP TABLE patients;
DROP TABLE users;
DROP TABLE clients;
DROP TABLE tenants;
