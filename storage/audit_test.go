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

func TestCleanString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain é", "plain é"},
		{"a\x00b", "a\uFFFDb"},
		{"bad \xff byte", "bad \uFFFD byte"},
		{"\x00\xfe", "\uFFFD\uFFFD"},
		{"", ""},
	}
	for _, tc := range tests {
		if got := CleanString(tc.in); got != tc.want {
			t.Errorf("CleanString(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPrepareAudits(t *testing.T) {
	at := time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.FixedZone("UTC+2", 2*60*60))
	tests := []struct {
		name    string
		tenant  string
		in      AuditEvent
		want    AuditEvent
		wantErr string
	}{
		{"tenant filled in", "acme", AuditEvent{Time: at, Type: "login"},
			AuditEvent{TenantID: "acme", Time: at.UTC().Truncate(time.Microsecond), Type: "login"}, ""},
		{"own tenant kept", "acme", AuditEvent{TenantID: "acme", Time: at},
			AuditEvent{TenantID: "acme", Time: at.UTC().Truncate(time.Microsecond)}, ""},
		{"strings cleaned", "acme",
			AuditEvent{Time: at, Type: "t\x00", Outcome: "o\xff", ActorID: "a\x00", ClientID: "c\xff", Subject: "s\x00", SourceIP: "i\xff",
				Details: map[string]string{"k\x00": "v\xff"}},
			AuditEvent{TenantID: "acme", Time: at.UTC().Truncate(time.Microsecond), Type: "t\uFFFD", Outcome: "o\uFFFD", ActorID: "a\uFFFD",
				ClientID: "c\uFFFD", Subject: "s\uFFFD", SourceIP: "i\uFFFD", Details: map[string]string{"k\uFFFD": "v\uFFFD"}}, ""},
		{"empty details as nil", "acme", AuditEvent{Time: at, Details: map[string]string{}},
			AuditEvent{TenantID: "acme", Time: at.UTC().Truncate(time.Microsecond)}, ""},
		{"other tenant refused", "acme", AuditEvent{TenantID: "beta", Time: at}, AuditEvent{}, `belongs to tenant "beta", not "acme"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PrepareAudits(tc.tenant, []AuditEvent{tc.in})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got[0].Time.Location() != time.UTC || !got[0].Time.Equal(tc.want.Time) {
				t.Fatalf("time %v, want %v in UTC", got[0].Time, tc.want.Time)
			}
			if string(ChainHash(nil, got[0])) != string(ChainHash(nil, tc.want)) || (got[0].Details == nil) != (tc.want.Details == nil) {
				t.Fatalf("got %+v, want %+v", got[0], tc.want)
			}
		})
	}
}

func TestPrepareAuditsStampsZeroTimeAndKeepsInput(t *testing.T) {
	in := []AuditEvent{{Type: "a\x00"}, {Type: "b", Details: map[string]string{"k\x00": "v"}}}
	before := time.Now().UTC().Truncate(time.Microsecond)
	got, err := PrepareAudits("acme", in)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Time.Before(before) || got[0].Time.After(time.Now()) || got[0].Time.Location() != time.UTC {
		t.Fatalf("zero time stamped as %v, want now in UTC", got[0].Time)
	}
	if in[0].Type != "a\x00" || in[0].TenantID != "" || !in[0].Time.IsZero() || in[1].Details["k\x00"] != "v" {
		t.Fatalf("the caller's events changed: %+v", in)
	}
	if _, err := PrepareAudits("acme", []AuditEvent{{}, {TenantID: "beta"}}); err == nil || !strings.Contains(err.Error(), "event 2 of 2") {
		t.Fatalf("a batch with another tenant's second event: got %v", err)
	}
}

func TestChainAuditsContinuesTrail(t *testing.T) {
	trail := chain(3)
	more := []AuditEvent{{TenantID: "t", Type: "a"}, {TenantID: "t", Type: "b"}}
	ChainAudits(trail[2].Seq, trail[2].Hash, more)
	if err := VerifyChain(append(trail, more...)); err != nil {
		t.Fatalf("appended events do not continue the chain: %v", err)
	}
	if more[0].Seq != 4 || more[1].Seq != 5 {
		t.Fatalf("seqs %d, %d; want 4, 5", more[0].Seq, more[1].Seq)
	}
	first := []AuditEvent{{TenantID: "t"}, {TenantID: "t"}}
	ChainAudits(0, nil, first)
	if err := VerifyChain(first); err != nil {
		t.Fatalf("a new trail does not verify: %v", err)
	}
}
