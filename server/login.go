package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/smartauth/smartauth/federation"
	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/mfa"
	"github.com/smartauth/smartauth/server/oauth"
	"github.com/smartauth/smartauth/server/password"
	"github.com/smartauth/smartauth/server/sessions"
	"github.com/smartauth/smartauth/storage"
)

// loginTicketTTL is how long a person has between signing in and consenting.
const loginTicketTTL = 10 * time.Minute

// authzField is the hidden form field carrying the authorization request.
const authzField = "authz"

// signInFailed is the one message for every failed sign-in, so the page
// never tells which emails have accounts.
const signInFailed = "The email or password is not right."

// Password guessing is throttled with counters kept in the database, so the
// limits hold across replicas. Each failed sign-in counts against the email
// it named and against the client address it came from; once either count
// reaches its limit within throttleWindow, sign-ins for that email or from
// that address are refused without checking the password until the window,
// which starts at the first failure, is over. A successful sign-in clears
// the email's count. The address limit is higher, since many people may
// share one address behind a NAT or proxy.
const (
	// throttleWindow is how long failed sign-ins are counted.
	throttleWindow = 15 * time.Minute
	// maxEmailFailures is how many failed sign-ins one email may have in a window.
	maxEmailFailures = 5
	// maxAddressFailures is how many failed sign-ins one client address may have in a window.
	maxAddressFailures = 50
)

// signInThrottled is shown when a sign-in is refused for too many failures.
const signInThrottled = "Too many failed sign-ins. Wait a few minutes and try again."

// emailThrottleKey and addressThrottleKey name the failure counters of an
// email (compared case-insensitively, as GetUserByEmail does; cut to the
// longest valid address) and of a client address.
func emailThrottleKey(email string) string { return manage.EmailThrottleKey(email) }

func addressThrottleKey(addr string) string { return "ip:" + addr }

// errTicketUsed is shown when a sign-in already produced its code.
var errTicketUsed = browserError(http.StatusBadRequest,
	"This sign-in has already been used. Go back to the app and start again.")

// errTicket is shown when a consent form's sign-in is stale or forged.
var errTicket = browserError(http.StatusBadRequest,
	"Your sign-in has expired or does not belong to this request. Go back to the app and sign in again.")

// loginPage is what templates/login.html shows.
type loginPage struct {
	Tenant     storage.Tenant
	ClientName string
	Action     string
	CSRF       string
	Authz      string
	Email      string
	Error      string
	// AskPassword shows the password step; otherwise only the email is asked.
	AskPassword bool
}

// login is the sign-in form: email first. An email whose domain the tenant
// routes to an identity provider goes there; any other is asked for its
// local password. A form that carries both (a password manager's, say)
// is checked at once. On success the person moves on to the second factor
// when one is owed, then the role, patient and consent steps.
func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	t, p, err := s.tenantProvider(r)
	if err != nil {
		return err
	}
	csrf, err := s.checkCSRF(r)
	if err != nil {
		return err
	}
	a, err := s.authzFromForm(r, t, p)
	if err != nil {
		return s.authzFailed(w, r, t.ID, err)
	}
	email := strings.TrimSpace(r.PostForm.Get("email"))
	password := r.PostForm.Get("password")
	if email == "" {
		return s.renderLogin(w, r, http.StatusBadRequest, t, a, "", "Enter your email address.", false)
	}
	route, err := s.routeEmail(r.Context(), t.ID, email)
	switch {
	case err == nil && (route.FederationOnly || password == ""):
		return s.startFederation(w, r, t, a, route, email)
	case err != nil && !errors.Is(err, federation.ErrNotRouted):
		return fmt.Errorf("route sign-in: %w", err)
	}
	if password == "" {
		// The email step is done; the password is asked for next.
		return s.renderLogin(w, r, http.StatusOK, t, a, email, "", true)
	}
	throttled, err := s.tooManyFailures(r, t.ID, email)
	if err != nil {
		return err
	}
	if throttled {
		s.audit(r, storage.AuditEvent{TenantID: t.ID, Type: "login.failure", Outcome: "failure", ClientID: a.client.ID,
			Details: map[string]string{"email": truncate(email, 320), "reason": "throttled"}})
		s.metrics.Refused("signin", "throttled")
		return s.renderLogin(w, r, http.StatusTooManyRequests, t, a, email, signInThrottled, true)
	}
	u, err := s.authenticate(r.Context(), t.ID, email, password)
	var fail *signInError
	if errors.As(err, &fail) {
		s.audit(r, storage.AuditEvent{TenantID: t.ID, Type: "login.failure", Outcome: "failure", ClientID: a.client.ID,
			Subject: u.ID, Details: map[string]string{"email": truncate(email, 320), "reason": fail.reason}})
		s.metrics.Refused("signin", fail.reason) // one of authenticate's few reasons
		if err := s.recordSignInFailure(r, t.ID, email); err != nil {
			return err
		}
		return s.renderLogin(w, r, http.StatusUnauthorized, t, a, email, signInFailed, true)
	}
	if err != nil {
		return err
	}
	if err := s.store.ClearFailures(r.Context(), t.ID, emailThrottleKey(email)); err != nil {
		return fmt.Errorf("clear sign-in failures: %w", err)
	}
	return s.signedIn(w, r, t, p, a, u, csrf, signInMethod{name: "password"})
}

