package manage

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/smartauth/smartauth/server/clientsecret"
	"github.com/smartauth/smartauth/server/smart"
	"github.com/smartauth/smartauth/storage"
)

var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,128}$`)

// Grant types a client may be registered for.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
	// GrantTokenExchange is RFC 8693 token exchange of an upstream identity
	// provider's token for one of ours.
	GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
)

// ClientInput is what an operator gives to register a client.
type ClientInput struct {
	TenantID string
	// ID is generated when empty.
	ID           string
	Name         string
	Type         storage.ClientType
	RedirectURIs []string
	Scopes       []string
	// GrantTypes default by client type when empty.
	GrantTypes      []string
	JWKSURL         string
	JWKS            []byte
	LaunchURI       string
	CanCreateLaunch bool
	// AccessTokenTTL overrides the tenant's access token lifetime when non-zero.
	AccessTokenTTL time.Duration
}

// CreateClient validates and registers a client. For a confidential
// symmetric client it returns the secret, which is shown once and never stored.
func (s *Service) CreateClient(ctx context.Context, in ClientInput, who Actor) (storage.Client, string, error) {
	if _, err := s.store.GetTenant(ctx, in.TenantID); err != nil {
		return storage.Client{}, "", fmt.Errorf("tenant %q: %w", in.TenantID, err)
	}
	c, err := validateClient(in)
	if err != nil {
		return storage.Client{}, "", err
	}
	if c.ID == "" {
		c.ID = randomID()
	}
	var secret string
	if c.Type == storage.ClientConfidentialSymmetric {
		if secret, c.SecretHash, err = clientsecret.Generate(); err != nil {
			return storage.Client{}, "", err
		}
	}
	c.CreatedAt = s.timestamp()
	c.UpdatedAt = c.CreatedAt
	if err := s.store.CreateClient(ctx, c); err != nil {
		return storage.Client{}, "", fmt.Errorf("create client %q: %w", c.ID, err)
	}
	return c, secret, s.audit(ctx, c.TenantID, "admin.client.create", who, "", map[string]string{"client_id": c.ID, "type": string(c.Type)})
}

// UpdateClient validates and stores new settings for an existing client,
// checked as CreateClient checks them. The secret stays while the client
// stays confidential-symmetric; a client that becomes one gets a new secret,
// returned to be shown once, and one that stops being one loses its secret.
func (s *Service) UpdateClient(ctx context.Context, in ClientInput, who Actor) (storage.Client, string, error) {
	if in.ID == "" {
		return storage.Client{}, "", invalid("the id of the client to update is required")
	}
	old, err := s.store.GetClient(ctx, in.TenantID, in.ID)
	if err != nil {
		return storage.Client{}, "", fmt.Errorf("client %q of tenant %q: %w", in.ID, in.TenantID, err)
	}
	c, err := validateClient(in)
	if err != nil {
		return storage.Client{}, "", err
	}
	var secret string
	switch {
	case c.Type != storage.ClientConfidentialSymmetric:
		c.SecretHash = nil
	case old.Type == storage.ClientConfidentialSymmetric && len(old.SecretHash) > 0:
		c.SecretHash = old.SecretHash
	default:
		if secret, c.SecretHash, err = clientsecret.Generate(); err != nil {
			return storage.Client{}, "", err
		}
	}
	c.CreatedAt = old.CreatedAt
	c.UpdatedAt = s.timestamp()
	if err := s.store.UpdateClient(ctx, c); err != nil {
		return storage.Client{}, "", fmt.Errorf("update client %q: %w", c.ID, err)
	}
	details := clientChanges(old, c)
	details["client_id"] = c.ID
	switch {
	case secret != "":
		details["secret"] = "issued"
	case len(old.SecretHash) > 0 && len(c.SecretHash) == 0:
		details["secret"] = "removed"
	}
	return c, secret, s.audit(ctx, c.TenantID, "admin.client.update", who, "", details)
}

// clientChanges lists, for the audit trail, the settings that differ
// between two versions of a client with their new values; an inline JWKS
// appears as a digest, being long.
func clientChanges(old, c storage.Client) map[string]string {
	return changes([]fieldChange{
		{"name", old.Name, c.Name},
		{"type", string(old.Type), string(c.Type)},
		{"redirect_uris", strings.Join(old.RedirectURIs, " "), strings.Join(c.RedirectURIs, " ")},
		{"scopes", strings.Join(old.Scopes, " "), strings.Join(c.Scopes, " ")},
		{"grant_types", strings.Join(old.GrantTypes, " "), strings.Join(c.GrantTypes, " ")},
		{"jwks_url", old.JWKSURL, c.JWKSURL},
		{"jwks", digest(old.JWKS), digest(c.JWKS)},
		{"launch_uri", old.LaunchURI, c.LaunchURI},
		{"can_create_launch", fmt.Sprint(old.CanCreateLaunch), fmt.Sprint(c.CanCreateLaunch)},
		{"access_token_ttl", old.AccessTokenTTL.String(), c.AccessTokenTTL.String()},
	})
}

// digest names a document in the audit trail by the start of its SHA-256;
// nothing names nothing.
func digest(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:8])
}

// RotateClientSecret replaces a symmetric client's secret and returns the new one.
func (s *Service) RotateClientSecret(ctx context.Context, tenantID, clientID string, who Actor) (string, error) {
	c, err := s.store.GetClient(ctx, tenantID, clientID)
	if err != nil {
		return "", fmt.Errorf("client %q: %w", clientID, err)
	}
	if c.Type != storage.ClientConfidentialSymmetric {
		return "", invalid("client %q is %s and has no secret", clientID, c.Type)
	}
	secret, digest, err := clientsecret.Generate()
	if err != nil {
		return "", err
	}
	c.SecretHash = digest
	c.UpdatedAt = s.timestamp()
	if err := s.store.UpdateClient(ctx, c); err != nil {
		return "", fmt.Errorf("update client %q: %w", clientID, err)
	}
	return secret, s.audit(ctx, tenantID, "admin.client.rotate_secret", who, "", map[string]string{"client_id": clientID})
}

// DeleteClient removes a client and every grant issued to it.
func (s *Service) DeleteClient(ctx context.Context, tenantID, clientID string, who Actor) error {
	if err := s.store.DeleteClient(ctx, tenantID, clientID); err != nil {
		return fmt.Errorf("delete client %q: %w", clientID, err)
	}
	return s.audit(ctx, tenantID, "admin.client.delete", who, "", map[string]string{"client_id": clientID})
}

func validateClient(in ClientInput) (storage.Client, error) {
	c := storage.Client{
		TenantID:        in.TenantID,
		ID:              in.ID,
		Name:            strings.TrimSpace(in.Name),
		Type:            in.Type,
		JWKSURL:         strings.TrimSpace(in.JWKSURL),
		LaunchURI:       strings.TrimSpace(in.LaunchURI),
		CanCreateLaunch: in.CanCreateLaunch,
		AccessTokenTTL:  in.AccessTokenTTL,
	}
	if err := checkLifetime("access token", in.AccessTokenTTL); err != nil {
		return c, err
	}
	if c.ID != "" && !clientIDPattern.MatchString(c.ID) {
		return c, invalid("client id %q may hold only letters, digits and . _ ~ - (at most 128)", c.ID)
	}
	if c.Name == "" || len(c.Name) > 200 {
		return c, invalid("client name is required (at most 200 characters)")
	}
	switch c.Type {
	case storage.ClientPublic, storage.ClientConfidentialSymmetric, storage.ClientConfidentialAsymmetric:
	default:
		return c, invalid("client type %q must be public, confidential-symmetric or confidential-asymmetric", in.Type)
	}
	c.GrantTypes = in.GrantTypes
	if len(c.GrantTypes) == 0 {
		c.GrantTypes = []string{GrantAuthorizationCode, GrantRefreshToken}
		if c.Type == storage.ClientConfidentialAsymmetric {
			c.GrantTypes = append(c.GrantTypes, GrantClientCredentials)
		}
	}
	for _, g := range c.GrantTypes {
		switch g {
		case GrantAuthorizationCode, GrantRefreshToken:
		case GrantClientCredentials, GrantTokenExchange:
			if c.Type == storage.ClientPublic {
				return c, invalid("a public client cannot use %s: it has no credentials", g)
			}
		default:
			return c, invalid("grant type %q must be authorization_code, refresh_token, client_credentials or %s", g, GrantTokenExchange)
		}
	}
	for _, raw := range in.RedirectURIs {
		u := strings.TrimSpace(raw)
		if err := checkRedirectURI(u); err != nil {
			return c, err
		}
		if !slices.Contains(c.RedirectURIs, u) {
			c.RedirectURIs = append(c.RedirectURIs, u)
		}
	}
	if slices.Contains(c.GrantTypes, GrantAuthorizationCode) && len(c.RedirectURIs) == 0 {
		return c, invalid("at least one redirect URI is required for the authorization_code grant")
	}
	for _, sc := range in.Scopes {
		for _, f := range strings.Fields(sc) {
			if !validScopeToken(f) {
				return c, invalid("scope %q has characters RFC 6749 does not allow", f)
			}
			if !slices.Contains(c.Scopes, f) {
				c.Scopes = append(c.Scopes, f)
			}
		}
	}
	if len(c.Scopes) == 0 {
		return c, invalid("at least one allowed scope is required")
	}
	if !actsForPeople(c.GrantTypes) {
		if _, refused := smart.ForBackend(c.Scopes); len(refused) > 0 {
			return c, invalid("scope %q cannot be registered for a backend service (client_credentials without authorization_code or token exchange): %s; use system/ scopes, or add authorization_code for an app people sign in to",
				refused[0].Scope, refused[0].Reason)
		}
	}
	if c.LaunchURI != "" {
		if err := checkAppURL("launch URI", c.LaunchURI); err != nil {
			return c, err
		}
	}
	if c.Type != storage.ClientConfidentialAsymmetric {
		if c.JWKSURL != "" || len(in.JWKS) > 0 {
			return c, invalid("only a confidential-asymmetric client has a JWKS")
		}
		return c, nil
	}
	switch {
	case c.JWKSURL != "" && len(in.JWKS) > 0:
		return c, invalid("give a JWKS URL or an inline JWKS, not both")
	case c.JWKSURL != "":
		if err := checkAppURL("JWKS URL", c.JWKSURL); err != nil {
			return c, err
		}
	case len(in.JWKS) > 0:
		jwks, err := checkJWKS(in.JWKS)
		if err != nil {
			return c, err
		}
		c.JWKS = jwks
	default:
		return c, invalid("a confidential-asymmetric client needs a JWKS URL or an inline JWKS")
	}
	return c, nil
}

// actsForPeople reports whether a client has a grant through which a person
// signs in: authorization_code, or token exchange of a person's upstream
// token. Without one it is a backend service and may register only what
// smart.ForBackend keeps; with one it may keep patient and user scopes for
// those grants, and client_credentials still grants it only backend scopes.
func actsForPeople(grants []string) bool {
	return slices.Contains(grants, GrantAuthorizationCode) || slices.Contains(grants, GrantTokenExchange)
}

// checkRedirectURI applies RFC 6749 §3.1.2 and RFC 8252: absolute, no
// fragment, https — or http on loopback, or a private-use scheme for native apps.
func checkRedirectURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return invalid("redirect URI %q must be an absolute URI", raw)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return invalid("redirect URI %q must not contain a fragment", raw)
	}
	if strings.Contains(raw, "*") {
		return invalid("redirect URI %q must not contain wildcards: matching is exact", raw)
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return invalid("redirect URI %q has no host", raw)
		}
	case "http":
		if !isLoopback(u.Hostname()) {
			return invalid("redirect URI %q must use https (http only on loopback)", raw)
		}
	default:
		// A private-use scheme must be a reverse domain name (RFC 8252 §7.1).
		if !strings.Contains(u.Scheme, ".") {
			return invalid("redirect URI %q: a custom scheme must be a reverse domain name such as com.example.app", raw)
		}
	}
	return nil
}

func checkAppURL(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || !(u.Scheme == "https" || (u.Scheme == "http" && isLoopback(u.Hostname()))) {
		return invalid("%s %q must be an absolute https URL (http only on loopback)", what, raw)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkJWKS accepts a key set of public signing keys only and returns it compacted.
func checkJWKS(raw []byte) ([]byte, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, invalid("inline JWKS is not a JSON Web Key Set: %v", err)
	}
	if len(set.Keys) == 0 {
		return nil, invalid("inline JWKS has no keys")
	}
	for i, k := range set.Keys {
		if !k.Valid() {
			return nil, invalid("inline JWKS key %d is not a valid key", i+1)
		}
		if !k.IsPublic() {
			return nil, invalid("inline JWKS key %d holds a private key: publish only public keys", i+1)
		}
		if k.Use != "" && k.Use != "sig" {
			return nil, invalid("inline JWKS key %d has use %q; client authentication needs sig", i+1, k.Use)
		}
	}
	out, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("encode JWKS: %w", err)
	}
	return out, nil
}

// validScopeToken is RFC 6749's scope-token: %x21 / %x23-5B / %x5D-7E.
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func randomID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // the platform is broken; nothing safe to do
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
