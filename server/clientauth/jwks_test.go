package clientauth_test

import (
	"crypto/elliptic"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/smartauth/smartauth/server/clientauth"
	"github.com/smartauth/smartauth/storage"
)

// jwksServer publishes a client's key set and counts fetches.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int32

	mu     sync.Mutex
	status int
	body   []byte
	// hold, when set, blocks every request until it is closed, the
	// request is abandoned or 5 s have passed.
	hold chan struct{}
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{status: http.StatusOK, body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		status, body, hold := s.status, s.body, s.hold
		s.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			case <-time.After(5 * time.Second):
				// Bounded, so a broken client timeout fails the test instead of hanging it.
			}
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

func (s *jwksServer) setHold(hold chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = hold
}

// remoteEnv registers "remote" in t1 with its keys at a JWKS URL serving key a.
func remoteEnv(t *testing.T, opts clientauth.Options) (*env, *jwksServer, signer) {
	t.Helper()
	// The test servers listen on loopback, which the default client refuses.
	opts.AllowPrivateNetworks = true
	e := newEnv(t, opts)
	a := ecSigner(t, jose.ES384, "a", elliptic.P384())
	srv := newJWKSServer(t, jwks(t, a.jwk("sig", "")))
	e.client(storage.Client{TenantID: "t1", ID: "remote", Type: storage.ClientConfidentialAsymmetric, JWKSURL: srv.URL + "/jwks.json"})
	return e, srv, a
}

// remoteAuth authenticates "remote" with an assertion by s and a fresh jti.
func remoteAuth(t *testing.T, e *env, s signer) (clientauth.Result, *clientauth.Error) {
	t.Helper()
	jti := fmt.Sprintf("jti-%d", e.clock.Now().UnixNano())
	e.clock.Advance(time.Millisecond) // a new jti for the next call
	return e.authenticate("t1", assertionForm(s.sign(t, claims("remote", "t1", jti, e.clock.Now()))), "")
}

func wantHits(t *testing.T, srv *jwksServer, want int32) {
	t.Helper()
	if got := srv.hits.Load(); got != want {
		t.Fatalf("JWKS fetched %d times, want %d", got, want)
	}
}

func TestJWKSURLCached(t *testing.T) {
	e, srv, a := remoteEnv(t, clientauth.Options{})
	res, err := remoteAuth(t, e, a)
	expect(t, res, err, 0, "", "remote", clientauth.MethodPrivateKeyJWT)
	wantHits(t, srv, 1)

	e.clock.Advance(clientauth.DefaultJWKSCacheTTL - time.Minute)
	res, err = remoteAuth(t, e, a)
	expect(t, res, err, 0, "", "remote", clientauth.MethodPrivateKeyJWT)
	wantHits(t, srv, 1)

	// Past the TTL the set is fetched again, and a key removed from it stops working.
	srv.set(http.StatusOK, jwks(t))
	e.clock.Advance(2 * time.Minute)
	res, err = remoteAuth(t, e, a)
	expect(t, res, err, 401, "invalid_client", "", "")
	wantHits(t, srv, 2)
}

func TestJWKSURLUnknownKidRefetch(t *testing.T) {
	e, srv, a := remoteEnv(t, clientauth.Options{})
	res, err := remoteAuth(t, e, a)
	expect(t, res, err, 0, "", "remote", clientauth.MethodPrivateKeyJWT)
	wantHits(t, srv, 1)

	// The client rotates to key b; its first assertion with kid b makes us
	// fetch the set again, once, even though the cached set is fresh.
	e.clock.Advance(time.Minute)
	b := rsaSigner(t, jose.RS384, "b", 2048)
	srv.set(http.StatusOK, jwks(t, a.jwk("sig", ""), b.jwk("sig", "")))
	res, err = remoteAuth(t, e, b)
	expect(t, res, err, 0, "", "remote", clientauth.MethodPrivateKeyJWT)
	wantHits(t, srv, 2)

	// Unknown kids right after a fetch do not make us fetch again...
	stranger := rsaSigner(t, jose.RS384, "zzz", 2048)
	for range 5 {
		res, err = remoteAuth(t, e, stranger)
		expect(t, res, err, 401, "invalid_client", "", "")
	}
	wantHits(t, srv, 2)
	// ...but once the interval has passed, one does, and only one.
	e.clock.Advance(clientauth.DefaultJWKSMinRefetch + time.Second)
	for range 5 {
		res, err = remoteAuth(t, e, stranger)
		expect(t, res, err, 401, "invalid_client", "", "")
	}
	wantHits(t, srv, 3)
	// Known keys keep working without fetching.
	res, err = remoteAuth(t, e, a)
	expect(t, res, err, 0, "", "remote", clientauth.MethodPrivateKeyJWT)
	wantHits(t, srv, 3)
}

