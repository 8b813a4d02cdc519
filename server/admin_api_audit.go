package server

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/smartauth/smartauth/server/audit"
	"github.com/smartauth/smartauth/storage"
)

// Audit trail pages through the admin API: newest first, at most
// maxAuditPage events a request.
const (
	defaultAuditPage = 100
	maxAuditPage     = 1000
)

// apiAuditEvent is one event of a tenant's audit trail with its place in
// the hash chain, so the chain can be checked outside smartauth too.
type apiAuditEvent struct {
	Seq      int64             `json:"seq"`
	Time     time.Time         `json:"time"`
	Type     string            `json:"type"`
	Outcome  string            `json:"outcome"`
	ActorID  string            `json:"actor_id,omitempty"`
	ClientID string            `json:"client_id,omitempty"`
	Subject  string            `json:"subject,omitempty"`
	SourceIP string            `json:"source_ip,omitempty"`
	Details  map[string]string `json:"details,omitempty"`
	PrevHash string            `json:"prev_hash,omitempty"`
	Hash     string            `json:"hash"`
}

// apiAuditPage is GET …/audit in the json format.
type apiAuditPage struct {
	Events []apiAuditEvent `json:"events"`
	// NextBefore, when set, is the before parameter of the next (older) page.
	NextBefore int64 `json:"next_before,omitempty"`
}

// apiChainStatus is GET …/audit/verify.
type apiChainStatus struct {
	OK       bool   `json:"ok"`
	Events   int64  `json:"events"`
	BrokenAt int64  `json:"broken_at,omitempty"`
	Problem  string `json:"problem,omitempty"`
}

// apiAuditFilter reads the filters of GET …/audit: user, client, type, since,
// until (RFC 3339), limit and before (a sequence number).
func apiAuditFilter(r *http.Request) (storage.AuditFilter, error) {
	q := r.URL.Query()
	f := storage.AuditFilter{User: q.Get("user"), ClientID: q.Get("client"), Type: q.Get("type"), Descending: true}
	bad := func(format string, args ...any) error {
		return &httpError{status: http.StatusBadRequest, code: "invalid_request", description: fmt.Sprintf(format, args...)}
	}
	for name, into := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if raw := q.Get(name); raw != "" {
			t, err := time.Parse(time.RFC3339, raw)
			if err != nil {
				return f, bad("%s must be an RFC 3339 time such as 2025-01-31T00:00:00Z.", name)
			}
			*into = t
		}
	}
	limit, err := apiQueryInt(q.Get("limit"), defaultAuditPage, 1, maxAuditPage, "limit")
	if err != nil {
		return f, err
	}
	f.Limit = limit
	if raw := q.Get("before"); raw != "" {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n < 1 {
			return f, bad("before must be a positive sequence number.")
		}
		f.BeforeSeq = n
	}
	return f, nil
}

// apiListAudit is GET …/audit: the tenant's events, newest first, as JSON
// (format=json, the default), a FHIR R4 Bundle of AuditEvent (format=fhir)
// or FHIR NDJSON (format=ndjson).
func (s *Server) apiListAudit(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	f, err := apiAuditFilter(r)
	if err != nil {
		return err
	}
	format := r.URL.Query().Get("format")
	switch format {
	case "", "json", "fhir", "ndjson":
	default:
		return &httpError{status: http.StatusBadRequest, code: "invalid_request", description: "format must be json, fhir or ndjson."}
	}
	events, err := s.store.ListAudit(r.Context(), ar.tenant.ID, f)
	if err != nil {
		return fmt.Errorf("list audit events of tenant %q: %w", ar.tenant.ID, err)
	}
	issuer := s.Issuer(ar.tenant.ID)
	// Written in full before anything is sent, so a failure cannot leave
	// half an export behind a 200.
	var buf bytes.Buffer
	switch format {
	case "fhir":
		if err := audit.WriteBundle(&buf, events, issuer); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/fhir+json")
	case "ndjson":
		if err := audit.WriteNDJSON(&buf, events, issuer); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/fhir+ndjson")
	default:
		page := apiAuditPage{Events: make([]apiAuditEvent, 0, len(events))}
		for _, e := range events {
			page.Events = append(page.Events, apiAuditEventView(e))
		}
		if len(events) == f.Limit {
			page.NextBefore = events[len(events)-1].Seq
		}
		writeJSON(w, http.StatusOK, page)
		return nil
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
	return nil
}

func apiAuditEventView(e storage.AuditEvent) apiAuditEvent {
	return apiAuditEvent{
		Seq: e.Seq, Time: e.Time, Type: e.Type, Outcome: e.Outcome, ActorID: e.ActorID, ClientID: e.ClientID,
		Subject: e.Subject, SourceIP: e.SourceIP, Details: e.Details,
		PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash),
	}
}

// apiVerifyAudit is GET …/audit/verify: whether the tenant's whole hash
// chain is intact, and where it first breaks if not.
func (s *Server) apiVerifyAudit(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	st, err := audit.Verify(r.Context(), s.store, ar.tenant.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiChainStatus{OK: st.OK, Events: st.Events, BrokenAt: st.BrokenAt, Problem: st.Problem})
	return nil
}
