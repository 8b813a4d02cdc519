package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/mfa"
	"github.com/smartauth/smartauth/storage"
)

// The users pages of a tenant, and the operators page of the operator
// area. Every change goes through s.manage, which validates and audits it;
// the pages only read from the store.

// userRow is one user as the lists show it.
type userRow struct {
	ID       string
	Email    string
	Profiles []storage.Profile
	Admin    bool
	Disabled bool
	// SecondFactor is true once the user has enrolled an authenticator app.
	SecondFactor bool
	// Password is false for a federated-only user.
	Password bool
	// Links counts the upstream identities linked to the user.
	Links int
}

// newUserForm is what the admin typed into the form that creates a user,
// kept when the form comes back with an error; the password never is.
type newUserForm struct {
	Email    string
	Profiles string
	Admin    bool
}

// usersPage lists a tenant's users with the form that creates one.
type usersPage struct {
	adminPage
	Users []userRow
	Form  newUserForm
}

// userPage is one user with the forms that change it.
type userPage struct {
	adminPage
	User userRow
	// Links are the upstream identities linked to the user.
	Links []storage.IdentityLink
	// ProfilesText is the profiles form's text: the stored profiles, or
	// what the admin typed when the form comes back with an error.
	ProfilesText string
	// Version is the version of the user the forms were filled from, sent
	// back with each change so that one made from a stale page is refused.
	Version int64
	// Self is true when the admin looks at their own account, which they
	// may not disable, demote or delete.
	Self bool
}

// adminDeletePage asks an admin to confirm a deletion.
type adminDeletePage struct {
	adminPage
	// What names what goes, such as "the user alice@example.org".
	What string
	// Consequences says what else goes with it.
	Consequences string
	Action       string
	CancelURL    string
}

// operatorsPage lists the operators with the form that adds one.
type operatorsPage struct {
	adminPage
	Operators []userRow
	// FormEmail is the email typed into the add form when it comes back with an error.
	FormEmail string
	// SelfID is the signed-in operator, who may not disable themselves here.
	SelfID string
}

// userNotice is the fixed text of a notice a redirect after a change asks
// for by code; the query never supplies text of its own.
func userNotice(code string) string {
	switch code {
	case "created":
		return "The user was created."
	case "profiles":
		return "The profiles were saved."
	case "admin_granted":
		return "The user is now an admin of this tenant."
	case "admin_withdrawn":
		return "The user is no longer an admin; their sessions have ended."
	case "disabled":
		return "The user was disabled; their sessions have ended and their tokens no longer work."
	case "enabled":
		return "The user was enabled."
	case "password":
		return "The password was replaced; the user's sessions have ended."
	case "second_factor":
		return "The second factor was reset; the user sets up an authenticator app at their next sign-in that needs one."
	case "deleted":
		return "The user was deleted."
	case "operator_created":
		return "The operator was added; they set up an authenticator app at their first sign-in."
	case "operator_disabled":
		return "The operator was disabled; their sessions have ended."
	case "operator_enabled":
		return "The operator was enabled."
	}
	return ""
}

// manageInputMessage returns the message of an error the admin corrects by
// changing what they typed: manage's validation, or, when taken is not
// empty, a name already taken, which taken then explains. Any other error
// yields false and goes to the log as a server error.
func manageInputMessage(err error, taken string) (string, bool) {
	switch {
	case errors.Is(err, manage.ErrInvalid):
		return strings.TrimPrefix(err.Error(), manage.ErrInvalid.Error()+": "), true
	case taken != "" && errors.Is(err, storage.ErrAlreadyExists):
		return taken, true
	}
	return "", false
}

// staleUserMessage explains a change refused for being made from a page
// opened before someone else's change, and what the page now shows.
const staleUserMessage = "Someone else changed this user since you opened this page, so your change was not saved. " +
	"The page now shows the user as they are: check it and make your change again."

// formVersion reads the version of the record a form was filled from.
func formVersion(f url.Values) (int64, error) {
	return parseVersion(f.Get("version"))
}

// parseVersion reads a form's version field. A form without one, as pages
// served before records had versions, makes its change to the record as it
// is now.
func parseVersion(text string) (int64, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(text, 10, 64)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("%w: this form is damaged; reload the page and make your change again", manage.ErrInvalid)
	}
	return v, nil
}

// notFoundAs turns a storage.ErrNotFound into a 404 page saying what.
func notFoundAs(err error, what string) error {
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound(what)
	}
	return err
}

