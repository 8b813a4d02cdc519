package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smartauth/smartauth/server/fhirsearch"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/smart"
	"github.com/smartauth/smartauth/storage"
)

// The clients section of a tenant's admin area: registering, editing and
// deleting apps, their secrets, launching an app for a patient as an EHR
// would, and initial access tokens for RFC 7591 registration. Every change
// goes through manage, which validates it and writes the audit trail.

// clientNotices are the fixed texts a redirect's ?notice= code may show;
// the query names a text, it never supplies one.
var clientNotices = map[string]string{
	"created": "Client registered.",
	"saved":   "Client saved.",
	"deleted": "Client deleted. Its tokens and grants no longer work.",
}

// clientTypeChoices are the client types the form offers, each with the one
// line that tells an admin which fits their app.
var clientTypeChoices = []choice{
	{Value: string(storage.ClientPublic), Label: "Public",
		Hint: "Browser or mobile apps that cannot keep a secret; they sign in with PKCE only."},
	{Value: string(storage.ClientConfidentialSymmetric), Label: "Confidential, with a secret",
		Hint: "Server-side apps that keep a client secret, which this server generates."},
	{Value: string(storage.ClientConfidentialAsymmetric), Label: "Confidential, with keys",
		Hint: "Apps or backend services that sign JWT assertions with their own keys (private_key_jwt); give a JWKS URL or the JWKS."},
}

// grantTypeChoices are the grant types the form offers.
var grantTypeChoices = []choice{
	{Value: manage.GrantAuthorizationCode, Label: "Authorization code", Hint: "Apps that people sign in to and launch."},
	{Value: manage.GrantRefreshToken, Label: "Refresh token", Hint: "Keeps access without signing in again (offline_access, online_access)."},
	{Value: manage.GrantClientCredentials, Label: "Client credentials", Hint: "Backend services acting on their own, with system/ scopes; confidential clients only."},
	{Value: manage.GrantTokenExchange, Label: "Token exchange", Hint: "Trades a token of an upstream identity provider for one of ours; confidential clients only."},
}

// registrationTokenDefaultHours is what the registration token form offers,
// manage's default lifetime.
var registrationTokenDefaultHours = int(manage.DefaultInitialAccessTTL / time.Hour)

// choice is one radio button or checkbox of a form.
type choice struct {
	Value, Label, Hint string
	Checked            bool
}

// choose returns the choices with those whose value is picked checked.
func choose(choices []choice, picked func(string) bool) []choice {
	out := slices.Clone(choices)
	for i := range out {
		out[i].Checked = picked(out[i].Value)
	}
	return out
}

// clientForm is the client form as typed, kept to show again after a
// refusal.
type clientForm struct {
	ID   string
	Name string
	Type string
	// RedirectURIs holds one URI per line.
	RedirectURIs string
	// Scopes are the offered scopes ticked; ExtraScopes the others, space-separated.
	Scopes          []string
	ExtraScopes     string
	GrantTypes      []string
	JWKSURL         string
	JWKS            string
	LaunchURI       string
	CanCreateLaunch bool
	// AccessTokenTTL is a duration such as 15m; empty means the tenant's.
	AccessTokenTTL string
}

// readClientForm reads the client form of a post.
func readClientForm(f url.Values) clientForm {
	return clientForm{
		ID:              strings.TrimSpace(f.Get("client_id")),
		Name:            strings.TrimSpace(f.Get("name")),
		Type:            f.Get("type"),
		RedirectURIs:    f.Get("redirect_uris"),
		Scopes:          f["scope"],
		ExtraScopes:     f.Get("extra_scopes"),
		GrantTypes:      f["grant_type"],
		JWKSURL:         strings.TrimSpace(f.Get("jwks_url")),
		JWKS:            strings.TrimSpace(f.Get("jwks")),
		LaunchURI:       strings.TrimSpace(f.Get("launch_uri")),
		CanCreateLaunch: f.Get("can_create_launch") != "",
		AccessTokenTTL:  strings.TrimSpace(f.Get("access_token_ttl")),
	}
}

