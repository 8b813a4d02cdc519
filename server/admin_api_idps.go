package server

import (
	"errors"
	"net/http"
	"time"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/storage"
)

// apiIdentityProvider is an upstream identity provider as the admin API
// shows it: whether it has a client secret, never the sealed secret.
type apiIdentityProvider struct {
	ID              string                           `json:"id"`
	Type            string                           `json:"type"`
	DisplayName     string                           `json:"display_name"`
	Settings        storage.IdentityProviderSettings `json:"settings"`
	ClaimMapping    storage.ClaimMapping             `json:"claim_mapping"`
	FederationOnly  bool                             `json:"federation_only"`
	HasClientSecret bool                             `json:"has_client_secret"`
	// Domains are the email domains routed to the provider.
	Domains   []apiDomainRoute `json:"domains"`
	CreatedAt time.Time        `json:"created_at"`
	UpdatedAt time.Time        `json:"updated_at"`
}

// apiIdentityProviderInput is the body of POST …/idps and PUT
// …/idps/{idp}. On PUT the id comes from the path, domains are routed on
// their own, and an empty client secret keeps the one stored.
type apiIdentityProviderInput struct {
	ID           string                           `json:"id"`
	Type         string                           `json:"type"`
	DisplayName  string                           `json:"display_name"`
	Settings     storage.IdentityProviderSettings `json:"settings"`
	ClientSecret string                           `json:"client_secret"`
	ClaimMapping storage.ClaimMapping             `json:"claim_mapping"`
	// Domains are email domains to route to a new provider; "*." in front
	// includes subdomains.
	Domains        []string `json:"domains"`
	FederationOnly bool     `json:"federation_only"`
}

// apiDomainRoute is an email domain routed to an identity provider.
type apiDomainRoute struct {
	Domain            string    `json:"domain"`
	ProviderID        string    `json:"provider_id"`
	IncludeSubdomains bool      `json:"include_subdomains"`
	CreatedAt         time.Time `json:"created_at"`
}

// apiNewDomainRoute is the body of POST …/domain-routes.
type apiNewDomainRoute struct {
	Domain            string `json:"domain"`
	ProviderID        string `json:"provider_id"`
	IncludeSubdomains bool   `json:"include_subdomains"`
}

func (in apiIdentityProviderInput) input(id string) manage.IdentityProviderInput {
	return manage.IdentityProviderInput{
		ID: id, Type: storage.IdentityProviderType(in.Type), DisplayName: in.DisplayName, Settings: in.Settings,
		ClientSecret: in.ClientSecret, ClaimMapping: in.ClaimMapping, Domains: in.Domains, FederationOnly: in.FederationOnly,
	}
}

func apiRouteView(r storage.DomainRoute) apiDomainRoute {
	return apiDomainRoute{Domain: r.Domain, ProviderID: r.ProviderID, IncludeSubdomains: r.IncludeSubdomains, CreatedAt: r.CreatedAt}
}

func apiIdentityProviderView(p storage.IdentityProvider, routes []storage.DomainRoute) apiIdentityProvider {
	v := apiIdentityProvider{
		ID: p.ID, Type: string(p.Type), DisplayName: p.DisplayName, Settings: p.Settings, ClaimMapping: p.ClaimMapping,
		FederationOnly: p.FederationOnly, HasClientSecret: len(p.ClientSecretSealed) > 0, Domains: []apiDomainRoute{},
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
	}
	for _, r := range routes {
		if r.ProviderID == p.ID {
			v.Domains = append(v.Domains, apiRouteView(r))
		}
	}
	return v
}

