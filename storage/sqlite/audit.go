package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/smartauth/smartauth/storage"
)

const auditColumns = `tenant_id, seq, time, type, outcome, actor_id, client_id, subject, source_ip, details, prev_hash, hash`

func scanAudit(sc scanner) (storage.AuditEvent, error) {
	var e storage.AuditEvent
	var at int64
	var details string
	err := sc.Scan(&e.TenantID, &e.Seq, &at, &e.Type, &e.Outcome, &e.ActorID, &e.ClientID, &e.Subject, &e.SourceIP,
		&details, &e.PrevHash, &e.Hash)
	if err != nil {
		return storage.AuditEvent{}, err
	}
	if err := fromJSON(details, &e.Details); err != nil {
		return storage.AuditEvent{}, fmt.Errorf("audit event %d: details: %w", e.Seq, err)
	}
	if len(e.Details) == 0 {
		e.Details = nil
	}
	e.Time = time.UnixMicro(at).UTC()
	return e, nil
}

// AppendAudit assigns the next sequence number and chain hash of the tenant
// and stores the event; it returns the stored event. The caller's Seq,
// PrevHash and Hash are ignored, and a zero Time means now.
func (s *Store) AppendAudit(ctx context.Context, e storage.AuditEvent) (storage.AuditEvent, error) {
	stored, err := s.AppendAudits(ctx, e.TenantID, []storage.AuditEvent{e})
	if err != nil {
		return storage.AuditEvent{}, err
	}
	return stored[0], nil
}

// AppendAudits stores events of one tenant in one transaction, all or none,
// chained in the order given, and returns them as stored. An event's empty
// TenantID means tenantID; an event naming another tenant refuses the batch.
// As in AppendAudit, Seq, PrevHash and Hash are assigned here.
func (s *Store) AppendAudits(ctx context.Context, tenantID string, events []storage.AuditEvent) ([]storage.AuditEvent, error) {
	if len(events) == 0 {
		return nil, nil
	}
	out, err := storage.PrepareAudits(tenantID, events)
	if err != nil {
		return nil, wrap("append audit", err)
	}
	details := make([]string, len(out))
	for i := range out {
		details[i] = "{}"
		if out[i].Details != nil {
			if details[i], err = toJSON(out[i].Details); err != nil {
				return nil, wrap("append audit", err)
			}
		}
	}
	// The write transaction is the serialisation: it holds SQLite's single
	// write lock from BEGIN IMMEDIATE, so no other writer reads the same tail.
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		var last int64
		var prev []byte
		err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events WHERE tenant_id = ? ORDER BY seq DESC LIMIT 1`, tenantID).
			Scan(&last, &prev)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		// One prepared statement run per row: SQLite is in-process, so rows
		// cost no round trips, and no batch can exceed the parameter limit.
		insert, err := tx.PrepareContext(ctx, `INSERT INTO audit_events (`+auditColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer insert.Close()
		storage.ChainAudits(last, prev, out)
		for i := range out {
			e := &out[i]
			_, err = insert.ExecContext(ctx, e.TenantID, e.Seq, e.Time.UnixMicro(), e.Type, e.Outcome, e.ActorID, e.ClientID,
				e.Subject, e.SourceIP, details[i], e.PrevHash, e.Hash)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap("append audit", err)
	}
	return out, nil
}

// ListAudit returns a tenant's events matching f in sequence order. Since is
// inclusive, Until exclusive.
func (s *Store) ListAudit(ctx context.Context, tenantID string, f storage.AuditFilter) ([]storage.AuditEvent, error) {
	where := []string{"tenant_id = ?", "seq > ?"}
	args := []any{tenantID, f.AfterSeq}
	for _, c := range []struct {
		column, value string
	}{{"type", f.Type}, {"client_id", f.ClientID}, {"subject", f.Subject}} {
		if c.value != "" {
			// Stored values were cleaned, so the filter is too.
			where = append(where, c.column+" = ?")
			args = append(args, storage.CleanString(c.value))
		}
	}
	if f.User != "" {
		where = append(where, "(actor_id = ? OR subject = ?)")
		args = append(args, storage.CleanString(f.User), storage.CleanString(f.User))
	}
	if f.BeforeSeq > 0 {
		where = append(where, "seq < ?")
		args = append(args, f.BeforeSeq)
	}
	if !f.Since.IsZero() {
		where = append(where, "time >= ?")
		args = append(args, f.Since.UnixMicro())
	}
	if !f.Until.IsZero() {
		where = append(where, "time < ?")
		args = append(args, f.Until.UnixMicro())
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit_events WHERE `+strings.Join(where, " AND ")+`
		ORDER BY seq`+order(f.Descending)+` LIMIT ?`, args...)
	if err != nil {
		return nil, wrap("list audit", err)
	}
	defer rows.Close()
	var out []storage.AuditEvent
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return nil, wrap("list audit", err)
		}
		out = append(out, e)
	}
	return out, wrap("list audit", rows.Err())
}

// order is the SQL sort direction of ListAudit.
func order(descending bool) string {
	if descending {
		return " DESC"
	}
	return ""
}
