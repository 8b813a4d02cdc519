package main

import (
	"encoding/base64"
	"flag"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/smartauth/smartauth/deploy"
	"github.com/smartauth/smartauth/server/keys"
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

// TestServeAcceptsTheDeployment: every variable the Deployment sets is one
// serve reads, and with the Secret's values in place serve accepts the
// whole configuration: a PostgreSQL store, the demo off, a fixed public
// URL shared by every replica, listening on the container port.
func TestServeAcceptsTheDeployment(t *testing.T) {
	set, err := deploy.Load("deploy")
	if err != nil {
		t.Fatal(err)
	}
	containers := set.Deployment.Spec.Template.Spec.Containers
	if len(containers) != 1 {
		t.Fatalf("the Deployment has %d containers, want 1", len(containers))
	}
	secrets := map[string]string{
		"smartauth/database-url": "postgres://smartauth:secret@postgres:5432/smartauth?sslmode=require",
		"smartauth/master-key":   base64.StdEncoding.EncodeToString(make([]byte, keys.MasterKeySize)),
	}
	vars := map[string]string{}
	for _, e := range containers[0].Env {
		switch {
		case e.ValueFrom == nil:
			vars[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
			v, ok := secrets[ref]
			if !ok {
				t.Fatalf("%s comes from %s, which the README does not tell operators to create", e.Name, ref)
			}
			vars[e.Name] = v
		default:
			t.Fatalf("%s comes from neither a value nor a Secret", e.Name)
		}
	}
	read := map[string]bool{}
	env := func(name string) string {
		read[name] = true
		return vars[name]
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	load := serveFlags(fs, env)
	if err := fs.Parse(containers[0].Args[1:]); err != nil {
		t.Fatal(err)
	}
	c, err := load()
	if err != nil {
		t.Fatalf("serve refuses the Deployment's configuration: %v", err)
	}
	for name := range vars {
		if !read[name] {
			t.Errorf("the Deployment sets %s, which serve never reads", name)
		}
	}
	if !c.isPostgres() || c.demo || c.baseURL == nil || c.masterKey == "" {
		t.Errorf("configuration %+v: want PostgreSQL, the demo off, a public URL and the master key", c)
	}
	if c.baseURL != nil && c.baseURL.Scheme != "https" {
		t.Errorf("SMARTAUTH_BASE_URL %s is not https", c.baseURL)
	}
	_, port, _ := net.SplitHostPort(c.addr)
	if ports := containers[0].Ports; len(ports) != 1 || strconv.Itoa(int(ports[0].ContainerPort)) != port {
		t.Errorf("serve listens on %s, not on the container port %v", c.addr, ports)
	}
}
