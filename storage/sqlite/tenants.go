package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/smartauth/smartauth/storage"
)

const tenantColumns = `id, name, fhir_base_urls, policy, created_at, version`

func scanTenant(sc scanner) (storage.Tenant, error) {
	var t storage.Tenant
	var urls, policy string
	var created sql.NullInt64
	if err := sc.Scan(&t.ID, &t.Name, &urls, &policy, &created, &t.Version); err != nil {
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
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO tenants (`+tenantColumns+`) VALUES (?, ?, ?, ?, ?, 1)`,
			t.ID, t.Name, urls, policy, micros(t.CreatedAt))
		if err != nil {
			return err
		}
		return insertKeys(ctx, tx, t.ID, keys)
	})
	return wrap("create tenant", err)
}

// GetTenant returns one tenant.
func (s *Store) GetTenant(ctx context.Context, tenantID string) (storage.Tenant, error) {
	t, err := scanTenant(s.r.QueryRowContext(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE id = ?`, tenantID))
	return t, wrap("get tenant", err)
}

// ListTenants returns every tenant ordered by id.
func (s *Store) ListTenants(ctx context.Context) ([]storage.Tenant, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+tenantColumns+` FROM tenants ORDER BY id`)
	if err != nil {
		return nil, wrap("list tenants", err)
	}
	defer rows.Close()
	var out []storage.Tenant
	for rows.Next() {
		t, err := scanTenant(rows)
		if err != nil {
			return nil, wrap("list tenants", err)
		}
		out = append(out, t)
	}
	return out, wrap("list tenants", rows.Err())
}

// UpdateTenant replaces a tenant's name, FHIR base URLs and policy if its
// version is still t.Version, and moves the version on.
func (s *Store) UpdateTenant(ctx context.Context, t storage.Tenant) error {
	urls, err := listJSON(t.FHIRBaseURLs)
	if err != nil {
		return wrap("update tenant", err)
	}
	policy, err := toJSON(t.Policy)
	if err != nil {
		return wrap("update tenant", err)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE tenants SET name = ?, fhir_base_urls = ?, policy = ?, version = version + 1
			WHERE id = ? AND version = ?`, t.Name, urls, policy, t.ID, t.Version)
		if err != nil {
			return err
		}
		return versioned(ctx, tx, res, `SELECT 1 FROM tenants WHERE id = ?`, t.ID)
	})
	return wrap("update tenant", err)
}

// versioned turns the outcome of a conditional update into its error: none
// when a row was written, ErrConflict when the row (found by exists and
// args) is there at another version, and not found when it is not there.
// It runs in the update's transaction, which as a write transaction holds
// the file's lock, so the row cannot change in between.
func versioned(ctx context.Context, tx *sql.Tx, res sql.Result, exists string, args ...any) error {
	n, err := res.RowsAffected()
	if err != nil || n > 0 {
		return err
	}
	var one int
	if err := tx.QueryRowContext(ctx, exists, args...).Scan(&one); err != nil {
		return err
	}
	return storage.ErrConflict
}

const keyColumns = `tenant_id, kid, alg, status, public_jwk, private_sealed, created_at, retires_at`

func insertKeys(ctx context.Context, tx *sql.Tx, tenantID string, keys []storage.SigningKey) error {
	for _, k := range keys {
		if err := owned(tenantID, k.TenantID, "signing key", k.KID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO signing_keys (`+keyColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			tenantID, k.KID, k.Alg, string(k.Status), k.PublicJWK, k.PrivateSealed, micros(k.CreatedAt), micros(k.RetiresAt))
		if err != nil {
			return err
		}
	}
	return nil
}

// ListSigningKeys returns every key of a tenant, newest first.
func (s *Store) ListSigningKeys(ctx context.Context, tenantID string) ([]storage.SigningKey, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+keyColumns+` FROM signing_keys WHERE tenant_id = ? ORDER BY created_at DESC, kid DESC`, tenantID)
	if err != nil {
		return nil, wrap("list signing keys", err)
	}
	defer rows.Close()
	var out []storage.SigningKey
	for rows.Next() {
		var k storage.SigningKey
		var status string
		var created, retires sql.NullInt64
		if err := rows.Scan(&k.TenantID, &k.KID, &k.Alg, &status, &k.PublicJWK, &k.PrivateSealed, &created, &retires); err != nil {
			return nil, wrap("list signing keys", err)
		}
		k.Status = storage.KeyStatus(status)
		k.CreatedAt, k.RetiresAt = instant(created), instant(retires)
		out = append(out, k)
	}
	return out, wrap("list signing keys", rows.Err())
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
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE signing_keys SET status = ?, retires_at = ? WHERE tenant_id = ? AND status = ?`,
			string(storage.KeyRetiring), micros(retireAt), tenantID, string(storage.KeyActive))
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
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		return insertKeys(ctx, tx, tenantID, fresh)
	})
	return wrap("add signing keys", err)
}

// RetireSigningKey marks one key as retiring at retiresAt.
func (s *Store) RetireSigningKey(ctx context.Context, tenantID, kid string, retiresAt time.Time) error {
	err := mustAffect(s.w.ExecContext(ctx, `UPDATE signing_keys SET status = ?, retires_at = ? WHERE tenant_id = ? AND kid = ?`,
		string(storage.KeyRetiring), micros(retiresAt), tenantID, kid))
	return wrap("retire signing key", err)
}