// signInMethod is how a person proved who they are, for the audit trail
// and the second-factor rule.
type signInMethod struct {
	// name is "password" or "federated".
	name string
	// provider is the identity provider of a federated sign-in.
	provider string
	// amr is what the identity provider says of how the person signed in.
	amr []string
}

// signedIn continues after a first factor: to the second factor when the
// tenant or the user asks for one, otherwise straight to completing the sign-in.
func (s *Server) signedIn(w http.ResponseWriter, r *http.Request, t storage.Tenant, p *oauth.Provider, a *authzRequest,
	u storage.User, csrf string, how signInMethod) error {
	authTime := s.now().UTC().Truncate(time.Second)
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("login ticket nonce: %w", err)
	}
	tk := loginTicket{UserID: u.ID, AuthTime: authTime.Unix(), Expiry: authTime.Add(loginTicketTTL).Unix(),
		Request: digest(a.params.Encode()), Browser: digest(csrf), Nonce: nonce, Method: how.name, Provider: how.provider,
		Credential: credentialDigest(u)}
	switch mfa.Next(t.Policy, u, how.amr) {
	case mfa.StepVerify:
		tk.MFA = mfaVerify
		return s.renderSecondFactor(w, r, http.StatusOK, t, a, u, tk, csrf, "")
	case mfa.StepEnroll:
		tk.MFA = mfaEnroll
		if _, err := s.mfa.Begin(r.Context(), t, u); err != nil {
			return err
		}
		return s.renderEnrollment(w, r, http.StatusOK, t, a, u, tk, csrf, "")
	case mfa.StepNone:
		if t.Policy.MFAOffered && how.name == "password" && !mfa.Enrolled(u) {
			tk.MFA = mfaOffer
			return s.renderOffer(w, r, t, a, u, tk, csrf)
		}
	}
	return s.completeSignIn(w, r, t, p, a, u, tk, csrf)
}

// completeSignIn records a finished sign-in, starts the browser session and
// moves on to the role, patient and consent steps.
func (s *Server) completeSignIn(w http.ResponseWriter, r *http.Request, t storage.Tenant, p *oauth.Provider, a *authzRequest,
	u storage.User, tk loginTicket, csrf string) error {
	tk, err := s.finishSignIn(w, r, t, a, u, tk)
	if err != nil {
		return err
	}
	return s.advance(w, r, t, p, a, u, tk, csrf)
}

// finishSignIn audits a sign-in whose every factor is given and starts its
// browser session; the ticket it returns stands for the complete sign-in.
func (s *Server) finishSignIn(w http.ResponseWriter, r *http.Request, t storage.Tenant, a *authzRequest, u storage.User,
	tk loginTicket) (loginTicket, error) {
	details := map[string]string{"email": u.Email, "method": tk.Method}
	if tk.Provider != "" {
		details["provider"] = tk.Provider
	}
	s.audit(r, storage.AuditEvent{TenantID: t.ID, Type: "login.success", Outcome: "success", ClientID: a.client.ID,
		Subject: u.ID, Details: details})
	sid, err := s.startSession(w, r, t.ID, u.ID, timeOf(tk.AuthTime))
	if err != nil {
		return loginTicket{}, err
	}
	tk.MFA, tk.SessionID = "", sid
	return tk, nil
}

// startSession begins a new browser session for a person who just signed
// in. A session the browser had is replaced under a new id, so an id planted
// before sign-in is worth nothing after it; only a live session already
// signed in as this same person is kept, so signing in again for a second
// app does not end the online_access grants of the first. It returns the
// session's non-secret handle.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, tenantID, userID string, authTime time.Time) (string, error) {
	st := s.sessions.Tenant(tenantID)
	sess, err := st.Get(r, sessions.CookieName)
	if err != nil {
		return "", fmt.Errorf("load browser session: %w", err)
	}
	if !sess.IsNew && sessions.UserID(sess) == userID {
		sess.Values["auth_time"] = strconv.FormatInt(authTime.Unix(), 10)
		if err := st.Save(r, w, sess); err == nil {
			return sess.ID, nil
		} else if !errors.Is(err, sessions.ErrEnded) {
			return "", fmt.Errorf("save browser session: %w", err)
		}
	}
	clear(sess.Values)
	sessions.SetUserID(sess, userID)
	sess.Values["auth_time"] = strconv.FormatInt(authTime.Unix(), 10)
	if err := st.Regenerate(r, w, sess); err != nil {
		return "", fmt.Errorf("start browser session: %w", err)
	}
	return sess.ID, nil
}

