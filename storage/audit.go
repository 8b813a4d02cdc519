package storage

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sort"
	"time"
)

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
