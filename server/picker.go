package server

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/ory/fosite"

	"github.com/smartauth/smartauth/server/fhirsearch"
	"github.com/smartauth/smartauth/server/oauth"
	"github.com/smartauth/smartauth/server/sessions"
	"github.com/smartauth/smartauth/server/smart"
	"github.com/smartauth/smartauth/storage"
)

// The steps between signing in and the consent page: the role picker for a
// person with several FHIR profiles, then the patient picker when a
// standalone app asked for launch/patient. Each step is a form that carries
// the authorization request and the signed ticket; each choice is written
// into a freshly signed ticket, so nothing is kept on the server between steps.

// stepPage is what every page after sign-in carries: the tenant, the app,
// who is signed in, and the hidden fields the next form posts back.
type stepPage struct {
	Tenant     storage.Tenant
	ClientName string
	Email      string
	Action     string
	CSRF       string
	Authz      string
	Ticket     string
}

// newStepPage fills a step page for the form posting to endpoint.
func (s *Server) newStepPage(t storage.Tenant, a *authzRequest, u storage.User, endpoint, csrf, ticket string) stepPage {
	return stepPage{Tenant: t, ClientName: clientName(a.client), Email: u.Email, Action: s.Issuer(t.ID) + "/" + endpoint,
		CSRF: csrf, Authz: a.params.Encode(), Ticket: ticket}
}

// rolePage is what templates/role.html shows.
type rolePage struct {
	stepPage
	Profiles []storage.Profile
}

// patientPage is what templates/patient.html shows.
type patientPage struct {
	stepPage
	Acting storage.Profile
	// ActingAs names Acting, as actingAs does.
	ActingAs string
	Query    storage.PatientQuery
	Searched bool
	Results  []patientChoice
	Error    string
	// Notice says the results may be incomplete.
	Notice string
	// Listing is true when the search was empty and the page lists the
	// roster; First and Last number the roster entries it shows.
	Listing     bool
	First, Last int
	// Prev and Next are the offsets of the neighbouring pages, Next zero
	// when this is the last page; HasPrev tells whether there is one before.
	HasPrev    bool
	Prev, Next int
}

// patientChoice is one roster entry offered in the patient picker.
type patientChoice struct {
	ID          string
	Name        string
	BirthDate   string
	Gender      string
	Identifiers string
}

// pickerLimit is how many roster matches the patient picker shows.
const pickerLimit = 25

// advance moves a signed-in person to the next step their request needs:
// the role picker, the patient picker, then consent, or straight to the code
// when they already remembered their consent for this app.
func (s *Server) advance(w http.ResponseWriter, r *http.Request, t storage.Tenant, p *oauth.Provider, a *authzRequest,
	u storage.User, tk loginTicket, csrf string) error {
	if a.launch != nil && a.launch.UserID != "" && a.launch.UserID != u.ID {
		return browserError(http.StatusForbidden,
			"This app was opened from the health record for another person. Sign in as that person, or open the app again.")
	}
	if !tk.RoleChosen {
		if len(u.Profiles) > 1 {
			return s.renderRole(w, r, t, a, u, tk, csrf)
		}
		tk.RoleChosen = true
		if len(u.Profiles) == 1 {
			tk.Role = u.Profiles[0].FHIRUser
		}
	}
	profile, ok := findProfile(u.Profiles, tk.Role)
	if !ok {
		return errTicket
	}
	// A person acting as a patient shares their own record and no other,
	// whatever patient an EHR launch names.
	// The app hears of it as access_denied (RFC 6749 §4.1.2.1), so it is
	// not left waiting for a callback that never comes.
	if own, isPatient := ownPatient(profile); isPatient && a.launch != nil && a.launch.Context.Patient != "" && a.launch.Context.Patient != own {
		return s.redirectAuthzError(w, r, t.ID, &authzRedirectError{redirectURI: a.ar.GetRedirectURI().String(), state: a.ar.GetState(),
			err: fosite.ErrAccessDenied.WithHint("The app was opened for another patient's record, and the user is signed in as a patient.")})
	}
	if needsPatientChoice(a, tk) {
		if id, ok := ownPatient(profile); ok {
			tk.Patient = id
		} else if mayPickPatient(profile) {
			return s.renderPatients(w, r, http.StatusOK, t, a, u, tk, csrf, patientPage{})
		}
		// Anyone else goes on without a patient; consent says why the
		// patient scopes are left out.
	}
	return s.askConsent(w, r, t, p, a, u, tk, profile, csrf)
}

