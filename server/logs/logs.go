// Package logs builds smartauth's structured logger: JSON lines from
// log/slog, with any attribute whose key names a secret replaced.
package logs

import (
	"io"
	"log/slog"
	"strings"
)

// Redacted replaces the value of every attribute that names a secret.
const Redacted = "[redacted]"

// secretWords mark attribute keys whose values must never be written.
var secretWords = []string{"password", "secret", "token", "private", "master_key", "assertion", "cookie", "authorization", "totp", "seed", "recovery"}

// New returns a JSON logger writing to w at level, redacting secret fields.
func New(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: redact}))
}

// IsSecretKey reports whether an attribute key names a secret.
func IsSecretKey(key string) bool {
	k := strings.ToLower(key)
	// "code" alone is an authorization code; status_code and the like are not secrets.
	if k == "code" || strings.HasSuffix(k, "auth_code") {
		return true
	}
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

func redact(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindGroup && IsSecretKey(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	return a
}
