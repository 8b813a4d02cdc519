package oidc_test

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/smartauth/smartauth/federation"
	"github.com/smartauth/smartauth/federation/oidc"
	"github.com/smartauth/smartauth/federation/oidctest"
	smstorage "github.com/smartauth/smartauth/storage"
)

var (
	cognitoPatient = oidctest.Person{ID: "c-sub-1", Username: "pat@clinic.example", Password: "pw-1", Email: "pat@clinic.example", EmailVerified: true,
		Claims: map[string]any{"custom:tenant_id": "acme", "custom:patient_id": "p-42", "email": "pat@clinic.example", "email_verified": true}}
	cognitoStranger = oidctest.Person{ID: "c-sub-2", Username: "x@other.example", Password: "pw-2", Email: "x@other.example",
		Claims: map[string]any{"custom:tenant_id": "other-clinic", "custom:patient_id": "p-1"}}
	oktaDoctor = oidctest.Person{ID: "00u-okta-7", Username: "dr@hospital.example", Password: "pw-3", Email: "dr@hospital.example", EmailVerified: true,
		Claims: map[string]any{"groups": []any{"Everyone", "Doctors"}, "fhirUser": "Practitioner/7"}}

	cognitoMapping = smstorage.ClaimMapping{TenantClaim: "custom:tenant_id", PatientClaim: "custom:patient_id"}
	oktaMapping    = smstorage.ClaimMapping{FHIRUserClaim: "fhirUser", GroupsClaim: "groups", GroupRoles: map[string]string{"Doctors": "Attending physician"}}
)

func connector(t *testing.T, p *oidctest.Provider, userinfo bool) *oidc.Connector {
	t.Helper()
	c, err := oidc.New(oidc.Config{Issuer: p.Issuer(), ClientID: p.ClientID, ClientSecret: p.ClientSecret, UserInfo: userinfo, HTTPClient: anyAddress})
	if err != nil {
		t.Fatalf("new connector: %v", err)
	}
	return c
}

// signIn runs one sign-in as the lead's handlers will: AuthURL, the
// browser at the provider, then Exchange with what the session kept.
// exchangeNonce, when set, replaces the nonce given to Exchange.
func signIn(t *testing.T, p *oidctest.Provider, c *oidc.Connector, who oidctest.Person, exchangeNonce string) (federation.Identity, error) {
	t.Helper()
	state, nonce, verifier := randomString(t), randomString(t), randomString(t)
	authURL, err := c.AuthURL(t.Context(), state, nonce, verifier, redirectURI)
	if err != nil {
		t.Fatalf("AuthURL: %v", err)
	}
	back := login(t, p, authURL, who)
	if back.Get("state") != state {
		t.Fatalf("state came back as %q, want %q", back.Get("state"), state)
	}
	if exchangeNonce != "" {
		nonce = exchangeNonce
	}
	return c.Exchange(t.Context(), back.Get("code"), verifier, redirectURI, nonce)
}

func TestCognitoShapedProvider(t *testing.T) {
	p := startProvider(t, oidctest.ShapeCognito, cognitoPatient, cognitoStranger)
	c := connector(t, p, false)

	id, err := signIn(t, p, c, cognitoPatient, "")
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	if id.Issuer != p.Issuer() || id.Subject != cognitoPatient.ID || id.Email != cognitoPatient.Email || !id.EmailVerified {
		t.Fatalf("identity = %+v", id)
	}
	m, err := federation.MapClaims("acme", cognitoMapping, id.Claims)
	if err != nil || m.FHIRUser != "Patient/p-42" || m.Patient != "p-42" {
		t.Fatalf("MapClaims = %+v, %v; want Patient/p-42", m, err)
	}

	// A user of another clinic's pool signs in at the provider, and the
	// tenant claim refuses them here.
	id, err = signIn(t, p, c, cognitoStranger, "")
	if err != nil {
		t.Fatalf("sign in of the stranger: %v", err)
	}
	var re *federation.RefusalError
	if _, err := federation.MapClaims("acme", cognitoMapping, id.Claims); !errors.As(err, &re) || re.Reason != federation.ReasonTenantMismatch {
		t.Fatalf("MapClaims of another tenant's user: %v, want %s", err, federation.ReasonTenantMismatch)
	}
}

