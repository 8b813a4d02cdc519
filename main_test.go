package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/postgres/pgtest"
	"github.com/smartauth/smartauth/storage/sqlite"
)

// testEnv is an environment for run: a fresh data folder, plus overrides.
type testEnv map[string]string

func newEnv(t *testing.T) testEnv {
	return testEnv{"SMARTAUTH_DATA_DIR": t.TempDir(), "SMARTAUTH_LOG_LEVEL": "warn"}
}

func (e testEnv) get(k string) string { return e[k] }

// onBothBackends runs f on the embedded SQLite store and, when
// TEST_DATABASE_URL is set, on a fresh PostgreSQL schema.
func onBothBackends(t *testing.T, f func(t *testing.T, env testEnv)) {
	t.Run("sqlite", func(t *testing.T) { f(t, newEnv(t)) })
	t.Run("postgres", func(t *testing.T) {
		env := newEnv(t)
		env["DATABASE_URL"] = pgtest.URL(t)
		env["SMARTAUTH_MASTER_KEY"] = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
		f(t, env)
	})
}

// store opens the store the commands of env use, as they open it.
func (e testEnv) store(t *testing.T) storage.Storage {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c, err := storeFlags(fs, e.get)()
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := openStore(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// cli runs one command and returns its exit code, stdout and stderr.
func (e testEnv) cli(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	// Bounded, so a serve that should have refused to start fails the test
	// instead of running until the test binary times out.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := run(ctx, args, e.get, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// ok runs a command that must succeed and decodes its JSON output.
func (e testEnv) ok(t *testing.T, into any, stdin string, args ...string) {
	t.Helper()
	code, out, errs := e.cli(t, stdin, args...)
	if code != 0 {
		t.Fatalf("smartauth %s: exit %d\n%s", strings.Join(args, " "), code, errs)
	}
	if into != nil {
		if err := json.Unmarshal([]byte(out), into); err != nil {
			t.Fatalf("smartauth %s printed no JSON: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// fails runs a command that must fail with code and one clear line containing want.
func (e testEnv) fails(t *testing.T, code int, want string, stdin string, args ...string) {
	t.Helper()
	got, out, errs := e.cli(t, stdin, args...)
	if got != code || !strings.Contains(errs, want) || out != "" {
		t.Fatalf("smartauth %s: exit %d, stdout %q, stderr %q; want exit %d and %q", strings.Join(args, " "), got, out, errs, code, want)
	}
}

func TestInvalidConfiguration(t *testing.T) {
	tests := []struct {
		name string
		env  testEnv
		args []string
		want string
	}{
		{"bad addr", testEnv{"SMARTAUTH_ADDR": "nope"}, nil, `SMARTAUTH_ADDR "nope" must be host:port`},
		{"bad port", testEnv{"SMARTAUTH_ADDR": "127.0.0.1:99999"}, nil, "no valid port"},
		{"bad shutdown delay", testEnv{"SMARTAUTH_SHUTDOWN_DELAY": "soon"}, nil, `SMARTAUTH_SHUTDOWN_DELAY "soon" must be a duration`},
		{"negative shutdown delay", testEnv{}, []string{"serve", "--shutdown-delay", "-1s"}, "from 0s to 5m"},
		{"bad base url", testEnv{"SMARTAUTH_BASE_URL": "auth.example"}, nil, "SMARTAUTH_BASE_URL"},
		{"base url with path", testEnv{"SMARTAUTH_BASE_URL": "https://auth.example/sub"}, nil, "root of its host"},
		{"flag beats env", testEnv{"SMARTAUTH_ADDR": "127.0.0.1:1"}, []string{"serve", "--addr", "bad"}, `"bad" must be host:port`},
		{"bad demo", testEnv{"SMARTAUTH_DEMO": "maybe"}, nil, "SMARTAUTH_DEMO"},
		{"demo on every interface", testEnv{"SMARTAUTH_DEMO": "true", "SMARTAUTH_ADDR": "0.0.0.0:8080"}, nil, "--" + demoOnNetworkFlag + ")"},
		{"demo upstream on loopback", testEnv{"SMARTAUTH_DEMO_FHIR_UPSTREAM": "http://127.0.0.1:8103/fhir"}, nil, "(--fhir-private-networks)"},
		{"demo upstream without the demo", testEnv{"SMARTAUTH_DEMO": "false", "SMARTAUTH_DEMO_FHIR_UPSTREAM": "https://fhir.example/r4"}, nil, "the demo is off"},
		{"bad log level", testEnv{"SMARTAUTH_LOG_LEVEL": "loud"}, nil, "SMARTAUTH_LOG_LEVEL"},
		{"bad JWKS network setting", testEnv{"SMARTAUTH_JWKS_PRIVATE_NETWORKS": "sometimes"}, nil, "SMARTAUTH_JWKS_PRIVATE_NETWORKS"},
		{"postgres without key", testEnv{"DATABASE_URL": "postgres://u@127.0.0.1:1/db"}, nil, "SMARTAUTH_MASTER_KEY or SMARTAUTH_MASTER_KEY_FILE is required"},
		{"short master key", testEnv{"SMARTAUTH_MASTER_KEY": base64.StdEncoding.EncodeToString([]byte("short"))}, nil, "master key must be 32 bytes"},
		{"missing key file", testEnv{"SMARTAUTH_MASTER_KEY_FILE": "/nonexistent/master.key", "DATABASE_URL": "postgres://u@127.0.0.1:1/db"}, nil, "read master key file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			for k, v := range tc.env {
				env[k] = v
			}
			code, out, errs := env.cli(t, "", tc.args...)
			if code == 0 || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stderr %q; want failure containing %q", code, errs, tc.want)
			}
			if lines := strings.Count(strings.TrimSpace(errs), "\n") + 1; lines != 1 || out != "" {
				t.Fatalf("want one clear line on stderr and nothing on stdout, got stdout %q stderr %q", out, errs)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	env := newEnv(t)
	env.fails(t, 2, `unknown command "frobnicate"`, "", "frobnicate")
	env.fails(t, 2, "tenant needs a subcommand", "", "tenant")
	env.fails(t, 2, `unknown subcommand "explode"`, "", "tenant", "explode")
	env.fails(t, 2, "--id is required", "", "tenant", "create")
	env.fails(t, 2, "--tenant is required", "", "client", "list")
	env.fails(t, 2, "flag provided but not defined: -bogus", "", "tenant", "list", "--bogus")
	env.fails(t, 2, `unexpected argument "extra"`, "", "tenant", "list", "extra")
	if code, out, _ := env.cli(t, "", "help"); code != 0 || !strings.Contains(out, "create, list, set-access-token-alg, set-rate-limits,") {
		t.Fatalf("help: %d %q", code, out)
	}
}

func TestTenantCommands(t *testing.T) {
	env := newEnv(t)
	var a, b tenantJSON
	env.ok(t, &a, "", "tenant", "create", "--id", "clinic-a", "--name", "Clinic A", "--fhir-base-url", "https://fhir.a.example/r4/")
	env.ok(t, &b, "", "tenant", "create", "--id", "clinic-b", "--fhir-base-url", "https://fhir.b.example/r4,https://fhir.b.example/r5")
	if a.ID != "clinic-a" || a.Name != "Clinic A" || len(a.FHIRBaseURLs) != 1 || a.FHIRBaseURLs[0] != "https://fhir.a.example/r4" {
		t.Fatalf("tenant a: %+v (trailing slash must be dropped)", a)
	}
	if len(b.FHIRBaseURLs) != 2 || b.Name != "clinic-b" {
		t.Fatalf("tenant b: %+v", b)
	}
	var c tenantJSON
	env.ok(t, &c, "", "tenant", "create", "--id", "clinic-c", "--fhir-base-url", "https://fhir.c.example/r4",
		"--mfa-required", "--jit-provisioning", "--allow-email-linking")
	if !c.Policy.MFARequired || !c.Policy.JITProvisioning || !c.Policy.AllowEmailLinking || a.Policy.MFARequired || a.Policy.JITProvisioning {
		t.Fatalf("sign-in policy flags: c %+v, a %+v", c.Policy, a.Policy)
	}
	if len(a.Keys) != 2 || len(b.Keys) != 2 {
		t.Fatalf("want 2 keys per tenant, got %d and %d", len(a.Keys), len(b.Keys))
	}
	for _, ka := range a.Keys {
		for _, kb := range b.Keys {
			if ka.KID == kb.KID {
				t.Fatalf("two tenants share key %s", ka.KID)
			}
		}
	}
	var list []tenantJSON
	env.ok(t, &list, "", "tenant", "list")
	if len(list) != 3 || list[0].ID != "clinic-a" || list[1].ID != "clinic-b" || list[2].ID != "clinic-c" {
		t.Fatalf("tenant list: %+v", list)
	}
	env.fails(t, 1, "already exists", "", "tenant", "create", "--id", "clinic-a", "--fhir-base-url", "https://x.example")
	env.fails(t, 1, "must be 1-63 lowercase", "", "tenant", "create", "--id", "Bad_ID", "--fhir-base-url", "https://x.example")
	env.fails(t, 1, "at least one FHIR base URL", "", "tenant", "create", "--id", "nofhir")
	env.fails(t, 1, "access token lifetime 5s must be between", "", "tenant", "create", "--id", "shortttl", "--fhir-base-url", "https://x.example", "--access-token-ttl", "5s")
	var ttl tenantJSON
	env.ok(t, &ttl, "", "tenant", "create", "--id", "ttl", "--fhir-base-url", "https://x.example", "--access-token-ttl", "10m", "--refresh-token-ttl", "720h")
	if time.Duration(ttl.Policy.AccessTokenTTL) != 10*time.Minute || time.Duration(ttl.Policy.RefreshTokenTTL) != 720*time.Hour {
		t.Fatalf("lifetimes not kept: %+v", ttl.Policy)
	}
	env.fails(t, 1, "must be an absolute http(s) URL", "", "tenant", "create", "--id", "badfhir", "--fhir-base-url", "ftp://x")
}

// TestTenantAccessTokenAlgCommands shows the access-token algorithm is set
// at creation and changed later, a PS256 choice brings its own key, and a
// value outside the three is refused saying which are allowed.
func TestTenantAccessTokenAlgCommands(t *testing.T) {
	env := newEnv(t)
	var rs, plain, changed tenantJSON
	env.ok(t, &rs, "", "tenant", "create", "--id", "rs", "--fhir-base-url", "https://x.example", "--access-token-alg", "RS256")
	env.ok(t, &plain, "", "tenant", "create", "--id", "plain", "--fhir-base-url", "https://x.example", "--mfa-required")
	if rs.Policy.AccessTokenAlg != "RS256" || plain.Policy.AccessTokenAlg != "ES256" {
		t.Fatalf("created with algorithms %q and %q, want RS256 and the default ES256", rs.Policy.AccessTokenAlg, plain.Policy.AccessTokenAlg)
	}
	env.ok(t, &changed, "", "tenant", "set-access-token-alg", "--tenant", "plain", "--alg", "PS256")
	if changed.Policy.AccessTokenAlg != "PS256" || !changed.Policy.MFARequired || changed.FHIRBaseURLs[0] != "https://x.example" {
		t.Fatalf("after set-access-token-alg: %+v, want PS256 with the rest kept", changed)
	}
	var algs []string
	for _, k := range changed.Keys {
		if k.Status == string(storage.KeyActive) {
			algs = append(algs, k.Alg)
		}
	}
	slices.Sort(algs)
	if !slices.Equal(algs, []string{"ES256", "PS256", "RS256"}) {
		t.Fatalf("active keys after choosing PS256: %v", algs)
	}
	env.fails(t, 1, `access token algorithm "HS256" must be one of RS256, PS256, ES256`, "", "tenant", "create", "--id", "hs", "--fhir-base-url", "https://x.example", "--access-token-alg", "HS256")
	env.fails(t, 1, "must be one of RS256, PS256, ES256", "", "tenant", "set-access-token-alg", "--tenant", "plain", "--alg", "RS512")
	env.fails(t, 2, "--alg is required", "", "tenant", "set-access-token-alg", "--tenant", "plain")
	env.fails(t, 1, `no tenant "ghost"`, "", "tenant", "set-access-token-alg", "--tenant", "ghost", "--alg", "RS256")
}

// TestTenantRateLimitsCommand: set-rate-limits changes the limits it is
// given, keeps the other and the rest of the tenant, and refuses a limit
// past the maximum.
func TestTenantRateLimitsCommand(t *testing.T) {
	env := newEnv(t)
	env.ok(t, nil, "", "tenant", "create", "--id", "clinic", "--fhir-base-url", "https://x.example", "--mfa-required")
	var got tenantJSON
	env.ok(t, &got, "", "tenant", "set-rate-limits", "--tenant", "clinic", "--client-per-minute", "30", "--address-per-minute", "-5")
	if want := (storage.RateLimits{ClientPerMinute: 30, AddressPerMinute: -1}); got.Policy.RateLimits != want || !got.Policy.MFARequired {
		t.Fatalf("after set-rate-limits: %+v, want %+v with the rest kept", got.Policy, want)
	}
	var again tenantJSON
	env.ok(t, &again, "", "tenant", "set-rate-limits", "--tenant", "clinic", "--address-per-minute", "0")
	if want := (storage.RateLimits{ClientPerMinute: 30}); again.Policy.RateLimits != want {
		t.Fatalf("after setting the address limit alone: %+v, want %+v", again.Policy.RateLimits, want)
	}
	env.fails(t, 1, "must be at most 1000000", "", "tenant", "set-rate-limits", "--tenant", "clinic", "--client-per-minute", "2000000")
}

func TestClientCommands(t *testing.T) {
	env := newEnv(t)
	env.ok(t, nil, "", "tenant", "create", "--id", "clinic", "--fhir-base-url", "https://fhir.example/r4")

	var pub clientJSON
	env.ok(t, &pub, "", "client", "create", "--tenant", "clinic", "--name", "Chart", "--type", "public",
		"--redirect-uri", "https://app.example/cb", "--scope", "openid launch/patient patient/*.rs")
	if pub.ID == "" || pub.Secret != "" || pub.Scopes != "openid launch/patient patient/*.rs" || pub.RedirectURIs[0] != "https://app.example/cb" {
		t.Fatalf("public client: %+v", pub)
	}

	var conf clientJSON
	env.ok(t, &conf, "", "client", "create", "--tenant", "clinic", "--id", "billing", "--name", "Billing",
		"--type", "confidential-symmetric", "--redirect-uri", "https://billing.example/cb", "--scope", "user/*.rs")
	raw, err := base64.RawURLEncoding.DecodeString(conf.Secret)
	if err != nil || len(raw) < 32 {
		t.Fatalf("secret %q is not 256 random bits", conf.Secret)
	}
	stored := storedClientSecretHash(t, env, "clinic", "billing")
	want := sha256.Sum256([]byte(conf.Secret))
	if !bytes.Equal(stored, want[:]) {
		t.Fatal("the stored secret is not the SHA-256 digest of the secret shown")
	}
	var list []clientJSON
	env.ok(t, &list, "", "client", "list", "--tenant", "clinic")
	for _, c := range list {
		if c.Secret != "" {
			t.Fatal("client list shows a secret")
		}
	}
	var rotated map[string]string
	env.ok(t, &rotated, "", "client", "rotate-secret", "--tenant", "clinic", "--id", "billing")
	if rotated["client_secret"] == "" || rotated["client_secret"] == conf.Secret {
		t.Fatal("rotate-secret did not give a new secret")
	}
	env.fails(t, 1, "has no secret", "", "client", "rotate-secret", "--tenant", "clinic", "--id", pub.ID)

	jwksFile := filepath.Join(t.TempDir(), "jwks.json")
	ec, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubSet, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &ec.PublicKey, KeyID: "k1", Algorithm: "ES384", Use: "sig"}}})
	os.WriteFile(jwksFile, pubSet, 0o600)
	privSet, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ec, KeyID: "k1", Algorithm: "ES384"}}})
	privFile := filepath.Join(t.TempDir(), "private.json")
	os.WriteFile(privFile, privSet, 0o600)
	env.fails(t, 1, "holds a private key", "", "client", "create", "--tenant", "clinic", "--name", "Leaky", "--type", "confidential-asymmetric",
		"--jwks-file", privFile, "--scope", "system/*.rs", "--grant-type", "client_credentials")
	var asym clientJSON
	env.ok(t, &asym, "", "client", "create", "--tenant", "clinic", "--name", "Export", "--type", "confidential-asymmetric",
		"--jwks-file", jwksFile, "--scope", "system/*.rs", "--grant-type", "client_credentials")
	if asym.JWKS == nil || len(asym.RedirectURIs) != 0 || asym.GrantTypes[0] != "client_credentials" {
		t.Fatalf("asymmetric client: %+v", asym)
	}

	for _, tc := range []struct {
		want string
		args []string
	}{
		{"must use https", []string{"--type", "public", "--redirect-uri", "http://app.example/cb", "--scope", "openid"}},
		{"must not contain a fragment", []string{"--type", "public", "--redirect-uri", "https://app.example/cb#x", "--scope", "openid"}},
		{"wildcards", []string{"--type", "public", "--redirect-uri", "https://*.example/cb", "--scope", "openid"}},
		{"at least one redirect URI", []string{"--type", "public", "--scope", "openid"}},
		{"client type", []string{"--type", "secret", "--redirect-uri", "https://a.example/cb", "--scope", "openid"}},
		{"needs a JWKS URL or an inline JWKS", []string{"--type", "confidential-asymmetric", "--grant-type", "client_credentials", "--scope", "system/*.rs"}},
		{"cannot use client_credentials", []string{"--type", "public", "--grant-type", "client_credentials", "--scope", "system/*.rs"}},
		{"at least one allowed scope", []string{"--type", "public", "--redirect-uri", "https://a.example/cb"}},
		{`scope "patient/*.read" cannot be registered for a backend service`, []string{"--type", "confidential-symmetric", "--grant-type", "client_credentials", "--scope", "patient/*.read launch/patient"}},
	} {
		args := append([]string{"client", "create", "--tenant", "clinic", "--name", "X"}, tc.args...)
		env.fails(t, 1, tc.want, "", args...)
	}
	env.fails(t, 1, `no tenant "ghost"`, "", "client", "list", "--tenant", "ghost")

	var del map[string]string
	env.ok(t, &del, "", "client", "delete", "--tenant", "clinic", "--id", "billing")
	env.fails(t, 1, `no client "billing" in tenant "clinic"`, "", "client", "delete", "--tenant", "clinic", "--id", "billing")
}

