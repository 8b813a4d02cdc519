package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/ory/fosite"
	foauth2 "github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/pkce"

	"github.com/smartauth/smartauth/storage"
)

// Store adapts smartauth's Storage to the fosite storage interfaces for one
// tenant. Binding the tenant here means no fosite call can reach another
// tenant's records.
type Store struct {
	tenant  string
	store   storage.Storage
	clients func(ctx context.Context, id string) (*Client, error)
	now     func() time.Time
}

// The fosite storage interfaces this adapter must satisfy, checked at compile time.
var (
	_ fosite.ClientManager               = (*Store)(nil)
	_ foauth2.CoreStorage                = (*Store)(nil)
	_ foauth2.TokenRevocationStorage     = (*Store)(nil)
	_ pkce.PKCERequestStorage            = (*Store)(nil)
	_ openid.OpenIDConnectRequestStorage = (*Store)(nil)
)

// Reuse notes that a request presented an authorization code already
// redeemed or a refresh token already rotated: a sign of a stolen credential.
// fosite refuses such requests without saying why, so the adapter tells.
// By the time it tells, it has revoked the grant family.
type Reuse struct {
	// Kind is the kind of the reused record; empty when there was no reuse.
	Kind storage.TokenKind
}

type reuseKey struct{}

// WatchReuse returns a context under which the adapter reports reuse in the
// returned Reuse. The token endpoint serves its requests under it: there, and
// only there, reading a used code or refresh token is reuse.
func WatchReuse(ctx context.Context) (context.Context, *Reuse) {
	r := &Reuse{}
	return context.WithValue(ctx, reuseKey{}, r), r
}

// ReuseSeen reports whether, under a context from WatchReuse, the adapter
// has found a code or refresh token presented again.
func ReuseSeen(ctx context.Context) bool {
	r, ok := ctx.Value(reuseKey{}).(*Reuse)
	return ok && r.Kind != ""
}

// revokeTimeout bounds the revocation that follows a detected reuse, which
// runs on after its request has ended.
const revokeTimeout = 10 * time.Second

// reused revokes the grant family of a code or refresh token presented after
// its use, and reports the reuse to a watching token endpoint.
//
// Of two requests presenting one code or refresh token at the same moment,
// the loser finds out in one of two places: it reads the record as used
// (get), or it loses the conditional consume (InvalidateAuthorizeCodeSession,
// RotateRefreshToken); DeletePKCERequestSession says why a code's loser never
// stops short of both. The winner may still be storing its new tokens:
// RevokeRequest leaves a marker under which they are born inactive, so
// whichever of the two finishes first, the family ends revoked.
func (s *Store) reused(ctx context.Context, kind storage.TokenKind, requestID string) error {
	if r, ok := ctx.Value(reuseKey{}).(*Reuse); ok {
		r.Kind = kind
	}
	// The presenter that loses a race is often the rightful app, and may hang
	// up on its failure; the revocation must not go with its request.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
	defer cancel()
	if _, err := s.store.RevokeRequest(ctx, s.tenant, requestID); err != nil {
		return fmt.Errorf("oauth: revoke the grant after reuse: %w", err)
	}
	return nil
}

// storedRequest is a fosite request as kept in storage.Token.Data; the
// client is kept by id and reloaded, so a changed registration applies.
// Empty fields are left out: introspection decodes a record on every call,
// and the smaller it is the less that costs.
type storedRequest struct {
	ID                string     `json:"id"`
	RequestedAt       time.Time  `json:"requested_at"`
	ClientID          string     `json:"client_id"`
	RequestedScope    []string   `json:"requested_scope,omitempty"`
	GrantedScope      []string   `json:"granted_scope,omitempty"`
	RequestedAudience []string   `json:"requested_audience,omitempty"`
	GrantedAudience   []string   `json:"granted_audience,omitempty"`
	Form              url.Values `json:"form,omitempty"`
	// Session is decoded in place into the session fosite passes in, so a
	// record is read in one pass.
	Session fosite.Session `json:"session"`
}

// GetClient returns a client of this tenant.
func (s *Store) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	return s.clients(ctx, id)
}

// ClientAssertionJWTValid is unused: client assertions are checked by
// server/clientauth, which records jtis under a unique key.
func (s *Store) ClientAssertionJWTValid(context.Context, string) error { return nil }

// SetClientAssertionJWT is unused; see ClientAssertionJWTValid.
func (s *Store) SetClientAssertionJWT(context.Context, string, time.Time) error { return nil }

