package manage

import (
	"errors"
	"strings"
	"testing"

	"github.com/smartauth/smartauth/gateway/upstream"
	"github.com/smartauth/smartauth/storage"
)

func TestValidateGateway(t *testing.T) {
	good := GatewayInput{UpstreamURL: " https://fhir.example/r4/ ", UpstreamAuth: "header", HeaderName: "x-api-key",
		HeaderValue: " key-123 ", UserHeader: "x-clinician"}
	g, err := validateGateway(good)
	if err != nil {
		t.Fatal(err)
	}
	want := storage.GatewaySettings{UpstreamURL: "https://fhir.example/r4", UpstreamAuth: storage.GatewayAuthHeader, HeaderName: "X-Api-Key", UserHeader: "X-Clinician"}
	if g != want {
		t.Fatalf("normalized to %+v, want %+v", g, want)
	}
	if g, err := validateGateway(GatewayInput{UpstreamURL: "https://fhir.example/r4"}); err != nil || g.UpstreamAuth != storage.GatewayAuthNone || g.UserHeader != "" {
		t.Fatalf("no authentication: %+v, %v; want none and the default user header", g, err)
	}
	tests := []struct {
		name   string
		change func(*GatewayInput)
		ok     bool
	}{
		{"http on loopback", func(in *GatewayInput) { in.UpstreamURL = "http://127.0.0.1:8080/fhir" }, true},
		{"http on localhost", func(in *GatewayInput) { in.UpstreamURL = "http://localhost:8080/fhir" }, true},
		{"no user header", func(in *GatewayInput) { in.UserHeader = "" }, true},
		{"Authorization as the static header", func(in *GatewayInput) { in.HeaderName = "Authorization" }, true},
		{"none", func(in *GatewayInput) { in.UpstreamAuth, in.HeaderName, in.HeaderValue = "none", "", "" }, true},
		{"forward", func(in *GatewayInput) { in.UpstreamAuth, in.HeaderName, in.HeaderValue = "forward", "", "" }, true},
		{"client_credentials", func(in *GatewayInput) { in.UpstreamAuth, in.HeaderName, in.HeaderValue = "client_credentials", "", "" }, true},
		{"no URL", func(in *GatewayInput) { in.UpstreamURL = " " }, false},
		{"http elsewhere", func(in *GatewayInput) { in.UpstreamURL = "http://fhir.example/r4" }, false},
		{"relative", func(in *GatewayInput) { in.UpstreamURL = "/r4" }, false},
		{"other scheme", func(in *GatewayInput) { in.UpstreamURL = "ftp://fhir.example/r4" }, false},
		{"user info", func(in *GatewayInput) { in.UpstreamURL = "https://u:p@fhir.example/r4" }, false},
		{"query", func(in *GatewayInput) { in.UpstreamURL = "https://fhir.example/r4?x=1" }, false},
		{"fragment", func(in *GatewayInput) { in.UpstreamURL = "https://fhir.example/r4#x" }, false},
		{"unknown authentication", func(in *GatewayInput) { in.UpstreamAuth = "basic" }, false},
		{"upper-case authentication", func(in *GatewayInput) { in.UpstreamAuth = "HEADER" }, false},
		{"header without a name", func(in *GatewayInput) { in.HeaderName = "" }, false},
		{"header without a value", func(in *GatewayInput) { in.HeaderValue = " " }, false},
		{"header name not a token", func(in *GatewayInput) { in.HeaderName = "X Api Key" }, false},
		{"header name with a colon", func(in *GatewayInput) { in.HeaderName = "X-Key:" }, false},
		{"hop-by-hop header", func(in *GatewayInput) { in.HeaderName = "connection" }, false},
		{"Host", func(in *GatewayInput) { in.HeaderName = "Host" }, false},
		{"Content-Length", func(in *GatewayInput) { in.HeaderName = "Content-Length" }, false},
		{"Transfer-Encoding", func(in *GatewayInput) { in.HeaderName = "transfer-encoding" }, false},
		{"control character in value", func(in *GatewayInput) { in.HeaderValue = "a\nb" }, false},
		{"value too long", func(in *GatewayInput) { in.HeaderValue = strings.Repeat("k", maxHeaderValue+1) }, false},
		{"header is the user header", func(in *GatewayInput) { in.HeaderName = "X-Clinician" }, false},
		{"header is the default user header", func(in *GatewayInput) { in.HeaderName, in.UserHeader = "x-smart-user", "" }, false},
		{"header name without header authentication", func(in *GatewayInput) { in.UpstreamAuth, in.HeaderValue = "none", "" }, false},
		{"header value without header authentication", func(in *GatewayInput) { in.UpstreamAuth, in.HeaderName = "forward", "" }, false},
		{"user header not a token", func(in *GatewayInput) { in.UserHeader = "X User" }, false},
		{"user header Authorization", func(in *GatewayInput) { in.UserHeader = "authorization" }, false},
		{"user header hop-by-hop", func(in *GatewayInput) { in.UserHeader = "Upgrade" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := good
			tc.change(&in)
			_, err := validateGateway(in)
			if (err == nil) != tc.ok {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			if err != nil && strings.Contains(err.Error(), strings.TrimSpace(in.HeaderValue)) && in.HeaderValue != "" && strings.TrimSpace(in.HeaderValue) != "" {
				t.Fatalf("error %v quotes the header value", err)
			}
		})
	}
}

func TestSetGateway(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		fx.tenant(t, "clinic")
		who := Actor{ID: "op", SourceIP: "192.0.2.7"}
		const value = "api-key-never-stored-in-clear"

		g, err := fx.svc.SetGateway(ctx, "clinic", GatewayInput{UpstreamURL: "https://fhir.example/r4/", UpstreamAuth: "header",
			HeaderName: "x-api-key", HeaderValue: value}, who)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := fx.store.GetTenant(ctx, "clinic")
		if err != nil {
			t.Fatal(err)
		}
		if stored.Policy.Gateway != g || g.UpstreamURL != "https://fhir.example/r4" || g.HeaderName != "X-Api-Key" || g.HeaderValueSealed == "" {
			t.Fatalf("stored %+v, returned %+v", stored.Policy.Gateway, g)
		}
		if strings.Contains(g.HeaderValueSealed, value) {
			t.Fatal("the header value is stored in the clear")
		}
		if got, err := upstream.OpenHeader(fx.km.Sealer(), "clinic", g); err != nil || got != value {
			t.Fatalf("stored value opens to %q, %v", got, err)
		}
		e := fx.lastEvent(t, "clinic", "admin.tenant.gateway.set", who, "", value, g.HeaderValueSealed)
		if e.Details["upstream_url"] != g.UpstreamURL || e.Details["upstream_auth"] != "header" || e.Details["header_name"] != "X-Api-Key" {
			t.Fatalf("audit details %v", e.Details)
		}

		// client_credentials needs the patient search client.
		cc := GatewayInput{UpstreamURL: "https://fhir.example/r4", UpstreamAuth: storage.GatewayAuthClientCredentials}
		_, err = fx.svc.SetGateway(ctx, "clinic", cc, who)
		mustRefuse(t, "client_credentials without a patient search client", err, ErrInvalid, "patient search")
		if got, _ := fx.store.GetTenant(ctx, "clinic"); got.Policy.Gateway != g {
			t.Fatalf("a refused change changed the gateway: %+v", got.Policy.Gateway)
		}
		if _, err := fx.svc.SetPatientSearch(ctx, "clinic", PatientSearchInput{FHIRBaseURL: "https://fhir.example/r4", TokenURL: "https://auth.example/token",
			ClientID: "picker", ClientSecret: "picker-secret"}, who); err != nil {
			t.Fatal(err)
		}
		g, err = fx.svc.SetGateway(ctx, "clinic", cc, who)
		if err != nil {
			t.Fatal(err)
		}
		if g.HeaderName != "" || g.HeaderValueSealed != "" || g.UpstreamAuth != storage.GatewayAuthClientCredentials {
			t.Fatalf("client_credentials settings %+v", g)
		}

		_, err = fx.svc.SetGateway(ctx, "nowhere", GatewayInput{UpstreamURL: "https://fhir.example/r4"}, who)
		mustRefuse(t, "an unknown tenant", err, storage.ErrNotFound, `tenant "nowhere"`)
		_, err = fx.svc.SetGateway(ctx, "clinic", GatewayInput{}, who)
		mustRefuse(t, "no upstream URL", err, ErrInvalid, "upstream URL")

		if err := fx.svc.ClearGateway(ctx, "clinic", who); err != nil {
			t.Fatal(err)
		}
		got, err := fx.store.GetTenant(ctx, "clinic")
		if err != nil {
			t.Fatal(err)
		}
		if got.Policy.Gateway != (storage.GatewaySettings{}) || got.Policy.PatientSearch.ClientID != "picker" {
			t.Fatalf("after clear: %+v", got.Policy)
		}
		fx.lastEvent(t, "clinic", "admin.tenant.gateway.clear", who, "")
		mustRefuse(t, "clear an unknown tenant", fx.svc.ClearGateway(ctx, "nowhere", who), storage.ErrNotFound, "")
	})
}

