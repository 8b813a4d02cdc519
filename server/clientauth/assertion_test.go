package clientauth_test

import (
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/smartauth/smartauth/server/clientauth"
	"github.com/smartauth/smartauth/server/clientsecret"
	"github.com/smartauth/smartauth/storage"
)

// inlineKeys are the keys of the inline-JWKS client "backend".
type inlineKeys struct {
	rsa, ec384, ec256, rs256only, enc, small, stranger signer
}

// newAssertionEnv registers "backend" (inline JWKS) in t1 and t2,
// "backend2" (other keys) in t1, a symmetric and a public client.
func newAssertionEnv(t *testing.T) (*env, inlineKeys) {
	t.Helper()
	e := newEnv(t, clientauth.Options{})
	k := inlineKeys{
		rsa:       rsaSigner(t, jose.RS384, "rsa", 2048),
		ec384:     ecSigner(t, jose.ES384, "ec384", elliptic.P384()),
		ec256:     ecSigner(t, jose.ES256, "ec256", elliptic.P256()),
		rs256only: rsaSigner(t, jose.RS256, "rs256only", 2048),
		enc:       rsaSigner(t, jose.RS384, "enc", 2048),
		small:     rsaSigner(t, jose.RS384, "small", 1024),
		stranger:  rsaSigner(t, jose.RS384, "rsa", 2048), // not registered, reuses a registered kid
	}
	set := jwks(t,
		k.rsa.jwk("", ""), // no use and no alg: usable for every RSA alg
		k.ec384.jwk("sig", "ES384"),
		k.ec256.jwk("", ""),
		k.rs256only.jwk("sig", "RS256"),
		k.enc.jwk("enc", ""),
		k.small.jwk("sig", ""),
	)
	e.client(storage.Client{TenantID: "t1", ID: "backend", Type: storage.ClientConfidentialAsymmetric, JWKS: set})
	e.client(storage.Client{TenantID: "t2", ID: "backend", Type: storage.ClientConfidentialAsymmetric, JWKS: set})
	e.client(storage.Client{TenantID: "t1", ID: "backend2", Type: storage.ClientConfidentialAsymmetric,
		JWKS: jwks(t, k.stranger.jwk("sig", ""))})
	e.client(storage.Client{TenantID: "t1", ID: "web", Type: storage.ClientConfidentialSymmetric, SecretHash: clientsecret.Digest("s")})
	e.client(storage.Client{TenantID: "t1", ID: "spa", Type: storage.ClientPublic})
	// The same keys on a client of another type must not make it asymmetric.
	e.client(storage.Client{TenantID: "t1", ID: "web-with-keys", Type: storage.ClientConfidentialSymmetric, SecretHash: clientsecret.Digest("s"), JWKS: set})
	return e, k
}

// unsigned returns a JWT with alg none.
func unsigned(t *testing.T, claims any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT","kid":"rsa"}`)) + "." + enc(payload) + "."
}

