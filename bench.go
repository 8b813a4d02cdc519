package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/storage"
)

// listeningRE finds the address in serve's first line of output.
var listeningRE = regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)

// benchResult is one scenario at one concurrency.
type benchResult struct {
	Scenario    string  `json:"scenario"`
	Concurrency int     `json:"concurrency"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	PerSecond   float64 `json:"per_second"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	// PeakRSSMiB is the server's peak resident memory so far; it only grows,
	// so scenarios run in order of expected memory use.
	PeakRSSMiB float64 `json:"server_peak_rss_mib"`
	// ServerCPUus and LoadCPUus are the CPU time the server and this load
	// generator spent per successful request. Unlike throughput they hardly
	// depend on what else the machine is doing, so they show what a change
	// costs or saves on a busy machine.
	ServerCPUus float64 `json:"server_cpu_us_per_request"`
	LoadCPUus   float64 `json:"load_cpu_us_per_request"`
	// DatabaseCPUus is the same for the PostgreSQL backends serving the
	// benchmark's database, when they run on this machine; zero otherwise.
	DatabaseCPUus float64 `json:"database_cpu_us_per_request"`
}

// benchScenario makes one request; it returns an error for anything but success.
type benchScenario struct {
	name string
	do   func(c *benchClient) error
	// addr, when set, is where the clients connect instead of the server:
	// the baseline that a gateway scenario is compared with.
	addr string
}

// bench starts "smartauth serve" as a child process on loopback, drives it
// with concurrent clients and reports throughput, latency percentiles and
// the server's peak resident memory. Each request loop is bounded in time.
func bench(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := storeFlags(fs, env)
	duration := fs.Duration("duration", 5*time.Second, "how long each scenario runs at each concurrency")
	levels := fs.String("concurrency", "8,64", "comma-separated numbers of concurrent clients")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	only := fs.String("scenarios", "", "comma-separated scenario names to run (a name matches a scenario it begins); all when empty")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var conc []int
	for _, f := range strings.Split(*levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1024 {
			return usageError{fmt.Sprintf("--concurrency %q: want numbers from 1 to 1024", *levels)}
		}
		conc = append(conc, n)
	}
	if *duration <= 0 || *duration > 5*time.Minute {
		return usageError{"--duration must be between 0 and 5m"}
	}
	c, err := load()
	if err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	d, err := open(ctx, c, stderr)
	if err != nil {
		return err
	}
	up, err := startBenchUpstream()
	if err != nil {
		return err
	}
	defer up.Close()
	// The gateway's FHIR base is part of the tenant's settings, so the
	// server's address is chosen before the tenant is made.
	addr, err := freeLoopbackAddr()
	if err != nil {
		return err
	}
	fix, err := benchFixture(ctx, d, "http://"+addr, "http://"+up.Addr().String()+"/fhir")
	d.store.Close()
	if err != nil {
		return err
	}

	base, child, err := startChild(ctx, c, d.masterKey, addr, stderr)
	if err != nil {
		return err
	}
	defer func() {
		_ = child.Process.Signal(syscall.SIGTERM)
		_ = child.Wait()
	}()
	iss := base + "/t/" + fix.tenant
	scenarios := selectScenarios(benchScenarios(iss, fix, up.Addr().String()), *only)
	if len(scenarios) == 0 {
		return usageError{fmt.Sprintf("--scenarios %q matches no scenario", *only)}
	}
	var results []benchResult
	for _, sc := range scenarios {
		for _, n := range conc {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			addr := strings.TrimPrefix(base, "http://")
			if sc.addr != "" {
				addr = sc.addr
			}
			res := runScenario(ctx, sc, addr, n, *duration, child.Process.Pid, databaseName(c))
			res.PeakRSSMiB = peakRSS(child.Process.Pid)
			results = append(results, res)
		}
	}
	peak := peakRSS(child.Process.Pid)
	gw := gatewayCosts(results)
	if *asJSON {
		return printJSON(stdout, map[string]any{"results": results, "server_peak_rss_mib": peak, "database": storeKind(c), "gateway": gw})
	}
	fmt.Fprintf(stdout, "smartauth bench: %s database, %s per run\n\n", storeKind(c), *duration)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tconcurrency\trequests/s\tp50 ms\tp99 ms\terrors\tpeak RSS MiB\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%.2f\t%d\t%.1f\t\n", r.Scenario, r.Concurrency, r.PerSecond, r.P50ms, r.P99ms, r.Errors, r.PeakRSSMiB)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\nserver peak resident memory: %.1f MiB\n", peak)
	for _, g := range gw {
		fmt.Fprintf(stdout, "gateway at concurrency %d: %.0f µs of server CPU per proxied read, %.2f ms added to the p50 latency of reading the upstream directly\n",
			g.Concurrency, g.ServerCPUus, g.AddedP50ms)
	}
	return nil
}

