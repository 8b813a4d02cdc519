package server

import (
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/mfa"
	"github.com/smartauth/smartauth/server/sessions"
	"github.com/smartauth/smartauth/storage"
)

// The admin area has two doors. Operators sign in at /admin/login, live in
// the operator realm (storage.OperatorRealm) and manage every tenant; a
// tenant's admins are users of that tenant marked Admin, sign in at
// /admin/t/{tenant}/login and see only that tenant. Each door has its own
// cookie, scoped to its own path, whose session row lives in its own realm:
// a tenant admin's cookie is never sent to, and would not open at, another
// tenant's pages. Every admin signs in with a password and TOTP; an admin
// without a second factor enrolls one before going further.
const (
	operatorCookie    = "smartauth_operator"
	tenantAdminCookie = "smartauth_admin"
)

// Keys of the admin session's values before the second factor is done.
const (
	adminPendingKey = "pending_user"
	adminStageKey   = "stage"
	// adminCredentialKey holds credentialDigest (hex) of the pending admin.
	adminCredentialKey = "credential"
	adminStageMFA      = "mfa"
	adminStageEnrol    = "enroll"
)

// adminArea is one door of the admin area: the operator area or one tenant's.
type adminArea struct {
	// realm is the tenant whose users sign in here: OperatorRealm or the tenant.
	realm string
	// path is the area's path below the base URL, without a trailing slash.
	path   string
	cookie string
}

func operatorArea() adminArea {
	return adminArea{realm: storage.OperatorRealm, path: "/admin", cookie: operatorCookie}
}

func tenantArea(tenantID string) adminArea {
	return adminArea{realm: tenantID, path: "/admin/t/" + tenantID, cookie: tenantAdminCookie}
}

// adminPrincipal is a signed-in admin.
type adminPrincipal struct {
	User storage.User
	// Operator is true for operators, who may act on every tenant.
	Operator bool
}

// actor names the admin in the audit trail: operators are told apart from
// a tenant's own users, whose ids they could otherwise share.
func (p adminPrincipal) actor(r *http.Request) manage.Actor {
	id := p.User.ID
	if p.Operator {
		id = "operator:" + id
	}
	return manage.Actor{ID: id, SourceIP: clientIP(r)}
}

// adminRequest is what an admin page handler gets: who is signed in, in
// which area, and for tenant pages the tenant.
type adminRequest struct {
	area      adminArea
	principal adminPrincipal
	// tenant is the tenant of a tenant page; zero in the operator area.
	tenant storage.Tenant
	csrf   string
}

// adminPage is the data every admin page shares; page data embeds it.
type adminPage struct {
	Title   string
	Section string
	// Email and Operator describe who is signed in; Email is empty on the sign-in pages.
	Email    string
	Operator bool
	Tenant   storage.Tenant
	// AreaURL is the absolute URL of the area's root, without a trailing slash.
	AreaURL     string
	OperatorURL string
	SignOutURL  string
	CSRF        string
	Notice      string
	Error       string
}

// adminHandler is an admin page or action of a signed-in admin.
type adminHandler func(w http.ResponseWriter, r *http.Request, ar *adminRequest) error

// areaURL is the absolute URL of an admin area's root.
func (s *Server) areaURL(a adminArea) string { return s.base + a.path }

func (s *Server) adminSessions(a adminArea) *sessions.Store {
	return s.sessions.Admin(a.realm, a.path+"/")
}

// adminCSRFPath scopes the admin forms' CSRF cookie to the whole admin area.
func (s *Server) adminCSRFPath() string {
	u, err := url.Parse(s.base)
	if err != nil {
		return "/admin/"
	}
	return u.Path + "/admin/"
}

// page builds the shared page data for a signed-in admin.
func (ar *adminRequest) page(s *Server, section, title string) adminPage {
	return adminPage{
		Title: title, Section: section, Email: ar.principal.User.Email, Operator: ar.principal.Operator,
		Tenant: ar.tenant, AreaURL: s.areaURL(ar.area), OperatorURL: s.areaURL(operatorArea()),
		SignOutURL: s.areaURL(ar.signInArea()) + "/logout", CSRF: ar.csrf,
	}
}