// adminRedirect answers a successful change with a redirect to a page of
// the area, naming the notice to show there.
func (s *Server) adminRedirect(w http.ResponseWriter, r *http.Request, ar *adminRequest, path, notice string) error {
	http.Redirect(w, r, s.areaURL(ar.area)+path+"?notice="+url.QueryEscape(notice), http.StatusSeeOther)
	return nil
}

// isSelf tells whether the user (realm, id) is the signed-in admin.
func (ar *adminRequest) isSelf(realm, id string) bool {
	return ar.principal.User.TenantID == realm && ar.principal.User.ID == id
}

// userRowOf describes a user for the lists; links is its identity-link count.
func userRowOf(u storage.User, links int) userRow {
	return userRow{ID: u.ID, Email: u.Email, Profiles: u.Profiles, Admin: u.Admin, Disabled: u.Disabled,
		SecondFactor: mfa.Enrolled(u), Password: u.PasswordHash != "", Links: links}
}

// profilesText writes profiles one per line, as the profiles forms read them.
func profilesText(ps []storage.Profile) string {
	lines := make([]string, 0, len(ps))
	for _, p := range ps {
		lines = append(lines, p.FHIRUser+"="+p.Label)
	}
	return strings.Join(lines, "\n")
}

// parseProfiles reads a profiles form field: one "Practitioner/123=Label"
// per line, blank lines skipped.
func parseProfiles(text string) ([]storage.Profile, error) {
	var out []storage.Profile
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		p, err := manage.ParseProfile(line)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// adminUsers lists a tenant's users.
func (s *Server) adminUsers(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	return s.renderUsers(w, r, ar, http.StatusOK, newUserForm{}, "")
}

func (s *Server) renderUsers(w http.ResponseWriter, r *http.Request, ar *adminRequest, status int, form newUserForm, message string) error {
	ctx := r.Context()
	us, err := s.store.ListUsers(ctx, ar.tenant.ID)
	if err != nil {
		return fmt.Errorf("list users of tenant %q: %w", ar.tenant.ID, err)
	}
	page := usersPage{adminPage: ar.page(s, "users", "Users"), Form: form}
	page.Error = message
	if message == "" {
		page.Notice = userNotice(r.URL.Query().Get("notice"))
	}
	for _, u := range us {
		links, err := s.store.ListIdentityLinks(ctx, ar.tenant.ID, u.ID)
		if err != nil {
			return fmt.Errorf("identity links of user %q: %w", u.ID, err)
		}
		page.Users = append(page.Users, userRowOf(u, len(links)))
	}
	s.render(w, r, status, "admin_users", page)
	return nil
}

// adminCreateUser creates a user of the tenant; without a password the user
// signs in only through an identity provider.
func (s *Server) adminCreateUser(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	form := newUserForm{
		Email:    strings.TrimSpace(r.PostForm.Get("email")),
		Profiles: r.PostForm.Get("profiles"),
		Admin:    r.PostForm.Get("admin") == "on",
	}
	profiles, err := parseProfiles(form.Profiles)
	var u storage.User
	if err == nil {
		u, err = s.manage.CreateUser(r.Context(), manage.UserInput{TenantID: ar.tenant.ID, Email: form.Email,
			Password: r.PostForm.Get("password"), Profiles: profiles, Admin: form.Admin}, ar.actor(r))
	}
	if msg, ok := manageInputMessage(err, "A user with this email exists already in this tenant."); ok {
		return s.renderUsers(w, r, ar, http.StatusBadRequest, form, msg)
	}
	if err != nil {
		return err
	}
	return s.adminRedirect(w, r, ar, "/users/"+url.PathEscape(u.ID), "created")
}

// adminUser shows one user with the forms that change it.
func (s *Server) adminUser(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	return s.renderUser(w, r, ar, http.StatusOK, nil, "")
}

// renderUser shows the user named in the path; typedProfiles, when not nil,
// is what the admin typed into the profiles form, kept beside an error.
func (s *Server) renderUser(w http.ResponseWriter, r *http.Request, ar *adminRequest, status int, typedProfiles *string, message string) error {
	ctx := r.Context()
	u, err := s.store.GetUser(ctx, ar.tenant.ID, r.PathValue("user"))
	if err != nil {
		return notFoundAs(err, "There is no such user in this tenant.")
	}
	links, err := s.store.ListIdentityLinks(ctx, ar.tenant.ID, u.ID)
	if err != nil {
		return fmt.Errorf("identity links of user %q: %w", u.ID, err)
	}
	page := userPage{adminPage: ar.page(s, "users", u.Email), User: userRowOf(u, len(links)), Links: links,
		ProfilesText: profilesText(u.Profiles), Version: u.Version, Self: ar.isSelf(ar.tenant.ID, u.ID)}
	if typedProfiles != nil {
		// The typed profiles stay an edit of the version they were made
		// from, so saving them again cannot undo a change made since.
		page.ProfilesText = *typedProfiles
		if v, err := formVersion(r.PostForm); err == nil && v != 0 {
			page.Version = v
		}
	}
	page.Error = message
	if message == "" {
		page.Notice = userNotice(r.URL.Query().Get("notice"))
	}
	s.render(w, r, status, "admin_user", page)
	return nil
}

// userChange runs a change to the user named in the path, made from the
// version of the user the form carries: a correctable refusal shows the
// user page again with 400 and the message; a change made from a page
// older than the user shows the user as now stored, with 409; success
// redirects to the user page with the notice.
func (s *Server) userChange(w http.ResponseWriter, r *http.Request, ar *adminRequest, notice string, typedProfiles *string,
	change func(userID string, version int64) error) error {
	id := r.PathValue("user")
	version, err := formVersion(r.PostForm)
	if err == nil {
		err = change(id, version)
	}
	if errors.Is(err, storage.ErrConflict) {
		return s.renderUser(w, r, ar, http.StatusConflict, nil, staleUserMessage)
	}
	if msg, ok := manageInputMessage(err, ""); ok {
		return s.renderUser(w, r, ar, http.StatusBadRequest, typedProfiles, msg)
	}
	if err != nil {
		return notFoundAs(err, "There is no such user in this tenant.")
	}
	return s.adminRedirect(w, r, ar, "/users/"+url.PathEscape(id), notice)
}

// refuseSelf is the refusal of a change an admin may not make to their own
// account, which would lock them out of the page they are using.
func refuseSelf(what string) error {
	return fmt.Errorf("%w: you cannot %s your own account; ask another admin", manage.ErrInvalid, what)
}

// adminUserProfiles replaces the user's profiles.
func (s *Server) adminUserProfiles(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	typed := r.PostForm.Get("profiles")
	return s.userChange(w, r, ar, "profiles", &typed, func(id string, version int64) error {
		ps, err := parseProfiles(typed)
		if err != nil {
			return err
		}
		_, err = s.manage.UpdateUser(r.Context(), ar.tenant.ID, id, manage.UserChange{Version: version, Profiles: &ps}, ar.actor(r))
		return err
	})
}

// adminUserAdmin grants or withdraws the user's admin rights over the tenant.
func (s *Server) adminUserAdmin(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	admin := r.PostForm.Get("admin") == "true"
	notice := "admin_withdrawn"
	if admin {
		notice = "admin_granted"
	}
	return s.userChange(w, r, ar, notice, nil, func(id string, version int64) error {
		if !admin && ar.isSelf(ar.tenant.ID, id) {
			return refuseSelf("withdraw admin rights from")
		}
		_, err := s.manage.UpdateUser(r.Context(), ar.tenant.ID, id, manage.UserChange{Version: version, Admin: &admin}, ar.actor(r))
		return err
	})
}

// adminUserDisabled disables or enables the user.
func (s *Server) adminUserDisabled(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	disabled := r.PostForm.Get("disabled") == "true"
	notice := "enabled"
	if disabled {
		notice = "disabled"
	}
	return s.userChange(w, r, ar, notice, nil, func(id string, version int64) error {
		if disabled && ar.isSelf(ar.tenant.ID, id) {
			return refuseSelf("disable")
		}
		_, err := s.manage.UpdateUser(r.Context(), ar.tenant.ID, id, manage.UserChange{Version: version, Disabled: &disabled}, ar.actor(r))
		return err
	})
}

// adminUserPassword replaces the user's password with one the admin typed,
// which also lifts a lock-out after failed sign-ins.
func (s *Server) adminUserPassword(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	return s.userChange(w, r, ar, "password", nil, func(id string, version int64) error {
		pw := r.PostForm.Get("password")
		_, err := s.manage.UpdateUser(r.Context(), ar.tenant.ID, id, manage.UserChange{Version: version, Password: &pw}, ar.actor(r))
		return err
	})
}

// adminUserResetSecondFactor removes the user's authenticator app, for one
// who lost the device; they enroll again at their next sign-in.
func (s *Server) adminUserResetSecondFactor(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	// A reset takes nothing from the page but the choice to reset, so the
	// version it was opened at does not matter.
	return s.userChange(w, r, ar, "second_factor", nil, func(id string, _ int64) error {
		return s.manage.ResetSecondFactor(r.Context(), ar.tenant.ID, id, ar.actor(r))
	})
}

// adminUserDeletePage asks the admin to confirm deleting the user.
func (s *Server) adminUserDeletePage(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	u, err := s.store.GetUser(r.Context(), ar.tenant.ID, r.PathValue("user"))
	if err != nil {
		return notFoundAs(err, "There is no such user in this tenant.")
	}
	userURL := s.areaURL(ar.area) + "/users/" + url.PathEscape(u.ID)
	s.render(w, r, http.StatusOK, "admin_delete", adminDeletePage{
		adminPage: ar.page(s, "users", "Delete user"), What: "the user " + u.Email,
		Consequences: "Their sessions, consents and links to identity providers go with them, and the tokens issued to them stop working.",
		Action:       userURL + "/delete", CancelURL: userURL,
	})
	return nil
}

// adminUserDelete deletes the user.
func (s *Server) adminUserDelete(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	id := r.PathValue("user")
	err := func() error {
		if ar.isSelf(ar.tenant.ID, id) {
			return refuseSelf("delete")
		}
		return s.manage.DeleteUser(r.Context(), ar.tenant.ID, id, ar.actor(r))
	}()
	if msg, ok := manageInputMessage(err, ""); ok {
		return s.renderUser(w, r, ar, http.StatusBadRequest, nil, msg)
	}
	if err != nil {
		return notFoundAs(err, "There is no such user in this tenant.")
	}
	return s.adminRedirect(w, r, ar, "/users", "deleted")
}

// adminOperators lists the operators.
func (s *Server) adminOperators(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	return s.renderOperators(w, r, ar, http.StatusOK, "", "")
}

func (s *Server) renderOperators(w http.ResponseWriter, r *http.Request, ar *adminRequest, status int, email, message string) error {
	us, err := s.store.ListUsers(r.Context(), storage.OperatorRealm)
	if err != nil {
		return fmt.Errorf("list operators: %w", err)
	}
	page := operatorsPage{adminPage: ar.page(s, "operators", "Operators"), FormEmail: email, SelfID: ar.principal.User.ID}
	page.Error = message
	if message == "" {
		page.Notice = userNotice(r.URL.Query().Get("notice"))
	}
	for _, u := range us {
		page.Operators = append(page.Operators, userRowOf(u, 0))
	}
	s.render(w, r, status, "admin_operators", page)
	return nil
}

// adminCreateOperator adds an operator, who enrolls a second factor at the
// first sign-in.
func (s *Server) adminCreateOperator(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	email := strings.TrimSpace(r.PostForm.Get("email"))
	_, err := s.manage.CreateAdmin(r.Context(), "", email, r.PostForm.Get("password"), ar.actor(r))
	if msg, ok := manageInputMessage(err, "An operator with this email exists already."); ok {
		return s.renderOperators(w, r, ar, http.StatusBadRequest, email, msg)
	}
	if err != nil {
		return err
	}
	return s.adminRedirect(w, r, ar, "/operators", "operator_created")
}

// adminOperatorDisabled disables or enables an operator; manage refuses to
// disable the last enabled one.
func (s *Server) adminOperatorDisabled(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	id := r.PathValue("user")
	disabled := r.PostForm.Get("disabled") == "true"
	err := func() error {
		if disabled && ar.isSelf(storage.OperatorRealm, id) {
			return refuseSelf("disable")
		}
		// The operators list is a list of choices, not an edit of the
		// operator's fields, so the change applies to the operator as now.
		_, err := s.manage.UpdateUser(r.Context(), storage.OperatorRealm, id, manage.UserChange{Disabled: &disabled}, ar.actor(r))
		return err
	}()
	if msg, ok := manageInputMessage(err, ""); ok {
		return s.renderOperators(w, r, ar, http.StatusBadRequest, "", msg)
	}
	if err != nil {
		return notFoundAs(err, "There is no such operator.")
	}
	notice := "operator_enabled"
	if disabled {
		notice = "operator_disabled"
	}
	return s.adminRedirect(w, r, ar, "/operators", notice)
}
