package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayering keeps imports pointing down the architecture: the packages
// at the bottom know nothing of those above them.
func TestLayering(t *testing.T) {
	const mod = "github.com/smartauth/smartauth"
	allowed := map[string][]string{
		"storage":           nil,
		"migrations":        nil,
		"templates":         nil,
		"web":               nil,
		"storage/sqlite":    {"storage", "migrations"},
		"storage/postgres":  {"storage", "migrations"},
		"federation":        {"storage"},
		"server/keys":       {"storage"},
		"server/clientauth": {"storage", "server/clientsecret"},
		"server/fhirsearch": {"storage", "server/clientauth", "server/clientsecret", "server/keys", "server/roster"},
		"server/sessions":   {"storage", "server/keys"},
		"server/mfa":        {"storage", "server/keys"},
		"server/smart":      nil,
		"server/oauth":      {"storage", "server/keys", "server/smart"},
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
