package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/ory/fosite"

	"github.com/smartauth/smartauth/server/oauth"
	"github.com/smartauth/smartauth/storage"
)

// retryAfter is the Retry-After, in seconds, of an answer given while the
// database is unavailable: about as long as a database failover takes.
const retryAfter = "10"

// httpError is an error whose status, code and description are safe to show
// the caller; any other error is logged in full and shown as a bare 500.
type httpError struct {
	status      int
	code        string
	description string
}

func (e *httpError) Error() string { return e.code + ": " + e.description }

func errNotFound(desc string) error {
	return &httpError{status: http.StatusNotFound, code: "not_found", description: desc}
}

// handlerFunc is a handler that returns its error to the one place that
// writes it to the caller and to the log.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// api adapts a JSON endpoint: its parameters pass wellFormed first, and
// errors become {"error", "error_description"}.
func (s *Server) api(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := s.wellFormed(r)
		if err == nil {
			err = h(w, r)
		}
		if err == nil {
			return
		}
		he := s.classify(r, err)
		w.Header().Set("Cache-Control", "no-store")
		setRetryAfter(w, he.status)
		writeJSON(w, he.status, map[string]string{"error": he.code, "error_description": he.description})
	})
}

// page adapts a page for people: its parameters pass wellFormed first, and
// errors become a helpful HTML page.
func (s *Server) page(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := s.wellFormed(r)
		if err == nil {
			err = h(w, r)
		}
		if err == nil {
			return
		}
		he := s.classify(r, err)
		setRetryAfter(w, he.status)
		title := http.StatusText(he.status)
		s.render(w, r, he.status, "error", map[string]string{
			"Title": title, "Message": he.description, "RequestID": requestID(r.Context()),
		})
	})
}

// classify logs err and returns what the caller may see. A database that
// cannot be reached is 503, which tells callers and load balancers to come
// back, rather than 500, which says the request itself broke something.
func (s *Server) classify(r *http.Request, err error) *httpError {
	var he *httpError
	switch {
	case errors.As(err, &he):
	case errors.Is(err, storage.ErrInvalidInput):
		// A backstop: the edges refuse such text before it reaches storage.
		he = &httpError{status: http.StatusBadRequest, code: "invalid_request",
			description: "The request holds a value the server cannot store: text that is not UTF-8, a NUL, or a value too long."}
	case errors.Is(err, storage.ErrUnavailable):
		he = &httpError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable",
			description: "The service is briefly unavailable. Try again in a moment; if it persists, quote the request id to support."}
	default:
		he = &httpError{status: http.StatusInternalServerError, code: "server_error",
			description: "the server could not complete the request; quote the request id to support"}
	}
	s.logRefusal(r, he.status, err, "status", he.status, "error", he.code, "description", he.description)
	return he
}

// logRefusal writes the one line that says why a request was refused or
// failed, under the request id the caller was shown: at info for the
// caller's mistakes, so a support reference leads to its reason at the
// default level; at warn, with the cause, while the database is
// unavailable; at error, with the cause, for any other fault of ours.
func (s *Server) logRefusal(r *http.Request, status int, cause error, attrs ...any) {
	log := s.logger(r)
	switch {
	case status < 500:
		log.Info("request refused", attrs...)
	case status == http.StatusServiceUnavailable:
		log.Warn("request failed: temporarily unavailable", append(attrs, "err", cause)...)
	default:
		log.Error("request failed", append(attrs, "err", cause)...)
	}
}

// setRetryAfter tells the caller of a 503 when to try again.
func setRetryAfter(w http.ResponseWriter, status int) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfter)
	}
}

// oauthError is err as an OAuth endpoint reports it: a database outage
// beneath any fosite error is temporarily_unavailable (RFC 6749 §4.1.2.1,
// §5.2), where fosite would answer server_error or call a token invalid, and
// input the store refused as not text is invalid_request.
func oauthError(err error) error {
	switch {
	case errors.Is(err, storage.ErrUnavailable) && !errors.Is(err, fosite.ErrTemporarilyUnavailable):
		return fosite.ErrTemporarilyUnavailable.WithHint("Try again in a moment.").WithWrap(err)
	case errors.Is(err, storage.ErrInvalidInput):
		// A backstop, as in classify: text no store can hold (a NUL in a
		// client assertion's jti, say) is the client's mistake.
		return fosite.ErrInvalidRequest.WithHint("The request holds a value the server cannot store: text that is not UTF-8, a NUL, or a value too long.").WithWrap(err)
	}
	return err
}