// clientFormOf fills the form from a stored client: scopes the picker
// offers become ticks, the rest the free text.
func clientFormOf(c storage.Client) clientForm {
	f := clientForm{
		ID: c.ID, Name: c.Name, Type: string(c.Type), RedirectURIs: strings.Join(c.RedirectURIs, "\n"),
		GrantTypes: c.GrantTypes, JWKSURL: c.JWKSURL, JWKS: string(c.JWKS), LaunchURI: c.LaunchURI,
		CanCreateLaunch: c.CanCreateLaunch, AccessTokenTTL: formatTTL(c.AccessTokenTTL),
	}
	offered := smart.ScopesSupported()
	var extra []string
	for _, sc := range c.Scopes {
		if slices.Contains(offered, sc) {
			f.Scopes = append(f.Scopes, sc)
		} else {
			extra = append(extra, sc)
		}
	}
	f.ExtraScopes = strings.Join(extra, " ")
	return f
}

// input turns the form into what manage registers. It checks only what
// the form itself adds: the lifetime's notation and the SMART scope
// grammar, which manage leaves to the token endpoint; manage checks the rest.
func (f clientForm) input(tenantID string) (manage.ClientInput, error) {
	in := manage.ClientInput{
		TenantID: tenantID, ID: f.ID, Name: f.Name, Type: storage.ClientType(f.Type),
		GrantTypes: f.GrantTypes, JWKSURL: f.JWKSURL, LaunchURI: f.LaunchURI, CanCreateLaunch: f.CanCreateLaunch,
	}
	for _, line := range strings.Split(f.RedirectURIs, "\n") {
		if u := strings.TrimSpace(line); u != "" {
			in.RedirectURIs = append(in.RedirectURIs, u)
		}
	}
	// A scope that breaks the grammar would be registered but never
	// granted; saying so now saves the admin a puzzling sign-in failure.
	for _, sc := range append(slices.Clone(f.Scopes), strings.Fields(f.ExtraScopes)...) {
		if _, err := smart.Parse(sc); err != nil {
			return in, formInvalid("%v", err)
		}
		in.Scopes = append(in.Scopes, sc)
	}
	if f.JWKS != "" {
		in.JWKS = []byte(f.JWKS)
	}
	if f.AccessTokenTTL != "" {
		d, err := time.ParseDuration(f.AccessTokenTTL)
		if err != nil {
			return in, formInvalid("access token lifetime %q must be a duration such as 15m or 1h, or empty for the tenant's", f.AccessTokenTTL)
		}
		in.AccessTokenTTL = d
	}
	return in, nil
}

// formInvalid is a mistake in a form, shown like manage's refusals.
func formInvalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", manage.ErrInvalid, fmt.Sprintf(format, args...))
}

// invalidMessage is the text of a refusal the admin can correct, and false
// for any other error.
func invalidMessage(err error) (string, bool) {
	if !errors.Is(err, manage.ErrInvalid) {
		return "", false
	}
	return strings.TrimPrefix(err.Error(), manage.ErrInvalid.Error()+": "), true
}

// formatTTL writes a lifetime as an admin would type it: 15m, not 15m0s.
func formatTTL(d time.Duration) string {
	switch {
	case d == 0:
		return ""
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return d.String()
}

// clientsURL is the clients section of the admin request's area.
func (s *Server) clientsURL(ar *adminRequest) string { return s.areaURL(ar.area) + "/clients" }

// clientURL is one client's page in the admin request's area.
func (s *Server) clientURL(ar *adminRequest, clientID string) string {
	return s.clientsURL(ar) + "/" + url.PathEscape(clientID)
}

// adminClient loads the client the path names; one of another tenant is
// not found, as if it did not exist.
func (s *Server) adminClient(r *http.Request, ar *adminRequest) (storage.Client, error) {
	c, err := s.store.GetClient(r.Context(), ar.tenant.ID, r.PathValue("client"))
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Client{}, errNotFound("There is no such client in this tenant. It may have been deleted.")
	}
	if err != nil {
		return storage.Client{}, fmt.Errorf("load client %q: %w", r.PathValue("client"), err)
	}
	return c, nil
}

// clientRow is one client in the list.
type clientRow struct {
	storage.Client
	EditURL string
	// LaunchURL is the launch page, when the client can be launched.
	LaunchURL string
}

