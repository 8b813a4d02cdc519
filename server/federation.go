package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/smartauth/smartauth/federation"
	"github.com/smartauth/smartauth/federation/oidc"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/netguard"
	"github.com/smartauth/smartauth/server/sessions"
	"github.com/smartauth/smartauth/storage"
)

// Federated sign-in: an email whose domain the tenant routes to an upstream
// OpenID provider is sent there (authorization code with PKCE, state and
// nonce); the provider sends the browser back to the callback, where the ID
// token is verified, its claims mapped, and the identity linked to a user.

// federationStatePrefix marks the browser session entry of a sign-in in
// flight at an upstream provider; the state value completes the key.
const federationStatePrefix = "federation:"

// federationState is what the browser session keeps while the person is
// at the upstream provider.
type federationState struct {
	Provider string `json:"idp"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
	// Authz is the authorization request, checked again on return.
	Authz   string `json:"authz"`
	Expires int64  `json:"exp"`
}

// federationTTL is how long a person may take at the upstream provider.
const federationTTL = 10 * time.Minute

// redirectPage is what templates/redirect.html shows.
type redirectPage struct {
	Tenant   storage.Tenant
	Provider string
	URL      string
}

// routeEmail finds the identity provider an email's domain is routed to;
// federation.ErrNotRouted means none is.
func (s *Server) routeEmail(ctx context.Context, tenantID, email string) (federation.Route, error) {
	routes, err := manage.Routes(ctx, s.store, tenantID)
	if err != nil {
		return federation.Route{}, fmt.Errorf("load domain routes: %w", err)
	}
	route, err := federation.Match(email, routes)
	if err != nil && !errors.Is(err, federation.ErrNotRouted) {
		// Not an email address at all: nothing to route, the password step says no.
		return federation.Route{}, federation.ErrNotRouted
	}
	return route, err
}

// connectors keeps one connector per identity provider, so discovery and
// keys are fetched once, and builds a new one when the provider changes.
type connectors struct {
	// client reaches the providers; a tenant's administrator names them,
	// so it refuses private addresses unless the operator allows them.
	client *http.Client

	mu sync.Mutex
	m  map[string]cachedConnector
}

// newConnectors returns an empty set of connectors whose client may reach
// private addresses only if allowPrivate.
func newConnectors(allowPrivate bool) connectors {
	return connectors{client: oidc.NewHTTPClient(netguard.Control(allowPrivate))}
}

type cachedConnector struct {
	updated time.Time
	c       *oidc.Connector
}

// connector returns the connector of a stored identity provider.
func (s *Server) connector(p storage.IdentityProvider) (*oidc.Connector, error) {
	key := p.TenantID + "\x00" + p.ID
	s.idps.mu.Lock()
	defer s.idps.mu.Unlock()
	if c, ok := s.idps.m[key]; ok && c.updated.Equal(p.UpdatedAt) {
		return c.c, nil
	}
	secret, err := manage.OpenIdentityProviderSecret(s.keys.Sealer(), p)
	if err != nil {
		return nil, err
	}
	cfg, err := oidc.ConfigFor(p, secret)
	if err != nil {
		return nil, err
	}
	cfg.HTTPClient = s.idps.client
	c, err := oidc.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("identity provider %q: %w", p.ID, err)
	}
	if s.idps.m == nil {
		s.idps.m = map[string]cachedConnector{}
	}
	s.idps.m[key] = cachedConnector{updated: p.UpdatedAt, c: c}
	return c, nil
}

// federationCallback is where upstream providers send the browser back.
func (s *Server) federationCallbackURL(tenantID string) string {
	return s.Issuer(tenantID) + "/federation/callback"
}

// errUpstreamDown is shown when the organization's sign-in service cannot be reached.
var errUpstreamDown = &httpError{status: http.StatusBadGateway, code: "upstream_unavailable",
	description: "Your organization's sign-in service could not be reached. Try again in a moment."}

// startFederation sends the person to the identity provider their email's
// domain is routed to, keeping state, nonce and PKCE verifier in the
// browser session. The browser is sent on by a page rather than a redirect
// of the form post, since browsers hold a form's redirects to its
// form-action, and the provider's address is not known when the form is drawn.
func (s *Server) startFederation(w http.ResponseWriter, r *http.Request, t storage.Tenant, a *authzRequest, route federation.Route, email string) error {
	ctx := r.Context()
	p, err := s.store.GetIdentityProvider(ctx, t.ID, route.ConnectorID)
	if err != nil {
		return fmt.Errorf("load identity provider %q: %w", route.ConnectorID, err)
	}
	c, err := s.connector(p)
	if err != nil {
		return err
	}
	st := federationState{Provider: p.ID, Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(), Authz: a.params.Encode(),
		Expires: s.now().Add(federationTTL).Unix()}
	state := randomToken()
	authURL, err := c.AuthURL(ctx, state, st.Nonce, st.Verifier, s.federationCallbackURL(t.ID))
	if err != nil {
		s.logger(r).Warn("identity provider unreachable", "tenant", t.ID, "idp", p.ID, "err", err)
		return errUpstreamDown
	}
	if hint := strings.TrimSpace(email); hint != "" {
		if u, err := url.Parse(authURL); err == nil {
			q := u.Query()
			q.Set("login_hint", hint)
			u.RawQuery = q.Encode()
			authURL = u.String()
		}
	}
	store := s.sessions.Tenant(t.ID)
	sess, err := store.Get(r, sessions.CookieName)
	if err != nil {
		return fmt.Errorf("load browser session: %w", err)
	}
	// One sign-in in flight per browser: an older one is abandoned.
	for k := range sess.Values {
		if key, ok := k.(string); ok && strings.HasPrefix(key, federationStatePrefix) {
			delete(sess.Values, k)
		}
	}
	raw, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode federation state: %w", err)
	}
	sess.Values[federationStatePrefix+state] = string(raw)
	if err := store.Save(r, w, sess); err != nil {
		return fmt.Errorf("save browser session: %w", err)
	}
	s.renderFlow(w, r, http.StatusOK, "redirect", redirectPage{Tenant: t, Provider: p.DisplayName, URL: authURL}, a.params.Get("redirect_uri"))
	return nil
}

// federationCallback completes a federated sign-in: the state must be the
// one this browser's session holds, the ID token must verify, the claims
// must agree with the tenant, and the identity must be linked to a user.
func (s *Server) federationCallback(w http.ResponseWriter, r *http.Request) error {
	t, p, err := s.tenantProvider(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	q := r.URL.Query()
	store := s.sessions.Tenant(t.ID)
	sess, err := store.Get(r, sessions.CookieName)
	if err != nil {
		return fmt.Errorf("load browser session: %w", err)
	}
	key := federationStatePrefix + q.Get("state")
	raw, _ := sess.Values[key].(string)
	if q.Get("state") == "" || raw == "" {
		return browserError(http.StatusBadRequest, "This sign-in has expired or was started in another browser. Go back to the app and sign in again.")
	}
	delete(sess.Values, key)
	if err := store.Save(r, w, sess); err != nil {
		return fmt.Errorf("save browser session: %w", err)
	}
	var st federationState
	if err := json.Unmarshal([]byte(raw), &st); err != nil || s.now().Unix() >= st.Expires {
		return browserError(http.StatusBadRequest, "This sign-in has expired. Go back to the app and sign in again.")
	}
	params, err := url.ParseQuery(st.Authz)
	if err != nil {
		return browserError(http.StatusBadRequest, "This sign-in has expired. Go back to the app and sign in again.")
	}
	a, err := s.checkAuthorize(ctx, t, p, params)
	if err != nil {
		return s.authzFailed(w, r, t.ID, err)
	}
	refused := func(reason, detail string) error {
		s.logger(r).Info("federated sign-in refused", "tenant", t.ID, "idp", st.Provider, "reason", reason, "detail", truncate(detail, 200))
		s.audit(r, storage.AuditEvent{TenantID: t.ID, Type: "login.failure", Outcome: "failure", ClientID: a.client.ID,
			Details: map[string]string{"method": "federated", "provider": st.Provider, "reason": reason, "detail": truncate(detail, 200)}})
		return browserError(http.StatusForbidden, "Your organization's sign-in could not be accepted here. Contact your organization if this keeps happening.")
	}
	if e := q.Get("error"); e != "" {
		return refused("upstream_"+truncate(e, 40), q.Get("error_description"))
	}
	idp, err := s.store.GetIdentityProvider(ctx, t.ID, st.Provider)
	if errors.Is(err, storage.ErrNotFound) {
		return refused("provider_removed", "")
	}
	if err != nil {
		return fmt.Errorf("load identity provider: %w", err)
	}
	c, err := s.connector(idp)
	if err != nil {
		return err
	}
	id, err := c.Exchange(ctx, q.Get("code"), st.Verifier, s.federationCallbackURL(t.ID), st.Nonce)
	var refusal *federation.RefusalError
	if errors.As(err, &refusal) {
		return refused(string(refusal.Reason), refusal.Detail)
	}
	if err != nil {
		s.logger(r).Warn("identity provider exchange failed", "tenant", t.ID, "idp", idp.ID, "err", err)
		return errUpstreamDown
	}
	mapped, err := federation.MapClaims(t.ID, idp.ClaimMapping, id.Claims)
	if errors.As(err, &refusal) {
		return refused(string(refusal.Reason), refusal.Detail)
	}
	if err != nil {
		return err
	}
	u, reason, err := s.linkUser(ctx, t, idp, id, mapped)
	if err != nil {
		return err
	}
	if reason != "" {
		return refused(reason, id.Email)
	}
	csrf, err := s.csrfToken(w, r, t.ID)
	if err != nil {
		return err
	}
	return s.signedIn(w, r, t, p, a, u, csrf, signInMethod{name: "federated", provider: idp.ID, amr: id.AMR})
}

// linkUser finds the user an upstream identity belongs to: by its stable
// issuer and subject; else, where the tenant allows it, by a verified email;
// else, where the tenant provisions just in time, a new user. A non-empty
// reason refuses the sign-in.
func (s *Server) linkUser(ctx context.Context, t storage.Tenant, idp storage.IdentityProvider, id federation.Identity,
	mapped federation.Mapped) (storage.User, string, error) {
	u, linked, reason, err := s.linkedUser(ctx, t.ID, id)
	if err != nil || linked {
		return u, reason, err
	}
	// A provider speaks for an email only when it is verified and its
	// domain is routed to that provider: another tenant provider (a
	// partner's, say) must not claim this organization's addresses.
	owned, err := s.providerOwnsEmail(ctx, t.ID, idp.ID, id)
	if err != nil {
		return storage.User{}, "", err
	}
	switch {
	case t.Policy.AllowEmailLinking && owned:
		u, err = s.store.GetUserByEmail(ctx, t.ID, id.Email)
		if errors.Is(err, storage.ErrNotFound) && t.Policy.JITProvisioning {
			return s.provision(ctx, t, idp, id, mapped)
		}
		if errors.Is(err, storage.ErrNotFound) {
			return storage.User{}, "no_account", nil
		}
		if err != nil {
			return storage.User{}, "", fmt.Errorf("load user by email: %w", err)
		}
		if u.Disabled {
			return storage.User{}, "disabled", nil
		}
		if err := s.link(ctx, t.ID, id, u.ID); err != nil {
			return storage.User{}, "", err
		}
		return u, "", nil
	case t.Policy.JITProvisioning && owned:
		return s.provision(ctx, t, idp, id, mapped)
	case t.Policy.JITProvisioning:
		return storage.User{}, "email_not_vouched", nil
	}
	return storage.User{}, "no_account", nil
}

// providerOwnsEmail reports whether the identity's email is verified by the
// provider and its domain is routed to that provider.
func (s *Server) providerOwnsEmail(ctx context.Context, tenantID, providerID string, id federation.Identity) (bool, error) {
	if !id.EmailVerified || id.Email == "" {
		return false, nil
	}
	route, err := s.routeEmail(ctx, tenantID, id.Email)
	if errors.Is(err, federation.ErrNotRouted) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return route.ConnectorID == providerID, nil
}

// linkedUser finds the user an upstream identity is already linked to by
// its issuer and subject. linked is false when there is no link; when there
// is one, a non-empty reason refuses it (the user is gone or disabled).
// Token exchange accepts only such identities.
func (s *Server) linkedUser(ctx context.Context, tenantID string, id federation.Identity) (u storage.User, linked bool, reason string, err error) {
	link, err := s.store.GetIdentityLink(ctx, tenantID, id.Issuer, id.Subject)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.User{}, false, "", nil
	}
	if err != nil {
		return storage.User{}, false, "", fmt.Errorf("load identity link: %w", err)
	}
	u, err = s.store.GetUser(ctx, tenantID, link.UserID)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.User{}, true, "no_account", nil
	}
	if err != nil {
		return storage.User{}, true, "", fmt.Errorf("load linked user: %w", err)
	}
	if u.Disabled {
		return storage.User{}, true, "disabled", nil
	}
	return u, true, "", nil
}

// provision creates a user for a first federated sign-in, with the profile
// the claims give, and links the identity to it.
func (s *Server) provision(ctx context.Context, t storage.Tenant, idp storage.IdentityProvider, id federation.Identity,
	mapped federation.Mapped) (storage.User, string, error) {
	if id.Email == "" {
		return storage.User{}, "no_email", nil
	}
	var profiles []storage.Profile
	if mapped.FHIRUser != "" {
		label := strings.Join(mapped.Roles, ", ")
		if label == "" {
			label, _, _ = strings.Cut(mapped.FHIRUser, "/")
		}
		profiles = append(profiles, storage.Profile{FHIRUser: mapped.FHIRUser, Label: label})
	}
	u, err := s.manage.CreateUser(ctx, manage.UserInput{TenantID: t.ID, Email: id.Email, Profiles: profiles},
		manage.Actor{ID: "federation:" + idp.ID})
	if errors.Is(err, storage.ErrAlreadyExists) {
		// The email belongs to a local account that linking by email may not claim.
		return storage.User{}, "email_taken", nil
	}
	if err != nil {
		return storage.User{}, "", fmt.Errorf("provision user: %w", err)
	}
	if err := s.link(ctx, t.ID, id, u.ID); err != nil {
		return storage.User{}, "", err
	}
	return u, "", nil
}

func (s *Server) link(ctx context.Context, tenantID string, id federation.Identity, userID string) error {
	err := s.store.CreateIdentityLink(ctx, storage.IdentityLink{TenantID: tenantID, Issuer: id.Issuer, Subject: id.Subject,
		UserID: userID, CreatedAt: s.now().UTC()})
	if err != nil {
		return fmt.Errorf("link identity: %w", err)
	}
	return nil
}

// randomToken is 256 random bits, base64url: state and nonce values.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}
