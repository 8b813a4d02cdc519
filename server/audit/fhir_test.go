package audit_test

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server/audit"
	"github.com/smartauth/smartauth/storage"
)

const issuer = "https://auth.example.com/t/acme"

const dcm = "http://dicom.nema.org/resources/ontology/DCM"

// eventTypes are the types the server records today, and one it does not.
var eventTypes = []string{
	"login.success", "login.failure", "mfa.success", "mfa.failure", "mfa.enroll", "mfa.skip", "logout",
	"consent.grant", "consent.deny", "authorize.code", "token.issue", "token.refresh", "token.refresh_reuse",
	"token.code_reuse", "token.revoke", "token.exchange", "client.authenticate", "launch.create",
	"admin.client.create", "admin.client.delete", "admin.client.rotate_secret", "admin.idp.add", "admin.idp.delete",
	"admin.keys.rotate", "admin.patients.import", "admin.tenant.create", "admin.tenant.patient_search.set",
	"admin.tenant.patient_search.clear", "admin.user.create", "something.new",
}

// chained returns events as a backend would store them for tenant acme.
func chained(t *testing.T, events ...storage.AuditEvent) []storage.AuditEvent {
	t.Helper()
	out, err := storage.PrepareAudits("acme", events)
	if err != nil {
		t.Fatal(err)
	}
	storage.ChainAudits(0, nil, out)
	return out
}

func TestFHIRAuditEventMapping(t *testing.T) {
	tests := []struct {
		eventType, outcome string
		wantType           string // system#code
		wantSubtype        string // standard subtype, system#code, if any
		wantAction         string
		wantOutcome        string
	}{
		{"login.success", "success", dcm + "#110114", dcm + "#110122", "E", "0"},
		{"login.failure", "failure", dcm + "#110114", dcm + "#110122", "E", "4"},
		{"mfa.failure", "failure", dcm + "#110114", dcm + "#110122", "E", "4"},
		{"mfa.enroll", "success", dcm + "#110114", dcm + "#110122", "C", "0"},
		{"logout", "success", dcm + "#110114", dcm + "#110123", "E", "0"},
		{"consent.deny", "failure", dcm + "#110114", "", "E", "4"},
		{"token.issue", "success", dcm + "#110114", "", "E", "0"},
		{"token.revoke", "success", dcm + "#110114", "", "E", "0"},
		{"client.authenticate", "failure", dcm + "#110114", "", "E", "4"},
		{"token.refresh_reuse", "failure", dcm + "#110113", "", "E", "4"},
		{"token.code_reuse", "failure", dcm + "#110113", "", "E", "4"},
		{"launch.create", "success", "http://terminology.hl7.org/CodeSystem/audit-event-type#rest", "", "C", "0"},
		{"admin.client.create", "success", dcm + "#110113", dcm + "#110129", "C", "0"},
		{"admin.client.delete", "success", dcm + "#110113", dcm + "#110129", "D", "0"},
		{"admin.keys.rotate", "success", dcm + "#110113", dcm + "#110129", "U", "0"},
		{"admin.tenant.patient_search.clear", "success", dcm + "#110113", dcm + "#110129", "D", "0"},
		{"admin.user.create", "success", dcm + "#110113", dcm + "#110137", "C", "0"},
		{"admin.user.reset_password", "success", dcm + "#110113", dcm + "#110137", "U", "0"},
		{"admin.user.reset_mfa", "success", dcm + "#110113", dcm + "#110137", "U", "0"},
		{"admin.user.set_admin", "success", dcm + "#110113", dcm + "#110137", "U", "0"},
		{"admin.client.rotate_secret", "success", dcm + "#110113", dcm + "#110129", "U", "0"},
		{"admin.keys.retire", "success", dcm + "#110113", dcm + "#110129", "U", "0"},
		{"admin.consent.revoke", "success", dcm + "#110113", dcm + "#110129", "D", "0"},
		{"admin.initial_access_token.revoke", "success", dcm + "#110113", dcm + "#110129", "D", "0"},
		{"admin.patients.import", "success", dcm + "#110107", "", "C", "0"},
		{"something.new", "", dcm + "#110100", "", "E", ""},
	}
	for _, tt := range tests {
		t.Run(tt.eventType, func(t *testing.T) {
			e := chained(t, storage.AuditEvent{Type: tt.eventType, Outcome: tt.outcome})[0]
			r := audit.FHIRAuditEvent(e, issuer)
			if got := r.Type.System + "#" + r.Type.Code; got != tt.wantType {
				t.Errorf("type = %s, want %s", got, tt.wantType)
			}
			var standard []string
			own := 0
			for _, c := range r.Subtype {
				if c.System == audit.EventTypeSystem {
					own++
					if c.Code != tt.eventType {
						t.Errorf("own subtype = %q, want %q", c.Code, tt.eventType)
					}
					continue
				}
				standard = append(standard, c.System+"#"+c.Code)
			}
			if own != 1 {
				t.Errorf("%d subtypes in %s, want 1", own, audit.EventTypeSystem)
			}
			var want []string
			if tt.wantSubtype != "" {
				want = []string{tt.wantSubtype}
			}
			if !slices.Equal(standard, want) {
				t.Errorf("standard subtypes = %v, want %v", standard, want)
			}
			if r.Action != tt.wantAction {
				t.Errorf("action = %q, want %q", r.Action, tt.wantAction)
			}
			if r.Outcome != tt.wantOutcome {
				t.Errorf("outcome = %q, want %q", r.Outcome, tt.wantOutcome)
			}
		})
	}
}