func TestPrivateKeyJWT(t *testing.T) {
	e, k := newAssertionEnv(t)
	now := e.clock.Now()
	pubDER, err := x509.MarshalPKIXPublicKey(&k.rsa.priv.(*rsa.PrivateKey).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	pubJWK, err := json.Marshal(k.rsa.jwk("", ""))
	if err != nil {
		t.Fatal(err)
	}

	// with returns valid claims for backend changed by f.
	with := func(jti string, f func(c map[string]any)) map[string]any {
		c := claims("backend", "t1", jti, now)
		if f != nil {
			f(c)
		}
		return c
	}
	set := func(key string, v any) func(map[string]any) {
		return func(c map[string]any) { c[key] = v }
	}
	del := func(key string) func(map[string]any) {
		return func(c map[string]any) { delete(c, key) }
	}

	tests := []struct {
		name   string
		form   url.Values
		tenant string // t1 unless set
		status int
		code   string
		client string
	}{
		{name: "RS384", form: assertionForm(k.rsa.sign(t, with("rs384", nil))), client: "backend"},
		{name: "RS256 with the same key", form: assertionForm(k.rsa.with(jose.RS256, "rsa").sign(t, with("rs256", nil))), client: "backend"},
		{name: "PS384", form: assertionForm(k.rsa.with(jose.PS384, "rsa").sign(t, with("ps384", nil))), client: "backend"},
		{name: "RS512", form: assertionForm(k.rsa.with(jose.RS512, "rsa").sign(t, with("rs512", nil))), client: "backend"},
		{name: "ES384", form: assertionForm(k.ec384.sign(t, with("es384", nil))), client: "backend"},
		{name: "ES256", form: assertionForm(k.ec256.sign(t, with("es256", nil))), client: "backend"},
		{name: "RS256 key with alg RS256", form: assertionForm(k.rs256only.sign(t, with("rs256only", nil))), client: "backend"},
		{name: "no kid", form: assertionForm(k.ec384.with(jose.ES384, "").sign(t, with("nokid", nil))), client: "backend"},
		{name: "no kid RSA", form: assertionForm(k.rsa.with(jose.RS384, "").sign(t, with("nokid-rsa", nil))), client: "backend"},
		{name: "same client in another tenant", tenant: "t2", form: assertionForm(k.rsa.sign(t, claims("backend", "t2", "t2", now))), client: "backend"},
		{name: "aud array", form: assertionForm(k.rsa.sign(t, with("audarray", set("aud", []string{"https://other.example", endpoint("t1")})))), client: "backend"},
		{name: "matching client_id", form: merge(assertionForm(k.rsa.sign(t, with("formid", nil))), url.Values{"client_id": {"backend"}}), client: "backend"},
		{name: "exp just past within leeway", form: assertionForm(k.rsa.sign(t, with("leeway", set("exp", now.Add(-20*time.Second).Unix())))), client: "backend"},
		{name: "exp five minutes ahead", form: assertionForm(k.rsa.sign(t, with("fivemin", set("exp", now.Add(5*time.Minute).Unix())))), client: "backend"},
		{name: "no iat", form: assertionForm(k.rsa.sign(t, with("noiat", del("iat")))), client: "backend"},

		{name: "other client_id", form: merge(assertionForm(k.rsa.sign(t, with("otherid", nil))), url.Values{"client_id": {"backend2"}}), status: 401, code: "invalid_client"},
		{name: "wrong assertion type", form: merge(url.Values{"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:saml2-bearer"}, "client_assertion": {k.rsa.sign(t, with("type", nil))}}), status: 400, code: "invalid_request"},
		{name: "type without assertion", form: url.Values{"client_assertion_type": {clientauth.AssertionType}}, status: 400, code: "invalid_request"},
		{name: "assertion without type", form: url.Values{"client_assertion": {k.rsa.sign(t, with("notype", nil))}}, status: 400, code: "invalid_request"},
		{name: "not a JWT", form: assertionForm("not-a-jwt"), status: 401, code: "invalid_client"},
		{name: "alg none", form: assertionForm(unsigned(t, with("none", nil))), status: 401, code: "invalid_client"},
		{name: "HS256 keyed with the public key PEM", form: assertionForm(signer{alg: jose.HS256, kid: "rsa", priv: pubPEM}.sign(t, with("hs-pem", nil))), status: 401, code: "invalid_client"},
		{name: "HS256 keyed with the public JWK", form: assertionForm(signer{alg: jose.HS256, kid: "rsa", priv: pubJWK}.sign(t, with("hs-jwk", nil))), status: 401, code: "invalid_client"},
		{name: "HS384 without kid", form: assertionForm(signer{alg: jose.HS384, priv: pubPEM}.sign(t, with("hs384", nil))), status: 401, code: "invalid_client"},
		{name: "wrong iss", form: assertionForm(k.rsa.sign(t, with("iss", set("iss", "backend2")))), status: 401, code: "invalid_client"},
		{name: "wrong sub", form: assertionForm(k.rsa.sign(t, with("sub", set("sub", "backend2")))), status: 401, code: "invalid_client"},
		{name: "iss and sub of another client", form: assertionForm(k.rsa.sign(t, with("both", func(c map[string]any) { c["iss"], c["sub"] = "backend2", "backend2" }))), status: 401, code: "invalid_client"},
		{name: "no iss", form: assertionForm(k.rsa.sign(t, with("noiss", del("iss")))), status: 401, code: "invalid_client"},
		{name: "unknown client", form: assertionForm(k.rsa.sign(t, claims("nobody", "t1", "nobody", now))), status: 401, code: "invalid_client"},
		{name: "client of another tenant", tenant: "t2", form: assertionForm(k.stranger.sign(t, claims("backend2", "t2", "x-tenant", now))), status: 401, code: "invalid_client"},
		{name: "symmetric client", form: assertionForm(k.rsa.sign(t, claims("web-with-keys", "t1", "sym", now))), status: 401, code: "invalid_client"},
		{name: "public client", form: assertionForm(k.rsa.sign(t, claims("spa", "t1", "pub", now))), status: 401, code: "invalid_client"},
		{name: "aud of another tenant", form: assertionForm(k.rsa.sign(t, with("aud", set("aud", endpoint("t2"))))), status: 401, code: "invalid_client"},
		{name: "aud with trailing slash", form: assertionForm(k.rsa.sign(t, with("audslash", set("aud", endpoint("t1")+"/")))), status: 401, code: "invalid_client"},
		{name: "no aud", form: assertionForm(k.rsa.sign(t, with("noaud", del("aud")))), status: 401, code: "invalid_client"},
		{name: "no exp", form: assertionForm(k.rsa.sign(t, with("noexp", del("exp")))), status: 401, code: "invalid_client"},
		{name: "expired", form: assertionForm(k.rsa.sign(t, with("expired", set("exp", now.Add(-time.Minute).Unix())))), status: 401, code: "invalid_client"},
		{name: "exp ten minutes ahead", form: assertionForm(k.rsa.sign(t, with("tenmin", set("exp", now.Add(10*time.Minute).Unix())))), status: 401, code: "invalid_client"},
		{name: "iat in the future", form: assertionForm(k.rsa.sign(t, with("iat", set("iat", now.Add(2*time.Minute).Unix())))), status: 401, code: "invalid_client"},
		{name: "nbf in the future", form: assertionForm(k.rsa.sign(t, with("nbf", set("nbf", now.Add(2*time.Minute).Unix())))), status: 401, code: "invalid_client"},
		{name: "no jti", form: assertionForm(k.rsa.sign(t, with("", del("jti")))), status: 401, code: "invalid_client"},
		{name: "key with use enc", form: assertionForm(k.enc.sign(t, with("enc", nil))), status: 401, code: "invalid_client"},
		{name: "key with use enc, no kid", form: assertionForm(k.enc.with(jose.RS384, "").sign(t, with("enc-nokid", nil))), status: 401, code: "invalid_client"},
		{name: "key with alg RS256 used for RS384", form: assertionForm(k.rs256only.with(jose.RS384, "rs256only").sign(t, with("algpin", nil))), status: 401, code: "invalid_client"},
		{name: "ES384 key with alg ES384 used for ES512 header", form: assertionForm(ecSigner(t, jose.ES512, "ec384", elliptic.P521()).sign(t, with("es512", nil))), status: 401, code: "invalid_client"},
		{name: "RSA key under 2048 bits", form: assertionForm(k.small.sign(t, with("small", nil))), status: 401, code: "invalid_client"},
		{name: "key not in the set, known kid", form: assertionForm(k.stranger.sign(t, with("stranger", nil))), status: 401, code: "invalid_client"},
		{name: "key not in the set, no kid", form: assertionForm(k.stranger.with(jose.RS384, "").sign(t, with("stranger-nokid", nil))), status: 401, code: "invalid_client"},
		{name: "unknown kid", form: assertionForm(k.rsa.with(jose.RS384, "nope").sign(t, with("unknown-kid", nil))), status: 401, code: "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tenant := tt.tenant
			if tenant == "" {
				tenant = "t1"
			}
			res, err := e.authenticate(tenant, tt.form, "")
			if err != nil {
				t.Log(err)
			}
			expect(t, res, err, tt.status, tt.code, tt.client, clientauth.MethodPrivateKeyJWT)
			if err != nil && err.WWWAuthenticate("r") != "" {
				t.Errorf("assertion failure asks for Basic: %v", err)
			}
		})
	}
}

