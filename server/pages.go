package server

import (
	"net/http"

	"github.com/smartauth/smartauth/web"
)

func (s *Server) staticAssets() http.Handler {
	return web.Handler("/static/")
}

func (s *Server) home(w http.ResponseWriter, r *http.Request) error {
	s.render(w, r, http.StatusOK, "home", map[string]string{"BaseURL": s.base})
	return nil
}

// tenantHome is the page behind a tenant's issuer URL.
func (s *Server) tenantHome(w http.ResponseWriter, r *http.Request) error {
	t, err := s.tenant(r)
	if err != nil {
		return err
	}
	s.render(w, r, http.StatusOK, "tenant", map[string]any{"Tenant": t, "Issuer": s.Issuer(t.ID)})
	return nil
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) error {
	return errNotFound("There is nothing at this address. Check the link, or ask the organization that sent you here.")
}
