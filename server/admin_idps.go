package server

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/storage"
)

// The identity-provider pages of a tenant: its upstream OpenID providers
// and the email domains routed to them. A provider's client secret is
// written, never shown: pages say only whether one is set.

// idpForm is a provider's settings as the add and edit forms hold them,
// with the fields the command line takes; it never holds the client secret.
type idpForm struct {
	ID                    string
	Type                  string
	DisplayName           string
	Issuer                string
	Region                string
	UserPoolID            string
	HostedUIDomain        string
	OrgURL                string
	AuthorizationServerID string
	ClientID              string
	// Scopes are space-separated; empty means the type's defaults.
	Scopes   string
	UserInfo bool
	// Domains are one per line, a leading "*." including subdomains; add form only.
	Domains        string
	FederationOnly bool
	TenantClaim    string
	PatientClaim   string
	FHIRUserClaim  string
	GroupsClaim    string
	// GroupRoles are "group=role label", one per line.
	GroupRoles string
}

// idpRow is one provider as the list shows it.
type idpRow struct {
	storage.IdentityProvider
	SecretSet bool
	// Domains are the provider's routed domains, "*." before those with subdomains.
	Domains []string
}

// idpsPage lists a tenant's providers and domain routes, with the form
// that adds a provider.
type idpsPage struct {
	adminPage
	Providers []idpRow
	Routes    []storage.DomainRoute
	Form      idpForm
}

// idpPage is one provider with the forms that change it.
type idpPage struct {
	adminPage
	Provider idpRow
	Routes   []storage.DomainRoute
	Form     idpForm
	// RouteDomain and RouteSubdomains are what was typed into the add-route form.
	RouteDomain     string
	RouteSubdomains bool
	// Discovery is the result of a discovery test; DiscoveryError its failure.
	Discovery      *manage.DiscoveryResult
	DiscoveryError string
}

// idpNotice is the fixed text of a notice a redirect after a change asks
// for by code.
func idpNotice(code string) string {
	switch code {
	case "added":
		return "The identity provider was added."
	case "updated":
		return "The identity provider was saved."
	case "deleted":
		return "The identity provider and its domain routes were deleted."
	case "route_added":
		return "The domain route was added."
	case "route_deleted":
		return "The domain route was removed; people of that domain sign in with a local password."
	}
	return ""
}

// idpFormOf fills the form with a stored provider's settings.
func idpFormOf(p storage.IdentityProvider) idpForm {
	s, m := p.Settings, p.ClaimMapping
	var roles []string
	for _, g := range slices.Sorted(maps.Keys(m.GroupRoles)) {
		roles = append(roles, g+"="+m.GroupRoles[g])
	}
	return idpForm{ID: p.ID, Type: string(p.Type), DisplayName: p.DisplayName, Issuer: s.Issuer, Region: s.Region,
		UserPoolID: s.UserPoolID, HostedUIDomain: s.HostedUIDomain, OrgURL: s.OrgURL, AuthorizationServerID: s.AuthorizationServerID,
		ClientID: s.ClientID, Scopes: strings.Join(s.Scopes, " "), UserInfo: s.UserInfo, FederationOnly: p.FederationOnly,
		TenantClaim: m.TenantClaim, PatientClaim: m.PatientClaim, FHIRUserClaim: m.FHIRUserClaim, GroupsClaim: m.GroupsClaim,
		GroupRoles: strings.Join(roles, "\n")}
}

// readIDPForm reads the add or edit form.
func readIDPForm(f url.Values) idpForm {
	get := func(k string) string { return strings.TrimSpace(f.Get(k)) }
	return idpForm{ID: get("id"), Type: get("type"), DisplayName: get("display_name"), Issuer: get("issuer"),
		Region: get("region"), UserPoolID: get("user_pool_id"), HostedUIDomain: get("hosted_ui_domain"), OrgURL: get("org_url"),
		AuthorizationServerID: get("authorization_server_id"), ClientID: get("client_id"), Scopes: get("scopes"),
		UserInfo: f.Get("userinfo") == "on", Domains: f.Get("domains"), FederationOnly: f.Get("federation_only") == "on",
		TenantClaim: get("tenant_claim"), PatientClaim: get("patient_claim"), FHIRUserClaim: get("fhir_user_claim"),
		GroupsClaim: get("groups_claim"), GroupRoles: f.Get("group_roles")}
}

