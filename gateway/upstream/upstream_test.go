package upstream_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/smartauth/smartauth/gateway/upstream"
	"github.com/smartauth/smartauth/server/fhirsearch"
	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/server/netguard"
	"github.com/smartauth/smartauth/storage"
)

const (
	tenantID     = "clinic"
	clientID     = "gateway"
	clientSecret = "s3cret-that-must-never-show"
	headerValue  = "api-key-that-must-never-show"
	scope        = "system/*.rs"
)

func newSealer(t *testing.T) *keys.Sealer {
	t.Helper()
	s, err := keys.NewSealer([]byte(strings.Repeat("k", keys.MasterKeySize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tokenServer is a client_credentials token endpoint.
type tokenServer struct {
	*httptest.Server
	hits atomic.Int64
	// expiresIn is the lifetime of the tokens issued, in seconds.
	expiresIn atomic.Int64
	// fail makes every request fail with this status.
	fail atomic.Int64

	mu     sync.Mutex
	issued []string
}

func newTokenServer(t *testing.T) *tokenServer {
	ts := &tokenServer{}
	ts.expiresIn.Store(3600)
	ts.Server = httptest.NewServer(http.HandlerFunc(ts.serve))
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tokenServer) serve(w http.ResponseWriter, r *http.Request) {
	ts.hits.Add(1)
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost || r.PostForm.Get("grant_type") != "client_credentials" {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if status := ts.fail.Load(); status != 0 || id != clientID || secret != clientSecret {
		if status == 0 {
			status = http.StatusUnauthorized
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(status))
		// A careless server echoing what it got must not put the secret in our errors.
		fmt.Fprintf(w, `{"error":"invalid_client","error_description":"bad secret %s"}`, secret)
		return
	}
	if r.PostForm.Get("scope") != scope {
		http.Error(w, `{"error":"invalid_scope"}`, http.StatusBadRequest)
		return
	}
	tok := rand.Text()
	ts.mu.Lock()
	ts.issued = append(ts.issued, tok)
	ts.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":%d}`, tok, ts.expiresIn.Load())
}

// searchSource is the tenant's patient search client at ts.
func searchSource(t *testing.T, sealer *keys.Sealer, ts *tokenServer) storage.PatientSearchSource {
	t.Helper()
	src := storage.PatientSearchSource{FHIRBaseURL: "https://fhir.example/r4", TokenURL: ts.URL + "/token", ClientID: clientID, Scope: scope}
	sealed, err := fhirsearch.SealSecret(sealer, tenantID, src, clientSecret)
	if err != nil {
		t.Fatal(err)
	}
	src.ClientSecretSealed = sealed
	return src
}

// headerGateway is a gateway to upstreamURL sending X-Api-Key.
func headerGateway(t *testing.T, sealer *keys.Sealer, upstreamURL string) storage.GatewaySettings {
	t.Helper()
	g := storage.GatewaySettings{UpstreamURL: upstreamURL, UpstreamAuth: storage.GatewayAuthHeader, HeaderName: "X-Api-Key"}
	sealed, err := upstream.SealHeader(sealer, tenantID, g, headerValue)
	if err != nil {
		t.Fatal(err)
	}
	g.HeaderValueSealed = sealed
	return g
}

func tenant(g storage.GatewaySettings, ps storage.PatientSearchSource) storage.Tenant {
	return storage.Tenant{ID: tenantID, Policy: storage.TenantPolicy{Gateway: g, PatientSearch: ps}}
}

// authorize runs Authorize on a request that arrived with the app's token.
func authorize(t *testing.T, a *upstream.Authenticator) (http.Header, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, a.Base().String()+"/Patient", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer app-token")
	req.Header.Set("Accept", "application/fhir+json")
	err = a.Authorize(context.Background(), req)
	return req.Header, err
}

// noSecrets fails when err shows the client secret, the header value or a token.
func noSecrets(t *testing.T, err error, ts *tokenServer) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, s := range []string{clientSecret, headerValue} {
		if strings.Contains(msg, s) {
			t.Errorf("error shows a secret: %v", err)
		}
	}
	if ts != nil {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		for _, tok := range ts.issued {
			if strings.Contains(msg, tok) {
				t.Errorf("error shows a token: %v", err)
			}
		}
	}
}

func TestAuthModes(t *testing.T) {
	sealer := newSealer(t)
	ts := newTokenServer(t)
	ps := searchSource(t, sealer, ts)
	const base = "https://fhir.upstream.example/r4"
	tests := []struct {
		name    string
		g       storage.GatewaySettings
		want    http.Header
		forward bool
	}{
		{"empty means none", storage.GatewaySettings{UpstreamURL: base}, http.Header{}, false},
		{"none", storage.GatewaySettings{UpstreamURL: base, UpstreamAuth: storage.GatewayAuthNone}, http.Header{}, false},
		{"forward", storage.GatewaySettings{UpstreamURL: base, UpstreamAuth: storage.GatewayAuthForward},
			http.Header{"Authorization": {"Bearer app-token"}}, true},
		{"header", headerGateway(t, sealer, base), http.Header{"X-Api-Key": {headerValue}}, false},
		{"client_credentials", storage.GatewaySettings{UpstreamURL: base, UpstreamAuth: storage.GatewayAuthClientCredentials},
			http.Header{"Authorization": {"(issued)"}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			as := upstream.NewAuthenticators(sealer, upstream.Options{AllowPrivate: true})
			a, err := as.For(tenant(tc.g, ps))
			if err != nil {
				t.Fatal(err)
			}
			if a.Base().String() != base || a.UserHeader() != storage.DefaultGatewayUserHeader || a.ForwardsToken() != tc.forward {
				t.Fatalf("base %s, user header %s, forwards %v", a.Base(), a.UserHeader(), a.ForwardsToken())
			}
			h, err := authorize(t, a)
			if err != nil {
				t.Fatal(err)
			}
			h.Del("Accept")
			if got := h.Get("Authorization"); tc.want.Get("Authorization") == "(issued)" {
				ts.mu.Lock()
				last := ts.issued[len(ts.issued)-1]
				ts.mu.Unlock()
				if got != "Bearer "+last {
					t.Fatalf("Authorization %q, want the issued token", got)
				}
				tc.want.Set("Authorization", got)
			}
			if fmt.Sprint(h) != fmt.Sprint(tc.want) {
				t.Fatalf("headers %v, want %v", h, tc.want)
			}
		})
	}
}

func TestUserHeader(t *testing.T) {
	as := upstream.NewAuthenticators(newSealer(t), upstream.Options{})
	a, err := as.For(tenant(storage.GatewaySettings{UpstreamURL: "https://fhir.example/r4", UserHeader: "X-User"}, storage.PatientSearchSource{}))
	if err != nil {
		t.Fatal(err)
	}
	if a.UserHeader() != "X-User" {
		t.Fatalf("user header %q", a.UserHeader())
	}
}

func TestNotConfigured(t *testing.T) {
	as := upstream.NewAuthenticators(newSealer(t), upstream.Options{})
	if _, err := as.For(storage.Tenant{ID: tenantID}); !errors.Is(err, upstream.ErrNotConfigured) {
		t.Fatalf("got %v, want ErrNotConfigured", err)
	}
	for _, g := range []storage.GatewaySettings{
		{UpstreamURL: "/relative"},
		{UpstreamURL: "ftp://fhir.example/r4"},
		{UpstreamURL: "https://fhir.example/r4", UpstreamAuth: "magic"},
	} {
		if _, err := as.For(tenant(g, storage.PatientSearchSource{})); err == nil || errors.Is(err, upstream.ErrNotConfigured) {
			t.Errorf("%+v: got %v, want an error", g, err)
		}
	}
}

func TestTokenReusedThenRefreshed(t *testing.T) {
	sealer := newSealer(t)
	ts := newTokenServer(t)
	as := upstream.NewAuthenticators(sealer, upstream.Options{AllowPrivate: true})
	tn := tenant(storage.GatewaySettings{UpstreamURL: "https://fhir.example/r4", UpstreamAuth: storage.GatewayAuthClientCredentials}, searchSource(t, sealer, ts))

	var wg sync.WaitGroup
	tokens := make([]string, 20)
	for i := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := as.For(tn)
			if err != nil {
				t.Error(err)
				return
			}
			h, err := authorize(t, a)
			if err != nil {
				t.Error(err)
				return
			}
			tokens[i] = h.Get("Authorization")
		}()
	}
	wg.Wait()
	if hits := ts.hits.Load(); hits != 1 {
		t.Fatalf("token endpoint hit %d times, want once", hits)
	}
	for _, tok := range tokens {
		if tok != tokens[0] || tok == "" {
			t.Fatalf("tokens differ: %q", tokens)
		}
	}

	// A token within the early-expiry window is replaced at its next use.
	as.Invalidate(tenantID)
	ts.expiresIn.Store(5)
	a, err := as.For(tn)
	if err != nil {
		t.Fatal(err)
	}
	first, err := authorize(t, a)
	if err != nil {
		t.Fatal(err)
	}
	second, err := authorize(t, a)
	if err != nil {
		t.Fatal(err)
	}
	if hits := ts.hits.Load(); hits != 3 || first.Get("Authorization") == second.Get("Authorization") {
		t.Fatalf("token endpoint hit %d times (want 3), tokens %q and %q", hits, first.Get("Authorization"), second.Get("Authorization"))
	}

	// ResetToken drops a token that has not expired.
	ts.expiresIn.Store(3600)
	a.ResetToken()
	authorize(t, a)
	authorize(t, a)
	if hits := ts.hits.Load(); hits != 4 {
		t.Fatalf("token endpoint hit %d times, want 4", hits)
	}
}

func TestTokenEndpointFailure(t *testing.T) {
	sealer := newSealer(t)
	for _, status := range []int64{http.StatusUnauthorized, http.StatusInternalServerError} {
		ts := newTokenServer(t)
		ts.fail.Store(status)
		as := upstream.NewAuthenticators(sealer, upstream.Options{AllowPrivate: true})
		a, err := as.For(tenant(storage.GatewaySettings{UpstreamURL: "https://fhir.example/r4", UpstreamAuth: storage.GatewayAuthClientCredentials}, searchSource(t, sealer, ts)))
		if err != nil {
			t.Fatal(err)
		}
		h, err := authorize(t, a)
		if !errors.Is(err, upstream.ErrUpstreamAuth) || !strings.Contains(err.Error(), fmt.Sprintf("status %d", status)) {
			t.Fatalf("got %v, want ErrUpstreamAuth with status %d", err, status)
		}
		noSecrets(t, err, ts)
		if h.Get("Authorization") == "Bearer app-token" {
			t.Error("the app's token was left on a failed request")
		}
	}

	// A tenant whose patient search client is not configured.
	as := upstream.NewAuthenticators(sealer, upstream.Options{AllowPrivate: true})
	a, err := as.For(tenant(storage.GatewaySettings{UpstreamURL: "https://fhir.example/r4", UpstreamAuth: storage.GatewayAuthClientCredentials}, storage.PatientSearchSource{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := authorize(t, a); !errors.Is(err, upstream.ErrUpstreamAuth) || !strings.Contains(err.Error(), "patient search client, which is not configured") {
		t.Fatalf("got %v", err)
	}
}

func TestHeaderSealed(t *testing.T) {
	sealer := newSealer(t)
	g := headerGateway(t, sealer, "https://fhir.example/r4")
	if strings.Contains(g.HeaderValueSealed, headerValue) {
		t.Fatal("the sealed value shows the value")
	}
	if v, err := upstream.OpenHeader(sealer, tenantID, g); err != nil || v != headerValue {
		t.Fatalf("opens to %q, %v", v, err)
	}
	// Pointing the row elsewhere, renaming the header or moving it to
	// another tenant makes the value unopenable.
	for name, change := range map[string]func(*storage.GatewaySettings, *string){
		"upstream URL": func(g *storage.GatewaySettings, _ *string) { g.UpstreamURL = "https://evil.example/r4" },
		"header name":  func(g *storage.GatewaySettings, _ *string) { g.HeaderName = "X-Other" },
		"tenant":       func(_ *storage.GatewaySettings, id *string) { *id = "other" },
	} {
		moved, id := g, tenantID
		change(&moved, &id)
		_, err := upstream.OpenHeader(sealer, id, moved)
		if err == nil {
			t.Errorf("changing the %s: the value still opens", name)
		}
		noSecrets(t, err, nil)

		as := upstream.NewAuthenticators(sealer, upstream.Options{})
		a, err := as.For(storage.Tenant{ID: id, Policy: storage.TenantPolicy{Gateway: moved}})
		if err != nil {
			t.Fatal(err)
		}
		h, err := authorize(t, a)
		if !errors.Is(err, upstream.ErrUpstreamAuth) {
			t.Errorf("changing the %s: Authorize gave %v, want ErrUpstreamAuth", name, err)
		}
		noSecrets(t, err, nil)
		if len(h.Values("X-Api-Key"))+len(h.Values("X-Other")) != 0 {
			t.Errorf("changing the %s: a header was set: %v", name, h)
		}
	}
	// Another master key cannot open it either.
	other, err := keys.NewSealer([]byte(strings.Repeat("o", keys.MasterKeySize)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = upstream.OpenHeader(other, tenantID, g)
	if err == nil {
		t.Error("another master key opens the value")
	}
	noSecrets(t, err, nil)
}

func TestSettingsChangeRebuilds(t *testing.T) {
	sealer := newSealer(t)
	ts := newTokenServer(t)
	ps := searchSource(t, sealer, ts)
	as := upstream.NewAuthenticators(sealer, upstream.Options{AllowPrivate: true})
	g := storage.GatewaySettings{UpstreamURL: "https://fhir.example/r4", UpstreamAuth: storage.GatewayAuthClientCredentials}

	a1, err := as.For(tenant(g, ps))
	if err != nil {
		t.Fatal(err)
	}
	if a2, _ := as.For(tenant(g, ps)); a2 != a1 {
		t.Fatal("the same settings built a new Authenticator")
	}
	authorize(t, a1)

	// A new patient search client: a new Authenticator, and a new token.
	ps2 := ps
	ps2.Scope = "system/Patient.rs"
	ps2.ClientSecretSealed, _ = fhirsearch.SealSecret(sealer, tenantID, ps2, clientSecret)
	a3, err := as.For(tenant(g, ps2))
	if err != nil || a3 == a1 {
		t.Fatalf("a changed patient search client kept the Authenticator: %v", err)
	}

	// A new upstream.
	g2 := g
	g2.UpstreamURL = "https://fhir2.example/r4"
	a4, err := as.For(tenant(g2, ps))
	if err != nil || a4 == a1 || a4 == a3 || a4.Base().String() != g2.UpstreamURL {
		t.Fatalf("a changed upstream: %v, base %v", err, a4.Base())
	}

	// Cleared, then set again: built afresh.
	if _, err := as.For(tenant(storage.GatewaySettings{}, ps)); !errors.Is(err, upstream.ErrNotConfigured) {
		t.Fatalf("cleared: %v", err)
	}
	a5, err := as.For(tenant(g2, ps))
	if err != nil || a5 == a4 {
		t.Fatalf("set again: %v, same %v", err, a5 == a4)
	}
	// Invalidate forgets it too.
	as.Invalidate(tenantID)
	if a6, _ := as.For(tenant(g2, ps)); a6 == a5 {
		t.Fatal("Invalidate kept the Authenticator")
	}
}

func TestNoRedirectsFollowed(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://elsewhere.example/r4/Patient", http.StatusFound)
	}))
	t.Cleanup(up.Close)
	as := upstream.NewAuthenticators(newSealer(t), upstream.Options{AllowPrivate: true})
	a, err := as.For(tenant(storage.GatewaySettings{UpstreamURL: up.URL + "/r4"}, storage.PatientSearchSource{}))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.Client().Get(a.Base().String() + "/Patient")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://elsewhere.example/r4/Patient" {
		t.Fatalf("status %d, Location %q; want the 302 itself", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestPrivateAddressRefused(t *testing.T) {
	sealer := newSealer(t)
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(up.Close)
	ts := newTokenServer(t)
	g := storage.GatewaySettings{UpstreamURL: up.URL + "/r4", UpstreamAuth: storage.GatewayAuthClientCredentials}
	ps := searchSource(t, sealer, ts)

	as := upstream.NewAuthenticators(sealer, upstream.Options{})
	a, err := as.For(tenant(g, ps))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := authorize(t, a); !errors.Is(err, upstream.ErrUpstreamAuth) || !errors.Is(err, netguard.ErrNotPublic) {
		t.Errorf("token endpoint on loopback: got %v, want ErrUpstreamAuth and ErrNotPublic", err)
	}
	if _, err := a.Client().Get(a.Base().String() + "/metadata"); !errors.Is(err, netguard.ErrNotPublic) {
		t.Errorf("upstream on loopback: got %v, want ErrNotPublic", err)
	}
	if hits.Load() != 0 || ts.hits.Load() != 0 {
		t.Fatalf("loopback reached: upstream %d, token endpoint %d", hits.Load(), ts.hits.Load())
	}

	allowed := upstream.NewAuthenticators(sealer, upstream.Options{AllowPrivate: true})
	a, err = allowed.For(tenant(g, ps))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, a.Base().String()+"/metadata", nil)
	if err := a.Authorize(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	resp, err := a.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if hits.Load() != 1 || ts.hits.Load() != 1 {
		t.Fatalf("with AllowPrivate: upstream %d, token endpoint %d", hits.Load(), ts.hits.Load())
	}
}
