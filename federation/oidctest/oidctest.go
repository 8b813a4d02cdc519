// Package oidctest runs a real OpenID provider inside tests, shaped like
// Amazon Cognito or Okta, for tests of federated sign-in. It is for tests
// only: no package of the server may import it.
//
// The provider is zitadel/oidc's op package with its in-memory example
// storage: an independent implementation that serves discovery, JWKS, the
// authorization and token endpoints and userinfo, and signs real ID tokens.
// A small login page stands in for the provider's hosted sign-in UI.
package oidctest

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/storage"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// Issuer path shapes accepted in Options.Shape.
const (
	// ShapeCognito puts the issuer at /{user pool id}, as Cognito's
	// https://cognito-idp.{region}.amazonaws.com/{user pool id}.
	ShapeCognito = "cognito"
	// ShapeOkta puts the issuer at /oauth2/default, as Okta's default
	// authorization server.
	ShapeOkta = "okta"
	// ShapePlain puts the issuer at the server's root.
	ShapePlain = "plain"
)

// CognitoPoolID is the user pool id in the issuer path of a Cognito-shaped provider.
const CognitoPoolID = "eu-west-1_TestPool1"

// Defaults for the one registered client when Options leaves them empty.
const (
	DefaultClientID     = "smartauth-client"
	DefaultClientSecret = "s3cret-of-the-client"
)

// Person is a user of the provider.
type Person struct {
	// ID is the subject the provider asserts.
	ID string
	// Username and Password sign the person in at the login page.
	Username, Password string
	Email              string
	EmailVerified      bool
	// Claims go into the ID token and the userinfo answer, as Cognito adds
	// custom: attributes and Okta groups.
	Claims map[string]any
}

// Options configure a provider.
type Options struct {
	// Shape is ShapeCognito, ShapeOkta or ShapePlain (the default).
	Shape string
	// ClientID and ClientSecret of the one registered client; empty means
	// DefaultClientID and DefaultClientSecret.
	ClientID, ClientSecret string
	// RedirectURIs the client may use; the provider refuses any other.
	RedirectURIs []string
	// People the provider knows.
	People []Person
	// AMR replaces the amr claim of ID tokens; nil leaves the provider's ["pwd"].
	AMR []string
}

// RewriteFunc changes the claims of an ID token the token endpoint is about
// to return, and says how to sign the result: alg "RS256" with key (nil
// means the provider's own key), or alg "none" for an unsigned token. The
// header keeps the provider's key id whatever the key.
type RewriteFunc func(claims map[string]any) (alg string, key any)

// Provider is a running OpenID provider with one registered client.
type Provider struct {
	// ClientID and ClientSecret of the registered client.
	ClientID, ClientSecret string

	issuer       string
	srv          *httptest.Server
	store        *claimStorage
	redirectURIs []string

	mu      sync.Mutex
	rewrite RewriteFunc
}