// clientsPage is the clients list.
type clientsPage struct {
	adminPage
	Clients []clientRow
	NewURL  string
	// TokensURL is the registration tokens page.
	TokensURL string
}

// adminClients lists a tenant's clients.
func (s *Server) adminClients(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	page := s.newClientsPage(ar)
	page.Notice = clientNotices[r.URL.Query().Get("notice")]
	return s.renderClients(w, r, http.StatusOK, ar, page)
}

func (s *Server) newClientsPage(ar *adminRequest) clientsPage {
	return clientsPage{adminPage: ar.page(s, "clients", "Clients"), NewURL: s.clientsURL(ar) + "/new",
		TokensURL: s.clientsURL(ar) + "/registration-tokens"}
}

func (s *Server) renderClients(w http.ResponseWriter, r *http.Request, status int, ar *adminRequest, page clientsPage) error {
	all, err := s.store.ListClients(r.Context(), ar.tenant.ID)
	if err != nil {
		return fmt.Errorf("list clients of %q: %w", ar.tenant.ID, err)
	}
	for _, c := range all {
		row := clientRow{Client: c, EditURL: s.clientURL(ar, c.ID) + "/edit"}
		if launchable(c) {
			row.LaunchURL = s.clientURL(ar, c.ID) + "/launch"
		}
		page.Clients = append(page.Clients, row)
	}
	s.render(w, r, status, "admin_clients", page)
	return nil
}

// launchable is whether the admin UI can launch the client: it names
// where to open it and signs people in with a code.
func launchable(c storage.Client) bool {
	return c.LaunchURI != "" && slices.Contains(c.GrantTypes, manage.GrantAuthorizationCode)
}

// clientPage is the form to register or edit a client.
type clientPage struct {
	adminPage
	// New is true on the registration form.
	New    bool
	Action string
	Form   clientForm
	Types  []choice
	Scopes []choice
	Grants []choice
	// Client is the stored client being edited; zero when New.
	Client storage.Client
	// RotateURL, DeleteURL and LaunchURL are the edited client's other
	// actions; RotateURL and LaunchURL are empty when they do not apply.
	RotateURL, DeleteURL, LaunchURL string
}

// adminNewClient shows the registration form, with the defaults of a
// SMART app that people launch.
func (s *Server) adminNewClient(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	form := clientForm{
		Type:       string(storage.ClientPublic),
		Scopes:     []string{"openid", "fhirUser", "launch"},
		GrantTypes: []string{manage.GrantAuthorizationCode, manage.GrantRefreshToken},
	}
	s.renderClientForm(w, r, http.StatusOK, ar, storage.Client{}, form, "")
	return nil
}

// adminCreateClient registers a client from the form. A secret, if the
// type has one, is shown on this response only.
func (s *Server) adminCreateClient(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	form := readClientForm(r.PostForm)
	in, err := form.input(ar.tenant.ID)
	var c storage.Client
	var secret string
	if err == nil {
		c, secret, err = s.manage.CreateClient(r.Context(), in, ar.actor(r))
	}
	if errors.Is(err, storage.ErrAlreadyExists) {
		err = formInvalid("a client with id %q is already registered; choose another or leave the id empty", form.ID)
	}
	if msg, ok := invalidMessage(err); ok {
		s.renderClientForm(w, r, http.StatusBadRequest, ar, storage.Client{}, form, msg)
		return nil
	}
	if err != nil {
		return err
	}
	if secret != "" {
		return s.renderClientSecret(w, r, ar, c, secret, "registered")
	}
	http.Redirect(w, r, s.clientURL(ar, c.ID)+"/edit?notice=created", http.StatusSeeOther)
	return nil
}

// adminEditClient shows a client's settings and actions.
func (s *Server) adminEditClient(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	c, err := s.adminClient(r, ar)
	if err != nil {
		return err
	}
	page := s.clientFormPage(ar, c, clientFormOf(c), "")
	page.Notice = clientNotices[r.URL.Query().Get("notice")]
	s.render(w, r, http.StatusOK, "admin_client", page)
	return nil
}

