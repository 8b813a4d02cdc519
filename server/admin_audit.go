package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/smartauth/smartauth/server/audit"
	"github.com/smartauth/smartauth/storage"
)

// auditPageSize is how many events the viewer shows at a time.
const auditPageSize = 100

// maxAuditExport caps one export, so a request cannot hold a whole
// multi-year trail in memory; narrow the time range to export more.
const maxAuditExport = 100_000

// auditTimeLayout is how the viewer's time fields are typed: the format of
// an HTML datetime-local input, read as UTC.
const auditTimeLayout = "2006-01-02T15:04"

// auditQuery is the viewer's filter as typed, kept to fill the form again.
type auditQuery struct {
	User   string
	Client string
	Type   string
	Since  string
	Until  string
}

// auditViewPage is the audit viewer.
type auditViewPage struct {
	adminPage
	Query  auditQuery
	Events []auditRow
	Chain  audit.ChainStatus
	// FullCheck is when the whole trail was last walked; newer events were
	// checked for this view.
	FullCheck time.Time
	// Older is the URL of the next page of older events; empty on the last.
	Older string
	// ExportFHIR and ExportNDJSON download the filtered events.
	ExportFHIR, ExportNDJSON string
	Types                    []string
}

// auditRow is one event as the viewer shows it.
type auditRow struct {
	storage.AuditEvent
	When    string
	Details string
}

// auditEventTypes are offered in the viewer's type filter; any other type
// can still be typed.
var auditEventTypes = []string{
	"login.success", "login.failure", "logout", "mfa.success", "mfa.failure", "mfa.enroll", "mfa.skip",
	"consent.grant", "consent.deny", "authorize.code", "token.issue", "token.refresh", "token.refresh_reuse",
	"token.code_reuse", "token.revoke", "token.exchange", "client.authenticate", "client.register", "launch.create",
}

// auditRealm is whose trail an admin page shows: the tenant's, or in the
// operator area the operator realm's own.
func auditRealm(ar *adminRequest) string {
	if ar.tenant.ID != "" {
		return ar.tenant.ID
	}
	return storage.OperatorRealm
}

// parseAuditFilter reads the viewer's and export's filters from a query.
// A user may be named by email, which is looked up in the trail's realm.
func (s *Server) parseAuditFilter(ctx context.Context, realm string, q url.Values) (storage.AuditFilter, auditQuery, error) {
	in := auditQuery{
		User: strings.TrimSpace(q.Get("user")), Client: strings.TrimSpace(q.Get("client")),
		Type: strings.TrimSpace(q.Get("type")), Since: strings.TrimSpace(q.Get("since")), Until: strings.TrimSpace(q.Get("until")),
	}
	f := storage.AuditFilter{User: in.User, ClientID: in.Client, Type: in.Type}
	if strings.Contains(in.User, "@") {
		u, err := s.store.GetUserByEmail(ctx, realm, in.User)
		switch {
		case err == nil:
			f.User = u.ID
		case !errors.Is(err, storage.ErrNotFound):
			return f, in, fmt.Errorf("look up user %q: %w", in.User, err)
		}
	}
	var err error
	if f.Since, err = parseAuditTime("from", in.Since); err != nil {
		return f, in, err
	}
	if f.Until, err = parseAuditTime("until", in.Until); err != nil {
		return f, in, err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return f, in, &httpError{status: http.StatusBadRequest, code: "invalid_request", description: "The end of the time range must be after its start."}
	}
	if b := q.Get("before"); b != "" {
		if f.BeforeSeq, err = strconv.ParseInt(b, 10, 64); err != nil || f.BeforeSeq < 1 {
			return f, in, &httpError{status: http.StatusBadRequest, code: "invalid_request", description: "The page link is damaged; start again from the audit page."}
		}
	}
	return f, in, nil
}