// actingAs names a profile for the pages after sign-in: its label and the
// record it stands for, without saying the type twice ("Patient (demo-1)",
// not "Patient Patient/demo-1"); without a label, the reference alone.
func actingAs(p storage.Profile) string {
	typ, id, ok := strings.Cut(p.FHIRUser, "/")
	if !ok {
		return strings.TrimSpace(p.Label + " " + p.FHIRUser)
	}
	label := strings.TrimSpace(p.Label)
	switch {
	case label == "":
		return p.FHIRUser
	case strings.EqualFold(label, typ):
		return label + " (" + id + ")"
	}
	return label + " (" + p.FHIRUser + ")"
}

// mayPickPatient reports whether a person acting as this profile may
// choose any patient of the tenant: clinicians may; a patient, a related
// person or someone without a profile may not.
func mayPickPatient(p storage.Profile) bool {
	return strings.HasPrefix(p.FHIRUser, "Practitioner/") || strings.HasPrefix(p.FHIRUser, "PractitionerRole/")
}

// needsPatientChoice reports whether a standalone launch asked for a patient
// that has not been chosen yet; an EHR launch brings its own.
func needsPatientChoice(a *authzRequest, tk loginTicket) bool {
	return a.launch == nil && tk.Patient == "" && smart.WantsPatient(a.ar.GetRequestedScopes())
}

// ownPatient is the record of a person signed in as a patient: they are
// bound to it without a choice.
func ownPatient(p storage.Profile) (string, bool) {
	id, ok := strings.CutPrefix(p.FHIRUser, "Patient/")
	return id, ok && id != ""
}

// findProfile finds the chosen profile among the user's current ones; ""
// stands for acting without a profile, allowed only for a user with none.
func findProfile(profiles []storage.Profile, chosen string) (storage.Profile, bool) {
	if chosen == "" {
		return storage.Profile{}, len(profiles) == 0
	}
	for _, p := range profiles {
		if p.FHIRUser == chosen {
			return p, true
		}
	}
	return storage.Profile{}, false
}

// stepForm checks the form of a step after sign-in: as checkStepForm, and
// the ticket must stand for a complete sign-in, second factor included.
func (s *Server) stepForm(w http.ResponseWriter, r *http.Request) (*signInStep, error) {
	st, err := s.checkStepForm(w, r)
	if st == nil {
		return nil, err
	}
	if st.tk.MFA != "" || st.tk.SessionID == "" {
		return nil, errTicket
	}
	// A sign-in ends with its session: after sign-out, a page left open
	// (the next person at a shared workstation pressing Back) grants nothing.
	if err := s.sessions.Resume(r.Context(), st.t.ID, st.tk.SessionID); errors.Is(err, sessions.ErrEnded) {
		return nil, errTicket
	} else if err != nil {
		return nil, err
	}
	return st, nil
}

// checkStepForm checks a step's form: CSRF, the authorization request, the
// ticket and that its user may still sign in. A nil step with a nil error
// means the request was already answered: a refusal sent back to the app.
func (s *Server) checkStepForm(w http.ResponseWriter, r *http.Request) (*signInStep, error) {
	t, p, err := s.tenantProvider(r)
	if err != nil {
		return nil, err
	}
	csrf, err := s.checkCSRF(r)
	if err != nil {
		return nil, err
	}
	a, err := s.authzFromForm(r, t, p)
	if err != nil {
		return nil, s.authzFailed(w, r, t.ID, err)
	}
	tk, err := s.openTicket(t.ID, r.PostForm.Get("ticket"))
	if err != nil || !tk.matches(s.now(), a.params, csrf) {
		return nil, errTicket
	}
	u, err := s.store.GetUser(r.Context(), t.ID, tk.UserID)
	if errors.Is(err, storage.ErrNotFound) || err == nil && u.Disabled {
		return nil, browserError(http.StatusForbidden, "This account can no longer sign in. Contact your organization.")
	}
	if err != nil {
		return nil, fmt.Errorf("load user: %w", err)
	}
	if !hmac.Equal(tk.Credential, credentialDigest(u)) {
		return nil, errTicket
	}
	return &signInStep{t: t, p: p, a: a, u: u, tk: tk, csrf: csrf}, nil
}

