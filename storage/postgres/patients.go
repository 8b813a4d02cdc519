package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/smartauth/smartauth/storage"
)

const patientColumns = `tenant_id, id, family, given, birth_date, gender, identifiers, resource, updated_at`

func scanPatient(row pgx.Row) (storage.Patient, error) {
	var p storage.Patient
	var identifiers []byte
	var updated pgtype.Timestamptz
	err := row.Scan(&p.TenantID, &p.ID, &p.Family, &p.Given, &p.BirthDate, &p.Gender, &identifiers, &p.Resource, &updated)
	if err != nil {
		return storage.Patient{}, err
	}
	if err := fromJSON(identifiers, &p.Identifiers); err != nil {
		return storage.Patient{}, fmt.Errorf("patient %q: identifiers: %w", p.ID, err)
	}
	p.UpdatedAt = instant(updated)
	return p, nil
}

// validatePatients refuses a batch up front, so a bad row never leaves part
// of the batch written. A patient needs an id, and may not name another
// tenant than the one it is upserted into.
func validatePatients(tenantID string, patients []storage.Patient) error {
	for i, p := range patients {
		if p.ID == "" {
			return fmt.Errorf("patient %d of %d: empty id", i+1, len(patients))
		}
		if err := owned(tenantID, p.TenantID, "patient", p.ID); err != nil {
			return err
		}
	}
	return nil
}

// UpsertPatients inserts or replaces roster entries, all or none, in one
// transaction and one round trip of statements.
func (s *Store) UpsertPatients(ctx context.Context, tenantID string, patients []storage.Patient) error {
	if err := validatePatients(tenantID, patients); err != nil {
		return wrap("upsert patients", err)
	}
	if len(patients) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, p := range patients {
		identifiers, err := listJSON(p.Identifiers)
		if err != nil {
			return wrap("upsert patients", fmt.Errorf("patient %q: %w", p.ID, err))
		}
		b.Queue(`INSERT INTO patients (`+patientColumns+`, family_key, given_key)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (tenant_id, id) DO UPDATE SET family = excluded.family, given = excluded.given,
				birth_date = excluded.birth_date, gender = excluded.gender, identifiers = excluded.identifiers,
				resource = excluded.resource, updated_at = excluded.updated_at,
				family_key = excluded.family_key, given_key = excluded.given_key`,
			tenantID, p.ID, p.Family, p.Given, p.BirthDate, p.Gender, identifiers, p.Resource, tstz(p.UpdatedAt),
			strings.ToLower(p.Family), strings.ToLower(p.Given))
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return sendBatch(ctx, tx, b) })
	return wrap("upsert patients", err)
}

// GetPatient returns one roster entry.
func (s *Store) GetPatient(ctx context.Context, tenantID, patientID string) (storage.Patient, error) {
	p, err := scanPatient(s.pool.QueryRow(ctx, `SELECT `+patientColumns+` FROM patients WHERE tenant_id = $1 AND id = $2`, tenantID, patientID))
	return p, wrap("get patient", err)
}

// likeEscaper makes a string match itself literally in a LIKE pattern.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// SearchPatients returns roster entries matching every set field of q,
// ordered by family name, given name and id.
func (s *Store) SearchPatients(ctx context.Context, tenantID string, q storage.PatientQuery) ([]storage.Patient, error) {
	var args params
	where := []string{"tenant_id = " + args.add(tenantID)}
	if q.Name != "" {
		// The *_key columns are lowercased in Go and use the "C" collation,
		// so this left-anchored LIKE is an index range scan.
		p := args.add(likeEscaper.Replace(strings.ToLower(q.Name)) + "%")
		where = append(where, "(family_key LIKE "+p+" OR given_key LIKE "+p+")")
	}
	if q.BirthDate != "" {
		where = append(where, "birth_date = "+args.add(q.BirthDate))
	}
	if q.Identifier != "" {
		probe, err := toJSON([]storage.Identifier{{Value: q.Identifier}})
		if err != nil {
			return nil, wrap("search patients", err)
		}
		// Containment of [{"value": …}] is what the GIN index serves.
		where = append(where, "identifiers @> "+args.add(probe)+"::jsonb")
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	query := `SELECT ` + patientColumns + ` FROM patients WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY family_key, given_key, id COLLATE "C" LIMIT ` + args.add(limit)
	if q.Offset > 0 {
		query += ` OFFSET ` + args.add(q.Offset)
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, wrap("search patients", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.Patient, error) { return scanPatient(r) })
	return out, wrap("search patients", err)
}

// DeletePatient removes a roster entry.
func (s *Store) DeletePatient(ctx context.Context, tenantID, patientID string) error {
	err := mustAffect(s.pool.Exec(ctx, `DELETE FROM patients WHERE tenant_id = $1 AND id = $2`, tenantID, patientID))
	return wrap("delete patient", err)
}