func TestOktaShapedProvider(t *testing.T) {
	p := startProvider(t, oidctest.ShapeOkta, oktaDoctor)
	c := connector(t, p, true)
	id, err := signIn(t, p, c, oktaDoctor, "")
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	// Email comes from userinfo: with an access token issued, the provider
	// leaves profile claims out of the ID token.
	if id.Issuer != p.Issuer() || id.Subject != oktaDoctor.ID || id.Email != oktaDoctor.Email || !id.EmailVerified || !slices.Equal(id.AMR, []string{"pwd"}) {
		t.Fatalf("identity = %+v", id)
	}
	m, err := federation.MapClaims("acme", oktaMapping, id.Claims)
	if err != nil || m.FHIRUser != "Practitioner/7" || !slices.Equal(m.Roles, []string{"Attending physician"}) {
		t.Fatalf("MapClaims = %+v, %v", m, err)
	}
}

func TestRefusedTokens(t *testing.T) {
	p := startProvider(t, oidctest.ShapeCognito, cognitoPatient)
	foreign, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	type tamper = oidctest.RewriteFunc
	signedWith := func(key any, change func(map[string]any)) tamper {
		return func(claims map[string]any) (string, any) {
			change(claims)
			return "RS256", key
		}
	}
	tests := []struct {
		name   string
		tamper tamper
		nonce  string
		reason federation.Reason
	}{
		{"wrong issuer", signedWith(nil, func(c map[string]any) { c["iss"] = p.ServerURL() + "/eu-west-1_OtherPool" }), "", federation.ReasonWrongIssuer},
		{"wrong audience", signedWith(nil, func(c map[string]any) { c["aud"] = []string{"another-client"} }), "", federation.ReasonWrongAudience},
		{"expired", signedWith(nil, func(c map[string]any) {
			c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
			c["exp"] = time.Now().Add(-time.Hour).Unix()
		}), "", federation.ReasonExpired},
		{"nonce changed by the provider", signedWith(nil, func(c map[string]any) { c["nonce"] = "replayed-nonce" }), "", federation.ReasonNonceMismatch},
		{"nonce of another sign-in", nil, "nonce-of-another-sign-in", federation.ReasonNonceMismatch},
		{"unsigned", func(c map[string]any) (string, any) { return "none", nil }, "", federation.ReasonMalformedToken},
		{"key not in the JWKS", signedWith(foreign, func(map[string]any) {}), "", federation.ReasonBadSignature},
		{"claims changed after signing", func(c map[string]any) (string, any) {
			c["custom:tenant_id"] = "acme-evil"
			return "RS256", foreign
		}, "", federation.ReasonBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := connector(t, p, false)
			p.SetIDTokenRewrite(tc.tamper)
			defer p.SetIDTokenRewrite(nil)
			id, err := signIn(t, p, c, cognitoPatient, tc.nonce)
			var re *federation.RefusalError
			if !errors.As(err, &re) || re.Reason != tc.reason {
				t.Fatalf("got %+v, %v; want refusal %s", id, err, tc.reason)
			}
		})
	}
	// The same connector still accepts an honest token afterwards.
	if _, err := signIn(t, p, connector(t, p, false), cognitoPatient, ""); err != nil {
		t.Fatalf("honest sign-in after the refusals: %v", err)
	}
}