// adminUpdateClient saves the edited settings of a client. A client that
// has just become confidential-symmetric gets a secret, shown once here.
func (s *Server) adminUpdateClient(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	old, err := s.adminClient(r, ar)
	if err != nil {
		return err
	}
	form := readClientForm(r.PostForm)
	// The id is the path's; the form cannot rename a client.
	form.ID = old.ID
	in, err := form.input(ar.tenant.ID)
	var c storage.Client
	var secret string
	if err == nil {
		c, secret, err = s.manage.UpdateClient(r.Context(), in, ar.actor(r))
	}
	if msg, ok := invalidMessage(err); ok {
		s.renderClientForm(w, r, http.StatusBadRequest, ar, old, form, msg)
		return nil
	}
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound("There is no such client in this tenant. It may have been deleted.")
	}
	if err != nil {
		return err
	}
	if secret != "" {
		return s.renderClientSecret(w, r, ar, c, secret, "saved")
	}
	http.Redirect(w, r, s.clientURL(ar, c.ID)+"/edit?notice=saved", http.StatusSeeOther)
	return nil
}

// adminRotateClientSecret replaces a client's secret and shows the new one
// once; the old one stops working at once.
func (s *Server) adminRotateClientSecret(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	c, err := s.adminClient(r, ar)
	if err != nil {
		return err
	}
	secret, err := s.manage.RotateClientSecret(r.Context(), ar.tenant.ID, c.ID, ar.actor(r))
	if msg, ok := invalidMessage(err); ok {
		s.renderClientForm(w, r, http.StatusBadRequest, ar, c, clientFormOf(c), msg)
		return nil
	}
	if err != nil {
		return err
	}
	return s.renderClientSecret(w, r, ar, c, secret, "rotated")
}

// adminDeleteClient removes a client once the admin has ticked the
// confirmation, which the form asks for beside its warning.
func (s *Server) adminDeleteClient(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	c, err := s.adminClient(r, ar)
	if err != nil {
		return err
	}
	if r.PostForm.Get("confirm") != "yes" {
		s.renderClientForm(w, r, http.StatusBadRequest, ar, c, clientFormOf(c),
			"Tick the confirmation to delete this client; nothing was deleted.")
		return nil
	}
	if err := s.manage.DeleteClient(r.Context(), ar.tenant.ID, c.ID, ar.actor(r)); err != nil {
		return err
	}
	http.Redirect(w, r, s.clientsURL(ar)+"?notice=deleted", http.StatusSeeOther)
	return nil
}

func (s *Server) clientFormPage(ar *adminRequest, c storage.Client, form clientForm, message string) clientPage {
	page := clientPage{
		New:    c.ID == "",
		Form:   form,
		Client: c,
		Types:  choose(clientTypeChoices, func(v string) bool { return v == form.Type }),
		Grants: choose(grantTypeChoices, func(v string) bool { return slices.Contains(form.GrantTypes, v) }),
	}
	for _, sc := range smart.ScopesSupported() {
		page.Scopes = append(page.Scopes, choice{Value: sc, Label: sc, Checked: slices.Contains(form.Scopes, sc)})
	}
	if page.New {
		page.adminPage = ar.page(s, "clients", "Register a client")
		page.Action = s.clientsURL(ar)
	} else {
		page.adminPage = ar.page(s, "clients", c.Name)
		page.Action = s.clientURL(ar, c.ID) + "/edit"
		page.DeleteURL = s.clientURL(ar, c.ID) + "/delete"
		if c.Type == storage.ClientConfidentialSymmetric {
			page.RotateURL = s.clientURL(ar, c.ID) + "/secret"
		}
		if launchable(c) {
			page.LaunchURL = s.clientURL(ar, c.ID) + "/launch"
		}
	}
	page.Error = message
	return page
}

func (s *Server) renderClientForm(w http.ResponseWriter, r *http.Request, status int, ar *adminRequest, c storage.Client, form clientForm, message string) {
	s.render(w, r, status, "admin_client", s.clientFormPage(ar, c, form, message))
}

// clientSecretPage shows a client secret once.
type clientSecretPage struct {
	adminPage
	Client storage.Client
	Secret string
	// Event is what just happened: registered, saved or rotated.
	Event     string
	ClientURL string
}