// storedClientSecretHash reads a client straight from the SQLite store.
func storedClientSecretHash(t *testing.T, env testEnv, tenant, id string) []byte {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(env["SMARTAUTH_DATA_DIR"], "smartauth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := s.GetClient(context.Background(), tenant, id)
	if err != nil {
		t.Fatal(err)
	}
	return c.SecretHash
}

func TestUserAndPatientCommands(t *testing.T) {
	env := newEnv(t)
	env.ok(t, nil, "", "tenant", "create", "--id", "clinic", "--fhir-base-url", "https://fhir.example/r4")
	var u userJSON
	env.ok(t, &u, "a long passphrase\n", "user", "create", "--tenant", "clinic", "--email", "Dr.Who@Clinic.example",
		"--profile", "Practitioner/123", "--profile", "Patient/456=Self")
	if u.ID == "" || !u.HasPassword || len(u.Profiles) != 2 || u.Profiles[0].Label != "Practitioner" || u.Profiles[1].Label != "Self" {
		t.Fatalf("user: %+v", u)
	}
	env.fails(t, 1, "already exists", "another passphrase\n", "user", "create", "--tenant", "clinic", "--email", "dr.who@clinic.example", "--profile", "Practitioner/9")
	env.fails(t, 2, "reads the password from stdin", "", "user", "create", "--tenant", "clinic", "--email", "x@clinic.example", "--profile", "Practitioner/1")
	env.fails(t, 1, "at least 8 characters", "short\n", "user", "create", "--tenant", "clinic", "--email", "x@clinic.example", "--profile", "Practitioner/1")
	env.fails(t, 1, "profile", "a long passphrase\n", "user", "create", "--tenant", "clinic", "--email", "x@clinic.example", "--profile", "Observation/1")
	env.fails(t, 1, "not a plain email", "a long passphrase\n", "user", "create", "--tenant", "clinic", "--email", "not-an-email", "--profile", "Practitioner/1")
	env.fails(t, 2, "at least one --profile", "a long passphrase\n", "user", "create", "--tenant", "clinic", "--email", "x@clinic.example")

	dir := t.TempDir()
	good := filepath.Join(dir, "patients.json")
	os.WriteFile(good, []byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"p1","name":[{"family":"Ng"}]}},{"resource":{"resourceType":"Observation","id":"o1"}}]}`), 0o600)
	var res map[string]int
	env.ok(t, &res, "", "patient", "import", "--tenant", "clinic", "--file", good)
	if res["imported"] != 1 || res["skipped"] != 1 {
		t.Fatalf("import: %v", res)
	}
	env.ok(t, &res, `{"resourceType":"Patient","id":"p2"}`+"\n"+`{"resourceType":"Patient","id":"p3"}`, "patient", "import", "--tenant", "clinic")
	if res["imported"] != 2 {
		t.Fatalf("import from stdin: %v", res)
	}
	env.fails(t, 1, "resource 2", `{"resourceType":"Patient","id":"p4"}`+"\n"+`{"resourceType":"Patient","id":"bad/id"}`, "patient", "import", "--tenant", "clinic")
	env.fails(t, 1, "open patients file", "", "patient", "import", "--tenant", "clinic", "--file", filepath.Join(dir, "missing.json"))
}

func TestKeysRotateCommand(t *testing.T) {
	env := newEnv(t)
	var tn tenantJSON
	env.ok(t, &tn, "", "tenant", "create", "--id", "clinic", "--fhir-base-url", "https://fhir.example/r4")
	var ks []keyJSON
	env.ok(t, &ks, "", "keys", "rotate", "--tenant", "clinic", "--retire-after", "2h")
	active, retiring := 0, 0
	for _, k := range ks {
		switch k.Status {
		case "active":
			active++
		case "retiring":
			retiring++
			if k.RetiresAt == nil || time.Until(*k.RetiresAt) < 119*time.Minute {
				t.Fatalf("retiring key %s retires at %v, want in 2h", k.KID, k.RetiresAt)
			}
		}
	}
	if active != 2 || retiring != 2 {
		t.Fatalf("after rotation: %d active, %d retiring; want 2 and 2", active, retiring)
	}
	env.fails(t, 1, `no tenant "ghost"`, "", "keys", "rotate", "--tenant", "ghost")
	env.fails(t, 1, "must not be negative", "", "keys", "rotate", "--tenant", "clinic", "--retire-after", "-1h")
	env.fails(t, 1, "retirement window 1s is shorter than the access token lifetime, 1h0m0s", "", "keys", "rotate", "--tenant", "clinic", "--retire-after", "1s")
}

func TestWrongMasterKeyRefused(t *testing.T) {
	env := newEnv(t)
	env.ok(t, nil, "", "tenant", "create", "--id", "clinic", "--fhir-base-url", "https://fhir.example/r4")
	env["SMARTAUTH_MASTER_KEY"] = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	env.fails(t, 1, "the master key cannot open the stored signing keys", "", "tenant", "list")
}

func TestMigrateCommand(t *testing.T) {
	env := newEnv(t)
	var out map[string]any
	env.ok(t, &out, "", "migrate")
	if out["migrated"] != true || out["version"].(float64) < 1 {
		t.Fatalf("migrate: %v", out)
	}
}

// lockedBuffer lets the test read what a running server prints.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServe runs "smartauth serve" until the returned stop is called.
func startServe(t *testing.T, env testEnv) (base string, stdout *lockedBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout = &lockedBuffer{}
	var stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0"}, env.get, strings.NewReader(""), stdout, &stderr)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := listeningRE.FindStringSubmatch(stdout.String()); m != nil {
			base = "http://" + m[1]
			break
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("serve exited with %d before listening:\n%s", code, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve did not start:\n%s", stderr.String())
		}
	}
	return base, stdout, func() int {
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(30 * time.Second):
			t.Fatal("serve did not shut down")
			return -1
		}
	}
}

func TestServeDemo(t *testing.T) {
	env := newEnv(t)
	base, stdout, stop := startServe(t, env)
	iss := base + "/t/demo"
	demoApp := base + "/demo-app/?tenant=demo&iss=" + demoFHIRBase
	for _, want := range []string{iss + "/.well-known/smart-configuration", "FHIR gateway", iss + "/fhir", demoClinician, demoPatientPass, demoClientID, demoApp,
		base + "/admin/", demoOperator, demoOperatorPass} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("start-up output lacks %q:\n%s", want, stdout.String())
		}
	}
	for _, u := range []string{demoApp, base + "/admin/login"} {
		if resp, err := http.Get(u); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %v %v", u, resp, err)
		} else {
			resp.Body.Close()
		}
	}
	var smart, oidc map[string]any
	fetchJSON(t, iss+"/.well-known/smart-configuration", &smart)
	fetchJSON(t, iss+"/.well-known/openid-configuration", &oidc)
	if smart["issuer"] != iss || oidc["issuer"] != iss {
		t.Fatalf("issuers: %v / %v, want %s", smart["issuer"], oidc["issuer"], iss)
	}
	var set jose.JSONWebKeySet
	fetchJSON(t, smart["jwks_uri"].(string), &set)
	if len(set.Keys) != 2 {
		t.Fatalf("demo JWKS has %d keys", len(set.Keys))
	}
	if code := stop(); code != 0 {
		t.Fatalf("graceful shutdown exited %d", code)
	}
	keyFile := filepath.Join(env["SMARTAUTH_DATA_DIR"], "master.key")
	if info, err := os.Stat(keyFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("master key file: %v %v", info, err)
	}

	// A second start keeps the data: same keys, same patients, no duplicate seeding.
	base2, _, stop2 := startServe(t, env)
	var set2 jose.JSONWebKeySet
	fetchJSON(t, base2+"/t/demo/.well-known/jwks.json", &set2)
	if len(set2.Keys) != 2 || len(set2.Key(set.Keys[0].KeyID)) != 1 {
		t.Fatal("a restart changed the demo tenant's keys")
	}
	if code := stop2(); code != 0 {
		t.Fatalf("second shutdown exited %d", code)
	}
	code, out, errs := env.cli(t, "", "client", "list", "--tenant", "demo")
	if code != 0 || strings.Count(out, `"client_id"`) != 1 {
		t.Fatalf("demo clients after restart: %d %s %s", code, out, errs)
	}
	s, err := sqlite.Open(context.Background(), filepath.Join(env["SMARTAUTH_DATA_DIR"], "smartauth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ps, err := s.SearchPatients(context.Background(), "demo", storage.PatientQuery{})
	if err != nil || len(ps) != 8 {
		t.Fatalf("demo roster holds %d patients (%v), want 8", len(ps), err)
	}
	for _, email := range []string{demoClinician, demoPatientUser} {
		if _, err := s.GetUserByEmail(context.Background(), "demo", email); err != nil {
			t.Errorf("demo user %s: %v", email, err)
		}
	}
}

func TestServeOnPostgres(t *testing.T) {
	env := newEnv(t)
	env["DATABASE_URL"] = pgtest.URL(t)
	env["SMARTAUTH_MASTER_KEY"] = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32))
	const (
		adminStep  = "smartauth admin create --email "
		tenantStep = "smartauth tenant create --id "
	)
	// An empty database: the start-up output says how to set it up.
	base, stdout, stop := startServe(t, env)
	if out := stdout.String(); strings.Contains(out, "Demo tenant") {
		t.Fatal("the demo was seeded on PostgreSQL without being asked for")
	} else if !strings.Contains(out, "Nothing is set up yet") || !strings.Contains(out, adminStep) || !strings.Contains(out, tenantStep) ||
		!strings.Contains(out, base+"/admin/") || strings.Index(out, adminStep) > strings.Index(out, tenantStep) {
		t.Errorf("an empty server does not print the next steps:\n%s", out)
	}
	if code := stop(); code != 0 {
		t.Fatalf("shutdown exited %d", code)
	}
	// Each step done leaves it out; with both done, none is printed.
	env.ok(t, nil, "", "tenant", "create", "--id", "clinic", "--fhir-base-url", "https://fhir.example/r4")
	_, stdout, stop = startServe(t, env)
	if out := stdout.String(); !strings.Contains(out, "1. Create an operator") || !strings.Contains(out, adminStep) || strings.Contains(out, tenantStep) {
		t.Errorf("with a tenant, the next steps are not the operator's alone:\n%s", out)
	}
	if code := stop(); code != 0 {
		t.Fatalf("shutdown exited %d", code)
	}
	env.ok(t, nil, "a long operator passphrase\n", "admin", "create", "--email", "ops@example.org")
	env["SMARTAUTH_METRICS_ADDR"] = "127.0.0.1:0"
	base, stdout, stop = startServe(t, env)
	if out := stdout.String(); strings.Contains(out, "Nothing is set up yet") || strings.Contains(out, "smartauth admin create") {
		t.Errorf("a server set up still prints next steps:\n%s", out)
	}
	m := regexp.MustCompile(`Prometheus metrics at (http://\S+/metrics)`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("start-up output names no metrics address:\n%s", stdout.String())
	}
	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `smartauth_db_connections{pool="main",state="idle"}`) {
		t.Fatalf("GET %s: %d, without the pool's connections:\n%.2000s", m[1], resp.StatusCode, body)
	}
	if resp, err = http.Get(base + "/metrics"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /metrics on the public listener: %v %v, want 404", resp, err)
	}
	resp.Body.Close()
	var smart map[string]any
	fetchJSON(t, base+"/t/clinic/.well-known/smart-configuration", &smart)
	if smart["issuer"] != base+"/t/clinic" {
		t.Fatalf("issuer %v", smart["issuer"])
	}
	resp, err = http.Get(base + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz on PostgreSQL: %v %v", resp, err)
	}
	resp.Body.Close()
	if code := stop(); code != 0 {
		t.Fatalf("shutdown exited %d", code)
	}
}

func fetchJSON(t *testing.T, url string, into any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(bufio.NewReader(resp.Body))
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, into); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
