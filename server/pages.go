package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/smartauth/smartauth/storage"

	"github.com/smartauth/smartauth/web"
)

func (s *Server) staticAssets() http.Handler {
	return web.Handler("/static/")
}

// The demo tenant and its app, as the server's demo seeds them.
const (
	demoTenantID = "demo"
	demoClientID = "demo-app"
)

// homePage is what templates/home.html shows.
type homePage struct {
	BaseURL string
	// DemoApp opens the demo SMART app on the demo tenant, when it exists.
	DemoApp string
}

func (s *Server) home(w http.ResponseWriter, r *http.Request) error {
	page := homePage{BaseURL: s.base}
	demoApp, err := s.demoAppURL(r.Context())
	if err != nil {
		return err
	}
	page.DemoApp = demoApp
	s.render(w, r, http.StatusOK, "home", page)
	return nil
}

// demoAppURL is the demo SMART app's address for a standalone launch on the
// demo tenant (its first FHIR base URL as iss), or "" when there is no demo.
func (s *Server) demoAppURL(ctx context.Context) (string, error) {
	t, err := s.tenants.get(ctx, demoTenantID)
	if errors.Is(err, storage.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up the demo tenant: %w", err)
	}
	if _, err := s.clients.GetClient(ctx, t.ID, demoClientID); errors.Is(err, storage.ErrNotFound) || len(t.FHIRBaseURLs) == 0 {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("look up the demo app: %w", err)
	}
	return "/demo-app/?" + url.Values{"tenant": {t.ID}, "iss": {t.FHIRBaseURLs[0]}}.Encode(), nil
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
