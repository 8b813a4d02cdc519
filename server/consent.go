package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/smartauth/smartauth/server/oauth"
	"github.com/smartauth/smartauth/server/sessions"
	"github.com/smartauth/smartauth/server/smart"
	"github.com/smartauth/smartauth/storage"
)

// rememberConsentFor is how long a remembered consent spares the person the
// consent page for one app; after that they are asked again.
const rememberConsentFor = 90 * 24 * time.Hour

// consentPage is what templates/consent.html shows.
type consentPage struct {
	stepPage
	FHIRBase string
	Acting   storage.Profile
	// ActingAs names Acting, as actingAs does.
	ActingAs string
	// Patient and Encounter are the context the app will get, if any.
	Patient   *patientChoice
	Encounter string
	EHRLaunch bool
	Groups    []scopeGroup
	// Refused are requested scopes that cannot be given for want of context.
	Refused []smart.Refusal
}

// scopeGroup is the scopes of one kind of access, shown under one heading.
type scopeGroup struct {
	Title  string
	Scopes []scopeChoice
}

// scopeChoice is one requested scope on the consent page. Essential scopes
// are shown without a choice: withholding them means denying the request.
type scopeChoice struct {
	ID          string
	Name        string
	Description string
	Essential   bool
}

// available is the context a grant can carry: the EHR's launch context, or
// the patient chosen at a standalone launch, and the role of the acting
// profile, which limits the resource scopes (see smart.Contextual).
func available(a *authzRequest, tk loginTicket, profile storage.Profile) smart.Available {
	av := smart.Available{Role: smart.RoleOf(profile.FHIRUser)}
	if a.launch != nil {
		av.EHRLaunch = true
		av.Patient = a.launch.Context.Patient != ""
		av.Encounter = a.launch.Context.Encounter != ""
		return av
	}
	av.Patient = tk.Patient != ""
	return av
}

// askConsent shows the consent page, or issues the code straight away when
// the person remembered a consent for this app that covers every scope it
// asks for now (and the app did not ask for prompt=consent).
func (s *Server) askConsent(w http.ResponseWriter, r *http.Request, t storage.Tenant, p *oauth.Provider, a *authzRequest,
	u storage.User, tk loginTicket, profile storage.Profile, csrf string) error {
	if !slices.Contains(strings.Fields(a.params.Get("prompt")), "consent") {
		c, err := s.store.GetConsent(r.Context(), t.ID, u.ID, a.client.ID, s.now())
		switch {
		case err == nil:
			if _, dropped := smart.Grant(a.ar.GetRequestedScopes(), c.Scopes, c.Scopes); len(dropped) == 0 {
				return s.grant(w, r, t, p, a, u, tk, profile, c.Scopes, consentRemembered)
			}
		case !errors.Is(err, storage.ErrNotFound):
			return fmt.Errorf("load remembered consent: %w", err)
		}
	}
	ticket, err := s.signTicket(t.ID, tk)
	if err != nil {
		return err
	}
	page, err := s.consentPage(r.Context(), t, a, tk, profile)
	if err != nil {
		return err
	}
	page.stepPage = s.newStepPage(t, a, u, "consent", csrf, ticket)
	s.renderFlow(w, r, http.StatusOK, "consent", page, a.params.Get("redirect_uri"))
	return nil
}

func (s *Server) consentPage(ctx context.Context, t storage.Tenant, a *authzRequest, tk loginTicket, profile storage.Profile) (consentPage, error) {
	page := consentPage{FHIRBase: a.aud, Acting: profile, ActingAs: actingAs(profile), EHRLaunch: a.launch != nil}
	requested := a.ar.GetRequestedScopes()
	mayHave, _ := smart.Grant(requested, a.client.Scopes, requested)
	kept, refused := smart.Contextual(mayHave, available(a, tk, profile))
	page.Groups, page.Refused = groupScopes(kept), refused

	patientID := tk.Patient
	if a.launch != nil {
		patientID, page.Encounter = a.launch.Context.Patient, a.launch.Context.Encounter
	}
	if patientID != "" {
		pt, err := s.lookupPatient(ctx, t, patientID)
		var remote *remoteSearchError
		switch {
		case err == nil:
			c := describePatient(pt)
			page.Patient = &c
		case errors.Is(err, storage.ErrNotFound) || errors.As(err, &remote):
			// An EHR may launch for a patient the roster does not hold, and
			// the name is only a courtesy: the id is what the app gets.
			page.Patient = &patientChoice{ID: patientID, Name: "Patient " + patientID}
		default:
			return consentPage{}, fmt.Errorf("load patient for consent: %w", err)
		}
		page.describePatientContext()
	}
	return page, nil
}

