package oauth

import (
	"time"

	"github.com/ory/fosite"

	"github.com/smartauth/smartauth/storage"
)

// Client presents a registered client to fosite.
type Client struct {
	storage.Client
}

var (
	_ fosite.Client                         = (*Client)(nil)
	_ fosite.ClientWithCustomTokenLifespans = (*Client)(nil)
	_ fosite.ResponseModeClient             = (*Client)(nil)
)

// GetResponseModes allows only the query response mode, so an app that
// names it explicitly is served rather than refused.
func (c *Client) GetResponseModes() []fosite.ResponseModeType {
	return []fosite.ResponseModeType{fosite.ResponseModeDefault, fosite.ResponseModeQuery}
}

// GetID returns the client id.
func (c *Client) GetID() string { return c.ID }

// GetHashedSecret returns the SHA-256 digest of the secret; client
// authentication itself happens in server/clientauth.
func (c *Client) GetHashedSecret() []byte { return c.SecretHash }

// GetRedirectURIs returns the registered redirect URIs, matched exactly.
func (c *Client) GetRedirectURIs() []string { return c.RedirectURIs }

// GetGrantTypes returns the grants the client may use.
func (c *Client) GetGrantTypes() fosite.Arguments { return c.GrantTypes }

// GetResponseTypes is always "code": SMART uses the authorization code flow only.
func (c *Client) GetResponseTypes() fosite.Arguments { return fosite.Arguments{"code"} }

// GetScopes returns the scopes the client may be granted.
func (c *Client) GetScopes() fosite.Arguments { return c.Scopes }

// IsPublic reports whether the client has no credentials.
func (c *Client) IsPublic() bool { return c.Type == storage.ClientPublic }

// GetAudience is empty: the audience is the tenant's FHIR base URL the app
// names in aud, checked by smartauth, not a per-client list.
func (c *Client) GetAudience() fosite.Arguments { return nil }

// GetEffectiveLifespan applies the client's own access token lifetime.
func (c *Client) GetEffectiveLifespan(_ fosite.GrantType, tt fosite.TokenType, fallback time.Duration) time.Duration {
	if tt == fosite.AccessToken && c.AccessTokenTTL > 0 {
		return c.AccessTokenTTL
	}
	return fallback
}
