-- +goose Up

-- Remembered consents: the scopes a user let a client have, so the user is
-- not asked again. A consent belongs to a user and a client of its tenant:
-- the foreign keys delete it with either, and refuse one for neither.
CREATE TABLE consents (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scopes     TEXT NOT NULL DEFAULT '[]',
    created_at INTEGER,
    -- NULL means the consent does not expire.
    expires_at INTEGER,
    PRIMARY KEY (tenant_id, user_id, client_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, client_id) REFERENCES clients (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX consents_client_idx ON consents (tenant_id, client_id);
CREATE INDEX consents_expires_idx ON consents (expires_at);

-- +goose Down
DROP TABLE consents;