func TestAssertionReplay(t *testing.T) {
	e, k := newAssertionEnv(t)
	now := e.clock.Now()
	a := k.rsa.sign(t, claims("backend", "t1", "once", now))
	res, err := e.authenticate("t1", assertionForm(a), "")
	expect(t, res, err, 0, "", "backend", clientauth.MethodPrivateKeyJWT)

	res, err = e.authenticate("t1", assertionForm(a), "")
	expect(t, res, err, 401, "invalid_client", "", "")
	if !strings.Contains(err.Description, "replayed") {
		t.Errorf("description %q does not say replayed", err.Description)
	}
	// A fresh assertion with the same jti is a replay too.
	e.clock.Advance(time.Second)
	res, err = e.authenticate("t1", assertionForm(k.ec384.sign(t, claims("backend", "t1", "once", e.clock.Now()))), "")
	expect(t, res, err, 401, "invalid_client", "", "")

	// jtis are per client and per tenant.
	res, err = e.authenticate("t1", assertionForm(k.stranger.sign(t, claims("backend2", "t1", "once", now))), "")
	expect(t, res, err, 0, "", "backend2", clientauth.MethodPrivateKeyJWT)
	res, err = e.authenticate("t2", assertionForm(k.rsa.sign(t, claims("backend", "t2", "once", now))), "")
	expect(t, res, err, 0, "", "backend", clientauth.MethodPrivateKeyJWT)
}

