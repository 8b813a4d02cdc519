package manage

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/smartauth/smartauth/storage"
)

// Lifetimes of an initial access token.
const (
	DefaultInitialAccessTTL = 24 * time.Hour
	MaxInitialAccessTTL     = 30 * 24 * time.Hour
)

// RFC 7591 §3.2.2 error codes of a refused registration.
const (
	ErrCodeInvalidRedirectURI    = "invalid_redirect_uri"
	ErrCodeInvalidClientMetadata = "invalid_client_metadata"
)

// registrationActor names dynamic registration in the audit trail, where an
// operator's id would otherwise be.
const registrationActor = "registration"

// ErrInvalidInitialAccessToken refuses a registration whose initial access
// token is unknown, used or expired; which of the three is not said.
var ErrInvalidInitialAccessToken = errors.New("initial access token is not valid")

// RegistrationError is client metadata refused under RFC 7591 §3.2.2; it
// wraps ErrInvalid.
type RegistrationError struct {
	// Code is ErrCodeInvalidRedirectURI or ErrCodeInvalidClientMetadata.
	Code        string
	Description string
}

func (e *RegistrationError) Error() string { return e.Code + ": " + e.Description }

// Unwrap lets callers treat a refused registration like any invalid input.
func (e *RegistrationError) Unwrap() error { return ErrInvalid }

// RegistrationRequest is the client metadata of RFC 7591 §2 that smartauth
// registers, plus SMART's launch_uri; other metadata is ignored.
type RegistrationRequest struct {
	RedirectURIs []string `json:"redirect_uris"`
	// TokenEndpointAuthMethod is none, client_secret_basic (the default),
	// client_secret_post or private_key_jwt.
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	ClientName              string   `json:"client_name"`
	// Scope is space-separated.
	Scope     string          `json:"scope"`
	JWKSURI   string          `json:"jwks_uri"`
	JWKS      json.RawMessage `json:"jwks"`
	LaunchURI string          `json:"launch_uri"`
}

// RegistrationResponse is the client information response of RFC 7591 §3.2.1:
// the credentials and the metadata as registered.
type RegistrationResponse struct {
	ClientID         string `json:"client_id"`
	ClientSecret     string `json:"client_secret,omitempty"`
	ClientIDIssuedAt int64  `json:"client_id_issued_at"`
	// ClientSecretExpiresAt is 0 (never) and present only with a secret.
	ClientSecretExpiresAt   *int64          `json:"client_secret_expires_at,omitempty"`
	ClientName              string          `json:"client_name"`
	TokenEndpointAuthMethod string          `json:"token_endpoint_auth_method"`
	RedirectURIs            []string        `json:"redirect_uris,omitempty"`
	GrantTypes              []string        `json:"grant_types"`
	ResponseTypes           []string        `json:"response_types,omitempty"`
	Scope                   string          `json:"scope"`
	JWKSURI                 string          `json:"jwks_uri,omitempty"`
	JWKS                    json.RawMessage `json:"jwks,omitempty"`
	LaunchURI               string          `json:"launch_uri,omitempty"`
}

// authMethodTypes maps RFC 7591 token endpoint authentication methods to client types.
var authMethodTypes = map[string]storage.ClientType{
	"none":                storage.ClientPublic,
	"client_secret_basic": storage.ClientConfidentialSymmetric,
	"client_secret_post":  storage.ClientConfidentialSymmetric,
	"private_key_jwt":     storage.ClientConfidentialAsymmetric,
}

