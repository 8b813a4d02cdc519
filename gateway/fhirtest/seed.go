package fhirtest

import (
	"encoding/json"
	"net/http"
	"testing"
)

// Seeded holds the ids of the resources Seed created.
type Seeded struct {
	Alice, Bob PatientData
	// Practitioner performed Alice's vital-signs Observation.
	Practitioner string
}

// PatientData holds the ids of one patient and of the resources in the
// patient's compartment.
type PatientData struct {
	Patient string
	// Observations is VitalSigns then Laboratory.
	Observations []string
	// VitalSigns is a heart rate (LOINC 8867-4, category vital-signs);
	// Laboratory a glucose (LOINC 2339-0, category laboratory).
	VitalSigns, Laboratory string
	Condition, Encounter   string
}

// Codes of the seeded resources, for searches by token.
const (
	LOINC              = "http://loinc.org"
	HeartRateCode      = "8867-4"
	GlucoseCode        = "2339-0"
	CategorySystem     = "http://terminology.hl7.org/CodeSystem/observation-category"
	CategoryVitalSigns = "vital-signs"
	CategoryLaboratory = "laboratory"
	SNOMED             = "http://snomed.info/sct"
	HypertensionCode   = "38341003"
)

// Seed creates, through the FHIR API, a Practitioner and two patients,
// Alice Example and Bob Sample, each with an Encounter, a Condition and two
// Observations (vital signs and laboratory) that reference the Encounter.
// Alice's vital signs name the Practitioner as performer. Seed's requests
// are in the request log like any other; ClearRequests drops them.
func (s *Server) Seed(t testing.TB) Seeded {
	t.Helper()
	var out Seeded
	out.Practitioner = s.create(t, map[string]any{
		"resourceType": "Practitioner",
		"name":         []any{map[string]any{"family": "Grey", "given": []string{"Carol"}, "prefix": []string{"Dr"}}},
	})
	out.Alice = s.seedPatient(t, "Alice", "Example", "female", "1984-03-12", out.Practitioner)
	out.Bob = s.seedPatient(t, "Bob", "Sample", "male", "1977-09-30", "")
	return out
}

func (s *Server) seedPatient(t testing.TB, given, family, gender, birthDate, performer string) PatientData {
	t.Helper()
	var p PatientData
	p.Patient = s.create(t, map[string]any{
		"resourceType": "Patient",
		"active":       true,
		"name":         []any{map[string]any{"family": family, "given": []string{given}}},
		"gender":       gender,
		"birthDate":    birthDate,
	})
	subject := ref("Patient/" + p.Patient)
	p.Encounter = s.create(t, map[string]any{
		"resourceType": "Encounter",
		"status":       "finished",
		"class":        map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
		"subject":      subject,
		"period":       map[string]any{"start": "2024-05-02T09:00:00Z", "end": "2024-05-02T09:30:00Z"},
	})
	encounter := ref("Encounter/" + p.Encounter)
	vitals := map[string]any{
		"resourceType":      "Observation",
		"status":            "final",
		"category":          []any{concept(CategorySystem, CategoryVitalSigns, "Vital Signs")},
		"code":              concept(LOINC, HeartRateCode, "Heart rate"),
		"subject":           subject,
		"encounter":         encounter,
		"effectiveDateTime": "2024-05-02T09:10:00Z",
		"valueQuantity":     map[string]any{"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"},
	}
	if performer != "" {
		vitals["performer"] = []any{ref("Practitioner/" + performer)}
	}
	p.VitalSigns = s.create(t, vitals)
	p.Laboratory = s.create(t, map[string]any{
		"resourceType":      "Observation",
		"status":            "final",
		"category":          []any{concept(CategorySystem, CategoryLaboratory, "Laboratory")},
		"code":              concept(LOINC, GlucoseCode, "Glucose [Mass/volume] in Blood"),
		"subject":           subject,
		"encounter":         encounter,
		"effectiveDateTime": "2024-05-02T09:20:00Z",
		"valueQuantity":     map[string]any{"value": 95, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
	})
	p.Observations = []string{p.VitalSigns, p.Laboratory}
	p.Condition = s.create(t, map[string]any{
		"resourceType":   "Condition",
		"clinicalStatus": concept("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
		"code":           concept(SNOMED, HypertensionCode, "Hypertensive disorder"),
		"subject":        subject,
		"encounter":      encounter,
	})
	return p
}

// create POSTs resource to its type's endpoint and returns the new id.
func (s *Server) create(t testing.TB, resource map[string]any) string {
	t.Helper()
	typ := resource["resourceType"].(string)
	data := s.call(t, http.MethodPost, s.base+"/"+typ, resource, http.StatusCreated)
	var created struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(data, &created); err != nil || created.ID == "" {
		t.Fatalf("fhirtest: create %s: no id in %.300s (%v)", typ, data, err)
	}
	return created.ID
}

func ref(reference string) map[string]any { return map[string]any{"reference": reference} }

func concept(system, code, display string) map[string]any {
	return map[string]any{
		"coding": []any{map[string]any{"system": system, "code": code, "display": display}},
		"text":   display,
	}
}
