package server

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/smartauth/smartauth/storage"
)

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
		title := http.StatusText(he.status)
		s.render(w, r, he.status, "error", map[string]string{
			"Title": title, "Message": he.description, "RequestID": requestID(r.Context()),
		})
	})
}

// classify logs err and returns what the caller may see.
func (s *Server) classify(r *http.Request, err error) *httpError {
	var he *httpError
	if errors.As(err, &he) {
		s.logger(r).Debug("request refused", "status", he.status, "error", he.code, "description", he.description)
		return he
	}
	if errors.Is(err, storage.ErrInvalidInput) {
		s.logger(r).Info("request refused by the store", "err", err)
		return &httpError{status: http.StatusBadRequest, code: "invalid_request",
			description: "The request holds a value the server cannot store: text that is not UTF-8, a NUL, or a value too long."}
	}
	s.logger(r).Error("request failed", "err", err)
	return &httpError{status: http.StatusInternalServerError, code: "server_error",
		description: "the server could not complete the request; quote the request id to support"}
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