func TestJWKSURLFailures(t *testing.T) {
	const maxBytes = 4096
	pad := func(b []byte, n int) []byte {
		// Whitespace keeps the JSON valid, so only the cap can refuse it.
		return append(append([]byte{}, b...), strings.Repeat(" ", n-len(b))...)
	}
	tests := []struct {
		name   string
		status int
		body   func(valid []byte) []byte
		hold   bool
		ok     bool
	}{
		{name: "server error", status: http.StatusInternalServerError, body: func(v []byte) []byte { return v }},
		{name: "not found", status: http.StatusNotFound, body: func(v []byte) []byte { return v }},
		{name: "not JSON", status: http.StatusOK, body: func([]byte) []byte { return []byte("<html>hello</html>") }},
		{name: "no keys member", status: http.StatusOK, body: func([]byte) []byte { return []byte(`{"kty":"EC"}`) }},
		{name: "one byte over the cap", status: http.StatusOK, body: func(v []byte) []byte { return pad(v, maxBytes+1) }},
		{name: "exactly the cap", status: http.StatusOK, body: func(v []byte) []byte { return pad(v, maxBytes) }, ok: true},
		{name: "slower than the timeout", status: http.StatusOK, body: func(v []byte) []byte { return v }, hold: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A client without its own timeout: FetchTimeout must still bound the fetch.
			e, srv, a := remoteEnv(t, clientauth.Options{HTTPClient: &http.Client{}, MaxJWKSBytes: maxBytes, FetchTimeout: 200 * time.Millisecond})
			valid := jwks(t, a.jwk("sig", ""))
			srv.set(tt.status, tt.body(valid))
			if tt.hold {
				hold := make(chan struct{})
				t.Cleanup(func() { close(hold) })
				srv.setHold(hold)
			}
			start := time.Now()
			res, err := remoteAuth(t, e, a)
			if time.Since(start) > 3*time.Second {
				t.Errorf("took %s: the fetch timeout did not apply", time.Since(start))
			}
			if tt.ok {
				expect(t, res, err, 0, "", "remote", clientauth.MethodPrivateKeyJWT)
				return
			}
			expect(t, res, err, 401, "invalid_client", "", "")
			t.Log(err)
			if !strings.Contains(err.Description, "could not be fetched") {
				t.Errorf("description %q does not say the keys could not be fetched", err.Description)
			}
			if err.Cause == nil {
				t.Error("no cause for the log")
			}
		})
	}
}

// A failed fetch is not retried at once, so a client whose server is down
// cannot be used to make us hammer it.
func TestJWKSURLFailureBacksOff(t *testing.T) {
	e, srv, a := remoteEnv(t, clientauth.Options{})
	valid := jwks(t, a.jwk("sig", ""))
	srv.set(http.StatusServiceUnavailable, nil)
	for range 3 {
		res, err := remoteAuth(t, e, a)
		expect(t, res, err, 401, "invalid_client", "", "")
	}
	wantHits(t, srv, 1)

	srv.set(http.StatusOK, valid)
	e.clock.Advance(clientauth.DefaultJWKSMinRefetch + time.Second)
	res, err := remoteAuth(t, e, a)
	expect(t, res, err, 0, "", "remote", clientauth.MethodPrivateKeyJWT)
	wantHits(t, srv, 2)
}

// A failed refetch for an unknown kid leaves the known keys usable.
func TestJWKSURLFailedRefetchKeepsFreshSet(t *testing.T) {
	e, srv, a := remoteEnv(t, clientauth.Options{})
	res, err := remoteAuth(t, e, a)
	expect(t, res, err, 0, "", "remote", clientauth.MethodPrivateKeyJWT)

	srv.set(http.StatusInternalServerError, nil)
	res, err = remoteAuth(t, e, a.with(jose.ES384, "unknown"))
	expect(t, res, err, 401, "invalid_client", "", "")
	e.clock.Advance(clientauth.DefaultJWKSMinRefetch + time.Second)
	res, err = remoteAuth(t, e, a.with(jose.ES384, "unknown"))
	expect(t, res, err, 401, "invalid_client", "", "")
	wantHits(t, srv, 2)

	res, err = remoteAuth(t, e, a)
	expect(t, res, err, 0, "", "remote", clientauth.MethodPrivateKeyJWT)
	wantHits(t, srv, 2)
}

func TestJWKSURLConcurrentFetchOnce(t *testing.T) {
	e, srv, a := remoteEnv(t, clientauth.Options{})
	hold := make(chan struct{})
	srv.setHold(hold)

	const n = 16
	assertions := make([]string, n)
	for i := range assertions {
		assertions[i] = a.sign(t, claims("remote", "t1", fmt.Sprintf("c%d", i), e.clock.Now()))
	}
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for _, as := range assertions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := newFormRequest(t, assertionForm(as))
			_, err := e.auth.Authenticate(e.ctx, "t1", endpoint("t1"), r, r.PostForm)
			errs <- err
		}()
	}
	// Let the requests pile up behind the first fetch, then answer it.
	for srv.hits.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	wantHits(t, srv, 1)
}

// TestJWKSFetchRefusesInternalAddresses: by default a client's JWKS URL
// cannot reach loopback or private addresses, and redirects are not followed.
func TestJWKSFetchRefusesInternalAddresses(t *testing.T) {
	e := newEnv(t, clientauth.Options{})
	a := ecSigner(t, jose.ES384, "a", elliptic.P384())
	srv := newJWKSServer(t, jwks(t, a.jwk("sig", "")))
	e.client(storage.Client{TenantID: "t1", ID: "remote", Type: storage.ClientConfidentialAsymmetric, JWKSURL: srv.URL + "/jwks.json"})
	if _, err := remoteAuth(t, e, a); err == nil || err.Code != "invalid_client" {
		t.Fatalf("a loopback JWKS URL was fetched by default: %v", err)
	}
	wantHits(t, srv, 0)

	// Allowed networks, but a redirect to the real key set is still refused.
	e2, srv2, a2 := remoteEnv(t, clientauth.Options{})
	hop := httptest.NewServer(http.RedirectHandler(srv2.URL+"/jwks.json", http.StatusFound))
	defer hop.Close()
	e2.client(storage.Client{TenantID: "t1", ID: "hop", Type: storage.ClientConfidentialAsymmetric, JWKSURL: hop.URL + "/jwks.json"})
	jti := fmt.Sprintf("jti-hop-%d", e2.clock.Now().UnixNano())
	if _, err := e2.authenticate("t1", assertionForm(a2.sign(t, claims("hop", "t1", jti, e2.clock.Now()))), ""); err == nil {
		t.Fatal("a redirecting JWKS URL was followed")
	}
	wantHits(t, srv2, 0)
}