// Names of the gateway scenarios; gatewayCosts pairs them up.
const (
	upstreamScenario = "fhir read upstream directly"
	gatewayScenario  = "fhir read through the gateway"
)

// gatewayCost is what the gateway adds to a FHIR read at one concurrency.
type gatewayCost struct {
	Concurrency int `json:"concurrency"`
	// ServerCPUus is the server's CPU per proxied read: the upstream runs in
	// the load generator, so it is the gateway's own work (token check,
	// decision, audit, forwarding) and nothing else.
	ServerCPUus float64 `json:"server_cpu_us_per_request"`
	// AddedP50ms is the gateway's p50 latency minus the upstream's, read directly.
	AddedP50ms float64 `json:"added_p50_ms"`
}

// gatewayCosts compares the gateway scenario with its baseline at each concurrency both ran at.
func gatewayCosts(results []benchResult) []gatewayCost {
	direct := map[int]benchResult{}
	for _, r := range results {
		if r.Scenario == upstreamScenario {
			direct[r.Concurrency] = r
		}
	}
	var out []gatewayCost
	for _, r := range results {
		if d, ok := direct[r.Concurrency]; ok && r.Scenario == gatewayScenario {
			out = append(out, gatewayCost{Concurrency: r.Concurrency, ServerCPUus: r.ServerCPUus, AddedP50ms: r.P50ms - d.P50ms})
		}
	}
	return out
}

// benchObservation is what the benchmark's upstream answers: a typical
// vital-signs Observation of about a kilobyte.
const benchObservation = `{"resourceType":"Observation","id":"bench-1","meta":{"versionId":"1","lastUpdated":"2026-01-01T00:00:00Z"},` +
	`"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs","display":"Vital Signs"}]}],` +
	`"code":{"coding":[{"system":"http://loinc.org","code":"85354-9","display":"Blood pressure panel with all children optional"}],"text":"Blood pressure"},` +
	`"subject":{"reference":"Patient/bench-patient"},"effectiveDateTime":"2026-01-01T09:30:00Z",` +
	`"component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6","display":"Systolic blood pressure"}]},"valueQuantity":{"value":118,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}},` +
	`{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4","display":"Diastolic blood pressure"}]},"valueQuantity":{"value":76,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]}`

// benchUpstreamKey is the static credential the gateway sends the benchmark's upstream.
const benchUpstreamKey = "bench-upstream-key"

// startBenchUpstream serves benchObservation on loopback, as fast as a FHIR
// server could, so the gateway scenario measures the gateway. It answers
// only requests that carry the gateway's credential.
func startBenchUpstream() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start the benchmark's FHIR upstream: %w", err)
	}
	body := []byte(benchObservation)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fhir/Observation/bench-1", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Api-Key") != benchUpstreamKey {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = w.Write(body)
	})
	go func() { _ = http.Serve(ln, mux) }()
	return ln, nil
}

// freeLoopbackAddr finds a loopback port nothing listens on.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// selectScenarios keeps the scenarios whose names begin with one of the
// comma-separated prefixes in only, so one endpoint can be measured alone.
func selectScenarios(all []benchScenario, only string) []benchScenario {
	if strings.TrimSpace(only) == "" {
		return all
	}
	var out []benchScenario
	for _, sc := range all {
		for _, p := range strings.Split(only, ",") {
			if p = strings.TrimSpace(p); p != "" && strings.HasPrefix(sc.name, p) {
				out = append(out, sc)
				break
			}
		}
	}
	return out
}