// input turns the form into manage's input, with the secret typed beside it.
func (f idpForm) input(secret string) (manage.IdentityProviderInput, error) {
	in := manage.IdentityProviderInput{ID: f.ID, Type: storage.IdentityProviderType(f.Type), DisplayName: f.DisplayName,
		Settings: storage.IdentityProviderSettings{Issuer: f.Issuer, ClientID: f.ClientID, UserInfo: f.UserInfo,
			Region: f.Region, UserPoolID: f.UserPoolID, HostedUIDomain: f.HostedUIDomain,
			OrgURL: f.OrgURL, AuthorizationServerID: f.AuthorizationServerID},
		ClientSecret: secret, FederationOnly: f.FederationOnly,
		ClaimMapping: storage.ClaimMapping{TenantClaim: f.TenantClaim, PatientClaim: f.PatientClaim,
			FHIRUserClaim: f.FHIRUserClaim, GroupsClaim: f.GroupsClaim}}
	// No scopes typed keeps the type's defaults, which a nil list asks for.
	if scopes := strings.Fields(f.Scopes); len(scopes) > 0 {
		in.Settings.Scopes = scopes
	}
	in.Domains = strings.Fields(f.Domains)
	for _, line := range strings.Split(f.GroupRoles, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		g, role, ok := strings.Cut(line, "=")
		g, role = strings.TrimSpace(g), strings.TrimSpace(role)
		if !ok || g == "" || role == "" {
			return in, fmt.Errorf("%w: group role %q must be group=role label", manage.ErrInvalid, strings.TrimSpace(line))
		}
		if in.ClaimMapping.GroupRoles == nil {
			in.ClaimMapping.GroupRoles = map[string]string{}
		}
		in.ClaimMapping.GroupRoles[g] = role
	}
	return in, nil
}

// idpRowOf describes a provider with the domains routed to it.
func idpRowOf(p storage.IdentityProvider, routes []storage.DomainRoute) idpRow {
	row := idpRow{IdentityProvider: p, SecretSet: len(p.ClientSecretSealed) > 0}
	// The sealed secret has no business in a page's data.
	row.ClientSecretSealed = nil
	for _, r := range routes {
		if r.ProviderID == p.ID {
			row.Domains = append(row.Domains, routeName(r))
		}
	}
	return row
}

// routeName writes a route's domain as it is typed: "*." before a domain
// whose subdomains are routed too.
func routeName(r storage.DomainRoute) string {
	if r.IncludeSubdomains {
		return "*." + r.Domain
	}
	return r.Domain
}

// adminIdPs lists the tenant's providers and domain routes.
func (s *Server) adminIdPs(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	return s.renderIdPs(w, r, ar, http.StatusOK, idpForm{Type: string(storage.IdentityProviderOIDC)}, "")
}

func (s *Server) renderIdPs(w http.ResponseWriter, r *http.Request, ar *adminRequest, status int, form idpForm, message string) error {
	ctx := r.Context()
	ps, err := s.store.ListIdentityProviders(ctx, ar.tenant.ID)
	if err != nil {
		return fmt.Errorf("identity providers of tenant %q: %w", ar.tenant.ID, err)
	}
	routes, err := s.store.ListDomainRoutes(ctx, ar.tenant.ID)
	if err != nil {
		return fmt.Errorf("domain routes of tenant %q: %w", ar.tenant.ID, err)
	}
	page := idpsPage{adminPage: ar.page(s, "idps", "Identity providers"), Routes: routes, Form: form}
	page.Error = message
	if message == "" {
		page.Notice = idpNotice(r.URL.Query().Get("notice"))
	}
	for _, p := range ps {
		page.Providers = append(page.Providers, idpRowOf(p, routes))
	}
	s.render(w, r, status, "admin_idps", page)
	return nil
}

