package manage

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartauth/smartauth/federation/oidc"
	"github.com/smartauth/smartauth/storage"
)

func TestTestDiscovery(t *testing.T) {
	// doc serves a discovery document naming issuer, with change applied.
	doc := func(change func(d map[string]any)) func(w http.ResponseWriter, r *http.Request, issuer string) {
		return func(w http.ResponseWriter, r *http.Request, issuer string) {
			d := map[string]any{
				"issuer":                 issuer,
				"authorization_endpoint": issuer + "/authorize",
				"token_endpoint":         issuer + "/token",
				"jwks_uri":               issuer + "/jwks",
				"userinfo_endpoint":      issuer + "/userinfo",
				"scopes_supported":       []string{"openid", "email", "profile"},
			}
			if change != nil {
				change(d)
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(d)
		}
	}
	tests := []struct {
		name  string
		serve func(w http.ResponseWriter, r *http.Request, issuer string)
		says  string // part of the error; empty when discovery works
		logs  string // part of the cause kept for the log only
	}{
		{"a discovery document", doc(nil), "", ""},
		{"garbage", func(w http.ResponseWriter, r *http.Request, issuer string) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html><body>Welcome to nginx!</body></html>"))
		}, "not a JSON discovery document", "Welcome to nginx!"},
		{"wrong issuer", doc(func(d map[string]any) { d["issuer"] = "https://elsewhere.example" }), "names another issuer", "elsewhere.example"},
		{"no jwks_uri", doc(func(d map[string]any) { delete(d, "jwks_uri") }), "no jwks_uri", ""},
		{"no token endpoint", doc(func(d map[string]any) { d["token_endpoint"] = "" }), "no token_endpoint", ""},
		{"not found", func(w http.ResponseWriter, r *http.Request, issuer string) { http.NotFound(w, r) }, "HTTP status 404", "page not found"},
		{"an error page", func(w http.ResponseWriter, r *http.Request, issuer string) {
			http.Error(w, "internal secret-ish detail\n"+strings.Repeat("stack trace line\n", 1000), http.StatusInternalServerError)
		}, "HTTP status 500", "internal secret-ish detail"},
		{"a redirect", func(w http.ResponseWriter, r *http.Request, issuer string) {
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		}, "redirect", ""},
		{"an endless document", func(w http.ResponseWriter, r *http.Request, issuer string) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"issuer":"` + issuer + `","padding":"`))
			for range 2 * maxDiscoveryBytes / 1024 {
				if _, err := w.Write([]byte(strings.Repeat("x", 1024))); err != nil {
					return
				}
			}
		}, "larger than", ""},
	}
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		fx.tenant(t, "clinic")
		// The test servers listen on loopback, which the default client refuses.
		svc := fx.svc.WithHTTPClient(oidc.NewHTTPClient(nil))
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				var issuer string
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path != "/.well-known/openid-configuration" {
						http.NotFound(w, r)
						return
					}
					tc.serve(w, r, issuer)
				}))
				t.Cleanup(srv.Close)
				issuer = srv.URL
				id := "idp-" + string(rune('a'+i))
				_, _, err := fx.svc.AddIdentityProvider(ctx, "clinic", IdentityProviderInput{ID: id, Type: storage.IdentityProviderOIDC,
					Settings: storage.IdentityProviderSettings{Issuer: issuer, ClientID: "smartauth"}, ClientSecret: "upstream-secret"}, Actor{ID: "setup"})
				if err != nil {
					t.Fatal(err)
				}
				res, err := svc.TestDiscovery(ctx, "clinic", id)
				if tc.says == "" {
					want := DiscoveryResult{Issuer: issuer, AuthorizationEndpoint: issuer + "/authorize", TokenEndpoint: issuer + "/token",
						JWKSURI: issuer + "/jwks", UserInfoEndpoint: issuer + "/userinfo", ScopesSupported: []string{"openid", "email", "profile"}}
					if err != nil || res.Issuer != want.Issuer || res.AuthorizationEndpoint != want.AuthorizationEndpoint || res.TokenEndpoint != want.TokenEndpoint ||
						res.JWKSURI != want.JWKSURI || res.UserInfoEndpoint != want.UserInfoEndpoint || !slices.Equal(res.ScopesSupported, want.ScopesSupported) {
						t.Fatalf("got %+v, %v; want %+v", res, err, want)
					}
					return
				}
				var derr *DiscoveryError
				if !errors.As(err, &derr) {
					t.Fatalf("got %+v, %v; want a DiscoveryError", res, err)
				}
				msg := err.Error()
				prefix := "discovery at " + issuer + "/.well-known/openid-configuration failed: "
				if !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tc.says) {
					t.Fatalf("error %q; want it to start %q and say %q", msg, prefix, tc.says)
				}
				if len(msg) > len(prefix)+200 || strings.ContainsAny(msg, "\n\r") {
					t.Fatalf("error of %d bytes is not brief and on one line: %q", len(msg), msg)
				}
				// The upstream's answer reaches the log, briefly, never the caller.
				if tc.logs != "" {
					cause := derr.Err.Error()
					if strings.Contains(msg, tc.logs) || !strings.Contains(cause, tc.logs) {
						t.Fatalf("error %q, cause %q: want %q in the cause only", msg, cause, tc.logs)
					}
					if len(cause) > 2*maxLoggedBytes || strings.ContainsAny(cause, "\n\r") {
						t.Fatalf("cause of %d bytes is not brief and on one line: %q", len(cause), cause)
					}
				}
			})
		}

		t.Run("a provider that does not answer", func(t *testing.T) {
			release := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}))
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(release) })
			if _, _, err := fx.svc.AddIdentityProvider(ctx, "clinic", IdentityProviderInput{ID: "slow", Type: storage.IdentityProviderOIDC,
				Settings: storage.IdentityProviderSettings{Issuer: srv.URL, ClientID: "smartauth"}}, Actor{ID: "setup"}); err != nil {
				t.Fatal(err)
			}
			svc := svc.WithHTTPClient(&http.Client{Timeout: 200 * time.Millisecond})
			start := time.Now()
			_, err := svc.TestDiscovery(ctx, "clinic", "slow")
			var derr *DiscoveryError
			if !errors.As(err, &derr) || !strings.Contains(err.Error(), "discovery at "+srv.URL) {
				t.Fatalf("got %v, want a DiscoveryError", err)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("the test waited %v, not the client's timeout", time.Since(start))
			}
		})

		t.Run("a private address by default", func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				doc(nil)(w, r, "http://"+r.Host)
			}))
			t.Cleanup(srv.Close)
			// Named as localhost too, since the check must follow DNS.
			for i, issuer := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)} {
				id := "private-" + string(rune('a'+i))
				if _, _, err := fx.svc.AddIdentityProvider(ctx, "clinic", IdentityProviderInput{ID: id, Type: storage.IdentityProviderOIDC,
					Settings: storage.IdentityProviderSettings{Issuer: issuer, ClientID: "smartauth"}}, Actor{ID: "setup"}); err != nil {
					t.Fatal(err)
				}
				_, err := fx.svc.TestDiscovery(ctx, "clinic", id)
				var derr *DiscoveryError
				if !errors.As(err, &derr) || !strings.Contains(err.Error(), "not public") {
					t.Fatalf("discovery at %s: %v, want a refusal of the private address", issuer, err)
				}
			}
			if hits.Load() != 0 {
				t.Fatalf("the server on loopback was reached %d times", hits.Load())
			}
		})

		t.Run("an unknown provider", func(t *testing.T) {
			if _, err := fx.svc.TestDiscovery(ctx, "clinic", "ghost"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("got %v, want ErrNotFound", err)
			}
			if _, err := fx.svc.TestDiscovery(ctx, "other", "idp-a"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("through another tenant: got %v, want ErrNotFound", err)
			}
		})
	})
}
