package manage

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/smartauth/smartauth/gateway/upstream"
	"github.com/smartauth/smartauth/storage"
)

// GatewayInput is what an operator gives to put a tenant's FHIR server
// behind the tenant's SMART gateway.
type GatewayInput struct {
	// UpstreamURL is the FHIR base URL requests are forwarded to: https, or
	// http on loopback, with no query or fragment.
	UpstreamURL string
	// UpstreamAuth is one of the storage.GatewayAuth constants; empty means none.
	UpstreamAuth string
	// HeaderName and HeaderValue are the static header of
	// storage.GatewayAuthHeader, and given with it only; the value is sealed
	// under the master key before it is stored.
	HeaderName  string
	HeaderValue string
	// UserHeader names the header carrying the user's identity upstream;
	// empty means storage.DefaultGatewayUserHeader.
	UserHeader string
}

// maxHeaderValue bounds a static header value; API keys are far shorter.
const maxHeaderValue = 4096

// reservedHeaders may name neither the static header nor the user header:
// they are hop-by-hop, or describe the connection or the message itself,
// and the gateway sets them, or drops them, on its own.
var reservedHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Host": true, "Content-Length": true, "Content-Type": true, "Content-Encoding": true, "Expect": true,
}

// SetGateway validates the input and stores it as the tenant's gateway
// settings, replacing any before, with a static header value sealed.
// Authenticating with client_credentials needs the tenant's patient search
// client, whose token endpoint and credentials it uses.
func (s *Service) SetGateway(ctx context.Context, tenantID string, in GatewayInput, who Actor) (storage.GatewaySettings, error) {
	g, err := s.gatewaySettings(tenantID, in)
	if err != nil {
		return storage.GatewaySettings{}, err
	}
	if g.UpstreamURL == "" {
		return storage.GatewaySettings{}, invalid("an upstream URL is required")
	}
	if err := s.setGateway(ctx, tenantID, g); err != nil {
		return storage.GatewaySettings{}, err
	}
	return g, s.auditGateway(ctx, tenantID, g, who)
}

// ClearGateway removes the tenant's gateway settings, so that its gateway
// forwards nothing.
func (s *Service) ClearGateway(ctx context.Context, tenantID string, who Actor) error {
	if err := s.setGateway(ctx, tenantID, storage.GatewaySettings{}); err != nil {
		return err
	}
	return s.auditGateway(ctx, tenantID, storage.GatewaySettings{}, who)
}

// auditGateway records the gateway settings set, or their removal when g
// is empty; the header value is never in the trail.
func (s *Service) auditGateway(ctx context.Context, tenantID string, g storage.GatewaySettings, who Actor) error {
	if g.UpstreamURL == "" {
		return s.audit(ctx, tenantID, "admin.tenant.gateway.clear", who, "", nil)
	}
	return s.audit(ctx, tenantID, "admin.tenant.gateway.set", who, "", map[string]string{
		"upstream_url": g.UpstreamURL, "upstream_auth": g.UpstreamAuth, "header_name": g.HeaderName, "user_header": g.UserHeader,
	})
}

// setGateway stores g as the tenant's gateway settings over the tenant as
// it is now: an edit of other settings landing between the read and the
// write is read again rather than lost or reported.
func (s *Service) setGateway(ctx context.Context, tenantID string, g storage.GatewaySettings) error {
	for attempt := 1; ; attempt++ {
		t, err := s.store.GetTenant(ctx, tenantID)
		if err != nil {
			return fmt.Errorf("tenant %q: %w", tenantID, err)
		}
		if err := checkGatewayNeeds(g, t.Policy.PatientSearch); err != nil {
			return err
		}
		t.Policy.Gateway = g
		err = s.store.UpdateTenant(ctx, t)
		if errors.Is(err, storage.ErrConflict) && attempt < maxEditAttempts {
			continue
		}
		if err != nil {
			return fmt.Errorf("update tenant %q: %w", tenantID, err)
		}
		return nil
	}
}

