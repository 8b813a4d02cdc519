package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smartauth/smartauth/storage"
)

// auditLockClass is the first key of the per-tenant advisory lock that
// serialises AppendAudit; the second is a hash of the tenant id. The class
// keeps these locks apart from any other advisory lock in the database.
const auditLockClass int32 = 0x61756474 // "audt"

const auditColumns = `tenant_id, seq, time, type, outcome, actor_id, client_id, subject, source_ip, details, prev_hash, hash`

func scanAudit(row pgx.Row) (storage.AuditEvent, error) {
	var e storage.AuditEvent
	var details []byte
	err := row.Scan(&e.TenantID, &e.Seq, &e.Time, &e.Type, &e.Outcome, &e.ActorID, &e.ClientID, &e.Subject, &e.SourceIP,
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
	e.Time = e.Time.UTC()
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
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Writers of one tenant, on any replica, queue here until the previous
		// one commits, so each reads the true tail of the chain. The primary
		// key on (tenant_id, seq) would refuse a fork should this ever fail.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, auditLockClass, tenantID); err != nil {
			return err
		}
		var last int64
		var prev []byte
		err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_events WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1`, tenantID).
			Scan(&last, &prev)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		// The rows go as one array per column, so a batch of any size is one
		// statement with a fixed number of parameters.
		var (
			seqs                                            []int64
			times                                           []time.Time
			types, outcomes, actors, clients, subjects, ips []string
			prevHashes, hashes                              [][]byte
		)
		storage.ChainAudits(last, prev, out)
		for i := range out {
			e := &out[i]
			seqs, times = append(seqs, e.Seq), append(times, e.Time)
			types, outcomes, actors = append(types, e.Type), append(outcomes, e.Outcome), append(actors, e.ActorID)
			clients, subjects, ips = append(clients, e.ClientID), append(subjects, e.Subject), append(ips, e.SourceIP)
			prevHashes, hashes = append(prevHashes, e.PrevHash), append(hashes, e.Hash)
		}
		_, err = tx.Exec(ctx, `INSERT INTO audit_events (`+auditColumns+`)
			SELECT $1, seq, time, type, outcome, actor_id, client_id, subject, source_ip, details::jsonb, prev_hash, hash
			FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
				$10::text[], $11::bytea[], $12::bytea[])
				AS e (seq, time, type, outcome, actor_id, client_id, subject, source_ip, details, prev_hash, hash)`,
			tenantID, seqs, times, types, outcomes, actors, clients, subjects, ips, details, prevHashes, hashes)
		return err
	})
	if err != nil {
		return nil, wrap("append audit", err)
	}
	return out, nil
}

// ListAudit returns a tenant's events matching f in sequence order. Since is
// inclusive, Until exclusive.
func (s *Store) ListAudit(ctx context.Context, tenantID string, f storage.AuditFilter) ([]storage.AuditEvent, error) {
	var args params
	where := []string{"tenant_id = " + args.add(tenantID), "seq > " + args.add(f.AfterSeq)}
	for _, c := range []struct {
		column, value string
	}{{"type", f.Type}, {"client_id", f.ClientID}, {"subject", f.Subject}} {
		if c.value != "" {
			// Stored values were cleaned, so the filter is too.
			where = append(where, c.column+" = "+args.add(storage.CleanString(c.value)))
		}
	}
	if f.User != "" {
		u := args.add(storage.CleanString(f.User))
		where = append(where, "(actor_id = "+u+" OR subject = "+u+")")
	}
	if f.BeforeSeq > 0 {
		where = append(where, "seq < "+args.add(f.BeforeSeq))
	}
	if !f.Since.IsZero() {
		where = append(where, "time >= "+args.add(f.Since))
	}
	if !f.Until.IsZero() {
		where = append(where, "time < "+args.add(f.Until))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	query := `SELECT ` + auditColumns + ` FROM audit_events WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY seq` + order(f.Descending) + ` LIMIT ` + args.add(limit)
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, wrap("list audit", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.AuditEvent, error) { return scanAudit(r) })
	return out, wrap("list audit", err)
}

// order is the SQL sort direction of ListAudit.
func order(descending bool) string {
	if descending {
		return " DESC"
	}
	return ""
}