// signInArea is the door the admin came in by, whose session signing out ends.
func (ar *adminRequest) signInArea() adminArea {
	if ar.principal.Operator {
		return operatorArea()
	}
	return ar.area
}

// actor names the signed-in admin in the audit trail.
func (ar *adminRequest) actor(r *http.Request) manage.Actor { return ar.principal.actor(r) }

// areaOf is the admin area a request's path names; a tenant area needs a
// tenant that exists.
func (s *Server) areaOf(r *http.Request) (adminArea, storage.Tenant, error) {
	if r.PathValue("tenant") == "" {
		return operatorArea(), storage.Tenant{}, nil
	}
	t, err := s.tenant(r)
	if err != nil {
		return adminArea{}, storage.Tenant{}, err
	}
	return tenantArea(t.ID), t, nil
}

// admin wraps an admin page: it finds the signed-in admin allowed here,
// checks CSRF on every post, and sends anyone else to sign in. Operators
// may use every tenant's pages; a tenant admin only their own tenant's.
func (s *Server) admin(h adminHandler) http.Handler {
	return s.page(func(w http.ResponseWriter, r *http.Request) error {
		area, t, err := s.areaOf(r)
		if err != nil {
			return err
		}
		p, ok, err := s.adminPrincipalFor(r, area)
		if err != nil {
			return err
		}
		if !ok {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, s.areaURL(area)+"/login", http.StatusSeeOther)
				return nil
			}
			return &httpError{status: http.StatusForbidden, code: "admin_signed_out",
				description: "Your admin session has ended. Sign in again and repeat the change."}
		}
		var csrf string
		if r.Method == http.MethodPost {
			if csrf, err = s.checkCSRF(r); err != nil {
				return err
			}
		} else if csrf, err = s.csrfTokenAt(w, r, s.adminCSRFPath()); err != nil {
			return err
		}
		return h(w, r, &adminRequest{area: area, principal: p, tenant: t, csrf: csrf})
	})
}

// adminPrincipalFor finds the admin signed in for area: in a tenant area,
// that tenant's admin session, else an operator session; in the operator
// area, only an operator session.
func (s *Server) adminPrincipalFor(r *http.Request, area adminArea) (adminPrincipal, bool, error) {
	if area.realm != storage.OperatorRealm {
		u, ok, err := s.signedInAdmin(r, area)
		if err != nil || ok {
			return adminPrincipal{User: u}, ok, err
		}
	}
	u, ok, err := s.signedInAdmin(r, operatorArea())
	return adminPrincipal{User: u, Operator: true}, ok, err
}

// signedInAdmin returns the user of a finished admin sign-in in area's
// session, re-read so that an admin disabled or demoted since is out at once.
func (s *Server) signedInAdmin(r *http.Request, area adminArea) (storage.User, bool, error) {
	sess, err := s.adminSessions(area).Get(r, area.cookie)
	if err != nil {
		return storage.User{}, false, fmt.Errorf("load admin session: %w", err)
	}
	id := sessions.UserID(sess)
	if id == "" {
		return storage.User{}, false, nil
	}
	u, err := s.store.GetUser(r.Context(), area.realm, id)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.User{}, false, nil
	}
	if err != nil {
		return storage.User{}, false, fmt.Errorf("load admin %s: %w", id, err)
	}
	if u.Disabled || !u.Admin || !mfa.Enrolled(u) {
		return storage.User{}, false, nil
	}
	return u, true, nil
}

// adminLoginPage shows the sign-in form of an area, or the area itself to
// someone already signed in there.
func (s *Server) adminLoginPage(w http.ResponseWriter, r *http.Request) error {
	area, t, err := s.areaOf(r)
	if err != nil {
		return err
	}
	if _, ok, err := s.signedInAdmin(r, area); err != nil {
		return err
	} else if ok {
		http.Redirect(w, r, s.areaURL(area)+"/", http.StatusSeeOther)
		return nil
	}
	return s.renderAdminSignIn(w, r, http.StatusOK, area, t, "admin_login", loginForm{}, "")
}

// loginForm is the sign-in page's data beyond adminPage.
type loginForm struct{ FormEmail string }

// adminSignInPage is the data of the sign-in pages.
type adminSignInPage struct {
	adminPage
	loginForm
	QRCode    template.URL
	ManualKey string
	Codes     []string
}

