package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/server/smart"
	"github.com/smartauth/smartauth/storage"
)

// repeatScope is n copies of one scope, space-separated: few distinct
// scopes, so only the bound, not the client's registration, refuses them.
func repeatScope(scope string, n int) string {
	return strings.TrimSpace(strings.Repeat(scope+" ", n))
}

// distinctScopes is n different granular SMART scopes, each valid.
func distinctScopes(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("patient/Observation.rs?code=%d", i)
	}
	return strings.Join(s, " ")
}

// floodScope is the scope parameter of the report: 40,000 different
// scopes in about 770 KB.
func floodScope() string { return manyScopes(40000) }

// manyScopes is a scope parameter of n different scopes; 2,500 of them
// (about 45 KB) are far past the scope bounds yet within the protocol
// endpoints' body cap, so they reach the scope check.
func manyScopes(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("patient/R%d.rs", i)
	}
	return strings.Join(s, " ")
}

func TestTokenScopeAndAudienceBounded(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		srv.Tenant(t, "clinic")
		id, secret := backendClient(t, srv, "clinic", storage.ClientConfidentialSymmetric, nil)
		endpoint := tokenEndpoint(srv, "clinic")
		backend := func(scope string) url.Values {
			return url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
		}
		audiences := make([]string, smart.MaxScopes+1)
		for i := range audiences {
			audiences[i] = fmt.Sprintf("https://fhir.example.org/%d", i)
		}
		for _, tc := range []struct {
			name       string
			form       url.Values
			id, secret string
			status     int
			code       string
		}{
			// 770 KB: refused unread, as too large, before any parsing.
			{"40,000 scopes, no client", backend(floodScope()), "", "", 413, "invalid_request"},
			{"40,000 scopes", backend(floodScope()), id, secret, 413, "invalid_request"},
			{"2,500 scopes, no client", backend(manyScopes(2500)), "", "", 400, "invalid_scope"},
			{"2,500 scopes", backend(manyScopes(2500)), id, secret, 400, "invalid_scope"},
			{"one scope too many", backend(repeatScope("system/*.rs", smart.MaxScopes+1)), id, secret, 400, "invalid_scope"},
			{"as many scopes as allowed", backend(repeatScope("system/*.rs", smart.MaxScopes)), id, secret, 200, ""},
			{"one byte too long", backend("system/*.rs" + strings.Repeat(" ", smart.MaxParamLen-10)), id, secret, 400, "invalid_scope"},
			{"token exchange", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
				"scope": {repeatScope("patient/*.rs", smart.MaxScopes+1)}, "subject_token": {"x"},
				"subject_token_type": {"urn:ietf:params:oauth:token-type:id_token"}}, id, secret, 400, "invalid_scope"},
			{"audiences, repeated", url.Values{"grant_type": {"client_credentials"}, "audience": audiences}, "", "", 400, "invalid_request"},
			{"audiences, space-separated", url.Values{"grant_type": {"client_credentials"}, "audience": {strings.Join(audiences, " ")}},
				"", "", 400, "invalid_request"},
			{"resources", url.Values{"grant_type": {"client_credentials"}, "resource": audiences}, id, secret, 400, "invalid_request"},
		} {
			status, body := postForm(t, endpoint, tc.form, tc.id, tc.secret)
			if status != tc.status || tc.code != "" && body["error"] != tc.code {
				t.Errorf("%s: %d %v, want %d %s", tc.name, status, body, tc.status, tc.code)
			}
		}
	})
}

