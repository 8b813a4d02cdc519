package manage

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/sqlite"
)

func TestCheckFHIRContext(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // the stored form when valid
		err  string // part of the error when invalid
	}{
		{"absent", ``, "", ""},
		{"null", `null`, "", ""},
		{"empty", ` [ ] `, "", ""},
		{"reference", `[ {"reference": "DiagnosticReport/123"} ]`, `[{"reference":"DiagnosticReport/123"}]`, ""},
		{"versioned reference", `[{"reference":"Observation/1/_history/2"}]`, `[{"reference":"Observation/1/_history/2"}]`, ""},
		{"canonical with version and type", `[{"canonical":"http://example.org/Questionnaire/q|1.0","type":"Questionnaire"}]`,
			`[{"canonical":"http://example.org/Questionnaire/q|1.0","type":"Questionnaire"}]`, ""},
		{"identifier", `[{"identifier":{"system":"urn:oid:1.2.3","value":"A1"},"type":"ServiceRequest"}]`,
			`[{"identifier":{"system":"urn:oid:1.2.3","value":"A1"},"type":"ServiceRequest"}]`, ""},
		{"patient in another role", `[{"reference":"Patient/9","role":"https://example.org/roles/mother"}]`,
			`[{"reference":"Patient/9","role":"https://example.org/roles/mother"}]`, ""},
		{"several items", `[{"reference":"ImagingStudy/1"},{"reference":"ImagingStudy/2","role":"launch"}]`,
			`[{"reference":"ImagingStudy/1"},{"reference":"ImagingStudy/2","role":"launch"}]`, ""},

		{"not JSON", `[{`, "", "JSON array of objects"},
		{"an object", `{"reference":"Observation/1"}`, "", "JSON array of objects"},
		{"array of strings", `["Observation/1"]`, "", "JSON array of objects"},
		{"nothing named", `[{"type":"Observation"}]`, "", "needs a reference, a canonical or an identifier"},
		{"absolute reference", `[{"reference":"https://fhir.example/Observation/1"}]`, "", "relative reference"},
		{"reference without id", `[{"reference":"Observation"}]`, "", "relative reference"},
		{"empty reference", `[{"reference":""}]`, "", "non-empty string"},
		{"reference not a string", `[{"reference":7}]`, "", "non-empty string"},
		{"relative canonical", `[{"canonical":"Questionnaire/q"}]`, "", "absolute URL"},
		{"identifier without value", `[{"identifier":{"system":"urn:oid:1"}}]`, "", "identifier must be an object with a value"},
		{"identifier not an object", `[{"identifier":"A1"}]`, "", "identifier must be an object with a value"},
		{"lowercase type", `[{"canonical":"http://example.org/q","type":"questionnaire"}]`, "", "FHIR resource type"},
		{"type disagrees", `[{"reference":"Observation/1","type":"Condition"}]`, "", "does not match"},
		{"patient in the launch role", `[{"reference":"Patient/9"}]`, "", "goes in patient"},
		{"encounter by identifier", `[{"identifier":{"value":"E1"},"type":"Encounter","role":"launch"}]`, "", "goes in encounter"},
		{"role not a URI", `[{"reference":"Observation/1","role":"mother"}]`, "", "absolute URI"},
		{"second item bad", `[{"reference":"Observation/1"},{}]`, "", "item 2"},
		{"too many", "[" + strings.Repeat(`{"reference":"Observation/1"},`, maxFHIRContextItems) + `{"reference":"Observation/1"}]`, "", "at most"},
		{"too long", `[{"reference":"Observation/1","note":"` + strings.Repeat("x", maxFHIRContextBytes) + `"}]`, "", "at most"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := checkFHIRContext([]byte(tc.in))
			if tc.err != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %s, %v; want ErrInvalid containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %s, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestValidateLaunchContext(t *testing.T) {
	yes := true
	tests := []struct {
		name string
		in   LaunchInput
		err  string
	}{
		{"everything", LaunchInput{Patient: "p-1.a", Encounter: "E2", NeedPatientBanner: &yes, SmartStyleURL: "https://ehr.example/style.json",
			Intent: "reconcile-medications", FHIRContext: []byte(`[{"reference":"Observation/3"}]`)}, ""},
		{"nothing", LaunchInput{}, ""},
		{"loopback style URL", LaunchInput{SmartStyleURL: "http://127.0.0.1:8080/style.json"}, ""},
		{"patient reference", LaunchInput{Patient: "Patient/123"}, "patient"},
		{"patient too long", LaunchInput{Patient: strings.Repeat("a", 65)}, "patient"},
		{"encounter with space", LaunchInput{Encounter: "E 2"}, "encounter"},
		{"style URL over http", LaunchInput{SmartStyleURL: "http://ehr.example/style.json"}, "smart_style_url"},
		{"style URL relative", LaunchInput{SmartStyleURL: "/style.json"}, "smart_style_url"},
		{"intent with space", LaunchInput{Intent: "order review"}, "intent"},
		{"intent with markup", LaunchInput{Intent: "<b>"}, "intent"},
		{"intent too long", LaunchInput{Intent: strings.Repeat("i", 65)}, "intent"},
		{"bad fhirContext", LaunchInput{FHIRContext: []byte(`[{}]`)}, "fhirContext"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lc, err := validateLaunchContext(tc.in)
			if tc.err != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v; want ErrInvalid containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if lc.Patient != tc.in.Patient || lc.Encounter != tc.in.Encounter || lc.Intent != tc.in.Intent ||
				lc.SmartStyleURL != tc.in.SmartStyleURL || lc.NeedPatientBanner != tc.in.NeedPatientBanner {
				t.Fatalf("context %+v does not carry the input %+v", lc, tc.in)
			}
		})
	}
}

func TestLaunchIssuerAndURL(t *testing.T) {
	tn := storage.Tenant{ID: "clinic", FHIRBaseURLs: []string{"https://fhir.example/r4", "https://fhir.example/r5"}}
	for _, tc := range []struct{ aud, want string }{
		{"", "https://fhir.example/r4"},
		{"https://fhir.example/r5", "https://fhir.example/r5"},
		{"https://fhir.example/r5/", "https://fhir.example/r5"},
		{"https://fhir.example/r6", ""},
		{"https://evil.example/r4", ""},
	} {
		got, err := launchIssuer(tn, tc.aud)
		if got != tc.want || (err == nil) != (tc.want != "") || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("launchIssuer(%q) = %q, %v; want %q", tc.aud, got, err, tc.want)
		}
	}

	got, err := launchURL("https://app.example/launch?site=a&iss=stale", "https://fhir.example/r4", "v-1")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(got)
	q := u.Query()
	if u.Host != "app.example" || u.Path != "/launch" || q.Get("site") != "a" || q.Get("iss") != "https://fhir.example/r4" ||
		q.Get("launch") != "v-1" || len(q["iss"]) != 1 {
		t.Fatalf("launch URL %s", got)
	}
}

