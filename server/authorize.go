package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/ory/fosite"

	"github.com/smartauth/smartauth/server/oauth"
	"github.com/smartauth/smartauth/server/textguard"
	"github.com/smartauth/smartauth/storage"
)

// pkceChallenge is an S256 code challenge: the base64url SHA-256 digest of
// the verifier, 43 characters (RFC 7636 §4.2).
var pkceChallenge = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// authzRequest is an authorization request that passed every check:
// smartauth's own (client, redirect URI, aud, PKCE) and then fosite's.
type authzRequest struct {
	ar     fosite.AuthorizeRequester
	client storage.Client
	// params are the request's parameters; their canonical encoding travels
	// in the sign-in and consent forms and is checked again on every post.
	params url.Values
	// aud is the tenant's FHIR base URL the app named, as registered.
	aud string
	// launch is the EHR launch context the request's launch value names,
	// still unused; it is consumed when the code is issued.
	launch *storage.Launch
}

// authzRedirectError is a refusal the app hears at its redirect URI, which
// has been checked against the registration before this error can exist.
type authzRedirectError struct {
	redirectURI string
	state       string
	err         error
}

func (e *authzRedirectError) Error() string { return "authorization refused: " + e.err.Error() }
func (e *authzRedirectError) Unwrap() error { return e.err }

// browserError is an error page for a person, with a message they can act on.
func browserError(status int, desc string) error {
	return &httpError{status: status, code: strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_")), description: desc}
}

// authorize is the authorization endpoint (RFC 6749 §3.1), by GET or by
// SMART's authorize-post: it checks the request and shows the sign-in page.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) error {
	t, p, err := s.tenantProvider(r)
	if err != nil {
		return err
	}
	if err := r.ParseForm(); err != nil {
		return browserError(http.StatusBadRequest, "The sign-in request could not be read. Go back to the app and try again.")
	}
	a, err := s.checkAuthorize(r.Context(), t, p, r.Form)
	if err != nil {
		return s.authzFailed(w, r, t.ID, err)
	}
	return s.renderLogin(w, r, http.StatusOK, t, a, a.params.Get("login_hint"), "", false)
}

// checkAuthorize validates authorization request parameters, from the
// browser or from a hidden form field: nothing in them is trusted. An
// *httpError means the redirect URI is not trustworthy and a person must be
// told; an *authzRedirectError goes back to the app.
func (s *Server) checkAuthorize(ctx context.Context, t storage.Tenant, p *oauth.Provider, params url.Values) (*authzRequest, error) {
	// The sign-in and consent forms carry the parameters encoded in one
	// field, which wellFormed saw only as a whole.
	if !textguard.ValidValues(params) {
		return nil, errNotText
	}
	client, redirectURI, err := s.checkClientRedirect(ctx, t.ID, params)
	if err != nil {
		return nil, err
	}
	refuse := func(err error) error {
		return &authzRedirectError{redirectURI: redirectURI, state: params.Get("state"), err: err}
	}
	if err := checkAuthorizeParams(params); err != nil {
		return nil, refuse(err)
	}
	if err := checkParamBounds(params); err != nil {
		return nil, refuse(err)
	}
	aud, err := requestedAudience(t.FHIRBaseURLs, params)
	if err != nil {
		return nil, refuse(err)
	}
	// fosite reads an *http.Request; this one carries exactly the checked
	// parameters, whether they came from the browser or from a form.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Issuer(t.ID)+"/authorize?"+params.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("build authorize request: %w", err)
	}
	ar, err := p.NewAuthorizeRequest(ctx, req)
	if err != nil {
		return nil, refuse(err)
	}
	launch, err := s.checkLaunch(ctx, t.ID, client.ID, aud, params.Get("launch"), ar.GetRequestedScopes())
	if err != nil {
		var rfc *fosite.RFC6749Error
		if errors.As(err, &rfc) {
			return nil, refuse(err)
		}
		return nil, err
	}
	return &authzRequest{ar: ar, client: client, params: params, aud: aud, launch: launch}, nil
}

