package manage

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/smartauth/smartauth/server/fhirsearch"
	"github.com/smartauth/smartauth/storage"
)

// PatientSearchInput is what an operator gives to let the patient picker
// search a tenant's FHIR server.
type PatientSearchInput struct {
	FHIRBaseURL string
	TokenURL    string
	ClientID    string
	// ClientSecret is sealed under the master key before it is stored.
	ClientSecret string
	// Scope is asked for with the token, such as "system/Patient.rs"; optional.
	Scope string
}

// SetPatientSearch validates the input and stores it as the tenant's FHIR
// patient search source, replacing any before, with the secret sealed.
func (s *Service) SetPatientSearch(ctx context.Context, tenantID string, in PatientSearchInput, who Actor) (storage.PatientSearchSource, error) {
	src, err := validatePatientSearch(in)
	if err != nil {
		return storage.PatientSearchSource{}, err
	}
	if src.ClientSecretSealed, err = fhirsearch.SealSecret(s.keys.Sealer(), tenantID, src, in.ClientSecret); err != nil {
		return storage.PatientSearchSource{}, err
	}
	if err := s.setPatientSearch(ctx, tenantID, src); err != nil {
		return storage.PatientSearchSource{}, err
	}
	return src, s.audit(ctx, tenantID, "admin.tenant.patient_search.set", who, "", map[string]string{
		"fhir_base_url": src.FHIRBaseURL, "token_url": src.TokenURL, "client_id": src.ClientID, "scope": src.Scope,
	})
}

// ClearPatientSearch removes the tenant's FHIR patient search source, so the
// patient picker searches the local roster only.
func (s *Service) ClearPatientSearch(ctx context.Context, tenantID string, who Actor) error {
	if err := s.setPatientSearch(ctx, tenantID, storage.PatientSearchSource{}); err != nil {
		return err
	}
	return s.audit(ctx, tenantID, "admin.tenant.patient_search.clear", who, "", nil)
}

// setPatientSearch stores src as the tenant's patient search source over
// the tenant as it is now: an edit of other settings landing between the
// read and the write is read again rather than lost or reported.
func (s *Service) setPatientSearch(ctx context.Context, tenantID string, src storage.PatientSearchSource) error {
	for attempt := 1; ; attempt++ {
		t, err := s.store.GetTenant(ctx, tenantID)
		if err != nil {
			return fmt.Errorf("tenant %q: %w", tenantID, err)
		}
		t.Policy.PatientSearch = src
		err = s.store.UpdateTenant(ctx, t)
		if errors.Is(err, storage.ErrConflict) && attempt < 3 {
			continue
		}
		if err != nil {
			return fmt.Errorf("update tenant %q: %w", tenantID, err)
		}
		return nil
	}
}

// validatePatientSearch checks the input and returns the source to store,
// without its sealed secret.
func validatePatientSearch(in PatientSearchInput) (storage.PatientSearchSource, error) {
	base := strings.TrimRight(strings.TrimSpace(in.FHIRBaseURL), "/")
	if err := checkServiceURL("FHIR base URL", base, false); err != nil {
		return storage.PatientSearchSource{}, err
	}
	tokenURL := strings.TrimSpace(in.TokenURL)
	if err := checkServiceURL("token URL", tokenURL, true); err != nil {
		return storage.PatientSearchSource{}, err
	}
	clientID := strings.TrimSpace(in.ClientID)
	if clientID == "" || len(clientID) > 255 || !printable(clientID) {
		return storage.PatientSearchSource{}, invalid("client id must be 1-255 printable characters")
	}
	if in.ClientSecret == "" || len(in.ClientSecret) > 1024 || !printable(in.ClientSecret) {
		return storage.PatientSearchSource{}, invalid("client secret must be 1-1024 printable characters")
	}
	scopes := strings.Fields(in.Scope)
	for _, sc := range scopes {
		if !validScopeToken(sc) {
			return storage.PatientSearchSource{}, invalid("scope %q is not a valid OAuth scope", sc)
		}
	}
	return storage.PatientSearchSource{FHIRBaseURL: base, TokenURL: tokenURL, ClientID: clientID, Scope: strings.Join(scopes, " ")}, nil
}

// checkServiceURL accepts an https URL, or http on loopback, with no user
// info or fragment; a query only where allowQuery (RFC 6749 lets a token
// endpoint have one; a FHIR base URL cannot).
func checkServiceURL(what, raw string, allowQuery bool) error {
	if err := checkAppURL(what, raw); err != nil {
		return err
	}
	u, _ := url.Parse(raw)
	if u.User != nil || u.Fragment != "" || (u.RawQuery != "" && !allowQuery) {
		return invalid("%s %q must not carry user info, a fragment or (FHIR base URL) a query", what, raw)
	}
	return nil
}

// printable reports whether s holds no control characters.
func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
