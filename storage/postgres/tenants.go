package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/smartauth/smartauth/storage"
)

const tenantColumns = `id, name, fhir_base_urls, policy, created_at, version`

func scanTenant(row pgx.Row) (storage.Tenant, error) {
	var t storage.Tenant
	var urls, policy []byte
	var created pgtype.Timestamptz
	if err := row.Scan(&t.ID, &t.Name, &urls, &policy, &created, &t.Version); err != nil {
		return storage.Tenant{}, err
	}
	if err := fromJSON(urls, &t.FHIRBaseURLs); err != nil {
		return storage.Tenant{}, fmt.Errorf("tenant %q: FHIR base URLs: %w", t.ID, err)
	}
	if err := fromJSON(policy, &t.Policy); err != nil {
		return storage.Tenant{}, fmt.Errorf("tenant %q: policy: %w", t.ID, err)
	}
	t.CreatedAt = instant(created)
	return t, nil
}

// CreateTenant stores a tenant together with its first signing keys.
func (s *Store) CreateTenant(ctx context.Context, t storage.Tenant, keys []storage.SigningKey) error {
	urls, err := listJSON(t.FHIRBaseURLs)
	if err != nil {
		return wrap("create tenant", err)
	}
	policy, err := toJSON(t.Policy)
	if err != nil {
		return wrap("create tenant", err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO tenants (`+tenantColumns+`) VALUES ($1, $2, $3, $4, $5, 1)`,
			t.ID, t.Name, urls, policy, tstz(t.CreatedAt))
		if err != nil {
			return err
		}
		return insertKeys(ctx, tx, t.ID, keys)
	})
	return wrap("create tenant", err)
}

// GetTenant returns one tenant.
func (s *Store) GetTenant(ctx context.Context, tenantID string) (storage.Tenant, error) {
	t, err := scanTenant(s.pool.QueryRow(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE id = $1`, tenantID))
	return t, wrap("get tenant", err)
}

// ListTenants returns every tenant ordered by id.
func (s *Store) ListTenants(ctx context.Context) ([]storage.Tenant, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+tenantColumns+` FROM tenants ORDER BY id COLLATE "C"`)
	if err != nil {
		return nil, wrap("list tenants", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.Tenant, error) { return scanTenant(r) })
	return out, wrap("list tenants", err)
}

// UpdateTenant replaces a tenant's name, FHIR base URLs and policy if its
// version is still t.Version, and moves the version on. An update that
// waits for a concurrent one re-reads the row once that commits, finds the
// version moved and writes nothing, so of two updates from one version
// exactly one wins.
func (s *Store) UpdateTenant(ctx context.Context, t storage.Tenant) error {
	urls, err := listJSON(t.FHIRBaseURLs)
	if err != nil {
		return wrap("update tenant", err)
	}
	policy, err := toJSON(t.Policy)
	if err != nil {
		return wrap("update tenant", err)
	}
	var updated, exists bool
	err = s.pool.QueryRow(ctx, `WITH updated AS (
			UPDATE tenants SET name = $2, fhir_base_urls = $3, policy = $4, version = version + 1
			WHERE id = $1 AND version = $5 RETURNING id
		)
		SELECT EXISTS (SELECT 1 FROM updated), EXISTS (SELECT 1 FROM tenants WHERE id = $1)`,
		t.ID, t.Name, urls, policy, t.Version).Scan(&updated, &exists)
	if err == nil {
		err = versioned(updated, exists)
	}
	return wrap("update tenant", err)
}

// versioned turns the outcome of a conditional update into its error: none
// when a row was written, ErrConflict when the row exists at another
// version, and not found when there is no row.
func versioned(updated, exists bool) error {
	switch {
	case updated:
		return nil
	case exists:
		return storage.ErrConflict
	}
	return pgx.ErrNoRows
}

const keyColumns = `tenant_id, kid, alg, status, public_jwk, private_sealed, created_at, retires_at`

