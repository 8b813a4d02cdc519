package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/sqlite"
)

func TestIdentityProviderCommands(t *testing.T) {
	const secret = "idp-secret-never-printed"
	env := newEnv(t)
	env.ok(t, nil, "", "tenant", "create", "--id", "clinic", "--fhir-base-url", "https://fhir.example/r4")
	add := []string{"idp", "add", "--tenant", "clinic", "--id", "pool", "--type", "cognito", "--region", "eu-west-1",
		"--user-pool-id", "eu-west-1_AbC123", "--hosted-ui-domain", "clinic.auth.eu-west-1.amazoncognito.com", "--client-id", "cid",
		"--domain", "Clinic.Example", "--domain", "*.hospital.example", "--federation-only",
		"--tenant-claim", "custom:tenant_id", "--patient-claim", "custom:patient_id", "--groups-claim", "cognito:groups",
		"--group-role", "Doctors=Attending physician"}
	var got idpJSON
	env.ok(t, &got, secret+"\n", add...)
	if got.Settings.Issuer != "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123" || !got.ClientSecretSet || !got.FederationOnly ||
		strings.Join(got.Domains, " ") != "clinic.example *.hospital.example" || got.ClaimMapping.GroupRoles["Doctors"] != "Attending physician" {
		t.Fatalf("idp add printed %+v", got)
	}
	env.ok(t, nil, "", "idp", "add", "--tenant", "clinic", "--id", "okta", "--type", "okta", "--org-url", "https://clinic.okta.com",
		"--client-id", "oid", "--public", "--domain", "staff.example", "--fhir-user-claim", "fhirUser")
	code, out, errs := env.cli(t, "", "idp", "list", "--tenant", "clinic")
	if code != 0 || strings.Contains(out+errs, secret) || !strings.Contains(out, `"issuer": "https://clinic.okta.com/oauth2/default"`) {
		t.Fatalf("idp list: exit %d, shows the secret or lacks okta:\n%s%s", code, out, errs)
	}

	// At rest: absent from the database file, yet it opens with the master key.
	dir := env["SMARTAUTH_DATA_DIR"]
	files, _ := filepath.Glob(filepath.Join(dir, "smartauth.db*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), secret) {
			t.Fatalf("%s holds the client secret in the clear", filepath.Base(f))
		}
	}
	key, _, err := keys.LoadMasterKeyFile(filepath.Join(dir, "master.key"), false)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := keys.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	store, err := sqlite.Open(context.Background(), filepath.Join(dir, "smartauth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	p, err := store.GetIdentityProvider(context.Background(), "clinic", "pool")
	if err != nil {
		t.Fatal(err)
	}
	if s, err := manage.OpenIdentityProviderSecret(sealer, p); err != nil || s != secret {
		t.Fatalf("stored secret opens to %q, %v", s, err)
	}
	// Moved to another provider's row, the sealed secret does not open.
	moved := p
	moved.ID = "okta"
	if _, err := manage.OpenIdentityProviderSecret(sealer, moved); err == nil {
		t.Fatal("a sealed secret opened under another provider id")
	}
	routes, err := manage.Routes(context.Background(), store, "clinic")
	if err != nil || len(routes) != 3 {
		t.Fatalf("routes = %+v, %v", routes, err)
	}
	audit, err := store.ListAudit(context.Background(), "clinic", storage.AuditFilter{Type: "admin.idp.add"})
	if err != nil || len(audit) != 2 {
		t.Fatalf("audit events of idp add: %d, %v", len(audit), err)
	}

	env.fails(t, 2, "reads the client secret from stdin", "", add...)
	env.fails(t, 1, "already exists", secret+"\n", add...)
	env.fails(t, 1, "must be eu-west-1_", secret+"\n", "idp", "add", "--tenant", "clinic", "--id", "bad", "--type", "cognito",
		"--region", "eu-west-1", "--user-pool-id", "us-east-1_x", "--client-id", "c")
	env.fails(t, 1, "already exists", "", "idp", "add", "--tenant", "clinic", "--id", "dup", "--type", "oidc",
		"--issuer", "https://idp.example", "--client-id", "c", "--public", "--domain", "clinic.example")
	env.fails(t, 2, "--client-id is required", secret+"\n", "idp", "add", "--tenant", "clinic", "--id", "x", "--type", "oidc", "--issuer", "https://idp.example")
	// The failed add left no provider behind.
	if _, err := store.GetIdentityProvider(context.Background(), "clinic", "dup"); err == nil {
		t.Fatal("a provider whose domain route failed was kept")
	}
	env.ok(t, nil, "", "idp", "delete", "--tenant", "clinic", "--id", "pool")
	env.fails(t, 1, `no identity provider "pool" in tenant "clinic"`, "", "idp", "delete", "--tenant", "clinic", "--id", "pool")
}
