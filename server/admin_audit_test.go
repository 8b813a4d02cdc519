package server_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/smartauth/smartauth/server"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/postgres"
	"github.com/smartauth/smartauth/storage/postgres/pgtest"
)

// tamperable is a store and a way to change one of its audit rows behind
// its back, as someone with database access could.
type tamperable struct {
	name   string
	store  storage.Storage
	tamper func(t *testing.T, tenantID string, seq int64, newType string)
}

// tamperableBackends opens SQLite, and PostgreSQL when configured, each with
// the means to defeat the append-only triggers and edit a row.
func tamperableBackends(t *testing.T) []tamperable {
	t.Helper()
	ctx := context.Background()
	lite, path := servertest.OpenSQLiteFile(t)
	out := []tamperable{{name: "sqlite", store: lite, tamper: func(t *testing.T, tenantID string, seq int64, newType string) {
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, stmt := range []string{`DROP TRIGGER audit_events_no_update`,
			`UPDATE audit_events SET type = '` + newType + `' WHERE tenant_id = '` + tenantID + `' AND seq = ` + strconv.FormatInt(seq, 10)} {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
	}}}
	if !hasPostgres() {
		return out
	}
	url := pgtest.URL(t)
	pg, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	if _, err := pg.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return append(out, tamperable{name: "postgres", store: pg, tamper: func(t *testing.T, tenantID string, seq int64, newType string) {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		for _, stmt := range []string{`ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update`,
			`UPDATE audit_events SET type = '` + newType + `' WHERE tenant_id = '` + tenantID + `' AND seq = ` + strconv.FormatInt(seq, 10)} {
			if _, err := conn.Exec(ctx, stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
	}})
}

func hasPostgres() bool { return len(servertest.Backends()) > 1 }

// auditRowPattern matches one event row of the viewer.
var auditRowPattern = regexp.MustCompile(`<tr><td>(\d+)</td><td>[^<]*</td><td><code>([^<]+)</code>`)

// TestAuditViewerChecksNewEvents: between full walks, a view still checks
// every event newer than the last one found intact.
func TestAuditViewerChecksNewEvents(t *testing.T) {
	for _, b := range tamperableBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			e := newAdminEnv(t, b.store)
			admin := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
			if p := admin.get("/admin/t/acme/audit"); !strings.Contains(p.body, "Chain verified") {
				t.Fatalf("first view: %s", p.body)
			}
			added, err := e.srv.Store.AppendAudit(context.Background(), storage.AuditEvent{TenantID: "acme", Time: e.srv.Clock.Now(),
				Type: "token.issue", Outcome: "success", ClientID: "app"})
			if err != nil {
				t.Fatal(err)
			}
			b.tamper(t, "acme", added.Seq, "token.revoke")
			want := "Chain broken at event " + strconv.FormatInt(added.Seq, 10)
			if p := admin.get("/admin/t/acme/audit"); !strings.Contains(p.body, want) {
				t.Fatalf("a view after a newer event was rewritten does not say %q: %s", want, p.body)
			}
		})
	}
}