// renderClientSecret answers the post that made a secret with the secret
// itself: it is never put in a URL, and every page is sent no-store.
func (s *Server) renderClientSecret(w http.ResponseWriter, r *http.Request, ar *adminRequest, c storage.Client, secret, event string) error {
	s.render(w, r, http.StatusOK, "admin_client_secret", clientSecretPage{
		adminPage: ar.page(s, "clients", "Client secret"), Client: c, Secret: secret, Event: event,
		ClientURL: s.clientURL(ar, c.ID) + "/edit",
	})
	return nil
}

// registrationTokenPage shows a new initial access token once.
type registrationTokenPage struct {
	adminPage
	Token     string
	ExpiresAt time.Time
	// BackendServices says the token may register a backend service.
	BackendServices bool
	// Endpoint is the tenant's RFC 7591 registration endpoint.
	Endpoint  string
	TokensURL string
}

// registrationTokensPage lists the outstanding initial access tokens, with
// the form that issues one.
type registrationTokensPage struct {
	adminPage
	Tokens    []registrationTokenRow
	CreateURL string
	RevokeURL string
	// TokenHours and BackendServices are the form as typed.
	TokenHours      string
	BackendServices bool
}

// registrationTokenRow is one outstanding token; the token itself is never
// kept, so only the start of its digest names it.
type registrationTokenRow struct {
	manage.InitialAccessToken
	// IssuedBy is the issuing admin's email when they are a user of the
	// tenant, else the id (an operator, API client or the command line).
	IssuedBy string
}

// registrationTokenNotices are the fixed texts a redirect's ?notice= code
// may show on the registration tokens page.
var registrationTokenNotices = map[string]string{
	"revoked": "Registration token revoked. It can no longer register a client.",
}

// adminRegistrationTokens lists the tenant's registration tokens that are
// neither used nor expired.
func (s *Server) adminRegistrationTokens(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	page := s.newRegistrationTokensPage(ar)
	page.Notice = registrationTokenNotices[r.URL.Query().Get("notice")]
	return s.renderRegistrationTokens(w, r, http.StatusOK, ar, page)
}

func (s *Server) newRegistrationTokensPage(ar *adminRequest) registrationTokensPage {
	return registrationTokensPage{adminPage: ar.page(s, "clients", "Registration tokens"),
		CreateURL: s.clientsURL(ar) + "/registration-token", RevokeURL: s.clientsURL(ar) + "/registration-tokens/revoke",
		TokenHours: strconv.Itoa(registrationTokenDefaultHours)}
}

func (s *Server) renderRegistrationTokens(w http.ResponseWriter, r *http.Request, status int, ar *adminRequest, page registrationTokensPage) error {
	ctx := r.Context()
	tokens, err := s.manage.ListInitialAccessTokens(ctx, ar.tenant.ID)
	if err != nil {
		return fmt.Errorf("registration tokens of %q: %w", ar.tenant.ID, err)
	}
	users, err := s.store.ListUsers(ctx, ar.tenant.ID)
	if err != nil {
		return fmt.Errorf("users of %q: %w", ar.tenant.ID, err)
	}
	emails := make(map[string]string, len(users))
	for _, u := range users {
		emails[u.ID] = u.Email
	}
	for _, t := range tokens {
		row := registrationTokenRow{InitialAccessToken: t, IssuedBy: t.CreatedBy}
		if e := emails[t.CreatedBy]; e != "" {
			row.IssuedBy = e
		}
		page.Tokens = append(page.Tokens, row)
	}
	s.render(w, r, status, "admin_client_tokens", page)
	return nil
}

