package server

import (
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/ory/fosite"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/oauth"
	"github.com/smartauth/smartauth/storage"
)

// The JSON admin API mirrors the admin pages for automation. Its callers
// are API clients, not people: confidential clients registered for the
// client_credentials grant with the AdminScope, holding access tokens that
// smartauth itself issued.
//
//   - An operator's API client lives in the operator realm and gets its
//     tokens at /admin/token; it may list and create tenants and manage
//     every tenant.
//   - A tenant's API client is a client of that tenant and gets its tokens
//     at /t/{tenant}/token; it manages that tenant only.
//
// Every change goes through manage, which validates and audits it, with the
// API client as the actor.

// AdminScope is the scope an access token needs for the admin API. It is
// an ordinary custom scope to the SMART grammar, which grants it only to a
// client registered for it; dynamic registration refuses it.
const AdminScope = manage.AdminScope

// adminAPIAudience is the audience of every admin API token, whichever
// realm issued it.
func (s *Server) adminAPIAudience() string {
	return s.base + "/admin/api"
}

// adminRealmGrants are the grants of the operator realm's token endpoint:
// its clients are machines, so there is no sign-in to authorize codes.
var adminRealmGrants = []string{"client_credentials"}

// openAPIDocument describes the admin API; a test keeps it and the route
// table in step.
//
//go:embed adminapi/openapi.json
var openAPIDocument []byte

// apiCaller is the API client an admin API request comes from.
type apiCaller struct {
	ClientID string
	// Realm is storage.OperatorRealm for an operator's API client, else the
	// tenant whose client it is.
	Realm string
}

func (c apiCaller) operator() bool { return c.Realm == storage.OperatorRealm }

// actor names the API client in the audit trail, telling operators'
// clients apart from a tenant's own, whose ids they could share.
func (c apiCaller) actor(r *http.Request) manage.Actor {
	prefix := "client:"
	if c.operator() {
		prefix = "operator-client:"
	}
	return manage.Actor{ID: prefix + c.ClientID, SourceIP: clientIP(r)}
}

// apiRequest is what an admin API handler gets: the caller and, on a
// tenant's endpoints, the tenant.
type apiRequest struct {
	caller apiCaller
	// tenant is the tenant named in the path; zero on operator endpoints.
	tenant storage.Tenant
}

func (ar *apiRequest) actor(r *http.Request) manage.Actor { return ar.caller.actor(r) }

// apiHandler is one admin API endpoint of an authenticated caller.
type apiHandler func(w http.ResponseWriter, r *http.Request, ar *apiRequest) error

// operatorAPI wraps an endpoint only operators' API clients may use:
// those about tenants as a whole.
func (s *Server) operatorAPI(h apiHandler) http.Handler {
	return s.api(func(w http.ResponseWriter, r *http.Request) error {
		c, err := s.apiCallerOf(w, r)
		if err != nil {
			return err
		}
		if !c.operator() {
			return &httpError{status: http.StatusForbidden, code: "forbidden",
				description: "Only an operator's API client may list or create tenants."}
		}
		return h(w, r, &apiRequest{caller: c})
	})
}

// tenantAPI wraps an endpoint of the tenant named in the path: operators'
// API clients may use every tenant's, a tenant's API client only its own.
// Another tenant's endpoints are refused before that tenant is looked up,
// so the answer does not tell whether it exists.
func (s *Server) tenantAPI(h apiHandler) http.Handler {
	return s.api(func(w http.ResponseWriter, r *http.Request) error {
		c, err := s.apiCallerOf(w, r)
		if err != nil {
			return err
		}
		if !c.operator() && c.Realm != r.PathValue("tenant") {
			return &httpError{status: http.StatusForbidden, code: "forbidden",
				description: "This API client manages only its own tenant."}
		}
		t, err := s.tenant(r)
		if err != nil {
			return err
		}
		return h(w, r, &apiRequest{caller: c, tenant: t})
	})
}