// describePatientContext says, for launch/patient, which patient the app
// will learn of: by now the EHR has named one, or the person has chosen one.
func (page *consentPage) describePatientContext() {
	how := "the patient you chose"
	if page.EHRLaunch {
		how = "the patient the health record opened it for"
	}
	for g := range page.Groups {
		for i, c := range page.Groups[g].Scopes {
			if sc, err := smart.Parse(c.Name); err == nil && sc.Kind == smart.KindLaunchContext && sc.ResourceType == "patient" && sc.Role == "" {
				page.Groups[g].Scopes[i].Description = "Know " + how + ": " + page.Patient.Name
			}
		}
	}
}

// groupScopes arranges scopes under headings: who you are, what the app
// opens with, each kind of record, how long access lasts, anything else.
func groupScopes(scopes []string) []scopeGroup {
	const (
		identity = "Who you are"
		launch   = "What the app opens with"
		duration = "How long the app keeps access"
		other    = "Other permissions"
	)
	byTitle := map[string]*scopeGroup{}
	var resources []string
	for i, raw := range scopes {
		sc, err := smart.Parse(raw)
		title := other
		choice := scopeChoice{ID: fmt.Sprintf("scope-%d", i), Name: raw, Essential: smart.Essential(raw)}
		if err == nil {
			choice.Description = smart.Describe(sc)
			switch sc.Kind {
			case smart.KindOpenID, smart.KindFHIRUser, smart.KindProfile:
				title = identity
			case smart.KindLaunch, smart.KindLaunchContext:
				title = launch
			case smart.KindOfflineAccess, smart.KindOnlineAccess:
				title = duration
			case smart.KindResource:
				title = sc.ResourceType + " records"
				if sc.ResourceType == "*" {
					title = "All kinds of records"
				}
				if !slices.Contains(resources, title) {
					resources = append(resources, title)
				}
			}
		}
		g, ok := byTitle[title]
		if !ok {
			g = &scopeGroup{Title: title}
			byTitle[title] = g
		}
		g.Scopes = append(g.Scopes, choice)
	}
	var out []scopeGroup
	for _, title := range slices.Concat([]string{identity, launch}, resources, []string{duration, other}) {
		if g, ok := byTitle[title]; ok {
			out = append(out, *g)
		}
	}
	return out
}

// consent records the person's decision: a denial goes back to the app as
// access_denied, an approval as an authorization code for what they allowed.
func (s *Server) consent(w http.ResponseWriter, r *http.Request) error {
	st, err := s.stepForm(w, r)
	if st == nil {
		return err
	}
	t, a, u := st.t, st.a, st.u
	switch r.PostForm.Get("decision") {
	case "deny":
		s.audit(r, storage.AuditEvent{TenantID: t.ID, Type: "consent.deny", Outcome: "success", ClientID: a.client.ID, Subject: u.ID})
		return s.redirectAuthzError(w, r, t.ID, &authzRedirectError{redirectURI: a.ar.GetRedirectURI().String(),
			state: a.ar.GetState(), err: fosite.ErrAccessDenied.WithHint("The user denied the request.")})
	case "allow":
	default:
		return browserError(http.StatusBadRequest, "Choose Allow or Deny.")
	}
	// The earlier steps must all have been taken; a ticket that skipped one
	// was not made by this server's pages.
	if !st.tk.RoleChosen || needsPatientChoice(a, st.tk) {
		return errTicket
	}
	profile, ok := findProfile(u.Profiles, st.tk.Role)
	if !ok {
		return errTicket
	}
	how := consentGiven
	if r.PostForm.Get("remember") == "yes" {
		how = consentGivenAndRemembered
	}
	return s.grant(w, r, t, st.p, a, u, st.tk, profile, approvedScopes(a.ar.GetRequestedScopes(), r.PostForm["scope"]), how)
}

// approvedScopes are the requested scopes the person left ticked, plus the
// essential ones, which the page shows without a box.
func approvedScopes(requested, ticked []string) []string {
	var out []string
	for _, sc := range requested {
		if smart.Essential(sc) || slices.Contains(ticked, sc) {
			out = append(out, sc)
		}
	}
	return out
}

// consentHow is how the person's approval came about.
type consentHow int

const (
	consentGiven consentHow = iota
	consentGivenAndRemembered
	consentRemembered
)

