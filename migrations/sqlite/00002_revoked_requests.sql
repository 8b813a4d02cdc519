-- +goose Up

-- A revoked grant family: tokens created for it afterwards are born
-- inactive. This closes the race in which reuse is detected while the
-- winning request is still writing its new tokens. A marker is needed only
-- for as long as such a request can run, so it expires after an hour.
CREATE TABLE revoked_requests (
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    request_id TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, request_id)
) STRICT;
CREATE INDEX revoked_requests_expires_at ON revoked_requests (expires_at);

-- +goose Down
DROP TABLE revoked_requests;