// timeOf is a ticket's Unix time as a time.
func timeOf(unix int64) time.Time { return time.Unix(unix, 0).UTC() }

// tooManyFailures reports whether the email or the client address has had
// too many failed sign-ins in the current window. An empty email is never
// counted, so only the address limit applies to it.
func (s *Server) tooManyFailures(r *http.Request, tenantID, email string) (bool, error) {
	now := s.now()
	if email != "" {
		n, err := s.store.FailureCount(r.Context(), tenantID, emailThrottleKey(email), now, throttleWindow)
		if err != nil {
			return false, fmt.Errorf("count sign-in failures of email: %w", err)
		}
		if n >= maxEmailFailures {
			return true, nil
		}
	}
	n, err := s.store.FailureCount(r.Context(), tenantID, addressThrottleKey(clientIP(r)), now, throttleWindow)
	if err != nil {
		return false, fmt.Errorf("count sign-in failures of address: %w", err)
	}
	return n >= maxAddressFailures, nil
}

// recordSignInFailure counts a failed sign-in against the email (unless
// empty) and the client address.
func (s *Server) recordSignInFailure(r *http.Request, tenantID, email string) error {
	now := s.now()
	counters := []string{addressThrottleKey(clientIP(r))}
	if email != "" {
		counters = append(counters, emailThrottleKey(email))
	}
	for _, key := range counters {
		if _, err := s.store.RecordFailure(r.Context(), tenantID, key, now, throttleWindow); err != nil {
			return fmt.Errorf("record sign-in failure: %w", err)
		}
	}
	return nil
}

// authzFromForm checks the authorization request a sign-in or consent form
// carries, exactly as if the browser had sent it to the endpoint again.
func (s *Server) authzFromForm(r *http.Request, t storage.Tenant, p *oauth.Provider) (*authzRequest, error) {
	params, err := url.ParseQuery(r.PostForm.Get(authzField))
	if err != nil || len(params) == 0 {
		return nil, browserError(http.StatusBadRequest, "The sign-in form was damaged. Go back to the app and sign in again.")
	}
	return s.checkAuthorize(r.Context(), t, p, params)
}

// renderLogin shows the sign-in page for a checked authorization request:
// the email step, or with askPassword the password step.
func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, t storage.Tenant, a *authzRequest, email, message string, askPassword bool) error {
	csrf, err := s.csrfToken(w, r, t.ID)
	if err != nil {
		return err
	}
	s.renderFlow(w, r, status, "login", loginPage{
		Tenant: t, ClientName: clientName(a.client), Action: s.Issuer(t.ID) + "/login",
		CSRF: csrf, Authz: a.params.Encode(), Email: email, Error: message, AskPassword: askPassword,
	}, a.params.Get("redirect_uri"))
	return nil
}

func clientName(c storage.Client) string {
	if c.Name != "" {
		return c.Name
	}
	return c.ID
}

// signInError is a failed sign-in; the reason goes to the audit trail only.
type signInError struct{ reason string }

func (e *signInError) Error() string { return "sign-in failed: " + e.reason }

// authenticate checks a local password. Every failure costs one argon2id
// verification, so timing does not reveal whether the email exists. The
// user is returned with a *signInError when they exist, for the audit trail.
func (s *Server) authenticate(ctx context.Context, tenantID, email, pw string) (storage.User, error) {
	if email == "" || pw == "" {
		s.burnPasswordCheck(ctx, pw)
		return storage.User{}, &signInError{reason: "missing_credentials"}
	}
	u, err := s.store.GetUserByEmail(ctx, tenantID, email)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		s.burnPasswordCheck(ctx, pw)
		return storage.User{}, &signInError{reason: "unknown_email"}
	case err != nil:
		return storage.User{}, fmt.Errorf("load user by email: %w", err)
	case u.PasswordHash == "":
		s.burnPasswordCheck(ctx, pw)
		return u, &signInError{reason: "no_password"}
	}
	err = s.passwords.Verify(ctx, u.PasswordHash, pw)
	switch {
	case errors.Is(err, password.ErrMismatch):
		return u, &signInError{reason: "wrong_password"}
	case errors.Is(err, password.ErrBusy):
		return storage.User{}, &httpError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable",
			description: "Too many people are signing in right now. Please try again in a moment."}
	case err != nil:
		return storage.User{}, fmt.Errorf("verify password of user %s: %w", u.ID, err)
	case u.Disabled:
		return u, &signInError{reason: "disabled"}
	}
	return u, nil
}

