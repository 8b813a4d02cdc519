package main

import (
	"bufio"
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
}

// benchScenario makes one request; it returns an error for anything but success.
type benchScenario struct {
	name string
	do   func(c *http.Client) error
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
	fix, err := benchFixture(ctx, d)
	d.store.Close()
	if err != nil {
		return err
	}

	base, child, err := startChild(ctx, c, d.masterKey, stderr)
	if err != nil {
		return err
	}
	defer func() {
		_ = child.Process.Signal(syscall.SIGTERM)
		_ = child.Wait()
	}()
	iss := base + "/t/" + fix.tenant
	scenarios := benchScenarios(iss, fix)
	var results []benchResult
	for _, sc := range scenarios {
		for _, n := range conc {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			res := runScenario(ctx, sc, n, *duration)
			res.PeakRSSMiB = peakRSS(child.Process.Pid)
			results = append(results, res)
		}
	}
	peak := peakRSS(child.Process.Pid)
	if *asJSON {
		return printJSON(stdout, map[string]any{"results": results, "server_peak_rss_mib": peak, "database": storeKind(c)})
	}
	fmt.Fprintf(stdout, "smartauth bench: %s database, %s per run\n\n", storeKind(c), *duration)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tconcurrency\trequests/s\tp50 ms\tp99 ms\terrors\tpeak RSS MiB\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%.2f\t%d\t%.1f\t\n", r.Scenario, r.Concurrency, r.PerSecond, r.P50ms, r.P99ms, r.Errors, r.PeakRSSMiB)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\nserver peak resident memory: %.1f MiB\n", peak)
	return nil
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

func benchFixture(ctx context.Context, d *deps) (*fixture, error) {
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	f := &fixture{tenant: "bench-" + hex.EncodeToString(suffix), fhirBase: "https://fhir.bench.invalid/r4",
		email: "bench@bench.invalid", password: rand.Text()}
	who := manage.Actor{ID: "bench"}
	if _, err := d.manage.CreateTenant(ctx, manage.TenantInput{ID: f.tenant, Name: "Benchmark", FHIRBaseURLs: []string{f.fhirBase}}, who); err != nil {
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

// startChild runs the server binary on an ephemeral loopback port.
func startChild(ctx context.Context, c config, masterKey []byte, stderr io.Writer) (string, *exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("find own binary: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, "serve", "--addr", "127.0.0.1:0", "--demo=false", "--log-level", "error")
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

func benchScenarios(iss string, f *fixture) []benchScenario {
	tokenURL := iss + "/token"
	ccForm := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}.Encode()
	basic := func(c *http.Client, endpoint, body string) (map[string]any, error) {
		req, _ := http.NewRequest("POST", endpoint, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(f.symID), url.QueryEscape(f.secret))
		return benchDo(c, req)
	}
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: jose.JSONWebKey{Key: f.asymKey, KeyID: "bench"}}, nil)
	var once sync.Once
	var introspected string
	return []benchScenario{
		{"client_credentials client_secret_basic", func(c *http.Client) error {
			_, err := basic(c, tokenURL, ccForm)
			return err
		}},
		{"client_credentials private_key_jwt ES384", func(c *http.Client) error {
			now := time.Now()
			a, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: f.asymID, Subject: f.asymID, Audience: jwt.Audience{tokenURL},
				ID: rand.Text(), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute))}).Serialize()
			if err != nil {
				return err
			}
			form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}
			req, _ := http.NewRequest("POST", tokenURL, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			_, err = benchDo(c, req)
			return err
		}},
		{"introspection", func(c *http.Client) error {
			var err error
			once.Do(func() {
				var tok map[string]any
				if tok, err = basic(c, tokenURL, ccForm); err == nil {
					introspected, _ = tok["access_token"].(string)
				}
			})
			if err != nil || introspected == "" {
				return fmt.Errorf("no token to introspect: %v", err)
			}
			out, err := basic(c, iss+"/introspect", url.Values{"token": {introspected}}.Encode())
			if err == nil && out["active"] != true {
				err = errors.New("token introspected inactive")
			}
			return err
		}},
		// Last: starting chains signs people in, and argon2id needs memory.
		{"refresh_token rotation", refreshScenario(iss, f)},
	}
}

// refreshScenario keeps a pool of refresh token chains: a request takes a
// chain's current token, rotates it, and puts the new one back. Chains are
// started through the real sign-in and consent pages.
func refreshScenario(iss string, f *fixture) func(c *http.Client) error {
	pool := make(chan string, 1024)
	return func(c *http.Client) error {
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
		req, _ := http.NewRequest("POST", iss+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		out, err := benchDo(c, req)
		if err != nil {
			return err
		}
		next, _ := out["refresh_token"].(string)
		if next == "" {
			return errors.New("refresh gave no new refresh token")
		}
		select {
		case pool <- next:
		default:
		}
		return nil
	}
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)"`)

// signInForRefreshToken runs the authorization code flow as a browser would.
func signInForRefreshToken(shared *http.Client, iss string, f *fixture) (string, error) {
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: shared.Transport, Jar: jar, Timeout: shared.Timeout,
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
	req, _ := http.NewRequest("POST", iss+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	out, err := benchDo(shared, req)
	if err != nil {
		return "", err
	}
	rt, _ := out["refresh_token"].(string)
	if rt == "" {
		return "", errors.New("code exchange gave no refresh token")
	}
	return rt, nil
}

func benchDo(c *http.Client, req *http.Request) (map[string]any, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body) // all of it, so the connection is reused
	if err != nil {
		return nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("status %d: %v", resp.StatusCode, out["error"])
	}
	return out, nil
}

// runScenario runs n clients in a loop for d after a short warm-up.
func runScenario(ctx context.Context, sc benchScenario, n int, d time.Duration) benchResult {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}}
	defer client.CloseIdleConnections()
	// Warm up with every client, so connections, caches and (for refresh)
	// each client's token chain exist before anything is measured.
	warm := time.Now().Add(min(max(d/5, 2*time.Second), d))
	var wwg sync.WaitGroup
	for range n {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for time.Now().Before(warm) && ctx.Err() == nil {
				_ = sc.do(client)
			}
		}()
	}
	wwg.Wait()
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for time.Now().Before(end) && ctx.Err() == nil {
				t0 := time.Now()
				if err := sc.do(client); err != nil {
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
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	return benchResult{Scenario: sc.name, Concurrency: n, Requests: len(lat), Errors: errs,
		PerSecond: float64(len(lat)) / elapsed.Seconds(), P50ms: pct(0.50), P99ms: pct(0.99)}
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
