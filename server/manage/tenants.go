package manage

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/smartauth/smartauth/storage"
)

// tenantSlug keeps tenant ids safe in URLs, cookie paths and log lines.
var tenantSlug = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)

// TenantInput is what an operator gives to create a tenant.
type TenantInput struct {
	ID           string
	Name         string
	FHIRBaseURLs []string
	Policy       storage.TenantPolicy
}

// CreateTenant validates the input, generates the tenant's signing keys and
// stores both together.
func (s *Service) CreateTenant(ctx context.Context, in TenantInput, who Actor) (storage.Tenant, error) {
	if !tenantSlug.MatchString(in.ID) {
		return storage.Tenant{}, invalid("tenant id %q must be 1-63 lowercase letters, digits or inner hyphens", in.ID)
	}
	name := strings.TrimSpace(in.Name)
	if name == "" {
		name = in.ID
	}
	if len(name) > 200 {
		return storage.Tenant{}, invalid("tenant name must be at most 200 characters")
	}
	bases, err := NormalizeFHIRBaseURLs(in.FHIRBaseURLs)
	if err != nil {
		return storage.Tenant{}, err
	}
	if err := checkLifetimes(in.Policy); err != nil {
		return storage.Tenant{}, err
	}
	t := storage.Tenant{ID: in.ID, Name: name, FHIRBaseURLs: bases, Policy: in.Policy, CreatedAt: s.timestamp()}
	ks, err := s.keys.NewKeys(t.ID)
	if err != nil {
		return storage.Tenant{}, err
	}
	if err := s.store.CreateTenant(ctx, t, ks); err != nil {
		return storage.Tenant{}, fmt.Errorf("create tenant %q: %w", t.ID, err)
	}
	return t, s.audit(ctx, t.ID, "admin.tenant.create", who, "", map[string]string{"name": t.Name})
}

// NormalizeFHIRBaseURLs checks each FHIR base URL and drops trailing
// slashes, so that "aud" comparisons are exact.
func NormalizeFHIRBaseURLs(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, invalid("at least one FHIR base URL is required")
	}
	out := make([]string, 0, len(in))
	seen := map[string]bool{}
	for _, raw := range in {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
			return nil, invalid("FHIR base URL %q must be an absolute http(s) URL", raw)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, invalid("FHIR base URL %q must not have a query or fragment", raw)
		}
		norm := strings.TrimRight(u.String(), "/")
		if !seen[norm] {
			seen[norm] = true
			out = append(out, norm)
		}
	}
	return out, nil
}

// Bounds on token lifetimes an operator may set: long enough to be usable,
// short enough that a leaked token does not live for ever.
var lifetimeBounds = map[string][2]time.Duration{
	"access token":  {time.Minute, 24 * time.Hour},
	"refresh token": {time.Hour, 366 * 24 * time.Hour},
	"ID token":      {time.Minute, 24 * time.Hour},
}

func checkLifetime(what string, d time.Duration) error {
	b := lifetimeBounds[what]
	if d != 0 && (d < b[0] || d > b[1]) {
		return invalid("%s lifetime %v must be between %v and %v", what, d, b[0], b[1])
	}
	return nil
}

func checkLifetimes(p storage.TenantPolicy) error {
	for what, d := range map[string]storage.Duration{"access token": p.AccessTokenTTL, "refresh token": p.RefreshTokenTTL, "ID token": p.IDTokenTTL} {
		if err := checkLifetime(what, time.Duration(d)); err != nil {
			return err
		}
	}
	return nil
}