func (s *Server) renderAdminSignIn(w http.ResponseWriter, r *http.Request, status int, area adminArea, t storage.Tenant,
	page string, form loginForm, message string) error {
	return s.renderAdminStep(w, r, status, area, t, adminSignInPage{loginForm: form}, page, message)
}

func (s *Server) renderAdminStep(w http.ResponseWriter, r *http.Request, status int, area adminArea, t storage.Tenant,
	data adminSignInPage, page, message string) error {
	csrf, err := s.csrfTokenAt(w, r, s.adminCSRFPath())
	if err != nil {
		return err
	}
	data.adminPage = adminPage{Title: "Admin sign-in", Tenant: t, AreaURL: s.areaURL(area),
		OperatorURL: s.areaURL(operatorArea()), CSRF: csrf, Error: message}
	s.render(w, r, status, page, data)
	return nil
}

// adminLogin checks an admin's password, then asks for the second factor,
// or for enrollment of one when the admin has none yet.
func (s *Server) adminLogin(w http.ResponseWriter, r *http.Request) error {
	area, t, err := s.areaOf(r)
	if err != nil {
		return err
	}
	if _, err := s.checkCSRF(r); err != nil {
		return err
	}
	email := strings.TrimSpace(r.PostForm.Get("email"))
	form := loginForm{FormEmail: email}
	if throttled, err := s.tooManyFailures(r, area.realm, email); err != nil {
		return err
	} else if throttled {
		s.metrics.Refused("admin_signin", "throttled")
		return s.renderAdminSignIn(w, r, http.StatusTooManyRequests, area, t, "admin_login", form, signInThrottled)
	}
	u, err := s.authenticate(r.Context(), area.realm, email, r.PostForm.Get("password"))
	if err == nil && !u.Admin {
		err = &signInError{reason: "not_admin"}
	}
	var failed *signInError
	if errors.As(err, &failed) {
		s.metrics.Refused("admin_signin", failed.reason)
		if err := s.recordSignInFailure(r, area.realm, email); err != nil {
			return err
		}
		s.audit(r, storage.AuditEvent{TenantID: area.realm, Type: "login.failure", Outcome: "failure", Subject: u.ID,
			Details: map[string]string{"area": "admin", "reason": failed.reason}})
		return s.renderAdminSignIn(w, r, http.StatusUnauthorized, area, t, "admin_login", form, signInFailed)
	}
	if err != nil {
		return err
	}
	if err := s.store.ClearFailures(r.Context(), area.realm, emailThrottleKey(email)); err != nil {
		return fmt.Errorf("clear sign-in failures: %w", err)
	}
	st := s.adminSessions(area)
	sess, err := st.Get(r, area.cookie)
	if err != nil {
		return fmt.Errorf("load admin session: %w", err)
	}
	clear(sess.Values)
	sess.Values[adminPendingKey] = u.ID
	sess.Values[adminCredentialKey] = hex.EncodeToString(credentialDigest(u))
	stage := adminStageMFA
	if !mfa.Enrolled(u) {
		stage = adminStageEnrol
	}
	sess.Values[adminStageKey] = stage
	// A new id now, so a session planted before the password is worth nothing.
	if err := st.Regenerate(r, w, sess); err != nil {
		return fmt.Errorf("start admin session: %w", err)
	}
	if stage == adminStageEnrol {
		return s.renderAdminEnrollment(w, r, http.StatusOK, area, t, u, "")
	}
	return s.renderAdminSignIn(w, r, http.StatusOK, area, t, "admin_totp", loginForm{}, "")
}