func TestAuthorizeScopeAndAudienceBounded(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		good, _ := url.Parse(e.authURL(oauth2.GenerateVerifier()))
		for _, tc := range []struct {
			name, param, value, want string
		}{
			{"one scope too many", "scope", repeatScope("openid", smart.MaxScopes+1), "invalid_scope"},
			{"one audience too many", "audience", repeatScope(e.fhirBase, smart.MaxScopes+1), "invalid_request"},
		} {
			q := good.Query()
			q.Set(tc.param, tc.value)
			refusedAtApp(t, tc.name+" (GET)", e.get(t, e.browser, e.iss+"/authorize?"+q.Encode()), tc.want)
			refusedAtApp(t, tc.name+" (POST)", e.post(t, e.browser, e.iss+"/authorize", q, nil), tc.want)
		}
		// Too long for a URL (431), so only an authorize-post can carry these.
		q := good.Query()
		q.Set("scope", manyScopes(2500))
		refusedAtApp(t, "2,500 scopes (POST)", e.post(t, e.browser, e.iss+"/authorize", q, nil), "invalid_scope")
		q.Set("scope", floodScope())
		if p := e.post(t, e.browser, e.iss+"/authorize", q, nil); p.status != http.StatusRequestEntityTooLarge || p.header.Get("Location") != "" {
			t.Errorf("40,000 scopes (POST): %d Location %q, want a 413 page", p.status, p.header.Get("Location"))
		}
		q = good.Query()
		q.Set("scope", repeatScope("openid", smart.MaxScopes))
		if p := e.get(t, e.browser, e.iss+"/authorize?"+q.Encode()); p.status != http.StatusOK || p.hidden["authz"] == "" {
			t.Errorf("as many scopes as allowed: %d, want the sign-in page\n%s", p.status, p.body)
		}
	})
}

func TestRegisterScopeAndRedirectURIsBounded(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		srv.Tenant(t, "clinic")
		uris := func(n int) []string {
			out := make([]string, n)
			for i := range out {
				out[i] = fmt.Sprintf("https://chart.example/cb/%d", i)
			}
			return out
		}
		for _, tc := range []struct {
			name   string
			scope  string
			uris   []string
			status int
			code   string
		}{
			{"one scope too many", distinctScopes(smart.MaxScopes + 1), uris(1), 400, manage.ErrCodeInvalidClientMetadata},
			{"2,500 scopes", manyScopes(2500), uris(1), 400, manage.ErrCodeInvalidClientMetadata},
			{"40,000 scopes", floodScope(), uris(1), 413, "invalid_request"},
			{"one redirect URI too many", "launch/patient", uris(manage.MaxRedirectURIs + 1), 400, manage.ErrCodeInvalidRedirectURI},
			{"as many of each as allowed", distinctScopes(smart.MaxScopes), uris(manage.MaxRedirectURIs), 201, ""},
		} {
			md, _ := json.Marshal(map[string]any{"client_name": "Chart", "token_endpoint_auth_method": "none",
				"redirect_uris": tc.uris, "scope": tc.scope})
			res := postRegistration(t, srv, "clinic", initialToken(t, srv, "clinic", userFacing), string(md))
			if res.status != tc.status || tc.code != "" && res.body["error"] != tc.code {
				t.Errorf("%s: %d %v, want %d %s", tc.name, res.status, res.body["error_description"], tc.status, tc.code)
			}
		}
	})
}

func TestRepeatedParametersRefused(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		srv.Tenant(t, "clinic")
		id, secret := backendClient(t, srv, "clinic", storage.ClientConfidentialSymmetric, nil)
		_, tok := postForm(t, tokenEndpoint(srv, "clinic"), url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}, id, secret)
		token, _ := tok["access_token"].(string)
		for _, tc := range []struct {
			name, endpoint string
			form           url.Values
			status         int
		}{
			{"grant_type at token", "/token", url.Values{"grant_type": {"client_credentials", "authorization_code"}, "scope": {"system/*.rs"}}, 400},
			{"same grant_type twice at token", "/token", url.Values{"grant_type": {"client_credentials", "client_credentials"}}, 400},
			{"scope at token", "/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs", "system/Patient.rs"}}, 400},
			{"token at introspect", "/introspect", url.Values{"token": {token, "other"}}, 400},
			{"token_type_hint at introspect", "/introspect", url.Values{"token": {token}, "token_type_hint": {"access_token", "refresh_token"}}, 400},
			{"token at revoke", "/revoke", url.Values{"token": {token, "other"}}, 400},
			// RFC 8707 names several resources by repeating the parameter.
			{"resource at token", "/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"},
				"resource": {"https://fhir.example.org/clinic", "https://fhir.example.org/other"}}, 200},
		} {
			status, body := postForm(t, srv.Issuer("clinic")+tc.endpoint, tc.form, id, secret)
			if status != tc.status || tc.status == 400 && body["error"] != "invalid_request" {
				t.Errorf("%s: %d %v, want %d", tc.name, status, body, tc.status)
			}
		}
		// Nothing refused above reached the token it named.
		if active := introspectActive(t, srv, id, secret, token); !active {
			t.Errorf("a refused revocation revoked the token")
		}
	})
}

