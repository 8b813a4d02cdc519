-- +goose Up

-- Conventions: every tenant-scoped table starts its primary key with
-- tenant_id and cascades from tenants, so dropping a tenant drops its data.
-- Instants are INTEGER unix microseconds in UTC, NULL for the zero time.
-- Lists and objects are JSON text. Booleans are 0 or 1. Tables are STRICT
-- so a value of the wrong type is refused instead of silently coerced.

CREATE TABLE tenants (
    id             TEXT PRIMARY KEY NOT NULL CHECK (id <> ''),
    name           TEXT NOT NULL DEFAULT '',
    fhir_base_urls TEXT NOT NULL DEFAULT '[]',
    policy         TEXT NOT NULL DEFAULT '{}',
    created_at     INTEGER
) STRICT;

CREATE TABLE clients (
    tenant_id           TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                  TEXT NOT NULL CHECK (id <> ''),
    name                TEXT NOT NULL DEFAULT '',
    type                TEXT NOT NULL DEFAULT '',
    secret_hash         BLOB,
    redirect_uris       TEXT NOT NULL DEFAULT '[]',
    scopes              TEXT NOT NULL DEFAULT '[]',
    grant_types         TEXT NOT NULL DEFAULT '[]',
    jwks_url            TEXT NOT NULL DEFAULT '',
    jwks                BLOB,
    launch_uri          TEXT NOT NULL DEFAULT '',
    can_create_launch   INTEGER NOT NULL DEFAULT 0,
    access_token_ttl_ns INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER,
    updated_at          INTEGER,
    PRIMARY KEY (tenant_id, id)
) STRICT;

CREATE TABLE users (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id            TEXT NOT NULL CHECK (id <> ''),
    email         TEXT NOT NULL DEFAULT '',
    -- email_key is the lowercased email, NULL when there is none, so users
    -- without an email do not collide with each other.
    email_key     TEXT,
    password_hash TEXT NOT NULL DEFAULT '',
    disabled      INTEGER NOT NULL DEFAULT 0,
    totp_secret   BLOB,
    profiles      TEXT NOT NULL DEFAULT '[]',
    created_at    INTEGER,
    updated_at    INTEGER,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email_key)
) STRICT;

CREATE TABLE patients (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          TEXT NOT NULL CHECK (id <> ''),
    family      TEXT NOT NULL DEFAULT '',
    given       TEXT NOT NULL DEFAULT '',
    -- The *_key columns hold the lowercased names for prefix search.
    family_key  TEXT NOT NULL DEFAULT '',
    given_key   TEXT NOT NULL DEFAULT '',
    birth_date  TEXT NOT NULL DEFAULT '',
    gender      TEXT NOT NULL DEFAULT '',
    identifiers TEXT NOT NULL DEFAULT '[]',
    resource    BLOB,
    updated_at  INTEGER,
    PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE INDEX patients_family_idx ON patients (tenant_id, family_key);
CREATE INDEX patients_given_idx ON patients (tenant_id, given_key);
CREATE INDEX patients_birth_date_idx ON patients (tenant_id, birth_date);

-- patient_identifiers indexes the identifier values of patients.identifiers,
-- which SQLite cannot index inside a JSON column.
CREATE TABLE patient_identifiers (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    value      TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, value, patient_id),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES patients (tenant_id, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX patient_identifiers_patient_idx ON patient_identifiers (tenant_id, patient_id);

CREATE TABLE signing_keys (
    tenant_id      TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kid            TEXT NOT NULL CHECK (kid <> ''),
    alg            TEXT NOT NULL DEFAULT '',
    status         TEXT NOT NULL DEFAULT '',
    public_jwk     BLOB,
    -- private_sealed is the private JWK encrypted by the application; the
    -- database never sees it in the clear.
    private_sealed BLOB,
    created_at     INTEGER,
    retires_at     INTEGER,
    PRIMARY KEY (tenant_id, kid)
) STRICT;

CREATE TABLE sessions (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id         TEXT NOT NULL CHECK (id <> ''),
    user_id    TEXT NOT NULL DEFAULT '',
    data       BLOB,
    created_at INTEGER,
    updated_at INTEGER,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE INDEX sessions_user_idx ON sessions (tenant_id, user_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

CREATE TABLE tokens (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    signature  TEXT NOT NULL CHECK (signature <> ''),
    request_id TEXT NOT NULL DEFAULT '',
    client_id  TEXT NOT NULL DEFAULT '',
    subject    TEXT NOT NULL DEFAULT '',
    session_id TEXT NOT NULL DEFAULT '',
    active     INTEGER NOT NULL,
    data       BLOB,
    created_at INTEGER,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, kind, signature)
) STRICT;
CREATE INDEX tokens_request_idx ON tokens (tenant_id, request_id);
CREATE INDEX tokens_client_idx ON tokens (tenant_id, client_id);
CREATE INDEX tokens_expires_idx ON tokens (expires_at);

CREATE TABLE launches (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id         TEXT NOT NULL CHECK (id <> ''),
    client_id  TEXT NOT NULL DEFAULT '',
    user_id    TEXT NOT NULL DEFAULT '',
    context    TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER,
    expires_at INTEGER NOT NULL,
    -- used_at is set once, by the one ConsumeLaunch that wins.
    used_at    INTEGER,
    PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE INDEX launches_expires_idx ON launches (expires_at);

CREATE TABLE assertion_jtis (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL CHECK (jti <> ''),
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, client_id, jti)
) STRICT;
CREATE INDEX assertion_jtis_expires_idx ON assertion_jtis (expires_at);

CREATE TABLE audit_events (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    seq       INTEGER NOT NULL CHECK (seq > 0),
    time      INTEGER NOT NULL,
    type      TEXT NOT NULL DEFAULT '',
    outcome   TEXT NOT NULL DEFAULT '',
    actor_id  TEXT NOT NULL DEFAULT '',
    client_id TEXT NOT NULL DEFAULT '',
    subject   TEXT NOT NULL DEFAULT '',
    source_ip TEXT NOT NULL DEFAULT '',
    details   TEXT NOT NULL DEFAULT '{}',
    prev_hash BLOB,
    hash      BLOB NOT NULL,
    PRIMARY KEY (tenant_id, seq)
) STRICT;
CREATE INDEX audit_events_time_idx ON audit_events (tenant_id, time);

-- +goose Down
DROP TABLE audit_events;
DROP TABLE assertion_jtis;
DROP TABLE launches;
DROP TABLE tokens;
DROP TABLE sessions;
DROP TABLE signing_keys;
DROP TABLE patient_identifiers;
DROP TABLE patients;
DROP TABLE users;
DROP TABLE clients;
DROP TABLE tenants;
