package server

import (
	"net/http"
	"time"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/storage"
)

// apiTenant is a tenant as the admin API shows it. The patient search
// source appears without its sealed client secret.
type apiTenant struct {
	ID     string `json:"id"`
	Issuer string `json:"issuer"`
	apiTenantSettings
	PatientSearch *apiPatientSearch `json:"patient_search,omitempty"`
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
}

// apiPatientSearch is a tenant's FHIR patient search source without its secret.
type apiPatientSearch struct {
	FHIRBaseURL string `json:"fhir_base_url"`
	TokenURL    string `json:"token_url"`
	ClientID    string `json:"client_id"`
	Scope       string `json:"scope,omitempty"`
}

// apiNewTenant is the body of POST /tenants.
type apiNewTenant struct {
	ID string `json:"id"`
	apiTenantSettings
}

func (s *Server) apiTenantView(t storage.Tenant) apiTenant {
	p := t.Policy
	v := apiTenant{
		ID: t.ID, Issuer: s.Issuer(t.ID), CreatedAt: t.CreatedAt,
		apiTenantSettings: apiTenantSettings{
			Name: t.Name, FHIRBaseURLs: t.FHIRBaseURLs, MFARequired: p.MFARequired, MFAOffered: p.MFAOffered,
			AllowEmailLinking: p.AllowEmailLinking, JITProvisioning: p.JITProvisioning, OpaqueAccessTokens: p.OpaqueAccessTokens,
			AccessTokenTTL: p.AccessTokenTTL, RefreshTokenTTL: p.RefreshTokenTTL, IDTokenTTL: p.IDTokenTTL,
			AccessTokenAlg: p.AccessTokenAlgOrDefault(),
		},
	}
	if ps := p.PatientSearch; ps.FHIRBaseURL != "" {
		v.PatientSearch = &apiPatientSearch{FHIRBaseURL: ps.FHIRBaseURL, TokenURL: ps.TokenURL, ClientID: ps.ClientID, Scope: ps.Scope}
	}
	if v.FHIRBaseURLs == nil {
		v.FHIRBaseURLs = []string{}
	}
	return v
}

// policy is the tenant policy the settings describe, without a patient search source.
func (in apiTenantSettings) policy() storage.TenantPolicy {
	return storage.TenantPolicy{
		MFARequired: in.MFARequired, MFAOffered: in.MFAOffered, AllowEmailLinking: in.AllowEmailLinking,
		JITProvisioning: in.JITProvisioning, OpaqueAccessTokens: in.OpaqueAccessTokens,
		AccessTokenTTL: in.AccessTokenTTL, RefreshTokenTTL: in.RefreshTokenTTL, IDTokenTTL: in.IDTokenTTL,
		AccessTokenAlg: in.AccessTokenAlg,
	}
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
	t, err := s.manage.CreateTenant(r.Context(), manage.TenantInput{
		ID: in.ID, Name: in.Name, FHIRBaseURLs: in.FHIRBaseURLs, Policy: in.policy(),
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
// tenant's name, FHIR base URLs and policy; the patient search source stays.
// With If-Match, a tenant changed since the version it names is left alone
// (412).
func (s *Server) apiUpdateTenant(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	var in apiTenantSettings
	if err := decodeJSONBody(r, &in); err != nil {
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
		AccessTokenAlg: in.AccessTokenAlg, Version: version,
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