// apiListIdentityProviders is GET …/idps.
func (s *Server) apiListIdentityProviders(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	ps, err := s.store.ListIdentityProviders(r.Context(), ar.tenant.ID)
	if err != nil {
		return err
	}
	routes, err := s.store.ListDomainRoutes(r.Context(), ar.tenant.ID)
	if err != nil {
		return err
	}
	out := make([]apiIdentityProvider, 0, len(ps))
	for _, p := range ps {
		out = append(out, apiIdentityProviderView(p, routes))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// apiAddIdentityProvider is POST …/idps: the provider with its domains routed.
func (s *Server) apiAddIdentityProvider(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	var in apiIdentityProviderInput
	if err := decodeJSONBody(r, &in); err != nil {
		return err
	}
	p, routes, err := s.manage.AddIdentityProvider(r.Context(), ar.tenant.ID, in.input(in.ID), ar.actor(r))
	if err != nil {
		return apiError(err, "identity provider or domain route")
	}
	writeJSON(w, http.StatusCreated, apiIdentityProviderView(p, routes))
	return nil
}

// apiUpdateIdentityProvider is PUT …/idps/{idp}.
func (s *Server) apiUpdateIdentityProvider(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	var in apiIdentityProviderInput
	if err := decodeJSONBody(r, &in); err != nil {
		return err
	}
	id := r.PathValue("idp")
	if in.ID != "" && in.ID != id {
		return &httpError{status: http.StatusBadRequest, code: "invalid_request", description: "The id in the body must be the provider's id in the path, or absent."}
	}
	p, err := s.manage.UpdateIdentityProvider(r.Context(), ar.tenant.ID, in.input(id), ar.actor(r))
	if err != nil {
		return apiError(err, "identity provider")
	}
	routes, err := s.store.ListDomainRoutes(r.Context(), ar.tenant.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiIdentityProviderView(p, routes))
	return nil
}

// apiDeleteIdentityProvider is DELETE …/idps/{idp}, with its domain routes.
func (s *Server) apiDeleteIdentityProvider(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	id := r.PathValue("idp")
	if err := s.manage.DeleteIdentityProvider(r.Context(), ar.tenant.ID, id, ar.actor(r)); err != nil {
		return apiError(err, "identity provider")
	}
	return apiNoContent(w)
}

// apiDiscoveryResult is the answer of a discovery test: what the provider's
// discovery document says, or why it could not be used.
type apiDiscoveryResult struct {
	OK        bool                    `json:"ok"`
	Discovery *manage.DiscoveryResult `json:"discovery,omitempty"`
	Error     string                  `json:"error,omitempty"`
}

// apiTestDiscovery is POST …/idps/{idp}/discovery-test. A provider that
// fails the test is a successful test with ok false: the request was fine,
// the provider is not.
func (s *Server) apiTestDiscovery(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	res, err := s.manage.TestDiscovery(r.Context(), ar.tenant.ID, r.PathValue("idp"))
	var derr *manage.DiscoveryError
	if errors.As(err, &derr) {
		s.logger(r).Info("identity provider discovery test failed", "tenant", ar.tenant.ID, "idp", r.PathValue("idp"), "err", derr.Err)
		writeJSON(w, http.StatusOK, apiDiscoveryResult{Error: derr.Error()})
		return nil
	}
	if err != nil {
		return apiError(err, "identity provider")
	}
	writeJSON(w, http.StatusOK, apiDiscoveryResult{OK: true, Discovery: &res})
	return nil
}

// apiListDomainRoutes is GET …/domain-routes.
func (s *Server) apiListDomainRoutes(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	rs, err := s.store.ListDomainRoutes(r.Context(), ar.tenant.ID)
	if err != nil {
		return err
	}
	out := make([]apiDomainRoute, 0, len(rs))
	for _, rt := range rs {
		out = append(out, apiRouteView(rt))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// apiAddDomainRoute is POST …/domain-routes.
func (s *Server) apiAddDomainRoute(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	var in apiNewDomainRoute
	if err := decodeJSONBody(r, &in); err != nil {
		return err
	}
	rt, err := s.manage.AddDomainRoute(r.Context(), ar.tenant.ID, in.ProviderID, in.Domain, in.IncludeSubdomains, ar.actor(r))
	if errors.Is(err, storage.ErrAlreadyExists) {
		return &httpError{status: http.StatusConflict, code: "already_exists", description: "That domain is already routed: remove its route first."}
	}
	if err != nil {
		return apiError(err, "identity provider")
	}
	writeJSON(w, http.StatusCreated, apiRouteView(rt))
	return nil
}

// apiDeleteDomainRoute is DELETE …/domain-routes/{domain}.
func (s *Server) apiDeleteDomainRoute(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	if err := s.manage.DeleteDomainRoute(r.Context(), ar.tenant.ID, r.PathValue("domain"), ar.actor(r)); err != nil {
		return apiError(err, "domain route")
	}
	return apiNoContent(w)
}