func storeKind(c config) string {
	if c.isPostgres() {
		return "PostgreSQL"
	}
	return "SQLite"
}

// fixture is what the scenarios need: a fresh tenant and its clients.
type fixture struct {
	tenant   string
	symID    string
	secret   string
	asymID   string
	asymKey  *ecdsa.PrivateKey
	appID    string
	email    string
	password string
	fhirBase string
}

const benchRedirect = "http://127.0.0.1:9/callback"

func benchFixture(ctx context.Context, d *deps, base, upstreamURL string) (*fixture, error) {
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	f := &fixture{tenant: "bench-" + hex.EncodeToString(suffix), fhirBase: "https://fhir.bench.invalid/r4",
		email: "bench@bench.invalid", password: rand.Text()}
	who := manage.Actor{ID: "bench"}
	gatewayBase := base + "/t/" + f.tenant + "/fhir"
	// The benchmark hammers the token and introspection endpoints from one
	// address with one client, measuring the server, not its rate limits.
	noLimits := storage.TenantPolicy{RateLimits: storage.RateLimits{ClientPerMinute: -1, AddressPerMinute: -1}}
	if _, err := d.manage.CreateTenant(ctx, manage.TenantInput{ID: f.tenant, Name: "Benchmark", FHIRBaseURLs: []string{f.fhirBase, gatewayBase},
		Policy: noLimits}, who); err != nil {
		return nil, err
	}
	if _, err := d.manage.SetGateway(ctx, f.tenant, manage.GatewayInput{UpstreamURL: upstreamURL, UpstreamAuth: storage.GatewayAuthHeader,
		HeaderName: "X-Api-Key", HeaderValue: benchUpstreamKey}, who); err != nil {
		return nil, err
	}
	sym, secret, err := d.manage.CreateClient(ctx, manage.ClientInput{TenantID: f.tenant, Name: "bench symmetric",
		Type: storage.ClientConfidentialSymmetric, Scopes: []string{"system/*.rs"}, GrantTypes: []string{"client_credentials"}}, who)
	if err != nil {
		return nil, err
	}
	f.symID, f.secret = sym.ID, secret
	if f.asymKey, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		return nil, err
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &f.asymKey.PublicKey, KeyID: "bench", Algorithm: "ES384", Use: "sig"}}})
	asym, _, err := d.manage.CreateClient(ctx, manage.ClientInput{TenantID: f.tenant, Name: "bench asymmetric",
		Type: storage.ClientConfidentialAsymmetric, JWKS: jwks, Scopes: []string{"system/*.rs"}, GrantTypes: []string{"client_credentials"}}, who)
	if err != nil {
		return nil, err
	}
	f.asymID = asym.ID
	app, _, err := d.manage.CreateClient(ctx, manage.ClientInput{TenantID: f.tenant, Name: "bench app", Type: storage.ClientPublic,
		RedirectURIs: []string{benchRedirect}, Scopes: []string{"offline_access", "patient/*.rs"}}, who)
	if err != nil {
		return nil, err
	}
	f.appID = app.ID
	if _, err := d.manage.CreateUser(ctx, manage.UserInput{TenantID: f.tenant, Email: f.email, Password: f.password,
		Profiles: []storage.Profile{{FHIRUser: "Practitioner/bench"}}}, who); err != nil {
		return nil, err
	}
	return f, nil
}

// startChild runs the server binary on addr, a loopback address. Its
// tenants' FHIR servers may be on loopback: the gateway's upstream is.
func startChild(ctx context.Context, c config, masterKey []byte, addr string, stderr io.Writer) (string, *exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("find own binary: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, "serve", "--addr", addr, "--demo=false", "--log-level", "error", "--fhir-private-networks")
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+c.databaseURL,
		"SMARTAUTH_DATA_DIR="+c.dataDir,
		"SMARTAUTH_MASTER_KEY="+base64.StdEncoding.EncodeToString(masterKey),
		"SMARTAUTH_MASTER_KEY_FILE=",
		"SMARTAUTH_BASE_URL=",
	)
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start server: %w", err)
	}
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if m := listeningRE.FindStringSubmatch(lines.Text()); m != nil {
			go io.Copy(io.Discard, out)
			return "http://" + m[1], cmd, nil
		}
	}
	_ = cmd.Wait()
	return "", nil, errors.New("the server exited before listening")
}

