-- +goose Up

-- Nothing to do: this version exists so that both dialects carry the same
-- migrations. The PostgreSQL migration of this number notifies replicas of
-- changes to tenants, clients and signing keys. A SQLite database belongs to
-- one server process, which forgets its own cached copy of what it changes;
-- a CLI command run beside it against the same file is seen once the
-- server's cached copy expires.

-- +goose Down