// Start runs a provider on an httptest server, closed when the test ends.
func Start(t testing.TB, opts Options) *Provider {
	t.Helper()
	var path string
	switch opts.Shape {
	case ShapeCognito:
		path = "/" + CognitoPoolID
	case ShapeOkta:
		path = "/oauth2/default"
	case ShapePlain, "":
	default:
		t.Fatalf("oidctest: unknown provider shape %q", opts.Shape)
	}
	p := &Provider{ClientID: opts.ClientID, ClientSecret: opts.ClientSecret, redirectURIs: opts.RedirectURIs}
	if p.ClientID == "" {
		p.ClientID = DefaultClientID
	}
	if p.ClientSecret == "" {
		p.ClientSecret = DefaultClientSecret
	}

	mux := http.NewServeMux()
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	p.issuer = p.srv.URL + path

	dir := users{}
	extra := map[string]map[string]any{}
	for _, x := range opts.People {
		dir[x.ID] = &storage.User{ID: x.ID, Username: x.Username, Password: x.Password, Email: x.Email,
			EmailVerified: x.EmailVerified, FirstName: "Test", LastName: x.ID, PreferredLanguage: language.English}
		extra[x.ID] = x.Claims
	}
	clients := map[string]*storage.Client{p.ClientID: storage.WebClient(p.ClientID, p.ClientSecret, opts.RedirectURIs...)}
	p.store = &claimStorage{Storage: storage.NewStorageWithClients(dir, clients), extra: extra, amr: opts.AMR}

	cfg := &op.Config{
		CryptoKey:          sha256.Sum256([]byte("provider state key")),
		CodeMethodS256:     true,
		AuthMethodPost:     true,
		SupportedUILocales: []language.Tag{language.English},
	}
	provider, err := op.NewProvider(cfg, p.store, op.StaticIssuer(p.issuer), op.WithAllowInsecure(),
		op.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatalf("oidctest: start OpenID provider: %v", err)
	}
	opHandler := http.StripPrefix(path, provider)
	mux.Handle(path+"/", opHandler)
	// The example clients send the browser to /login/username at the
	// server's root, whatever the issuer path, as a hosted UI on its own path.
	login := &loginPage{store: p.store, callback: op.AuthCallbackURL(provider)}
	mux.Handle(LoginPath, op.NewIssuerInterceptor(provider.IssuerFromRequest).Handler(login))
	// The token endpoint passes through to the provider, then rewrites the
	// ID token when a test asks it to.
	mux.HandleFunc("POST "+path+"/oauth/token", func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		opHandler.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if f := p.rewriter(); f != nil && rec.Code == http.StatusOK {
			out, err := p.rewriteIDToken(r.Context(), body, f)
			if err != nil {
				t.Errorf("oidctest: rewrite ID token: %v", err)
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			body = out
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

// Issuer returns the provider's issuer URL, the server's URL plus the shape's path.
func (p *Provider) Issuer() string { return p.issuer }

// ServerURL returns the URL of the server the provider runs on, without the issuer path.
func (p *Provider) ServerURL() string { return p.srv.URL }

// SetIDTokenRewrite makes the token endpoint rewrite ID tokens with f; nil stops it.
func (p *Provider) SetIDTokenRewrite(f RewriteFunc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rewrite = f
}

func (p *Provider) rewriter() RewriteFunc {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rewrite
}

// SigningKey returns the provider's own signing key and its key id.
func (p *Provider) SigningKey(t testing.TB) (*rsa.PrivateKey, string) {
	t.Helper()
	key, kid, err := p.signingKey(t.Context())
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}
	return key, kid
}

func (p *Provider) signingKey(ctx context.Context) (*rsa.PrivateKey, string, error) {
	k, err := p.store.SigningKey(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("provider signing key: %w", err)
	}
	key, ok := k.Key().(*rsa.PrivateKey)
	if !ok {
		return nil, "", fmt.Errorf("provider signing key is a %T, not RSA", k.Key())
	}
	return key, k.ID(), nil
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

// claimStorage adds each person's extra claims to what the example storage
// asserts, and replaces the amr of ID tokens when asked to.
type claimStorage struct {
	*storage.Storage
	extra map[string]map[string]any
	amr   []string
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

// amrRequest is an authorization request whose amr is replaced; the ID
// token takes its amr from the request the code is exchanged for.
type amrRequest struct {
	op.AuthRequest
	amr []string
}

func (r amrRequest) GetAMR() []string { return r.amr }

func (s *claimStorage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	r, err := s.Storage.AuthRequestByCode(ctx, code)
	if err != nil || s.amr == nil {
		return r, err
	}
	return amrRequest{AuthRequest: r, amr: s.amr}, nil
}

// unwrap gives the example storage back its own request type, which it
// needs to find the client and the authentication time of a token.
func unwrap(r op.TokenRequest) op.TokenRequest {
	if a, ok := r.(amrRequest); ok {
		return a.AuthRequest
	}
	return r
}

func (s *claimStorage) CreateAccessToken(ctx context.Context, r op.TokenRequest) (string, time.Time, error) {
	return s.Storage.CreateAccessToken(ctx, unwrap(r))
}

func (s *claimStorage) CreateAccessAndRefreshTokens(ctx context.Context, r op.TokenRequest, current string) (string, string, time.Time, error) {
	return s.Storage.CreateAccessAndRefreshTokens(ctx, unwrap(r), current)
}
