package manage

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/smartauth/smartauth/server/keys"
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
	// Gateway, when not nil, gives the tenant's gateway settings in place
	// of Policy.Gateway, validated and with the header value sealed.
	Gateway *GatewayInput
}

// CreateTenant validates the input, generates the tenant's signing keys and
// stores both together.
func (s *Service) CreateTenant(ctx context.Context, in TenantInput, who Actor) (storage.Tenant, error) {
	if !tenantSlug.MatchString(in.ID) {
		return storage.Tenant{}, invalid("tenant id %q must be 1-63 lowercase letters, digits or inner hyphens", in.ID)
	}
	name, bases, err := tenantNameAndURLs(in.ID, in.Name, in.FHIRBaseURLs)
	if err != nil {
		return storage.Tenant{}, err
	}
	if err := checkLifetimes(in.Policy); err != nil {
		return storage.Tenant{}, err
	}
	if in.Policy.AccessTokenAlg, err = checkAccessTokenAlg(in.Policy.AccessTokenAlg); err != nil {
		return storage.Tenant{}, err
	}
	if in.Policy.RateLimits, err = checkRateLimits(in.Policy.RateLimits); err != nil {
		return storage.Tenant{}, err
	}
	if in.Gateway != nil {
		if in.Policy.Gateway, err = s.gatewaySettings(in.ID, *in.Gateway); err != nil {
			return storage.Tenant{}, err
		}
		if err := checkGatewayNeeds(in.Policy.Gateway, in.Policy.PatientSearch); err != nil {
			return storage.Tenant{}, err
		}
	}
	t := storage.Tenant{ID: in.ID, Name: name, FHIRBaseURLs: bases, Policy: in.Policy, CreatedAt: s.timestamp(), Version: 1}
	ks, err := s.keys.NewKeys(t.ID, t.Policy.AccessTokenAlg)
	if err != nil {
		return storage.Tenant{}, err
	}
	if err := s.store.CreateTenant(ctx, t, ks); err != nil {
		return storage.Tenant{}, fmt.Errorf("create tenant %q: %w", t.ID, err)
	}
	if err := s.audit(ctx, t.ID, "admin.tenant.create", who, "", map[string]string{"name": t.Name}); err != nil {
		return t, err
	}
	if in.Gateway != nil && t.Policy.Gateway.UpstreamURL != "" {
		if err := s.auditGateway(ctx, t.ID, t.Policy.Gateway, who); err != nil {
			return t, err
		}
	}
	// The operators' own trail records it too, so who made a tenant can be
	// read without that tenant's admins, and outlives the tenant's trail.
	// Before any operator exists there is no such trail to write to.
	if _, err := s.store.GetTenant(ctx, storage.OperatorRealm); errors.Is(err, storage.ErrNotFound) {
		return t, nil
	} else if err != nil {
		return t, fmt.Errorf("operator realm: %w", err)
	}
	return t, s.audit(ctx, storage.OperatorRealm, "admin.tenant.create", who, t.ID, map[string]string{"name": t.Name, "tenant": t.ID})
}

// tenantNameAndURLs checks a tenant's name (the id when blank) and FHIR base
// URLs as they are stored.
func tenantNameAndURLs(id, name string, fhirBaseURLs []string) (string, []string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		name = id
	}
	if len(name) > 200 {
		return "", nil, invalid("tenant name must be at most 200 characters")
	}
	bases, err := NormalizeFHIRBaseURLs(fhirBaseURLs)
	if err != nil {
		return "", nil, err
	}
	return name, bases, nil
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

// checkAccessTokenAlg returns the access-token algorithm to store: one of
// keys.AccessTokenAlgorithms, with blank meaning the default.
func checkAccessTokenAlg(alg string) (string, error) {
	alg = strings.TrimSpace(alg)
	if alg == "" {
		return storage.DefaultAccessTokenAlg, nil
	}
	if !slices.Contains(keys.AccessTokenAlgorithms, alg) {
		return "", invalid("access token algorithm %q must be one of %s", alg, strings.Join(keys.AccessTokenAlgorithms, ", "))
	}
	return alg, nil
}

