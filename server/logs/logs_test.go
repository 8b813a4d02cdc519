package logs

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretsNeverWritten(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, slog.LevelDebug)
	log.Info("client registered",
		"client_id", "app-1",
		"client_secret", "s3cr3t-value-1",
		slog.Group("req", "password", "s3cr3t-value-2", "path", "/t/demo/token"),
		"refresh_token", "s3cr3t-value-3",
		"Authorization", "Basic s3cr3t-value-4",
		"master_key", "s3cr3t-value-5",
	)
	out := buf.String()
	if strings.Contains(out, "s3cr3t") {
		t.Fatalf("a secret reached the log: %s", out)
	}
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("log line is not JSON: %v", err)
	}
	if rec["client_id"] != "app-1" || rec["client_secret"] != Redacted {
		t.Fatalf("wrong fields kept or redacted: %v", rec)
	}
	if g, _ := rec["req"].(map[string]any); g["path"] != "/t/demo/token" || g["password"] != Redacted {
		t.Fatalf("group not handled: %v", rec["req"])
	}
}

func TestLevel(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, slog.LevelWarn).Info("quiet")
	if buf.Len() != 0 {
		t.Fatalf("info logged at warn level: %s", buf.String())
	}
}

func TestIsSecretKey(t *testing.T) {
	for key, want := range map[string]bool{
		"code": true, "auth_code": true, "id_token": true, "ClientSecret": true, "totp_seed": true,
		"status_code": false, "status": false, "client_id": false, "tenant": false, "path": false,
	} {
		if got := IsSecretKey(key); got != want {
			t.Errorf("IsSecretKey(%q) = %v, want %v", key, got, want)
		}
	}
}