// TestGatewaySurvivesConcurrentEdit: setting the gateway while another edit
// lands keeps both, rather than failing or losing one.
func TestGatewaySurvivesConcurrentEdit(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		fx.tenant(t, "clinic")
		svc := New(&renameOnFirstUpdate{Storage: fx.store}, fx.km, fx.clock.Now)
		if _, err := svc.SetGateway(ctx, "clinic", GatewayInput{UpstreamURL: "https://fhir.example/r4"}, Actor{ID: "setup"}); err != nil {
			t.Fatalf("set the gateway over a concurrent edit: %v", err)
		}
		got, err := fx.store.GetTenant(ctx, "clinic")
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != "Renamed meanwhile" || got.Policy.Gateway.UpstreamURL != "https://fhir.example/r4" {
			t.Fatalf("tenant after both edits: name %q, gateway %+v", got.Name, got.Policy.Gateway)
		}
	})
}

// TestUpdateTenantGateway: a tenant update keeps the gateway unless it
// names one, sets it in the same write and version, and removes it when
// given an empty one.
func TestUpdateTenantGateway(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		created := fx.tenant(t, "clinic")
		who := Actor{ID: "op"}
		const value = "update-key-never-in-clear"
		edit := TenantUpdate{ID: "clinic", Name: "Clinic", FHIRBaseURLs: created.FHIRBaseURLs, Version: created.Version,
			Gateway: &GatewayInput{UpstreamURL: "https://fhir.example/r4", UpstreamAuth: "header", HeaderName: "X-Api-Key", HeaderValue: value}}
		tn, err := fx.svc.UpdateTenant(ctx, edit, who)
		if err != nil {
			t.Fatal(err)
		}
		if tn.Version != created.Version+1 || tn.Policy.Gateway.HeaderName != "X-Api-Key" {
			t.Fatalf("updated %+v", tn)
		}
		if got, err := upstream.OpenHeader(fx.km.Sealer(), "clinic", tn.Policy.Gateway); err != nil || got != value {
			t.Fatalf("value opens to %q, %v", got, err)
		}
		fx.lastEvent(t, "clinic", "admin.tenant.gateway.set", who, "", value)

		// Without a gateway the update keeps it.
		kept, err := fx.svc.UpdateTenant(ctx, TenantUpdate{ID: "clinic", Name: "Renamed", FHIRBaseURLs: created.FHIRBaseURLs, Version: tn.Version}, who)
		if err != nil {
			t.Fatal(err)
		}
		if kept.Policy.Gateway != tn.Policy.Gateway {
			t.Fatalf("the gateway changed: %+v", kept.Policy.Gateway)
		}
		sets := len(fx.events(t, "clinic", "admin.tenant.gateway.set"))

		// Refused settings, or a stale version, change nothing.
		for name, e := range map[string]TenantUpdate{
			"client_credentials without a client": {ID: "clinic", FHIRBaseURLs: created.FHIRBaseURLs, Version: kept.Version,
				Gateway: &GatewayInput{UpstreamURL: "https://fhir.example/r4", UpstreamAuth: "client_credentials"}},
			"stale version": {ID: "clinic", FHIRBaseURLs: created.FHIRBaseURLs, Version: tn.Version,
				Gateway: &GatewayInput{UpstreamURL: "https://other.example/r4"}},
			"bad URL": {ID: "clinic", FHIRBaseURLs: created.FHIRBaseURLs, Gateway: &GatewayInput{UpstreamURL: "http://other.example/r4"}},
		} {
			if _, err := fx.svc.UpdateTenant(ctx, e, who); err == nil {
				t.Fatalf("%s: accepted", name)
			}
		}
		if got, _ := fx.store.GetTenant(ctx, "clinic"); got.Version != kept.Version || got.Policy.Gateway != tn.Policy.Gateway {
			t.Fatalf("refused edits changed the tenant: %+v", got)
		}
		if n := len(fx.events(t, "clinic", "admin.tenant.gateway.set")); n != sets {
			t.Fatalf("refused edits were audited: %d events, want %d", n, sets)
		}

		// An empty gateway removes it.
		cleared, err := fx.svc.UpdateTenant(ctx, TenantUpdate{ID: "clinic", Name: "Renamed", FHIRBaseURLs: created.FHIRBaseURLs, Gateway: &GatewayInput{}}, who)
		if err != nil {
			t.Fatal(err)
		}
		if cleared.Policy.Gateway != (storage.GatewaySettings{}) {
			t.Fatalf("after clearing: %+v", cleared.Policy.Gateway)
		}
		fx.lastEvent(t, "clinic", "admin.tenant.gateway.clear", who, "")

		// On create too.
		nt, err := fx.svc.CreateTenant(ctx, TenantInput{ID: "beta", FHIRBaseURLs: []string{"https://fhir.example/beta"},
			Gateway: &GatewayInput{UpstreamURL: "https://fhir.example/beta-up", UpstreamAuth: "forward"}}, who)
		if err != nil {
			t.Fatal(err)
		}
		if nt.Policy.Gateway != (storage.GatewaySettings{UpstreamURL: "https://fhir.example/beta-up", UpstreamAuth: storage.GatewayAuthForward}) {
			t.Fatalf("created with gateway %+v", nt.Policy.Gateway)
		}
		fx.lastEvent(t, "beta", "admin.tenant.gateway.set", who, "")
		_, err = fx.svc.CreateTenant(ctx, TenantInput{ID: "gamma", FHIRBaseURLs: []string{"https://fhir.example/gamma"},
			Gateway: &GatewayInput{UpstreamURL: "https://fhir.example/up", UpstreamAuth: "client_credentials"}}, who)
		mustRefuse(t, "create with client_credentials and no client", err, ErrInvalid, "patient search")
	})
}
