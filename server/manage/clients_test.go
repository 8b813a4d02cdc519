package manage

import (
	"errors"
	"testing"

	"github.com/smartauth/smartauth/storage"
)

func TestCheckRedirectURI(t *testing.T) {
	tests := []struct {
		uri string
		ok  bool
	}{
		{"https://app.example/callback", true},
		{"https://app.example:8443/cb?tenant=1", true},
		{"http://127.0.0.1:5000/cb", true},
		{"http://[::1]/cb", true},
		{"http://localhost/cb", true},
		{"com.example.app:/oauth2redirect", true},
		{"http://app.example/cb", false},
		{"http://127.0.0.1.evil.example/cb", false},
		{"myapp:/cb", false},
		{"/relative/cb", false},
		{"https://app.example/cb#frag", false},
		{"https://*.example/cb", false},
		{"https:///nohost", false},
		{"", false},
	}
	for _, tc := range tests {
		err := checkRedirectURI(tc.uri)
		if (err == nil) != tc.ok {
			t.Errorf("checkRedirectURI(%q) = %v, want ok=%v", tc.uri, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("checkRedirectURI(%q): error %v does not wrap ErrInvalid", tc.uri, err)
		}
	}
}

func TestValidateClientDefaults(t *testing.T) {
	c, err := validateClient(ClientInput{Name: "x", Type: storage.ClientConfidentialAsymmetric, JWKSURL: "https://app.example/jwks",
		Scopes: []string{"system/*.rs openid", "openid"}, RedirectURIs: []string{"https://app.example/cb", "https://app.example/cb"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Scopes) != 2 || len(c.RedirectURIs) != 1 {
		t.Fatalf("duplicates kept: scopes %v, redirects %v", c.Scopes, c.RedirectURIs)
	}
	if len(c.GrantTypes) != 3 || c.GrantTypes[2] != GrantClientCredentials {
		t.Fatalf("asymmetric default grants %v", c.GrantTypes)
	}
	for _, bad := range []ClientInput{
		{Name: "x", Type: storage.ClientPublic, JWKSURL: "https://a.example/jwks", Scopes: []string{"openid"}, GrantTypes: []string{GrantRefreshToken}},
		{Name: "x", Type: storage.ClientConfidentialAsymmetric, JWKSURL: "http://a.example/jwks", Scopes: []string{"s"}, GrantTypes: []string{GrantClientCredentials}},
		{Name: "x", Type: storage.ClientPublic, Scopes: []string{"bad\"scope"}, GrantTypes: []string{GrantRefreshToken}},
		{Name: "x", Type: storage.ClientPublic, Scopes: []string{"s"}, GrantTypes: []string{"implicit"}},
		{ID: "white space", Name: "x", Type: storage.ClientPublic, Scopes: []string{"s"}, GrantTypes: []string{GrantRefreshToken}},
		{Name: "x", Type: storage.ClientPublic, Scopes: []string{"s"}, LaunchURI: "ftp://a.example", GrantTypes: []string{GrantRefreshToken}},
	} {
		if _, err := validateClient(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("validateClient(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}
