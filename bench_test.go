package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestBenchCommand builds the binary and runs every load scenario briefly,
// so the load command keeps working as the server changes.
func TestBenchCommand(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "smartauth")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build: %v", err)
	}
	cmd := exec.Command(bin, "bench", "--duration", "300ms", "--concurrency", "2", "--json")
	cmd.Env = append(os.Environ(), "SMARTAUTH_DATA_DIR="+filepath.Join(dir, "data"), "DATABASE_URL=", "SMARTAUTH_MASTER_KEY=", "SMARTAUTH_LOG_LEVEL=error")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out)
	}
	var report struct {
		Results []benchResult `json:"results"`
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("bench printed no JSON: %v\n%s", err, out)
	}
	// Four token and introspection scenarios, and the gateway's read with its baseline.
	if len(report.Results) != 6 {
		t.Fatalf("%d results, want one per scenario (6)", len(report.Results))
	}
	for _, r := range report.Results {
		if r.Requests == 0 || r.Errors != 0 || r.P50ms <= 0 || r.PeakRSSMiB <= 0 {
			t.Errorf("%s: %+v", r.Scenario, r)
		}
	}
}