// adminPending returns the admin who gave the right password in this
// browser and still owes the second-factor step stage.
func (s *Server) adminPending(w http.ResponseWriter, r *http.Request, stage string) (adminArea, storage.Tenant, storage.User, *sessions.Session, error) {
	area, t, err := s.areaOf(r)
	if err != nil {
		return area, t, storage.User{}, nil, err
	}
	if _, err := s.checkCSRF(r); err != nil {
		return area, t, storage.User{}, nil, err
	}
	sess, err := s.adminSessions(area).Get(r, area.cookie)
	if err != nil {
		return area, t, storage.User{}, nil, fmt.Errorf("load admin session: %w", err)
	}
	id, _ := sess.Values[adminPendingKey].(string)
	if id == "" || sess.Values[adminStageKey] != stage {
		return area, t, storage.User{}, nil, browserError(http.StatusBadRequest, "This sign-in has expired. Sign in again.")
	}
	u, err := s.store.GetUser(r.Context(), area.realm, id)
	if errors.Is(err, storage.ErrNotFound) {
		return area, t, storage.User{}, nil, browserError(http.StatusBadRequest, "This sign-in has expired. Sign in again.")
	}
	if err != nil {
		return area, t, storage.User{}, nil, fmt.Errorf("load admin %s: %w", id, err)
	}
	// The step must still fit the account: a page left open cannot skip a
	// factor enrolled since, nor replace one, nor finish a sign-in begun
	// with a password reset since.
	cred, _ := sess.Values[adminCredentialKey].(string)
	if u.Disabled || !u.Admin || mfa.Enrolled(u) != (stage == adminStageMFA) ||
		!hmac.Equal([]byte(cred), []byte(hex.EncodeToString(credentialDigest(u)))) {
		return area, t, storage.User{}, nil, browserError(http.StatusBadRequest, "This sign-in has expired. Sign in again.")
	}
	return area, t, u, sess, nil
}

// adminSecondFactor checks the TOTP or recovery code of an enrolled admin.
func (s *Server) adminSecondFactor(w http.ResponseWriter, r *http.Request) error {
	area, t, u, sess, err := s.adminPending(w, r, adminStageMFA)
	if err != nil {
		return err
	}
	method, err := s.checkSecondFactor(r, area.realm, u.ID)
	if errors.Is(err, errNoCode) {
		return s.renderAdminSignIn(w, r, http.StatusBadRequest, area, t, "admin_totp", loginForm{}, "Enter the code from your authenticator app.")
	}
	if reason := mfa.Reason(err); reason != "" {
		s.audit(r, storage.AuditEvent{TenantID: area.realm, Type: "mfa.failure", Outcome: "failure", Subject: u.ID,
			Details: map[string]string{"area": "admin", "method": method, "reason": reason}})
		status, msg := codeRefusal(err)
		return s.renderAdminSignIn(w, r, status, area, t, "admin_totp", loginForm{}, msg)
	}
	if err != nil {
		return err
	}
	s.audit(r, storage.AuditEvent{TenantID: area.realm, Type: "mfa.success", Outcome: "success", Subject: u.ID,
		Details: map[string]string{"area": "admin", "method": method}})
	if err := s.finishAdminSignIn(w, r, area, u, sess, method); err != nil {
		return err
	}
	http.Redirect(w, r, s.areaURL(area)+"/", http.StatusSeeOther)
	return nil
}

// adminEnrollSecondFactor confirms an admin's new authenticator app with
// its first code, finishes the sign-in and shows the recovery codes once.
func (s *Server) adminEnrollSecondFactor(w http.ResponseWriter, r *http.Request) error {
	area, t, u, sess, err := s.adminPending(w, r, adminStageEnrol)
	if err != nil {
		return err
	}
	codes, err := s.mfa.Confirm(r.Context(), area.realm, u.ID, strings.TrimSpace(r.PostForm.Get("code")))
	if reason := mfa.Reason(err); reason != "" {
		s.audit(r, storage.AuditEvent{TenantID: area.realm, Type: "mfa.failure", Outcome: "failure", Subject: u.ID,
			Details: map[string]string{"area": "admin", "method": "enroll", "reason": reason}})
		msg := "That code is not right. Check the app shows this account and try the current code."
		status := http.StatusUnauthorized
		switch {
		case errors.Is(err, mfa.ErrNoEnrollment):
			msg, status = "That setup expired. Scan this new code and enter the code it shows.", http.StatusBadRequest
		case errors.Is(err, mfa.ErrThrottled):
			msg, status = "Too many wrong codes. Wait a few minutes and try again.", http.StatusTooManyRequests
		}
		return s.renderAdminEnrollment(w, r, status, area, t, u, msg)
	}
	if err != nil {
		return err
	}
	s.audit(r, storage.AuditEvent{TenantID: area.realm, Type: "mfa.enroll", Outcome: "success", Subject: u.ID,
		Details: map[string]string{"area": "admin"}})
	if err := s.finishAdminSignIn(w, r, area, u, sess, "totp"); err != nil {
		return err
	}
	return s.renderAdminStep(w, r, http.StatusOK, area, t, adminSignInPage{Codes: codes}, "admin_recovery_codes", "")
}

