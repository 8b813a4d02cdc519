package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/storage"
)

// apiTenant is a tenant as the admin API shows it. The patient search
// source appears without its sealed client secret, the gateway without
// its sealed header value.
type apiTenant struct {
	ID     string `json:"id"`
	Issuer string `json:"issuer"`
	apiTenantSettings
	PatientSearch *apiPatientSearch `json:"patient_search,omitempty"`
	Gateway       *apiGateway       `json:"gateway,omitempty"`
	CreatedAt     time.Time         `json:"created_at"`
}

// apiTenantSettings are what an API client may set of a tenant: the body
// of PUT /tenants/{tenant}, and with an id that of POST /tenants.
type apiTenantSettings struct {
	Name               string   `json:"name"`
	FHIRBaseURLs       []string `json:"fhir_base_urls"`
	MFARequired        bool     `json:"mfa_required"`
	MFAOffered         bool     `json:"mfa_offered"`
	AllowEmailLinking  bool     `json:"allow_email_linking"`
	JITProvisioning    bool     `json:"jit_provisioning"`
	OpaqueAccessTokens bool     `json:"opaque_access_tokens"`
	// AccessTokenAlg is RS256, PS256 or ES256; absent means ES256.
	AccessTokenAlg  string           `json:"access_token_alg,omitempty"`
	AccessTokenTTL  storage.Duration `json:"access_token_ttl,omitempty"`
	RefreshTokenTTL storage.Duration `json:"refresh_token_ttl,omitempty"`
	IDTokenTTL      storage.Duration `json:"id_token_ttl,omitempty"`
	// RateLimits are shown as stored (0 the default, -1 none); absent from
	// a PUT keeps them.
	RateLimits *storage.RateLimits `json:"rate_limits,omitempty"`
}

// apiPatientSearch is a tenant's FHIR patient search source without its secret.
type apiPatientSearch struct {
	FHIRBaseURL string `json:"fhir_base_url"`
	TokenURL    string `json:"token_url"`
	ClientID    string `json:"client_id"`
	Scope       string `json:"scope,omitempty"`
}

// apiGateway is a tenant's gateway settings without the header value.
type apiGateway struct {
	UpstreamURL  string `json:"upstream_url"`
	UpstreamAuth string `json:"upstream_auth"`
	HeaderName   string `json:"header_name,omitempty"`
	UserHeader   string `json:"user_header"`
}

// apiGatewayInput is the gateway of a tenant as set; HeaderValue is
// write-only.
type apiGatewayInput struct {
	UpstreamURL  string `json:"upstream_url"`
	UpstreamAuth string `json:"upstream_auth,omitempty"`
	HeaderName   string `json:"header_name,omitempty"`
	HeaderValue  string `json:"header_value,omitempty"`
	UserHeader   string `json:"user_header,omitempty"`
}

// apiGatewayField is the "gateway" of a body that sets a tenant: absent
// keeps the tenant's gateway, null removes it, an object sets it.
type apiGatewayField struct {
	present bool
	set     *apiGatewayInput
}

// UnmarshalJSON reads null or a gateway object, refusing unknown fields in it.
func (f *apiGatewayField) UnmarshalJSON(b []byte) error {
	f.present, f.set = true, nil
	if string(bytes.TrimSpace(b)) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var in apiGatewayInput
	if err := dec.Decode(&in); err != nil {
		return err
	}
	f.set = &in
	return nil
}

// input is the gateway change to make: nil to keep the gateway, an empty
// input to remove it. An object without an upstream URL is refused rather
// than taken for a removal.
func (f apiGatewayField) input() (*manage.GatewayInput, error) {
	switch {
	case !f.present:
		return nil, nil
	case f.set == nil:
		return &manage.GatewayInput{}, nil
	case f.set.UpstreamURL == "":
		return nil, &httpError{status: http.StatusBadRequest, code: "invalid_request",
			description: "The gateway needs an upstream_url; null removes the gateway."}
	}
	in := manage.GatewayInput(*f.set)
	return &in, nil
}

// apiNewTenant is the body of POST /tenants.
type apiNewTenant struct {
	ID string `json:"id"`
	apiTenantSettings
	Gateway apiGatewayField `json:"gateway"`
}

// apiTenantUpdate is the body of PUT /tenants/{tenant}.
type apiTenantUpdate struct {
	apiTenantSettings
	Gateway apiGatewayField `json:"gateway"`
}

func (s *Server) apiTenantView(t storage.Tenant) apiTenant {
	p := t.Policy
	v := apiTenant{
		ID: t.ID, Issuer: s.Issuer(t.ID), CreatedAt: t.CreatedAt,
		apiTenantSettings: apiTenantSettings{
			Name: t.Name, FHIRBaseURLs: t.FHIRBaseURLs, MFARequired: p.MFARequired, MFAOffered: p.MFAOffered,
			AllowEmailLinking: p.AllowEmailLinking, JITProvisioning: p.JITProvisioning, OpaqueAccessTokens: p.OpaqueAccessTokens,
			AccessTokenTTL: p.AccessTokenTTL, RefreshTokenTTL: p.RefreshTokenTTL, IDTokenTTL: p.IDTokenTTL,
			AccessTokenAlg: p.AccessTokenAlgOrDefault(), RateLimits: &p.RateLimits,
		},
	}
	if ps := p.PatientSearch; ps.FHIRBaseURL != "" {
		v.PatientSearch = &apiPatientSearch{FHIRBaseURL: ps.FHIRBaseURL, TokenURL: ps.TokenURL, ClientID: ps.ClientID, Scope: ps.Scope}
	}
	if g := p.Gateway; g.UpstreamURL != "" {
		v.Gateway = &apiGateway{UpstreamURL: g.UpstreamURL, UpstreamAuth: g.UpstreamAuth, HeaderName: g.HeaderName, UserHeader: g.UserHeader}
		if v.Gateway.UpstreamAuth == "" {
			v.Gateway.UpstreamAuth = storage.GatewayAuthNone
		}
		if v.Gateway.UserHeader == "" {
			v.Gateway.UserHeader = storage.DefaultGatewayUserHeader
		}
	}
	if v.FHIRBaseURLs == nil {
		v.FHIRBaseURLs = []string{}
	}
	return v
}

