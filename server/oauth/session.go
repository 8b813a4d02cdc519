package oauth

import (
	"encoding/json"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"
)

// Context is the SMART launch context a grant carries into its tokens,
// token responses and introspection.
type Context struct {
	Tenant            string          `json:"tenant"`
	Patient           string          `json:"patient,omitempty"`
	Encounter         string          `json:"encounter,omitempty"`
	FHIRUser          string          `json:"fhirUser,omitempty"`
	FHIRContext       json.RawMessage `json:"fhirContext,omitempty"`
	NeedPatientBanner *bool           `json:"need_patient_banner,omitempty"`
	SmartStyleURL     string          `json:"smart_style_url,omitempty"`
	Intent            string          `json:"intent,omitempty"`
}

// Session is what fosite keeps with every grant: the subject, expiries, the
// ID token claims and the SMART context. It is serialized into storage.
type Session struct {
	Subject   string                         `json:"sub"`
	ClientID  string                         `json:"client_id"`
	ExpiresAt map[fosite.TokenType]time.Time `json:"exp"`
	AuthTime  time.Time                      `json:"auth_time,omitzero"`
	// AccessDigest is the SHA-256 of the access token issued with this
	// session: introspection compares it instead of verifying a signature.
	AccessDigest []byte `json:"at_digest,omitempty"`
	// Backend marks a client_credentials grant: the subject is the client, not a person.
	Backend bool `json:"backend,omitempty"`
	// SessionID ties online_access refresh tokens to the browser session.
	SessionID string `json:"sid,omitempty"`
	// RefreshGrant, set when a refresh narrows the scope, is what the new
	// refresh token keeps: RFC 6749 §6 gives it the scope of the one it
	// replaces, so narrowing one access token never shrinks the grant.
	RefreshGrant *RefreshGrant      `json:"refresh_grant,omitempty"`
	IDToken      *jwt.IDTokenClaims `json:"id_token,omitempty"`
	IDHeaders    *jwt.Headers       `json:"id_headers,omitempty"`
	SMART        Context            `json:"smart"`
}

// RefreshGrant is the scope and fhirUser of a grant before a refresh narrowed them.
type RefreshGrant struct {
	Scope    []string `json:"scope"`
	FHIRUser string   `json:"fhirUser,omitempty"`
}

// NewSession returns an empty session for a tenant, the prototype fosite fills.
func NewSession(tenant string) *Session {
	return &Session{SMART: Context{Tenant: tenant}, IDToken: &jwt.IDTokenClaims{}, IDHeaders: &jwt.Headers{Extra: map[string]any{}}}
}

// SetExpiresAt records when a token of the given type expires.
func (s *Session) SetExpiresAt(key fosite.TokenType, exp time.Time) {
	if s.ExpiresAt == nil {
		s.ExpiresAt = map[fosite.TokenType]time.Time{}
	}
	s.ExpiresAt[key] = exp
}

// GetExpiresAt returns when a token of the given type expires, or zero.
func (s *Session) GetExpiresAt(key fosite.TokenType) time.Time {
	return s.ExpiresAt[key]
}

// GetUsername is unused: smartauth identifies people by subject.
func (s *Session) GetUsername() string { return "" }

// GetSubject returns the subject the grant was issued to.
func (s *Session) GetSubject() string { return s.Subject }

// Clone returns a deep copy, as fosite requires before mutating.
func (s *Session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	b, err := json.Marshal(s)
	if err != nil {
		panic("oauth: session cannot be copied: " + err.Error()) // every field is JSON by construction
	}
	c := &Session{}
	if err := json.Unmarshal(b, c); err != nil {
		panic("oauth: session cannot be copied: " + err.Error())
	}
	return c
}

// IDTokenClaims returns the claims of the ID token to issue.
func (s *Session) IDTokenClaims() *jwt.IDTokenClaims {
	if s.IDToken == nil {
		s.IDToken = &jwt.IDTokenClaims{}
	}
	return s.IDToken
}

// IDTokenHeaders returns the headers of the ID token to issue.
func (s *Session) IDTokenHeaders() *jwt.Headers {
	if s.IDHeaders == nil {
		s.IDHeaders = &jwt.Headers{Extra: map[string]any{}}
	}
	return s.IDHeaders
}

// GetJWTClaims builds fresh access-token claims on every call, so a
// refreshed token never inherits the previous token's iat or jti.
func (s *Session) GetJWTClaims() jwt.JWTClaimsContainer {
	extra := map[string]any{"client_id": s.ClientID, "tenant": s.SMART.Tenant}
	if s.SMART.Patient != "" {
		extra["patient"] = s.SMART.Patient
	}
	if s.SMART.Encounter != "" {
		extra["encounter"] = s.SMART.Encounter
	}
	if s.SMART.FHIRUser != "" {
		extra["fhirUser"] = s.SMART.FHIRUser
	}
	return &jwt.JWTClaims{Subject: s.Subject, Extra: extra, ScopeField: jwt.JWTScopeFieldString}
}

// GetJWTHeader marks access tokens as RFC 9068 JWTs.
func (s *Session) GetJWTHeader() *jwt.Headers {
	return &jwt.Headers{Extra: map[string]any{"typ": "at+jwt"}}
}

var (
	_ openid.Session = (*Session)(nil)
	_ fosite.Session = (*Session)(nil)
)

// ResponseFields are the launch context parameters of a token response
// (SMART App Launch 2.2 §App Launch: Token Response).
func (c Context) ResponseFields() map[string]any {
	out := map[string]any{}
	if c.Patient != "" {
		out["patient"] = c.Patient
	}
	if c.Encounter != "" {
		out["encounter"] = c.Encounter
	}
	if len(c.FHIRContext) > 0 {
		out["fhirContext"] = c.FHIRContext
	}
	if c.NeedPatientBanner != nil {
		out["need_patient_banner"] = *c.NeedPatientBanner
	}
	if c.SmartStyleURL != "" {
		out["smart_style_url"] = c.SmartStyleURL
	}
	if c.Intent != "" {
		out["intent"] = c.Intent
	}
	if c.Tenant != "" {
		out["tenant"] = c.Tenant
	}
	return out
}
