package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smartauth/smartauth/server/fhirsearch"
	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/sqlite"
)

func TestPatientSearchCommands(t *testing.T) {
	const secret = "cli-secret-never-printed"
	env := newEnv(t)
	env.ok(t, nil, "", "tenant", "create", "--id", "clinic", "--fhir-base-url", "https://fhir.example/r4")
	set := []string{"tenant", "set-patient-search", "--tenant", "clinic", "--fhir-base-url", "https://fhir.example/r4/",
		"--token-url", "https://fhir.example/auth/token", "--client-id", "picker", "--scope", "system/Patient.rs"}

	code, out, errs := env.cli(t, secret+"\n", set...)
	if code != 0 {
		t.Fatalf("set-patient-search: exit %d\n%s", code, errs)
	}
	if strings.Contains(out+errs, secret) {
		t.Fatalf("the secret was printed:\n%s%s", out, errs)
	}
	for _, want := range []string{`"fhir_base_url": "https://fhir.example/r4"`, `"client_id": "picker"`, `"scope": "system/Patient.rs"`, `"client_secret_set": true`} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %s:\n%s", want, out)
		}
	}
	code, out, _ = env.cli(t, "", "tenant", "list")
	if code != 0 || strings.Contains(out, secret) || !strings.Contains(out, `"client_secret_sealed": "(sealed)"`) {
		t.Fatalf("tenant list shows the secret or not that it is set:\n%s", out)
	}

	// At rest: absent from the database file, yet it opens with the master key.
	dir := env["SMARTAUTH_DATA_DIR"]
	files, _ := filepath.Glob(filepath.Join(dir, "smartauth.db*")) // with the WAL and shared-memory files
	if len(files) == 0 {
		t.Fatal("no database file")
	}
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
	tenant, err := store.GetTenant(context.Background(), "clinic")
	store.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := fhirsearch.OpenSecret(sealer, "clinic", tenant.Policy.PatientSearch); err != nil || got != secret {
		t.Fatalf("stored secret opens to %q, %v", got, err)
	}

	env.fails(t, 2, "reads the client secret from stdin", "", set...)
	env.fails(t, 2, "--token-url is required", secret+"\n", "tenant", "set-patient-search", "--tenant", "clinic",
		"--fhir-base-url", "https://fhir.example/r4", "--client-id", "picker")
	env.fails(t, 1, "must be an absolute https URL (http only on loopback)", secret+"\n", "tenant", "set-patient-search", "--tenant", "clinic",
		"--fhir-base-url", "http://fhir.example/r4", "--token-url", "https://fhir.example/token", "--client-id", "picker")
	env.fails(t, 1, `no tenant "nowhere"`, secret+"\n", "tenant", "set-patient-search", "--tenant", "nowhere",
		"--fhir-base-url", "https://fhir.example/r4", "--token-url", "https://fhir.example/token", "--client-id", "picker")

	env.ok(t, nil, "", "tenant", "clear-patient-search", "--tenant", "clinic")
	var list []tenantJSON
	env.ok(t, &list, "", "tenant", "list")
	if len(list) != 1 || list[0].Policy.PatientSearch != (storage.PatientSearchSource{}) {
		t.Fatalf("after clear: %+v", list)
	}
	env.fails(t, 1, `no tenant "nowhere"`, "", "tenant", "clear-patient-search", "--tenant", "nowhere")
}
