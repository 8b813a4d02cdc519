package server

import (
	"errors"
	"fmt"
	"mime"
	"net/http"

	"github.com/smartauth/smartauth/server/textguard"
)

// Request parameters are checked here before fosite or our own handlers
// parse them: whatever a request holds, the work it causes stays linear in
// its size, and text no store can keep never reaches one.

// errNotText refuses a request whose path, parameter names or values are
// not UTF-8 or hold a NUL.
var errNotText = &httpError{status: http.StatusBadRequest, code: "invalid_request",
	description: "The request holds characters that are not text (bytes that are not UTF-8, or a NUL). Check the address and the form."}

// wellFormed reads the request's parameters (query, and a URL-encoded or
// multipart body) and refuses a path, name or value that is not text,
// before any handler sees it. A body that cannot be read as a form is
// refused here as well: after a failed read the form is left half-filled,
// and a handler reading it again would not hear of the failure.
func (s *Server) wellFormed(r *http.Request) error {
	if !textguard.Valid(r.URL.Path) {
		return errNotText
	}
	err := r.ParseForm()
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); err == nil && mt == "multipart/form-data" {
		err = r.ParseMultipartForm(s.maxBody)
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return &httpError{status: http.StatusRequestEntityTooLarge, code: "invalid_request",
			description: fmt.Sprintf("The request is larger than this server accepts (%d KiB).", tooBig.Limit/1024)}
	}
	if err != nil {
		return &httpError{status: http.StatusBadRequest, code: "invalid_request",
			description: "The request's parameters could not be read as a form."}
	}
	if !textguard.ValidValues(r.Form) {
		return errNotText
	}
	return nil
}