// adminAddIdP adds a provider with the domains routed to it.
func (s *Server) adminAddIdP(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	form := readIDPForm(r.PostForm)
	in, err := form.input(r.PostForm.Get("client_secret"))
	if err == nil {
		_, _, err = s.manage.AddIdentityProvider(r.Context(), ar.tenant.ID, in, ar.actor(r))
	}
	if msg, ok := manageInputMessage(err, "That provider id or one of those domains is taken already in this tenant."); ok {
		return s.renderIdPs(w, r, ar, http.StatusBadRequest, form, msg)
	}
	if err != nil {
		return err
	}
	return s.adminRedirect(w, r, ar, "/idps/"+url.PathEscape(in.ID), "added")
}

// idpView is what the provider page shows beyond the stored provider: a
// form typed, a route typed, a discovery test's outcome.
type idpView struct {
	status int
	// form, when not nil, replaces the stored settings in the edit form.
	form            *idpForm
	routeDomain     string
	routeSubdomains bool
	discovery       *manage.DiscoveryResult
	discoveryError  string
	message         string
}

// adminIdP shows one provider.
func (s *Server) adminIdP(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	return s.renderIdP(w, r, ar, idpView{status: http.StatusOK})
}

func (s *Server) renderIdP(w http.ResponseWriter, r *http.Request, ar *adminRequest, v idpView) error {
	ctx := r.Context()
	p, err := s.store.GetIdentityProvider(ctx, ar.tenant.ID, r.PathValue("idp"))
	if err != nil {
		return notFoundAs(err, "There is no such identity provider in this tenant.")
	}
	all, err := s.store.ListDomainRoutes(ctx, ar.tenant.ID)
	if err != nil {
		return fmt.Errorf("domain routes of tenant %q: %w", ar.tenant.ID, err)
	}
	var routes []storage.DomainRoute
	for _, rt := range all {
		if rt.ProviderID == p.ID {
			routes = append(routes, rt)
		}
	}
	title := p.DisplayName
	if title == "" {
		title = p.ID
	}
	page := idpPage{adminPage: ar.page(s, "idps", title), Provider: idpRowOf(p, routes), Routes: routes, Form: idpFormOf(p),
		RouteDomain: v.routeDomain, RouteSubdomains: v.routeSubdomains, Discovery: v.discovery, DiscoveryError: v.discoveryError}
	if v.form != nil {
		page.Form = *v.form
	}
	page.Error = v.message
	if v.message == "" {
		page.Notice = idpNotice(r.URL.Query().Get("notice"))
	}
	s.render(w, r, v.status, "admin_idp", page)
	return nil
}

// adminUpdateIdP saves a provider's settings; a blank secret keeps the old one.
func (s *Server) adminUpdateIdP(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	form := readIDPForm(r.PostForm)
	// The id comes from the path, and domains are routed on their own.
	form.ID, form.Domains = r.PathValue("idp"), ""
	in, err := form.input(r.PostForm.Get("client_secret"))
	if err == nil {
		_, err = s.manage.UpdateIdentityProvider(r.Context(), ar.tenant.ID, in, ar.actor(r))
	}
	if msg, ok := manageInputMessage(err, ""); ok {
		return s.renderIdP(w, r, ar, idpView{status: http.StatusBadRequest, form: &form, message: msg})
	}
	if err != nil {
		return notFoundAs(err, "There is no such identity provider in this tenant.")
	}
	return s.adminRedirect(w, r, ar, "/idps/"+url.PathEscape(form.ID), "updated")
}

// adminIdPDiscovery fetches the provider's OpenID discovery document, as
// sign-in will, and shows its issuer and endpoints or why it failed.
func (s *Server) adminIdPDiscovery(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	res, err := s.manage.TestDiscovery(r.Context(), ar.tenant.ID, r.PathValue("idp"))
	var failed *manage.DiscoveryError
	switch {
	case err == nil:
		return s.renderIdP(w, r, ar, idpView{status: http.StatusOK, discovery: &res})
	case errors.As(err, &failed):
		// The full cause went nowhere else; the log keeps it for support.
		s.logger(r).Info("identity provider discovery test failed", "tenant", ar.tenant.ID, "idp", r.PathValue("idp"), "err", failed.Err)
		return s.renderIdP(w, r, ar, idpView{status: http.StatusOK, discoveryError: failed.Error()})
	}
	if msg, ok := manageInputMessage(err, ""); ok {
		return s.renderIdP(w, r, ar, idpView{status: http.StatusBadRequest, message: msg})
	}
	return notFoundAs(err, "There is no such identity provider in this tenant.")
}