func benchScenarios(iss string, f *fixture, upstreamAddr string) []benchScenario {
	tokenPath := tenantPath(iss) + "/token"
	introspectPath := tenantPath(iss) + "/introspect"
	ccForm := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}.Encode()
	basicAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(f.symID)+":"+url.QueryEscape(f.secret)))
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: jose.JSONWebKey{Key: f.asymKey, KeyID: "bench"}}, nil)
	var once, gatewayOnce sync.Once
	var introspectBody, gatewayToken string
	return []benchScenario{
		{name: "client_credentials client_secret_basic", do: func(c *benchClient) error {
			out, err := c.post(tokenPath, basicAuth, ccForm)
			if err == nil && out.AccessToken == "" {
				err = errors.New("no access token")
			}
			return err
		}},
		{name: "client_credentials private_key_jwt ES384", do: func(c *benchClient) error {
			now := time.Now()
			a, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: f.asymID, Subject: f.asymID, Audience: jwt.Audience{iss + "/token"},
				ID: rand.Text(), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute))}).Serialize()
			if err != nil {
				return err
			}
			form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}
			out, err := c.post(tokenPath, "", form.Encode())
			if err == nil && out.AccessToken == "" {
				err = errors.New("no access token")
			}
			return err
		}},
		{name: "introspection", do: func(c *benchClient) error {
			var err error
			once.Do(func() {
				var tok benchResponse
				if tok, err = c.post(tokenPath, basicAuth, ccForm); err == nil && tok.AccessToken != "" {
					introspectBody = url.Values{"token": {tok.AccessToken}}.Encode()
				}
			})
			if err != nil || introspectBody == "" {
				return fmt.Errorf("no token to introspect: %v", err)
			}
			out, err := c.post(introspectPath, basicAuth, introspectBody)
			if err == nil && !out.Active {
				err = errors.New("token introspected inactive")
			}
			return err
		}},
		// A FHIR read, first from the upstream directly and then through the
		// gateway with a backend service's token: the difference is the gateway's.
		{name: upstreamScenario, addr: upstreamAddr, do: func(c *benchClient) error {
			_, err := c.get("/fhir/Observation/bench-1", "", "X-Api-Key: "+benchUpstreamKey)
			return err
		}},
		{name: gatewayScenario, do: func(c *benchClient) error {
			var err error
			gatewayOnce.Do(func() {
				var tok benchResponse
				if tok, err = c.post(tokenPath, basicAuth, ccForm); err == nil {
					gatewayToken = tok.AccessToken
				}
			})
			if err != nil || gatewayToken == "" {
				return fmt.Errorf("no token for the gateway: %v", err)
			}
			_, err = c.get(tenantPath(iss)+"/fhir/Observation/bench-1", "Bearer "+gatewayToken, "")
			return err
		}},
		// Last: starting chains signs people in, and argon2id needs memory.
		{name: "refresh_token rotation", do: refreshScenario(iss, f)},
	}
}

// tenantPath is the path part of an issuer URL.
func tenantPath(iss string) string {
	u, err := url.Parse(iss)
	if err != nil {
		return ""
	}
	return u.Path
}

// refreshScenario keeps a pool of refresh token chains: a request takes a
// chain's current token, rotates it, and puts the new one back. Chains are
// started through the real sign-in and consent pages.
func refreshScenario(iss string, f *fixture) func(c *benchClient) error {
	pool := make(chan string, 1024)
	return func(c *benchClient) error {
		var rt string
		select {
		case rt = <-pool:
		default:
			var err error
			if rt, err = signInForRefreshToken(c, iss, f); err != nil {
				return err
			}
		}
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {f.appID}}
		out, err := c.post(tenantPath(iss)+"/token", "", form.Encode())
		if err != nil {
			return err
		}
		if out.RefreshToken == "" {
			return errors.New("refresh gave no new refresh token")
		}
		select {
		case pool <- out.RefreshToken:
		default:
		}
		return nil
	}
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)"`)