// checkRateLimits returns the rate limits to store: each at most
// storage.MaxRateLimit, 0 for the default and -1, for any negative number,
// for none.
func checkRateLimits(r storage.RateLimits) (storage.RateLimits, error) {
	for what, n := range map[string]*int{"client": &r.ClientPerMinute, "address": &r.AddressPerMinute} {
		if *n > storage.MaxRateLimit {
			return r, invalid("the %s rate limit %d must be at most %d requests a minute", what, *n, storage.MaxRateLimit)
		}
		*n = max(*n, -1)
	}
	return r, nil
}

// ListTenants returns every tenant ordered by id, without the operator
// realm, which is not a tenant to those who manage tenants.
func (s *Service) ListTenants(ctx context.Context) ([]storage.Tenant, error) {
	ts, err := s.store.ListTenants(ctx)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	return slices.DeleteFunc(ts, func(t storage.Tenant) bool { return t.ID == storage.OperatorRealm }), nil
}

// TenantUpdate is what an operator may change of a tenant: its name, FHIR
// base URLs and policy, and optionally its gateway settings. The patient
// search source is set on its own, with SetPatientSearch.
type TenantUpdate struct {
	ID                 string
	Name               string
	FHIRBaseURLs       []string
	MFARequired        bool
	MFAOffered         bool
	AllowEmailLinking  bool
	JITProvisioning    bool
	OpaqueAccessTokens bool
	// AccessTokenAlg is one of keys.AccessTokenAlgorithms; blank means the default, ES256.
	AccessTokenAlg string
	// AccessTokenTTL, RefreshTokenTTL and IDTokenTTL override the server's
	// defaults when non-zero.
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	IDTokenTTL      time.Duration
	// Gateway, when not nil, replaces the tenant's gateway settings, as
	// SetGateway does, in the same write; one with no field set removes
	// them. Nil keeps them.
	Gateway *GatewayInput
	// RateLimits, when not nil, replaces the tenant's rate limits; nil keeps them.
	RateLimits *storage.RateLimits
	// Version is the version of the tenant the edit was made from; a tenant
	// changed since is refused with an error wrapping storage.ErrConflict.
	// Zero makes the edit to the tenant as it is now.
	Version int64
}

// UpdateTenant validates and stores a tenant's name, FHIR base URLs and
// policy, keeping its patient search source, and its gateway settings
// unless in.Gateway replaces them, and returns the tenant as stored; the
// audit event names the fields that changed and their new values, and a
// gateway change has its own event, as from SetGateway or ClearGateway.
func (s *Service) UpdateTenant(ctx context.Context, in TenantUpdate, who Actor) (storage.Tenant, error) {
	if in.ID == storage.OperatorRealm {
		return storage.Tenant{}, invalid("the operator realm is not a tenant and has no settings to edit")
	}
	name, bases, err := tenantNameAndURLs(in.ID, in.Name, in.FHIRBaseURLs)
	if err != nil {
		return storage.Tenant{}, err
	}
	alg, err := checkAccessTokenAlg(in.AccessTokenAlg)
	if err != nil {
		return storage.Tenant{}, err
	}
	var limits storage.RateLimits
	if in.RateLimits != nil {
		if limits, err = checkRateLimits(*in.RateLimits); err != nil {
			return storage.Tenant{}, err
		}
	}
	var gateway storage.GatewaySettings
	if in.Gateway != nil {
		if gateway, err = s.gatewaySettings(in.ID, *in.Gateway); err != nil {
			return storage.Tenant{}, err
		}
	}
	for attempt := 1; ; attempt++ {
		old, err := s.store.GetTenant(ctx, in.ID)
		if err != nil {
			return storage.Tenant{}, fmt.Errorf("tenant %q: %w", in.ID, err)
		}
		if in.Version != 0 && old.Version != in.Version {
			return storage.Tenant{}, fmt.Errorf("tenant %q is at version %d, the edit was made from %d: %w",
				in.ID, old.Version, in.Version, storage.ErrConflict)
		}
		// The key comes first: once the setting is stored, every replica
		// signs with it. A key added for an edit that then fails stays, unused.
		kid, err := s.keys.EnsureKey(ctx, in.ID, alg)
		if err != nil {
			return storage.Tenant{}, err
		}
		if kid != "" {
			if err := s.audit(ctx, in.ID, "admin.keys.add", who, "", map[string]string{"kid": kid, "alg": alg}); err != nil {
				return storage.Tenant{}, err
			}
		}
		t := old
		t.Name, t.FHIRBaseURLs = name, bases
		t.Policy.MFARequired = in.MFARequired
		t.Policy.MFAOffered = in.MFAOffered
		t.Policy.AllowEmailLinking = in.AllowEmailLinking
		t.Policy.JITProvisioning = in.JITProvisioning
		t.Policy.OpaqueAccessTokens = in.OpaqueAccessTokens
		t.Policy.AccessTokenAlg = alg
		t.Policy.AccessTokenTTL = storage.Duration(in.AccessTokenTTL)
		t.Policy.RefreshTokenTTL = storage.Duration(in.RefreshTokenTTL)
		t.Policy.IDTokenTTL = storage.Duration(in.IDTokenTTL)
		if in.RateLimits != nil {
			t.Policy.RateLimits = limits
		}
		if err := checkLifetimes(t.Policy); err != nil {
			return storage.Tenant{}, err
		}
		if in.Gateway != nil {
			if err := checkGatewayNeeds(gateway, t.Policy.PatientSearch); err != nil {
				return storage.Tenant{}, err
			}
			t.Policy.Gateway = gateway
		}
		err = s.store.UpdateTenant(ctx, t)
		if errors.Is(err, storage.ErrConflict) && in.Version == 0 && attempt < maxEditAttempts {
			continue
		}
		if err != nil {
			return storage.Tenant{}, fmt.Errorf("update tenant %q: %w", t.ID, err)
		}
		t.Version++
		if err := s.audit(ctx, t.ID, "admin.tenant.update", who, "", tenantChanges(old, t)); err != nil {
			return t, err
		}
		if in.Gateway != nil && (gateway.UpstreamURL != "" || old.Policy.Gateway.UpstreamURL != "") {
			return t, s.auditGateway(ctx, t.ID, gateway, who)
		}
		return t, nil
	}
}