// checkLaunch finds the EHR launch context a launch value names (SMART App
// Launch 2.2 §EHR Launch). It is only looked at here, on every step of
// sign-in; it is consumed once, when the code is issued. A launch value
// belongs to the tenant and the app it was created for: at any other it is
// as unknown as a made-up one. A launch made for one FHIR server (the iss
// the EHR gave the app) holds the app to it: aud must name that server.
func (s *Server) checkLaunch(ctx context.Context, tenantID, clientID, aud, value string, scopes fosite.Arguments) (*storage.Launch, error) {
	if value == "" {
		if scopes.Has("launch") {
			return nil, fosite.ErrInvalidRequest.WithHint("The launch scope needs the launch parameter the EHR gave the app.")
		}
		return nil, nil
	}
	if !scopes.Has("launch") {
		return nil, fosite.ErrInvalidScope.WithHint("A launch parameter needs the launch scope.")
	}
	l, err := s.store.GetLaunch(ctx, tenantID, value, s.now())
	switch {
	case errors.Is(err, storage.ErrNotFound) || err == nil && l.ClientID != clientID:
		return nil, fosite.ErrInvalidRequest.WithHint("The launch is not known. Open the app from the health record again.")
	case errors.Is(err, storage.ErrExpired):
		return nil, fosite.ErrInvalidRequest.WithHint("The launch has expired. Open the app from the health record again.")
	case errors.Is(err, storage.ErrConsumed):
		return nil, fosite.ErrInvalidRequest.WithHint("The launch has already been used. Open the app from the health record again.")
	case err != nil:
		return nil, fmt.Errorf("load launch: %w", err)
	case l.Aud != "" && strings.TrimSuffix(l.Aud, "/") != strings.TrimSuffix(aud, "/"):
		return nil, fosite.ErrInvalidRequest.WithHint("The aud parameter must be the iss the EHR gave the app for this launch.")
	}
	return &l, nil
}

// checkClientRedirect finds the client and requires a redirect_uri equal,
// byte for byte, to one it registered. fosite would fill in a missing one
// and accept any port on loopback; here neither is allowed, and a failure
// is shown to the person instead of being sent to an unchecked address.
func (s *Server) checkClientRedirect(ctx context.Context, tenantID string, params url.Values) (storage.Client, string, error) {
	if len(params["client_id"]) != 1 || params.Get("client_id") == "" {
		return storage.Client{}, "", browserError(http.StatusBadRequest, "The app did not say who it is (client_id). Contact the app's developer.")
	}
	client, err := s.store.GetClient(ctx, tenantID, params.Get("client_id"))
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Client{}, "", browserError(http.StatusBadRequest, "This app is not registered with this organization. Contact the app's developer.")
	}
	if err != nil {
		return storage.Client{}, "", fmt.Errorf("load client: %w", err)
	}
	redirectURI := params.Get("redirect_uri")
	if len(params["redirect_uri"]) != 1 || redirectURI == "" {
		return storage.Client{}, "", browserError(http.StatusBadRequest, "The app did not say where to return (redirect_uri). Contact the app's developer.")
	}
	if !slices.Contains(client.RedirectURIs, redirectURI) {
		return storage.Client{}, "", browserError(http.StatusBadRequest, "The app asked to return to an address it has not registered. Contact the app's developer.")
	}
	return client, redirectURI, nil
}

// checkAuthorizeParams applies the rules fosite does not, or applies only
// after sign-in: single parameters, code flow only, PKCE S256, no request
// objects, no silent sign-in.
func checkAuthorizeParams(params url.Values) error {
	if err := singleParams(params); err != nil {
		return err
	}
	switch {
	case params.Has("request"):
		return fosite.ErrRequestNotSupported.WithHint("Request objects are not supported.")
	case params.Has("request_uri"):
		return fosite.ErrRequestURINotSupported.WithHint("Request URIs are not supported.")
	case params.Get("response_type") != "code":
		return fosite.ErrUnsupportedResponseType.WithHint("Only response_type=code is supported.")
	case params.Get("code_challenge") == "":
		return fosite.ErrInvalidRequest.WithHint("PKCE is required: send code_challenge with code_challenge_method=S256.")
	case params.Get("code_challenge_method") != "S256":
		return fosite.ErrInvalidRequest.WithHint("Only code_challenge_method=S256 is supported.")
	case !pkceChallenge.MatchString(params.Get("code_challenge")):
		return fosite.ErrInvalidRequest.WithHint("The code_challenge is not an S256 challenge.")
	case slices.Contains(strings.Fields(params.Get("prompt")), "none"):
		// There are no sign-in sessions yet, so nobody is ever signed in already.
		return fosite.ErrLoginRequired.WithHint("The user must sign in.")
	case params.Has("nonce") && len(params.Get("nonce")) < fosite.MinParameterEntropy:
		// fosite would refuse this only at the token endpoint, after the person signed in.
		return fosite.ErrInvalidRequest.WithHintf("The nonce must be at least %d characters.", fosite.MinParameterEntropy)
	}
	return nil
}

