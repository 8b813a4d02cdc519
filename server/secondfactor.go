package server

import (
	"errors"
	"html/template"
	"net/http"
	"strings"

	"github.com/smartauth/smartauth/server/mfa"
	"github.com/smartauth/smartauth/storage"
)

// The second factor, between the first factor and the rest of the sign-in:
// a code from the person's authenticator app (or a recovery code), or, when
// the tenant requires a second factor of someone who has none yet,
// enrollment with a QR code and ten recovery codes shown once.

// Second-factor steps a ticket may still owe. An offer is not owed: the
// person may take it up or skip it, but must answer before going on.
const (
	mfaVerify = "verify"
	mfaEnroll = "enroll"
	mfaOffer  = "offer"
)

// secondFactorPage is what templates/totp.html shows.
type secondFactorPage struct {
	stepPage
	Error string
}

// enrollmentPage is what templates/totp_enroll.html shows.
type enrollmentPage struct {
	stepPage
	// QRCode is a data: URL of a PNG the server drew.
	QRCode    template.URL
	ManualKey string
	Error     string
}

// recoveryCodesPage is what templates/recovery_codes.html shows, once.
type recoveryCodesPage struct {
	stepPage
	Codes []string
}

// secondFactorForm checks a second-factor form: like stepForm, but the
// ticket must still owe the step the form is for.
func (s *Server) secondFactorForm(w http.ResponseWriter, r *http.Request, step string) (*signInStep, error) {
	st, err := s.checkStepForm(w, r)
	if st == nil {
		return nil, err
	}
	if st.tk.MFA != step || !stillOwed(st.t.Policy, st.u, step) {
		return nil, errTicket
	}
	return st, nil
}

// stillOwed reports whether a second-factor step decided at sign-in still
// fits the user as they are now: a page left open must not skip a factor
// set up since, nor replace it.
func stillOwed(policy storage.TenantPolicy, u storage.User, step string) bool {
	switch step {
	case mfaVerify:
		return mfa.Enrolled(u)
	case mfaEnroll:
		return !mfa.Enrolled(u)
	case mfaOffer:
		return !mfa.Enrolled(u) && !policy.MFARequired
	}
	return false
}

// errNoCode is checkSecondFactor's answer to a form with neither code.
var errNoCode = errors.New("no code entered")

// checkSecondFactor checks the TOTP code, or else the recovery code, posted
// by an enrolled user of realm, and names the method used.
func (s *Server) checkSecondFactor(r *http.Request, realm, userID string) (method string, err error) {
	code := strings.TrimSpace(r.PostForm.Get("code"))
	recovery := strings.TrimSpace(r.PostForm.Get("recovery_code"))
	switch {
	case recovery != "":
		_, err = s.mfa.UseRecoveryCode(r.Context(), realm, userID, recovery)
		return "recovery_code", err
	case code != "":
		return "totp", s.mfa.Verify(r.Context(), realm, userID, code)
	}
	return "totp", errNoCode
}

// codeRefusal is the status and message for a wrong or throttled code.
func codeRefusal(err error) (int, string) {
	if errors.Is(err, mfa.ErrThrottled) {
		return http.StatusTooManyRequests, "Too many wrong codes. Wait a few minutes and try again."
	}
	return http.StatusUnauthorized, "That code is not right. Codes change every 30 seconds; try the current one."
}

// secondFactor checks the code (or a recovery code) of an enrolled person.
func (s *Server) secondFactor(w http.ResponseWriter, r *http.Request) error {
	st, err := s.secondFactorForm(w, r, mfaVerify)
	if st == nil {
		return err
	}
	method, err := s.checkSecondFactor(r, st.t.ID, st.u.ID)
	if errors.Is(err, errNoCode) {
		return s.renderSecondFactor(w, r, http.StatusBadRequest, st.t, st.a, st.u, st.tk, st.csrf, "Enter the code from your authenticator app.")
	}
	if reason := mfa.Reason(err); reason != "" {
		s.audit(r, storage.AuditEvent{TenantID: st.t.ID, Type: "mfa.failure", Outcome: "failure", ClientID: st.a.client.ID,
			Subject: st.u.ID, Details: map[string]string{"method": method, "reason": reason}})
		status, msg := codeRefusal(err)
		return s.renderSecondFactor(w, r, status, st.t, st.a, st.u, st.tk, st.csrf, msg)
	}
	if err != nil {
		return err
	}
	s.audit(r, storage.AuditEvent{TenantID: st.t.ID, Type: "mfa.success", Outcome: "success", ClientID: st.a.client.ID,
		Subject: st.u.ID, Details: map[string]string{"method": method}})
	return s.completeSignIn(w, r, st.t, st.p, st.a, st.u, st.tk, st.csrf)
}