// apiCallerOf authenticates an admin API request by its bearer access
// token. The token is introspected by the provider of the realm that
// issued it, which checks signature or digest, expiry, revocation and
// realm: the realm the token names (only a hint, as it is not yet
// verified), then the operator realm, then the tenant in the path. It must
// come from the client_credentials grant with the AdminScope granted, and
// its client must still be registered for both, so that taking the scope
// or the grant away from a client takes effect before its tokens expire.
func (s *Server) apiCallerOf(w http.ResponseWriter, r *http.Request) (apiCaller, error) {
	refuse := func(status int, code, desc string) error {
		challenge := `Bearer error="` + code + `", error_description="` + desc + `"`
		if code == "insufficient_scope" {
			challenge += `, scope="` + AdminScope + `"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		return &httpError{status: status, code: code, description: desc}
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		w.Header().Set("WWW-Authenticate", "Bearer")
		return apiCaller{}, &httpError{status: http.StatusUnauthorized, code: "invalid_token",
			description: "An access token is required in the Authorization header."}
	}
	var (
		ar    fosite.AccessRequester
		realm string
	)
	for _, id := range tokenRealms(token, r.PathValue("tenant")) {
		found, err := s.introspectIn(r, id, token)
		if err != nil {
			return apiCaller{}, err
		}
		if found != nil {
			ar, realm = found, id
			break
		}
	}
	if ar == nil {
		return apiCaller{}, refuse(http.StatusUnauthorized, "invalid_token", "The access token is not valid.")
	}
	sess, _ := ar.GetSession().(*oauth.Session)
	if sess == nil || !sess.Backend {
		return apiCaller{}, refuse(http.StatusForbidden, "insufficient_scope",
			"The access token must come from the client_credentials grant of an API client.")
	}
	if !slices.Contains(ar.GetGrantedScopes(), AdminScope) {
		return apiCaller{}, refuse(http.StatusForbidden, "insufficient_scope", "The access token was not granted the admin scope.")
	}
	if !slices.Contains(ar.GetGrantedAudience(), s.adminAPIAudience()) {
		return apiCaller{}, refuse(http.StatusUnauthorized, "invalid_token", "The access token is not addressed to the admin API.")
	}
	clientID := ar.GetClient().GetID()
	c, err := s.store.GetClient(r.Context(), realm, clientID)
	if errors.Is(err, storage.ErrNotFound) {
		return apiCaller{}, refuse(http.StatusUnauthorized, "invalid_token", "The access token is not valid.")
	}
	if err != nil {
		return apiCaller{}, fmt.Errorf("load API client %q of %q: %w", clientID, realm, err)
	}
	if !slices.Contains(c.Scopes, AdminScope) || !slices.Contains(c.GrantTypes, manage.GrantClientCredentials) {
		return apiCaller{}, refuse(http.StatusForbidden, "insufficient_scope", "The client is no longer registered for the admin scope.")
	}
	return apiCaller{ClientID: clientID, Realm: realm}, nil
}

// tokenRealms lists, without repeats, the realms an access token may come
// from, most likely first: the realm the token names, the operator realm,
// and the tenant in the path. Ids no realm can have are left out.
func tokenRealms(token, pathTenant string) []string {
	var out []string
	for _, id := range []string{claimedRealm(token), storage.OperatorRealm, pathTenant} {
		if (id == storage.OperatorRealm || validTenantID(id)) && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// claimedRealm reads the tenant claim of a JWT access token without
// verifying it; it only says where to look first. Opaque tokens name none.
func claimedRealm(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(parts[1]) > 8<<10 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Tenant string `json:"tenant"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	return claims.Tenant
}

// introspectIn returns the access request behind an access token of realm
// id, or nil when the realm does not exist or did not issue it (or the
// token is expired or revoked).
func (s *Server) introspectIn(r *http.Request, id, token string) (fosite.AccessRequester, error) {
	t, err := s.tenants.get(r.Context(), id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load realm %q: %w", id, err)
	}
	p, err := s.oauth.For(t)
	if err != nil {
		return nil, fmt.Errorf("oauth provider of %q: %w", id, err)
	}
	use, ar, err := p.IntrospectToken(r.Context(), token, fosite.AccessToken, oauth.NewSession(id))
	if errors.Is(err, storage.ErrUnavailable) {
		return nil, err
	}
	if err != nil || use != fosite.AccessToken {
		s.logger(r).Debug("admin API token not from this realm", "realm", id, "err", err)
		return nil, nil
	}
	if sess, _ := ar.GetSession().(*oauth.Session); sess == nil || sess.SMART.Tenant != id {
		return nil, nil
	}
	return ar, nil
}

// adminToken is the operator realm's token endpoint, where operators' API
// clients get access tokens with client_credentials.
func (s *Server) adminToken(w http.ResponseWriter, r *http.Request) error {
	t, err := s.tenants.get(r.Context(), storage.OperatorRealm)
	if errors.Is(err, storage.ErrNotFound) {
		// No operator exists yet, so neither does any of their clients.
		s.writeOAuthError(w, r, http.StatusUnauthorized, "invalid_client", "Client authentication failed.")
		return nil
	}
	if err != nil {
		return fmt.Errorf("load the operator realm: %w", err)
	}
	p, err := s.oauth.For(t)
	if err != nil {
		return fmt.Errorf("oauth provider of the operator realm: %w", err)
	}
	return s.issueToken(w, r, t, p, adminRealmGrants)
}

// adminAPIDocument serves the OpenAPI description of the admin API, with
// this server's URLs filled in.
func (s *Server) adminAPIDocument(w http.ResponseWriter, r *http.Request) error {
	var doc map[string]any
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		return fmt.Errorf("read the embedded OpenAPI document: %w", err)
	}
	doc["servers"] = []map[string]string{{"url": s.base, "description": "this smartauth"}}
	if schemes, ok := jsonObjectAt(doc, "components", "securitySchemes", "operatorClient", "flows", "clientCredentials"); ok {
		schemes["tokenUrl"] = s.base + "/admin/token"
	}
	writeJSON(w, http.StatusOK, doc)
	return nil
}

// jsonObjectAt walks nested JSON objects by key.
func jsonObjectAt(m map[string]any, keys ...string) (map[string]any, bool) {
	for _, k := range keys {
		next, ok := m[k].(map[string]any)
		if !ok {
			return nil, false
		}
		m = next
	}
	return m, true
}

// apiError turns an error of manage or storage into what an API caller
// sees: invalid input is 400 with manage's message, an unknown what is 404,
// a duplicate 409. Anything else stays a server error.
func apiError(err error, what string) error {
	var he *httpError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &he):
		return err
	case errors.Is(err, manage.ErrInvalid):
		return &httpError{status: http.StatusBadRequest, code: "invalid_request", description: apiInvalidMessage(err)}
	case errors.Is(err, storage.ErrNotFound):
		return errNotFound("No such " + what + ".")
	case errors.Is(err, storage.ErrAlreadyExists):
		return &httpError{status: http.StatusConflict, code: "already_exists", description: "That " + what + " already exists."}
	case errors.Is(err, storage.ErrConflict):
		// Another change landed between this request's read and its write.
		return &httpError{status: http.StatusConflict, code: "conflict",
			description: "The " + what + " changed while the change was being made, so nothing was changed. Try again."}
	}
	return err
}

// apiInvalidMessage is the message of a manage.ErrInvalid error without its prefix.
func apiInvalidMessage(err error) string {
	msg := err.Error()
	if _, rest, ok := strings.Cut(msg, manage.ErrInvalid.Error()+": "); ok {
		return rest
	}
	return msg
}

// decodeOptionalAPIBody reads a JSON object into v when the request has a
// body, and leaves v alone when it has none, for endpoints whose every
// field has a default.
func decodeOptionalAPIBody(r *http.Request, v any) error {
	if r.ContentLength == 0 && r.Header.Get("Content-Type") == "" {
		return nil
	}
	return decodeJSONBody(r, v)
}

// readAPIBody reads a whole request body, reporting one over the size limit as 413.
func readAPIBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, &httpError{status: http.StatusRequestEntityTooLarge, code: "invalid_request", description: "The body is too large."}
	}
	if err != nil {
		return nil, &httpError{status: http.StatusBadRequest, code: "invalid_request", description: "The body could not be read."}
	}
	return b, nil
}

// apiNoContent answers a change that has nothing to report.
func apiNoContent(w http.ResponseWriter) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
}