// A used jti is kept as long as its assertion could still be accepted, so
// sweeping expired jtis never reopens a replay window.
func TestJTIOutlivesLeeway(t *testing.T) {
	e, k := newAssertionEnv(t)
	now := e.clock.Now()
	c := claims("backend", "t1", "late", now)
	exp := now.Add(time.Minute)
	c["exp"] = exp.Unix()
	a := k.rsa.sign(t, c)
	res, err := e.authenticate("t1", assertionForm(a), "")
	expect(t, res, err, 0, "", "backend", clientauth.MethodPrivateKeyJWT)

	e.clock.Advance(exp.Sub(now) + clientauth.Leeway/2)
	if _, err := e.store.SweepExpired(e.ctx, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	res, err = e.authenticate("t1", assertionForm(a), "")
	expect(t, res, err, 401, "invalid_client", "", "")
	if !strings.Contains(err.Description, "replayed") {
		t.Errorf("description %q does not say replayed", err.Description)
	}
}

// An assertion that fails any check must not record its jti, or anyone who
// saw a jti could block the legitimate assertion carrying it.
func TestFailedAssertionDoesNotRecordJTI(t *testing.T) {
	e, k := newAssertionEnv(t)
	now := e.clock.Now()
	const jti = "shared"
	valid := func() map[string]any { return claims("backend", "t1", jti, now) }
	change := func(key string, v any) map[string]any {
		c := valid()
		c[key] = v
		return c
	}
	failing := map[string]string{
		"wrong aud":       k.rsa.sign(t, change("aud", "https://elsewhere.example/token")),
		"expired":         k.rsa.sign(t, change("exp", now.Add(-time.Hour).Unix())),
		"exp too far":     k.rsa.sign(t, change("exp", now.Add(10*time.Minute).Unix())),
		"iat in future":   k.rsa.sign(t, change("iat", now.Add(time.Hour).Unix())),
		"bad signature":   k.stranger.sign(t, valid()),
		"unknown kid":     k.rsa.with(jose.RS384, "nope").sign(t, valid()),
		"use enc":         k.enc.sign(t, valid()),
		"alg none":        unsigned(t, valid()),
		"HS256":           signer{alg: jose.HS256, kid: "rsa", priv: []byte("0123456789abcdef0123456789abcdef")}.sign(t, valid()),
		"sub mismatch":    k.rsa.sign(t, change("sub", "backend2")),
		"client mismatch": k.rsa.sign(t, change("iss", "backend2")),
	}
	for name, a := range failing {
		res, err := e.authenticate("t1", assertionForm(a), "")
		if err == nil {
			t.Fatalf("%s: succeeded as %s", name, res.Client.ID)
		}
	}
	res, err := e.authenticate("t1", assertionForm(k.rsa.sign(t, valid())), "")
	expect(t, res, err, 0, "", "backend", clientauth.MethodPrivateKeyJWT)
}

func TestAssertionRequiresEndpoint(t *testing.T) {
	e, k := newAssertionEnv(t)
	c := claims("backend", "t1", "noendpoint", e.clock.Now())
	c["aud"] = ""
	form := assertionForm(k.rsa.sign(t, c))
	r := newFormRequest(t, form)
	_, err := e.auth.Authenticate(e.ctx, "t1", "", r, r.PostForm)
	var aerr *clientauth.Error
	if !asError(err, &aerr) || aerr.Status != 500 {
		t.Fatalf("empty endpoint: got %v, want a 500", err)
	}
}
