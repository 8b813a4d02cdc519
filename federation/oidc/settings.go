package oidc

import (
	"fmt"

	"github.com/smartauth/smartauth/storage"
)

// ConfigFor returns the connector configuration of a stored identity
// provider; presets derive the issuer again from what the operator gave,
// so a stored issuer cannot drift from the preset's fields.
func ConfigFor(p storage.IdentityProvider, clientSecret string) (Config, error) {
	s := p.Settings
	var cfg Config
	var err error
	switch p.Type {
	case storage.IdentityProviderCognito:
		cfg, err = Cognito(CognitoConfig{Region: s.Region, UserPoolID: s.UserPoolID, HostedUIDomain: s.HostedUIDomain, ClientID: s.ClientID, ClientSecret: clientSecret})
	case storage.IdentityProviderOkta:
		cfg, err = Okta(OktaConfig{OrgURL: s.OrgURL, AuthorizationServerID: s.AuthorizationServerID, ClientID: s.ClientID, ClientSecret: clientSecret})
	case storage.IdentityProviderOIDC:
		cfg = Config{Issuer: s.Issuer, ClientID: s.ClientID, ClientSecret: clientSecret}
	default:
		return Config{}, fmt.Errorf("oidc: identity provider %q has unknown type %q", p.ID, p.Type)
	}
	if err != nil {
		return Config{}, fmt.Errorf("identity provider %q: %w", p.ID, err)
	}
	if s.Scopes != nil {
		cfg.Scopes = s.Scopes
	}
	cfg.UserInfo = s.UserInfo
	return cfg, nil
}