func (s *Store) create(ctx context.Context, kind storage.TokenKind, tokenType fosite.TokenType, signature string, req fosite.Requester, defaultTTL time.Duration) error {
	sess, _ := req.GetSession().(*Session)
	if sess == nil {
		return fmt.Errorf("oauth: session of type %T, want *oauth.Session", req.GetSession())
	}
	data, err := encodeRequest(kind, req, sess)
	if err != nil {
		return err
	}
	exp := sess.GetExpiresAt(tokenType)
	if exp.IsZero() {
		exp = s.now().Add(defaultTTL)
	}
	// A client_credentials grant is one access token and nothing more, so no
	// revocation of its family can race storing it (storage.Token.Alone).
	ar, isAccess := req.(fosite.AccessRequester)
	alone := kind == storage.KindAccessToken && isAccess && ar.GetGrantTypes().ExactOne("client_credentials")
	return mapErr(s.store.CreateToken(ctx, storage.Token{
		Alone:     alone,
		TenantID:  s.tenant,
		Kind:      kind,
		Signature: signature,
		RequestID: req.GetID(),
		ClientID:  req.GetClient().GetID(),
		Subject:   sess.Subject,
		SessionID: sess.SessionID,
		Active:    true,
		Data:      data,
		CreatedAt: s.now().UTC().Truncate(time.Microsecond),
		ExpiresAt: exp.UTC().Truncate(time.Microsecond),
	}))
}

// get loads a record; an inactive one is returned along with inactiveErr,
// which is how fosite detects code and refresh token reuse. An inactive code
// or refresh token read by the token endpoint is reuse, and revokes its
// family here: fosite revokes on some of these reads, not on all.
func (s *Store) get(ctx context.Context, kind storage.TokenKind, signature string, session fosite.Session, inactiveErr error) (fosite.Requester, error) {
	t, err := s.store.GetToken(ctx, s.tenant, kind, signature)
	if err != nil {
		return nil, mapErr(err)
	}
	_, watched := ctx.Value(reuseKey{}).(*Reuse)
	if !t.Active && watched && (kind == storage.KindAuthorizeCode || kind == storage.KindRefreshToken) {
		if err := s.reused(ctx, kind, t.RequestID); err != nil {
			return nil, err
		}
	}
	req, err := s.decodeRequest(ctx, t.Data, session)
	if err != nil {
		return nil, err
	}
	if !t.Active {
		return req, inactiveErr
	}
	if kind == storage.KindAuthorizeCode && !s.now().Before(t.CreatedAt.Add(AuthorizeCodeTTL)) {
		// fosite checks code expiry against time.Now, not the server clock;
		// a code past its lifetime is unknown, which fosite answers with invalid_grant.
		return nil, fmt.Errorf("%w: authorization code expired", fosite.ErrNotFound)
	}
	return req, nil
}

// encodeRequest serializes what later reads of a record of this kind need.
// An access token record is read by introspection, userinfo and revocation,
// which use neither the request form (kept for codes, whose redirect_uri and
// PKCE challenge are checked at redemption) nor the ID token claims (kept
// for codes and refresh tokens, which issue ID tokens).
func encodeRequest(kind storage.TokenKind, req fosite.Requester, sess *Session) ([]byte, error) {
	form := req.GetRequestForm()
	if kind == storage.KindAccessToken {
		form = nil
		stripped := *sess // a copy: the caller's session still issues the ID token
		stripped.IDToken, stripped.IDHeaders = nil, nil
		sess = &stripped
	}
	b, err := json.Marshal(storedRequest{
		ID:                req.GetID(),
		RequestedAt:       req.GetRequestedAt(),
		ClientID:          req.GetClient().GetID(),
		RequestedScope:    req.GetRequestedScopes(),
		GrantedScope:      req.GetGrantedScopes(),
		RequestedAudience: req.GetRequestedAudience(),
		GrantedAudience:   req.GetGrantedAudience(),
		Form:              form,
		Session:           sess,
	})
	if err != nil {
		return nil, fmt.Errorf("oauth: encode request: %w", err)
	}
	return b, nil
}

func (s *Store) decodeRequest(ctx context.Context, data []byte, session fosite.Session) (*fosite.Request, error) {
	if session == nil {
		session = NewSession(s.tenant)
	}
	sr := storedRequest{Session: session}
	if err := json.Unmarshal(data, &sr); err != nil {
		return nil, fmt.Errorf("oauth: decode request: %w", err)
	}
	if sr.Session != session {
		// The record held "session": null, or the prototype was not a pointer.
		return nil, fmt.Errorf("oauth: decode request: no session in the record")
	}
	client, err := s.clients(ctx, sr.ClientID)
	if err != nil {
		return nil, err
	}
	form := sr.Form
	if form == nil {
		form = url.Values{}
	}
	return &fosite.Request{
		ID:                sr.ID,
		RequestedAt:       sr.RequestedAt,
		Client:            client,
		RequestedScope:    sr.RequestedScope,
		GrantedScope:      sr.GrantedScope,
		RequestedAudience: sr.RequestedAudience,
		GrantedAudience:   sr.GrantedAudience,
		Form:              form,
		Session:           session,
	}, nil
}

