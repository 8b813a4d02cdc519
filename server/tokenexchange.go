package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/ory/fosite"

	"github.com/smartauth/smartauth/federation"
	"github.com/smartauth/smartauth/federation/oidc"
	"github.com/smartauth/smartauth/server/oauth"
	"github.com/smartauth/smartauth/server/smart"
	"github.com/smartauth/smartauth/storage"
)

// Token exchange (RFC 8693): a confidential client registered for the grant
// presents an ID token or JWT access token that one of the tenant's identity
// providers issued, and receives a smartauth access token for the user that
// upstream identity is linked to, with the context its claims map to. The
// grant itself is a fosite handler (server/oauth/exchange.go), so the token
// is stored, introspected and revoked like any other; this file decides
// whom and what it is for.

// exchangeAudit carries what the exchange learned out of fosite, for the
// audit event: never the token itself.
type exchangeAudit struct {
	provider string
	subject  string
	reason   string
	detail   string
}

const exchangeAuditKey ctxKey = iota + 200

func withExchangeAudit(ctx context.Context) (context.Context, *exchangeAudit) {
	a := &exchangeAudit{}
	return context.WithValue(ctx, exchangeAuditKey, a), a
}

func exchangeAuditFrom(ctx context.Context) *exchangeAudit {
	if a, ok := ctx.Value(exchangeAuditKey).(*exchangeAudit); ok {
		return a
	}
	return &exchangeAudit{}
}

// subjectTokenAlgs are the algorithms an upstream token may be signed with
// when only its issuer is read; go-oidc checks the signature properly.
var subjectTokenAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}

// exchangeSubject is the oauth.ExchangeFunc: it verifies the subject token
// at the provider that issued it, maps its claims, finds the linked user and
// fills in the grant.
func (s *Server) exchangeSubject(ctx context.Context, t storage.Tenant, req fosite.AccessRequester) error {
	audit := exchangeAuditFrom(ctx)
	refuse := func(reason, detail string) error {
		audit.reason, audit.detail = reason, truncate(detail, 200)
		return fosite.ErrInvalidGrant.WithHint("The subject token was not accepted.").WithDebug(reason)
	}
	form := req.GetRequestForm()
	raw, tokenType := form.Get("subject_token"), form.Get("subject_token_type")
	switch {
	case raw == "" || tokenType == "":
		audit.reason = "missing_parameter"
		return fosite.ErrInvalidRequest.WithHint("subject_token and subject_token_type are required.")
	case tokenType != oidc.TokenTypeIDToken && tokenType != oidc.TokenTypeJWT:
		audit.reason = "unsupported_token_type"
		return fosite.ErrInvalidRequest.WithHintf("subject_token_type must be %s or %s.", oidc.TokenTypeIDToken, oidc.TokenTypeJWT)
	case form.Has("actor_token") || form.Has("actor_token_type"):
		// Delegation would need a second identity in the token; only impersonation is offered.
		audit.reason = "actor_token"
		return fosite.ErrInvalidRequest.WithHint("actor_token is not supported.")
	case form.Has("requested_token_type") && form.Get("requested_token_type") != oauth.TokenTypeAccessToken:
		audit.reason = "unsupported_requested_token_type"
		return fosite.ErrInvalidRequest.WithHintf("requested_token_type must be %s.", oauth.TokenTypeAccessToken)
	}

	// The issuer is read without verification only to choose the provider
	// whose keys then verify the whole token.
	iss, err := unverifiedIssuer(raw)
	if err != nil {
		return refuse(string(federation.ReasonMalformedToken), err.Error())
	}
	idp, c, err := s.providerByIssuer(ctx, t.ID, iss)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	if c == nil {
		return refuse("unknown_issuer", iss)
	}
	audit.provider = idp.ID
	id, err := c.Verify(ctx, raw, tokenType)
	var refusal *federation.RefusalError
	if errors.As(err, &refusal) && refusal.Reason == federation.ReasonUnavailable {
		audit.reason, audit.detail = string(refusal.Reason), truncate(refusal.Detail, 200)
		return fosite.ErrTemporarilyUnavailable.WithHint("The identity provider could not be reached.").WithWrap(err)
	}
	if errors.As(err, &refusal) {
		return refuse(string(refusal.Reason), refusal.Detail)
	}
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	mapped, err := federation.MapClaims(t.ID, idp.ClaimMapping, id.Claims)
	if errors.As(err, &refusal) {
		return refuse(string(refusal.Reason), refusal.Detail)
	}
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	// Only an identity already linked to a user is accepted: an exchange is
	// a client's act, not the person's sign-in, so it neither links by
	// email nor provisions an account.
	u, linked, reason, err := s.linkedUser(ctx, t.ID, id)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	if !linked {
		reason = "no_account"
	}
	if reason != "" {
		return refuse(reason, "")
	}
	audit.subject = u.ID

	auds, err := exchangeAudiences(t, req)
	if err != nil {
		audit.reason = "invalid_target"
		return err
	}
	// The user's stored profiles decide whom the token speaks for, as at a
	// browser sign-in; a claim may only choose among them, since some
	// providers let people edit their own attributes.
	profile, ok := exchangeProfile(u, mapped)
	if !ok {
		return refuse("profile_mismatch", mapped.FHIRUser)
	}
	patient, _ := ownPatient(profile)
	scopes, err := exchangeScopes(req, patient, profile)
	if err != nil {
		audit.reason = "invalid_scope"
		return err
	}
	for _, sc := range scopes {
		req.GrantScope(sc)
	}
	for _, a := range auds {
		req.GrantAudience(a)
	}
	sess, ok := req.GetSession().(*oauth.Session)
	if !ok {
		return fosite.ErrServerError.WithDebugf("unexpected session type %T", req.GetSession())
	}
	sess.Subject = u.ID
	sess.ClientID = req.GetClient().GetID()
	// The token speaks for the upstream one, so it ends no later; the
	// claim is trustworthy now that the token is verified.
	if exp, ok := id.Claims["exp"].(float64); ok {
		sess.SetExpiresAt(fosite.AccessToken, time.Unix(int64(exp), 0).UTC())
	}
	if slices.ContainsFunc(scopes, isPatientScope) {
		sess.SMART.Patient = patient
	}
	if slices.Contains(scopes, "fhirUser") && len(auds) > 0 {
		sess.SMART.FHIRUser = fhirUserURL(auds[0], profile)
	}
	return nil
}

