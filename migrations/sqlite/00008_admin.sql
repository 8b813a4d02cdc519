-- +goose Up

-- Tenant admins are users of their tenant with this flag; operators are the
-- users of the operator realm, a tenant row no /t/ URL can name.
ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;

-- The audit trail is append-only: rows are never changed, and removed only
-- with their tenant. The hash chain still catches whoever drops these triggers.
-- +goose StatementBegin
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    WHEN EXISTS (SELECT 1 FROM tenants WHERE id = OLD.tenant_id)
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER audit_events_no_delete;
DROP TRIGGER audit_events_no_update;
ALTER TABLE users DROP COLUMN admin;
