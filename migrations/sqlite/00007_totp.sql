-- +goose Up

-- A TOTP enrollment waiting for its first correct code. The user's
-- confirmed secret stays in users.totp_secret, untouched until the new one
-- is confirmed, so an enrollment left half done locks no one out and
-- weakens nothing. The seed is sealed by the application before it gets here.
CREATE TABLE totp_enrollments (
    tenant_id     TEXT    NOT NULL,
    user_id       TEXT    NOT NULL,
    secret_sealed BLOB    NOT NULL,
    created_at    INTEGER,
    expires_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX totp_enrollments_expires_idx ON totp_enrollments (expires_at);

-- The highest TOTP time step accepted for each user. A code is accepted only
-- by raising it, in one conditional upsert, so a code is never accepted
-- twice, even when two replicas check the same code at the same moment.
CREATE TABLE totp_steps (
    tenant_id TEXT    NOT NULL,
    user_id   TEXT    NOT NULL,
    last_step INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;

-- Single-use recovery codes, stored only as keyed digests. used_at is NULL
-- until the code is used; used codes stay until the set is replaced.
CREATE TABLE recovery_codes (
    tenant_id  TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    code_hash  BLOB    NOT NULL,
    created_at INTEGER,
    used_at    INTEGER,
    PRIMARY KEY (tenant_id, user_id, code_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;

-- +goose Down
DROP TABLE recovery_codes;
DROP TABLE totp_steps;
DROP TABLE totp_enrollments;
