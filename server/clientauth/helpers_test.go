package clientauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/smartauth/smartauth/server/clientauth"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/sqlite"
)

// clock is a settable clock shared by the test and the Authenticator.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a real SQLite store, a clock and an Authenticator over them.
type env struct {
	t     *testing.T
	ctx   context.Context
	store storage.Storage
	clock *clock
	auth  *clientauth.Authenticator
}

func newEnv(t *testing.T, opts clientauth.Options) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Unix(1_900_000_000, 0).UTC()}
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	e := &env{t: t, ctx: ctx, store: st, clock: clk, auth: clientauth.New(st, opts)}
	for _, id := range []string{"t1", "t2"} {
		if err := st.CreateTenant(ctx, storage.Tenant{ID: id, Name: "Tenant " + id, CreatedAt: clk.Now()}, nil); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// client registers c, filling in the fields storage needs.
func (e *env) client(c storage.Client) {
	e.t.Helper()
	if c.Name == "" {
		c.Name = c.ID
	}
	c.CreatedAt, c.UpdatedAt = e.clock.Now(), e.clock.Now()
	if err := e.store.CreateClient(e.ctx, c); err != nil {
		e.t.Fatal(err)
	}
}

// endpoint is the token endpoint URL assertions of tenant must name.
func endpoint(tenant string) string {
	return "https://auth.example/t/" + tenant + "/token"
}

// authenticate runs Authenticate on a POST of form with the Authorization
// header authz (if not empty). A failure must be an *Error whose text
// quotes no secret, assertion or Authorization header.
func (e *env) authenticate(tenant string, form url.Values, authz string) (clientauth.Result, *clientauth.Error) {
	e.t.Helper()
	r := newFormRequest(e.t, form)
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	res, err := e.auth.Authenticate(e.ctx, tenant, endpoint(tenant), r, r.PostForm)
	if err == nil {
		return res, nil
	}
	var aerr *clientauth.Error
	if !asError(err, &aerr) {
		e.t.Fatalf("error %v (%T) is not a *clientauth.Error", err, err)
	}
	for _, s := range []string{form.Get("client_secret"), form.Get("client_assertion"), strings.TrimPrefix(authz, "Basic ")} {
		if len(s) > 3 && (strings.Contains(aerr.Description, s) || strings.Contains(aerr.Error(), s)) {
			e.t.Errorf("error %q quotes a credential", aerr.Error())
		}
	}
	return res, aerr
}

// newFormRequest is a parsed POST of form to a token endpoint.
func newFormRequest(t *testing.T, form url.Values) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, endpoint("t1"), strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if err := r.ParseForm(); err != nil {
		t.Fatal(err)
	}
	return r
}

// asError reports whether err is a *clientauth.Error, setting target.
func asError(err error, target **clientauth.Error) bool {
	return errors.As(err, target)
}

// expect checks an outcome: status 0 means success with method.
func expect(t *testing.T, res clientauth.Result, err *clientauth.Error, status int, code, clientID, method string) {
	t.Helper()
	if status == 0 {
		if err != nil {
			t.Fatalf("failed: %v", err)
		}
		if res.Client.ID != clientID || res.Method != method {
			t.Fatalf("got client %q method %q, want %q %q", res.Client.ID, res.Method, clientID, method)
		}
		return
	}
	if err == nil {
		t.Fatalf("succeeded as %q with %s, want %d %s", res.Client.ID, res.Method, status, code)
	}
	if err.Status != status || err.Code != code {
		t.Fatalf("got %d %s (%v), want %d %s", err.Status, err.Code, err, status, code)
	}
}

// basic builds an Authorization header the RFC 6749 §2.3.1 way.
func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// rawBasic builds an Authorization header without form-urlencoding.
func rawBasic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
}

// signer is a private key that signs assertions with one algorithm.
type signer struct {
	alg  jose.SignatureAlgorithm
	kid  string
	priv any
}

func rsaSigner(t *testing.T, alg jose.SignatureAlgorithm, kid string, bits int) signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return signer{alg: alg, kid: kid, priv: k}
}

func ecSigner(t *testing.T, alg jose.SignatureAlgorithm, kid string, curve elliptic.Curve) signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{alg: alg, kid: kid, priv: k}
}

// with returns the same key used with another algorithm or kid.
func (s signer) with(alg jose.SignatureAlgorithm, kid string) signer {
	return signer{alg: alg, kid: kid, priv: s.priv}
}

// jwk is the public key as published, with the given use and alg.
func (s signer) jwk(use, alg string) jose.JSONWebKey {
	k := jose.JSONWebKey{Key: s.priv, KeyID: s.kid, Use: use, Algorithm: alg}
	return k.Public()
}

// sign returns a compact JWS of claims; an empty kid leaves the header without one.
func (s signer) sign(t *testing.T, claims any) string {
	t.Helper()
	key := jose.SigningKey{Algorithm: s.alg, Key: s.priv}
	if s.kid != "" {
		key.Key = jose.JSONWebKey{Key: s.priv, KeyID: s.kid}
	}
	sig, err := jose.NewSigner(key, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// jwks returns a JSON Web Key Set document.
func jwks(t *testing.T, keys ...jose.JSONWebKey) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// claims are valid assertion claims for clientID in tenant at now.
func claims(clientID, tenant, jti string, now time.Time) map[string]any {
	return map[string]any{
		"iss": clientID,
		"sub": clientID,
		"aud": endpoint(tenant),
		"exp": now.Add(2 * time.Minute).Unix(),
		"iat": now.Unix(),
		"jti": jti,
	}
}

// assertionForm is a private_key_jwt request body.
func assertionForm(assertion string) url.Values {
	return url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {clientauth.AssertionType},
		"client_assertion":      {assertion},
	}
}