// unverifiedIssuer reads the iss claim of a signed JWT without checking it.
func unverifiedIssuer(raw string) (string, error) {
	tok, err := josejwt.ParseSigned(raw, subjectTokenAlgs)
	if err != nil {
		return "", fmt.Errorf("not a signed JWT: %w", err)
	}
	var claims josejwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return "", fmt.Errorf("unreadable claims: %w", err)
	}
	if claims.Issuer == "" {
		return "", errors.New("no iss claim")
	}
	return claims.Issuer, nil
}

// providerByIssuer finds the tenant's identity provider whose issuer is
// iss, compared exactly as go-oidc does; a nil connector means none is.
func (s *Server) providerByIssuer(ctx context.Context, tenantID, iss string) (storage.IdentityProvider, *oidc.Connector, error) {
	idps, err := s.store.ListIdentityProviders(ctx, tenantID)
	if err != nil {
		return storage.IdentityProvider{}, nil, fmt.Errorf("list identity providers: %w", err)
	}
	for _, p := range idps {
		c, err := s.connector(p)
		if err != nil {
			// One misconfigured provider must not stop the others' tokens.
			continue
		}
		if c.Issuer() == iss {
			return p, c, nil
		}
	}
	return storage.IdentityProvider{}, nil, nil
}

// exchangeAudiences are the FHIR servers the token is for: those named in
// resource (RFC 8707) or audience (RFC 8693), each of which must be one of
// the tenant's, else the tenant's first.
func exchangeAudiences(t storage.Tenant, req fosite.AccessRequester) ([]string, error) {
	var out []string
	for _, a := range append(req.GetRequestForm()["resource"], req.GetRequestedAudience()...) {
		if !slices.Contains(t.FHIRBaseURLs, a) {
			return nil, oauth.ErrInvalidTarget.WithHintf("%q is not a FHIR server of this tenant.", a)
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 && len(t.FHIRBaseURLs) > 0 {
		out = t.FHIRBaseURLs[:1]
	}
	return out, nil
}

// exchangeProfile is the stored profile the token speaks for: the one the
// claims name, which the user must hold, else the user's only profile; false
// when the claims name a profile the user does not hold.
func exchangeProfile(u storage.User, mapped federation.Mapped) (storage.Profile, bool) {
	if mapped.FHIRUser != "" {
		for _, p := range u.Profiles {
			if p.FHIRUser == mapped.FHIRUser {
				return p, true
			}
		}
		return storage.Profile{}, false
	}
	if len(u.Profiles) == 1 {
		return u.Profiles[0], true
	}
	return storage.Profile{}, true
}

// isPatientScope reports whether a granted scope reaches a patient's
// compartment, so the token must say which patient.
func isPatientScope(raw string) bool {
	sc, err := smart.Parse(raw)
	return err == nil && (sc.Kind == smart.KindResource && sc.Context == "patient" ||
		sc.Kind == smart.KindLaunchContext && sc.ResourceType == "patient")
}

// exchangeScopes narrows the requested scopes (the client's registered ones
// when none are asked for) to what the client may have and the context can
// back. offline_access and online_access are dropped: no refresh token is
// issued. Nothing left is invalid_scope.
func exchangeScopes(req fosite.AccessRequester, patient string, profile storage.Profile) ([]string, error) {
	allowed := []string(req.GetClient().GetScopes())
	requested := []string(req.GetRequestedScopes())
	if len(requested) == 0 {
		requested = allowed
	}
	granted, _ := smart.Grant(requested, allowed, requested)
	granted = slices.DeleteFunc(granted, func(sc string) bool { return sc == "offline_access" || sc == "online_access" })
	kept, _ := smart.Contextual(granted, smart.Available{Patient: patient != "", Role: smart.RoleOf(profile.FHIRUser)})
	if len(kept) == 0 {
		return nil, fosite.ErrInvalidScope.WithHintf("None of the scopes %q can be granted to this client for this subject.", strings.Join(requested, " "))
	}
	return kept, nil
}
