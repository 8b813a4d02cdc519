package storage

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// CleanString replaces what PostgreSQL text and JSON cannot hold (NUL bytes)
// and what JSON would rewrite (invalid UTF-8) with U+FFFD. Every backend
// cleans audit strings, and audit filters, with it, so an event is stored,
// chained and returned identically whichever database holds it.
func CleanString(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// PrepareAudits returns events as a backend stores them for tenantID, short
// of Seq and the hashes: TenantID set, strings cleaned, a zero Time stamped
// now, Time in UTC to the microsecond, and empty Details as nil. An event
// naming another tenant refuses the whole batch. The chain hash covers these
// normalised fields, so every backend must prepare events with this function.
func PrepareAudits(tenantID string, events []AuditEvent) ([]AuditEvent, error) {
	out := make([]AuditEvent, len(events))
	for i, e := range events {
		if e.TenantID != "" && e.TenantID != tenantID {
			return nil, fmt.Errorf("event %d of %d belongs to tenant %q, not %q", i+1, len(events), e.TenantID, tenantID)
		}
		e.TenantID = tenantID
		for _, f := range []*string{&e.Type, &e.Outcome, &e.ActorID, &e.ClientID, &e.Subject, &e.SourceIP} {
			*f = CleanString(*f)
		}
		if len(e.Details) == 0 {
			e.Details = nil
		} else {
			details := make(map[string]string, len(e.Details))
			for k, v := range e.Details {
				details[CleanString(k)] = CleanString(v)
			}
			e.Details = details
		}
		if e.Time.IsZero() {
			e.Time = time.Now()
		}
		e.Time = e.Time.UTC().Truncate(time.Microsecond)
		out[i] = e
	}
	return out, nil
}

// ChainAudits assigns prepared events, in order, the sequence numbers and
// hashes that follow a trail ending at lastSeq with hash lastHash (0 and nil
// for an empty trail). It changes events in place.
func ChainAudits(lastSeq int64, lastHash []byte, events []AuditEvent) {
	prev := lastHash
	for i := range events {
		e := &events[i]
		e.Seq, e.PrevHash = lastSeq+int64(i)+1, prev
		e.Hash = ChainHash(prev, *e)
		prev = e.Hash
	}
}

// ChainHash is the hash of an audit event chained to its predecessor's hash:
// SHA-256 over the previous hash and every field of the event in a fixed,
// length-prefixed encoding, so no two different events share an encoding.
func ChainHash(prev []byte, e AuditEvent) []byte {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field(prev)
	field([]byte(e.TenantID))
	field(binary.BigEndian.AppendUint64(nil, uint64(e.Seq)))
	field([]byte(e.Time.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)))
	for _, s := range []string{e.Type, e.Outcome, e.ActorID, e.ClientID, e.Subject, e.SourceIP} {
		field([]byte(s))
	}
	keys := make([]string, 0, len(e.Details))
	for k := range e.Details {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	field(binary.BigEndian.AppendUint64(nil, uint64(len(keys))))
	for _, k := range keys {
		field([]byte(k))
		field([]byte(e.Details[k]))
	}
	return h.Sum(nil)
}

// VerifyChain checks that events, a tenant's trail from sequence 1 in order,
// link and hash correctly; it names the first event that does not.
func VerifyChain(events []AuditEvent) error {
	var prev []byte
	for i, e := range events {
		if e.Seq != int64(i+1) {
			return fmt.Errorf("audit event %d: sequence gap, found %d", i+1, e.Seq)
		}
		if !bytes.Equal(e.PrevHash, prev) {
			return fmt.Errorf("audit event %d: previous hash does not match", e.Seq)
		}
		if !bytes.Equal(e.Hash, ChainHash(prev, e)) {
			return fmt.Errorf("audit event %d: hash does not match its contents", e.Seq)
		}
		prev = e.Hash
	}
	return nil
}