func (s *Server) renderAdminEnrollment(w http.ResponseWriter, r *http.Request, status int, area adminArea, t storage.Tenant,
	u storage.User, message string) error {
	realm, err := s.store.GetTenant(r.Context(), area.realm)
	if err != nil {
		return fmt.Errorf("load realm %q: %w", area.realm, err)
	}
	e, err := s.mfa.Pending(r.Context(), realm, u)
	if errors.Is(err, mfa.ErrNoEnrollment) {
		e, err = s.mfa.Begin(r.Context(), realm, u)
	}
	if err != nil {
		return err
	}
	// The data: URL is a PNG the server drew; no input reaches it.
	return s.renderAdminStep(w, r, status, area, t, adminSignInPage{QRCode: template.URL(e.QRCode), ManualKey: e.ManualKey},
		"admin_totp_enroll", message)
}

// finishAdminSignIn turns the pending session into a signed-in one, under a
// new id, and records the sign-in.
func (s *Server) finishAdminSignIn(w http.ResponseWriter, r *http.Request, area adminArea, u storage.User, sess *sessions.Session, method string) error {
	delete(sess.Values, adminPendingKey)
	delete(sess.Values, adminStageKey)
	sessions.SetUserID(sess, u.ID)
	sess.Values["signed_in_at"] = s.now().UTC().Format(time.RFC3339)
	if err := s.adminSessions(area).Regenerate(r, w, sess); err != nil {
		return fmt.Errorf("start admin session: %w", err)
	}
	s.audit(r, storage.AuditEvent{TenantID: area.realm, Type: "login.success", Outcome: "success", ActorID: u.ID, Subject: u.ID,
		Details: map[string]string{"area": "admin", "mfa": method}})
	return nil
}

// adminLogout ends the admin session of the area it is posted to.
func (s *Server) adminLogout(w http.ResponseWriter, r *http.Request) error {
	area, _, err := s.areaOf(r)
	if err != nil {
		return err
	}
	if _, err := s.checkCSRF(r); err != nil {
		return err
	}
	st := s.adminSessions(area)
	sess, err := st.Get(r, area.cookie)
	if err != nil {
		return fmt.Errorf("load admin session: %w", err)
	}
	if id := sessions.UserID(sess); id != "" {
		s.audit(r, storage.AuditEvent{TenantID: area.realm, Type: "logout", Outcome: "success", ActorID: id, Subject: id,
			Details: map[string]string{"area": "admin"}})
	}
	if err := st.Destroy(r, w, sess); err != nil {
		return fmt.Errorf("end admin session: %w", err)
	}
	http.Redirect(w, r, s.areaURL(area)+"/login", http.StatusSeeOther)
	return nil
}

// operatorHomePage is the operator area's first page: every tenant.
type operatorHomePage struct {
	adminPage
	Tenants []storage.Tenant
}

// adminHome lists the tenants to an operator.
func (s *Server) adminHome(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	all, err := s.store.ListTenants(r.Context())
	if err != nil {
		return fmt.Errorf("list tenants: %w", err)
	}
	page := operatorHomePage{adminPage: ar.page(s, "tenants", "Tenants")}
	for _, t := range all {
		if t.ID != storage.OperatorRealm {
			page.Tenants = append(page.Tenants, t)
		}
	}
	s.render(w, r, http.StatusOK, "admin_home", page)
	return nil
}

// tenantOverviewPage is a tenant area's first page.
type tenantOverviewPage struct {
	adminPage
	Issuer string
}

// adminTenantHome shows a tenant's overview.
func (s *Server) adminTenantHome(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	s.render(w, r, http.StatusOK, "admin_tenant", tenantOverviewPage{adminPage: ar.page(s, "overview", ar.tenant.Name), Issuer: s.Issuer(ar.tenant.ID)})
	return nil
}
