package server

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/smartauth/smartauth/server/manage"
)

// register is RFC 7591 dynamic client registration. Only the holder of an
// initial access token, issued by an operator and good for one client, may
// register; open registration would let anyone create clients in a tenant.
func (s *Server) register(w http.ResponseWriter, r *http.Request) error {
	t, err := s.tenant(r)
	if err != nil {
		return err
	}
	// Missing, unknown, used and expired tokens all get this one answer.
	refuse := func() error {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		return &httpError{status: http.StatusUnauthorized, code: "invalid_token",
			description: "A valid initial access token is required in the Authorization header."}
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return refuse()
	}
	var md manage.RegistrationRequest
	if err := decodeMetadata(r, &md); err != nil {
		return err
	}
	res, err := s.manage.RegisterClient(r.Context(), t.ID, token, md, clientIP(r))
	var rerr *manage.RegistrationError
	switch {
	case errors.Is(err, manage.ErrInvalidInitialAccessToken):
		return refuse()
	case errors.As(err, &rerr):
		return &httpError{status: http.StatusBadRequest, code: rerr.Code, description: rerr.Description}
	case err != nil:
		return fmt.Errorf("register client: %w", err)
	}
	// The answer may carry the client secret.
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, res)
	return nil
}

// decodeMetadata reads one JSON object of client metadata. Unlike
// decodeJSONBody it ignores unknown fields, as RFC 7591 §2 requires of
// metadata the server does not understand.
func decodeMetadata(r *http.Request, v any) error {
	return decodeJSON(r, v, manage.ErrCodeInvalidClientMetadata, false)
}