// adminCreateRegistrationToken issues an RFC 7591 initial access token,
// with which a developer registers one client, and shows it once. The
// token registers an app people sign in to unless the admin ticked the
// backend services box.
func (s *Server) adminCreateRegistrationToken(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	raw := strings.TrimSpace(r.PostForm.Get("ttl_hours"))
	allow := manage.InitialAccessAllowance{BackendServices: r.PostForm.Get("backend_services") == "yes"}
	hours, err := strconv.Atoi(raw)
	if err != nil || hours < 1 {
		err = formInvalid("the token's lifetime must be a whole number of hours, at least 1")
	}
	var token string
	var expires time.Time
	if err == nil {
		token, expires, err = s.manage.CreateInitialAccessToken(r.Context(), ar.tenant.ID, time.Duration(hours)*time.Hour, allow, ar.actor(r))
	}
	if msg, ok := invalidMessage(err); ok {
		page := s.newRegistrationTokensPage(ar)
		page.TokenHours, page.BackendServices, page.Error = raw, allow.BackendServices, msg
		return s.renderRegistrationTokens(w, r, http.StatusBadRequest, ar, page)
	}
	if err != nil {
		return err
	}
	s.render(w, r, http.StatusOK, "admin_client_token", registrationTokenPage{
		adminPage: ar.page(s, "clients", "Registration token"), Token: token, ExpiresAt: expires.UTC(),
		BackendServices: allow.BackendServices, Endpoint: s.Issuer(ar.tenant.ID) + "/register",
		TokensURL: s.clientsURL(ar) + "/registration-tokens",
	})
	return nil
}

// adminRevokeRegistrationToken makes an outstanding registration token,
// named by the start of its digest, unusable.
func (s *Server) adminRevokeRegistrationToken(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	ref := r.PostForm.Get("ref")
	err := s.manage.RevokeInitialAccessToken(r.Context(), ar.tenant.ID, ref, ar.actor(r))
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound("That registration token is not outstanding: it may have been used, revoked or expired.")
	}
	if err != nil {
		return fmt.Errorf("revoke registration token %q: %w", ref, err)
	}
	http.Redirect(w, r, s.clientsURL(ar)+"/registration-tokens?notice=revoked", http.StatusSeeOther)
	return nil
}

// launchPage is the form that launches an app for a patient.
type launchPage struct {
	adminPage
	Client storage.Client
	Action string
	// SearchName is the roster search as typed; Searched is true once one ran.
	SearchName string
	Searched   bool
	Results    []patientChoice
	// SearchNotice says the FHIR server could not be searched.
	SearchNotice string
	// Patient, Encounter and Aud are the launch form as typed.
	Patient   string
	Encounter string
	Aud       string
	FHIRBases []string
	// LaunchMinutes is how long the launch value works.
	LaunchMinutes int
}

// adminLaunchPage shows the launch form, and with ?name= the patients of
// the tenant's roster and FHIR server whose names start so.
func (s *Server) adminLaunchPage(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	c, err := s.launchableClient(r, ar)
	if err != nil {
		return err
	}
	page := s.newLaunchPage(ar, c)
	if name := strings.TrimSpace(truncate(r.URL.Query().Get("name"), 100)); name != "" {
		page.SearchName, page.Searched = name, true
		if page.Results, page.SearchNotice, err = s.searchPatients(r, ar.tenant, name); err != nil {
			return err
		}
	}
	s.renderLaunch(w, r, http.StatusOK, page)
	return nil
}

