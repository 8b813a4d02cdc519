package server

import (
	"net/http"

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
		err = p.NewRevocationRequest(ctx, r)
	}
	setChallenge(w, err)
	if err == nil {
		s.audit(r, storage.AuditEvent{TenantID: t.ID, Type: "token.revoke", Outcome: "success", ClientID: client.id})
	}
	p.WriteRevocationResponse(ctx, w, err)
	return nil
}
