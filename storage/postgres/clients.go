package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/smartauth/smartauth/storage"
)

const clientColumns = `tenant_id, id, name, type, secret_hash, redirect_uris, scopes, grant_types,
	jwks_url, jwks, launch_uri, can_create_launch, access_token_ttl_ns, created_at, updated_at`

func scanClient(row pgx.Row) (storage.Client, error) {
	var c storage.Client
	var typ string
	var redirects, scopes, grants []byte
	var ttl int64
	var created, updated pgtype.Timestamptz
	err := row.Scan(&c.TenantID, &c.ID, &c.Name, &typ, &c.SecretHash, &redirects, &scopes, &grants,
		&c.JWKSURL, &c.JWKS, &c.LaunchURI, &c.CanCreateLaunch, &ttl, &created, &updated)
	if err != nil {
		return storage.Client{}, err
	}
	for _, f := range []struct {
		col []byte
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
	_, err = s.pool.Exec(ctx, `INSERT INTO clients (`+clientColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		c.TenantID, c.ID, c.Name, string(c.Type), c.SecretHash, redirects, scopes, grants,
		c.JWKSURL, c.JWKS, c.LaunchURI, c.CanCreateLaunch, int64(c.AccessTokenTTL), tstz(c.CreatedAt), tstz(c.UpdatedAt))
	return wrap("create client", err)
}

// GetClient returns one client of a tenant.
func (s *Store) GetClient(ctx context.Context, tenantID, clientID string) (storage.Client, error) {
	c, err := scanClient(s.pool.QueryRow(ctx, `SELECT `+clientColumns+` FROM clients WHERE tenant_id = $1 AND id = $2`, tenantID, clientID))
	return c, wrap("get client", err)
}

// ListClients returns a tenant's clients ordered by id.
func (s *Store) ListClients(ctx context.Context, tenantID string) ([]storage.Client, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+clientColumns+` FROM clients WHERE tenant_id = $1 ORDER BY id COLLATE "C"`, tenantID)
	if err != nil {
		return nil, wrap("list clients", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.Client, error) { return scanClient(r) })
	return out, wrap("list clients", err)
}

// UpdateClient replaces every mutable field of a client.
func (s *Store) UpdateClient(ctx context.Context, c storage.Client) error {
	redirects, scopes, grants, err := clientLists(c)
	if err != nil {
		return wrap("update client", err)
	}
	err = mustAffect(s.pool.Exec(ctx, `UPDATE clients SET name = $3, type = $4, secret_hash = $5, redirect_uris = $6,
		scopes = $7, grant_types = $8, jwks_url = $9, jwks = $10, launch_uri = $11, can_create_launch = $12,
		access_token_ttl_ns = $13, updated_at = $14 WHERE tenant_id = $1 AND id = $2`,
		c.TenantID, c.ID, c.Name, string(c.Type), c.SecretHash, redirects, scopes, grants, c.JWKSURL, c.JWKS,
		c.LaunchURI, c.CanCreateLaunch, int64(c.AccessTokenTTL), tstz(c.UpdatedAt)))
	return wrap("update client", err)
}

// DeleteClient removes a client and the tokens issued to it, in one
// transaction, and marks their families revoked (see endGrants).
func (s *Store) DeleteClient(ctx context.Context, tenantID, clientID string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := mustAffect(tx.Exec(ctx, `DELETE FROM clients WHERE tenant_id = $1 AND id = $2`, tenantID, clientID)); err != nil {
			return err
		}
		return endGrants(ctx, tx, tenantID, true, `client_id = $2`, clientID)
	})
	return wrap("delete client", err)
}
