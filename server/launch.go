package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/ory/fosite"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/oauth"
	"github.com/smartauth/smartauth/server/textguard"
	"github.com/smartauth/smartauth/storage"
)

// launchContext is the clinical context of an EHR launch, as the EHR
// launch API and the admin API take it.
type launchContext struct {
	Patient           string          `json:"patient"`
	Encounter         string          `json:"encounter"`
	FHIRContext       json.RawMessage `json:"fhirContext"`
	NeedPatientBanner *bool           `json:"need_patient_banner"`
	SmartStyleURL     string          `json:"smart_style_url"`
	Intent            string          `json:"intent"`
	// User is a user id or email of the tenant.
	User string `json:"user"`
	// Aud is one of the tenant's FHIR base URLs; empty means the first.
	Aud string `json:"aud"`
}

// input is the launch of clientID in tenantID with this context.
func (c launchContext) input(tenantID, clientID string) manage.LaunchInput {
	return manage.LaunchInput{
		TenantID: tenantID, ClientID: clientID, Patient: c.Patient, Encounter: c.Encounter,
		FHIRContext: c.FHIRContext, NeedPatientBanner: c.NeedPatientBanner, SmartStyleURL: c.SmartStyleURL,
		Intent: c.Intent, User: c.User, Aud: c.Aud,
	}
}

// launchRequest is the body of the EHR launch API.
type launchRequest struct {
	// ClientID is the app to launch.
	ClientID string `json:"client_id"`
	launchContext
}

// createLaunch is the EHR launch API: an EHR's backend service, holding an
// access token from client_credentials whose client may create launches,
// posts a clinical context and gets the launch value for one app.
func (s *Server) createLaunch(w http.ResponseWriter, r *http.Request) error {
	t, p, err := s.tenantProvider(r)
	if err != nil {
		return err
	}
	ehr, err := s.launchCaller(w, r, p, t.ID)
	if err != nil {
		return err
	}
	var req launchRequest
	if err := decodeJSONBody(r, &req); err != nil {
		return err
	}
	res, err := s.manage.LaunchApp(r.Context(), req.input(t.ID, req.ClientID),
		manage.Actor{ID: "client:" + ehr, SourceIP: clientIP(r)})
	if errors.Is(err, manage.ErrInvalid) {
		return &httpError{status: http.StatusBadRequest, code: "invalid_request",
			description: strings.TrimPrefix(err.Error(), manage.ErrInvalid.Error()+": ")}
	}
	if err != nil {
		return fmt.Errorf("create launch: %w", err)
	}
	// The value is a bearer credential for the context until it is used.
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, res)
	return nil
}

// launchCaller checks the request's bearer token and returns the id of the
// client it was issued to. Only an access token of this tenant, active and
// issued through client_credentials to a client allowed to create launches,
// is accepted: introspection checks signature, expiry, revocation and
// tenant, because the token is looked up in this tenant's grants.
func (s *Server) launchCaller(w http.ResponseWriter, r *http.Request, p *oauth.Provider, tenantID string) (string, error) {
	refuse := func(status int, code, desc string) error {
		w.Header().Set("WWW-Authenticate", `Bearer error="`+code+`", error_description="`+desc+`"`)
		return &httpError{status: status, code: code, description: desc}
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", refuse(http.StatusUnauthorized, "invalid_token", "An access token is required in the Authorization header.")
	}
	use, ar, err := p.IntrospectToken(r.Context(), token, fosite.AccessToken, oauth.NewSession(tenantID))
	if err == nil && use != fosite.AccessToken {
		err = fosite.ErrRequestUnauthorized.WithHint("Only an access token is accepted.")
	}
	if errors.Is(err, storage.ErrUnavailable) {
		// Not the token's fault: the EHR must keep it and try again.
		return "", err
	}
	if err != nil {
		s.logger(r).Debug("launch API token refused", "tenant", tenantID, "err", err)
		return "", refuse(http.StatusUnauthorized, "invalid_token", "The access token is not valid.")
	}
	sess, _ := ar.GetSession().(*oauth.Session)
	client, _ := ar.GetClient().(*oauth.Client)
	if sess == nil || client == nil || sess.SMART.Tenant != tenantID {
		return "", refuse(http.StatusUnauthorized, "invalid_token", "The access token is not valid.")
	}
	if !sess.Backend {
		return "", refuse(http.StatusForbidden, "insufficient_scope", "The access token must come from the client_credentials grant of an EHR's backend client.")
	}
	if err := s.clientRateLimited(w, r, tenantID, client.ID); err != nil {
		return "", err
	}
	if !client.CanCreateLaunch {
		return "", refuse(http.StatusForbidden, "insufficient_scope", "The client is not allowed to create launches.")
	}
	return client.ID, nil
}

// decodeJSONBody reads one JSON object into v, refusing other media types,
// unknown fields and trailing data with invalid_request, so a misspelt
// field is reported rather than ignored.
func decodeJSONBody(r *http.Request, v any) error {
	return decodeJSON(r, v, "invalid_request", true)
}

// decodeJSON reads one JSON object into v; a refusal is a 400 (413 for a
// body past its limit) carrying code. strict refuses fields v lacks.
func decodeJSON(r *http.Request, v any, code string, strict bool) error {
	bad := func(format string, args ...any) error {
		return &httpError{status: http.StatusBadRequest, code: code, description: fmt.Sprintf(format, args...)}
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return bad("The body must be JSON, sent as application/json.")
	}
	body, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return &httpError{status: http.StatusRequestEntityTooLarge, code: "invalid_request", description: "The body is too large."}
	}
	if err != nil {
		return bad("The body could not be read: %v.", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return bad("The body is not a valid JSON object of the expected fields: %v.", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return bad("The body must hold one JSON object and nothing after it.")
	}
	// PostgreSQL cannot keep a NUL in text and SQLite would keep it as
	// sent: it is refused here, alike on both.
	if !textguard.ValidJSON(body) {
		return bad("The body holds a NUL character (\\u0000), which no field may contain.")
	}
	return nil
}
