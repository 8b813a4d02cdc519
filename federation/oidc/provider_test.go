package oidc_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/storage"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// The OpenID provider of these tests is zitadel/oidc's op package with its
// in-memory example storage: an independent implementation that serves
// discovery, JWKS, the authorization and token endpoints and userinfo, and
// signs real ID tokens.

const redirectURI = "https://smartauth.example/t/acme/federation/callback"

// person is a user of the test provider and the extra claims it asserts.
type person struct {
	id, username, password, email string
	emailVerified                 bool
	// claims go into the ID token and the userinfo answer.
	claims map[string]any
}

// users is the provider's user directory.
type users map[string]*storage.User

func (u users) GetUserByID(id string) *storage.User { return u[id] }
func (u users) GetUserByUsername(name string) *storage.User {
	for _, x := range u {
		if x.Username == name {
			return x
		}
	}
	return nil
}
func (u users) ExampleClientID() string { return "service" }

// claimStorage adds each person's extra claims to what the example
// storage asserts, as Cognito adds custom: attributes and Okta groups.
type claimStorage struct {
	*storage.Storage
	extra map[string]map[string]any
}

func (s *claimStorage) add(info *zoidc.UserInfo, subject string) {
	for k, v := range s.extra[subject] {
		info.AppendClaims(k, v)
	}
}

func (s *claimStorage) SetUserinfoFromRequest(ctx context.Context, info *zoidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, req, scopes); err != nil {
		return err
	}
	s.add(info, req.GetSubject())
	return nil
}

func (s *claimStorage) SetUserinfoFromToken(ctx context.Context, info *zoidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, info, tokenID, subject, origin); err != nil {
		return err
	}
	s.add(info, info.Subject)
	return nil
}

// provider is a running OpenID provider with one registered client.
type provider struct {
	issuer       string
	clientID     string
	clientSecret string
	store        *claimStorage
	srv          *httptest.Server

	mu sync.Mutex
	// tamper, when set, rewrites the ID token of the next token responses.
	tamper func(t *testing.T, claims map[string]any) (alg string, key any)
}

// startProvider runs a provider whose issuer is the server's URL plus path.
// idInToken puts each person's email and extra claims in the ID token
// (as Cognito does); otherwise they come from userinfo only (as Okta
// sends profile claims when an access token is issued too).
func startProvider(t *testing.T, path string, people ...person) *provider {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	p := &provider{issuer: srv.URL + path, clientID: "smartauth-client", clientSecret: "s3cret-of-the-client", srv: srv}

	dir := users{}
	extra := map[string]map[string]any{}
	for _, x := range people {
		dir[x.id] = &storage.User{ID: x.id, Username: x.username, Password: x.password, Email: x.email,
			EmailVerified: x.emailVerified, FirstName: "Test", LastName: x.id, PreferredLanguage: language.English}
		extra[x.id] = x.claims
	}
	clients := map[string]*storage.Client{p.clientID: storage.WebClient(p.clientID, p.clientSecret, redirectURI)}
	p.store = &claimStorage{Storage: storage.NewStorageWithClients(dir, clients), extra: extra}

	cfg := &op.Config{
		CryptoKey:          sha256.Sum256([]byte("provider state key")),
		CodeMethodS256:     true,
		AuthMethodPost:     true,
		SupportedUILocales: []language.Tag{language.English},
	}
	opr, err := op.NewProvider(cfg, p.store, op.StaticIssuer(p.issuer), op.WithAllowInsecure(),
		op.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatalf("start OpenID provider: %v", err)
	}
	mux.Handle(path+"/", http.StripPrefix(path, opr))
	// The token endpoint passes through to the provider, then rewrites the
	// ID token when a test asks it to.
	mux.HandleFunc("POST "+path+"/oauth/token", func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		http.StripPrefix(path, opr).ServeHTTP(rec, r)
		p.mu.Lock()
		tamper := p.tamper
		p.mu.Unlock()
		body := rec.Body.Bytes()
		if tamper != nil && rec.Code == http.StatusOK {
			body = p.rewrite(t, body, tamper)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		w.Write(body)
	})
	return p
}

// setTamper makes the token endpoint rewrite ID tokens.
func (p *provider) setTamper(f func(t *testing.T, claims map[string]any) (string, any)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tamper = f
}

// providerKey returns the provider's own signing key and key id.
func (p *provider) providerKey(t *testing.T) (*rsa.PrivateKey, string) {
	t.Helper()
	k, err := p.store.SigningKey(t.Context())
	if err != nil {
		t.Fatalf("provider signing key: %v", err)
	}
	return k.Key().(*rsa.PrivateKey), k.ID()
}

// rewrite re-issues the response's ID token with claims changed by tamper,
// signed as tamper says: "RS256" with the given key (nil: the provider's),
// or "none" unsigned.
func (p *provider) rewrite(t *testing.T, body []byte, tamper func(t *testing.T, claims map[string]any) (string, any)) []byte {
	var resp map[string]any
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Errorf("token response: %v", err)
		return body
	}
	raw, _ := resp["id_token"].(string)
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Errorf("token response holds no ID token: %s", body)
		return body
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	claims := map[string]any{}
	if err == nil {
		err = json.Unmarshal(payload, &claims)
	}
	if err != nil {
		t.Errorf("decode ID token: %v", err)
		return body
	}
	alg, key := tamper(t, claims)
	payload, _ = json.Marshal(claims)
	switch alg {
	case "none":
		head := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
		resp["id_token"] = head + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
	default:
		own, kid := p.providerKey(t)
		if key == nil {
			key = own
		}
		// The key id stays the provider's, so the verifier tries the
		// provider's key on a foreign signature.
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
		if err != nil {
			t.Errorf("signer: %v", err)
			return body
		}
		jws, err := signer.Sign(payload)
		if err == nil {
			resp["id_token"], err = jws.CompactSerialize()
		}
		if err != nil {
			t.Errorf("sign: %v", err)
			return body
		}
	}
	out, _ := json.Marshal(resp)
	return out
}

// login plays the browser and the person at the provider: it follows the
// authorization URL to the provider's login step, signs in as username,
// and returns the query the provider redirects back with.
func (p *provider) login(t *testing.T, authURL, username, password string) url.Values {
	t.Helper()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(authURL)
	if err != nil {
		t.Fatalf("authorization request: %v", err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil {
		t.Fatalf("authorization request: status %d, location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	reqID := loc.Query().Get("authRequestID")
	if reqID == "" {
		t.Fatalf("authorization request: no login step in %q", loc)
	}
	if err := p.store.CheckUsernamePassword(username, password, reqID); err != nil {
		t.Fatalf("sign in at the provider: %v", err)
	}
	resp, err = noFollow.Get(p.issuer + "/authorize/callback?id=" + url.QueryEscape(reqID))
	if err != nil {
		t.Fatalf("authorization callback: %v", err)
	}
	resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(back.String(), redirectURI+"?") {
		t.Fatalf("authorization callback: status %d, location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return back.Query()
}

func randomString(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
