package server

import (
	"net/http"
	"slices"

	"github.com/smartauth/smartauth/server/clientauth"
	"github.com/smartauth/smartauth/server/oauth"
	"github.com/smartauth/smartauth/server/smart"
	"github.com/smartauth/smartauth/storage"
)

// smartConfiguration is the SMART App Launch discovery document
// (SMART App Launch 2.2 §Conformance). It advertises only what is
// implemented; each capability adds its endpoints and flags here.
type smartConfiguration struct {
	Issuer                    string   `json:"issuer"`
	JWKSURI                   string   `json:"jwks_uri"`
	GrantTypesSupported       []string `json:"grant_types_supported"`
	Capabilities              []string `json:"capabilities"`
	ScopesSupported           []string `json:"scopes_supported,omitempty"`
	ResponseTypesSupported    []string `json:"response_types_supported,omitempty"`
	AuthorizationEndpoint     string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint             string   `json:"token_endpoint,omitempty"`
	CodeChallengeMethods      []string `json:"code_challenge_methods_supported,omitempty"`
	TokenEndpointAuthMethods  []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	IntrospectionEndpoint     string   `json:"introspection_endpoint,omitempty"`
	RevocationEndpoint        string   `json:"revocation_endpoint,omitempty"`
	TokenEndpointAuthSigningA []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	// AccessTokenSigningAlgs names the algorithm the tenant signs access tokens with now.
	AccessTokenSigningAlgs []string `json:"access_token_signing_alg_values_supported"`
	// RegistrationEndpoint takes RFC 7591 registrations with an initial access token.
	RegistrationEndpoint string `json:"registration_endpoint,omitempty"`
}

// openIDConfiguration is the OpenID Connect Discovery 1.0 document.
type openIDConfiguration struct {
	Issuer                 string   `json:"issuer"`
	JWKSURI                string   `json:"jwks_uri"`
	SubjectTypesSupported  []string `json:"subject_types_supported"`
	ResponseTypesSupported []string `json:"response_types_supported"`
	IDTokenSigningAlgs     []string `json:"id_token_signing_alg_values_supported"`
	// AccessTokenSigningAlgs names the algorithm the tenant signs access tokens with now.
	AccessTokenSigningAlgs   []string `json:"access_token_signing_alg_values_supported"`
	AuthorizationEndpoint    string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint            string   `json:"token_endpoint,omitempty"`
	UserinfoEndpoint         string   `json:"userinfo_endpoint,omitempty"`
	ScopesSupported          []string `json:"scopes_supported,omitempty"`
	ClaimsSupported          []string `json:"claims_supported,omitempty"`
	IntrospectionEndpoint    string   `json:"introspection_endpoint,omitempty"`
	RevocationEndpoint       string   `json:"revocation_endpoint,omitempty"`
	GrantTypesSupported      []string `json:"grant_types_supported,omitempty"`
	TokenEndpointAuthMethods []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	TokenEndpointAuthSigning []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	CodeChallengeMethods     []string `json:"code_challenge_methods_supported,omitempty"`
	// EndSessionEndpoint signs the person out (RP-Initiated Logout 1.0).
	EndSessionEndpoint string `json:"end_session_endpoint,omitempty"`
	// IssParameterSupported announces iss in authorization responses (RFC 9207).
	IssParameterSupported bool `json:"authorization_response_iss_parameter_supported,omitempty"`
	// RegistrationEndpoint takes RFC 7591 registrations with an initial access token.
	RegistrationEndpoint string `json:"registration_endpoint,omitempty"`
}

// accessTokenSigningAlgs is the access_token_signing_alg_values_supported
// of both discovery documents. Neither SMART, OpenID Connect discovery nor
// RFC 8414 defines a field for it; this name follows the pattern of the
// registered *_signing_alg_values_supported fields, and other servers use
// it. It holds the one algorithm new tokens are signed with, so a resource
// server that pins an algorithm knows which; tokens signed before a change
// of setting keep their own algorithm and key until they expire.
func accessTokenSigningAlgs(t storage.Tenant) []string {
	return []string{oauth.AccessTokenAlg(t)}
}

func (s *Server) jwksURI(tenantID string) string {
	return s.Issuer(tenantID) + "/.well-known/jwks.json"
}

// Client authentication methods and assertion algorithms of the token,
// introspection and revocation endpoints (server/clientauth).
var (
	tokenEndpointAuthMethods = []string{"client_secret_basic", "client_secret_post", "private_key_jwt"}
	assertionAlgs            = clientauth.Algorithms()
)

func (s *Server) smartConfiguration(w http.ResponseWriter, r *http.Request) error {
	t, err := s.tenant(r)
	if err != nil {
		return err
	}
	iss := s.Issuer(t.ID)
	doc := smartConfiguration{
		Issuer:                    iss,
		JWKSURI:                   s.jwksURI(t.ID),
		AuthorizationEndpoint:     iss + "/authorize",
		TokenEndpoint:             iss + "/token",
		IntrospectionEndpoint:     iss + "/introspect",
		RevocationEndpoint:        iss + "/revoke",
		RegistrationEndpoint:      iss + "/register",
		GrantTypesSupported:       slices.Clone(grantTypes),
		TokenEndpointAuthMethods:  slices.Clone(tokenEndpointAuthMethods),
		TokenEndpointAuthSigningA: slices.Clone(assertionAlgs),
		AccessTokenSigningAlgs:    accessTokenSigningAlgs(t),
		CodeChallengeMethods:      []string{"S256"},
		ResponseTypesSupported:    []string{"code"},
		Capabilities:              smart.Capabilities(),
		ScopesSupported:           smart.ScopesSupported(),
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, doc)
	return nil
}

func (s *Server) openIDConfiguration(w http.ResponseWriter, r *http.Request) error {
	t, err := s.tenant(r)
	if err != nil {
		return err
	}
	iss := s.Issuer(t.ID)
	doc := openIDConfiguration{
		Issuer:                   iss,
		JWKSURI:                  s.jwksURI(t.ID),
		AuthorizationEndpoint:    iss + "/authorize",
		TokenEndpoint:            iss + "/token",
		UserinfoEndpoint:         iss + "/userinfo",
		EndSessionEndpoint:       iss + "/logout",
		IntrospectionEndpoint:    iss + "/introspect",
		RevocationEndpoint:       iss + "/revoke",
		RegistrationEndpoint:     iss + "/register",
		SubjectTypesSupported:    []string{"public"},
		ResponseTypesSupported:   []string{"code"},
		IDTokenSigningAlgs:       []string{oauth.IDTokenAlg},
		AccessTokenSigningAlgs:   accessTokenSigningAlgs(t),
		GrantTypesSupported:      slices.Clone(grantTypes),
		TokenEndpointAuthMethods: slices.Clone(tokenEndpointAuthMethods),
		TokenEndpointAuthSigning: slices.Clone(assertionAlgs),
		CodeChallengeMethods:     []string{"S256"},
		IssParameterSupported:    true,
		ClaimsSupported:          []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "fhirUser"},
		ScopesSupported:          smart.ScopesSupported(),
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, doc)
	return nil
}

// jwks publishes the tenant's active keys and those inside their retirement
// window. The cache lifetime is far shorter than any retirement window, so a
// verifier always sees a new key before tokens signed with it circulate widely.
func (s *Server) jwks(w http.ResponseWriter, r *http.Request) error {
	t, err := s.tenant(r)
	if err != nil {
		return err
	}
	set, err := s.keys.PublicJWKS(r.Context(), t.ID)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Content-Type", "application/jwk-set+json")
	writeJSON(w, http.StatusOK, set)
	return nil
}
