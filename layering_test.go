package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestLayering keeps imports pointing down the architecture: the packages
// at the bottom know nothing of those above them.
func TestLayering(t *testing.T) {
	const mod = "github.com/smartauth/smartauth"
	allowed := map[string][]string{
		"storage":             nil,
		"migrations":          nil,
		"templates":           nil,
		"web":                 nil,
		"storage/sqlite":      {"storage", "migrations"},
		"storage/postgres":    {"storage", "migrations"},
		"federation":          {"storage"},
		"federation/oidctest": {"federation", "storage"},
		"gateway/fhirtest":    nil,
		"deploy":              nil,
		"federation/oidc":     {"federation", "storage"},
		"server/keys":         {"storage"},
		"server/netguard":     nil,
		"server/textguard":    nil,
		"server/ratelimit":    nil,
		"server/clientauth":   {"storage", "server/clientsecret", "server/netguard", "server/textguard"},
		"server/fhirsearch":   {"storage", "server/clientsecret", "server/keys", "server/netguard", "server/roster"},
		"server/sessions":     {"storage", "server/keys"},
		"server/mfa":          {"storage", "server/keys"},
		"server/smart":        nil,
		"server/oauth":        {"storage", "server/keys", "server/smart"},
		"server/healthlake":   nil,
		"server/metrics":      {"storage"},
		"gateway/compartment": {"gateway/compartment/internal/fhirpath"},
		"gateway/upstream":    {"storage", "server/fhirsearch", "server/keys", "server/netguard", "server/roster"},
		"gateway":             {"gateway/compartment", "gateway/compartment/internal/fhirpath", "server/smart"},
	}
	for pkg, ok := range allowed {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", mod+"/"+pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			rel, ours := strings.CutPrefix(dep, mod+"/")
			if !ours || rel == pkg {
				continue
			}
			permitted := false
			for _, a := range ok {
				permitted = permitted || rel == a
			}
			if !permitted {
				t.Errorf("%s imports %s, which is above it", pkg, rel)
			}
		}
	}
}

// TestTestProviderStaysInTests keeps the OpenID provider of the tests out of
// the server: it signs in anyone with a known password, so no package built
// into the program may import it. The same goes for the FHIR upstream of the
// gateway tests.
func TestTestProviderStaysInTests(t *testing.T) {
	for _, helper := range []string{
		"github.com/smartauth/smartauth/federation/oidctest",
		// It runs Node.js programs and records every request it serves.
		"github.com/smartauth/smartauth/gateway/fhirtest",
	} {
		testOnly(t, helper)
	}
}

// testOnly fails the test if the program, or any package of ours other than
// the helper itself, imports the test helper.
func testOnly(t *testing.T, helper string) {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps .: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == helper {
			t.Errorf("the program imports %s, which is for tests only", helper)
		}
	}
	// Nor may any other package of ours outside its tests, so that none
	// can bring it into the program later.
	out, err = exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list ./...: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, " ")
		if pkg != helper && slices.Contains(strings.Fields(imports), helper) {
			t.Errorf("%s imports %s, which is for tests only", pkg, helper)
		}
	}
}