func TestAdminAuditViewerExportAndTamper(t *testing.T) {
	for _, b := range tamperableBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			e := newAdminEnv(t, b.store)
			ctx := context.Background()
			admin := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
			if _, err := e.srv.Manage.CreateUser(ctx, manage.UserInput{TenantID: "acme", Email: "nurse@acme.example",
				Profiles: []storage.Profile{{FHIRUser: "Practitioner/7"}}}, manage.Actor{ID: e.acmeAdminID}); err != nil {
				t.Fatal(err)
			}
			all, err := b.store.ListAudit(ctx, "acme", storage.AuditFilter{})
			if err != nil {
				t.Fatal(err)
			}

			page := admin.get("/admin/t/acme/audit")
			if page.status != http.StatusOK || !strings.Contains(page.body, "Chain verified: all "+strconv.Itoa(len(all))+" events") {
				t.Fatalf("viewer: status %d, want a verified chain of %d events: %s", page.status, len(all), page.body)
			}
			rows := auditRowPattern.FindAllStringSubmatch(page.body, -1)
			if len(rows) != len(all) || rows[0][1] != strconv.FormatInt(all[len(all)-1].Seq, 10) {
				t.Fatalf("viewer shows %d rows starting at %v, want all %d newest first", len(rows), rows, len(all))
			}
			for _, want := range []string{"mfa.enroll", "login.success", "admin.user.create", "admin.tenant.create"} {
				if !strings.Contains(page.body, "<code>"+want+"</code>") {
					t.Errorf("viewer lacks a %s event", want)
				}
			}

			for _, tc := range []struct {
				query     string
				wantTypes []string
			}{
				{"?type=mfa.enroll", []string{"mfa.enroll"}},
				{"?user=" + tenantAdminEmail + "&type=login.success", []string{"login.success"}},
				// As subject (the admin's own account) and as actor (the nurse's).
				{"?user=" + e.acmeAdminID + "&type=admin.user.create", []string{"admin.user.create", "admin.user.create"}},
				{"?client=no-such-client", nil},
				{"?since=2000-01-01T00:00&until=2000-01-02T00:00", nil},
			} {
				got := admin.get("/admin/t/acme/audit" + tc.query)
				var types []string
				for _, m := range auditRowPattern.FindAllStringSubmatch(got.body, -1) {
					types = append(types, m[2])
				}
				if got.status != http.StatusOK || strings.Join(types, ",") != strings.Join(tc.wantTypes, ",") {
					t.Errorf("filter %s: status %d, types %v, want %v", tc.query, got.status, types, tc.wantTypes)
				}
			}
			if got := admin.get("/admin/t/acme/audit?since=yesterday"); got.status != http.StatusBadRequest {
				t.Errorf("bad time: status %d, want 400", got.status)
			}

			fhir := admin.get("/admin/t/acme/audit/export?format=fhir")
			var bundle struct {
				ResourceType string `json:"resourceType"`
				Entry        []struct {
					Resource struct {
						ResourceType string `json:"resourceType"`
						Recorded     string `json:"recorded"`
					} `json:"resource"`
				} `json:"entry"`
			}
			if err := json.Unmarshal([]byte(fhir.body), &bundle); err != nil || fhir.header.Get("Content-Type") != "application/fhir+json" {
				t.Fatalf("FHIR export: %v, content type %q", err, fhir.header.Get("Content-Type"))
			}
			if bundle.ResourceType != "Bundle" || len(bundle.Entry) != len(all) || bundle.Entry[0].Resource.ResourceType != "AuditEvent" {
				t.Fatalf("FHIR export: %s with %d entries, want a Bundle of %d AuditEvents", bundle.ResourceType, len(bundle.Entry), len(all))
			}
			nd := admin.get("/admin/t/acme/audit/export?format=ndjson&type=mfa.enroll")
			lines := 0
			for sc := bufio.NewScanner(strings.NewReader(nd.body)); sc.Scan(); lines++ {
				var ev map[string]any
				if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev["resourceType"] != "AuditEvent" {
					t.Fatalf("NDJSON line %d: %v: %s", lines+1, err, sc.Text())
				}
			}
			if lines != 1 {
				t.Errorf("NDJSON export of mfa.enroll: %d lines, want 1", lines)
			}

			// Another tenant's trail is out of reach for acme's admin.
			for _, path := range []string{"/admin/t/other/audit", "/admin/t/other/audit/export?format=fhir"} {
				if got := admin.get(path); got.status != http.StatusSeeOther {
					t.Errorf("acme's admin at %s: status %d, want a redirect to sign in", path, got.status)
				}
			}

			// Someone with database access rewrites an event the viewer has
			// found intact: walking the whole trail shows it, on its own once
			// FullChainCheckEvery has passed, and on request.
			b.tamper(t, "acme", 2, "login.success")
			e.srv.Clock.Advance(server.FullChainCheckEvery)
			for _, path := range []string{"/admin/t/acme/audit", "/admin/t/acme/audit?verify=full"} {
				if broken := admin.get(path); !strings.Contains(broken.body, "Chain broken at event 2") {
					t.Fatalf("after tampering, %s does not report the broken chain: %s", path, broken.body)
				}
			}
		})
	}
}

func TestAdminOperatorAuditTrail(t *testing.T) {
	e := newAdminEnv(t, servertest.OpenSQLite(t))
	op := adminSignIn(t, e.srv, "/admin", operatorEmail, "")
	page := op.get("/admin/audit?type=login.success")
	rows := auditRowPattern.FindAllStringSubmatch(page.body, -1)
	if page.status != http.StatusOK || len(rows) != 1 || !strings.Contains(page.body, e.operatorID) || !strings.Contains(page.body, "Chain verified") {
		t.Fatalf("operator trail: status %d, %d sign-in rows: %s", page.status, len(rows), page.body)
	}
	// An operator reads every tenant's trail.
	if got := op.get("/admin/t/other/audit"); got.status != http.StatusOK {
		t.Errorf("operator at other's trail: status %d", got.status)
	}
	// A tenant admin does not read the operators' trail.
	admin := adminSignIn(t, e.srv, "/admin/t/acme", tenantAdminEmail, "")
	if got := admin.get("/admin/audit"); got.status != http.StatusSeeOther {
		t.Errorf("tenant admin at the operator trail: status %d, want a redirect to sign in", got.status)
	}
}
