package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/smartauth/smartauth/storage"
)

const patientColumns = `tenant_id, id, family, given, birth_date, gender, identifiers, resource, updated_at`

func scanPatient(sc scanner) (storage.Patient, error) {
	var p storage.Patient
	var identifiers string
	var updated sql.NullInt64
	err := sc.Scan(&p.TenantID, &p.ID, &p.Family, &p.Given, &p.BirthDate, &p.Gender, &identifiers, &p.Resource, &updated)
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

// UpsertPatients inserts or replaces roster entries, all or none.
func (s *Store) UpsertPatients(ctx context.Context, tenantID string, patients []storage.Patient) error {
	if err := validatePatients(tenantID, patients); err != nil {
		return wrap("upsert patients", err)
	}
	if len(patients) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		upsert, err := tx.PrepareContext(ctx, `INSERT INTO patients (`+patientColumns+`, family_key, given_key)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (tenant_id, id) DO UPDATE SET family = excluded.family, given = excluded.given,
				birth_date = excluded.birth_date, gender = excluded.gender, identifiers = excluded.identifiers,
				resource = excluded.resource, updated_at = excluded.updated_at,
				family_key = excluded.family_key, given_key = excluded.given_key`)
		if err != nil {
			return err
		}
		defer upsert.Close()
		unindex, err := tx.PrepareContext(ctx, `DELETE FROM patient_identifiers WHERE tenant_id = ? AND patient_id = ?`)
		if err != nil {
			return err
		}
		defer unindex.Close()
		index, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO patient_identifiers (tenant_id, value, patient_id) VALUES (?, ?, ?)`)
		if err != nil {
			return err
		}
		defer index.Close()

		for _, p := range patients {
			identifiers, err := listJSON(p.Identifiers)
			if err != nil {
				return err
			}
			_, err = upsert.ExecContext(ctx, tenantID, p.ID, p.Family, p.Given, p.BirthDate, p.Gender, identifiers, p.Resource,
				micros(p.UpdatedAt), strings.ToLower(p.Family), strings.ToLower(p.Given))
			if err != nil {
				return fmt.Errorf("patient %q: %w", p.ID, err)
			}
			if _, err := unindex.ExecContext(ctx, tenantID, p.ID); err != nil {
				return fmt.Errorf("patient %q: %w", p.ID, err)
			}
			for _, id := range p.Identifiers {
				if id.Value == "" {
					continue
				}
				if _, err := index.ExecContext(ctx, tenantID, id.Value, p.ID); err != nil {
					return fmt.Errorf("patient %q: %w", p.ID, err)
				}
			}
		}
		return nil
	})
	return wrap("upsert patients", err)
}

// GetPatient returns one roster entry.
func (s *Store) GetPatient(ctx context.Context, tenantID, patientID string) (storage.Patient, error) {
	p, err := scanPatient(s.r.QueryRowContext(ctx, `SELECT `+patientColumns+` FROM patients WHERE tenant_id = ? AND id = ?`, tenantID, patientID))
	return p, wrap("get patient", err)
}

// SearchPatients returns roster entries matching every set field of q,
// ordered by family name, given name and id.
func (s *Store) SearchPatients(ctx context.Context, tenantID string, q storage.PatientQuery) ([]storage.Patient, error) {
	where := []string{"tenant_id = ?"}
	args := []any{tenantID}
	if q.Name != "" {
		// A range on the lowercased columns is a prefix match the index can
		// serve, with no wildcard characters to escape. No valid UTF-8 string
		// holds the byte 0xff, so prefix+"\xff" bounds every extension of it.
		lo := strings.ToLower(q.Name)
		hi := lo + "\xff"
		where = append(where, "((family_key >= ? AND family_key < ?) OR (given_key >= ? AND given_key < ?))")
		args = append(args, lo, hi, lo, hi)
	}
	if q.BirthDate != "" {
		where = append(where, "birth_date = ?")
		args = append(args, q.BirthDate)
	}
	if q.Identifier != "" {
		where = append(where, "id IN (SELECT patient_id FROM patient_identifiers WHERE tenant_id = ? AND value = ?)")
		args = append(args, tenantID, q.Identifier)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	args = append(args, limit, max(q.Offset, 0))
	rows, err := s.r.QueryContext(ctx, `SELECT `+patientColumns+` FROM patients WHERE `+strings.Join(where, " AND ")+`
		ORDER BY family_key, given_key, id LIMIT ? OFFSET ?`, args...)
	if err != nil {
		return nil, wrap("search patients", err)
	}
	defer rows.Close()
	var out []storage.Patient
	for rows.Next() {
		p, err := scanPatient(rows)
		if err != nil {
			return nil, wrap("search patients", err)
		}
		out = append(out, p)
	}
	return out, wrap("search patients", rows.Err())
}

// DeletePatient removes a roster entry.
func (s *Store) DeletePatient(ctx context.Context, tenantID, patientID string) error {
	err := mustAffect(s.w.ExecContext(ctx, `DELETE FROM patients WHERE tenant_id = ? AND id = ?`, tenantID, patientID))
	return wrap("delete patient", err)
}