// mapErr turns storage sentinels into the fosite errors its handlers test for.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("%w: %w", fosite.ErrNotFound, err)
	case errors.Is(err, storage.ErrAlreadyExists):
		return fmt.Errorf("%w: %w", fosite.ErrSerializationFailure, err)
	default:
		return err
	}
}

// CreateAuthorizeCodeSession stores the request behind an authorization code.
func (s *Store) CreateAuthorizeCodeSession(ctx context.Context, signature string, req fosite.Requester) error {
	return s.create(ctx, storage.KindAuthorizeCode, fosite.AuthorizeCode, signature, req, time.Minute)
}

// GetAuthorizeCodeSession returns the request behind a code; a used code
// comes back with fosite.ErrInvalidatedAuthorizeCode so fosite revokes
// what the first redemption issued.
func (s *Store) GetAuthorizeCodeSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, storage.KindAuthorizeCode, signature, session, fosite.ErrInvalidatedAuthorizeCode)
}

// InvalidateAuthorizeCodeSession consumes a code in one conditional update,
// so of two simultaneous redemptions exactly one gets past this point; the
// other is reuse, and revokes the grant.
func (s *Store) InvalidateAuthorizeCodeSession(ctx context.Context, signature string) error {
	t, err := s.store.ConsumeToken(ctx, s.tenant, storage.KindAuthorizeCode, signature)
	if errors.Is(err, storage.ErrConsumed) {
		if rerr := s.reused(ctx, storage.KindAuthorizeCode, t.RequestID); rerr != nil {
			return rerr
		}
		return fmt.Errorf("%w: %w", fosite.ErrInvalidatedAuthorizeCode, err)
	}
	return mapErr(err)
}

// CreateAccessTokenSession stores the request behind an access token.
func (s *Store) CreateAccessTokenSession(ctx context.Context, signature string, req fosite.Requester) error {
	return s.create(ctx, storage.KindAccessToken, fosite.AccessToken, signature, req, time.Hour)
}

// GetAccessTokenSession returns the request behind an access token; a
// revoked one is inactive.
func (s *Store) GetAccessTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	req, err := s.get(ctx, storage.KindAccessToken, signature, session, fosite.ErrInactiveToken)
	if errors.Is(err, fosite.ErrInactiveToken) {
		return nil, err
	}
	return req, err
}

// DeleteAccessTokenSession removes an access token record.
func (s *Store) DeleteAccessTokenSession(ctx context.Context, signature string) error {
	return mapErr(s.store.DeleteToken(ctx, s.tenant, storage.KindAccessToken, signature))
}

// CreateRefreshTokenSession stores the request behind a refresh token.
func (s *Store) CreateRefreshTokenSession(ctx context.Context, signature, _ string, req fosite.Requester) error {
	return s.create(ctx, storage.KindRefreshToken, fosite.RefreshToken, signature, unnarrowed(req), 30*24*time.Hour)
}

// unnarrowed is the request a new refresh token is stored with: when the
// refresh narrowed the scope for its access token, the grant as it was.
func unnarrowed(req fosite.Requester) fosite.Requester {
	sess, ok := req.GetSession().(*Session)
	r, isRequest := req.(*fosite.Request)
	if !ok || sess.RefreshGrant == nil || !isRequest {
		return req
	}
	kept, _ := sess.Clone().(*Session)
	kept.SMART.FHIRUser = sess.RefreshGrant.FHIRUser
	kept.RefreshGrant = nil
	cp := *r
	cp.GrantedScope = fosite.Arguments(sess.RefreshGrant.Scope)
	cp.Session = kept
	return &cp
}

// GetRefreshTokenSession returns the request behind a refresh token; a
// rotated one comes back with fosite.ErrInactiveToken so fosite revokes the family.
func (s *Store) GetRefreshTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, storage.KindRefreshToken, signature, session, fosite.ErrInactiveToken)
}

// DeleteRefreshTokenSession marks a refresh token inactive rather than
// deleting it, so a later reuse is still recognised as reuse.
func (s *Store) DeleteRefreshTokenSession(ctx context.Context, signature string) error {
	_, err := s.store.ConsumeToken(ctx, s.tenant, storage.KindRefreshToken, signature)
	if errors.Is(err, storage.ErrConsumed) {
		return nil
	}
	return mapErr(err)
}