// initialAccessSignature is the key an initial access token is stored under.
func initialAccessSignature(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// CreateInitialAccessToken issues a single-use token that lets its holder
// register one client in the tenant. Only its SHA-256 digest is stored, so
// the token is shown once; ttl zero means DefaultInitialAccessTTL.
func (s *Service) CreateInitialAccessToken(ctx context.Context, tenantID string, ttl time.Duration, who Actor) (token string, expiresAt time.Time, err error) {
	if ttl == 0 {
		ttl = DefaultInitialAccessTTL
	}
	if ttl < 0 || ttl > MaxInitialAccessTTL {
		return "", time.Time{}, invalid("initial access token lifetime %s must be positive and at most %s", ttl, MaxInitialAccessTTL)
	}
	if _, err := s.store.GetTenant(ctx, tenantID); err != nil {
		return "", time.Time{}, fmt.Errorf("tenant %q: %w", tenantID, err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", time.Time{}, fmt.Errorf("generate initial access token: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	now := s.timestamp()
	t := storage.Token{
		TenantID:  tenantID,
		Kind:      storage.KindInitialAccess,
		Signature: initialAccessSignature(token),
		// A request id of its own keeps the token out of any grant family a
		// revocation could sweep up.
		RequestID: randomID(),
		Subject:   who.ID,
		Active:    true,
		CreatedAt: now,
		ExpiresAt: now.Add(ttl),
	}
	if err := s.store.CreateToken(ctx, t); err != nil {
		return "", time.Time{}, fmt.Errorf("store initial access token: %w", err)
	}
	err = s.audit(ctx, tenantID, "admin.initial_access_token.create", who, "", map[string]string{
		"token_ref": tokenRef(t.Signature), "expires_at": t.ExpiresAt.Format(time.RFC3339),
	})
	if err != nil {
		return "", time.Time{}, err
	}
	return token, t.ExpiresAt, nil
}

// tokenRef names an initial access token in the audit trail, so a
// registration can be traced to the token's creation; a digest prefix
// reveals nothing of the token.
func tokenRef(signature string) string { return signature[:16] }

// RegisterClient performs RFC 7591 dynamic registration: it checks the
// initial access token, validates md as CreateClient does, uses the token
// up and registers the client. Refused metadata leaves the token usable, so
// the developer can correct it and try again.
func (s *Service) RegisterClient(ctx context.Context, tenantID, initialToken string, md RegistrationRequest, sourceIP string) (RegistrationResponse, error) {
	who := Actor{ID: registrationActor, SourceIP: sourceIP}
	if _, err := s.store.GetTenant(ctx, tenantID); err != nil {
		return RegistrationResponse{}, fmt.Errorf("tenant %q: %w", tenantID, err)
	}
	sig := initialAccessSignature(initialToken)
	tok, err := s.store.GetToken(ctx, tenantID, storage.KindInitialAccess, sig)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return RegistrationResponse{}, s.refuseToken(ctx, tenantID, who, "unknown_token", "")
	case err != nil:
		return RegistrationResponse{}, fmt.Errorf("look up initial access token: %w", err)
	case !tok.Active:
		return RegistrationResponse{}, s.refuseToken(ctx, tenantID, who, "used_token", sig)
	case !s.timestamp().Before(tok.ExpiresAt):
		return RegistrationResponse{}, s.refuseToken(ctx, tenantID, who, "expired_token", sig)
	}

	in, method, err := clientInputFromMetadata(tenantID, md)
	if err == nil {
		_, err = validateClient(in)
	}
	if err != nil {
		rerr := registrationError(err)
		details := map[string]string{"token_ref": tokenRef(sig), "error": rerr.Code, "reason": rerr.Description}
		if aerr := s.auditRegistration(ctx, tenantID, "failure", who, "", details); aerr != nil {
			return RegistrationResponse{}, aerr
		}
		return RegistrationResponse{}, rerr
	}

	// Checked above, consumed only now: of two registrations racing on one
	// token, exactly one gets past this conditional write.
	if _, err := s.store.ConsumeToken(ctx, tenantID, storage.KindInitialAccess, sig); err != nil {
		if errors.Is(err, storage.ErrConsumed) || errors.Is(err, storage.ErrNotFound) {
			return RegistrationResponse{}, s.refuseToken(ctx, tenantID, who, "used_token", sig)
		}
		return RegistrationResponse{}, fmt.Errorf("use initial access token: %w", err)
	}
	c, secret, err := s.CreateClient(ctx, in, who)
	if err != nil {
		return RegistrationResponse{}, fmt.Errorf("register client: %w", err)
	}
	err = s.auditRegistration(ctx, tenantID, "success", who, c.ID, map[string]string{
		"type": string(c.Type), "token_ref": tokenRef(sig), "token_created_by": tok.Subject,
	})
	if err != nil {
		return RegistrationResponse{}, err
	}
	return registrationResponse(c, secret, method), nil
}

// clientInputFromMetadata maps RFC 7591 metadata onto a ClientInput and
// returns the authentication method registered. It checks only what
// ClientInput cannot express; validateClient checks the rest.
func clientInputFromMetadata(tenantID string, md RegistrationRequest) (ClientInput, string, error) {
	method := md.TokenEndpointAuthMethod
	if method == "" {
		method = "client_secret_basic" // RFC 7591 §2
	}
	typ, ok := authMethodTypes[method]
	if !ok {
		return ClientInput{}, "", metadataError("token_endpoint_auth_method %q must be none, client_secret_basic, client_secret_post or private_key_jwt", method)
	}
	grants := md.GrantTypes
	if len(grants) == 0 {
		grants = []string{GrantAuthorizationCode} // RFC 7591 §2
	}
	for _, rt := range md.ResponseTypes {
		if rt != "code" {
			return ClientInput{}, "", metadataError("response type %q is not supported: only code is", rt)
		}
	}
	// RFC 7591 §2.1: the code response type goes with the authorization_code grant.
	if len(md.ResponseTypes) > 0 && !slices.Contains(grants, GrantAuthorizationCode) {
		return ClientInput{}, "", metadataError("response type code needs the authorization_code grant type")
	}
	// The admin API's scope is given only by an admin: a holder of an
	// initial access token registers apps, not administrators.
	if slices.Contains(strings.Fields(md.Scope), AdminScope) {
		return ClientInput{}, "", metadataError("scope %q cannot be registered dynamically; an admin registers admin API clients", AdminScope)
	}
	in := ClientInput{
		TenantID:     tenantID,
		Name:         md.ClientName,
		Type:         typ,
		RedirectURIs: md.RedirectURIs,
		Scopes:       strings.Fields(md.Scope),
		GrantTypes:   grants,
		JWKSURL:      md.JWKSURI,
		LaunchURI:    md.LaunchURI,
	}
	if jwks := bytes.TrimSpace(md.JWKS); len(jwks) > 0 && !bytes.Equal(jwks, []byte("null")) {
		if jwks[0] != '{' {
			return ClientInput{}, "", metadataError("jwks must be a JSON Web Key Set object")
		}
		in.JWKS = jwks
	}
	// Each redirect URI is checked here, by the same rule validateClient
	// applies, only to tell the caller which of the two errors it is.
	for _, u := range in.RedirectURIs {
		if err := checkRedirectURI(strings.TrimSpace(u)); err != nil {
			return ClientInput{}, "", &RegistrationError{Code: ErrCodeInvalidRedirectURI, Description: invalidReason(err)}
		}
	}
	return in, method, nil
}

func metadataError(format string, args ...any) *RegistrationError {
	return &RegistrationError{Code: ErrCodeInvalidClientMetadata, Description: fmt.Sprintf(format, args...)}
}

// registrationError turns a validation error into the RFC 7591 error.
func registrationError(err error) *RegistrationError {
	var rerr *RegistrationError
	if errors.As(err, &rerr) {
		return rerr
	}
	return &RegistrationError{Code: ErrCodeInvalidClientMetadata, Description: invalidReason(err)}
}

// invalidReason is an ErrInvalid message without its prefix.
func invalidReason(err error) string {
	return strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ")
}

func registrationResponse(c storage.Client, secret, method string) RegistrationResponse {
	res := RegistrationResponse{
		ClientID:                c.ID,
		ClientSecret:            secret,
		ClientIDIssuedAt:        c.CreatedAt.Unix(),
		ClientName:              c.Name,
		TokenEndpointAuthMethod: method,
		RedirectURIs:            c.RedirectURIs,
		GrantTypes:              c.GrantTypes,
		Scope:                   strings.Join(c.Scopes, " "),
		JWKSURI:                 c.JWKSURL,
		LaunchURI:               c.LaunchURI,
	}
	if len(c.JWKS) > 0 {
		res.JWKS = json.RawMessage(c.JWKS)
	}
	if secret != "" {
		never := int64(0)
		res.ClientSecretExpiresAt = &never
	}
	if slices.Contains(c.GrantTypes, GrantAuthorizationCode) {
		res.ResponseTypes = []string{"code"}
	}
	return res
}

// refuseToken records a registration refused for its initial access token
// and returns the one error every such refusal gets.
func (s *Service) refuseToken(ctx context.Context, tenantID string, who Actor, reason, sig string) error {
	details := map[string]string{"error": "invalid_token", "reason": reason}
	if sig != "" {
		details["token_ref"] = tokenRef(sig)
	}
	if err := s.auditRegistration(ctx, tenantID, "failure", who, "", details); err != nil {
		return err
	}
	return ErrInvalidInitialAccessToken
}

// auditRegistration records a client.register event with its outcome.
func (s *Service) auditRegistration(ctx context.Context, tenantID, outcome string, who Actor, clientID string, details map[string]string) error {
	_, err := s.store.AppendAudit(ctx, storage.AuditEvent{
		TenantID: tenantID,
		Time:     s.timestamp(),
		Type:     "client.register",
		Outcome:  outcome,
		ActorID:  who.ID,
		ClientID: clientID,
		SourceIP: who.SourceIP,
		Details:  details,
	})
	if err != nil {
		return fmt.Errorf("record audit event client.register: %w", err)
	}
	return nil
}
