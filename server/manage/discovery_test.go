package manage

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

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
	}{
		{"a discovery document", doc(nil), ""},
		{"garbage", func(w http.ResponseWriter, r *http.Request, issuer string) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html><body>Welcome to nginx!</body></html>"))
		}, "Content-Type"},
		{"wrong issuer", doc(func(d map[string]any) { d["issuer"] = "https://elsewhere.example" }), "did not match"},
		{"no jwks_uri", doc(func(d map[string]any) { delete(d, "jwks_uri") }), "no jwks_uri"},
		{"no token endpoint", doc(func(d map[string]any) { d["token_endpoint"] = "" }), "no token_endpoint"},
		{"not found", func(w http.ResponseWriter, r *http.Request, issuer string) { http.NotFound(w, r) }, "404"},
		{"a long error page", func(w http.ResponseWriter, r *http.Request, issuer string) {
			http.Error(w, strings.Repeat("stack trace line\n", 1000), http.StatusInternalServerError)
		}, "500"},
		{"an endless document", func(w http.ResponseWriter, r *http.Request, issuer string) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"issuer":"` + issuer + `","padding":"`))
			for range 2 * maxDiscoveryBytes / 1024 {
				if _, err := w.Write([]byte(strings.Repeat("x", 1024))); err != nil {
					return
				}
			}
		}, "larger than"},
	}
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		fx.tenant(t, "clinic")
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
				res, err := fx.svc.TestDiscovery(ctx, "clinic", id)
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
				if len(msg) > len(prefix)+maxReasonBytes+len("…") || strings.ContainsAny(msg, "\n\r") {
					t.Fatalf("error of %d bytes is not brief and on one line: %q", len(msg), msg)
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
			svc := fx.svc.WithHTTPClient(&http.Client{Timeout: 200 * time.Millisecond})
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