// grant issues the authorization code for what may be granted: requested,
// allowed by the client's registration, approved by the person and backed
// by the launch context. The EHR launch is consumed here, once.
func (s *Server) grant(w http.ResponseWriter, r *http.Request, t storage.Tenant, p *oauth.Provider, a *authzRequest,
	u storage.User, tk loginTicket, profile storage.Profile, approved []string, how consentHow) error {
	ctx := r.Context()
	granted, _ := smart.Grant(a.ar.GetRequestedScopes(), a.client.Scopes, approved)
	kept, _ := smart.Contextual(granted, available(a, tk, profile))
	for _, sc := range kept {
		a.ar.GrantScope(sc)
	}
	a.ar.GrantAudience(a.aud)
	scopes := a.ar.GetGrantedScopes()

	sess := oauth.NewSession(t.ID)
	sess.Subject = u.ID
	sess.ClientID = a.client.ID
	authTime := time.Unix(tk.AuthTime, 0).UTC()
	sess.AuthTime = authTime
	// fhirUser reaches the tokens only when the person granted that scope.
	if scopes.Has("fhirUser") {
		sess.SMART.FHIRUser = fhirUserURL(a.aud, profile)
	}
	if scopes.Has("online_access") {
		// The refresh token lives as long as the sign-in session: it must
		// still be there now, and every refresh checks it again.
		if err := s.sessions.Resume(ctx, t.ID, tk.SessionID); errors.Is(err, sessions.ErrEnded) {
			return errTicket
		} else if err != nil {
			return err
		}
		sess.SessionID = tk.SessionID
	}
	launchKind := "none"
	switch {
	case a.launch != nil:
		launchKind = "ehr"
		lc := a.launch.Context
		sess.SMART.Patient, sess.SMART.Encounter = lc.Patient, lc.Encounter
		sess.SMART.NeedPatientBanner, sess.SMART.SmartStyleURL, sess.SMART.Intent = lc.NeedPatientBanner, lc.SmartStyleURL, lc.Intent
		if len(lc.FHIRContext) > 0 {
			sess.SMART.FHIRContext = json.RawMessage(lc.FHIRContext)
		}
	case scopes.Has("launch/patient"):
		launchKind = "standalone"
		// An app opened on its own runs outside any EHR chrome, so it must
		// show which patient it is looking at.
		banner := true
		sess.SMART.Patient, sess.SMART.NeedPatientBanner = tk.Patient, &banner
	}
	claims := sess.IDTokenClaims()
	claims.Subject = u.ID
	claims.AuthTime = authTime
	// The request is checked afresh on every form post, so it was in effect
	// made when the person signed in; this satisfies prompt=login and max_age.
	claims.RequestedAt = authTime
	if sess.SMART.FHIRUser != "" {
		claims.Extra = map[string]any{"fhirUser": sess.SMART.FHIRUser}
	}

	switch err := s.store.RecordAssertionJTI(ctx, t.ID, a.client.ID, tk.useKey(), time.Unix(tk.Expiry, 0)); {
	case errors.Is(err, storage.ErrAlreadyExists):
		return errTicketUsed
	case err != nil:
		return fmt.Errorf("record use of sign-in: %w", err)
	}
	if a.launch != nil {
		if _, err := s.store.ConsumeLaunch(ctx, t.ID, a.params.Get("launch"), s.now()); err != nil {
			if errors.Is(err, storage.ErrConsumed) || errors.Is(err, storage.ErrExpired) || errors.Is(err, storage.ErrNotFound) {
				return s.redirectAuthzError(w, r, t.ID, &authzRedirectError{redirectURI: a.ar.GetRedirectURI().String(), state: a.ar.GetState(),
					err: fosite.ErrInvalidRequest.WithHint("The launch has already been used or has expired. Open the app from the health record again.")})
			}
			return fmt.Errorf("consume launch: %w", err)
		}
	}
	if how == consentGivenAndRemembered {
		now := s.now().UTC()
		if err := s.store.SaveConsent(ctx, storage.Consent{TenantID: t.ID, UserID: u.ID, ClientID: a.client.ID,
			Scopes: approved, CreatedAt: now, ExpiresAt: now.Add(rememberConsentFor)}); err != nil {
			return fmt.Errorf("remember consent: %w", err)
		}
	}
	resp, err := p.NewAuthorizeResponse(ctx, a.ar, sess)
	if err != nil {
		return s.authzFailed(w, r, t.ID, &authzRedirectError{redirectURI: a.ar.GetRedirectURI().String(), state: a.ar.GetState(), err: err})
	}
	resp.AddParameter("iss", s.Issuer(t.ID))
	scope := strings.Join(scopes, " ")
	s.audit(r, storage.AuditEvent{TenantID: t.ID, Type: "consent.grant", Outcome: "success", ClientID: a.client.ID, Subject: u.ID,
		Details: map[string]string{"scope": scope, "requested_scope": strings.Join(a.ar.GetRequestedScopes(), " "),
			"fhir_user": sess.SMART.FHIRUser, "patient": sess.SMART.Patient, "encounter": sess.SMART.Encounter,
			"launch": launchKind, "consent": [...]string{"given", "given_and_remembered", "remembered"}[how]}})
	s.audit(r, storage.AuditEvent{TenantID: t.ID, Type: "authorize.code", Outcome: "success", ClientID: a.client.ID, Subject: u.ID,
		Details: map[string]string{"scope": scope, "aud": a.aud}})
	p.WriteAuthorizeResponse(ctx, w, a.ar, resp)
	return nil
}

// fhirUserURL makes a profile's relative reference absolute against the FHIR
// server the app named, so the app can fetch it as it is.
func fhirUserURL(base string, p storage.Profile) string {
	if p.FHIRUser == "" {
		return ""
	}
	return strings.TrimSuffix(base, "/") + "/" + p.FHIRUser
}