// logOAuthError logs a fosite error as logRefusal does, with the hint and
// debug details fosite keeps from the caller.
func (s *Server) logOAuthError(r *http.Request, err error, attrs ...any) {
	rfc := fosite.ErrorToRFC6749Error(err)
	s.logRefusal(r, rfc.CodeField, fositeCause(err), append([]any{"status", rfc.CodeField, "error", rfc.ErrorField,
		"description", rfc.DescriptionField, "hint", rfc.HintField, "debug", rfc.DebugField}, attrs...)...)
}

// fositeCause is the error beneath fosite's own errors, for the log: an
// RFC 6749 error's text is only its code.
func fositeCause(err error) error {
	for range 8 {
		var rfc *fosite.RFC6749Error
		if !errors.As(err, &rfc) || rfc.Cause() == nil {
			return err
		}
		err = rfc.Cause()
	}
	return err
}

// writeAccessError answers a token request with err, as fosite writes it
// (RFC 6749 §5.2), and logs why.
func (s *Server) writeAccessError(ctx context.Context, w http.ResponseWriter, r *http.Request, p *oauth.Provider, ar fosite.AccessRequester, err error) {
	err = oauthError(err)
	s.logOAuthError(r, err, "tenant", p.Tenant.ID)
	rfc := fosite.ErrorToRFC6749Error(err)
	s.metrics.Refused("token", refusalReason(ctx, err, rfc))
	setRetryAfter(w, rfc.CodeField)
	p.WriteAccessError(ctx, w, ar, err)
}

// refusalReason names a token refusal for the metrics: its RFC 6749 error
// code, one of a fixed set, except that a code or refresh token presented
// twice, a sign of a stolen credential, is "reuse_detected" rather than the
// invalid_grant its client is told (tokenFailed audits it the same way).
func refusalReason(ctx context.Context, err error, rfc *fosite.RFC6749Error) string {
	if oauth.ReuseSeen(ctx) || errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) || errors.Is(err, fosite.ErrInactiveToken) {
		return "reuse_detected"
	}
	return rfc.ErrorField
}

// writeOAuthError writes an RFC 6749 §5.2 error body and logs it, with
// logAttrs saying more than the caller is told.
func (s *Server) writeOAuthError(w http.ResponseWriter, r *http.Request, status int, code, desc string, logAttrs ...any) {
	s.logRefusal(r, status, nil, append([]any{"status", status, "error", code, "description", desc}, logAttrs...)...)
	w.Header().Set("Cache-Control", "no-store")
	setRetryAfter(w, status)
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// writeFositeError writes a fosite error without its debug details, which
// go to the log.
func (s *Server) writeFositeError(w http.ResponseWriter, r *http.Request, err error, logAttrs ...any) {
	err = oauthError(err)
	s.logOAuthError(r, err, logAttrs...)
	e := fosite.ErrorToRFC6749Error(err)
	desc := e.DescriptionField
	if e.HintField != "" {
		desc += " " + e.HintField
	}
	w.Header().Set("Cache-Control", "no-store")
	setRetryAfter(w, e.CodeField)
	writeJSON(w, e.CodeField, map[string]string{"error": e.ErrorField, "error_description": desc})
}

// render writes a page rendered fully in memory first.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	s.renderCSP(w, r, status, page, data, pageCSP)
}

// renderCSP writes a page under the given Content-Security-Policy.
func (s *Server) renderCSP(w http.ResponseWriter, r *http.Request, status int, page string, data any, csp string) {
	body, err := s.templates.Render(page, data)
	if err != nil {
		s.logger(r).Error("render page", "page", page, "err", err)
		http.Error(w, "internal error; request id "+requestID(r.Context()), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", csp)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// renderFlow renders a page of the sign-in flow, whose forms may end in a
// redirect to the app: browsers apply form-action to every redirect a form
// post leads to, so the app's redirect URI must be allowed besides 'self'.
func (s *Server) renderFlow(w http.ResponseWriter, r *http.Request, status int, page string, data any, appURI string) {
	s.renderCSP(w, r, status, page, data, pageCSPWithFormTarget(appURI))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (s *Server) logger(r *http.Request) *slog.Logger {
	return s.log.With("request_id", requestID(r.Context()))
}
