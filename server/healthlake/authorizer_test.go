package healthlake_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/smartauth/smartauth/server/healthlake"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// The datastore endpoints follow the form of AWS's examples.
const (
	datastore      = "https://healthlake.us-east-1.amazonaws.com/datastore/d1/r4/"
	otherDatastore = "https://healthlake.us-east-1.amazonaws.com/datastore/d2/r4/"
	roleARN        = "arn:aws:iam::123456789012:role/healthlake-smart"
)

var actor = manage.Actor{ID: "test"}

// env is a running smartauth with a tenant "clinic" whose FHIR base URL is
// the datastore, and a tenant "other" on another datastore.
type env struct {
	srv                  *servertest.Server
	clientID, secret     string // a backend app of clinic
	inspectID, inspectSe string // the authorizer's own client of clinic, for introspection
}

func start(t *testing.T) *env {
	t.Helper()
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	for id, base := range map[string]string{"clinic": datastore, "other": otherDatastore} {
		if _, err := srv.Manage.CreateTenant(context.Background(), manage.TenantInput{
			ID: id, Name: id, FHIRBaseURLs: []string{base},
		}, actor); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{srv: srv}
	e.clientID, e.secret = backend(t, srv, "clinic")
	e.inspectID, e.inspectSe = backend(t, srv, "clinic")
	return e
}

func backend(t *testing.T, srv *servertest.Server, tenant string) (string, string) {
	t.Helper()
	c, secret, err := srv.Manage.CreateClient(context.Background(), manage.ClientInput{
		TenantID: tenant, Name: "backend", Type: storage.ClientConfidentialSymmetric,
		Scopes: []string{"system/*.rs"}, GrantTypes: []string{manage.GrantClientCredentials},
	}, actor)
	if err != nil {
		t.Fatal(err)
	}
	return c.ID, secret
}

// post sends a form to one of the tenant's endpoints as a client.
func post(t *testing.T, endpoint, id, secret string, form url.Values) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// token obtains a real client_credentials access token from the tenant.
func token(t *testing.T, srv *servertest.Server, tenant, id, secret string) string {
	t.Helper()
	status, body := post(t, srv.Issuer(tenant)+"/token", id, secret,
		url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}})
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &out); status != http.StatusOK || err != nil || out.AccessToken == "" {
		t.Fatalf("token: %d %s", status, body)
	}
	return out.AccessToken
}

// signed signs claims with key under kid, the way the issuer would.
func signed(t *testing.T, key jose.JSONWebKey, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: key},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// header reads a token's protected header without trusting it.
func header(t *testing.T, tok string) jose.Header {
	t.Helper()
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.PS256})
	if err != nil {
		t.Fatal(err)
	}
	return parsed.Headers[0]
}