// policy is the tenant policy the settings describe, without a patient search source.
func (in apiTenantSettings) policy() storage.TenantPolicy {
	p := storage.TenantPolicy{
		MFARequired: in.MFARequired, MFAOffered: in.MFAOffered, AllowEmailLinking: in.AllowEmailLinking,
		JITProvisioning: in.JITProvisioning, OpaqueAccessTokens: in.OpaqueAccessTokens,
		AccessTokenTTL: in.AccessTokenTTL, RefreshTokenTTL: in.RefreshTokenTTL, IDTokenTTL: in.IDTokenTTL,
		AccessTokenAlg: in.AccessTokenAlg,
	}
	if in.RateLimits != nil {
		p.RateLimits = *in.RateLimits
	}
	return p
}

// apiListTenants is GET /admin/api/v1/tenants.
func (s *Server) apiListTenants(w http.ResponseWriter, r *http.Request, _ *apiRequest) error {
	ts, err := s.manage.ListTenants(r.Context())
	if err != nil {
		return err
	}
	out := make([]apiTenant, 0, len(ts))
	for _, t := range ts {
		out = append(out, s.apiTenantView(t))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// apiCreateTenant is POST /admin/api/v1/tenants.
func (s *Server) apiCreateTenant(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	var in apiNewTenant
	if err := decodeJSONBody(r, &in); err != nil {
		return err
	}
	gateway, err := in.Gateway.input()
	if err != nil {
		return err
	}
	t, err := s.manage.CreateTenant(r.Context(), manage.TenantInput{
		ID: in.ID, Name: in.Name, FHIRBaseURLs: in.FHIRBaseURLs, Policy: in.policy(), Gateway: gateway,
	}, ar.actor(r))
	if err != nil {
		return apiError(err, "tenant")
	}
	setETag(w, t.Version)
	writeJSON(w, http.StatusCreated, s.apiTenantView(t))
	return nil
}

// apiGetTenant is GET /admin/api/v1/tenants/{tenant}, read afresh rather
// than from the cache, so an update just made shows, with the tenant's
// version as ETag.
func (s *Server) apiGetTenant(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	t, err := s.store.GetTenant(r.Context(), ar.tenant.ID)
	if err != nil {
		return apiError(err, "tenant")
	}
	setETag(w, t.Version)
	writeJSON(w, http.StatusOK, s.apiTenantView(t))
	return nil
}

// apiUpdateTenant is PUT /admin/api/v1/tenants/{tenant}: it replaces the
// tenant's name, FHIR base URLs and policy; the patient search source stays,
// and so does the gateway unless the body has one (null removes it), and
// the rate limits unless the body has them. With
// If-Match, a tenant changed since the version it names is left alone
// (412).
func (s *Server) apiUpdateTenant(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	var in apiTenantUpdate
	if err := decodeJSONBody(r, &in); err != nil {
		return err
	}
	gateway, err := in.Gateway.input()
	if err != nil {
		return err
	}
	// The tenant of the request may come from the cache; the version to
	// check against must not.
	current, err := s.store.GetTenant(r.Context(), ar.tenant.ID)
	if err != nil {
		return apiError(err, "tenant")
	}
	version, err := ifMatchVersion(r, current.Version, "tenant")
	if err != nil {
		return err
	}
	t, err := s.manage.UpdateTenant(r.Context(), manage.TenantUpdate{
		ID: ar.tenant.ID, Name: in.Name, FHIRBaseURLs: in.FHIRBaseURLs,
		MFARequired: in.MFARequired, MFAOffered: in.MFAOffered, AllowEmailLinking: in.AllowEmailLinking,
		JITProvisioning: in.JITProvisioning, OpaqueAccessTokens: in.OpaqueAccessTokens,
		AccessTokenTTL: time.Duration(in.AccessTokenTTL), RefreshTokenTTL: time.Duration(in.RefreshTokenTTL), IDTokenTTL: time.Duration(in.IDTokenTTL),
		AccessTokenAlg: in.AccessTokenAlg, Gateway: gateway, RateLimits: in.RateLimits, Version: version,
	}, ar.actor(r))
	if err != nil {
		return apiEditError(err, version, "tenant")
	}
	// This process sees the new settings at once; other replicas within the cache's TTL.
	s.tenants.forget(t.ID)
	setETag(w, t.Version)
	writeJSON(w, http.StatusOK, s.apiTenantView(t))
	return nil
}
