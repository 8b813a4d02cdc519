-- +goose Up

-- Tenants and users count their writes, so that an edit made from an older
-- read can be refused instead of silently undoing a newer one. Rows that
-- exist already start at 1, as new ones do.
ALTER TABLE tenants ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN version INTEGER NOT NULL DEFAULT 1;

-- +goose Down
ALTER TABLE users DROP COLUMN version;
ALTER TABLE tenants DROP COLUMN version;
