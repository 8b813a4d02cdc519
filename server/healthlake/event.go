// Package healthlake answers AWS HealthLake's token-validation calls for a
// SMART-on-FHIR enabled datastore: it verifies a smartauth access token
// against one tenant's JWKS and replies in the shape HealthLake expects.
//
// The request and response shapes follow AWS's documentation:
// https://docs.aws.amazon.com/healthlake/latest/devguide/reference-smart-on-fhir-token-validation.html
// https://docs.aws.amazon.com/healthlake/latest/devguide/smart-on-fhir-access.html
package healthlake

import (
	"encoding/json"
	"fmt"
)

// Event is what HealthLake sends the function for each FHIR request.
type Event struct {
	DatastoreEndpoint string `json:"datastoreEndpoint"`
	OperationName     string `json:"operationName"`
	BearerToken       string `json:"bearerToken"`
}

// Response is what the function answers HealthLake.
type Response struct {
	AuthPayload AuthPayload `json:"authPayload"`
	// IAMRoleARN is the role HealthLake assumes to carry out an authorized
	// request; a refusal names none.
	IAMRoleARN string `json:"iamRoleARN,omitempty"`
}

// AuthPayload carries the verified token's claims and the decision.
type AuthPayload struct {
	Iss          string `json:"iss,omitempty"`
	Aud          string `json:"aud,omitempty"`
	Iat          int64  `json:"iat,omitempty"`
	Nbf          int64  `json:"nbf,omitempty"`
	Exp          int64  `json:"exp,omitempty"`
	IsAuthorized Flag   `json:"isAuthorized"`
	UID          string `json:"uid,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

// Flag is a boolean written as the string "true" or "false".
//
// AWS's example response writes isAuthorized as the string "true" while its
// sample function returns a JSON boolean; we write the documented example's
// string and read either.
type Flag bool

// MarshalJSON writes the flag as a JSON string.
func (f Flag) MarshalJSON() ([]byte, error) {
	if f {
		return []byte(`"true"`), nil
	}
	return []byte(`"false"`), nil
}

// UnmarshalJSON reads the flag from a JSON string or boolean.
func (f *Flag) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `null`:
		// Unmarshal's convention: null leaves the value as it is.
	case `"true"`, `true`:
		*f = true
	case `"false"`, `false`:
		*f = false
	default:
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("isAuthorized: %s is neither a boolean nor a string", b)
		}
		return fmt.Errorf("isAuthorized: %q is neither true nor false", s)
	}
	return nil
}
