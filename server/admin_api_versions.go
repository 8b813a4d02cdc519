package server

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/smartauth/smartauth/storage"
)

// Tenants and users carry a version that every update moves on. The admin
// API shows it as a strong ETag and honours If-Match on their updates, so
// that automation which reads, changes and writes back a record cannot
// undo a change made in between without being told (RFC 9110 §13.1.1).

// versionETag is the entity tag of a record at a version.
func versionETag(version int64) string {
	return `"` + strconv.FormatInt(version, 10) + `"`
}

// setETag names the version of the record in the response.
func setETag(w http.ResponseWriter, version int64) {
	w.Header().Set("ETag", versionETag(version))
}

// ifMatchVersion checks a request's If-Match against the current version of
// the record it changes, what naming it. It returns the version the change
// must be made over: zero when there is no If-Match or it is "*", which
// any current record matches; current when one of its entity tags is the
// record's. Otherwise it returns 412, as a weak tag never matches either.
func ifMatchVersion(r *http.Request, current int64, what string) (int64, error) {
	values := r.Header.Values("If-Match")
	if len(values) == 0 {
		return 0, nil
	}
	want := versionETag(current)
	for _, v := range values {
		for _, tag := range strings.Split(v, ",") {
			switch strings.TrimSpace(tag) {
			case "*":
				return 0, nil
			case want:
				return current, nil
			}
		}
	}
	return 0, errPreconditionFailed(what)
}

func errPreconditionFailed(what string) error {
	return &httpError{status: http.StatusPreconditionFailed, code: "precondition_failed",
		description: "The " + what + " has changed since the version named in If-Match, so nothing was changed. Read it again and make the change over what it is now."}
}

// apiEditError is apiError for an update made over version: a record that
// changed meanwhile is 412 when the caller named the version in If-Match,
// and 409 when it did not and other changes kept coming in between.
func apiEditError(err error, version int64, what string) error {
	if !errors.Is(err, storage.ErrConflict) {
		return apiError(err, what)
	}
	if version != 0 {
		return errPreconditionFailed(what)
	}
	return &httpError{status: http.StatusConflict, code: "conflict",
		description: "The " + what + " kept changing while the change was being made, so nothing was changed. Try again."}
}