// introspectActive reports what introspection says of token.
func introspectActive(t *testing.T, srv *servertest.Server, id, secret, token string) bool {
	t.Helper()
	status, body := postForm(t, srv.Issuer("clinic")+"/introspect", url.Values{"token": {token}}, id, secret)
	if status != http.StatusOK {
		t.Fatalf("introspect: %d %v", status, body)
	}
	active, _ := body["active"].(bool)
	return active
}

// BenchmarkScopeFlood is the cost of refusing oversized scope parameters
// over HTTP, without a client at the token endpoint and for a known app at
// the authorization endpoint: 40,000 scopes (about 770 KB), refused unread
// by the protocol endpoints' body cap, and 2,500 scopes (about 45 KB),
// which fit the cap and are refused by the scope bounds.
func BenchmarkScopeFlood(b *testing.B) {
	open := servertest.OpenSQLite
	if os.Getenv("TEST_DATABASE_URL") != "" {
		open = servertest.OpenPostgres
	}
	srv := servertest.Start(b, open(b))
	srv.Tenant(b, "bench")
	if _, _, err := srv.Manage.CreateClient(context.Background(), manage.ClientInput{TenantID: "bench", ID: "app", Name: "App",
		Type: storage.ClientPublic, RedirectURIs: []string{authzCallback}, Scopes: []string{"openid"}}, testActor); err != nil {
		b.Fatal(err)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	send := func(b *testing.B, path, body string, want int) {
		resp, err := client.Post(srv.Issuer("bench")+path, "application/x-www-form-urlencoded", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || want == http.StatusSeeOther && !strings.Contains(resp.Header.Get("Location"), "error=invalid_scope") {
			b.Fatalf("%s: %d %s, want %d", path, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
	for _, size := range []struct {
		name      string
		scope     string
		token     int
		authorize int
	}{
		{"40000 scopes", floodScope(), http.StatusRequestEntityTooLarge, http.StatusRequestEntityTooLarge},
		{"2500 scopes", manyScopes(2500), http.StatusBadRequest, http.StatusSeeOther},
	} {
		b.Run(size.name+"/token", func(b *testing.B) {
			body := url.Values{"grant_type": {"client_credentials"}, "scope": {size.scope}}.Encode()
			b.SetBytes(int64(len(body)))
			defer reportCPU(b)()
			for b.Loop() {
				send(b, "/token", body, size.token)
			}
		})
		b.Run(size.name+"/authorize", func(b *testing.B) {
			body := url.Values{"client_id": {"app"}, "redirect_uri": {authzCallback}, "response_type": {"code"}, "scope": {size.scope},
				"aud": {"https://fhir.example.org/bench"}, "code_challenge": {strings.Repeat("c", 43)},
				"code_challenge_method": {"S256"}, "state": {authzState}}.Encode()
			b.SetBytes(int64(len(body)))
			defer reportCPU(b)()
			for b.Loop() {
				send(b, "/authorize", body, size.authorize)
			}
		})
	}
}

// reportCPU reports the process's CPU time per operation, client and
// server together, so an upper bound on what a refusal costs the server
// however busy the machine is; call the function it returns when done.
func reportCPU(b *testing.B) func() {
	start := processCPU(b)
	return func() {
		b.ReportMetric(float64((processCPU(b)-start).Microseconds())/float64(b.N), "cpu-µs/op")
	}
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
