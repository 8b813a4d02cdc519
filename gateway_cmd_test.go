package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smartauth/smartauth/gateway/upstream"
	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/sqlite"
)

func TestGatewayCommands(t *testing.T) {
	const value = "cli-api-key-never-printed"
	env := newEnv(t)
	env.ok(t, nil, "", "tenant", "create", "--id", "clinic", "--fhir-base-url", "https://fhir.example/r4")
	set := []string{"tenant", "set-gateway", "--tenant", "clinic", "--upstream-url", "https://fhir.upstream.example/r4/",
		"--upstream-auth", "header", "--header-name", "x-api-key", "--user-header", "X-Clinician"}

	code, out, errs := env.cli(t, value+"\n", set...)
	if code != 0 {
		t.Fatalf("set-gateway: exit %d\n%s", code, errs)
	}
	if strings.Contains(out+errs, value) {
		t.Fatalf("the header value was printed:\n%s%s", out, errs)
	}
	for _, want := range []string{`"upstream_url": "https://fhir.upstream.example/r4"`, `"upstream_auth": "header"`,
		`"header_name": "X-Api-Key"`, `"header_value": "(sealed)"`, `"user_header": "X-Clinician"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %s:\n%s", want, out)
		}
	}
	code, out, _ = env.cli(t, "", "tenant", "list")
	if code != 0 || strings.Contains(out, value) || !strings.Contains(out, `"header_value_sealed": "(sealed)"`) {
		t.Fatalf("tenant list shows the header value or not that it is set:\n%s", out)
	}

	// At rest: absent from the database file, yet it opens with the master key.
	dir := env["SMARTAUTH_DATA_DIR"]
	files, _ := filepath.Glob(filepath.Join(dir, "smartauth.db*"))
	if len(files) == 0 {
		t.Fatal("no database file")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), value) {
			t.Fatalf("%s holds the header value in the clear", filepath.Base(f))
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
	tenant, err := store.GetTenant(context.Background(), "clinic")
	store.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := upstream.OpenHeader(sealer, "clinic", tenant.Policy.Gateway); err != nil || got != value {
		t.Fatalf("stored header value opens to %q, %v", got, err)
	}

	// Without header authentication nothing is read from stdin.
	var view gatewayJSON
	env.ok(t, &view, "", "tenant", "set-gateway", "--tenant", "clinic", "--upstream-url", "https://fhir.upstream.example/r4", "--upstream-auth", "forward")
	if view != (gatewayJSON{Tenant: "clinic", UpstreamURL: "https://fhir.upstream.example/r4", UpstreamAuth: "forward", UserHeader: storage.DefaultGatewayUserHeader}) {
		t.Fatalf("forward: %+v", view)
	}

	env.fails(t, 2, "reads the header value from stdin", "", set...)
	env.fails(t, 2, "--upstream-url is required", "", "tenant", "set-gateway", "--tenant", "clinic")
	env.fails(t, 1, "must be an absolute https URL (http only on loopback)", "", "tenant", "set-gateway", "--tenant", "clinic",
		"--upstream-url", "http://fhir.upstream.example/r4")
	env.fails(t, 1, "patient search client, which is not configured", "", "tenant", "set-gateway", "--tenant", "clinic",
		"--upstream-url", "https://fhir.upstream.example/r4", "--upstream-auth", "client_credentials")
	env.fails(t, 1, `upstream authentication "basic" must be one of`, "", "tenant", "set-gateway", "--tenant", "clinic",
		"--upstream-url", "https://fhir.upstream.example/r4", "--upstream-auth", "basic")
	env.fails(t, 1, `header name "Host" is a header the gateway sets or drops itself`, value+"\n", "tenant", "set-gateway", "--tenant", "clinic",
		"--upstream-url", "https://fhir.upstream.example/r4", "--upstream-auth", "header", "--header-name", "Host")
	env.fails(t, 1, `no tenant "nowhere"`, value+"\n", "tenant", "set-gateway", "--tenant", "nowhere", "--upstream-url", "https://fhir.upstream.example/r4")

	env.ok(t, nil, "", "tenant", "clear-gateway", "--tenant", "clinic")
	var list []tenantJSON
	env.ok(t, &list, "", "tenant", "list")
	if len(list) != 1 || list[0].Policy.Gateway != (storage.GatewaySettings{}) {
		t.Fatalf("after clear: %+v", list)
	}
	env.fails(t, 1, `no tenant "nowhere"`, "", "tenant", "clear-gateway", "--tenant", "nowhere")
}