func (e *env) authorizer(t *testing.T, change func(*healthlake.Config)) *healthlake.Authorizer {
	t.Helper()
	cfg := healthlake.Config{
		Issuer: e.srv.Issuer("clinic"), Audience: datastore, IAMRoleARN: roleARN,
		Now: e.srv.Clock.Now, HTTPClient: &http.Client{Timeout: 5 * time.Second},
	}
	if change != nil {
		change(&cfg)
	}
	a, err := healthlake.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// event is HealthLake's request for a FHIR read carrying the token.
func event(endpoint, tok string) healthlake.Event {
	return healthlake.Event{DatastoreEndpoint: endpoint, OperationName: "read", BearerToken: "Bearer " + tok}
}

func TestHandleAuthorizesAValidToken(t *testing.T) {
	e := start(t)
	a := e.authorizer(t, nil)
	tok := token(t, e.srv, "clinic", e.clientID, e.secret)
	var claims struct {
		Iat int64 `json:"iat"`
		Exp int64 `json:"exp"`
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	for _, bearer := range []string{"Bearer " + tok, tok} {
		ev := event(datastore, "")
		ev.BearerToken = bearer
		got, err := a.Handle(context.Background(), ev)
		if err != nil {
			t.Fatal(err)
		}
		want := healthlake.Response{
			AuthPayload: healthlake.AuthPayload{
				Iss: e.srv.Issuer("clinic"), Aud: datastore, Iat: claims.Iat, Nbf: claims.Iat, Exp: claims.Exp,
				IsAuthorized: true, UID: e.clientID, Scope: "system/*.rs",
			},
			IAMRoleARN: roleARN,
		}
		if got != want {
			t.Fatalf("response\n got %+v\nwant %+v", got, want)
		}
	}
}

func TestHandleRefusesBadTokens(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	tok := token(t, e.srv, "clinic", e.clientID, e.secret)
	h := header(t, tok)
	active, err := e.srv.Keys.ActiveKey(ctx, "clinic", h.Algorithm)
	if err != nil {
		t.Fatal(err)
	}
	now := e.srv.Clock.Now()
	valid := map[string]any{
		"iss": e.srv.Issuer("clinic"), "aud": []string{datastore}, "sub": "app", "client_id": "app",
		"scope": "system/*.rs", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": "j1",
	}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for key, val := range valid {
			m[key] = val
		}
		m[k] = v
		return m
	}
	stranger, _ := rsa.GenerateKey(rand.Reader, 2048)
	parts := strings.Split(tok, ".")
	forged, _ := json.Marshal(with("scope", "system/*.cruds"))
	otherID, otherSecret := backend(t, e.srv, "other")

	cases := []struct {
		name   string
		token  func(t *testing.T) string
		config func(*healthlake.Config)
	}{
		{name: "no token", token: func(*testing.T) string { return "" }},
		{name: "not a JWT", token: func(*testing.T) string { return "i8hweunweunweofiwweoijewiwe" }},
		{name: "expired", token: func(t *testing.T) string {
			tok := token(t, e.srv, "clinic", e.clientID, e.secret)
			e.srv.Clock.Advance(2 * time.Hour)
			t.Cleanup(func() { e.srv.Clock.Advance(-2 * time.Hour) })
			return tok
		}},
		{name: "wrong audience", token: func(*testing.T) string { return tok }, config: func(c *healthlake.Config) { c.Audience = otherDatastore }},
		{name: "another tenant's token", token: func(t *testing.T) string { return token(t, e.srv, "other", otherID, otherSecret) }},
		{name: "another tenant's token under its own issuer", token: func(t *testing.T) string {
			return signed(t, active, with("iss", e.srv.Issuer("other")))
		}},
		{name: "unknown key", token: func(t *testing.T) string {
			return signed(t, jose.JSONWebKey{Key: stranger, KeyID: "stranger", Algorithm: "RS256"}, valid)
		}},
		{name: "unknown key with a known kid", token: func(t *testing.T) string {
			return signed(t, jose.JSONWebKey{Key: stranger, KeyID: h.KeyID, Algorithm: "RS256"}, valid)
		}},
		{name: "tampered payload", token: func(*testing.T) string {
			return parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2]
		}},
		{name: "no resource scope", token: func(t *testing.T) string {
			return signed(t, active, with("scope", "openid fhirUser launch/patient"))
		}},
		{name: "empty scope", token: func(t *testing.T) string { return signed(t, active, with("scope", "")) }},
		{name: "no exp", token: func(t *testing.T) string {
			m := with("scope", "system/*.rs")
			delete(m, "exp")
			return signed(t, active, m)
		}},
		{name: "issued in the future", token: func(t *testing.T) string {
			return signed(t, active, with("iat", now.Add(time.Hour).Unix()))
		}},
		{name: "revoked, with introspection", token: func(t *testing.T) string {
			tok := token(t, e.srv, "clinic", e.clientID, e.secret)
			if status, body := post(t, e.srv.Issuer("clinic")+"/revoke", e.clientID, e.secret, url.Values{"token": {tok}}); status != http.StatusOK {
				t.Fatalf("revoke: %d %s", status, body)
			}
			return tok
		}, config: func(c *healthlake.Config) {
			c.IntrospectionClientID, c.IntrospectionClientSecret = e.inspectID, e.inspectSe
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := e.authorizer(t, tc.config)
			got, err := a.Handle(ctx, event(a.Audience(), tc.token(t)))
			if err != nil {
				t.Fatalf("a bad token is answered, not an error: %v", err)
			}
			if got.AuthPayload.IsAuthorized || got.IAMRoleARN != "" {
				t.Fatalf("refusal expected, got %+v", got)
			}
		})
	}
}

// TestIntrospectionIsConsulted: the same token passes the signature checks,
// and only introspection knows it was revoked.
func TestIntrospectionIsConsulted(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	tok := token(t, e.srv, "clinic", e.clientID, e.secret)
	offline := e.authorizer(t, nil)
	online := e.authorizer(t, func(c *healthlake.Config) {
		c.IntrospectionClientID, c.IntrospectionClientSecret = e.inspectID, e.inspectSe
	})
	for _, a := range []*healthlake.Authorizer{offline, online} {
		if got, err := a.Handle(ctx, event(datastore, tok)); err != nil || !got.AuthPayload.IsAuthorized {
			t.Fatalf("before revocation: %+v, %v", got, err)
		}
	}
	if status, body := post(t, e.srv.Issuer("clinic")+"/revoke", e.clientID, e.secret, url.Values{"token": {tok}}); status != http.StatusOK {
		t.Fatalf("revoke: %d %s", status, body)
	}
	if got, err := offline.Handle(ctx, event(datastore, tok)); err != nil || !got.AuthPayload.IsAuthorized {
		t.Fatalf("without introspection a revoked JWT still verifies offline: %+v, %v", got, err)
	}
	if got, err := online.Handle(ctx, event(datastore, tok)); err != nil || got.AuthPayload.IsAuthorized {
		t.Fatalf("with introspection: %+v, %v", got, err)
	}
}

