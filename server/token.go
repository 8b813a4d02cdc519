package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/ory/fosite"

	"github.com/smartauth/smartauth/server/oauth"
	"github.com/smartauth/smartauth/server/sessions"
	"github.com/smartauth/smartauth/server/smart"
	"github.com/smartauth/smartauth/storage"
)

// grantTypes are the grants the token endpoint knows; anything else is
// unsupported_grant_type (RFC 6749 §5.2), which fosite would call invalid_request.
var grantTypes = []string{"authorization_code", "refresh_token", "client_credentials", oauth.GrantTypeTokenExchange}

// token is the token endpoint (RFC 6749 §3.2) of a tenant.
func (s *Server) token(w http.ResponseWriter, r *http.Request) error {
	t, p, err := s.tenantProvider(r)
	if err != nil {
		return err
	}
	return s.issueToken(w, r, t, p, grantTypes)
}

// issueToken answers a token request for realm t, whose provider is p,
// offering only the grants in allowed: the operator realm's endpoint serves
// client_credentials alone.
func (s *Server) issueToken(w http.ResponseWriter, r *http.Request, t storage.Tenant, p *oauth.Provider, allowed []string) error {
	ctx, reuse := oauth.WatchReuse(r.Context())
	if err := r.ParseForm(); err != nil {
		s.writeAccessError(ctx, w, r, p, fosite.NewAccessRequest(nil), fosite.ErrInvalidRequest.WithHint("The request body could not be read as a form."))
		return nil
	}
	if err := checkTokenParams(r.PostForm); err != nil {
		s.writeAccessError(ctx, w, r, p, fosite.NewAccessRequest(nil), err)
		return nil
	}
	if gt := r.PostForm.Get("grant_type"); gt != "" && !slices.Contains(allowed, gt) {
		s.writeAccessError(ctx, w, r, p, fosite.NewAccessRequest(nil), fosite.ErrUnsupportedGrantType.WithHintf("The grant type %q is not supported.", gt))
		return nil
	}
	if err := s.namePublicRefreshClient(ctx, t.ID, p, r); err != nil {
		return err
	}
	exchange := &exchangeAudit{}
	if r.PostForm.Get("grant_type") == oauth.GrantTypeTokenExchange {
		ctx = oauth.WithExchange(ctx, s.exchangeSubject)
		ctx, exchange = withExchangeAudit(ctx)
	}
	sess := oauth.NewSession(t.ID)
	ar, err := p.NewAccessRequest(ctx, r, sess)
	if err != nil {
		err = reuseError(ar, err)
		if verifierRefused(ar, err) && reuse.Kind == "" {
			if rerr := p.Store.VerifierRefused(ctx, ar.GetID()); rerr != nil {
				err = rerr
			}
		}
		setChallenge(w, err)
		s.tokenFailed(r, t.ID, ar, err, reuse, exchange)
		s.writeAccessError(ctx, w, r, p, ar, err)
		return nil
	}
	if ar.GetGrantTypes().ExactOne("refresh_token") {
		if err := s.checkOnlineSession(ctx, t.ID, ar); err != nil {
			s.tokenFailed(r, t.ID, ar, err, reuse, exchange)
			s.writeAccessError(ctx, w, r, p, ar, err)
			return nil
		}
		if err := narrowRefreshScope(ar, r.PostForm.Get("scope")); err != nil {
			s.tokenFailed(r, t.ID, ar, err, reuse, exchange)
			s.writeAccessError(ctx, w, r, p, ar, err)
			return nil
		}
	}
	if ar.GetGrantTypes().ExactOne("client_credentials") {
		// A backend service acts as itself, with every scope it asked for
		// that its registration allows (fosite checked that), for the
		// tenant's FHIR servers.
		sess.Subject = ar.GetClient().GetID()
		sess.ClientID = ar.GetClient().GetID()
		sess.Backend = true
		if err := s.grantBackendAccess(t, ar); err != nil {
			s.tokenFailed(r, t.ID, ar, err, reuse, exchange)
			s.writeAccessError(ctx, w, r, p, ar, err)
			return nil
		}
	}
	resp, err := p.NewAccessResponse(ctx, ar)
	if err != nil {
		err = reuseError(ar, err)
		s.tokenFailed(r, t.ID, ar, err, reuse, exchange)
		s.writeAccessError(ctx, w, r, p, ar, err)
		return nil
	}
	if granted, ok := ar.GetSession().(*oauth.Session); ok {
		for k, v := range granted.SMART.ResponseFields() {
			resp.SetExtra(k, v)
		}
	}
	event := "token.issue"
	details := map[string]string{"grant_type": r.PostForm.Get("grant_type"), "scope": strings.Join(ar.GetGrantedScopes(), " ")}
	switch {
	case ar.GetGrantTypes().ExactOne("refresh_token"):
		event = "token.refresh"
	case ar.GetGrantTypes().ExactOne(oauth.GrantTypeTokenExchange):
		event = "token.exchange"
		details["provider"] = exchange.provider
		details["aud"] = strings.Join(ar.GetGrantedAudience(), " ")
		if granted, ok := ar.GetSession().(*oauth.Session); ok {
			details["patient"], details["fhir_user"] = granted.SMART.Patient, granted.SMART.FHIRUser
		}
	}
	// Recorded before the answer is written: a response larger than the
	// server's buffer would start going out before the handler returned.
	s.audit(r, storage.AuditEvent{TenantID: t.ID, Type: event, Outcome: "success", ClientID: ar.GetClient().GetID(),
		Subject: ar.GetSession().GetSubject(), Details: details})
	// The grant type is one of the allowed few: any other was refused above.
	s.metrics.TokenIssued(t.ID, details["grant_type"])
	p.WriteAccessResponse(ctx, w, ar, resp)
	return nil
}

