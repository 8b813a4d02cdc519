package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/storage"
)

// patientSearchJSON shows a tenant's FHIR patient search source; the client
// secret is never printed, sealed or not.
type patientSearchJSON struct {
	Tenant          string `json:"tenant"`
	FHIRBaseURL     string `json:"fhir_base_url"`
	TokenURL        string `json:"token_url"`
	ClientID        string `json:"client_id"`
	Scope           string `json:"scope,omitempty"`
	ClientSecretSet bool   `json:"client_secret_set"`
}

// patientSearchCommand declares the flags of "tenant set-patient-search" and
// "tenant clear-patient-search" and returns the action and required flags.
func patientSearchCommand(ctx context.Context, verb string, fs *flag.FlagSet, tenant *string, stdin io.Reader) (func(d *deps) (any, error), []string) {
	if verb == "clear-patient-search" {
		return func(d *deps) (any, error) {
			if err := d.manage.ClearPatientSearch(ctx, *tenant, cliActor); err != nil {
				return nil, err
			}
			return map[string]any{"tenant": *tenant, "patient_search": nil}, nil
		}, nil
	}
	var in manage.PatientSearchInput
	fs.StringVar(&in.FHIRBaseURL, "fhir-base-url", "", "FHIR base URL whose Patient search the patient picker offers (required)")
	fs.StringVar(&in.TokenURL, "token-url", "", "OAuth 2.0 token endpoint of that FHIR server (required)")
	fs.StringVar(&in.ClientID, "client-id", "", "client id registered there for client_credentials (required)")
	fs.StringVar(&in.Scope, "scope", "", `scope to ask for, such as "system/Patient.rs"`)
	return func(d *deps) (any, error) {
		secret, err := readClientSecret(stdin, "tenant set-patient-search reads the client secret from stdin: pipe it in")
		if err != nil {
			return nil, err
		}
		in.ClientSecret = secret
		src, err := d.manage.SetPatientSearch(ctx, *tenant, in, cliActor)
		if err != nil {
			return nil, err
		}
		return patientSearchView(*tenant, src), nil
	}, []string{"fhir-base-url", "token-url", "client-id"}
}

// readClientSecret reads a client secret from the first line of stdin, so
// it never appears in the process list or shell history; missing is the
// usage error when there is none.
func readClientSecret(stdin io.Reader, missing string) (string, error) {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read client secret from stdin: %w", err)
	}
	secret := strings.TrimRight(line, "\r\n")
	if secret == "" {
		return "", usageError{missing}
	}
	return secret, nil
}

func patientSearchView(tenantID string, src storage.PatientSearchSource) patientSearchJSON {
	return patientSearchJSON{Tenant: tenantID, FHIRBaseURL: src.FHIRBaseURL, TokenURL: src.TokenURL,
		ClientID: src.ClientID, Scope: src.Scope, ClientSecretSet: src.ClientSecretSealed != ""}
}

// policyView is a tenant policy fit to print: a sealed secret or header
// value shows only that it is there.
func policyView(p storage.TenantPolicy) storage.TenantPolicy {
	if p.PatientSearch.ClientSecretSealed != "" {
		p.PatientSearch.ClientSecretSealed = "(sealed)"
	}
	if p.Gateway.HeaderValueSealed != "" {
		p.Gateway.HeaderValueSealed = "(sealed)"
	}
	return p
}
