package server

import (
	"net/http"

	"github.com/ory/fosite"

	"github.com/smartauth/smartauth/storage"
)

// revoke is the revocation endpoint (RFC 7009). Revoking either token of a
// grant revokes the whole grant family; an unknown token is not an error.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) error {
	t, p, err := s.tenantProvider(r)
	if err != nil {
		return err
	}
	ctx, client := withAuthedClient(r.Context())
	// The form was read by wellFormed before this handler ran.
	if err = singleParams(r.PostForm); err == nil {
		err = oauthError(p.NewRevocationRequest(ctx, r))
	}
	setChallenge(w, err)
	if err == nil {
		s.audit(r, storage.AuditEvent{TenantID: t.ID, Type: "token.revoke", Outcome: "success", ClientID: client.id})
		p.WriteRevocationResponse(ctx, w, nil)
		return nil
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField < http.StatusInternalServerError {
		s.logOAuthError(r, err, "tenant", t.ID, "client", client.id)
		// invalid_request and invalid_client are answered as such; anything
		// else the client did (a token of another client, say) is 200.
		p.WriteRevocationResponse(ctx, w, err)
		return nil
	}
	// fosite's writer would answer 200 here too, telling the client a token
	// that may still be active is revoked. The client must try again.
	failed := fosite.ErrTemporarilyUnavailable.WithHint("The token could not be revoked and may still be active. Try again in a moment.").WithWrap(fositeCause(err))
	if client.id != "" {
		// Only an authenticated client's revocation is recorded: before
		// that, nothing says whose token it was.
		s.audit(r, storage.AuditEvent{TenantID: t.ID, Type: "token.revoke", Outcome: "failure", ClientID: client.id,
			Details: map[string]string{"error": failed.ErrorField, "reason": "storage failed; the token may still be active"}})
	}
	s.writeFositeError(w, r, failed, "tenant", t.ID, "client", client.id)
	return nil
}
