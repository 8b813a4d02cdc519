package server_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smartauth/smartauth/server"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/postgres"
	"github.com/smartauth/smartauth/storage/postgres/pgtest"
)

// answer is one HTTP response, read whole.
type answer struct {
	status int
	header http.Header
	body   string
}

// object decodes a JSON answer.
func (a answer) object(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(a.body), &m); err != nil {
		t.Fatalf("answer %d is not JSON: %s", a.status, a.body)
	}
	return m
}

// send makes a request with an optional form body and Basic or Bearer
// credentials, and reads the answer without following redirects.
func send(t *testing.T, method, u string, form url.Values, auth func(*http.Request)) answer {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if auth != nil {
		auth(req)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func basic(id, secret string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret)) }
}

func bearer(token string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

// logLinesOf returns the server's log lines written under one request id.
func logLinesOf(t *testing.T, srv *servertest.Server, requestID string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(srv.Logs()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %s", sc.Text())
		}
		if line["request_id"] == requestID {
			out = append(out, line)
		}
	}
	return out
}

// logLine returns the one line with message msg under a request id.
func logLine(t *testing.T, srv *servertest.Server, requestID, msg string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, l := range logLinesOf(t, srv, requestID) {
		if l["msg"] == msg {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("request %s: %d log lines %q, want 1; its lines: %v", requestID, len(found), msg, logLinesOf(t, srv, requestID))
	}
	return found[0]
}

// breakableStore is a store and SQL that makes its database refuse to
// change any grant record, and SQL that lets it again: a real database
// failure on the write that revocation makes, while reads still work.
type breakableStore struct {
	name         string
	store        storage.Storage
	refuseWrites func(t *testing.T)
	allowWrites  func(t *testing.T)
}

const refusal = "grant records are read-only in this test"

// breakableStores opens SQLite, and PostgreSQL when configured.
func breakableStores(t *testing.T) []breakableStore {
	t.Helper()
	ctx := context.Background()
	lite, path := servertest.OpenSQLiteFile(t)
	liteExec := func(t *testing.T, stmt string) {
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	out := []breakableStore{{name: "sqlite", store: lite,
		refuseWrites: func(t *testing.T) {
			liteExec(t, `CREATE TRIGGER refuse_token_update BEFORE UPDATE ON tokens BEGIN SELECT RAISE(ABORT, '`+refusal+`'); END`)
		},
		allowWrites: func(t *testing.T) { liteExec(t, `DROP TRIGGER refuse_token_update`) },
	}}
	if !hasPostgres() {
		return out
	}
	dbURL := pgtest.URL(t)
	pg, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	if _, err := pg.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	pgExec := func(t *testing.T, stmts ...string) {
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		for _, stmt := range stmts {
			if _, err := conn.Exec(ctx, stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
	}
	return append(out, breakableStore{name: "postgres", store: pg,
		refuseWrites: func(t *testing.T) {
			pgExec(t, `CREATE FUNCTION refuse_token_update() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN RAISE EXCEPTION '`+refusal+`'; END $$`,
				`CREATE TRIGGER refuse_token_update BEFORE UPDATE ON tokens FOR EACH ROW EXECUTE FUNCTION refuse_token_update()`)
		},
		allowWrites: func(t *testing.T) { pgExec(t, `DROP TRIGGER refuse_token_update ON tokens`) },
	})
}

// TestFailedRevocationIsNotSuccess: when the database refuses the write
// that revokes a token, the client is told the token may still be active
// and to try again, instead of 200; the failure is logged with its cause
// and audited. Once the database accepts writes, revoking either token of
// a grant revokes the grant, and a token of another client is left alone.
func TestFailedRevocationIsNotSuccess(t *testing.T) {
	for _, b := range breakableStores(t) {
		t.Run(b.name, func(t *testing.T) {
			srv := servertest.Start(t, b.store)
			e := authzSetup(t, srv)
			id, secret := backendClient(t, srv, "clinic", storage.ClientConfidentialSymmetric, nil)
			_, tok := postForm(t, tokenEndpoint(srv, "clinic"), clientCredentials, id, secret)
			backendAccess, _ := tok["access_token"].(string)
			verifier := "revocation-test-verifier-0123456789-0123456789"
			_, grant := e.redeem(t, e.code(t, verifier), verifier)
			userAccess, _ := grant["access_token"].(string)
			refresh, _ := grant["refresh_token"].(string)
			if backendAccess == "" || userAccess == "" || refresh == "" {
				t.Fatalf("tokens missing: %v %v", tok, grant)
			}
			revoke, introspect := srv.Issuer("clinic")+"/revoke", srv.Issuer("clinic")+"/introspect"
			active := func(token string) any {
				_, body := postForm(t, introspect, url.Values{"token": {token}}, id, secret)
				return body["active"]
			}
			byBackend := func(token string) answer {
				return send(t, "POST", revoke, url.Values{"token": {token}}, basic(id, secret))
			}
			byApp := func(token string) answer {
				return send(t, "POST", revoke, url.Values{"token": {token}, "client_id": {authzClientID}}, nil)
			}

			b.refuseWrites(t)
			for _, tc := range []struct {
				name   string
				revoke func(string) answer
				token  string
				client string
				grant  []string // the tokens that must still be active
			}{
				{"backend access token", byBackend, backendAccess, id, []string{backendAccess}},
				{"app refresh token", byApp, refresh, authzClientID, []string{refresh, userAccess}},
			} {
				a := tc.revoke(tc.token)
				body := a.object(t)
				if a.status != http.StatusServiceUnavailable || body["error"] != "temporarily_unavailable" || a.header.Get("Retry-After") == "" {
					t.Fatalf("%s, revocation refused by the database: %d %v, Retry-After %q; want 503 temporarily_unavailable with Retry-After",
						tc.name, a.status, body, a.header.Get("Retry-After"))
				}
				if desc, _ := body["error_description"].(string); !strings.Contains(desc, "may still be active") {
					t.Errorf("%s: the client is not told the token may still be active: %q", tc.name, desc)
				}
				for _, token := range tc.grant {
					if active(token) != true {
						t.Fatalf("%s: a token is inactive although the revocation failed: the test broke nothing", tc.name)
					}
				}
				line := logLine(t, srv, a.header.Get("X-Request-Id"), "request failed: temporarily unavailable")
				if cause, _ := line["err"].(string); line["level"] != "WARN" || !strings.Contains(cause, refusal) || line["client"] != tc.client {
					t.Errorf("%s: the failed revocation's log line lacks its cause or client: %v", tc.name, line)
				}
			}
			events, err := srv.Store.ListAudit(context.Background(), "clinic", storage.AuditFilter{Type: "token.revoke"})
			if err != nil || len(events) != 2 {
				t.Fatalf("audit of the failed revocations: %+v %v", events, err)
			}
			for _, ev := range events {
				if ev.Outcome != "failure" || ev.Details["error"] != "temporarily_unavailable" || (ev.ClientID != id && ev.ClientID != authzClientID) {
					t.Errorf("audit of a failed revocation: %+v", ev)
				}
			}

			b.allowWrites(t)
			// RFC 7009 §2.1: a client may revoke only its own tokens; the
			// answer is still 200 (§2.2), but nothing is revoked.
			if a := byBackend(refresh); a.status != http.StatusOK || active(refresh) != true {
				t.Fatalf("another client's refresh token: %d %s, active %v; want 200 and still active", a.status, a.body, active(refresh))
			}
			for _, tc := range []struct {
				name   string
				revoke func(string) answer
				token  string
				grant  []string // the tokens that must now be inactive
			}{
				{"backend access token", byBackend, backendAccess, []string{backendAccess}},
				{"app refresh token", byApp, refresh, []string{refresh, userAccess}},
			} {
				if a := tc.revoke(tc.token); a.status != http.StatusOK {
					t.Fatalf("%s, revocation once the database accepts it: %d %s", tc.name, a.status, a.body)
				}
				for _, token := range tc.grant {
					if got := active(token); got != false {
						t.Errorf("%s: a token of the revoked grant introspects active %v", tc.name, got)
					}
				}
			}
			// RFC 7009 §2.2: a token already revoked, or never issued, is 200.
			for _, token := range []string{backendAccess, "never-issued"} {
				if a := byBackend(token); a.status != http.StatusOK {
					t.Errorf("revoking %.12s…: %d %s, want 200", token, a.status, a.body)
				}
			}
		})
	}
}

// TestDatabaseOutage takes PostgreSQL away from a running server: the OAuth
// endpoints answer 503 temporarily_unavailable with Retry-After (not 500,
// and never a token called invalid or revoked), a person gets a 503 page,
// and readiness fails. When the database is back, the same server serves
// again without a restart.
func TestDatabaseOutage(t *testing.T) {
	if !hasPostgres() {
		t.Skip("TEST_DATABASE_URL not set: the outage is simulated between the server and PostgreSQL")
	}
	proxy, viaProxy := pgtest.NewProxy(t, pgtest.URL(t))
	store, err := postgres.Open(context.Background(), viaProxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := store.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Tenants, clients and keys stay cached for half an hour, so the first
	// round finds them in memory and fails further in, where fosite writes
	// the answer; the second, past that, fails on the tenant.
	const cached = 30 * time.Minute
	srv := servertest.StartConfig(t, store, func(cfg *server.Config) {
		cfg.ClientCacheTTL, cfg.TenantCacheTTL = cached, cached
		cfg.Keys.SetListCacheTTL(cached)
	})
	e := authzSetup(t, srv)
	id, secret := backendClient(t, srv, "clinic", storage.ClientConfidentialSymmetric, nil)
	_, tok := postForm(t, tokenEndpoint(srv, "clinic"), clientCredentials, id, secret)
	access, _ := tok["access_token"].(string)
	apiID, apiSecret := apiClient(t, srv, "clinic")
	adminToken := apiToken(t, tokenEndpoint(srv, "clinic"), apiID, apiSecret, server.AdminScope)
	if access == "" {
		t.Fatalf("no access token: %v", tok)
	}

	proxy.Cut()
	for _, round := range []string{"cached", "uncached"} {
		if round == "uncached" {
			srv.Clock.Advance(cached + time.Minute)
		}
		for _, tc := range []struct {
			name   string
			method string
			path   string
			form   url.Values
			auth   func(*http.Request)
			page   bool
		}{
			{"token", "POST", "/t/clinic/token", clientCredentials, basic(id, secret), false},
			{"introspection", "POST", "/t/clinic/introspect", url.Values{"token": {access}}, basic(id, secret), false},
			{"revocation", "POST", "/t/clinic/revoke", url.Values{"token": {access}}, basic(id, secret), false},
			{"userinfo", "GET", "/t/clinic/userinfo", nil, bearer(access), false},
			{"admin API", "GET", "/admin/api/v1/tenants/clinic", nil, bearer(adminToken), false},
			{"EHR launch API", "POST", "/t/clinic/launch", nil, bearer(access), false},
			{"authorization page", "GET", strings.TrimPrefix(e.authURL("verifier-verifier-verifier-verifier-verifier"), srv.URL), nil, nil, true},
		} {
			what := round + ": " + tc.name
			a := send(t, tc.method, srv.URL+tc.path, tc.form, tc.auth)
			if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
				t.Errorf("%s during the outage: %d, Retry-After %q; want 503 with Retry-After: %.300s", what, a.status, a.header.Get("Retry-After"), a.body)
				continue
			}
			if tc.page {
				if !strings.HasPrefix(a.header.Get("Content-Type"), "text/html") || !strings.Contains(a.body, a.header.Get("X-Request-Id")) {
					t.Errorf("%s during the outage: not a page with the support reference: %.300s", what, a.body)
				}
			} else if body := a.object(t); body["error"] != "temporarily_unavailable" {
				t.Errorf("%s during the outage: %v, want temporarily_unavailable", what, body)
			}
			line := logLine(t, srv, a.header.Get("X-Request-Id"), "request failed: temporarily unavailable")
			if cause, _ := line["err"].(string); !strings.Contains(cause, storage.ErrUnavailable.Error()) {
				t.Errorf("%s during the outage: the log line does not name the cause: %v", what, line)
			}
		}
	}
	if a := send(t, "GET", srv.URL+"/readyz", nil, nil); a.status != http.StatusServiceUnavailable {
		t.Errorf("readyz during the outage: %d", a.status)
	}

	proxy.Restore()
	if status, body := postForm(t, tokenEndpoint(srv, "clinic"), clientCredentials, id, secret); status != http.StatusOK {
		t.Fatalf("token once the database is back: %d %v", status, body)
	}
	if _, body := postForm(t, srv.Issuer("clinic")+"/introspect", url.Values{"token": {access}}, id, secret); body["active"] != true {
		t.Errorf("the token revoked while the database was away introspects %v; the failed revocation must not have happened", body)
	}
	if a := send(t, "GET", srv.URL+"/readyz", nil, nil); a.status != http.StatusOK {
		t.Errorf("readyz once the database is back: %d", a.status)
	}
}

// TestSQLiteLockedTooLong: a SQLite file another process keeps locked past
// the busy timeout is a temporary outage, answered 503 with Retry-After, and
// the server serves again once the lock is gone. It waits out the busy
// timeout, so it runs beside the other tests.
func TestSQLiteLockedTooLong(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, path := servertest.OpenSQLiteFile(t)
	srv := servertest.Start(t, store)
	srv.Tenant(t, "clinic")
	id, secret := backendClient(t, srv, "clinic", storage.ClientConfidentialSymmetric, nil)

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	other, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	if _, err := other.ExecContext(ctx, `BEGIN EXCLUSIVE`); err != nil {
		t.Fatal(err)
	}
	a := send(t, "POST", tokenEndpoint(srv, "clinic"), clientCredentials, basic(id, secret))
	if body := a.object(t); a.status != http.StatusServiceUnavailable || body["error"] != "temporarily_unavailable" || a.header.Get("Retry-After") == "" {
		t.Fatalf("token while the file is locked: %d %v, Retry-After %q; want 503 temporarily_unavailable", a.status, body, a.header.Get("Retry-After"))
	}
	if _, err := other.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	if status, body := postForm(t, tokenEndpoint(srv, "clinic"), clientCredentials, id, secret); status != http.StatusOK {
		t.Fatalf("token once the lock is gone: %d %v", status, body)
	}
}

// TestRefusalsLogTheirReason: every refusal, whether a page for a person
// with a support reference or an OAuth error for an app, leaves one line at
// the default level, under the request id the caller was given, that says
// why; and none of it carries the client's secret.
func TestRefusalsLogTheirReason(t *testing.T) {
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	e := authzSetup(t, srv)
	id, secret := backendClient(t, srv, "clinic", storage.ClientConfidentialSymmetric, nil)
	good := e.authURL("verifier-verifier-verifier-verifier-verifier")
	withParam := func(k, v string) string {
		u, _ := url.Parse(good)
		q := u.Query()
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		return strings.TrimPrefix(u.String(), srv.URL)
	}
	iss := "/t/clinic"
	for _, tc := range []struct {
		name   string
		method string
		path   string
		form   url.Values
		auth   func(*http.Request)
		status int
		code   string
		reason string // in the line's description, hint or debug
	}{
		{"authorize: unknown client", "GET", withParam("client_id", "no-such-app"), nil, nil,
			400, "bad_request", "not registered with this organization"},
		{"authorize: unregistered redirect URI", "GET", withParam("redirect_uri", "https://elsewhere.example/cb"), nil, nil,
			400, "bad_request", "has not registered"},
		{"authorize: no PKCE, told to the app", "GET", withParam("code_challenge", ""), nil, nil,
			http.StatusSeeOther, "invalid_request", "PKCE is required"},
		{"token: unknown grant", "POST", iss + "/token", url.Values{"grant_type": {"password"}}, basic(id, secret),
			400, "unsupported_grant_type", `"password" is not supported`},
		{"token: wrong secret", "POST", iss + "/token", clientCredentials, basic(id, secret+"x"),
			401, "invalid_client", "invalid client secret"},
		{"introspection: no token", "POST", iss + "/introspect", url.Values{"token_type_hint": {"access_token"}}, basic(id, secret),
			400, "invalid_request", "token parameter is missing"},
		{"revocation: wrong secret", "POST", iss + "/revoke", url.Values{"token": {"x"}}, basic(id, secret+"x"),
			401, "invalid_client", "invalid client secret"},
		{"userinfo: no token", "GET", iss + "/userinfo", nil, nil,
			401, "invalid_request", "access token is required"},
		{"userinfo: unknown token", "GET", iss + "/userinfo", nil, bearer("not-a-token"),
			401, "invalid_token", "not found"},
		{"unknown page", "GET", "/no/such/page", nil, nil,
			404, "not_found", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := send(t, tc.method, srv.URL+tc.path, tc.form, tc.auth)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %.300s", a.status, tc.status, a.body)
			}
			rid := a.header.Get("X-Request-Id")
			if strings.HasPrefix(a.header.Get("Content-Type"), "text/html") && !strings.Contains(a.body, rid) {
				t.Fatalf("the error page does not show the support reference %s", rid)
			}
			line := logLine(t, srv, rid, "request refused")
			var why []string
			for _, k := range []string{"description", "hint", "debug"} {
				v, _ := line[k].(string)
				why = append(why, v)
			}
			if line["level"] != "INFO" || line["error"] != tc.code || !strings.Contains(strings.Join(why, " "), tc.reason) {
				t.Errorf("refusal logged as %v; want level INFO, error %q, reason %q", line, tc.code, tc.reason)
			}
			for _, l := range logLinesOf(t, srv, rid) {
				if b, _ := json.Marshal(l); strings.Contains(string(b), secret) {
					t.Errorf("the client secret reached the log: %s", b)
				}
			}
		})
	}
}