func TestWrongVerifierIsRefusedByTheProvider(t *testing.T) {
	p := startProvider(t, oidctest.ShapeOkta, oktaDoctor)
	c := connector(t, p, false)
	state, nonce, verifier := randomString(t), randomString(t), randomString(t)
	authURL, err := c.AuthURL(t.Context(), state, nonce, verifier, redirectURI)
	if err != nil {
		t.Fatal(err)
	}
	back := login(t, p, authURL, oktaDoctor)
	_, err = c.Exchange(t.Context(), back.Get("code"), randomString(t), redirectURI, nonce)
	var re *federation.RefusalError
	if !errors.As(err, &re) || re.Reason != federation.ReasonExchangeFailed {
		t.Fatalf("exchange with another verifier: %v, want %s", err, federation.ReasonExchangeFailed)
	}
}

func TestUnreachableProvider(t *testing.T) {
	c, err := oidc.New(oidc.Config{Issuer: "http://127.0.0.1:1/pool", ClientID: "x", HTTPClient: anyAddress})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.AuthURL(t.Context(), "s", "n", randomString(t), redirectURI)
	var re *federation.RefusalError
	if !errors.As(err, &re) || re.Reason != federation.ReasonUnavailable {
		t.Fatalf("AuthURL with the provider down: %v", err)
	}
}

func TestPresets(t *testing.T) {
	cfg, err := oidc.Cognito(oidc.CognitoConfig{Region: "eu-west-1", UserPoolID: "eu-west-1_AbC123", HostedUIDomain: "clinic.auth.eu-west-1.amazoncognito.com", ClientID: "cid", ClientSecret: "sec"})
	if err != nil || cfg.Issuer != "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123" || cfg.ClientID != "cid" || cfg.ClientSecret != "sec" {
		t.Fatalf("Cognito = %+v, %v", cfg, err)
	}
	cfg, err = oidc.Okta(oidc.OktaConfig{OrgURL: "https://clinic.okta.com/", ClientID: "cid"})
	if err != nil || cfg.Issuer != "https://clinic.okta.com/oauth2/default" {
		t.Fatalf("Okta = %+v, %v", cfg, err)
	}
	cfg, err = oidc.Okta(oidc.OktaConfig{OrgURL: "https://clinic.okta.com", AuthorizationServerID: "aus1x2", ClientID: "cid"})
	if err != nil || cfg.Issuer != "https://clinic.okta.com/oauth2/aus1x2" {
		t.Fatalf("Okta with a server id = %+v, %v", cfg, err)
	}
	for name, bad := range map[string]error{
		"region":                 errOf(oidc.Cognito(oidc.CognitoConfig{Region: "mars", UserPoolID: "mars_x", ClientID: "c"})),
		"pool of another region": errOf(oidc.Cognito(oidc.CognitoConfig{Region: "eu-west-1", UserPoolID: "us-east-1_x", ClientID: "c"})),
		"pool with a path":       errOf(oidc.Cognito(oidc.CognitoConfig{Region: "eu-west-1", UserPoolID: "eu-west-1_x/../y", ClientID: "c"})),
		"hosted UI domain":       errOf(oidc.Cognito(oidc.CognitoConfig{Region: "eu-west-1", UserPoolID: "eu-west-1_x", HostedUIDomain: "https://x", ClientID: "c"})),
		"okta over http":         errOf(oidc.Okta(oidc.OktaConfig{OrgURL: "http://clinic.okta.com", ClientID: "c"})),
		"okta with a path":       errOf(oidc.Okta(oidc.OktaConfig{OrgURL: "https://clinic.okta.com/oauth2", ClientID: "c"})),
		"okta server id":         errOf(oidc.Okta(oidc.OktaConfig{OrgURL: "https://clinic.okta.com", AuthorizationServerID: "../x", ClientID: "c"})),
	} {
		if bad == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, issuer := range []string{"http://idp.example", "ftp://idp.example", "https://idp.example?x=1", "not a url"} {
		if _, err := oidc.New(oidc.Config{Issuer: issuer, ClientID: "c", HTTPClient: anyAddress}); err == nil {
			t.Errorf("New accepted issuer %q", issuer)
		}
	}
}

func errOf(_ oidc.Config, err error) error { return err }
