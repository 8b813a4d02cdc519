package oidc_test

import (
	"errors"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/smartauth/smartauth/federation"
	"github.com/smartauth/smartauth/federation/oidc"
	"github.com/smartauth/smartauth/federation/oidctest"
)

// TestVerifyPresentedTokens: tokens the provider issued that a client
// presents, as in token exchange, each checked for the audience its type needs.
func TestVerifyPresentedTokens(t *testing.T) {
	p := startProvider(t, oidctest.ShapeOkta)
	c, err := oidc.New(oidc.Config{Issuer: p.Issuer(), ClientID: p.ClientID, HTTPClient: anyAddress})
	if err != nil {
		t.Fatal(err)
	}
	key, kid := p.SigningKey(t)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sign := func(extra map[string]any) string {
		claims := map[string]any{"iss": p.Issuer(), "sub": "00u-1", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
		for k, v := range extra {
			claims[k] = v
		}
		raw, err := jwt.Signed(signer).Claims(claims).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	tests := []struct {
		name      string
		tokenType string
		claims    map[string]any
		refusal   federation.Reason // empty: accepted
	}{
		{"ID token for our client", oidc.TokenTypeIDToken, map[string]any{"aud": p.ClientID}, ""},
		{"ID token for another client", oidc.TokenTypeIDToken, map[string]any{"aud": "other"}, federation.ReasonWrongAudience},
		{"ID token with only a configured API audience", oidc.TokenTypeIDToken, map[string]any{"aud": "api://smartauth"}, federation.ReasonWrongAudience},
		{"access token for our client", oidc.TokenTypeJWT, map[string]any{"aud": p.ClientID}, ""},
		{"access token for an API only, issued to another client", oidc.TokenTypeJWT, map[string]any{"aud": "api://smartauth"}, federation.ReasonWrongAudience},
		{"Okta access token with cid", oidc.TokenTypeJWT, map[string]any{"aud": "api://default", "cid": p.ClientID}, ""},
		{"Cognito access token with client_id", oidc.TokenTypeJWT, map[string]any{"client_id": p.ClientID, "token_use": "access"}, ""},
		{"access token for someone else", oidc.TokenTypeJWT, map[string]any{"aud": "api://default", "cid": "other"}, federation.ReasonWrongAudience},
		{"expired", oidc.TokenTypeJWT, map[string]any{"aud": p.ClientID, "exp": now.Add(-time.Hour).Unix()}, federation.ReasonExpired},
		{"no subject", oidc.TokenTypeIDToken, map[string]any{"aud": p.ClientID, "sub": ""}, federation.ReasonMalformedToken},
	}
	for _, tc := range tests {
		id, err := c.Verify(t.Context(), sign(tc.claims), tc.tokenType)
		var re *federation.RefusalError
		switch {
		case tc.refusal == "" && (err != nil || id.Issuer != p.Issuer() || id.Subject != "00u-1"):
			t.Errorf("%s: %+v, %v; want accepted", tc.name, id, err)
		case tc.refusal != "" && (!errors.As(err, &re) || re.Reason != tc.refusal):
			t.Errorf("%s: %v, want refusal %s", tc.name, err, tc.refusal)
		}
	}
	if _, err := c.Verify(t.Context(), sign(map[string]any{"aud": p.ClientID}), "urn:ietf:params:oauth:token-type:saml2"); err == nil {
		t.Error("an unknown token type was verified")
	}
}
