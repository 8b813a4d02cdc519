package server

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/ory/fosite"

	"github.com/smartauth/smartauth/server/smart"
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

// errScopeTooLarge refuses a scope parameter past smart's bounds.
var errScopeTooLarge = fosite.ErrInvalidScope.WithHintf(
	"The scope parameter may hold at most %d scopes in %d bytes.", smart.MaxScopes, smart.MaxParamLen)

// checkParamBounds refuses a scope, audience or resource list past the
// bounds of a scope parameter before fosite splits it: fosite removes
// duplicates from scopes and audiences in time quadratic in their number.
func checkParamBounds(form url.Values) error {
	if !listWithinLimits(form["scope"]) {
		return errScopeTooLarge
	}
	for _, name := range tokenRepeatable {
		if !listWithinLimits(form[name]) {
			return fosite.ErrInvalidRequest.WithHintf("The %s parameter may name at most %d targets in %d bytes.",
				name, smart.MaxScopes, smart.MaxParamLen)
		}
	}
	return nil
}

// listWithinLimits reports whether a list parameter, given once with its
// items space-separated or repeated with one or more in each, stays within
// the bounds of a scope parameter. The values are joined only once their
// joint length is known to be small.
func listWithinLimits(values []string) bool {
	size := len(values) - 1
	for _, v := range values {
		size += len(v)
		if size > smart.MaxParamLen {
			return false
		}
	}
	return smart.WithinLimits(strings.Join(values, " "))
}

// singleParams refuses a parameter given more than once, other than those
// named repeatable: RFC 6749 §3.1 and §3.2 forbid repeats at the
// authorization and token endpoints, and RFC 7009 and RFC 7662 take their
// parameters in the same form encoding. fosite would read the first.
func singleParams(form url.Values, repeatable ...string) error {
	for k, v := range form {
		if len(v) > 1 && !slices.Contains(repeatable, k) {
			return fosite.ErrInvalidRequest.WithHintf("The parameter %s is given more than once.", k)
		}
	}
	return nil
}

// tokenRepeatable are the token request parameters that may be repeated:
// RFC 8707 §2 and RFC 8693 §2.1 name several targets that way.
var tokenRepeatable = []string{"resource", "audience"}

// checkTokenParams applies to a token request the rules fosite leaves out
// or applies only after parsing: single parameters and bounded lists.
func checkTokenParams(form url.Values) error {
	if err := singleParams(form, tokenRepeatable...); err != nil {
		return err
	}
	return checkParamBounds(form)
}
