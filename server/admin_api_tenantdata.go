package server

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/storage"
)

// The admin API's endpoints for a tenant's patient roster, signing keys,
// remembered consents and registration tokens.

// apiPatient is a roster entry as the admin API shows it.
type apiPatient struct {
	ID          string               `json:"id"`
	Family      string               `json:"family,omitempty"`
	Given       string               `json:"given,omitempty"`
	BirthDate   string               `json:"birth_date,omitempty"`
	Gender      string               `json:"gender,omitempty"`
	Identifiers []storage.Identifier `json:"identifiers"`
	UpdatedAt   time.Time            `json:"updated_at"`
}

// apiKey is a signing key as the admin API shows it: the public half only.
type apiKey struct {
	KID       string          `json:"kid"`
	Alg       string          `json:"alg"`
	Status    string          `json:"status"`
	PublicJWK json.RawMessage `json:"public_jwk"`
	CreatedAt time.Time       `json:"created_at"`
	RetiresAt *time.Time      `json:"retires_at,omitempty"`
}

// apiConsent is what a user agreed to let a client have.
type apiConsent struct {
	UserID    string     `json:"user_id"`
	ClientID  string     `json:"client_id"`
	Scopes    []string   `json:"scopes"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// maxPatientResults caps a roster search through the API.
const maxPatientResults = 200

// patientMediaTypes are the bodies a roster import takes; roster.Parse
// reads a Bundle, one Patient or NDJSON alike.
var patientMediaTypes = []string{"application/fhir+json", "application/fhir+ndjson", "application/json"}

// apiSearchPatients is GET …/patients?name=&birthdate=&identifier=&limit=.
func (s *Server) apiSearchPatients(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	q := r.URL.Query()
	limit, err := apiQueryInt(q.Get("limit"), 50, 1, maxPatientResults, "limit")
	if err != nil {
		return err
	}
	ps, err := s.store.SearchPatients(r.Context(), ar.tenant.ID, storage.PatientQuery{
		Name: q.Get("name"), BirthDate: q.Get("birthdate"), Identifier: q.Get("identifier"), Limit: limit,
	})
	if err != nil {
		return err
	}
	out := make([]apiPatient, 0, len(ps))
	for _, p := range ps {
		v := apiPatient{ID: p.ID, Family: p.Family, Given: p.Given, BirthDate: p.BirthDate, Gender: p.Gender,
			Identifiers: p.Identifiers, UpdatedAt: p.UpdatedAt}
		if v.Identifiers == nil {
			v.Identifiers = []storage.Identifier{}
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// apiImportPatients is POST …/patients: FHIR Patient resources, as a
// Bundle, one Patient or NDJSON, upserted into the roster all or none.
func (s *Server) apiImportPatients(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !slices.Contains(patientMediaTypes, mt) {
		return &httpError{status: http.StatusUnsupportedMediaType, code: "invalid_request",
			description: "Send FHIR Patient resources as application/fhir+json (a Bundle or one Patient) or application/fhir+ndjson."}
	}
	// Read first, so a body cut off at the size limit is reported as too
	// large rather than as malformed JSON.
	body, err := readAPIBody(r)
	if err != nil {
		return err
	}
	res, err := s.manage.ImportPatients(r.Context(), ar.tenant.ID, bytes.NewReader(body), ar.actor(r))
	if err != nil {
		return apiError(err, "tenant")
	}
	writeJSON(w, http.StatusOK, map[string]int{"imported": len(res.Patients), "skipped": res.Skipped})
	return nil
}

func apiKeysView(ks []storage.SigningKey) []apiKey {
	out := make([]apiKey, 0, len(ks))
	for _, k := range ks {
		v := apiKey{KID: k.KID, Alg: k.Alg, Status: string(k.Status), PublicJWK: json.RawMessage(k.PublicJWK), CreatedAt: k.CreatedAt}
		if !k.RetiresAt.IsZero() {
			at := k.RetiresAt
			v.RetiresAt = &at
		}
		out = append(out, v)
	}
	return out
}

// apiListKeys is GET …/keys: every key, newest first, retired ones included.
func (s *Server) apiListKeys(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	ks, err := s.store.ListSigningKeys(r.Context(), ar.tenant.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiKeysView(ks))
	return nil
}

// apiRotateKeys is POST …/keys/rotate: new active keys; the old ones stay
// published for retire_after (default a week, at least the longest token
// lifetime) so tokens they signed still verify.
func (s *Server) apiRotateKeys(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	in := struct {
		RetireAfter storage.Duration `json:"retire_after"`
	}{RetireAfter: storage.Duration(keys.DefaultRetirement)}
	if err := decodeOptionalAPIBody(r, &in); err != nil {
		return err
	}
	ks, err := s.manage.RotateKeys(r.Context(), ar.tenant.ID, time.Duration(in.RetireAfter), ar.actor(r))
	if err != nil {
		return apiError(err, "tenant")
	}
	writeJSON(w, http.StatusOK, apiKeysView(ks))
	return nil
}

// apiRetireKey is POST …/keys/{kid}/retire: the key signs nothing more and,
// with {"compromised": false}, stays published until the tokens it signed
// expire, or, with {"compromised": true}, leaves the JWKS at once.
func (s *Server) apiRetireKey(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	var in struct {
		Compromised *bool `json:"compromised"`
	}
	if err := decodeOptionalAPIBody(r, &in); err != nil {
		return err
	}
	if in.Compromised == nil {
		// Required, because the two differ in what they protect: before,
		// retiring always removed the key at once, and a script written then
		// to retire a leaked key must not now leave it trusted unawares.
		return &httpError{status: http.StatusBadRequest, code: "invalid_request",
			description: `Say whether the key is compromised: {"compromised": true} removes it from the key set at once, cutting off every token it signed; {"compromised": false} stops it signing and keeps it published until the tokens it signed expire.`}
	}
	if err := s.manage.RetireKey(r.Context(), ar.tenant.ID, r.PathValue("kid"), *in.Compromised, ar.actor(r)); err != nil {
		return apiError(err, "signing key")
	}
	return apiNoContent(w)
}

// apiListConsents is GET …/consents[?user=]: remembered consents, expired ones included.
func (s *Server) apiListConsents(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	cs, err := s.store.ListConsents(r.Context(), ar.tenant.ID, r.URL.Query().Get("user"))
	if err != nil {
		return err
	}
	out := make([]apiConsent, 0, len(cs))
	for _, c := range cs {
		v := apiConsent{UserID: c.UserID, ClientID: c.ClientID, Scopes: c.Scopes, CreatedAt: c.CreatedAt}
		if !c.ExpiresAt.IsZero() {
			at := c.ExpiresAt
			v.ExpiresAt = &at
		}
		if v.Scopes == nil {
			v.Scopes = []string{}
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// apiRevokeConsent is DELETE …/consents/{user}/{client}: the user is asked
// again at the client's next authorization.
func (s *Server) apiRevokeConsent(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	if err := s.manage.RevokeConsent(r.Context(), ar.tenant.ID, r.PathValue("user"), r.PathValue("client"), ar.actor(r)); err != nil {
		return apiError(err, "consent")
	}
	return apiNoContent(w)
}

// apiCreateInitialAccessToken is POST …/initial-access-tokens: a
// single-use token for registering one client (RFC 7591), shown once. It
// registers an app people sign in to unless backend_services is true.
func (s *Server) apiCreateInitialAccessToken(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	var in struct {
		TTL             storage.Duration `json:"ttl"`
		BackendServices bool             `json:"backend_services"`
	}
	if err := decodeOptionalAPIBody(r, &in); err != nil {
		return err
	}
	allow := manage.InitialAccessAllowance{BackendServices: in.BackendServices}
	token, exp, err := s.manage.CreateInitialAccessToken(r.Context(), ar.tenant.ID, time.Duration(in.TTL), allow, ar.actor(r))
	if err != nil {
		return apiError(err, "tenant")
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"token": token, "expires_at": exp, "registration_endpoint": s.Issuer(ar.tenant.ID) + "/register",
		"backend_services": allow.BackendServices,
	})
	return nil
}

// apiInitialAccessToken is an outstanding initial access token as the
// admin API lists it: never the token, which is not kept.
type apiInitialAccessToken struct {
	Ref             string    `json:"ref"`
	BackendServices bool      `json:"backend_services"`
	CreatedBy       string    `json:"created_by"`
	CreatedAt       time.Time `json:"created_at"`
	ExpiresAt       time.Time `json:"expires_at"`
}

// apiListInitialAccessTokens is GET …/initial-access-tokens: the tokens
// neither used nor expired, oldest first.
func (s *Server) apiListInitialAccessTokens(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	ts, err := s.manage.ListInitialAccessTokens(r.Context(), ar.tenant.ID)
	if err != nil {
		return apiError(err, "tenant")
	}
	out := make([]apiInitialAccessToken, 0, len(ts))
	for _, t := range ts {
		out = append(out, apiInitialAccessToken{Ref: t.Ref, BackendServices: t.Allowance.BackendServices,
			CreatedBy: t.CreatedBy, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// apiRevokeInitialAccessToken is DELETE …/initial-access-tokens/{ref}: the
// outstanding token can no longer register a client.
func (s *Server) apiRevokeInitialAccessToken(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	if err := s.manage.RevokeInitialAccessToken(r.Context(), ar.tenant.ID, r.PathValue("ref"), ar.actor(r)); err != nil {
		return apiError(err, "outstanding initial access token")
	}
	return apiNoContent(w)
}

// apiQueryInt reads an integer query parameter in [lo, hi]; empty means def.
func apiQueryInt(raw string, def, lo, hi int, name string) (int, error) {
	if raw == "" {
		return def, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < lo || n > hi {
		return 0, &httpError{status: http.StatusBadRequest, code: "invalid_request",
			description: name + " must be a whole number from " + strconv.Itoa(lo) + " to " + strconv.Itoa(hi) + "."}
	}
	return n, nil
}
