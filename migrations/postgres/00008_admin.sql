-- +goose Up

-- Tenant admins are users of their tenant with this flag; operators are the
-- users of the operator realm, a tenant row no /t/ URL can name.
ALTER TABLE users ADD COLUMN admin boolean NOT NULL DEFAULT false;

-- The audit trail is append-only: rows are never changed, and removed only
-- when their tenant is (the cascade runs after the tenant row is gone). The
-- hash chain still catches whoever disables these triggers.
-- +goose StatementBegin
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM tenants WHERE id = OLD.tenant_id) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

-- +goose Down
DROP TRIGGER audit_events_no_delete ON audit_events;
DROP TRIGGER audit_events_no_update ON audit_events;
DROP FUNCTION audit_events_append_only();
ALTER TABLE users DROP COLUMN admin;
