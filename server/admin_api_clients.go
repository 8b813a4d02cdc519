package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/storage"
)

// apiClient is a client as the admin API shows it: never its secret's
// digest. ClientSecret is filled only in the one answer that issues a
// secret, since only its digest is kept.
type apiClient struct {
	ID           string `json:"client_id"`
	ClientSecret string `json:"client_secret,omitempty"`
	apiClientSettings
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// apiClientSettings are a client's registration, as POST and PUT take it
// and as it is shown; scope is space-separated as in RFC 7591.
type apiClientSettings struct {
	Name            string           `json:"name"`
	Type            string           `json:"type"`
	RedirectURIs    []string         `json:"redirect_uris"`
	Scope           string           `json:"scope"`
	GrantTypes      []string         `json:"grant_types"`
	JWKSURL         string           `json:"jwks_uri,omitempty"`
	JWKS            json.RawMessage  `json:"jwks,omitempty"`
	LaunchURI       string           `json:"launch_uri,omitempty"`
	CanCreateLaunch bool             `json:"can_create_launch"`
	AccessTokenTTL  storage.Duration `json:"access_token_ttl,omitempty"`
}

// apiNewClient is the body of POST …/clients; an empty id is generated.
type apiNewClient struct {
	ID string `json:"client_id"`
	apiClientSettings
}

func apiClientView(c storage.Client) apiClient {
	v := apiClient{ID: c.ID, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt, apiClientSettings: apiClientSettings{
		Name: c.Name, Type: string(c.Type), RedirectURIs: c.RedirectURIs, Scope: strings.Join(c.Scopes, " "),
		GrantTypes: c.GrantTypes, JWKSURL: c.JWKSURL, LaunchURI: c.LaunchURI, CanCreateLaunch: c.CanCreateLaunch,
		AccessTokenTTL: storage.Duration(c.AccessTokenTTL),
	}}
	if len(c.JWKS) > 0 {
		v.JWKS = json.RawMessage(c.JWKS)
	}
	if v.RedirectURIs == nil {
		v.RedirectURIs = []string{}
	}
	if v.GrantTypes == nil {
		v.GrantTypes = []string{}
	}
	return v
}

// input is the manage input of a client of tenantID with id.
func (in apiClientSettings) input(tenantID, id string) manage.ClientInput {
	ci := manage.ClientInput{
		TenantID: tenantID, ID: id, Name: in.Name, Type: storage.ClientType(in.Type), RedirectURIs: in.RedirectURIs,
		Scopes: strings.Fields(in.Scope), GrantTypes: in.GrantTypes, JWKSURL: in.JWKSURL, LaunchURI: in.LaunchURI,
		CanCreateLaunch: in.CanCreateLaunch, AccessTokenTTL: time.Duration(in.AccessTokenTTL),
	}
	if jwks := bytes.TrimSpace(in.JWKS); len(jwks) > 0 && !bytes.Equal(jwks, []byte("null")) {
		ci.JWKS = jwks
	}
	return ci
}

// apiListClients is GET …/clients.
func (s *Server) apiListClients(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	cs, err := s.store.ListClients(r.Context(), ar.tenant.ID)
	if err != nil {
		return err
	}
	out := make([]apiClient, 0, len(cs))
	for _, c := range cs {
		out = append(out, apiClientView(c))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// apiCreateClient is POST …/clients; a confidential-symmetric client's
// secret is in this answer and nowhere else.
func (s *Server) apiCreateClient(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	var in apiNewClient
	if err := decodeJSONBody(r, &in); err != nil {
		return err
	}
	c, secret, err := s.manage.CreateClient(r.Context(), in.input(ar.tenant.ID, in.ID), ar.actor(r))
	if err != nil {
		return apiError(err, "client")
	}
	v := apiClientView(c)
	v.ClientSecret = secret
	writeJSON(w, http.StatusCreated, v)
	return nil
}

// apiGetClient is GET …/clients/{client}.
func (s *Server) apiGetClient(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	c, err := s.store.GetClient(r.Context(), ar.tenant.ID, r.PathValue("client"))
	if err != nil {
		return apiError(err, "client")
	}
	writeJSON(w, http.StatusOK, apiClientView(c))
	return nil
}

// apiUpdateClient is PUT …/clients/{client}: it replaces the client's
// registration. A client that becomes confidential-symmetric gets a
// secret, shown in this answer once.
func (s *Server) apiUpdateClient(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	var in apiClientSettings
	if err := decodeJSONBody(r, &in); err != nil {
		return err
	}
	c, secret, err := s.manage.UpdateClient(r.Context(), in.input(ar.tenant.ID, r.PathValue("client")), ar.actor(r))
	if err != nil {
		return apiError(err, "client")
	}
	v := apiClientView(c)
	v.ClientSecret = secret
	writeJSON(w, http.StatusOK, v)
	return nil
}

// apiDeleteClient is DELETE …/clients/{client}; the tokens issued to the
// client and the consents given to it go with it.
func (s *Server) apiDeleteClient(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	if err := s.manage.DeleteClient(r.Context(), ar.tenant.ID, r.PathValue("client"), ar.actor(r)); err != nil {
		return apiError(err, "client")
	}
	return apiNoContent(w)
}

// apiRotateClientSecret is POST …/clients/{client}/secret: a new secret,
// in this answer only; the old one stops working at once.
func (s *Server) apiRotateClientSecret(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	id := r.PathValue("client")
	secret, err := s.manage.RotateClientSecret(r.Context(), ar.tenant.ID, id, ar.actor(r))
	if err != nil {
		return apiError(err, "client")
	}
	writeJSON(w, http.StatusOK, map[string]string{"client_id": id, "client_secret": secret})
	return nil
}

// apiLaunchClient is POST …/clients/{client}/launch: an EHR launch of the
// app, as the admin pages' launch button makes one.
func (s *Server) apiLaunchClient(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	// The body of POST …/clients/{client}/launch is the launch context alone.
	var in launchContext
	if err := decodeOptionalAPIBody(r, &in); err != nil {
		return err
	}
	res, err := s.manage.LaunchApp(r.Context(), in.input(ar.tenant.ID, r.PathValue("client")), ar.actor(r))
	if err != nil {
		return apiError(err, "client")
	}
	writeJSON(w, http.StatusCreated, res)
	return nil
}
