-- +goose Up

-- Each replica keeps tenants, clients and signing keys in memory for a few
-- seconds. These triggers tell every replica which row changed, by NOTIFY on
-- the channel smartauth_changes, so each forgets its copy at once rather
-- than when it expires. A notification is delivered when its transaction
-- commits and never if it rolls back. The payload names the schema, so
-- deployments that share a database in separate schemas ignore each other.
-- A payload too long for NOTIFY (8000 bytes, only for ids far longer than
-- the server accepts) names the table alone, meaning every row of it.
-- Committing a transaction that notified takes a database-wide lock, which
-- is why only these rarely written tables notify.
-- +goose StatementBegin
CREATE FUNCTION smartauth_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r       record;
    tenant  text;
    id      text;
    payload text;
BEGIN
    -- An update names the row as it was: that is the key a replica cached it under.
    IF TG_OP = 'INSERT' THEN
        r := NEW;
    ELSE
        r := OLD;
    END IF;
    IF TG_TABLE_NAME = 'tenants' THEN
        tenant := r.id;
        id := r.id;
    ELSIF TG_TABLE_NAME = 'clients' THEN
        tenant := r.tenant_id;
        id := r.id;
    ELSE
        tenant := r.tenant_id;
        id := r.kid;
    END IF;
    payload := json_build_object('schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME, 'tenant', tenant, 'id', id)::text;
    IF octet_length(payload) > 7900 THEN
        payload := json_build_object('schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME)::text;
    END IF;
    PERFORM pg_notify('smartauth_changes', payload);
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER tenants_notify_change AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION smartauth_notify_change();
CREATE TRIGGER clients_notify_change AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION smartauth_notify_change();
CREATE TRIGGER signing_keys_notify_change AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH ROW EXECUTE FUNCTION smartauth_notify_change();

-- +goose Down
DROP TRIGGER signing_keys_notify_change ON signing_keys;
DROP TRIGGER clients_notify_change ON clients;
DROP TRIGGER tenants_notify_change ON tenants;
DROP FUNCTION smartauth_notify_change();
