package server

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server/logs"
)

// bareServer has only what the middleware uses.
func bareServer(buf *bytes.Buffer, maxBody int64) *Server {
	base, _ := url.Parse("https://auth.example")
	return &Server{base: base.String(), secure: true, log: logs.New(buf, slog.LevelDebug), now: time.Now, maxBody: maxBody}
}

func TestBodyLimit(t *testing.T) {
	var buf bytes.Buffer
	s := bareServer(&buf, 1024)
	h := s.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	for _, tc := range []struct {
		size int
		want int
	}{{1024, http.StatusNoContent}, {1025, http.StatusRequestEntityTooLarge}} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/x", strings.NewReader(strings.Repeat("a", tc.size))))
		if rec.Code != tc.want {
			t.Errorf("body of %d bytes: %d, want %d", tc.size, rec.Code, tc.want)
		}
	}
}

func TestPanicRecovered(t *testing.T) {
	var buf bytes.Buffer
	s := bareServer(&buf, 1024)
	h := s.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic("boom")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("a panic gave %d, want 500", rec.Code)
	}
	id := rec.Header().Get("X-Request-Id")
	if !strings.Contains(rec.Body.String(), id) || !strings.Contains(buf.String(), "panic serving request") {
		t.Fatalf("the panic was not reported with its request id: body %q, log %s", rec.Body.String(), buf.String())
	}
}

func TestHSTSOnlyOverHTTPS(t *testing.T) {
	var buf bytes.Buffer
	s := bareServer(&buf, 1024)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	rec := httptest.NewRecorder()
	s.middleware(ok).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Header().Get("Strict-Transport-Security") == "" {
		t.Fatal("no HSTS behind an https base URL")
	}
	s.secure = false
	rec = httptest.NewRecorder()
	s.middleware(ok).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Header().Get("Strict-Transport-Security") != "" {
		t.Fatal("HSTS sent behind an http base URL")
	}
}

func TestPageCSPWithFormTarget(t *testing.T) {
	for _, tc := range []struct {
		target, want string
	}{
		{"https://app.example/callback?x=1", "form-action 'self' https://app.example;"},
		{"http://127.0.0.1:9999/callback", "form-action 'self' http://127.0.0.1:9999;"},
		{"com.example.app:/oauth/callback", "form-action 'self' com.example.app:;"},
		{"HTTPS://App.Example/cb", "form-action 'self' https://App.Example;"},
		// Nothing that could end the directive or add a source gets in.
		{"https://evil.example;script-src *", "form-action 'self';"},
		{"https://a.example%20*/cb", "form-action 'self';"},
		{"", "form-action 'self';"},
		{"not a url", "form-action 'self';"},
	} {
		got := pageCSPWithFormTarget(tc.target)
		if !strings.Contains(got, tc.want) {
			t.Errorf("pageCSPWithFormTarget(%q) = %q, want it to contain %q", tc.target, got, tc.want)
		}
		if strings.Count(got, ";") != strings.Count(pageCSP, ";") || !strings.Contains(got, "frame-ancestors 'none'") {
			t.Errorf("pageCSPWithFormTarget(%q) changed other directives: %q", tc.target, got)
		}
	}
}