// namePublicRefreshClient fills in client_id for a public client's refresh
// request that leaves it out. SMART App Launch 2.2 lists no client_id for
// refresh requests and RFC 6749 §6 asks a public client for no
// authentication, so apps (the SMART JavaScript client among them) send only
// the refresh token; fosite needs to know the client. Only a public client
// is named this way: a confidential client must still authenticate, and a
// token nobody holds is left for fosite to refuse.
func (s *Server) namePublicRefreshClient(ctx context.Context, tenantID string, p *oauth.Provider, r *http.Request) error {
	form := r.PostForm
	if form.Get("grant_type") != "refresh_token" || form.Has("client_id") || form.Has("client_assertion") ||
		r.Header.Get("Authorization") != "" || form.Get("refresh_token") == "" {
		return nil
	}
	rec, err := s.store.GetToken(ctx, tenantID, storage.KindRefreshToken, p.RefreshTokenSignature(ctx, form.Get("refresh_token")))
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find the client of a refresh token: %w", err)
	}
	c, err := s.store.GetClient(ctx, tenantID, rec.ClientID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load the client of a refresh token: %w", err)
	}
	if c.Type == storage.ClientPublic {
		form.Set("client_id", c.ID)
		r.Form.Set("client_id", c.ID)
	}
	return nil
}

// checkOnlineSession refuses to refresh an online_access grant whose
// browser session has ended (SMART App Launch 2.2 §Scopes for requesting a
// refresh token); a grant that also holds offline_access outlives the
// session. A refresh counts as the person's activity and keeps the
// session from going idle, up to its absolute time-out.
func (s *Server) checkOnlineSession(ctx context.Context, tenantID string, ar fosite.AccessRequester) error {
	granted := ar.GetGrantedScopes()
	if !granted.Has("online_access") || granted.Has("offline_access") {
		return nil
	}
	sess, ok := ar.GetSession().(*oauth.Session)
	if !ok {
		return fosite.ErrServerError.WithDebugf("unexpected session type %T", ar.GetSession())
	}
	err := s.sessions.Resume(ctx, tenantID, sess.SessionID)
	if errors.Is(err, sessions.ErrEnded) {
		return fosite.ErrInvalidGrant.WithHint("The sign-in session this online_access grant belongs to has ended; the user must sign in again.")
	}
	if err != nil {
		return fosite.ErrServerError.WithWrap(err).WithDebug("resume session")
	}
	return nil
}

// grantBackendAccess grants a client_credentials request every scope it
// asked for (fosite checked the registration allows them) and its audience,
// refusing with invalid_scope a scope that needs a person or a patient.
// A token for the admin API is for the admin API alone: it carries no other
// scope and is not addressed to the FHIR servers, so a FHIR server that sees
// a token cannot replay it against the admin API, nor the reverse.
func (s *Server) grantBackendAccess(t storage.Tenant, ar fosite.AccessRequester) error {
	scopes := ar.GetRequestedScopes()
	if slices.Contains(scopes, AdminScope) {
		if len(scopes) != 1 {
			return fosite.ErrInvalidScope.WithHint("The admin scope must be requested alone.")
		}
		ar.GrantScope(AdminScope)
		ar.GrantAudience(s.adminAPIAudience())
		return nil
	}
	// Registration keeps patient, user and launch scopes away from a
	// client that only has client_credentials; one that also signs people
	// in may hold them, but never through this grant.
	if _, refused := smart.ForBackend(scopes); len(refused) > 0 {
		return fosite.ErrInvalidScope.WithHintf("The scope %q cannot be granted to a backend service: %s.", refused[0].Scope, refused[0].Reason)
	}
	for _, sc := range scopes {
		ar.GrantScope(sc)
	}
	for _, aud := range t.FHIRBaseURLs {
		ar.GrantAudience(aud)
	}
	return nil
}

