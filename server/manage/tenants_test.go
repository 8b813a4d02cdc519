package manage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smartauth/smartauth/storage"
)

func TestListTenantsHidesOperatorRealm(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		fx.tenant(t, "zeta")
		fx.tenant(t, "alpha")
		if err := fx.svc.EnsureOperatorRealm(t.Context()); err != nil {
			t.Fatal(err)
		}
		ts, err := fx.svc.ListTenants(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, tn := range ts {
			ids = append(ids, tn.ID)
		}
		if !slices.Equal(ids, []string{"alpha", "zeta"}) {
			t.Fatalf("tenants %v, want alpha and zeta without the operator realm", ids)
		}
	})
}

func TestCreateTenantAuditsInOperatorTrail(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		fx.tenant(t, "early") // before the operator realm exists: its own trail only
		if err := fx.svc.EnsureOperatorRealm(ctx); err != nil {
			t.Fatal(err)
		}
		fx.tenant(t, "clinic")
		events, err := fx.store.ListAudit(ctx, storage.OperatorRealm, storage.AuditFilter{Type: "admin.tenant.create"})
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != 1 || events[0].Subject != "clinic" || events[0].Details["tenant"] != "clinic" {
			t.Fatalf("operator trail's tenant creations %+v, want clinic's alone", events)
		}
		own, err := fx.store.ListAudit(ctx, "clinic", storage.AuditFilter{Type: "admin.tenant.create"})
		if err != nil || len(own) != 1 {
			t.Fatalf("clinic's own trail: %+v, %v; want its creation", own, err)
		}
	})
}

func TestUpdateTenant(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		fx.tenant(t, "clinic")
		if err := fx.svc.EnsureOperatorRealm(ctx); err != nil {
			t.Fatal(err)
		}
		const searchSecret = "picker-secret-value"
		src, err := fx.svc.SetPatientSearch(ctx, "clinic", PatientSearchInput{FHIRBaseURL: "https://fhir.example/r4", TokenURL: "https://auth.example/token",
			ClientID: "picker", ClientSecret: searchSecret}, Actor{ID: "setup"})
		if err != nil {
			t.Fatal(err)
		}
		before, err := fx.store.GetTenant(ctx, "clinic")
		if err != nil {
			t.Fatal(err)
		}
		good := TenantUpdate{ID: "clinic", Name: " Clinic One ", FHIRBaseURLs: []string{"https://fhir.example/clinic", "https://fhir.example/r5/"},
			MFARequired: true, AccessTokenTTL: 10 * time.Minute}

		refusals := []struct {
			name   string
			change func(*TenantUpdate)
			want   error
			says   string
		}{
			{"operator realm", func(in *TenantUpdate) { in.ID = storage.OperatorRealm }, ErrInvalid, "operator realm"},
			{"no FHIR base URL", func(in *TenantUpdate) { in.FHIRBaseURLs = nil }, ErrInvalid, "FHIR base URL"},
			{"FHIR base URL with a query", func(in *TenantUpdate) { in.FHIRBaseURLs = []string{"https://fhir.example/r4?x=1"} }, ErrInvalid, "query"},
			{"access token lifetime too short", func(in *TenantUpdate) { in.AccessTokenTTL = 30 * time.Second }, ErrInvalid, "access token lifetime"},
			{"refresh token lifetime too long", func(in *TenantUpdate) { in.RefreshTokenTTL = 400 * 24 * time.Hour }, ErrInvalid, "refresh token lifetime"},
			{"ID token lifetime too long", func(in *TenantUpdate) { in.IDTokenTTL = 48 * time.Hour }, ErrInvalid, "ID token lifetime"},
			{"name too long", func(in *TenantUpdate) { in.Name = strings.Repeat("n", 201) }, ErrInvalid, "at most 200"},
			{"symmetric access token algorithm", func(in *TenantUpdate) { in.AccessTokenAlg = "HS256" }, ErrInvalid, `access token algorithm "HS256" must be one of RS256, PS256, ES256`},
			{"access token algorithm in lower case", func(in *TenantUpdate) { in.AccessTokenAlg = "rs256" }, ErrInvalid, "must be one of RS256, PS256, ES256"},
			{"unknown tenant", func(in *TenantUpdate) { in.ID = "ghost" }, storage.ErrNotFound, ""},
		}
		for _, tc := range refusals {
			t.Run(tc.name, func(t *testing.T) {
				in := good
				tc.change(&in)
				_, err := fx.svc.UpdateTenant(ctx, in, Actor{ID: "op"})
				mustRefuse(t, "update", err, tc.want, tc.says)
			})
		}
		if after, err := fx.store.GetTenant(ctx, "clinic"); err != nil || !slices.Equal(after.FHIRBaseURLs, before.FHIRBaseURLs) || after.Policy != before.Policy || after.Name != before.Name {
			t.Fatalf("refused updates changed the tenant: %+v, %v", after, err)
		}
		if es := fx.events(t, "clinic", "admin.tenant.update"); len(es) != 0 {
			t.Fatalf("refused updates were audited: %+v", es)
		}

		who := Actor{ID: "op", SourceIP: "192.0.2.7"}
		got, err := fx.svc.UpdateTenant(ctx, good, who)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := fx.store.GetTenant(ctx, "clinic")
		if err != nil {
			t.Fatal(err)
		}
		want := storage.TenantPolicy{MFARequired: true, AccessTokenTTL: storage.Duration(10 * time.Minute), AccessTokenAlg: "ES256", PatientSearch: src}
		if stored.Name != "Clinic One" || !slices.Equal(stored.FHIRBaseURLs, []string{"https://fhir.example/clinic", "https://fhir.example/r5"}) ||
			stored.Policy != want || !stored.CreatedAt.Equal(before.CreatedAt) {
			t.Fatalf("stored tenant %+v; want the new settings with the patient search source kept", stored)
		}
		if got.Name != stored.Name || got.Policy != stored.Policy {
			t.Fatalf("returned %+v, stored %+v", got, stored)
		}
		e := fx.lastEvent(t, "clinic", "admin.tenant.update", who, "", searchSecret, src.ClientSecretSealed)
		if e.Details["changed"] != "name fhir_base_urls mfa_required access_token_ttl" || e.Details["name"] != "Clinic One" ||
			e.Details["mfa_required"] != "true" || e.Details["access_token_ttl"] != "10m0s" || e.Details["fhir_base_urls"] != "https://fhir.example/clinic https://fhir.example/r5" {
			t.Fatalf("audit details %v do not name the changes", e.Details)
		}
		if _, ok := e.Details["mfa_offered"]; ok {
			t.Fatalf("audit details %v name a field that did not change", e.Details)
		}

		// The same update again changes nothing, and says so.
		if _, err := fx.svc.UpdateTenant(ctx, good, who); err != nil {
			t.Fatal(err)
		}
		if e := fx.lastEvent(t, "clinic", "admin.tenant.update", who, ""); e.Details["changed"] != "" || len(e.Details) != 1 {
			t.Fatalf("a repeated update reports changes: %v", e.Details)
		}
	})
}

