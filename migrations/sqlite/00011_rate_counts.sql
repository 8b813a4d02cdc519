-- +goose Up

-- Nothing: a SQLite database serves one process, which counts the requests
-- of the rate limits in memory (PostgreSQL keeps them in rate_counts). The
-- version exists so that both dialects carry the same versions.
SELECT 1;

-- +goose Down
SELECT 1;
