package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/oauth"
	"github.com/smartauth/smartauth/storage"
)

// The second-factor choices of a tenant's policy, as the forms send them.
const (
	tenantMFANotAsked = "none"
	tenantMFAOffered  = "offered"
	tenantMFARequired = "required"
)

// errOperatorOnly refuses a tenant's admin an action kept for operators.
var errOperatorOnly = &httpError{status: http.StatusForbidden, code: "operator_only",
	description: "Only operators may do this. Ask an operator of this server."}

// settingsNotices are the settings page's notices after a change; a code
// not listed shows nothing, so no text of the URL reaches the page.
var settingsNotices = map[string]string{
	"tenant_created": "Tenant created with its signing keys. Review its settings, then add its admins, apps and people.",
	"saved":          "Settings saved. Every server applies them within a few seconds.",
}

// tenantForm is a tenant's fields as the forms show and send them, kept as
// typed when a form comes back to be corrected.
type tenantForm struct {
	ID   string
	Name string
	// FHIRBaseURLs holds one URL per line.
	FHIRBaseURLs string
	// MFA is tenantMFANotAsked, tenantMFAOffered or tenantMFARequired.
	MFA                string
	AllowEmailLinking  bool
	JITProvisioning    bool
	OpaqueAccessTokens bool
	// AccessTokenAlg is RS256, PS256 or ES256; blank means ES256.
	AccessTokenAlg string
	// AccessTokenTTL, RefreshTokenTTL and IDTokenTTL are Go durations;
	// empty means the server's default.
	AccessTokenTTL  string
	RefreshTokenTTL string
	IDTokenTTL      string
	// ClientRateLimit and AddressRateLimit are requests a minute; empty
	// means the default and "off" no limit.
	ClientRateLimit  string
	AddressRateLimit string
	// Version is the version of the tenant the settings form was filled
	// from, sent back so that saving a stale form is refused; blank in the
	// form that creates a tenant.
	Version string
}

// tenantFormOf fills the form from a stored tenant.
func tenantFormOf(t storage.Tenant) tenantForm {
	p := t.Policy
	mfa := tenantMFANotAsked
	switch {
	case p.MFARequired:
		mfa = tenantMFARequired
	case p.MFAOffered:
		mfa = tenantMFAOffered
	}
	return tenantForm{
		ID: t.ID, Name: t.Name, FHIRBaseURLs: strings.Join(t.FHIRBaseURLs, "\n"), MFA: mfa,
		AllowEmailLinking: p.AllowEmailLinking, JITProvisioning: p.JITProvisioning, OpaqueAccessTokens: p.OpaqueAccessTokens,
		AccessTokenAlg: p.AccessTokenAlgOrDefault(), AccessTokenTTL: formatLifetime(p.AccessTokenTTL), RefreshTokenTTL: formatLifetime(p.RefreshTokenTTL), IDTokenTTL: formatLifetime(p.IDTokenTTL),
		ClientRateLimit: formatRateLimit(p.RateLimits.ClientPerMinute), AddressRateLimit: formatRateLimit(p.RateLimits.AddressPerMinute),
		Version: strconv.FormatInt(t.Version, 10),
	}
}

// formatRateLimit is a stored rate limit as the settings form shows it.
func formatRateLimit(n int) string {
	switch {
	case n == 0:
		return ""
	case n < 0:
		return "off"
	}
	return strconv.Itoa(n)
}

// parseRateLimit reads a rate limit from the settings form.
func parseRateLimit(what, text string) (int, string) {
	switch strings.ToLower(text) {
	case "":
		return 0, ""
	case "off":
		return -1, ""
	}
	n, err := strconv.Atoi(text)
	if err != nil || n < 1 {
		return 0, what + " must be a number of requests a minute, \"off\", or blank for the default."
	}
	return n, ""
}

// readTenantForm reads a posted tenant form.
func readTenantForm(f url.Values) tenantForm {
	return tenantForm{
		ID:                 strings.TrimSpace(f.Get("id")),
		Name:               strings.TrimSpace(f.Get("name")),
		FHIRBaseURLs:       f.Get("fhir_base_urls"),
		MFA:                f.Get("mfa"),
		AllowEmailLinking:  f.Get("allow_email_linking") == "on",
		JITProvisioning:    f.Get("jit_provisioning") == "on",
		OpaqueAccessTokens: f.Get("opaque_access_tokens") == "on",
		AccessTokenAlg:     strings.TrimSpace(f.Get("access_token_alg")),
		AccessTokenTTL:     strings.TrimSpace(f.Get("access_token_ttl")),
		RefreshTokenTTL:    strings.TrimSpace(f.Get("refresh_token_ttl")),
		IDTokenTTL:         strings.TrimSpace(f.Get("id_token_ttl")),
		ClientRateLimit:    strings.TrimSpace(f.Get("client_rate_limit")),
		AddressRateLimit:   strings.TrimSpace(f.Get("address_rate_limit")),
		Version:            strings.TrimSpace(f.Get("version")),
	}
}