// adminLaunch creates a launch of the app for the chosen patient, with the
// admin as its author, and sends the browser to the app's launch URI.
func (s *Server) adminLaunch(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	c, err := s.launchableClient(r, ar)
	if err != nil {
		return err
	}
	page := s.newLaunchPage(ar, c)
	picked := strings.TrimSpace(r.PostForm.Get("patient"))
	typed := strings.TrimSpace(truncate(r.PostForm.Get("patient_id"), 100))
	page.Patient, page.Encounter, page.Aud = typed, strings.TrimSpace(truncate(r.PostForm.Get("encounter"), 100)), r.PostForm.Get("aud")
	refuse := func(status int, msg string) error {
		page.Error = msg
		s.renderLaunch(w, r, status, page)
		return nil
	}
	patient := picked
	switch {
	case picked != "" && typed != "" && picked != typed:
		return refuse(http.StatusBadRequest, "Choose one patient: either pick one found by the search or type an id, not both.")
	case picked == "":
		patient = typed
	}
	if patient == "" {
		return refuse(http.StatusBadRequest, "Choose a patient to launch the app for.")
	}
	// Only a patient the organization holds: a launch for a mistyped id
	// would hand the app a context that names no one.
	pt, err := s.lookupPatient(r.Context(), ar.tenant, patient)
	var remote *remoteSearchError
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return refuse(http.StatusBadRequest, fmt.Sprintf("Patient %q is not in this organization's records. Search by name, or check the id.", patient))
	case errors.As(err, &remote):
		s.logger(r).Warn("FHIR patient read failed", "tenant", ar.tenant.ID, "err", remote.err)
		return refuse(http.StatusBadGateway, "The organization's FHIR server could not confirm that patient just now. Try again in a moment.")
	case err != nil:
		return fmt.Errorf("look up patient for launch: %w", err)
	}
	res, err := s.manage.LaunchApp(r.Context(), manage.LaunchInput{
		TenantID: ar.tenant.ID, ClientID: c.ID, Patient: pt.ID, Encounter: page.Encounter, Aud: page.Aud,
	}, ar.actor(r))
	if msg, ok := invalidMessage(err); ok {
		return refuse(http.StatusBadRequest, msg)
	}
	if err != nil {
		return err
	}
	if res.LaunchURL == "" {
		return fmt.Errorf("launch of client %q has no launch URL", c.ID)
	}
	// The launch page's form-action allows the app's origin, so the
	// browser follows this redirect out of our origin.
	http.Redirect(w, r, res.LaunchURL, http.StatusSeeOther)
	return nil
}

// launchableClient loads the client the path names and refuses one that
// cannot be launched.
func (s *Server) launchableClient(r *http.Request, ar *adminRequest) (storage.Client, error) {
	c, err := s.adminClient(r, ar)
	if err != nil {
		return c, err
	}
	if !launchable(c) {
		return c, browserError(http.StatusBadRequest,
			"This client cannot be launched: it needs a launch URI and the authorization code grant. Edit the client to add them.")
	}
	return c, nil
}

func (s *Server) newLaunchPage(ar *adminRequest, c storage.Client) launchPage {
	return launchPage{adminPage: ar.page(s, "clients", "Launch "+c.Name), Client: c,
		Action: s.clientURL(ar, c.ID) + "/launch", FHIRBases: ar.tenant.FHIRBaseURLs, LaunchMinutes: int(manage.LaunchTTL / time.Minute)}
}

// renderLaunch shows the launch page under a policy whose form-action also
// allows the app's launch URI: browsers check form-action against every
// redirect a form post leads to, and the launch post ends at the app.
func (s *Server) renderLaunch(w http.ResponseWriter, r *http.Request, status int, page launchPage) {
	s.renderCSP(w, r, status, "admin_launch", page, pageCSPWithFormTarget(page.Client.LaunchURI))
}

// searchPatients finds patients by name in the tenant's roster and on its
// FHIR server when one is set up for search. When the FHIR server fails,
// the roster still answers and the notice says the list may be short.
func (s *Server) searchPatients(r *http.Request, t storage.Tenant, name string) ([]patientChoice, string, error) {
	q := storage.PatientQuery{Name: name, Limit: pickerLimit}
	found, err := s.store.SearchPatients(r.Context(), t.ID, q)
	if err != nil {
		return nil, "", fmt.Errorf("search patients: %w", err)
	}
	var out []patientChoice
	seen := map[string]bool{}
	for _, pt := range found {
		seen[pt.ID] = true
		out = append(out, describePatient(pt))
	}
	searcher, err := s.patientSearch.For(t)
	if errors.Is(err, fhirsearch.ErrNotConfigured) {
		return out, "", nil
	}
	if err != nil {
		s.logger(r).Error("FHIR patient search unusable", "tenant", t.ID, "err", err)
		return out, "The organization's FHIR server is not set up correctly; only local records are shown.", nil
	}
	remote, err := searcher.Search(r.Context(), q)
	if err != nil {
		s.logger(r).Warn("FHIR patient search failed", "tenant", t.ID, "err", err)
		return out, "The organization's FHIR server could not be searched just now; only local records are shown.", nil
	}
	for _, pt := range remote {
		if !seen[pt.ID] {
			seen[pt.ID] = true
			out = append(out, describePatient(pt))
		}
	}
	return out, "", nil
}
