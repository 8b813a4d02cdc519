// Package roster reads FHIR R4 Patient resources — one per line (NDJSON,
// as Bulk Data exports them), a Bundle, or a single resource — into a
// tenant's patient roster entries.
package roster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/smartauth/smartauth/storage"
)

// fhirID is the FHIR R4 id datatype.
var fhirID = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// fhirDate is the FHIR date datatype (year, year-month or full date).
var fhirDate = regexp.MustCompile(`^[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?$`)

// Result is what a parse found.
type Result struct {
	Patients []storage.Patient
	// Skipped counts resources of other types (a Bundle's Observations, say).
	Skipped int
}

type resource struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Entry        []struct {
		Resource json.RawMessage `json:"resource"`
	} `json:"entry"`
	Name []struct {
		Use    string   `json:"use"`
		Family string   `json:"family"`
		Given  []string `json:"given"`
		Text   string   `json:"text"`
	} `json:"name"`
	BirthDate  string               `json:"birthDate"`
	Gender     string               `json:"gender"`
	Identifier []storage.Identifier `json:"identifier"`
}

// Parse reads every resource in r. Any malformed Patient fails the whole
// parse, naming it, so an import is all or nothing.
func Parse(tenantID string, r io.Reader) (Result, error) {
	var res Result
	dec := json.NewDecoder(r)
	seen := map[string]bool{}
	for n := 1; ; n++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return Result{}, fmt.Errorf("resource %d: not valid JSON: %w", n, err)
		}
		if err := res.add(tenantID, raw, fmt.Sprintf("resource %d", n), seen); err != nil {
			return Result{}, err
		}
	}
	if len(res.Patients) == 0 {
		return Result{}, errors.New("no Patient resources found")
	}
	return res, nil
}

func (res *Result) add(tenantID string, raw json.RawMessage, where string, seen map[string]bool) error {
	var r resource
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	switch r.ResourceType {
	case "Bundle":
		for i, e := range r.Entry {
			if len(e.Resource) == 0 {
				continue
			}
			if err := res.add(tenantID, e.Resource, fmt.Sprintf("%s entry %d", where, i+1), seen); err != nil {
				return err
			}
		}
		return nil
	case "Patient":
		p, err := toPatient(tenantID, r, raw)
		if err != nil {
			return fmt.Errorf("%s (Patient/%s): %w", where, r.ID, err)
		}
		if seen[p.ID] {
			return fmt.Errorf("%s: Patient/%s appears twice", where, p.ID)
		}
		seen[p.ID] = true
		res.Patients = append(res.Patients, p)
		return nil
	case "":
		return fmt.Errorf("%s: no resourceType", where)
	default:
		res.Skipped++
		return nil
	}
}

func toPatient(tenantID string, r resource, raw json.RawMessage) (storage.Patient, error) {
	if !fhirID.MatchString(r.ID) {
		return storage.Patient{}, errors.New("id must be 1-64 letters, digits, '-' or '.'")
	}
	if r.BirthDate != "" && !fhirDate.MatchString(r.BirthDate) {
		return storage.Patient{}, fmt.Errorf("birthDate %q is not a FHIR date", r.BirthDate)
	}
	switch r.Gender {
	case "", "male", "female", "other", "unknown":
	default:
		return storage.Patient{}, fmt.Errorf("gender %q is not male, female, other or unknown", r.Gender)
	}
	p := storage.Patient{TenantID: tenantID, ID: r.ID, BirthDate: r.BirthDate, Gender: r.Gender}
	// Prefer the official name; otherwise the first one given.
	for i, n := range r.Name {
		if i == 0 || n.Use == "official" {
			p.Family = strings.TrimSpace(n.Family)
			p.Given = strings.TrimSpace(strings.Join(n.Given, " "))
			if p.Family == "" && p.Given == "" {
				p.Family = strings.TrimSpace(n.Text)
			}
			if n.Use == "official" {
				break
			}
		}
	}
	for _, id := range r.Identifier {
		if id.Value != "" {
			p.Identifiers = append(p.Identifiers, id)
		}
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return storage.Patient{}, err
	}
	p.Resource = compact.Bytes()
	return p, nil
}

// DisplayName is a patient's name as a person reads it: "Given Family".
func DisplayName(p storage.Patient) string {
	return strings.TrimSpace(p.Given + " " + p.Family)
}