// TestUpdateTenantVersions: settings saved from a version of the tenant
// that is no longer current change nothing and are not audited; saved from
// the current version, or from none, they go through and move the version
// on by one.
func TestUpdateTenantVersions(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		created := fx.tenant(t, "clinic")
		if created.Version != 1 {
			t.Fatalf("a new tenant is at version %d, want 1", created.Version)
		}
		who := Actor{ID: "op"}
		edit := TenantUpdate{ID: "clinic", Name: "First", FHIRBaseURLs: created.FHIRBaseURLs, Version: created.Version}
		first, err := fx.svc.UpdateTenant(ctx, edit, who)
		if err != nil {
			t.Fatal(err)
		}
		stored := func(t *testing.T) storage.Tenant {
			t.Helper()
			tn, err := fx.store.GetTenant(ctx, "clinic")
			if err != nil {
				t.Fatal(err)
			}
			return tn
		}
		if got := stored(t); first.Version != 2 || got.Version != 2 || got.Name != "First" {
			t.Fatalf("after one edit: returned %+v, stored %+v", first, got)
		}
		before := len(fx.events(t, "clinic", "admin.tenant.update"))

		for _, v := range []int64{created.Version, first.Version + 1} {
			stale := TenantUpdate{ID: "clinic", Name: "Stale", FHIRBaseURLs: []string{"https://fhir.example/stale"}, MFARequired: true, Version: v}
			_, err := fx.svc.UpdateTenant(ctx, stale, who)
			mustRefuse(t, fmt.Sprintf("an edit made from version %d", v), err, storage.ErrConflict, "")
		}
		if got := stored(t); got.Version != first.Version || got.Name != "First" || got.Policy.MFARequired || !slices.Equal(got.FHIRBaseURLs, created.FHIRBaseURLs) {
			t.Fatalf("stale edits changed the tenant: %+v", got)
		}
		if after := len(fx.events(t, "clinic", "admin.tenant.update")); after != before {
			t.Fatalf("stale edits were audited: %d events, want %d", after, before)
		}

		// No version means the tenant as it is now.
		now, err := fx.svc.UpdateTenant(ctx, TenantUpdate{ID: "clinic", Name: "Now", FHIRBaseURLs: created.FHIRBaseURLs}, who)
		if err != nil {
			t.Fatal(err)
		}
		if got := stored(t); now.Version != 3 || got.Version != 3 || got.Name != "Now" {
			t.Fatalf("an edit of the current tenant: returned %+v, stored %+v", now, got)
		}
	})
}

// renameOnFirstUpdate is a store on which another admin renames the tenant
// between the first read and write of a tenant update.
type renameOnFirstUpdate struct {
	storage.Storage
	done bool
}

func (s *renameOnFirstUpdate) UpdateTenant(ctx context.Context, t storage.Tenant) error {
	if !s.done {
		s.done = true
		other, err := s.Storage.GetTenant(ctx, t.ID)
		if err != nil {
			return err
		}
		other.Name = "Renamed meanwhile"
		if err := s.Storage.UpdateTenant(ctx, other); err != nil {
			return err
		}
	}
	return s.Storage.UpdateTenant(ctx, t)
}