// signInStep is a checked step form.
type signInStep struct {
	t    storage.Tenant
	p    *oauth.Provider
	a    *authzRequest
	u    storage.User
	tk   loginTicket
	csrf string
}

// role records the role chosen on the role picker.
func (s *Server) role(w http.ResponseWriter, r *http.Request) error {
	st, err := s.stepForm(w, r)
	if st == nil {
		return err
	}
	if st.tk.RoleChosen {
		return errTicket
	}
	chosen := r.PostForm.Get("profile")
	if _, ok := findProfile(st.u.Profiles, chosen); !ok || chosen == "" {
		return browserError(http.StatusBadRequest, "Choose one of your roles to continue.")
	}
	st.tk.RoleChosen, st.tk.Role = true, chosen
	return s.advance(w, r, st.t, st.p, st.a, st.u, st.tk, st.csrf)
}

// patient searches the tenant's roster, or records the patient chosen.
func (s *Server) patient(w http.ResponseWriter, r *http.Request) error {
	st, err := s.stepForm(w, r)
	if st == nil {
		return err
	}
	if !st.tk.RoleChosen || !needsPatientChoice(st.a, st.tk) {
		return errTicket
	}
	if profile, ok := findProfile(st.u.Profiles, st.tk.Role); !ok || !mayPickPatient(profile) {
		return errTicket
	}
	if id := r.PostForm.Get("patient"); id != "" {
		pt, err := s.lookupPatient(r.Context(), st.t, id)
		if errors.Is(err, storage.ErrNotFound) {
			return s.renderPatients(w, r, http.StatusBadRequest, st.t, st.a, st.u, st.tk, st.csrf,
				patientPage{Error: "That patient is not in this organization's records. Search again."})
		}
		var remote *remoteSearchError
		if errors.As(err, &remote) {
			s.logger(r).Warn("FHIR patient read failed", "tenant", st.t.ID, "err", remote.err)
			return s.renderPatients(w, r, http.StatusBadGateway, st.t, st.a, st.u, st.tk, st.csrf,
				patientPage{Error: "The organization's FHIR server could not confirm that patient just now. Try again in a moment."})
		}
		if err != nil {
			return fmt.Errorf("load chosen patient: %w", err)
		}
		st.tk.Patient = pt.ID
		return s.advance(w, r, st.t, st.p, st.a, st.u, st.tk, st.csrf)
	}
	q := storage.PatientQuery{
		Name:       strings.TrimSpace(truncate(r.PostForm.Get("name"), 100)),
		BirthDate:  strings.TrimSpace(truncate(r.PostForm.Get("birthdate"), 10)),
		Identifier: strings.TrimSpace(truncate(r.PostForm.Get("identifier"), 100)),
	}
	if q.Name == "" && q.BirthDate == "" && q.Identifier == "" {
		// An empty search lists the roster, a page at a time.
		return s.listPatients(w, r, st, q, pickerOffset(r.PostForm.Get("offset")))
	}
	q.Limit = pickerLimit
	found, err := s.store.SearchPatients(r.Context(), st.t.ID, q)
	if err != nil {
		return fmt.Errorf("search patients: %w", err)
	}
	page := patientPage{Query: q, Searched: true}
	seen := map[string]bool{}
	for _, pt := range found {
		seen[pt.ID] = true
		page.Results = append(page.Results, describePatient(pt))
	}
	if searcher, err := s.patientSearch.For(st.t); err == nil {
		remote, err := searcher.Search(r.Context(), q)
		if err != nil {
			// The roster still answers; the person is told the list may be short.
			s.logger(r).Warn("FHIR patient search failed", "tenant", st.t.ID, "err", err)
			page.Notice = "The organization's FHIR server could not be searched just now; only local records are shown."
		}
		for _, pt := range remote {
			if !seen[pt.ID] {
				seen[pt.ID] = true
				page.Results = append(page.Results, describePatient(pt))
			}
		}
	} else if !errors.Is(err, fhirsearch.ErrNotConfigured) {
		s.logger(r).Error("FHIR patient search unusable", "tenant", st.t.ID, "err", err)
		page.Notice = "The organization's FHIR server is not set up correctly; only local records are shown."
	}
	return s.renderPatients(w, r, http.StatusOK, st.t, st.a, st.u, st.tk, st.csrf, page)
}

// pickerMaxOffset bounds how far the roster listing pages, so a forged
// offset cannot make the database skip through an arbitrary number of rows.
const pickerMaxOffset = 100_000