// signInForRefreshToken runs the authorization code flow as a browser would.
func signInForRefreshToken(c *benchClient, iss string, f *fixture) (string, error) {
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: c.browser, Jar: jar, Timeout: benchTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	verifier := oauth2.GenerateVerifier()
	q := url.Values{"response_type": {"code"}, "client_id": {f.appID}, "redirect_uri": {benchRedirect},
		"scope": {"offline_access patient/*.rs"}, "state": {rand.Text()}, "aud": {f.fhirBase},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}}
	page := func(resp *http.Response, err error) (url.Values, *http.Response, error) {
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, nil, err
		}
		fields := url.Values{}
		for _, m := range hiddenInput.FindAllStringSubmatch(string(b), -1) {
			fields.Set(m[1], html.UnescapeString(m[2]))
		}
		return fields, resp, nil
	}
	login, _, err := page(browser.Get(iss + "/authorize?" + q.Encode()))
	if err != nil {
		return "", err
	}
	login.Set("email", f.email)
	login.Set("password", f.password)
	consent, _, err := page(browser.PostForm(iss+"/login", login))
	if err != nil {
		return "", err
	}
	consent.Set("decision", "allow")
	consent["scope"] = []string{"offline_access", "patient/*.rs"}
	_, resp, err := page(browser.PostForm(iss+"/consent", consent))
	if err != nil {
		return "", err
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		return "", fmt.Errorf("sign-in gave no code (status %d)", resp.StatusCode)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {benchRedirect},
		"client_id": {f.appID}, "code_verifier": {verifier}}
	out, err := c.post(tenantPath(iss)+"/token", "", form.Encode())
	if err != nil {
		return "", err
	}
	if out.RefreshToken == "" {
		return "", errors.New("code exchange gave no refresh token")
	}
	return out.RefreshToken, nil
}

// benchTimeout bounds one request of the load generator.
const benchTimeout = 10 * time.Second

// benchClient is one simulated API client with a keep-alive connection of
// its own. The load generator shares the machine with the server, so it
// writes each request with one system call and reads the answer on the same
// goroutine; net/http's transport would add goroutine hand-offs and header
// maps per request, CPU taken from the server being measured. Responses are
// still parsed by net/http, so they must be valid HTTP/1.1.
type benchClient struct {
	addr string // host:port of the server
	// browser carries the sign-in pages, which need cookies and redirects.
	browser *http.Transport
	conn    net.Conn
	r       *bufio.Reader
	buf     []byte
	body    bytes.Buffer
}

// benchResponse holds the fields the scenarios check.
type benchResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	Active       bool   `json:"active"`
	Error        string `json:"error"`
}

// post sends a form to path, with an Authorization header unless
// authorization is empty, and decodes a 200 answer; any other status is an error.
func (c *benchClient) post(path, authorization, form string) (benchResponse, error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, benchTimeout)
		if err != nil {
			return benchResponse{}, err
		}
		c.conn, c.r = conn, bufio.NewReader(conn)
	}
	b := append(c.buf[:0], "POST "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.addr...)
	b = append(b, "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(form)), 10)
	if authorization != "" {
		b = append(b, "\r\nAuthorization: "...)
		b = append(b, authorization...)
	}
	b = append(b, "\r\n\r\n"...)
	b = append(b, form...)
	c.buf = b
	out, keep, err := c.roundTrip(b)
	if !keep || err != nil {
		c.close()
	}
	return out, err
}

// get sends a GET to path, with an Authorization header unless
// authorization is empty and one extra header line unless extra is empty;
// any status but 200 is an error.
func (c *benchClient) get(path, authorization, extra string) (benchResponse, error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, benchTimeout)
		if err != nil {
			return benchResponse{}, err
		}
		c.conn, c.r = conn, bufio.NewReader(conn)
	}
	b := append(c.buf[:0], "GET "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.addr...)
	b = append(b, "\r\nAccept: application/fhir+json"...)
	if authorization != "" {
		b = append(b, "\r\nAuthorization: "...)
		b = append(b, authorization...)
	}
	if extra != "" {
		b = append(b, "\r\n"...)
		b = append(b, extra...)
	}
	b = append(b, "\r\n\r\n"...)
	c.buf = b
	out, keep, err := c.roundTrip(b)
	if !keep || err != nil {
		c.close()
	}
	return out, err
}