// RotateRefreshToken retires the presented refresh token and the access
// tokens issued with it. The consume is conditional, so of two simultaneous
// refreshes one wins and the other, reuse, revokes the grant and gets
// fosite's serialization error.
func (s *Store) RotateRefreshToken(ctx context.Context, requestID, signature string) error {
	_, err := s.store.ConsumeToken(ctx, s.tenant, storage.KindRefreshToken, signature)
	if errors.Is(err, storage.ErrConsumed) {
		if rerr := s.reused(ctx, storage.KindRefreshToken, requestID); rerr != nil {
			return rerr
		}
		return fmt.Errorf("%w: %w", fosite.ErrSerializationFailure, err)
	}
	if err != nil {
		return mapErr(err)
	}
	_, err = s.store.RevokeRequestKind(ctx, s.tenant, requestID, storage.KindAccessToken)
	return mapErr(err)
}

// RevokeRefreshToken revokes a grant family: fosite calls it on reuse and on
// revocation, and either ends the whole grant (RFC 6749 §10.4, RFC 7009
// §2.1). Tokens a concurrent refresh stores for the family afterwards are
// born inactive.
func (s *Store) RevokeRefreshToken(ctx context.Context, requestID string) error {
	_, err := s.store.RevokeRequest(ctx, s.tenant, requestID)
	return mapErr(err)
}

// RevokeRefreshTokenMaybeGracePeriod revokes without a grace period: a
// rotated refresh token is dead at once.
func (s *Store) RevokeRefreshTokenMaybeGracePeriod(ctx context.Context, requestID, _ string) error {
	return s.RevokeRefreshToken(ctx, requestID)
}

// RevokeAccessToken revokes a grant family, as RevokeRefreshToken does:
// fosite calls the two together, in either order.
func (s *Store) RevokeAccessToken(ctx context.Context, requestID string) error {
	_, err := s.store.RevokeRequest(ctx, s.tenant, requestID)
	return mapErr(err)
}

// CreatePKCERequestSession stores the PKCE challenge behind a code.
func (s *Store) CreatePKCERequestSession(ctx context.Context, signature string, req fosite.Requester) error {
	return s.create(ctx, storage.KindPKCE, fosite.AuthorizeCode, signature, req, time.Minute)
}

// GetPKCERequestSession returns the PKCE challenge behind a code.
func (s *Store) GetPKCERequestSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, storage.KindPKCE, signature, session, nil)
}

// DeletePKCERequestSession keeps the PKCE record, which the sweeper removes
// when its code expires. fosite deletes it while checking the verifier,
// before the code is consumed; a simultaneous redemption that read the code
// as unused would then find no PKCE record and fail without anyone noticing
// the reuse. Kept, the record lets that redemption go on to the code's
// conditional consume, where reuse is caught and the grant revoked. It is
// worth nothing without its code, which is single use, and a wrong
// verifier uses the code up (see Store.VerifierRefused).
func (s *Store) DeletePKCERequestSession(context.Context, string) error {
	return nil
}

// VerifierRefused revokes the grant of a code whose redemption was refused
// after the code itself checked out, which in fosite's order of handlers
// means for its PKCE verifier: whoever holds a stolen code gets one guess,
// and the rightful app's redemption after it is refused as reuse.
func (s *Store) VerifierRefused(ctx context.Context, requestID string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
	defer cancel()
	if _, err := s.store.RevokeRequest(ctx, s.tenant, requestID); err != nil {
		return fmt.Errorf("oauth: revoke the grant of a code refused for its verifier: %w", err)
	}
	return nil
}

func (s *Store) deleteIdempotent(ctx context.Context, kind storage.TokenKind, signature string) error {
	err := s.store.DeleteToken(ctx, s.tenant, kind, signature)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return mapErr(err)
}

// CreateOpenIDConnectSession stores the ID token request behind a code.
func (s *Store) CreateOpenIDConnectSession(ctx context.Context, signature string, req fosite.Requester) error {
	return s.create(ctx, storage.KindOpenID, fosite.AuthorizeCode, signature, req, time.Minute)
}

// GetOpenIDConnectSession returns the ID token request behind a code.
func (s *Store) GetOpenIDConnectSession(ctx context.Context, signature string, req fosite.Requester) (fosite.Requester, error) {
	return s.get(ctx, storage.KindOpenID, signature, req.GetSession(), nil)
}

// DeleteOpenIDConnectSession removes the ID token request of a redeemed
// code; idempotent for the reason DeletePKCERequestSession is.
func (s *Store) DeleteOpenIDConnectSession(ctx context.Context, signature string) error {
	return s.deleteIdempotent(ctx, storage.KindOpenID, signature)
}