// errInvalidTarget is RFC 8707 §2's error for a resource the server will
// not issue tokens for; fosite does not define it.
var errInvalidTarget = &fosite.RFC6749Error{ErrorField: "invalid_target", CodeField: http.StatusBadRequest,
	DescriptionField: "The requested resource is invalid, missing, unknown, or malformed."}

// requestedAudience is the FHIR server an authorization request is for:
// SMART's aud, or RFC 8707's resource, which is treated alike; when both
// are given they must name the same server.
func requestedAudience(bases []string, params url.Values) (string, error) {
	aud, resource := params.Get("aud"), params.Get("resource")
	if aud == "" && resource == "" {
		return "", fosite.ErrInvalidRequest.WithHint("The aud parameter must name a FHIR server of this organization.")
	}
	if aud == "" {
		aud = resource
	}
	base, ok := matchAudience(bases, aud)
	if !ok {
		return "", fosite.ErrInvalidRequest.WithHint("The aud parameter must name a FHIR server of this organization.")
	}
	if resource != "" {
		if other, ok := matchAudience(bases, resource); !ok || other != base {
			return "", errInvalidTarget.WithHint("The resource parameter must name the same FHIR server as aud.")
		}
	}
	return base, nil
}

// matchAudience finds the FHIR base URL an app named in aud, ignoring one
// trailing slash on either side, and returns it as the tenant registered it.
func matchAudience(bases []string, aud string) (string, bool) {
	if aud == "" {
		return "", false
	}
	want := strings.TrimSuffix(aud, "/")
	for _, b := range bases {
		if strings.TrimSuffix(b, "/") == want {
			return b, true
		}
	}
	return "", false
}

// authzFailed answers a failed authorization step: at the app's redirect
// URI when that was checked, otherwise with an error page.
func (s *Server) authzFailed(w http.ResponseWriter, r *http.Request, tenantID string, err error) error {
	var re *authzRedirectError
	if !errors.As(err, &re) {
		return err
	}
	return s.redirectAuthzError(w, r, tenantID, re)
}

// redirectAuthzError sends an RFC 6749 §4.1.2.1 error to the app with state
// and, per RFC 9207, iss (which fosite's own error writer leaves out).
func (s *Server) redirectAuthzError(w http.ResponseWriter, r *http.Request, tenantID string, e *authzRedirectError) error {
	err := oauthError(e.err)
	s.logOAuthError(r, err, "tenant", tenantID, "sent_to_app", true)
	rfc := fosite.ErrorToRFC6749Error(err)
	desc := rfc.DescriptionField
	if rfc.HintField != "" {
		desc += " " + rfc.HintField
	}
	u, err := url.Parse(e.redirectURI)
	if err != nil {
		return fmt.Errorf("parse registered redirect URI: %w", err)
	}
	q := u.Query()
	q.Set("error", rfc.ErrorField)
	q.Set("error_description", errorDescription(desc))
	if e.state != "" {
		q.Set("state", e.state)
	}
	q.Set("iss", s.Issuer(tenantID))
	u.RawQuery = q.Encode()
	u.Fragment = ""
	w.Header().Set("Location", u.String())
	w.WriteHeader(http.StatusSeeOther)
	return nil
}

// errorDescription keeps to the characters RFC 6749 §4.1.2.1 allows in
// error_description (printable ASCII without " and \); hints may echo input.
func errorDescription(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '"':
			return '\''
		case r == '\\' || r < 0x20 || r > 0x7e:
			return -1
		}
		return r
	}, s)
}