// parseAuditTime reads a datetime-local value (or RFC 3339) as UTC.
func parseAuditTime(what, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{auditTimeLayout, time.RFC3339} {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, &httpError{status: http.StatusBadRequest, code: "invalid_request",
		description: fmt.Sprintf("The %q time must look like 2026-01-31T09:30 (UTC).", what)}
}

// FullChainCheckEvery is how often the audit viewer walks a whole trail. In
// between, a view checks only the events after the last one found intact,
// and that event itself: a walk costs a few microseconds an event, which a
// busy tenant's millions of events would make seconds on every view. The
// viewer's "check the whole trail" link, and the API's verify, walk it all.
const FullChainCheckEvery = 10 * time.Minute

// chainChecks remembers, per trail, the last event found intact and when
// the whole trail was last walked.
type chainChecks struct {
	mu    sync.Mutex
	heads map[string]checkedHead
}

type checkedHead struct {
	head   audit.ChainHead
	fullAt time.Time
}

// checkChain checks a trail for the viewer: from the last event found intact
// when the whole trail was walked less than FullChainCheckEvery ago and full
// is false, else all of it. It returns when the whole trail was last walked.
func (s *Server) checkChain(ctx context.Context, realm string, full bool) (audit.ChainStatus, time.Time, error) {
	now := s.now()
	s.chainChecks.mu.Lock()
	last, ok := s.chainChecks.heads[realm]
	s.chainChecks.mu.Unlock()
	if full || !ok || now.Sub(last.fullAt) >= FullChainCheckEvery || now.Before(last.fullAt) {
		last = checkedHead{fullAt: now}
	}
	st, err := audit.VerifyFrom(ctx, s.store, realm, last.head)
	if err == nil && !st.OK && last.head.Seq > 0 {
		// A break is reported as a whole walk finds it: the remembered
		// event may be gone for an innocent reason (the tenant deleted and
		// made again), and a whole walk names the first bad event.
		last = checkedHead{fullAt: now}
		st, err = audit.Verify(ctx, s.store, realm)
	}
	if err != nil {
		return audit.ChainStatus{}, time.Time{}, err
	}
	s.chainChecks.mu.Lock()
	defer s.chainChecks.mu.Unlock()
	if !st.OK {
		// A broken trail is walked in full on every view until it is mended.
		delete(s.chainChecks.heads, realm)
		return st, last.fullAt, nil
	}
	if len(s.chainChecks.heads) >= cacheMax {
		clear(s.chainChecks.heads)
	}
	s.chainChecks.heads[realm] = checkedHead{head: st.Head, fullAt: last.fullAt}
	return st, last.fullAt, nil
}

// adminAudit shows a trail, newest first, with its chain-verification status.
func (s *Server) adminAudit(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	realm := auditRealm(ar)
	page := auditViewPage{adminPage: ar.page(s, "audit", "Audit trail"), Types: auditEventTypes}
	f, in, err := s.parseAuditFilter(r.Context(), realm, r.URL.Query())
	page.Query = in
	var he *httpError
	if errors.As(err, &he) {
		page.Error = he.description
		s.render(w, r, http.StatusBadRequest, "admin_audit", page)
		return nil
	}
	if err != nil {
		return err
	}
	f.Descending, f.Limit = true, auditPageSize
	events, err := s.store.ListAudit(r.Context(), realm, f)
	if err != nil {
		return fmt.Errorf("list audit events: %w", err)
	}
	for _, e := range events {
		page.Events = append(page.Events, auditRow{AuditEvent: e, When: e.Time.UTC().Format("2006-01-02 15:04:05 UTC"), Details: detailText(e.Details)})
	}
	if page.Chain, page.FullCheck, err = s.checkChain(r.Context(), realm, r.URL.Query().Get("verify") == "full"); err != nil {
		return err
	}
	q := r.URL.Query()
	q.Del("before")
	q.Del("verify")
	if len(events) == auditPageSize {
		older := maps.Clone(q)
		older.Set("before", strconv.FormatInt(events[len(events)-1].Seq, 10))
		page.Older = "?" + older.Encode()
	}
	export := ar.page(s, "", "").AreaURL + "/audit/export?"
	fhir, ndjson := maps.Clone(q), maps.Clone(q)
	fhir.Set("format", "fhir")
	ndjson.Set("format", "ndjson")
	page.ExportFHIR, page.ExportNDJSON = export+fhir.Encode(), export+ndjson.Encode()
	s.render(w, r, http.StatusOK, "admin_audit", page)
	return nil
}

// adminAuditExport downloads the filtered trail as a FHIR R4 Bundle of
// AuditEvent resources or as FHIR NDJSON, oldest first.
func (s *Server) adminAuditExport(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	realm := auditRealm(ar)
	f, _, err := s.parseAuditFilter(r.Context(), realm, r.URL.Query())
	if err != nil {
		return err
	}
	format := r.URL.Query().Get("format")
	if format != "fhir" && format != "ndjson" {
		return &httpError{status: http.StatusBadRequest, code: "invalid_request", description: `The export format must be "fhir" or "ndjson".`}
	}
	events, err := s.auditEvents(r.Context(), realm, f, maxAuditExport)
	if err != nil {
		return err
	}
	return s.writeAuditExport(w, realm, format, events)
}

// writeAuditExport writes events as a download in format "fhir" or "ndjson".
func (s *Server) writeAuditExport(w http.ResponseWriter, realm, format string, events []storage.AuditEvent) error {
	var buf bytes.Buffer
	issuer := s.Issuer(realm)
	contentType, name := "application/fhir+json", "audit-"+strings.TrimPrefix(realm, "_")+".json"
	write := audit.WriteBundle
	if format == "ndjson" {
		contentType, name, write = "application/fhir+ndjson", "audit-"+strings.TrimPrefix(realm, "_")+".ndjson", audit.WriteNDJSON
	}
	// Written in memory first, so a failure is an error page, not half a file.
	if err := write(&buf, events, issuer); err != nil {
		return fmt.Errorf("export audit of %q: %w", realm, err)
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	_, _ = w.Write(buf.Bytes())
	return nil
}

// auditEvents reads every event matching f, oldest first, up to max; more
// than max is refused rather than cut short silently.
func (s *Server) auditEvents(ctx context.Context, realm string, f storage.AuditFilter, max int) ([]storage.AuditEvent, error) {
	f.Descending = false
	var out []storage.AuditEvent
	for {
		f.Limit = 1000
		page, err := s.store.ListAudit(ctx, realm, f)
		if err != nil {
			return nil, fmt.Errorf("list audit events of %q: %w", realm, err)
		}
		out = append(out, page...)
		if len(out) > max {
			return nil, &httpError{status: http.StatusRequestEntityTooLarge, code: "invalid_request",
				description: fmt.Sprintf("More than %d events match; narrow the time range.", max)}
		}
		if len(page) == 0 {
			return out, nil
		}
		f.AfterSeq = page[len(page)-1].Seq
	}
}

// detailText shows an event's details as "key=value" pairs in key order.
func detailText(d map[string]string) string {
	if len(d) == 0 {
		return ""
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+d[k])
	}
	return strings.Join(parts, " ")
}