// launchFixture is a store with a tenant, apps and users to launch for.
func launchFixture(t *testing.T) (*Service, storage.Storage) {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "smartauth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	sealer, err := keys.NewSealer(bytes.Repeat([]byte{7}, keys.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	svc := New(store, keys.NewManager(store, sealer, nil), nil)
	who := Actor{ID: "test"}
	if _, err := svc.CreateTenant(ctx, TenantInput{ID: "clinic", FHIRBaseURLs: []string{"https://fhir.example/r4", "https://fhir.example/r5"}}, who); err != nil {
		t.Fatal(err)
	}
	for _, in := range []ClientInput{
		{TenantID: "clinic", ID: "chart", Name: "Chart", Type: storage.ClientPublic, RedirectURIs: []string{"https://app.example/cb"},
			Scopes: []string{"launch", "patient/*.rs"}, LaunchURI: "https://app.example/launch?site=1"},
		{TenantID: "clinic", ID: "plain", Name: "Plain", Type: storage.ClientPublic, RedirectURIs: []string{"https://plain.example/cb"},
			Scopes: []string{"launch"}},
		{TenantID: "clinic", ID: "export", Name: "Export", Type: storage.ClientConfidentialSymmetric, Scopes: []string{"system/*.rs"},
			GrantTypes: []string{GrantClientCredentials}},
	} {
		if _, _, err := svc.CreateClient(ctx, in, who); err != nil {
			t.Fatal(err)
		}
	}
	for _, email := range []string{"dr@clinic.example", "gone@clinic.example"} {
		if _, err := svc.CreateUser(ctx, UserInput{TenantID: "clinic", Email: email, Profiles: []storage.Profile{{FHIRUser: "Practitioner/1"}}}, who); err != nil {
			t.Fatal(err)
		}
	}
	gone, err := store.GetUserByEmail(ctx, "clinic", "gone@clinic.example")
	if err != nil {
		t.Fatal(err)
	}
	gone.Disabled = true
	if err := store.UpdateUser(ctx, gone); err != nil {
		t.Fatal(err)
	}
	return svc, store
}

