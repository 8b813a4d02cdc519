package audit

import (
	"bytes"
	"context"
	"fmt"

	"github.com/smartauth/smartauth/storage"
)

// verifyPage is how many events Verify reads at a time, so a long trail is
// checked in bounded memory.
const verifyPage = 1000

// ChainStatus is the result of checking one tenant's audit trail.
type ChainStatus struct {
	// Events is how many events, from sequence 1, were found intact; for an
	// intact trail it is the trail's length.
	Events int64
	// OK reports whether the whole trail links and hashes correctly.
	OK bool
	// BrokenAt is the sequence number of the first bad or missing event; zero when OK.
	BrokenAt int64
	// Problem says in plain words what is wrong at BrokenAt; empty when OK.
	Problem string
	// Head is the last event found intact, from which VerifyFrom can go on.
	Head ChainHead
}

// ChainHead names an event of a trail by its sequence number and hash.
type ChainHead struct {
	Seq  int64
	Hash []byte
}

// Verify walks a tenant's whole audit trail in sequence order and checks that
// sequence numbers run from 1 without gaps, that every event names its
// predecessor's hash and that every hash matches the event's contents. A
// broken chain is reported in the status, not as an error; the error is only
// for failing to read the trail. Events removed from the end of the trail
// leave no trace in the chain itself, so compare Events with a count or hash
// recorded elsewhere to catch truncation.
func Verify(ctx context.Context, store storage.Storage, tenantID string) (ChainStatus, error) {
	return VerifyFrom(ctx, store, tenantID, ChainHead{})
}

// VerifyFrom checks a trail as Verify does, trusting the events up to from,
// which an earlier check found intact: it checks that the event at from is
// still there with the same hash and contents, then every event after it.
// A rewrite of an event before from goes unseen, so a full Verify must still
// run from time to time. A zero from is a full Verify.
func VerifyFrom(ctx context.Context, store storage.Storage, tenantID string, from ChainHead) (ChainStatus, error) {
	var (
		status ChainStatus
		last   int64
		prev   []byte
	)
	if from.Seq > 0 {
		page, err := store.ListAudit(ctx, tenantID, storage.AuditFilter{AfterSeq: from.Seq - 1, Limit: 1})
		if err != nil {
			return ChainStatus{}, fmt.Errorf("audit: verify tenant %q at event %d: %w", tenantID, from.Seq, err)
		}
		switch {
		case len(page) == 0 || page[0].Seq != from.Seq:
			return ChainStatus{BrokenAt: from.Seq, Problem: fmt.Sprintf("event %d, checked before, is missing", from.Seq)}, nil
		case !bytes.Equal(page[0].Hash, from.Hash) || !bytes.Equal(page[0].Hash, storage.ChainHash(page[0].PrevHash, page[0])):
			return ChainStatus{BrokenAt: from.Seq, Problem: fmt.Sprintf("event %d: changed since it was checked", from.Seq)}, nil
		}
		last, prev = from.Seq, from.Hash
		status.Events, status.Head = from.Seq, from
	}
	for {
		// Stop on an empty page rather than a short one: a backend capping
		// Limit below verifyPage must not end the walk early and pass a
		// trail it has not read.
		page, err := store.ListAudit(ctx, tenantID, storage.AuditFilter{AfterSeq: last, Limit: verifyPage})
		if err != nil {
			return ChainStatus{}, fmt.Errorf("audit: verify tenant %q after event %d: %w", tenantID, last, err)
		}
		if len(page) == 0 {
			status.OK = true
			return status, nil
		}
		for _, e := range page {
			if problem := checkLink(last, prev, e); problem != "" {
				status.BrokenAt, status.Problem = last+1, problem
				return status, nil
			}
			last, prev = e.Seq, e.Hash
			status.Events++
			status.Head = ChainHead{Seq: e.Seq, Hash: e.Hash}
		}
	}
}

// checkLink describes what is wrong with e as the successor of the event
// numbered last with hash prev, or returns "" when e follows it correctly.
func checkLink(last int64, prev []byte, e storage.AuditEvent) string {
	want := last + 1
	switch {
	case e.Seq != want && last == 0:
		return fmt.Sprintf("event %d is missing: the trail starts at event %d", want, e.Seq)
	case e.Seq != want:
		return fmt.Sprintf("event %d is missing: the trail jumps from event %d to event %d", want, last, e.Seq)
	case !bytes.Equal(e.PrevHash, prev) && last == 0:
		return fmt.Sprintf("event %d: names a previous hash, but it is the first event", e.Seq)
	case !bytes.Equal(e.PrevHash, prev):
		return fmt.Sprintf("event %d: previous hash does not match the hash of event %d", e.Seq, last)
	case !bytes.Equal(e.Hash, storage.ChainHash(prev, e)):
		return fmt.Sprintf("event %d: hash does not match its contents", e.Seq)
	}
	return ""
}