// TestPatientSearchSurvivesConcurrentEdit: setting the patient search source
// while another edit lands keeps both, rather than failing or losing one.
func TestPatientSearchSurvivesConcurrentEdit(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		fx.tenant(t, "clinic")
		svc := New(&renameOnFirstUpdate{Storage: fx.store}, fx.km, fx.clock.Now)
		if _, err := svc.SetPatientSearch(ctx, "clinic", PatientSearchInput{FHIRBaseURL: "https://fhir.example/r4", TokenURL: "https://auth.example/token",
			ClientID: "picker", ClientSecret: "picker-secret"}, Actor{ID: "setup"}); err != nil {
			t.Fatalf("set patient search over a concurrent edit: %v", err)
		}
		got, err := fx.store.GetTenant(ctx, "clinic")
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != "Renamed meanwhile" || got.Policy.PatientSearch.ClientID != "picker" {
			t.Fatalf("tenant after both edits: name %q, patient search %+v", got.Name, got.Policy.PatientSearch)
		}
	})
}

// TestAccessTokenAlg shows the access-token algorithm is checked on create
// and update, that choosing PS256 gives the tenant a PS256 key without
// touching its others, and that the audit trail names the change.
func TestAccessTokenAlg(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		for _, alg := range []string{"none", "HS256", "RS384", "es256"} {
			_, err := fx.svc.CreateTenant(ctx, TenantInput{ID: "bad", FHIRBaseURLs: []string{"https://fhir.example/bad"},
				Policy: storage.TenantPolicy{AccessTokenAlg: alg}}, Actor{ID: "op"})
			mustRefuse(t, "create with "+alg, err, ErrInvalid, "must be one of RS256, PS256, ES256")
		}
		if _, err := fx.store.GetTenant(ctx, "bad"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("a refused tenant was stored: %v", err)
		}

		created, err := fx.svc.CreateTenant(ctx, TenantInput{ID: "rsa", FHIRBaseURLs: []string{"https://fhir.example/rsa"},
			Policy: storage.TenantPolicy{AccessTokenAlg: "PS256"}}, Actor{ID: "op"})
		if err != nil {
			t.Fatal(err)
		}
		if created.Policy.AccessTokenAlg != "PS256" || activeAlgs(t, fx, "rsa") != "ES256 PS256 RS256" {
			t.Fatalf("created with PS256: alg %q, active keys %s", created.Policy.AccessTokenAlg, activeAlgs(t, fx, "rsa"))
		}

		plain := fx.tenant(t, "clinic")
		if plain.Policy.AccessTokenAlgOrDefault() != "ES256" || activeAlgs(t, fx, "clinic") != "ES256 RS256" {
			t.Fatalf("created without a choice: alg %q, active keys %s", plain.Policy.AccessTokenAlg, activeAlgs(t, fx, "clinic"))
		}
		for _, alg := range []string{"RS256", "PS256", "ES256"} {
			got, err := fx.svc.UpdateTenant(ctx, TenantUpdate{ID: "clinic", FHIRBaseURLs: plain.FHIRBaseURLs, AccessTokenAlg: alg}, Actor{ID: "op"})
			if err != nil {
				t.Fatal(err)
			}
			stored, err := fx.store.GetTenant(ctx, "clinic")
			if err != nil || got.Policy.AccessTokenAlg != alg || stored.Policy.AccessTokenAlg != alg {
				t.Fatalf("update to %s: returned %q, stored %q, %v", alg, got.Policy.AccessTokenAlg, stored.Policy.AccessTokenAlg, err)
			}
		}
		if got := activeAlgs(t, fx, "clinic"); got != "ES256 PS256 RS256" {
			t.Fatalf("active keys after choosing PS256: %s, want one each of ES256, PS256, RS256", got)
		}
		added := fx.events(t, "clinic", "admin.keys.add")
		if len(added) != 1 || added[0].Details["alg"] != "PS256" || added[0].Details["kid"] == "" || added[0].ActorID != "op" {
			t.Fatalf("key additions audited %+v, want the one PS256 key", added)
		}
		var algs []string
		for _, e := range fx.events(t, "clinic", "admin.tenant.update") {
			algs = append(algs, e.Details["access_token_alg"])
		}
		if !slices.Equal(algs, []string{"RS256", "PS256", "ES256"}) {
			t.Fatalf("audited algorithms %v, want RS256 PS256 ES256", algs)
		}
	})
}

// activeAlgs lists the algorithms of a tenant's active keys, sorted.
func activeAlgs(t *testing.T, fx *opsFixture, tenantID string) string {
	t.Helper()
	ks, err := fx.store.ListSigningKeys(t.Context(), tenantID)
	if err != nil {
		t.Fatal(err)
	}
	var algs []string
	for _, k := range ks {
		if k.Status == storage.KeyActive {
			algs = append(algs, k.Alg)
		}
	}
	slices.Sort(algs)
	return strings.Join(algs, " ")
}