// tenantChanges lists, for the audit trail, the fields that differ between
// two versions of a tenant with their new values; none of them is secret.
func tenantChanges(old, t storage.Tenant) map[string]string {
	o, n := old.Policy, t.Policy
	fields := []fieldChange{
		{"name", old.Name, t.Name},
		{"fhir_base_urls", strings.Join(old.FHIRBaseURLs, " "), strings.Join(t.FHIRBaseURLs, " ")},
		{"mfa_required", fmt.Sprint(o.MFARequired), fmt.Sprint(n.MFARequired)},
		{"mfa_offered", fmt.Sprint(o.MFAOffered), fmt.Sprint(n.MFAOffered)},
		{"allow_email_linking", fmt.Sprint(o.AllowEmailLinking), fmt.Sprint(n.AllowEmailLinking)},
		{"jit_provisioning", fmt.Sprint(o.JITProvisioning), fmt.Sprint(n.JITProvisioning)},
		{"opaque_access_tokens", fmt.Sprint(o.OpaqueAccessTokens), fmt.Sprint(n.OpaqueAccessTokens)},
		{"access_token_alg", o.AccessTokenAlgOrDefault(), n.AccessTokenAlgOrDefault()},
		{"access_token_ttl", time.Duration(o.AccessTokenTTL).String(), time.Duration(n.AccessTokenTTL).String()},
		{"refresh_token_ttl", time.Duration(o.RefreshTokenTTL).String(), time.Duration(n.RefreshTokenTTL).String()},
		{"id_token_ttl", time.Duration(o.IDTokenTTL).String(), time.Duration(n.IDTokenTTL).String()},
		{"client_rate_limit", rateLimitText(o.RateLimits.ClientPerMinute), rateLimitText(n.RateLimits.ClientPerMinute)},
		{"address_rate_limit", rateLimitText(o.RateLimits.AddressPerMinute), rateLimitText(n.RateLimits.AddressPerMinute)},
	}
	return changes(fields)
}

// rateLimitText is a stored rate limit as the audit trail shows it.
func rateLimitText(n int) string {
	switch {
	case n == 0:
		return "default"
	case n < 0:
		return "off"
	}
	return fmt.Sprint(n)
}

// fieldChange is one field of a record before and after an edit, as the
// audit trail shows it.
type fieldChange struct{ name, old, new string }

// changes turns fields into audit details: each changed field with its new
// value, and "changed" listing their names in order.
func changes(fields []fieldChange) map[string]string {
	details := map[string]string{}
	var names []string
	for _, f := range fields {
		if f.old != f.new {
			names = append(names, f.name)
			details[f.name] = f.new
		}
	}
	details["changed"] = strings.Join(names, " ")
	return details
}