func TestHandleFailsWhenMisconfigured(t *testing.T) {
	e := start(t)
	tok := token(t, e.srv, "clinic", e.clientID, e.secret)
	cases := []struct {
		name   string
		ev     healthlake.Event
		config func(*healthlake.Config)
	}{
		{name: "event for another datastore", ev: event(otherDatastore, tok)},
		{name: "event names no datastore", ev: event("", tok)},
		{name: "introspection credentials refused", ev: event(datastore, tok), config: func(c *healthlake.Config) {
			c.IntrospectionClientID, c.IntrospectionClientSecret = e.inspectID, "wrong"
		}},
		{name: "issuer unreachable", ev: event(datastore, tok), config: func(c *healthlake.Config) {
			c.Issuer = "http://127.0.0.1:1/t/clinic"
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := e.authorizer(t, tc.config)
			if got, err := a.Handle(context.Background(), tc.ev); err == nil {
				t.Fatalf("want an error, got %+v", got)
			}
		})
	}
}

func TestNewRefusesIncompleteConfig(t *testing.T) {
	ok := healthlake.Config{Issuer: "https://auth.example.org/t/clinic", Audience: datastore, IAMRoleARN: roleARN}
	if _, err := healthlake.New(ok); err != nil {
		t.Fatalf("complete config: %v", err)
	}
	cases := map[string]func(*healthlake.Config){
		"no issuer":             func(c *healthlake.Config) { c.Issuer = "" },
		"relative issuer":       func(c *healthlake.Config) { c.Issuer = "/t/clinic" },
		"no audience":           func(c *healthlake.Config) { c.Audience = "" },
		"no role":               func(c *healthlake.Config) { c.IAMRoleARN = "" },
		"client id, no secret":  func(c *healthlake.Config) { c.IntrospectionClientID = "x" },
		"secret, no client id":  func(c *healthlake.Config) { c.IntrospectionClientSecret = "x" },
		"audience not absolute": func(c *healthlake.Config) { c.Audience = "datastore/d1" },
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := ok
			change(&cfg)
			if _, err := healthlake.New(cfg); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

// countingTransport counts requests for the JWKS.
type countingTransport struct{ jwks atomic.Int32 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/.well-known/jwks.json") {
		c.jwks.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestKeyRotationIsPickedUpOnUnknownKid(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	a := e.authorizer(t, func(c *healthlake.Config) { c.RefreshInterval = time.Minute })
	before := token(t, e.srv, "clinic", e.clientID, e.secret)
	if got, err := a.Handle(ctx, event(datastore, before)); err != nil || !got.AuthPayload.IsAuthorized {
		t.Fatalf("before rotation: %+v, %v", got, err)
	}
	if _, err := e.srv.Manage.RotateKeys(ctx, "clinic", 2*time.Hour, actor); err != nil {
		t.Fatal(err)
	}
	after := token(t, e.srv, "clinic", e.clientID, e.secret)
	if header(t, after).KeyID == header(t, before).KeyID {
		t.Fatal("rotation kept the kid")
	}
	e.srv.Clock.Advance(time.Minute)
	for _, tok := range []string{after, before} {
		if got, err := a.Handle(ctx, event(datastore, tok)); err != nil || !got.AuthPayload.IsAuthorized {
			t.Fatalf("after rotation: %+v, %v", got, err)
		}
	}
}

func TestUnknownKidsFetchAtMostOncePerInterval(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	counter := &countingTransport{}
	a := e.authorizer(t, func(c *healthlake.Config) {
		c.RefreshInterval = time.Minute
		c.HTTPClient = &http.Client{Transport: counter, Timeout: 5 * time.Second}
	})
	stranger, _ := rsa.GenerateKey(rand.Reader, 2048)
	now := e.srv.Clock.Now()
	bad := func(i int) string {
		return signed(t, jose.JSONWebKey{Key: stranger, KeyID: "kid-" + string(rune('a'+i)), Algorithm: "RS256"}, map[string]any{
			"iss": e.srv.Issuer("clinic"), "aud": datastore, "scope": "system/*.rs", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		})
	}
	for i := range 20 {
		if got, err := a.Handle(ctx, event(datastore, bad(i))); err != nil || got.AuthPayload.IsAuthorized {
			t.Fatalf("unknown kid: %+v, %v", got, err)
		}
	}
	if n := counter.jwks.Load(); n != 1 {
		t.Fatalf("%d JWKS fetches for 20 unknown kids inside one interval, want 1", n)
	}
	e.srv.Clock.Advance(time.Minute)
	for i := range 5 {
		a.Handle(ctx, event(datastore, bad(i)))
	}
	if n := counter.jwks.Load(); n != 2 {
		t.Fatalf("%d JWKS fetches after the interval passed, want 2", n)
	}
	// A known kid is served from the cache.
	if got, err := a.Handle(ctx, event(datastore, token(t, e.srv, "clinic", e.clientID, e.secret))); err != nil || !got.AuthPayload.IsAuthorized {
		t.Fatalf("valid token: %+v, %v", got, err)
	}
	if n := counter.jwks.Load(); n != 2 {
		t.Fatalf("%d JWKS fetches, want the cached set used", n)
	}
}