// gatewaySettings validates the input and returns the settings to store,
// with the header value sealed; an input without an upstream URL, and
// nothing else, gives the empty settings of a tenant without a gateway.
func (s *Service) gatewaySettings(tenantID string, in GatewayInput) (storage.GatewaySettings, error) {
	if in == (GatewayInput{}) {
		return storage.GatewaySettings{}, nil
	}
	g, err := validateGateway(in)
	if err != nil {
		return storage.GatewaySettings{}, err
	}
	if g.UpstreamAuth == storage.GatewayAuthHeader {
		if g.HeaderValueSealed, err = upstream.SealHeader(s.keys.Sealer(), tenantID, g, strings.TrimSpace(in.HeaderValue)); err != nil {
			return storage.GatewaySettings{}, err
		}
	}
	return g, nil
}

// checkGatewayNeeds refuses client_credentials for a tenant without a
// patient search client to get tokens with.
func checkGatewayNeeds(g storage.GatewaySettings, search storage.PatientSearchSource) error {
	if g.UpstreamAuth == storage.GatewayAuthClientCredentials && (search.TokenURL == "" || search.ClientID == "" || search.ClientSecretSealed == "") {
		return invalid("upstream authentication %q uses the tenant's patient search client, which is not configured: set the patient search first", g.UpstreamAuth)
	}
	return nil
}

// validateGateway checks the input and returns the settings to store,
// without the sealed header value.
func validateGateway(in GatewayInput) (storage.GatewaySettings, error) {
	base := strings.TrimRight(strings.TrimSpace(in.UpstreamURL), "/")
	if base == "" {
		return storage.GatewaySettings{}, invalid("an upstream URL is required")
	}
	if err := checkServiceURL("upstream URL", base, false); err != nil {
		return storage.GatewaySettings{}, err
	}
	g := storage.GatewaySettings{UpstreamURL: base, UpstreamAuth: strings.TrimSpace(in.UpstreamAuth)}
	switch g.UpstreamAuth {
	case "":
		g.UpstreamAuth = storage.GatewayAuthNone
	case storage.GatewayAuthNone, storage.GatewayAuthClientCredentials, storage.GatewayAuthHeader, storage.GatewayAuthForward:
	default:
		return storage.GatewaySettings{}, invalid("upstream authentication %q must be one of %s, %s, %s or %s", g.UpstreamAuth,
			storage.GatewayAuthNone, storage.GatewayAuthClientCredentials, storage.GatewayAuthHeader, storage.GatewayAuthForward)
	}
	if userHeader := strings.TrimSpace(in.UserHeader); userHeader != "" {
		name, err := checkHeaderName("user header", userHeader)
		if err != nil {
			return storage.GatewaySettings{}, err
		}
		if name == "Authorization" {
			return storage.GatewaySettings{}, invalid("user header %q would overwrite the upstream credentials", userHeader)
		}
		g.UserHeader = name
	}
	headerName, value := strings.TrimSpace(in.HeaderName), strings.TrimSpace(in.HeaderValue)
	if g.UpstreamAuth != storage.GatewayAuthHeader {
		if headerName != "" || value != "" {
			return storage.GatewaySettings{}, invalid("a header name and value are given with upstream authentication %q only", storage.GatewayAuthHeader)
		}
		return g, nil
	}
	if headerName == "" {
		return storage.GatewaySettings{}, invalid("upstream authentication %q needs a header name", storage.GatewayAuthHeader)
	}
	name, err := checkHeaderName("header name", headerName)
	if err != nil {
		return storage.GatewaySettings{}, err
	}
	userHeader := g.UserHeader
	if userHeader == "" {
		userHeader = storage.DefaultGatewayUserHeader
	}
	if name == http.CanonicalHeaderKey(userHeader) {
		return storage.GatewaySettings{}, invalid("header name %q is the header that carries the user", headerName)
	}
	// The value is never quoted: it is a secret.
	if value == "" || len(value) > maxHeaderValue || !printable(value) {
		return storage.GatewaySettings{}, invalid("header value must be 1-%d printable characters", maxHeaderValue)
	}
	g.HeaderName = name
	return g, nil
}

// checkHeaderName returns name in canonical form if it is an HTTP field
// name (an RFC 9110 token) the gateway may set.
func checkHeaderName(what, name string) (string, error) {
	if len(name) > 100 || !httpToken(name) {
		return "", invalid("%s %q is not an HTTP header name", what, name)
	}
	canonical := http.CanonicalHeaderKey(name)
	if reservedHeaders[canonical] {
		return "", invalid("%s %q is a header the gateway sets or drops itself", what, name)
	}
	return canonical, nil
}

// httpToken reports whether s is an RFC 9110 token.
func httpToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