// burnPasswordCheck spends the time of a real verification.
func (s *Server) burnPasswordCheck(ctx context.Context, pw string) {
	hash, err := s.dummyHash()
	if err != nil {
		return
	}
	_ = s.passwords.Verify(ctx, hash, pw)
}

// newDummyHash hashes a random password nobody knows.
func newDummyHash() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("dummy password: %w", err)
	}
	return password.Hash(base64.RawURLEncoding.EncodeToString(b))
}

// loginTicket stands for a completed sign-in, and the choices made since,
// between the sign-in, role, patient and consent pages, without server-side
// state: it is signed, expires, and is bound to one authorization request
// and to one browser's CSRF cookie.
type loginTicket struct {
	UserID   string `json:"sub"`
	AuthTime int64  `json:"auth_time"`
	Expiry   int64  `json:"exp"`
	// Request is the SHA-256 of the canonical authorization parameters.
	Request []byte `json:"req"`
	// Browser is the SHA-256 of the CSRF token, so a copied ticket is
	// useless in another browser.
	Browser []byte `json:"csrf"`
	// RoleChosen is set once the role is settled; Role is the chosen
	// profile's FHIR reference, "" for a user without profiles.
	RoleChosen bool   `json:"role_set,omitempty"`
	Role       string `json:"role,omitempty"`
	// Patient is the patient the grant is bound to in a standalone launch:
	// picked by a clinician, or a patient user's own record.
	Patient string `json:"patient,omitempty"`
	// Nonce names this sign-in; it is recorded when a code is issued, so
	// one sign-in yields one code however often its last form is posted.
	Nonce []byte `json:"n"`
	// SessionID is the browser session begun at this sign-in, which
	// online_access grants are bound to; empty until the sign-in is complete.
	SessionID string `json:"sid,omitempty"`
	// MFA is the second-factor step still owed: mfaVerify or mfaEnroll.
	MFA string `json:"mfa,omitempty"`
	// Credential is credentialDigest of the user when the first factor was
	// given, so a password reset ends a sign-in begun with the old password.
	Credential []byte `json:"cred"`
	// Method and Provider say how the first factor was given, for the audit trail.
	Method   string `json:"m,omitempty"`
	Provider string `json:"idp,omitempty"`
}

// useKey is the single-use record of a ticket's sign-in, kept in the
// table of remembered assertion ids under a prefix no assertion carries by accident.
func (tk loginTicket) useKey() string {
	return "login-ticket:" + base64.RawURLEncoding.EncodeToString(tk.Nonce)
}

// matches reports whether the ticket is still valid for this request and browser.
func (tk loginTicket) matches(now time.Time, params url.Values, csrf string) bool {
	return now.Unix() < tk.Expiry &&
		hmac.Equal(tk.Request, digest(params.Encode())) &&
		hmac.Equal(tk.Browser, digest(csrf))
}

// ticketKey is the tenant's login ticket key, derived from the master key.
func (s *Server) ticketKey(tenantID string) ([]byte, error) {
	return keys.DeriveKey(s.masterKey, "login-ticket/"+tenantID)
}

// signTicket encodes a ticket as base64url(JSON) "." base64url(HMAC-SHA256).
func (s *Server) signTicket(tenantID string, tk loginTicket) (string, error) {
	key, err := s.ticketKey(tenantID)
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(tk)
	if err != nil {
		return "", fmt.Errorf("encode login ticket: %w", err)
	}
	payload := base64.RawURLEncoding.EncodeToString(body)
	return payload + "." + base64.RawURLEncoding.EncodeToString(ticketMAC(key, payload)), nil
}

// openTicket verifies a ticket's signature and decodes it; the caller
// checks expiry and binding with matches.
func (s *Server) openTicket(tenantID, ticket string) (loginTicket, error) {
	key, err := s.ticketKey(tenantID)
	if err != nil {
		return loginTicket{}, err
	}
	payload, sig, ok := strings.Cut(ticket, ".")
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if !ok || err != nil || !hmac.Equal(mac, ticketMAC(key, payload)) {
		return loginTicket{}, errors.New("login ticket: bad signature")
	}
	body, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return loginTicket{}, fmt.Errorf("login ticket: %w", err)
	}
	var tk loginTicket
	if err := json.Unmarshal(body, &tk); err != nil {
		return loginTicket{}, fmt.Errorf("login ticket: %w", err)
	}
	return tk, nil
}

func ticketMAC(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

func digest(s string) []byte {
	d := sha256.Sum256([]byte(s))
	return d[:]
}

// credentialDigest stands for the user's password as it is now: resetting
// the password changes it (the hash has a fresh salt). A sign-in that passed
// the password step keeps it and must still match at every later step.
func credentialDigest(u storage.User) []byte {
	return digest("credential\x00" + u.PasswordHash)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
