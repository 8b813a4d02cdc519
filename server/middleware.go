package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// apiCSP forbids everything: JSON needs no sub-resources and no framing.
const apiCSP = "default-src 'none'; frame-ancestors 'none'"

// pageCSP lets pages use only our own styles, scripts and forms.
const pageCSP = "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// pageCSPWithFormTarget is pageCSP whose forms may also lead to target: a
// registered redirect URI, checked before any page shows it. Only its
// origin (or, for an app's private-use scheme, the scheme) is named, and
// only when it cannot change the policy's meaning; otherwise the page
// keeps pageCSP and such a redirect is blocked rather than the policy bent.
func pageCSPWithFormTarget(target string) string {
	src, ok := cspSource(target)
	if !ok {
		return pageCSP
	}
	return strings.Replace(pageCSP, "form-action 'self'", "form-action 'self' "+src, 1)
}

// cspSource is the CSP source expression for a URL's origin, or its scheme
// alone for a private-use scheme such as com.example.app:/callback.
func cspSource(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	for _, c := range scheme {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return "", false
		}
	}
	if scheme != "http" && scheme != "https" {
		return scheme + ":", true
	}
	host := u.Host
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == ':' || c == '[' || c == ']') {
			return "", false
		}
	}
	if host == "" {
		return "", false
	}
	return scheme + "://" + host, true
}

// securityHeaders start every response. The value slices are shared by
// all responses, which saves an allocation per header per request; that is
// safe because a handler replaces a header's slice (Set) or appends past
// its length of one (Add), and never writes into it.
var securityHeaders = http.Header{
	"X-Content-Type-Options":     {"nosniff"},
	"X-Frame-Options":            {"DENY"},
	"Referrer-Policy":            {"no-referrer"},
	"Content-Security-Policy":    {apiCSP},
	"Cross-Origin-Opener-Policy": {"same-origin"},
	"Cache-Control":              {"no-store"},
}

var hstsHeader = []string{"max-age=63072000; includeSubDomains"}

type ctxKey int

const requestIDKey ctxKey = iota

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// middleware wraps every request: recovery, request id, access log,
// security headers and a body size limit.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		var began time.Time // on the real, monotonic clock, for the metrics
		if s.metrics != nil {
			began = time.Now()
		}
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = newRequestID()
		}
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}

		h := rec.Header()
		h.Set("X-Request-Id", id)
		for k, v := range securityHeaders {
			h[k] = v
		}
		if s.secure {
			h["Strict-Transport-Security"] = hstsHeader
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(rec, r.Body, s.maxBody)
		}

		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.logger(r).Error("panic serving request", "panic", p, "path", r.URL.Path)
				if !rec.wrote {
					http.Error(rec, "internal error; request id "+id, http.StatusInternalServerError)
				}
			}
			if s.metrics != nil {
				// The route table's mux set the pattern on this very request;
				// it is empty when no pattern matched.
				s.metrics.Request(r.Pattern, rec.status, time.Since(began))
			}
			if !s.log.Enabled(r.Context(), slog.LevelInfo) {
				// Building the line's fields costs allocations even when no one reads it.
				return
			}
			s.log.Info("request",
				"request_id", id,
				"method", r.Method,
				"path", r.URL.Path,
				"status", rec.status,
				"bytes", rec.bytes,
				"duration_ms", float64(s.now().Sub(start).Microseconds())/1000,
				"remote", clientIP(r),
			)
		}()
		next.ServeHTTP(rec, r)
	})
}

// clientIP is the peer address; forwarded headers are not trusted here
// because any client can set them.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return time.Now().UTC().Format("20060102T150405.000000000")
	}
	return hex.EncodeToString(b)
}

// statusRecorder remembers what was written, for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
	wrote  bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.status = code
		r.wrote = true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.wrote = true
	n, err := r.ResponseWriter.Write(b)
	r.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// cors opens an endpoint to scripts from any origin: discovery and keys are
// public, and browser apps must read them.
// protocolBody caps the request body at MaxProtocolBodyBytes, below the
// server-wide cap, for the endpoints that MaxProtocolBodyBytes names.
func protocolBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, MaxProtocolBodyBytes)
		}
		next.ServeHTTP(w, r)
	})
}

func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		next.ServeHTTP(w, r)
	})
}

func preflight(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
	w.Header().Set("Access-Control-Allow-Headers", "Accept, Authorization, Content-Type")
	w.Header().Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
}
