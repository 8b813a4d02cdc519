package storage

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func chain(n int) []AuditEvent {
	var out []AuditEvent
	var prev []byte
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	for i := 1; i <= n; i++ {
		e := AuditEvent{TenantID: "t", Seq: int64(i), Time: t0.Add(time.Duration(i) * time.Second), Type: "token.issue",
			Outcome: "success", ClientID: "c", Subject: "u", SourceIP: "127.0.0.1", Details: map[string]string{"k": "v"}}
		e.PrevHash = prev
		e.Hash = ChainHash(prev, e)
		prev = e.Hash
		out = append(out, e)
	}
	return out
}

func TestVerifyChainDetectsTampering(t *testing.T) {
	if err := VerifyChain(chain(4)); err != nil {
		t.Fatalf("an intact chain failed: %v", err)
	}
	tests := []struct {
		name   string
		tamper func([]AuditEvent) []AuditEvent
		want   string
	}{
		{"changed outcome", func(es []AuditEvent) []AuditEvent { es[1].Outcome = "failure"; return es }, "event 2: hash"},
		{"changed detail", func(es []AuditEvent) []AuditEvent { es[2].Details = map[string]string{"k": "w"}; return es }, "event 3: hash"},
		{"added detail", func(es []AuditEvent) []AuditEvent { es[0].Details["x"] = ""; return es }, "event 1: hash"},
		{"changed time", func(es []AuditEvent) []AuditEvent { es[3].Time = es[3].Time.Add(time.Microsecond); return es }, "event 4: hash"},
		{"deleted row", func(es []AuditEvent) []AuditEvent { return append(es[:1], es[2:]...) }, "sequence gap"},
		{"rehashed row", func(es []AuditEvent) []AuditEvent {
			es[1].Subject = "mallory"
			es[1].Hash = ChainHash(es[1].PrevHash, es[1])
			return es
		}, "event 3: previous hash"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyChain(tc.tamper(chain(4)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestChainHashFieldsDoNotRunTogether(t *testing.T) {
	a := AuditEvent{Type: "ab", Outcome: "c"}
	b := AuditEvent{Type: "a", Outcome: "bc"}
	if string(ChainHash(nil, a)) == string(ChainHash(nil, b)) {
		t.Fatal("different events share a hash: fields are not delimited")
	}
	c := AuditEvent{Details: map[string]string{"a": "b"}}
	d := AuditEvent{Details: map[string]string{"ab": ""}}
	if string(ChainHash(nil, c)) == string(ChainHash(nil, d)) {
		t.Fatal("different details share a hash")
	}
}

func TestDurationJSON(t *testing.T) {
	var p TenantPolicy
	if err := json.Unmarshal([]byte(`{"access_token_ttl":"5m","refresh_token_ttl":3600}`), &p); err != nil {
		t.Fatal(err)
	}
	if time.Duration(p.AccessTokenTTL) != 5*time.Minute || time.Duration(p.RefreshTokenTTL) != time.Hour {
		t.Fatalf("got %v", p)
	}
	b, _ := json.Marshal(p)
	if !strings.Contains(string(b), `"access_token_ttl":"5m0s"`) {
		t.Fatalf("marshalled %s", b)
	}
	for _, bad := range []string{`{"id_token_ttl":"soon"}`, `{"id_token_ttl":true}`} {
		if err := json.Unmarshal([]byte(bad), &p); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}