// insertKeys stores keys in one round trip.
func insertKeys(ctx context.Context, tx pgx.Tx, tenantID string, keys []storage.SigningKey) error {
	b := &pgx.Batch{}
	for _, k := range keys {
		if err := owned(tenantID, k.TenantID, "signing key", k.KID); err != nil {
			return err
		}
		b.Queue(`INSERT INTO signing_keys (`+keyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			tenantID, k.KID, k.Alg, string(k.Status), k.PublicJWK, k.PrivateSealed, tstz(k.CreatedAt), tstz(k.RetiresAt))
	}
	return sendBatch(ctx, tx, b)
}

// sendBatch runs b and returns the first error.
func sendBatch(ctx context.Context, tx pgx.Tx, b *pgx.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	br := tx.SendBatch(ctx, b)
	for range b.Len() {
		if _, err := br.Exec(); err != nil {
			return errors.Join(err, br.Close())
		}
	}
	return br.Close()
}

// ListSigningKeys returns every key of a tenant, newest first.
func (s *Store) ListSigningKeys(ctx context.Context, tenantID string) ([]storage.SigningKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+keyColumns+` FROM signing_keys WHERE tenant_id = $1
		ORDER BY created_at DESC NULLS LAST, kid COLLATE "C" DESC`, tenantID)
	if err != nil {
		return nil, wrap("list signing keys", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.SigningKey, error) {
		var k storage.SigningKey
		var status string
		var created, retires pgtype.Timestamptz
		if err := r.Scan(&k.TenantID, &k.KID, &k.Alg, &status, &k.PublicJWK, &k.PrivateSealed, &created, &retires); err != nil {
			return storage.SigningKey{}, err
		}
		k.Status = storage.KeyStatus(status)
		k.CreatedAt, k.RetiresAt = instant(created), instant(retires)
		return k, nil
	})
	return out, wrap("list signing keys", err)
}

// RotateSigningKeys marks the tenant's active keys as retiring at retireAt
// and stores the new keys as active, in one transaction.
func (s *Store) RotateSigningKeys(ctx context.Context, tenantID string, newKeys []storage.SigningKey, retireAt time.Time) error {
	if len(newKeys) == 0 {
		// Retiring every key without a successor would leave nothing to sign with.
		return wrap("rotate signing keys", errors.New("no new keys"))
	}
	fresh := make([]storage.SigningKey, len(newKeys))
	for i, k := range newKeys {
		k.Status, k.RetiresAt = storage.KeyActive, time.Time{}
		fresh[i] = k
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE signing_keys SET status = $1, retires_at = $2 WHERE tenant_id = $3 AND status = $4`,
			string(storage.KeyRetiring), tstz(retireAt), tenantID, string(storage.KeyActive))
		if err != nil {
			return err
		}
		return insertKeys(ctx, tx, tenantID, fresh)
	})
	return wrap("rotate signing keys", err)
}

// AddSigningKeys stores new active keys beside the current ones.
func (s *Store) AddSigningKeys(ctx context.Context, tenantID string, newKeys []storage.SigningKey) error {
	fresh := make([]storage.SigningKey, len(newKeys))
	for i, k := range newKeys {
		k.Status, k.RetiresAt = storage.KeyActive, time.Time{}
		fresh[i] = k
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return insertKeys(ctx, tx, tenantID, fresh)
	})
	return wrap("add signing keys", err)
}

// RetireSigningKey marks one key as retiring at retiresAt.
func (s *Store) RetireSigningKey(ctx context.Context, tenantID, kid string, retiresAt time.Time) error {
	err := mustAffect(s.pool.Exec(ctx, `UPDATE signing_keys SET status = $1, retires_at = $2 WHERE tenant_id = $3 AND kid = $4`,
		string(storage.KeyRetiring), tstz(retiresAt), tenantID, kid))
	return wrap("retire signing key", err)
}
