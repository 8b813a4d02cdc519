package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/smartauth/smartauth/server/roster"
	"github.com/smartauth/smartauth/storage"
)

// rosterPageSize is how many patients the roster page lists at once.
const rosterPageSize = 50

// rosterFileField is the import form's file input.
const rosterFileField = "roster"

// rosterRow is one roster entry as the patients page lists it.
type rosterRow struct {
	ID, Name, BirthDate, Gender string
	Identifiers                 []storage.Identifier
}

// rosterPage searches a tenant's roster and imports into it.
type rosterPage struct {
	adminPage
	// Query is the search as typed.
	Query    storage.PatientQuery
	Patients []rosterRow
	// More is true when more patients match than the page lists.
	More bool
	// MaxUpload is the largest file the server accepts, for the hint.
	MaxUpload string
}

// adminPatients searches a tenant's patient roster by name, birth date or
// identifier; with no search it lists the first patients.
func (s *Server) adminPatients(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	q := r.URL.Query()
	query := storage.PatientQuery{
		Name:       strings.TrimSpace(q.Get("name")),
		BirthDate:  strings.TrimSpace(q.Get("birthdate")),
		Identifier: strings.TrimSpace(q.Get("identifier")),
	}
	return s.renderRoster(w, r, ar, http.StatusOK, query, importNotice(q), "")
}

func (s *Server) renderRoster(w http.ResponseWriter, r *http.Request, ar *adminRequest, status int, query storage.PatientQuery, notice, message string) error {
	// One more than a page tells whether there are more.
	query.Limit = rosterPageSize + 1
	found, err := s.store.SearchPatients(r.Context(), ar.tenant.ID, query)
	if err != nil {
		return fmt.Errorf("search patients of tenant %q: %w", ar.tenant.ID, err)
	}
	page := rosterPage{adminPage: ar.page(s, "patients", "Patients"), Query: query,
		MaxUpload: fmt.Sprintf("%d KiB", s.maxBody/1024)}
	page.Notice, page.Error = notice, message
	if len(found) > rosterPageSize {
		found, page.More = found[:rosterPageSize], true
	}
	for _, p := range found {
		page.Patients = append(page.Patients, rosterRow{ID: p.ID, Name: roster.DisplayName(p), BirthDate: p.BirthDate,
			Gender: p.Gender, Identifiers: p.Identifiers})
	}
	s.render(w, r, status, "admin_patients", page)
	return nil
}

// importNotice reports an import from the counts in the redirect's query.
// Only numbers are read from it, so no text of the URL reaches the page.
func importNotice(q url.Values) string {
	if q.Get("notice") != "imported" {
		return ""
	}
	n, err := strconv.Atoi(q.Get("patients"))
	if err != nil || n < 0 {
		return "Patients imported."
	}
	msg := fmt.Sprintf("Imported %d patient%s.", n, countSuffix(n))
	if skipped, err := strconv.Atoi(q.Get("skipped")); err == nil && skipped > 0 {
		msg += fmt.Sprintf(" %d other resource%s skipped.", skipped, countSuffix(skipped))
	}
	return msg
}

func countSuffix(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// adminImportPatients adds or replaces roster entries from an uploaded file
// of FHIR Patient resources, a Bundle or NDJSON, all or none. The admin
// wrapper has parsed the multipart form to check its CSRF token.
func (s *Server) adminImportPatients(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	f, _, err := r.FormFile(rosterFileField)
	if errors.Is(err, http.ErrMissingFile) || errors.Is(err, http.ErrNotMultipart) {
		return s.renderRoster(w, r, ar, http.StatusBadRequest, storage.PatientQuery{}, "",
			"Choose a file of FHIR Patient resources to import.")
	}
	if err != nil {
		return fmt.Errorf("read roster upload: %w", err)
	}
	defer f.Close()
	res, err := s.manage.ImportPatients(r.Context(), ar.tenant.ID, f, ar.actor(r))
	if msg, ok := manageMessage(err); ok {
		return s.renderRoster(w, r, ar, http.StatusBadRequest, storage.PatientQuery{}, "",
			"Nothing was imported: "+msg)
	}
	if err != nil {
		return fmt.Errorf("import patients of tenant %q: %w", ar.tenant.ID, err)
	}
	q := url.Values{"notice": {"imported"}, "patients": {strconv.Itoa(len(res.Patients))}, "skipped": {strconv.Itoa(res.Skipped)}}
	http.Redirect(w, r, s.areaURL(ar.area)+"/patients?"+q.Encode(), http.StatusSeeOther)
	return nil
}