// pickerOffset reads the roster page's offset from the form: a multiple of
// the page size, zero when missing or not a number.
func pickerOffset(v string) int {
	n, err := strconv.Atoi(truncate(v, 10))
	if err != nil || n < 0 {
		return 0
	}
	return min(n-n%pickerLimit, pickerMaxOffset)
}

// listPatients shows one page of the tenant's roster, in the order of a
// search (family name, given name, id), to a clinician who searched for
// nothing. The tenant's FHIR server is not listed: a search there names
// what to look for.
func (s *Server) listPatients(w http.ResponseWriter, r *http.Request, st *signInStep, q storage.PatientQuery, offset int) error {
	// One more than a page tells whether there is another.
	q.Limit, q.Offset = pickerLimit+1, offset
	found, err := s.store.SearchPatients(r.Context(), st.t.ID, q)
	if err != nil {
		return fmt.Errorf("list patients: %w", err)
	}
	page := patientPage{Searched: true, Listing: true, HasPrev: offset > 0, Prev: max(offset-pickerLimit, 0)}
	if len(found) > pickerLimit {
		found, page.Next = found[:pickerLimit], offset+pickerLimit
		if page.Next > pickerMaxOffset {
			page.Next = 0
		}
	}
	for _, pt := range found {
		page.Results = append(page.Results, describePatient(pt))
	}
	if len(found) > 0 {
		page.First, page.Last = offset+1, offset+len(found)
	}
	return s.renderPatients(w, r, http.StatusOK, st.t, st.a, st.u, st.tk, st.csrf, page)
}

// remoteSearchError is a failure of the tenant's FHIR server, as opposed
// to the patient not being there.
type remoteSearchError struct{ err error }

func (e *remoteSearchError) Error() string { return "FHIR patient search: " + e.err.Error() }
func (e *remoteSearchError) Unwrap() error { return e.err }

// lookupPatient finds a patient by id in the tenant's roster and, failing
// that, on the tenant's FHIR server when one is configured for search, so a
// chosen id is always one the organization really holds. The roster wins
// when both know the id.
func (s *Server) lookupPatient(ctx context.Context, t storage.Tenant, id string) (storage.Patient, error) {
	pt, err := s.store.GetPatient(ctx, t.ID, id)
	if !errors.Is(err, storage.ErrNotFound) {
		return pt, err
	}
	searcher, serr := s.patientSearch.For(t)
	if errors.Is(serr, fhirsearch.ErrNotConfigured) {
		return storage.Patient{}, err
	}
	if serr != nil {
		return storage.Patient{}, &remoteSearchError{err: serr}
	}
	pt, err = searcher.Get(ctx, id)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return storage.Patient{}, &remoteSearchError{err: err}
	}
	return pt, err
}

func describePatient(pt storage.Patient) patientChoice {
	name := strings.TrimSpace(pt.Given + " " + pt.Family)
	if name == "" {
		name = "Patient " + pt.ID
	}
	var ids []string
	for _, id := range pt.Identifiers {
		ids = append(ids, id.Value)
	}
	return patientChoice{ID: pt.ID, Name: name, BirthDate: pt.BirthDate, Gender: pt.Gender, Identifiers: strings.Join(ids, ", ")}
}

func (s *Server) renderRole(w http.ResponseWriter, r *http.Request, t storage.Tenant, a *authzRequest, u storage.User, tk loginTicket, csrf string) error {
	ticket, err := s.signTicket(t.ID, tk)
	if err != nil {
		return err
	}
	s.renderFlow(w, r, http.StatusOK, "role", rolePage{stepPage: s.newStepPage(t, a, u, "role", csrf, ticket), Profiles: u.Profiles},
		a.params.Get("redirect_uri"))
	return nil
}

func (s *Server) renderPatients(w http.ResponseWriter, r *http.Request, status int, t storage.Tenant, a *authzRequest,
	u storage.User, tk loginTicket, csrf string, page patientPage) error {
	ticket, err := s.signTicket(t.ID, tk)
	if err != nil {
		return err
	}
	acting, _ := findProfile(u.Profiles, tk.Role)
	page.stepPage, page.Acting, page.ActingAs = s.newStepPage(t, a, u, "patient", csrf, ticket), acting, actingAs(acting)
	s.renderFlow(w, r, status, "patient", page, a.params.Get("redirect_uri"))
	return nil
}