func TestFHIRAuditEventAgents(t *testing.T) {
	tests := []struct {
		name  string
		event storage.AuditEvent
		// want lists each agent as "who-system|who-value|display|requestor|network-address|network-type|type-code".
		want []string
	}{
		{
			name:  "user through a client from an IP",
			event: storage.AuditEvent{ActorID: "u1", ClientID: "app", SourceIP: "2001:db8::1"},
			want: []string{
				issuer + "|u1||true|2001:db8::1|2|",
				issuer + "/clients|app||false|||110150",
			},
		},
		{
			name:  "unknown caller",
			event: storage.AuditEvent{SourceIP: "192.0.2.7"},
			want:  []string{"||anonymous|false|192.0.2.7|2|"},
		},
		{
			name:  "client on its own, address not an IP",
			event: storage.AuditEvent{ClientID: "svc", SourceIP: "unknown"},
			want: []string{
				"||anonymous|false|unknown||",
				issuer + "/clients|svc||false|||110150",
			},
		},
		{
			name:  "nothing known",
			event: storage.AuditEvent{},
			want:  []string{"||anonymous|false|||"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.event.Type = "token.issue"
			r := audit.FHIRAuditEvent(chained(t, tt.event)[0], issuer)
			var got []string
			for _, a := range r.Agent {
				var f [7]string
				if a.Who != nil {
					f[2] = a.Who.Display
					if a.Who.Identifier != nil {
						f[0], f[1] = a.Who.Identifier.System, a.Who.Identifier.Value
					}
				}
				f[3] = strconv.FormatBool(a.Requestor)
				if a.Network != nil {
					f[4], f[5] = a.Network.Address, a.Network.Type
				}
				if a.Type != nil && len(a.Type.Coding) == 1 && a.Type.Coding[0].System == dcm {
					f[6] = a.Type.Coding[0].Code
				}
				got = append(got, strings.Join(f[:], "|"))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("agents =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

var (
	// fhirIDSyntax and instantSyntax are the R4 regular expressions of id and instant.
	fhirIDSyntax  = regexp.MustCompile(`^[A-Za-z0-9\-\.]{1,64}$`)
	instantSyntax = regexp.MustCompile(`^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$`)
)

// checkR4 reports what in one AuditEvent, decoded from JSON, breaks the R4
// rules an export can break: required elements, code values, id and instant
// syntax, and FHIR's ban on empty strings, arrays and objects (ele-1).
func checkR4(r map[string]any) []string {
	var problems []string
	bad := func(what string, v ...any) {
		problems = append(problems, fmt.Sprint(append([]any{what + " "}, v...)...))
	}
	if r["resourceType"] != "AuditEvent" {
		bad("resourceType", r["resourceType"])
	}
	if id, _ := r["id"].(string); !fhirIDSyntax.MatchString(id) {
		bad("id", id)
	}
	if typ, _ := r["type"].(map[string]any); typ["system"] == nil || typ["code"] == nil {
		bad("type without system and code", typ)
	}
	if a, ok := r["action"]; ok && !slices.Contains([]any{"C", "R", "U", "D", "E"}, a) {
		bad("action", a)
	}
	if o, ok := r["outcome"]; ok && !slices.Contains([]any{"0", "4", "8", "12"}, o) {
		bad("outcome", o)
	}
	if rec, _ := r["recorded"].(string); !instantSyntax.MatchString(rec) {
		bad("recorded", rec)
	}
	agents, _ := r["agent"].([]any)
	if len(agents) == 0 {
		bad("no agent")
	}
	for _, a := range agents {
		a, _ := a.(map[string]any)
		if _, ok := a["requestor"].(bool); !ok {
			bad("agent without requestor", a)
		}
		if n, ok := a["network"].(map[string]any); ok && n["type"] != nil && !slices.Contains([]any{"1", "2", "3", "4", "5"}, n["type"]) {
			bad("network type", n["type"])
		}
	}
	source, _ := r["source"].(map[string]any)
	if _, ok := source["observer"].(map[string]any); !ok {
		bad("source without observer")
	}
	entities, _ := r["entity"].([]any)
	for _, en := range entities {
		en, _ := en.(map[string]any)
		details, _ := en["detail"].([]any)
		for _, d := range details {
			d, _ := d.(map[string]any)
			if _, ok := d["type"].(string); !ok {
				bad("detail without type", d)
			}
			if _, ok := d["valueString"].(string); !ok {
				bad("detail without value", d)
			}
		}
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case string:
			if strings.TrimSpace(v) == "" {
				bad("empty string at", path)
			}
		case []any:
			if len(v) == 0 {
				bad("empty array at", path)
			}
			for i, x := range v {
				walk(path+"["+strconv.Itoa(i)+"]", x)
			}
		case map[string]any:
			if len(v) == 0 {
				bad("empty object at", path)
			}
			for k, x := range v {
				walk(path+"."+k, x)
			}
		case nil:
			bad("null at", path)
		}
	}
	walk("AuditEvent", r)
	return problems
}

func TestFHIRAuditEventR4Elements(t *testing.T) {
	for _, tenant := range []string{"acme", storage.OperatorRealm, strings.Repeat("t", 63)} {
		for _, typ := range eventTypes {
			for _, full := range []bool{true, false} {
				e := storage.AuditEvent{Type: typ, Outcome: "success"}
				if full {
					e = storage.AuditEvent{
						Type: typ, Outcome: "failure", ActorID: "u1", ClientID: "app", Subject: "patient-7", SourceIP: "192.0.2.1",
						Details: map[string]string{"reason": "denied", "scope": "patient/*.rs", "empty": "", "": "no key"},
					}
				}
				prepared, err := storage.PrepareAudits(tenant, []storage.AuditEvent{e, e})
				if err != nil {
					t.Fatal(err)
				}
				storage.ChainAudits(41, []byte("previous"), prepared)
				for _, e := range prepared {
					var buf bytes.Buffer
					if err := json.NewEncoder(&buf).Encode(audit.FHIRAuditEvent(e, issuer)); err != nil {
						t.Fatal(err)
					}
					var r map[string]any
					if err := json.Unmarshal(buf.Bytes(), &r); err != nil {
						t.Fatal(err)
					}
					for _, p := range checkR4(r) {
						t.Errorf("tenant %q, %s (full %v): %s", tenant, typ, full, p)
					}
				}
			}
		}
	}
}

func TestFHIRAuditEventIDs(t *testing.T) {
	ids := map[string]string{}
	for _, tenant := range []string{"acme", "acme-2", storage.OperatorRealm, "_other", strings.Repeat("t", 63), strings.Repeat("u", 63)} {
		for _, seq := range []int64{2, 12, 9223372036854775807} {
			id := audit.FHIRAuditEvent(storage.AuditEvent{TenantID: tenant, Seq: seq}, issuer).ID
			if !fhirIDSyntax.MatchString(id) {
				t.Errorf("tenant %q seq %d: id %q is not a FHIR id", tenant, seq, id)
			}
			key := tenant + " " + strconv.FormatInt(seq, 10)
			if prev, ok := ids[id]; ok {
				t.Errorf("%s and %s share id %q", prev, key, id)
			}
			ids[id] = key
		}
	}
	if id := audit.FHIRAuditEvent(storage.AuditEvent{TenantID: "acme", Seq: 7}, issuer).ID; id != "acme-7" {
		t.Errorf("id = %q, want acme-7", id)
	}
}

func TestWriteBundle(t *testing.T) {
	for _, n := range []int{0, 1, 3} {
		events := make([]storage.AuditEvent, n)
		for i := range events {
			events[i] = storage.AuditEvent{Type: eventTypes[i], Outcome: "success", ActorID: "u1"}
		}
		events = chained(t, events...)
		var buf bytes.Buffer
		if err := audit.WriteBundle(&buf, events, issuer+"/"); err != nil {
			t.Fatal(err)
		}
		var b struct {
			ResourceType string
			Type         string
			Total        *int
			Entry        []struct {
				FullURL  string
				Resource map[string]any
			}
		}
		if err := json.Unmarshal(buf.Bytes(), &b); err != nil {
			t.Fatalf("%d events: bundle does not parse: %v", n, err)
		}
		if b.ResourceType != "Bundle" || b.Type != "collection" || b.Total != nil {
			t.Errorf("%d events: bundle %q of type %q, total %v; want a collection without total", n, b.ResourceType, b.Type, b.Total)
		}
		if len(b.Entry) != n {
			t.Fatalf("%d entries, want %d", len(b.Entry), n)
		}
		for i, entry := range b.Entry {
			wantURL := issuer + "/AuditEvent/acme-" + strconv.Itoa(i+1)
			if entry.FullURL != wantURL || entry.Resource["id"] != "acme-"+strconv.Itoa(i+1) {
				t.Errorf("entry %d: fullUrl %q, id %v; want %q", i, entry.FullURL, entry.Resource["id"], wantURL)
			}
			for _, p := range checkR4(entry.Resource) {
				t.Errorf("entry %d: %s", i, p)
			}
		}
	}
}

// hostile holds strings that would break a careless JSON, HTML or NDJSON writer.
var hostile = []string{
	`"quoted", \backslashed\`,
	"two\nlines\r\nand a tab\t",
	"nul\x00byte",
	"<script>alert(1)</script>",
	"\u2028line separator\u2029",
	"emoji 🩺 and ünïcödé",
}

func TestWriteNDJSONHostileStrings(t *testing.T) {
	var events []storage.AuditEvent
	for _, s := range hostile {
		events = append(events, storage.AuditEvent{
			Type: "login.failure", Outcome: "failure", ActorID: s, ClientID: s, Subject: s, SourceIP: s,
			Details: map[string]string{"reason": s, s: "key"},
		})
	}
	// As stored: a NUL byte, which no database keeps, is cleaned on the way in.
	events = chained(t, events...)
	var buf bytes.Buffer
	if err := audit.WriteNDJSON(&buf, events, issuer); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte("<script>")) {
		t.Error("markup reached the output unescaped")
	}
	if !bytes.HasSuffix(buf.Bytes(), []byte("\n")) {
		t.Error("output does not end with a newline")
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(events) {
		t.Fatalf("%d lines, want %d", len(lines), len(events))
	}
	for i, line := range lines {
		var r audit.AuditEventResource
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if r.ResourceType != "AuditEvent" {
			t.Errorf("line %d: resourceType %q", i+1, r.ResourceType)
		}
		e := events[i]
		got := []string{r.Agent[0].Who.Identifier.Value, r.Agent[1].Who.Identifier.Value, r.Entity[0].What.Identifier.Value,
			r.Agent[0].Network.Address, r.OutcomeDesc}
		for j, g := range got {
			if g != e.ActorID {
				t.Errorf("line %d, field %d: %q, want %q", i+1, j, g, e.ActorID)
			}
		}
	}
}

// fromFHIR rebuilds the stored event from its export, reading only FHIR.
func fromFHIR(t *testing.T, r audit.AuditEventResource) storage.AuditEvent {
	t.Helper()
	e := storage.AuditEvent{TenantID: r.Source.Site, Outcome: map[string]string{"0": "success", "4": "failure"}[r.Outcome]}
	var err error
	if e.Time, err = time.Parse(time.RFC3339Nano, r.Recorded); err != nil {
		t.Fatal(err)
	}
	for _, c := range r.Subtype {
		if c.System == audit.EventTypeSystem {
			e.Type = c.Code
		}
	}
	for _, a := range r.Agent {
		switch {
		case a.Who.Identifier != nil && a.Who.Identifier.System == issuer:
			e.ActorID = a.Who.Identifier.Value
		case a.Who.Identifier != nil && a.Who.Identifier.System == issuer+"/clients":
			e.ClientID = a.Who.Identifier.Value
		}
		if a.Network != nil {
			e.SourceIP = a.Network.Address
		}
	}
	for _, en := range r.Entity {
		if en.What != nil {
			e.Subject = en.What.Identifier.Value
		}
		for _, d := range en.Detail {
			if e.Details == nil {
				e.Details = map[string]string{}
			}
			e.Details[d.Type] = d.ValueString
		}
	}
	for _, x := range r.Extension {
		if x.URL != audit.ChainExtensionURL {
			continue
		}
		for _, f := range x.Extension {
			switch f.URL {
			case "seq":
				e.Seq, err = strconv.ParseInt(f.ValueString, 10, 64)
			case "prevHash":
				e.PrevHash, err = hex.DecodeString(f.ValueString)
			case "hash":
				e.Hash, err = hex.DecodeString(f.ValueString)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return e
}

func TestFHIRExportCarriesTheChain(t *testing.T) {
	var in []storage.AuditEvent
	for i, typ := range eventTypes {
		e := storage.AuditEvent{
			Time: time.Date(2025, 3, 1, 12, 0, 0, i*1000+1000, time.UTC), Type: typ, Outcome: "success",
			ActorID: "u1", ClientID: "app", Subject: "patient-7", SourceIP: "192.0.2.1",
		}
		if i%2 == 1 {
			e.Outcome, e.ActorID, e.SourceIP = "failure", "", ""
			e.Details = map[string]string{"reason": hostile[i%len(hostile)], "scope": "launch openid"}
		}
		in = append(in, e)
	}
	events := chained(t, in...)
	var buf bytes.Buffer
	if err := audit.WriteNDJSON(&buf, events, issuer); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&buf)
	var prev []byte
	for i := 0; sc.Scan(); i++ {
		var r audit.AuditEventResource
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		got := fromFHIR(t, r)
		if !bytes.Equal(got.PrevHash, prev) {
			t.Errorf("event %d: prevHash does not name the previous export's hash", got.Seq)
		}
		// Everything the hash covers survives the export.
		if !bytes.Equal(storage.ChainHash(got.PrevHash, got), got.Hash) || !reflect.DeepEqual(got, events[i]) {
			t.Errorf("event %d: rebuilt from FHIR as\n%+v\nstored as\n%+v", i+1, got, events[i])
		}
		prev = got.Hash
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if err := storage.VerifyChain(events); err != nil {
		t.Fatal(err)
	}
}

// failingWriter fails every write.
type failingWriter struct{}

var errDiskFull = errors.New("disk full")

func (failingWriter) Write([]byte) (int, error) { return 0, errDiskFull }

func TestWriteErrors(t *testing.T) {
	events := chained(t, storage.AuditEvent{Type: "token.issue"})
	if err := audit.WriteBundle(failingWriter{}, events, issuer); !errors.Is(err, errDiskFull) {
		t.Errorf("WriteBundle error = %v, want the writer's", err)
	}
	if err := audit.WriteNDJSON(failingWriter{}, events, issuer); !errors.Is(err, errDiskFull) {
		t.Errorf("WriteNDJSON error = %v, want the writer's", err)
	}
}
