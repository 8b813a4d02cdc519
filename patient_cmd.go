package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/smartauth/smartauth/storage"
)

// Bounds of "patient list": a roster can hold a whole hospital's patients,
// and the terminal is for finding a few.
const (
	defaultPatientList = 50
	maxPatientList     = 1000
)

// patientJSON is a roster entry as "patient list" prints it.
type patientJSON struct {
	ID          string               `json:"id"`
	Family      string               `json:"family,omitempty"`
	Given       string               `json:"given,omitempty"`
	BirthDate   string               `json:"birth_date,omitempty"`
	Gender      string               `json:"gender,omitempty"`
	Identifiers []storage.Identifier `json:"identifiers"`
	UpdatedAt   time.Time            `json:"updated_at"`
}

// patientListCommand declares the flags of "patient list" and returns its
// action. When more patients match than --limit, it says so on stderr, so
// the JSON on stdout stays one array.
func patientListCommand(ctx context.Context, fs *flag.FlagSet, tenant *string, stderr io.Writer) func(d *deps) (any, error) {
	var q storage.PatientQuery
	fs.StringVar(&q.Name, "name", "", "start of the family or given name, any case")
	fs.StringVar(&q.BirthDate, "birth-date", "", "birth date, as YYYY-MM-DD")
	fs.StringVar(&q.Identifier, "identifier", "", "an identifier's value, such as an MRN")
	limit := fs.Int("limit", defaultPatientList, fmt.Sprintf("most patients to print (at most %d)", maxPatientList))
	return func(d *deps) (any, error) {
		if *limit < 1 || *limit > maxPatientList {
			return nil, usageError{fmt.Sprintf("patient list: --limit %d must be between 1 and %d", *limit, maxPatientList)}
		}
		// One more than asked tells whether there are more.
		q.Limit = *limit + 1
		ps, err := d.store.SearchPatients(ctx, *tenant, q)
		if err != nil {
			return nil, fmt.Errorf("search the roster of tenant %q: %w", *tenant, err)
		}
		if len(ps) > *limit {
			ps = ps[:*limit]
			fmt.Fprintf(stderr, "smartauth: more patients match than the %d shown: narrow the search (--name, --birth-date, --identifier) or raise --limit\n", *limit)
		}
		out := make([]patientJSON, 0, len(ps))
		for _, p := range ps {
			v := patientJSON{ID: p.ID, Family: p.Family, Given: p.Given, BirthDate: p.BirthDate, Gender: p.Gender,
				Identifiers: p.Identifiers, UpdatedAt: p.UpdatedAt}
			if v.Identifiers == nil {
				v.Identifiers = []storage.Identifier{}
			}
			out = append(out, v)
		}
		return out, nil
	}
}
