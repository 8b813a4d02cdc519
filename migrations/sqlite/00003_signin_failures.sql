-- +goose Up

-- Failed sign-in counters, keyed by what is being throttled (an email or a
-- client address). Keeping them in the database makes the limit hold across
-- replicas. A counter covers one fixed window that began at window_start
-- and ends at expires_at, after which it counts as zero and may be swept.
CREATE TABLE signin_failures (
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key          TEXT    NOT NULL,
    count        INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key)
) STRICT;
CREATE INDEX signin_failures_expires_at ON signin_failures (expires_at);

-- +goose Down
DROP TABLE signin_failures;
