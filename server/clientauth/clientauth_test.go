package clientauth_test

import (
	"crypto/elliptic"
	"net/http"
	"net/url"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/smartauth/smartauth/server/clientauth"
	"github.com/smartauth/smartauth/server/clientsecret"
	"github.com/smartauth/smartauth/storage"
)

func TestSecretAndNone(t *testing.T) {
	e := newEnv(t, clientauth.Options{})
	secret, digest, err := clientsecret.Generate()
	if err != nil {
		t.Fatal(err)
	}
	// Characters that form-urlencoding changes, so a server that does not
	// decode Basic credentials (or decodes them twice) fails.
	const oddSecret = "p+q:r/s=t~u%41"
	e.client(storage.Client{TenantID: "t1", ID: "app.v2~web", Type: storage.ClientConfidentialSymmetric, SecretHash: digest})
	e.client(storage.Client{TenantID: "t1", ID: "svc:a+b", Type: storage.ClientConfidentialSymmetric, SecretHash: clientsecret.Digest(oddSecret)})
	e.client(storage.Client{TenantID: "t1", ID: "spa", Type: storage.ClientPublic})
	// A client turned public keeps no right to its old secret.
	e.client(storage.Client{TenantID: "t1", ID: "was-confidential", Type: storage.ClientPublic, SecretHash: digest})
	e.client(storage.Client{TenantID: "t1", ID: "backend", Type: storage.ClientConfidentialAsymmetric,
		JWKS: jwks(t, ecSigner(t, jose.ES384, "k", elliptic.P384()).jwk("sig", ""))})
	// The same id and secret in another tenant must not authenticate in t1.
	otherSecret, otherDigest, err := clientsecret.Generate()
	if err != nil {
		t.Fatal(err)
	}
	e.client(storage.Client{TenantID: "t2", ID: "elsewhere", Type: storage.ClientConfidentialSymmetric, SecretHash: otherDigest})
	e.client(storage.Client{TenantID: "t2", ID: "spa2", Type: storage.ClientPublic})

	anAssertion := assertionForm("x.y.z")
	tests := []struct {
		name      string
		form      url.Values
		authz     string
		status    int
		code      string
		client    string
		method    string
		challenge bool
	}{
		{name: "basic", authz: basic("app.v2~web", secret), client: "app.v2~web", method: clientauth.MethodSecretBasic},
		{name: "basic with odd characters in id and secret", authz: basic("svc:a+b", oddSecret), client: "svc:a+b", method: clientauth.MethodSecretBasic},
		{name: "basic secret not form-urlencoded", authz: rawBasic("svc%3Aa%2Bb", oddSecret), status: 401, code: "invalid_client", challenge: true},
		{name: "basic lowercase scheme", authz: "basic " + basic("app.v2~web", secret)[len("Basic "):], client: "app.v2~web", method: clientauth.MethodSecretBasic},
		{name: "basic with matching client_id", form: url.Values{"client_id": {"app.v2~web"}}, authz: basic("app.v2~web", secret), client: "app.v2~web", method: clientauth.MethodSecretBasic},
		{name: "basic with other client_id", form: url.Values{"client_id": {"spa"}}, authz: basic("app.v2~web", secret), status: 401, code: "invalid_client", challenge: true},
		{name: "basic wrong secret", authz: basic("app.v2~web", secret+"x"), status: 401, code: "invalid_client", challenge: true},
		{name: "basic empty secret", authz: basic("app.v2~web", ""), status: 401, code: "invalid_client", challenge: true},
		{name: "basic unknown client", authz: basic("nobody", secret), status: 401, code: "invalid_client", challenge: true},
		{name: "basic other tenant's client", authz: basic("elsewhere", otherSecret), status: 401, code: "invalid_client", challenge: true},
		{name: "basic public client", authz: basic("spa", secret), status: 401, code: "invalid_client", challenge: true},
		{name: "basic public client with a stale secret", authz: basic("was-confidential", secret), status: 401, code: "invalid_client", challenge: true},
		{name: "post public client with a stale secret", form: url.Values{"client_id": {"was-confidential"}, "client_secret": {secret}}, status: 401, code: "invalid_client"},
		{name: "basic asymmetric client", authz: basic("backend", secret), status: 401, code: "invalid_client", challenge: true},
		{name: "basic not base64", authz: "Basic !!!", status: 401, code: "invalid_client", challenge: true},
		{name: "basic without colon", authz: "Basic " + "YXBw", status: 401, code: "invalid_client", challenge: true},
		{name: "bearer scheme", authz: "Bearer abc", status: 401, code: "invalid_client", challenge: true},
		{name: "post", form: url.Values{"client_id": {"app.v2~web"}, "client_secret": {secret}}, client: "app.v2~web", method: clientauth.MethodSecretPost},
		{name: "post odd secret", form: url.Values{"client_id": {"svc:a+b"}, "client_secret": {oddSecret}}, client: "svc:a+b", method: clientauth.MethodSecretPost},
		{name: "post wrong secret", form: url.Values{"client_id": {"app.v2~web"}, "client_secret": {otherSecret}}, status: 401, code: "invalid_client"},
		{name: "post without client_id", form: url.Values{"client_secret": {secret}}, status: 401, code: "invalid_client"},
		{name: "post other tenant's client", form: url.Values{"client_id": {"elsewhere"}, "client_secret": {otherSecret}}, status: 401, code: "invalid_client"},
		{name: "post public client", form: url.Values{"client_id": {"spa"}, "client_secret": {secret}}, status: 401, code: "invalid_client"},
		{name: "post asymmetric client", form: url.Values{"client_id": {"backend"}, "client_secret": {secret}}, status: 401, code: "invalid_client"},
		{name: "none", form: url.Values{"client_id": {"spa"}}, client: "spa", method: clientauth.MethodNone},
		{name: "none with empty client_secret", form: url.Values{"client_id": {"spa"}, "client_secret": {""}}, client: "spa", method: clientauth.MethodNone},
		{name: "none symmetric client", form: url.Values{"client_id": {"app.v2~web"}}, status: 401, code: "invalid_client"},
		{name: "none asymmetric client", form: url.Values{"client_id": {"backend"}}, status: 401, code: "invalid_client"},
		{name: "none unknown client", form: url.Values{"client_id": {"nobody"}}, status: 401, code: "invalid_client"},
		{name: "none other tenant's client", form: url.Values{"client_id": {"spa2"}}, status: 401, code: "invalid_client"},
		{name: "no identification", form: url.Values{"grant_type": {"client_credentials"}}, status: 401, code: "invalid_client"},
		{name: "basic and post", form: url.Values{"client_id": {"app.v2~web"}, "client_secret": {secret}}, authz: basic("app.v2~web", secret), status: 400, code: "invalid_request"},
		{name: "basic and assertion", form: anAssertion, authz: basic("app.v2~web", secret), status: 400, code: "invalid_request"},
		{name: "post and assertion", form: merge(anAssertion, url.Values{"client_id": {"app.v2~web"}, "client_secret": {secret}}), status: 400, code: "invalid_request"},
		{name: "repeated client_id", form: url.Values{"client_id": {"spa", "spa"}}, status: 400, code: "invalid_request"},
		{name: "repeated client_secret", form: url.Values{"client_id": {"app.v2~web"}, "client_secret": {secret, secret}}, status: 400, code: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := e.authenticate("t1", tt.form, tt.authz)
			if err != nil {
				t.Log(err)
			}
			expect(t, res, err, tt.status, tt.code, tt.client, tt.method)
			if err != nil {
				got := err.WWWAuthenticate("smartauth t1")
				if tt.challenge && got != `Basic realm="smartauth t1"` {
					t.Errorf("WWW-Authenticate %q, want a Basic challenge", got)
				}
				if !tt.challenge && got != "" {
					t.Errorf("WWW-Authenticate %q, want none", got)
				}
			}
		})
	}
}

func TestWWWAuthenticateQuotesRealm(t *testing.T) {
	err := &clientauth.Error{Status: http.StatusUnauthorized, Code: "invalid_client", Method: clientauth.MethodSecretBasic}
	if got, want := err.WWWAuthenticate(`a "b" \c`), `Basic realm="a \"b\" \\c"`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	err.Status = http.StatusBadRequest
	if got := err.WWWAuthenticate("r"); got != "" {
		t.Errorf("a 400 got a challenge: %s", got)
	}
}

func merge(vs ...url.Values) url.Values {
	out := url.Values{}
	for _, v := range vs {
		for k, vals := range v {
			out[k] = append(out[k], vals...)
		}
	}
	return out
}