// narrowRefreshScope applies a refresh request's scope parameter, which
// fosite ignores: it may narrow the grant, never widen it (RFC 6749 §6).
func narrowRefreshScope(ar fosite.AccessRequester, scope string) error {
	requested := strings.Fields(scope)
	if len(requested) == 0 {
		return nil
	}
	granted := ar.GetGrantedScopes()
	for _, sc := range requested {
		if !slices.Contains(granted, sc) {
			return fosite.ErrInvalidScope.WithHintf("The scope %q was not granted to this refresh token.", sc)
		}
	}
	req, ok := ar.(*fosite.AccessRequest)
	if !ok {
		return fosite.ErrServerError.WithDebugf("unexpected access request type %T", ar)
	}
	sess, ok := ar.GetSession().(*oauth.Session)
	if !ok {
		return fosite.ErrServerError.WithDebugf("unexpected session type %T", ar.GetSession())
	}
	if sess.RefreshGrant == nil {
		sess.RefreshGrant = &oauth.RefreshGrant{Scope: slices.Clone(granted), FHIRUser: sess.SMART.FHIRUser}
	}
	req.GrantedScope = fosite.Arguments(requested)
	if !slices.Contains(requested, "fhirUser") {
		sess.SMART.FHIRUser = ""
	}
	return nil
}

// reuseError is how a token request that lost a race for its code or
// refresh token is answered. The storage adapter has already revoked the
// grant (RFC 6749 §4.1.2, §10.4) and reported the reuse for the audit;
// fosite calls the lost race a server error, but it is the client's
// credential that was used twice.
func reuseError(ar fosite.AccessRequester, err error) error {
	switch {
	case errors.Is(err, fosite.ErrInvalidatedAuthorizeCode):
		return fosite.ErrInvalidGrant.WithWrap(err).WithHint("The authorization code has already been used.")
	case errors.Is(err, fosite.ErrSerializationFailure) && ar != nil && ar.GetGrantTypes().ExactOne("refresh_token"):
		return fosite.ErrInvalidGrant.WithWrap(err).WithHint("The refresh token was used twice at once; the grant is revoked.")
	}
	return err
}

// verifierRefused reports whether a code redemption was refused for its PKCE
// verifier. fosite checks the verifier in the handler after the code's,
// which sets the request's id to the code's only once the code checked out,
// and says which check failed only in the hint, which for every PKCE
// refusal of fosite v0.49 names PKCE; TestWrongVerifierUsesUpCode notices
// if an upgrade changes that.
func verifierRefused(ar fosite.AccessRequester, err error) bool {
	if ar == nil || !ar.GetGrantTypes().ExactOne("authorization_code") || !errors.Is(err, fosite.ErrInvalidGrant) {
		return false
	}
	return strings.Contains(fosite.ErrorToRFC6749Error(err).HintField, "PKCE")
}

// tokenFailed records a refused token request; code reuse and refresh token
// reuse get their own event types because they signal a stolen credential,
// and a refused token exchange its own with the provider, subject and reason.
func (s *Server) tokenFailed(r *http.Request, tenantID string, ar fosite.AccessRequester, err error, reuse *oauth.Reuse, exchange *exchangeAudit) {
	// The refusal is logged where it is written (writeAccessError).
	rfc := fosite.ErrorToRFC6749Error(oauthError(err))
	e := storage.AuditEvent{TenantID: tenantID, Type: "token.issue", Outcome: "failure",
		Details: map[string]string{"grant_type": r.PostForm.Get("grant_type"), "error": rfc.ErrorField}}
	if ar != nil && ar.GetClient() != nil {
		e.ClientID = ar.GetClient().GetID()
	}
	switch {
	case r.PostForm.Get("grant_type") == oauth.GrantTypeTokenExchange:
		// Recorded even for invalid_client: a public client's refusal
		// happens after client authentication, which recorded nothing.
		e.Type = "token.exchange"
		e.Subject = exchange.subject
		e.Details["provider"], e.Details["reason"], e.Details["detail"] = exchange.provider, exchange.reason, exchange.detail
		if e.Details["reason"] == "" {
			e.Details["reason"] = rfc.ErrorField
		}
	case reuse.Kind == storage.KindAuthorizeCode || errors.Is(err, fosite.ErrInvalidatedAuthorizeCode):
		e.Type = "token.code_reuse"
	case reuse.Kind == storage.KindRefreshToken || errors.Is(err, fosite.ErrInactiveToken):
		e.Type = "token.refresh_reuse"
	case errors.Is(err, fosite.ErrInvalidClient):
		return // recorded by client authentication, which knows more
	}
	s.audit(r, e)
}

// audit appends an event with the request's source address and returns once
// it is stored, so a caller that answers afterwards never answers first. The
// writer groups concurrent events of a tenant into one transaction. A failure
// to record is logged loudly but does not undo what already happened.
func (s *Server) audit(r *http.Request, e storage.AuditEvent) {
	e.Time = s.now().UTC()
	e.SourceIP = clientIP(r)
	// A client hanging up must not cut the wait short: the event is written
	// anyway, and the handler should not run on before it is.
	ctx := context.WithoutCancel(r.Context())
	if err := s.audits.Append(ctx, e); err != nil {
		s.logger(r).Error("audit event not recorded", "type", e.Type, "tenant", e.TenantID, "err", err)
	}
}