func TestCreateLaunch(t *testing.T) {
	svc, store := launchFixture(t)
	ctx := context.Background()
	dr, err := store.GetUserByEmail(ctx, "clinic", "dr@clinic.example")
	if err != nil {
		t.Fatal(err)
	}
	no := false
	in := LaunchInput{TenantID: "clinic", ClientID: "chart", Patient: "123", Encounter: "e-9", NeedPatientBanner: &no,
		SmartStyleURL: "https://ehr.example/style.json", Intent: "reconcile-medications", User: "DR@clinic.example",
		FHIRContext: []byte(`[ {"reference": "DiagnosticReport/123"} ]`), Aud: "https://fhir.example/r5"}
	l, value, err := svc.CreateLaunch(ctx, in, Actor{ID: "ehr", SourceIP: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	if raw, err := base64.RawURLEncoding.DecodeString(value); err != nil || len(raw) != 32 {
		t.Fatalf("launch value %q is not 256 random bits", value)
	}
	if l.ClientID != "chart" || l.UserID != dr.ID || l.Aud != "https://fhir.example/r5" || l.ExpiresAt.Sub(l.CreatedAt) != LaunchTTL || string(l.Context.FHIRContext) != `[{"reference":"DiagnosticReport/123"}]` {
		t.Fatalf("launch %+v", l)
	}
	stored, err := store.GetLaunch(ctx, "clinic", value, l.CreatedAt)
	if err != nil {
		t.Fatalf("the launch value does not find the stored launch: %v", err)
	}
	if stored.ClientID != "chart" || stored.Aud != "https://fhir.example/r5" || stored.Context.Patient != "123" || stored.Context.Encounter != "e-9" || *stored.Context.NeedPatientBanner ||
		stored.Context.Intent != "reconcile-medications" || stored.Context.SmartStyleURL != "https://ehr.example/style.json" {
		t.Fatalf("stored launch %+v", stored)
	}

	events, err := store.ListAudit(ctx, "clinic", storage.AuditFilter{Type: "launch.create"})
	if err != nil || len(events) != 1 {
		t.Fatalf("launch.create events: %v, %v", events, err)
	}
	e := events[0]
	if e.ClientID != "chart" || e.ActorID != "ehr" || e.SourceIP != "192.0.2.1" || e.Subject != dr.ID ||
		e.Details["patient"] != "123" || e.Details["encounter"] != "e-9" || e.Details["client_id"] != "chart" {
		t.Fatalf("audit event %+v", e)
	}
	for k, v := range e.Details {
		if strings.Contains(k+v, value) {
			t.Fatalf("the audit trail holds the launch value in %s", k)
		}
	}

	// Each launch gets its own value; without a user or context it is bare.
	res, err := svc.LaunchApp(ctx, LaunchInput{TenantID: "clinic", ClientID: "chart"}, Actor{ID: "ehr"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Launch == value || res.ExpiresIn != 600 || res.Iss != "https://fhir.example/r4" {
		t.Fatalf("second launch %+v", res)
	}
	// Without aud the launch is for the tenant's first FHIR base URL, the
	// iss the EHR was given.
	if stored, err := store.GetLaunch(ctx, "clinic", res.Launch, l.CreatedAt); err != nil || stored.Aud != res.Iss {
		t.Fatalf("second launch as stored: %+v, %v", stored, err)
	}
	u, err := url.Parse(res.LaunchURL)
	if err != nil || u.Query().Get("launch") != res.Launch || u.Query().Get("iss") != res.Iss || u.Query().Get("site") != "1" {
		t.Fatalf("launch URL %q", res.LaunchURL)
	}
	res, err = svc.LaunchApp(ctx, LaunchInput{TenantID: "clinic", ClientID: "plain", User: dr.ID}, Actor{ID: "ehr"})
	if err != nil || res.LaunchURL != "" {
		t.Fatalf("launch of an app without a launch URI: %+v, %v", res, err)
	}
}

func TestCreateLaunchRefusals(t *testing.T) {
	svc, store := launchFixture(t)
	ctx := context.Background()
	tests := []struct {
		name string
		in   LaunchInput
		err  string
	}{
		{"no client", LaunchInput{}, "client_id"},
		{"unknown client", LaunchInput{ClientID: "ghost"}, "not registered"},
		{"backend client", LaunchInput{ClientID: "export"}, "authorization_code"},
		{"unknown user id", LaunchInput{ClientID: "chart", User: "nobody"}, "not a user"},
		{"unknown user email", LaunchInput{ClientID: "chart", User: "nobody@clinic.example"}, "not a user"},
		{"disabled user", LaunchInput{ClientID: "chart", User: "gone@clinic.example"}, "disabled"},
		{"foreign aud", LaunchInput{ClientID: "chart", Aud: "https://other.example/r4"}, "aud"},
		{"patient reference", LaunchInput{ClientID: "chart", Patient: "Patient/1"}, "patient"},
		{"bad fhirContext", LaunchInput{ClientID: "chart", FHIRContext: []byte(`{}`)}, "fhirContext"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.TenantID = "clinic"
			_, _, err := svc.CreateLaunch(ctx, tc.in, Actor{ID: "ehr"})
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v; want ErrInvalid containing %q", err, tc.err)
			}
		})
	}
	if _, _, err := svc.CreateLaunch(ctx, LaunchInput{TenantID: "ghost", ClientID: "chart"}, Actor{ID: "ehr"}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("launch in an unknown tenant: %v", err)
	}
	// Nothing refused was stored or audited.
	events, err := store.ListAudit(ctx, "clinic", storage.AuditFilter{Type: "launch.create"})
	if err != nil || len(events) != 0 {
		t.Fatalf("refused launches left audit events: %v, %v", events, err)
	}
}