// baseURLs splits the FHIR base URLs field into its non-blank lines.
func (f tenantForm) baseURLs() []string {
	var out []string
	for _, line := range strings.Split(f.FHIRBaseURLs, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}

// mfaPolicy turns the second-factor choice into the policy's two flags; it
// returns a message for the admin when the choice is missing or unknown.
func (f tenantForm) mfaPolicy() (required, offered bool, message string) {
	switch f.MFA {
	case tenantMFARequired:
		return true, false, ""
	case tenantMFAOffered:
		return false, true, ""
	case tenantMFANotAsked:
		return false, false, ""
	}
	return false, false, "Choose whether people are asked for a second factor."
}

// tenantUpdate turns the settings form into the update manage checks; it
// returns a message for the admin when a field cannot be read.
func (f tenantForm) tenantUpdate(id string) (manage.TenantUpdate, string) {
	required, offered, msg := f.mfaPolicy()
	if msg != "" {
		return manage.TenantUpdate{}, msg
	}
	version, err := parseVersion(f.Version)
	if err != nil {
		msg, _ := manageMessage(err)
		return manage.TenantUpdate{}, msg
	}
	in := manage.TenantUpdate{
		ID: id, Name: f.Name, FHIRBaseURLs: f.baseURLs(), MFARequired: required, MFAOffered: offered,
		AllowEmailLinking: f.AllowEmailLinking, JITProvisioning: f.JITProvisioning, OpaqueAccessTokens: f.OpaqueAccessTokens,
		AccessTokenAlg: f.AccessTokenAlg, Version: version,
	}
	for _, l := range []struct {
		what, text string
		into       *time.Duration
	}{
		{"Access token", f.AccessTokenTTL, &in.AccessTokenTTL},
		{"Refresh token", f.RefreshTokenTTL, &in.RefreshTokenTTL},
		{"ID token", f.IDTokenTTL, &in.IDTokenTTL},
	} {
		d, msg := parseLifetime(l.what+" lifetime", l.text)
		if msg != "" {
			return manage.TenantUpdate{}, msg
		}
		*l.into = d
	}
	var limits storage.RateLimits
	for _, l := range []struct {
		what, text string
		into       *int
	}{
		{"The client rate limit", f.ClientRateLimit, &limits.ClientPerMinute},
		{"The address rate limit", f.AddressRateLimit, &limits.AddressPerMinute},
	} {
		n, msg := parseRateLimit(l.what, l.text)
		if msg != "" {
			return manage.TenantUpdate{}, msg
		}
		*l.into = n
	}
	in.RateLimits = &limits
	return in, ""
}

// parseLifetime reads an optional Go duration such as "15m"; blank is zero.
// Bounds are manage's to check, so that every door to a tenant agrees.
func parseLifetime(what, text string) (time.Duration, string) {
	if text == "" {
		return 0, ""
	}
	d, err := time.ParseDuration(text)
	if err != nil {
		return 0, fmt.Sprintf("%s %q is not a duration such as 15m, 12h or 2160h; leave it blank for the default.", what, text)
	}
	return d, ""
}

// formatLifetime writes a lifetime as short as Go reads it back: "15m",
// not "15m0s"; zero (the default) is blank.
func formatLifetime(d storage.Duration) string {
	if d == 0 {
		return ""
	}
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// manageMessage is the text of an operator mistake manage refused, without
// its sentinel's prefix; ok is false for any other error.
func manageMessage(err error) (string, bool) {
	if !errors.Is(err, manage.ErrInvalid) {
		return "", false
	}
	return strings.TrimPrefix(err.Error(), manage.ErrInvalid.Error()+": "), true
}

// newTenantPage is the operator's form to create a tenant.
type newTenantPage struct {
	adminPage
	Form tenantForm
}

// adminNewTenant shows an operator the form to create a tenant.
func (s *Server) adminNewTenant(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	if !ar.principal.Operator {
		return errOperatorOnly
	}
	s.renderNewTenant(w, r, ar, http.StatusOK, tenantForm{MFA: tenantMFARequired}, "")
	return nil
}

func (s *Server) renderNewTenant(w http.ResponseWriter, r *http.Request, ar *adminRequest, status int, f tenantForm, message string) {
	page := newTenantPage{adminPage: ar.page(s, "tenants", "New tenant"), Form: f}
	page.Error = message
	s.render(w, r, status, "admin_tenant_new", page)
}

// adminCreateTenant creates a tenant with its signing keys and sends the
// operator on to its settings.
func (s *Server) adminCreateTenant(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	if !ar.principal.Operator {
		return errOperatorOnly
	}
	f := readTenantForm(r.PostForm)
	required, offered, msg := f.mfaPolicy()
	if msg != "" {
		s.renderNewTenant(w, r, ar, http.StatusBadRequest, f, msg)
		return nil
	}
	t, err := s.manage.CreateTenant(r.Context(), manage.TenantInput{
		ID: f.ID, Name: f.Name, FHIRBaseURLs: f.baseURLs(),
		Policy: storage.TenantPolicy{MFARequired: required, MFAOffered: offered},
	}, ar.actor(r))
	if msg, ok := manageMessage(err); ok {
		s.renderNewTenant(w, r, ar, http.StatusBadRequest, f, msg)
		return nil
	}
	if errors.Is(err, storage.ErrAlreadyExists) {
		s.renderNewTenant(w, r, ar, http.StatusConflict, f, fmt.Sprintf("A tenant with the id %q already exists; choose another id.", f.ID))
		return nil
	}
	if err != nil {
		return fmt.Errorf("create tenant %q: %w", f.ID, err)
	}
	http.Redirect(w, r, s.areaURL(operatorArea())+"/t/"+t.ID+"/settings?notice=tenant_created", http.StatusSeeOther)
	return nil
}

// tenantSettingsPage shows a tenant's settings in a form.
type tenantSettingsPage struct {
	adminPage
	Form tenantForm
	// The server's token lifetimes, which a blank lifetime means.
	DefaultAccessTTL, DefaultRefreshTTL, DefaultIDTTL string
	// The default rate limits, which a blank limit means.
	DefaultClientRate, DefaultAddressRate int
}

// adminSettings shows a tenant's settings, read from the store rather than
// the tenant cache so that a change just saved shows at once.
func (s *Server) adminSettings(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	t, err := s.store.GetTenant(r.Context(), ar.tenant.ID)
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound("unknown tenant")
	}
	if err != nil {
		return fmt.Errorf("load tenant %q: %w", ar.tenant.ID, err)
	}
	ar.tenant = t
	s.renderSettings(w, r, ar, http.StatusOK, tenantFormOf(t), settingsNotices[r.URL.Query().Get("notice")], "")
	return nil
}

func (s *Server) renderSettings(w http.ResponseWriter, r *http.Request, ar *adminRequest, status int, f tenantForm, notice, message string) {
	page := tenantSettingsPage{adminPage: ar.page(s, "settings", "Settings"), Form: f,
		DefaultAccessTTL:  formatLifetime(storage.Duration(oauth.DefaultAccessTokenTTL)),
		DefaultRefreshTTL: formatLifetime(storage.Duration(oauth.DefaultRefreshTokenTTL)),
		DefaultIDTTL:      formatLifetime(storage.Duration(oauth.DefaultIDTokenTTL)),
		DefaultClientRate: storage.DefaultClientRateLimit, DefaultAddressRate: storage.DefaultAddressRateLimit,
	}
	page.Notice, page.Error = notice, message
	s.render(w, r, status, "admin_settings", page)
}

// staleSettingsMessage explains settings refused for being saved from a
// page opened before someone else's change, and what the page now shows.
const staleSettingsMessage = "Someone else changed these settings since you opened this page, so yours were not saved. " +
	"The page now shows the settings as they are: check them and make your changes again."

// adminSaveSettings saves a tenant's name, FHIR base URLs and policy, made
// from the version of the tenant the form carries; a form older than the
// tenant shows the settings as now stored, with 409.
func (s *Server) adminSaveSettings(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	f := readTenantForm(r.PostForm)
	f.ID = ar.tenant.ID
	in, msg := f.tenantUpdate(ar.tenant.ID)
	if msg != "" {
		s.renderSettings(w, r, ar, http.StatusBadRequest, f, "", msg)
		return nil
	}
	_, err := s.manage.UpdateTenant(r.Context(), in, ar.actor(r))
	// This process applies a change at once, even one whose audit record
	// failed; other replicas when the change feed tells them.
	s.tenants.forget(ar.tenant.ID)
	if msg, ok := manageMessage(err); ok {
		s.renderSettings(w, r, ar, http.StatusBadRequest, f, "", msg)
		return nil
	}
	if errors.Is(err, storage.ErrConflict) {
		t, err := s.store.GetTenant(r.Context(), ar.tenant.ID)
		if err != nil {
			return fmt.Errorf("load tenant %q: %w", ar.tenant.ID, err)
		}
		ar.tenant = t
		s.renderSettings(w, r, ar, http.StatusConflict, tenantFormOf(t), "", staleSettingsMessage)
		return nil
	}
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound("unknown tenant")
	}
	if err != nil {
		return fmt.Errorf("update tenant %q: %w", ar.tenant.ID, err)
	}
	http.Redirect(w, r, s.areaURL(ar.area)+"/settings?notice=saved", http.StatusSeeOther)
	return nil
}
