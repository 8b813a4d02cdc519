package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestComposeKeepsTheDemoOff: compose listens on every interface of its
// container, where the demo's public passwords would let anyone who
// reaches the port take the operator account.
func TestComposeKeepsTheDemoOff(t *testing.T) {
	b, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	env := composeEnvironment(t, string(b), "smartauth")
	if env["SMARTAUTH_DEMO"] != `"false"` {
		t.Errorf("compose sets SMARTAUTH_DEMO to %q, want \"false\"", env["SMARTAUTH_DEMO"])
	}
	if _, ok := env[demoOnNetworkEnv]; ok {
		t.Errorf("compose sets %s", demoOnNetworkEnv)
	}
	ports := composeList(string(b), "smartauth", "ports")
	if len(ports) == 0 {
		t.Fatal("compose publishes no port of smartauth")
	}
	// "127.0.0.1:8080:8080", or a variable whose default is loopback.
	loopback := regexp.MustCompile(`^"?(127\.0\.0\.1:|\$\{[A-Z_]+:-127\.0\.0\.1:)`)
	for _, p := range ports {
		if !loopback.MatchString(p) {
			t.Errorf("compose publishes %s beyond loopback by default", p)
		}
	}
}

// TestImageKeepsDataOut: the build context leaves out local state and
// secrets, and the image keeps its data folder in a volume.
func TestImageKeepsDataOut(t *testing.T) {
	b, err := os.ReadFile(".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for _, want := range []string{"data/", "**/master.key", "**/*.db", "**/*.db-wal", "**/node_modules"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
	d, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(d)
	if !strings.Contains(df, "SMARTAUTH_DATA_DIR=/data") || !strings.Contains(df, `VOLUME ["/data"]`) {
		t.Error("the image's data folder SMARTAUTH_DATA_DIR=/data is not a volume")
	}
	if !strings.Contains(df, "--chown=65532:65532") {
		t.Error("the data folder does not belong to the image's unprivileged user")
	}
}

// composeList returns the items of a list setting of a compose service,
// as written; simple line checks, as there is no YAML parser in go.mod.
func composeList(doc, service, key string) []string {
	var out []string
	inService, inKey := false, false
	for _, line := range strings.Split(doc, "\n") {
		trimmed := strings.TrimSpace(line)
		indent := len(line) - len(strings.TrimLeft(line, " "))
		switch {
		case trimmed == "" || strings.HasPrefix(trimmed, "#"):
		case indent == 2:
			inService, inKey = trimmed == service+":", false
		case inService && indent == 4:
			inKey = trimmed == key+":"
		case inService && inKey && strings.HasPrefix(trimmed, "- "):
			out = append(out, strings.TrimPrefix(trimmed, "- "))
		case inService && inKey && indent > 4:
			out = append(out, trimmed)
		}
	}
	return out
}

// composeEnvironment returns the environment mapping of a compose service.
func composeEnvironment(t *testing.T, doc, service string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, item := range composeList(doc, service, "environment") {
		k, v, ok := strings.Cut(item, ":")
		if !ok {
			t.Fatalf("compose environment item %q is not KEY: value", item)
		}
		env[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return env
}