// enrollSecondFactor confirms a new authenticator app with its first code,
// completes the sign-in and shows the recovery codes once.
func (s *Server) enrollSecondFactor(w http.ResponseWriter, r *http.Request) error {
	st, err := s.secondFactorForm(w, r, mfaEnroll)
	if st == nil {
		return err
	}
	codes, err := s.mfa.Confirm(r.Context(), st.t.ID, st.u.ID, strings.TrimSpace(r.PostForm.Get("code")))
	if reason := mfa.Reason(err); reason != "" {
		s.audit(r, storage.AuditEvent{TenantID: st.t.ID, Type: "mfa.failure", Outcome: "failure", ClientID: st.a.client.ID,
			Subject: st.u.ID, Details: map[string]string{"method": "enroll", "reason": reason}})
		if errors.Is(err, mfa.ErrNoEnrollment) {
			// The pending key expired: start again with a new one.
			if _, err := s.mfa.Begin(r.Context(), st.t, st.u); err != nil {
				return err
			}
			return s.renderEnrollment(w, r, http.StatusBadRequest, st.t, st.a, st.u, st.tk, st.csrf,
				"That setup expired. Scan this new code and enter the code it shows.")
		}
		status, msg := http.StatusUnauthorized, "That code is not right. Check the app shows smartauth for this account and try the current code."
		if errors.Is(err, mfa.ErrThrottled) {
			status, msg = http.StatusTooManyRequests, "Too many wrong codes. Wait a few minutes and try again."
		}
		return s.renderEnrollment(w, r, status, st.t, st.a, st.u, st.tk, st.csrf, msg)
	}
	if err != nil {
		return err
	}
	s.audit(r, storage.AuditEvent{TenantID: st.t.ID, Type: "mfa.enroll", Outcome: "success", ClientID: st.a.client.ID, Subject: st.u.ID})
	// The sign-in is complete; the codes are shown once, before moving on.
	if st.tk, err = s.finishSignIn(w, r, st.t, st.a, st.u, st.tk); err != nil {
		return err
	}
	ticket, err := s.signTicket(st.t.ID, st.tk)
	if err != nil {
		return err
	}
	s.renderFlow(w, r, http.StatusOK, "recovery_codes", recoveryCodesPage{
		stepPage: s.newStepPage(st.t, st.a, st.u, "continue", st.csrf, ticket), Codes: codes}, st.a.params.Get("redirect_uri"))
	return nil
}

// offerSecondFactor answers the offer of a second factor: set one up now,
// or go on without.
func (s *Server) offerSecondFactor(w http.ResponseWriter, r *http.Request) error {
	st, err := s.secondFactorForm(w, r, mfaOffer)
	if st == nil {
		return err
	}
	switch r.PostForm.Get("decision") {
	case "skip":
		s.audit(r, storage.AuditEvent{TenantID: st.t.ID, Type: "mfa.skip", Outcome: "success", ClientID: st.a.client.ID, Subject: st.u.ID})
		return s.completeSignIn(w, r, st.t, st.p, st.a, st.u, st.tk, st.csrf)
	case "setup":
		if _, err := s.mfa.Begin(r.Context(), st.t, st.u); err != nil {
			return err
		}
		st.tk.MFA = mfaEnroll
		return s.renderEnrollment(w, r, http.StatusOK, st.t, st.a, st.u, st.tk, st.csrf, "")
	}
	return browserError(http.StatusBadRequest, "Choose to set up a second step now, or not now.")
}

func (s *Server) renderOffer(w http.ResponseWriter, r *http.Request, t storage.Tenant, a *authzRequest, u storage.User, tk loginTicket, csrf string) error {
	ticket, err := s.signTicket(t.ID, tk)
	if err != nil {
		return err
	}
	s.renderFlow(w, r, http.StatusOK, "totp_offer", secondFactorPage{stepPage: s.newStepPage(t, a, u, "mfa/offer", csrf, ticket)},
		a.params.Get("redirect_uri"))
	return nil
}

// continueSignIn moves on from a page that only informs, such as the recovery codes.
func (s *Server) continueSignIn(w http.ResponseWriter, r *http.Request) error {
	st, err := s.stepForm(w, r)
	if st == nil {
		return err
	}
	return s.advance(w, r, st.t, st.p, st.a, st.u, st.tk, st.csrf)
}

func (s *Server) renderSecondFactor(w http.ResponseWriter, r *http.Request, status int, t storage.Tenant, a *authzRequest,
	u storage.User, tk loginTicket, csrf, message string) error {
	ticket, err := s.signTicket(t.ID, tk)
	if err != nil {
		return err
	}
	s.renderFlow(w, r, status, "totp", secondFactorPage{stepPage: s.newStepPage(t, a, u, "mfa", csrf, ticket), Error: message},
		a.params.Get("redirect_uri"))
	return nil
}

func (s *Server) renderEnrollment(w http.ResponseWriter, r *http.Request, status int, t storage.Tenant, a *authzRequest,
	u storage.User, tk loginTicket, csrf, message string) error {
	e, err := s.mfa.Pending(r.Context(), t, u)
	if errors.Is(err, mfa.ErrNoEnrollment) {
		// The pending key expired while the page was open: a new one.
		if e, err = s.mfa.Begin(r.Context(), t, u); err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	ticket, err := s.signTicket(t.ID, tk)
	if err != nil {
		return err
	}
	s.renderFlow(w, r, status, "totp_enroll", enrollmentPage{stepPage: s.newStepPage(t, a, u, "mfa/enroll", csrf, ticket),
		// The data: URL is a PNG the server drew; no input reaches it.
		QRCode: template.URL(e.QRCode), ManualKey: e.ManualKey, Error: message}, a.params.Get("redirect_uri"))
	return nil
}
