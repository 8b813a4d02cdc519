package main

import (
	"testing"
)

func TestAdminCreateCommand(t *testing.T) {
	env := newEnv(t)
	env.ok(t, nil, "", "tenant", "create", "--id", "clinic", "--fhir-base-url", "https://fhir.example/r4")

	var op adminJSON
	env.ok(t, &op, "a long passphrase\n", "admin", "create", "--email", "ops@example.org")
	if !op.Operator || op.ID == "" || op.SignInPath != "/admin/login" || op.Tenant != "" {
		t.Fatalf("operator: %+v", op)
	}
	var admin adminJSON
	env.ok(t, &admin, "a long passphrase\n", "admin", "create", "--tenant", "clinic", "--email", "it@clinic.example")
	if admin.Operator || admin.Tenant != "clinic" || admin.SignInPath != "/admin/t/clinic/login" {
		t.Fatalf("tenant admin: %+v", admin)
	}
	// A second operator joins the existing realm; the operator realm is no tenant.
	env.ok(t, nil, "another long passphrase\n", "admin", "create", "--email", "ops2@example.org")
	var tenants []map[string]any
	env.ok(t, &tenants, "", "tenant", "list")
	if len(tenants) != 1 || tenants[0]["id"] != "clinic" {
		t.Errorf("tenant list shows %v, want only clinic", tenants)
	}

	env.fails(t, 1, "already exists", "a long passphrase\n", "admin", "create", "--email", "OPS@example.org")
	env.fails(t, 2, "reads the password from stdin", "", "admin", "create", "--email", "x@example.org")
	env.fails(t, 1, "at least 8 characters", "short\n", "admin", "create", "--email", "x@example.org")
	env.fails(t, 1, `no tenant "nowhere"`, "a long passphrase\n", "admin", "create", "--tenant", "nowhere", "--email", "x@example.org")
	env.fails(t, 2, "email", "a long passphrase\n", "admin", "create")
}
