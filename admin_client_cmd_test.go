package main

import (
	"strings"
	"testing"
)

func TestAdminCreateClientCommand(t *testing.T) {
	env := newEnv(t)
	env.ok(t, nil, "", "tenant", "create", "--id", "clinic", "--fhir-base-url", "https://fhir.example/r4")

	var op adminClientJSON
	env.ok(t, &op, "", "admin", "create-client", "--name", "Provisioning")
	if !op.Operator || op.Tenant != "" || op.ClientID == "" || len(op.ClientSecret) < 43 || op.Scope != "admin" ||
		op.TokenEndpoint != "/admin/token" || op.APIBase != "/admin/api/v1" {
		t.Fatalf("operator API client: %+v", op)
	}
	var tc adminClientJSON
	env.ok(t, &tc, "", "admin", "create-client", "--tenant", "clinic", "--name", "Clinic sync", "--base-url", "https://auth.example/")
	if tc.Operator || tc.Tenant != "clinic" || tc.TokenEndpoint != "https://auth.example/t/clinic/token" || tc.APIBase != "https://auth.example/admin/api/v1" {
		t.Fatalf("tenant API client: %+v", tc)
	}
	// Registered for client_credentials with the admin scope, secret kept as a digest only.
	var clients []clientJSON
	env.ok(t, &clients, "", "client", "list", "--tenant", "clinic")
	if len(clients) != 1 || clients[0].ID != tc.ClientID || clients[0].Scopes != "admin" || clients[0].Type != "confidential-symmetric" ||
		len(clients[0].GrantTypes) != 1 || clients[0].GrantTypes[0] != "client_credentials" || clients[0].Secret != "" {
		t.Errorf("clinic's clients %+v", clients)
	}
	// The operator's client lives in the operator realm, not in a tenant.
	var tenants []map[string]any
	env.ok(t, &tenants, "", "tenant", "list")
	if len(tenants) != 1 {
		t.Errorf("tenant list %v, want only clinic", tenants)
	}

	env.fails(t, 2, "--name is required", "", "admin", "create-client")
	env.fails(t, 1, `no tenant "nowhere"`, "", "admin", "create-client", "--tenant", "nowhere", "--name", "x")
	env.fails(t, 2, "must be an absolute URL", "", "admin", "create-client", "--name", "x", "--base-url", "auth.example")
	code, _, errs := env.cli(t, "", "admin", "frobnicate")
	if code != 2 || !strings.Contains(errs, "create-client") {
		t.Errorf("unknown admin subcommand: %d %q, want the list of subcommands", code, errs)
	}
}
