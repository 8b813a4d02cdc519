-- +goose Up

-- Request counters of the rate limits of the OAuth endpoints, one row per
-- tenant, key (a client or a source address) and fixed window, so that the
-- limits hold across replicas. Each request is one upsert of its row.
-- UNLOGGED: the counts are worth no write-ahead log, so counting waits for
-- no disk flush; a crash empties the table, which forgets at most a minute
-- of counts. No index but the key: SweepExpired scans the table, which holds
-- little more than the current window's keys.
CREATE UNLOGGED TABLE rate_counts (
    tenant_id    text        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key          text        NOT NULL,
    window_start timestamptz NOT NULL,
    count        bigint      NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key, window_start)
);

-- +goose Down
DROP TABLE rate_counts;
