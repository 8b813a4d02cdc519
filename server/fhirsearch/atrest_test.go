package fhirsearch_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite"

	"github.com/smartauth/smartauth/server/fhirsearch"
	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/postgres"
	"github.com/smartauth/smartauth/storage/postgres/pgtest"
	"github.com/smartauth/smartauth/storage/sqlite"
)

// rawPolicy reads a tenant's policy column straight from the database.
type rawPolicy func(t *testing.T, tenantID string) string

// TestSecretSealedAtRest sets a tenant's patient search through manage,
// reads the stored row behind the store's back, and checks that the client
// secret is not there while a Searcher built from the stored tenant works.
func TestSecretSealedAtRest(t *testing.T) {
	backends := map[string]func(t *testing.T) (storage.Storage, rawPolicy){
		"sqlite": func(t *testing.T) (storage.Storage, rawPolicy) {
			path := filepath.Join(t.TempDir(), "search.db")
			s, err := sqlite.Open(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s, func(t *testing.T, tenantID string) string {
				db, err := sql.Open("sqlite", path)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				var policy string
				if err := db.QueryRow(`SELECT policy FROM tenants WHERE id = ?`, tenantID).Scan(&policy); err != nil {
					t.Fatal(err)
				}
				return policy
			}
		},
	}
	if os.Getenv("TEST_DATABASE_URL") != "" {
		backends["postgres"] = func(t *testing.T) (storage.Storage, rawPolicy) {
			url := pgtest.URL(t)
			s, err := postgres.Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s, func(t *testing.T, tenantID string) string {
				conn, err := pgx.Connect(context.Background(), url)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(context.Background())
				var policy string
				if err := conn.QueryRow(context.Background(), `SELECT policy::text FROM tenants WHERE id = $1`, tenantID).Scan(&policy); err != nil {
					t.Fatal(err)
				}
				return policy
			}
		}
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			store, raw := open(t)
			sealer, err := keys.NewSealer([]byte(strings.Repeat("k", keys.MasterKeySize)))
			if err != nil {
				t.Fatal(err)
			}
			svc := manage.New(store, keys.NewManager(store, sealer, nil), nil)
			who := manage.Actor{ID: "test"}
			if _, err := svc.CreateTenant(ctx, manage.TenantInput{ID: "clinic", FHIRBaseURLs: []string{"https://fhir.example/r4"}}, who); err != nil {
				t.Fatal(err)
			}
			f := newFakeFHIR(t)
			src := f.source()
			set, err := svc.SetPatientSearch(ctx, "clinic", manage.PatientSearchInput{
				FHIRBaseURL: src.FHIRBaseURL + "/", TokenURL: src.TokenURL, ClientID: src.ClientID, ClientSecret: testSecret, Scope: " " + src.Scope,
			}, who)
			if err != nil {
				t.Fatal(err)
			}
			if set.FHIRBaseURL != src.FHIRBaseURL || set.Scope != src.Scope || set.ClientSecretSealed == "" {
				t.Fatalf("stored source %+v", set)
			}

			policy := raw(t, "clinic")
			if strings.Contains(policy, testSecret) || !strings.Contains(policy, "client_secret_sealed") || !strings.Contains(policy, src.TokenURL) {
				t.Fatalf("stored policy does not hold the setting with the secret sealed: %s", policy)
			}

			tenant, err := store.GetTenant(ctx, "clinic")
			if err != nil {
				t.Fatal(err)
			}
			s, err := fhirsearch.NewSearchers(sealer, fhirsearch.Options{AllowPrivateNetworks: true}).For(tenant)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := s.Search(ctx, storage.PatientQuery{Identifier: "MRN-1"}); err != nil || ids(got) != "p1" {
				t.Fatalf("search with the stored setting: %v, %v", ids(got), err)
			}

			events, err := store.ListAudit(ctx, "clinic", storage.AuditFilter{Type: "admin.tenant.patient_search.set"})
			if err != nil || len(events) != 1 || events[0].Details["client_id"] != testClientID {
				t.Fatalf("audit: %+v, %v", events, err)
			}
			for _, v := range events[0].Details {
				if strings.Contains(v, testSecret) {
					t.Fatal("the audit event holds the secret")
				}
			}

			if err := svc.ClearPatientSearch(ctx, "clinic", who); err != nil {
				t.Fatal(err)
			}
			if tenant, err = store.GetTenant(ctx, "clinic"); err != nil || tenant.Policy.PatientSearch != (storage.PatientSearchSource{}) {
				t.Fatalf("after clear: %+v, %v", tenant.Policy, err)
			}
			if policy := raw(t, "clinic"); strings.Contains(policy, "patient_search") {
				t.Fatalf("cleared setting still stored: %s", policy)
			}
			if events, _ := store.ListAudit(ctx, "clinic", storage.AuditFilter{Type: "admin.tenant.patient_search.clear"}); len(events) != 1 {
				t.Fatalf("clear not audited: %+v", events)
			}
			if err := svc.ClearPatientSearch(ctx, "nowhere", who); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("unknown tenant: %v", err)
			}
		})
	}
}
