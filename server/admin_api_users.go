package server

import (
	"net/http"
	"time"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/mfa"
	"github.com/smartauth/smartauth/storage"
)

// apiUser is a user as the admin API shows it: whether a password and a
// second factor are set, never the hash or the TOTP secret.
type apiUser struct {
	ID           string            `json:"id"`
	Email        string            `json:"email"`
	Admin        bool              `json:"admin"`
	Disabled     bool              `json:"disabled"`
	Profiles     []storage.Profile `json:"profiles"`
	HasPassword  bool              `json:"has_password"`
	SecondFactor bool              `json:"second_factor"`
	CreatedAt    time.Time         `json:"created_at"`
	UpdatedAt    time.Time         `json:"updated_at"`
}

// apiNewUser is the body of POST …/users; without a password the user
// signs in only through an identity provider.
type apiNewUser struct {
	Email    string            `json:"email"`
	Password string            `json:"password"`
	Profiles []storage.Profile `json:"profiles"`
	Admin    bool              `json:"admin"`
}

// apiUserChange is the body of PATCH …/users/{user}: each field present is
// changed, all in one update of the user.
type apiUserChange struct {
	Profiles *[]storage.Profile `json:"profiles"`
	Admin    *bool              `json:"admin"`
	Disabled *bool              `json:"disabled"`
}

func apiUserView(u storage.User) apiUser {
	v := apiUser{ID: u.ID, Email: u.Email, Admin: u.Admin, Disabled: u.Disabled, Profiles: u.Profiles,
		HasPassword: u.PasswordHash != "", SecondFactor: mfa.Enrolled(u), CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
	if v.Profiles == nil {
		v.Profiles = []storage.Profile{}
	}
	return v
}

// apiListUsers is GET …/users.
func (s *Server) apiListUsers(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	us, err := s.store.ListUsers(r.Context(), ar.tenant.ID)
	if err != nil {
		return err
	}
	out := make([]apiUser, 0, len(us))
	for _, u := range us {
		out = append(out, apiUserView(u))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// apiCreateUser is POST …/users.
func (s *Server) apiCreateUser(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	var in apiNewUser
	if err := decodeJSONBody(r, &in); err != nil {
		return err
	}
	u, err := s.manage.CreateUser(r.Context(), manage.UserInput{
		TenantID: ar.tenant.ID, Email: in.Email, Password: in.Password, Profiles: in.Profiles, Admin: in.Admin,
	}, ar.actor(r))
	if err != nil {
		return apiError(err, "user")
	}
	setETag(w, u.Version)
	writeJSON(w, http.StatusCreated, apiUserView(u))
	return nil
}

// apiGetUser is GET …/users/{user}, with the user's version as ETag.
func (s *Server) apiGetUser(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	u, err := s.store.GetUser(r.Context(), ar.tenant.ID, r.PathValue("user"))
	if err != nil {
		return apiError(err, "user")
	}
	setETag(w, u.Version)
	writeJSON(w, http.StatusOK, apiUserView(u))
	return nil
}

// apiUpdateUser is PATCH …/users/{user}. Its changes are made in one update
// of the user and audited together; when one is refused, none is made. With
// If-Match, a user changed since the version it names is left alone (412).
func (s *Server) apiUpdateUser(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	var in apiUserChange
	if err := decodeJSONBody(r, &in); err != nil {
		return err
	}
	ctx, id := r.Context(), r.PathValue("user")
	current, err := s.store.GetUser(ctx, ar.tenant.ID, id)
	if err != nil {
		return apiError(err, "user")
	}
	version, err := ifMatchVersion(r, current.Version, "user")
	if err != nil {
		return err
	}
	u, err := s.manage.UpdateUser(ctx, ar.tenant.ID, id, manage.UserChange{
		Version: version, Profiles: in.Profiles, Admin: in.Admin, Disabled: in.Disabled,
	}, ar.actor(r))
	if err != nil {
		return apiEditError(err, version, "user")
	}
	setETag(w, u.Version)
	writeJSON(w, http.StatusOK, apiUserView(u))
	return nil
}

// apiDeleteUser is DELETE …/users/{user}.
func (s *Server) apiDeleteUser(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	if err := s.manage.DeleteUser(r.Context(), ar.tenant.ID, r.PathValue("user"), ar.actor(r)); err != nil {
		return apiError(err, "user")
	}
	return apiNoContent(w)
}

// apiSetPassword is POST …/users/{user}/password: a new password, which
// signs the user out everywhere and lifts a lock-out after failed sign-ins.
func (s *Server) apiSetPassword(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	var in struct {
		Password string `json:"password"`
	}
	if err := decodeJSONBody(r, &in); err != nil {
		return err
	}
	if err := s.manage.ResetPassword(r.Context(), ar.tenant.ID, r.PathValue("user"), in.Password, ar.actor(r)); err != nil {
		return apiEditError(err, 0, "user")
	}
	return apiNoContent(w)
}

// apiResetSecondFactor is DELETE …/users/{user}/second-factor, for a user
// who lost the device; the user enrolls again at the next sign-in that needs it.
func (s *Server) apiResetSecondFactor(w http.ResponseWriter, r *http.Request, ar *apiRequest) error {
	if err := s.manage.ResetSecondFactor(r.Context(), ar.tenant.ID, r.PathValue("user"), ar.actor(r)); err != nil {
		return apiError(err, "user")
	}
	return apiNoContent(w)
}
