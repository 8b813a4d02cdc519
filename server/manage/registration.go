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
	"strconv"
	"strings"
	"time"

	"github.com/smartauth/smartauth/server/smart"
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

// MaxRedirectURIs is the most redirect URIs one registration may name; apps register a handful.
const MaxRedirectURIs = 100

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

// InitialAccessAllowance is what a registration with one initial access
// token may create beyond the default, an app that people sign in to with
// user-facing SMART scopes. It is kept with the token, so the admin who
// issues a token decides what its holder may register.
type InitialAccessAllowance struct {
	// BackendServices permits the client_credentials grant and system/
	// scopes: a client that reads and writes the whole tenant's data with no
	// person signed in and nobody asked to consent.
	BackendServices bool `json:"backend_services,omitempty"`
}

// InitialAccessToken describes an outstanding initial access token; the
// token itself is never kept, so it is never shown again.
type InitialAccessToken struct {
	// Ref is the start of the token's SHA-256 digest: how the audit trail
	// and RevokeInitialAccessToken name it.
	Ref       string
	Allowance InitialAccessAllowance
	// CreatedBy is the id of the admin, API client or command that issued it.
	CreatedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
}

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
	// CanCreateLaunch is not RFC 7591 metadata but the admin API's name for
	// the right to create EHR launches; it is read only to refuse it plainly
	// rather than ignore it.
	CanCreateLaunch bool `json:"can_create_launch"`
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
// register one client in the tenant, of the kind allow permits. Only its
// SHA-256 digest is stored, so the token is shown once; ttl zero means
// DefaultInitialAccessTTL.
func (s *Service) CreateInitialAccessToken(ctx context.Context, tenantID string, ttl time.Duration, allow InitialAccessAllowance, who Actor) (token string, expiresAt time.Time, err error) {
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
	data, err := json.Marshal(allow)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("encode initial access allowance: %w", err)
	}
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
		Data:      data,
		CreatedAt: now,
		ExpiresAt: now.Add(ttl),
	}
	if err := s.store.CreateToken(ctx, t); err != nil {
		return "", time.Time{}, fmt.Errorf("store initial access token: %w", err)
	}
	err = s.audit(ctx, tenantID, "admin.initial_access_token.create", who, "", map[string]string{
		"token_ref": tokenRef(t.Signature), "expires_at": t.ExpiresAt.Format(time.RFC3339),
		"backend_services": strconv.FormatBool(allow.BackendServices),
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

// InitialAccessTokenRef is how the lists, the audit trail and
// RevokeInitialAccessToken name an initial access token.
func InitialAccessTokenRef(token string) string {
	return tokenRef(initialAccessSignature(token))
}

// allowanceOf reads the allowance kept with an initial access token. A
// token issued before allowances existed has none, and so registers only
// user-facing apps.
func allowanceOf(t storage.Token) (InitialAccessAllowance, error) {
	var allow InitialAccessAllowance
	if len(t.Data) == 0 {
		return allow, nil
	}
	if err := json.Unmarshal(t.Data, &allow); err != nil {
		return allow, fmt.Errorf("read allowance of initial access token %s: %w", tokenRef(t.Signature), err)
	}
	return allow, nil
}

// ListInitialAccessTokens returns the tenant's initial access tokens that
// are neither used nor expired, oldest first.
func (s *Service) ListInitialAccessTokens(ctx context.Context, tenantID string) ([]InitialAccessToken, error) {
	if _, err := s.store.GetTenant(ctx, tenantID); err != nil {
		return nil, fmt.Errorf("tenant %q: %w", tenantID, err)
	}
	recs, err := s.store.ListActiveTokens(ctx, tenantID, storage.KindInitialAccess, s.timestamp())
	if err != nil {
		return nil, fmt.Errorf("list initial access tokens: %w", err)
	}
	out := make([]InitialAccessToken, 0, len(recs))
	for _, r := range recs {
		allow, err := allowanceOf(r)
		if err != nil {
			return nil, err
		}
		out = append(out, InitialAccessToken{Ref: tokenRef(r.Signature), Allowance: allow,
			CreatedBy: r.Subject, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt})
	}
	return out, nil
}

// RevokeInitialAccessToken makes the outstanding initial access token named
// by ref (see InitialAccessToken.Ref) unusable. A ref naming no token that
// is still outstanding yields ErrNotFound, also when a registration used the
// token first.
func (s *Service) RevokeInitialAccessToken(ctx context.Context, tenantID, ref string, who Actor) error {
	if _, err := s.store.GetTenant(ctx, tenantID); err != nil {
		return fmt.Errorf("tenant %q: %w", tenantID, err)
	}
	recs, err := s.store.ListActiveTokens(ctx, tenantID, storage.KindInitialAccess, s.timestamp())
	if err != nil {
		return fmt.Errorf("list initial access tokens: %w", err)
	}
	i := slices.IndexFunc(recs, func(r storage.Token) bool { return tokenRef(r.Signature) == ref })
	if i < 0 {
		return fmt.Errorf("initial access token %q: %w", ref, storage.ErrNotFound)
	}
	sig := recs[i].Signature
	allow, err := allowanceOf(recs[i])
	if err != nil {
		return err
	}
	// Consuming is the same conditional write a registration makes, so of
	// a revocation and a registration racing on the token exactly one wins.
	if _, err := s.store.ConsumeToken(ctx, tenantID, storage.KindInitialAccess, sig); err != nil {
		if errors.Is(err, storage.ErrConsumed) || errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("initial access token %q: %w", ref, storage.ErrNotFound)
		}
		return fmt.Errorf("revoke initial access token: %w", err)
	}
	return s.audit(ctx, tenantID, "admin.initial_access_token.revoke", who, "", map[string]string{
		"token_ref": ref, "backend_services": strconv.FormatBool(allow.BackendServices),
	})
}

// RegisterClient performs RFC 7591 dynamic registration: it checks the
// initial access token, validates md as CreateClient does and against what
// the token allows (see withinAllowance), uses the token up and registers
// the client. Refused metadata leaves the token usable, so the developer can
// correct it and try again.
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

	allow, err := allowanceOf(tok)
	if err != nil {
		return RegistrationResponse{}, err
	}
	in, method, err := clientInputFromMetadata(tenantID, md)
	if err == nil {
		var c storage.Client
		c, err = validateClient(in)
		if err == nil {
			err = withinAllowance(c, allow)
		}
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
	// Bounded before anything is split: scopes, like redirect URIs, are
	// de-duplicated in time quadratic in their number.
	if !smart.WithinLimits(md.Scope) {
		return ClientInput{}, "", metadataError("scope may hold at most %d scopes in %d bytes", smart.MaxScopes, smart.MaxParamLen)
	}
	if len(md.RedirectURIs) > MaxRedirectURIs {
		return ClientInput{}, "", &RegistrationError{Code: ErrCodeInvalidRedirectURI,
			Description: fmt.Sprintf("at most %d redirect URIs may be registered", MaxRedirectURIs)}
	}
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
	if md.CanCreateLaunch {
		return ClientInput{}, "", metadataError("can_create_launch cannot be registered dynamically; an admin gives a client the right to create EHR launches")
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

// withinAllowance refuses a client that an initial access token with allow
// may not register. Without an allowance a registration makes an app that
// people sign in to: the authorization_code and refresh_token grants and
// SMART's user-facing scopes, so every token it gets acts for a person who
// signed in and consented. Backend services (client_credentials, system/
// scopes) need the admin's allowance; token exchange and custom scopes are
// never registered this way, since their reach is the admin's to judge.
func withinAllowance(c storage.Client, allow InitialAccessAllowance) error {
	for _, g := range c.GrantTypes {
		switch g {
		case GrantAuthorizationCode, GrantRefreshToken:
		case GrantClientCredentials:
			if !allow.BackendServices {
				return metadataError("grant type %s is for backend services, which this initial access token does not allow; ask the admin for one that allows backend services", g)
			}
		default:
			return metadataError("grant type %s cannot be registered dynamically; an admin registers such clients", g)
		}
	}
	for _, raw := range c.Scopes {
		sc, err := smart.Parse(raw)
		if err != nil {
			return metadataError("%s", err.Error())
		}
		switch sc.Kind {
		case smart.KindOpenID, smart.KindFHIRUser, smart.KindProfile, smart.KindLaunch, smart.KindLaunchContext,
			smart.KindOfflineAccess, smart.KindOnlineAccess:
		case smart.KindResource:
			if sc.Context == "system" && !allow.BackendServices {
				return metadataError("scope %q is for backend services, which this initial access token does not allow; ask the admin for one that allows backend services", raw)
			}
		default:
			return metadataError("scope %q cannot be registered dynamically: only openid, fhirUser, profile, launch, launch/…, offline_access, online_access, patient/… and user/… scopes can", raw)
		}
	}
	return nil
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