// adminAddDomainRoute routes an email domain to the provider.
func (s *Server) adminAddDomainRoute(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	id := r.PathValue("idp")
	domain := strings.TrimSpace(r.PostForm.Get("domain"))
	sub := r.PostForm.Get("include_subdomains") == "on"
	_, err := s.manage.AddDomainRoute(r.Context(), ar.tenant.ID, id, domain, sub, ar.actor(r))
	if msg, ok := manageInputMessage(err, "That domain is routed already in this tenant: remove its route first."); ok {
		return s.renderIdP(w, r, ar, idpView{status: http.StatusBadRequest, routeDomain: domain, routeSubdomains: sub, message: msg})
	}
	if err != nil {
		return notFoundAs(err, "There is no such identity provider in this tenant.")
	}
	return s.adminRedirect(w, r, ar, "/idps/"+url.PathEscape(id), "route_added")
}

// adminDeleteDomainRoute removes the route of one of the provider's domains.
func (s *Server) adminDeleteDomainRoute(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	ctx := r.Context()
	id := r.PathValue("idp")
	domain := r.PostForm.Get("domain")
	routes, err := s.store.ListDomainRoutes(ctx, ar.tenant.ID)
	if err != nil {
		return fmt.Errorf("domain routes of tenant %q: %w", ar.tenant.ID, err)
	}
	// Only a route of this provider is removed from its page, so a stale
	// page cannot take away a route given to another provider since.
	if !slices.ContainsFunc(routes, func(rt storage.DomainRoute) bool { return rt.ProviderID == id && rt.Domain == domain }) {
		return errNotFound("This provider has no route for that domain.")
	}
	err = s.manage.DeleteDomainRoute(ctx, ar.tenant.ID, domain, ar.actor(r))
	if msg, ok := manageInputMessage(err, ""); ok {
		return s.renderIdP(w, r, ar, idpView{status: http.StatusBadRequest, message: msg})
	}
	if err != nil {
		return notFoundAs(err, "This provider has no route for that domain.")
	}
	return s.adminRedirect(w, r, ar, "/idps/"+url.PathEscape(id), "route_deleted")
}

// adminIdPDeletePage asks the admin to confirm deleting the provider.
func (s *Server) adminIdPDeletePage(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	p, err := s.store.GetIdentityProvider(r.Context(), ar.tenant.ID, r.PathValue("idp"))
	if err != nil {
		return notFoundAs(err, "There is no such identity provider in this tenant.")
	}
	idpURL := s.areaURL(ar.area) + "/idps/" + url.PathEscape(p.ID)
	s.render(w, r, http.StatusOK, "admin_delete", adminDeletePage{
		adminPage: ar.page(s, "idps", "Delete identity provider"), What: "the identity provider " + p.ID,
		Consequences: "Its domain routes go with it, so people of those domains sign in with a local password, if they have one. Links of users to its identities stay.",
		Action:       idpURL + "/delete", CancelURL: idpURL,
	})
	return nil
}

// adminDeleteIdP deletes the provider and its domain routes.
func (s *Server) adminDeleteIdP(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	ctx := r.Context()
	id := r.PathValue("idp")
	// Checked first, so an unknown provider is a 404 and leaves no audit event.
	if _, err := s.store.GetIdentityProvider(ctx, ar.tenant.ID, id); err != nil {
		return notFoundAs(err, "There is no such identity provider in this tenant.")
	}
	if err := s.manage.DeleteIdentityProvider(ctx, ar.tenant.ID, id, ar.actor(r)); err != nil {
		return notFoundAs(err, "There is no such identity provider in this tenant.")
	}
	return s.adminRedirect(w, r, ar, "/idps", "deleted")
}
