package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/smartauth/smartauth/storage"
)

const clientColumns = `tenant_id, id, name, type, secret_hash, redirect_uris, scopes, grant_types,
	jwks_url, jwks, launch_uri, can_create_launch, access_token_ttl_ns, created_at, updated_at`

func scanClient(sc scanner) (storage.Client, error) {
	var c storage.Client
	var typ, redirects, scopes, grants string
	var ttl int64
	var created, updated sql.NullInt64
	err := sc.Scan(&c.TenantID, &c.ID, &c.Name, &typ, &c.SecretHash, &redirects, &scopes, &grants,
		&c.JWKSURL, &c.JWKS, &c.LaunchURI, &c.CanCreateLaunch, &ttl, &created, &updated)
	if err != nil {
		return storage.Client{}, err
	}
	for _, f := range []struct {
		col string
		dst *[]string
	}{{redirects, &c.RedirectURIs}, {scopes, &c.Scopes}, {grants, &c.GrantTypes}} {
		if err := fromJSON(f.col, f.dst); err != nil {
			return storage.Client{}, fmt.Errorf("client %q: %w", c.ID, err)
		}
	}
	c.Type = storage.ClientType(typ)
	c.AccessTokenTTL = time.Duration(ttl)
	c.CreatedAt, c.UpdatedAt = instant(created), instant(updated)
	return c, nil
}

// clientLists encodes a client's list fields.
func clientLists(c storage.Client) (redirects, scopes, grants string, err error) {
	if redirects, err = listJSON(c.RedirectURIs); err != nil {
		return
	}
	if scopes, err = listJSON(c.Scopes); err != nil {
		return
	}
	grants, err = listJSON(c.GrantTypes)
	return
}

// CreateClient registers a client within its tenant.
func (s *Store) CreateClient(ctx context.Context, c storage.Client) error {
	redirects, scopes, grants, err := clientLists(c)
	if err != nil {
		return wrap("create client", err)
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO clients (`+clientColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.TenantID, c.ID, c.Name, string(c.Type), c.SecretHash, redirects, scopes, grants,
		c.JWKSURL, c.JWKS, c.LaunchURI, c.CanCreateLaunch, int64(c.AccessTokenTTL), micros(c.CreatedAt), micros(c.UpdatedAt))
	return wrap("create client", err)
}

// GetClient returns one client of a tenant.
func (s *Store) GetClient(ctx context.Context, tenantID, clientID string) (storage.Client, error) {
	c, err := scanClient(s.r.QueryRowContext(ctx, `SELECT `+clientColumns+` FROM clients WHERE tenant_id = ? AND id = ?`, tenantID, clientID))
	return c, wrap("get client", err)
}

// ListClients returns a tenant's clients ordered by id.
func (s *Store) ListClients(ctx context.Context, tenantID string) ([]storage.Client, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+clientColumns+` FROM clients WHERE tenant_id = ? ORDER BY id`, tenantID)
	if err != nil {
		return nil, wrap("list clients", err)
	}
	defer rows.Close()
	var out []storage.Client
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, wrap("list clients", err)
		}
		out = append(out, c)
	}
	return out, wrap("list clients", rows.Err())
}

// UpdateClient replaces every mutable field of a client.
func (s *Store) UpdateClient(ctx context.Context, c storage.Client) error {
	redirects, scopes, grants, err := clientLists(c)
	if err != nil {
		return wrap("update client", err)
	}
	err = mustAffect(s.w.ExecContext(ctx, `UPDATE clients SET name = ?, type = ?, secret_hash = ?, redirect_uris = ?,
		scopes = ?, grant_types = ?, jwks_url = ?, jwks = ?, launch_uri = ?, can_create_launch = ?,
		access_token_ttl_ns = ?, updated_at = ? WHERE tenant_id = ? AND id = ?`,
		c.Name, string(c.Type), c.SecretHash, redirects, scopes, grants, c.JWKSURL, c.JWKS, c.LaunchURI,
		c.CanCreateLaunch, int64(c.AccessTokenTTL), micros(c.UpdatedAt), c.TenantID, c.ID))
	return wrap("update client", err)
}

// DeleteClient removes a client and the tokens issued to it, and marks their
// families revoked (see endGrants), in one transaction.
func (s *Store) DeleteClient(ctx context.Context, tenantID, clientID string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		err := mustAffect(tx.ExecContext(ctx, `DELETE FROM clients WHERE tenant_id = ? AND id = ?`, tenantID, clientID))
		if err != nil {
			return err
		}
		return endGrants(ctx, tx, tenantID, true, `client_id = ?2`, clientID)
	})
	return wrap("delete client", err)
}