func (c *benchClient) roundTrip(req []byte) (benchResponse, bool, error) {
	if err := c.conn.SetDeadline(time.Now().Add(benchTimeout)); err != nil {
		return benchResponse{}, false, err
	}
	if _, err := c.conn.Write(req); err != nil {
		return benchResponse{}, false, err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return benchResponse{}, false, err
	}
	c.body.Reset()
	_, err = c.body.ReadFrom(resp.Body) // all of it, so the connection can be reused
	resp.Body.Close()
	if err != nil {
		return benchResponse{}, false, err
	}
	var out benchResponse
	if err := json.Unmarshal(c.body.Bytes(), &out); err != nil {
		return benchResponse{}, !resp.Close, fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return benchResponse{}, !resp.Close, fmt.Errorf("status %d: %s", resp.StatusCode, out.Error)
	}
	return out, !resp.Close, nil
}

func (c *benchClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.r = nil, nil
	}
}

// runScenario runs n clients in a loop for d after a short warm-up.
func runScenario(ctx context.Context, sc benchScenario, addr string, n int, d time.Duration, serverPID int, database string) benchResult {
	browser := &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}
	defer browser.CloseIdleConnections()
	clients := make([]*benchClient, n)
	for i := range clients {
		clients[i] = &benchClient{addr: addr, browser: browser}
		defer clients[i].close()
	}
	// Warm up with every client, so connections, caches and (for refresh)
	// each client's token chain exist before anything is measured.
	warm := time.Now().Add(min(max(d/5, 2*time.Second), d))
	var wwg sync.WaitGroup
	for _, c := range clients {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for time.Now().Before(warm) && ctx.Err() == nil {
				_ = sc.do(c)
			}
		}()
	}
	wwg.Wait()
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	serverCPU0, loadCPU0, dbCPU0 := processCPU(serverPID), processCPU(os.Getpid()), databaseCPU(database)
	start := time.Now()
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for time.Now().Before(end) && ctx.Err() == nil {
				t0 := time.Now()
				if err := sc.do(c); err != nil {
					bad++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	serverCPU, loadCPU := processCPU(serverPID)-serverCPU0, processCPU(os.Getpid())-loadCPU0
	dbCPU := databaseCPU(database) - dbCPU0
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	perRequest := func(cpu time.Duration) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(cpu.Microseconds()) / float64(len(lat))
	}
	return benchResult{Scenario: sc.name, Concurrency: n, Requests: len(lat), Errors: errs,
		PerSecond: float64(len(lat)) / elapsed.Seconds(), P50ms: pct(0.50), P99ms: pct(0.99),
		ServerCPUus: perRequest(serverCPU), LoadCPUus: perRequest(loadCPU), DatabaseCPUus: perRequest(dbCPU)}
}

// databaseName is the PostgreSQL database the configuration names, or "".
func databaseName(c config) string {
	if !c.isPostgres() {
		return ""
	}
	u, err := url.Parse(c.databaseURL)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}

// databaseCPU adds up the CPU time of the local PostgreSQL backend
// processes connected to database, found by the process title PostgreSQL
// gives them ("postgres: user database host state"). The pool keeps its
// connections for the whole run, so the same processes are counted before
// and after a scenario.
func databaseCPU(database string) time.Duration {
	if database == "" {
		return 0
	}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var total time.Duration
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		title, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.HasPrefix(title, []byte("postgres: ")) || !bytes.Contains(title, []byte(" "+database+" ")) {
			continue
		}
		total += processCPU(pid)
	}
	return total
}

// processCPU reads the user and system CPU time a process has used so far
// from /proc; zero where that is not available.
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields 14 and 15 (utime, stime) follow the parenthesised command
	// name, which may itself hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	// The kernel counts in clock ticks of 1/100 s on every Linux platform Go supports.
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// peakRSS reads a process's peak resident set size in MiB from /proc.
func peakRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:")), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
