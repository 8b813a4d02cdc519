package oidc_test

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/smartauth/smartauth/federation/oidc"
	"github.com/smartauth/smartauth/federation/oidctest"
)

// The OpenID provider of these tests is oidctest's: zitadel/oidc's op
// package with its in-memory example storage, run in the test.

const redirectURI = "https://smartauth.example/t/acme/federation/callback"

// anyAddress reaches the provider on loopback, where the tests run it.
var anyAddress = oidc.NewHTTPClient(nil)

// startProvider runs a provider of the given shape that lets the connector
// redirect back to redirectURI.
func startProvider(t *testing.T, shape string, people ...oidctest.Person) *oidctest.Provider {
	t.Helper()
	return oidctest.Start(t, oidctest.Options{Shape: shape, RedirectURIs: []string{redirectURI}, People: people})
}

// login signs in at the provider through its login page and returns the
// query the provider redirects back to redirectURI with.
func login(t *testing.T, p *oidctest.Provider, authURL string, who oidctest.Person) url.Values {
	t.Helper()
	back := p.Login(t, &http.Client{}, authURL, who.Username, who.Password)
	if !strings.HasPrefix(back.String(), redirectURI+"?") {
		t.Fatalf("provider redirected back to %q, want %s", back, redirectURI)
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
