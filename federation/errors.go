package federation

import "fmt"

// Reason is why an upstream sign-in was refused, fit for the audit trail.
type Reason string

// Reasons for refusing an upstream sign-in.
const (
	// ReasonUnavailable: the provider's discovery document or keys could not be fetched.
	ReasonUnavailable Reason = "provider_unavailable"
	// ReasonExchangeFailed: the provider refused the authorization code.
	ReasonExchangeFailed Reason = "code_exchange_failed"
	// ReasonNoIDToken: the token response held no ID token.
	ReasonNoIDToken Reason = "no_id_token"
	// ReasonMalformedToken: the ID token is not a signed JWT we accept (alg none included).
	ReasonMalformedToken Reason = "malformed_id_token"
	// ReasonBadSignature: no key of the provider's JWKS verifies the ID token.
	ReasonBadSignature Reason = "bad_signature"
	// ReasonWrongIssuer: the ID token names another issuer.
	ReasonWrongIssuer Reason = "wrong_issuer"
	// ReasonWrongAudience: the ID token is not for our client id.
	ReasonWrongAudience Reason = "wrong_audience"
	// ReasonExpired: the ID token has expired.
	ReasonExpired Reason = "token_expired"
	// ReasonNonceMismatch: the ID token's nonce is not the one we sent.
	ReasonNonceMismatch Reason = "nonce_mismatch"
	// ReasonInvalidToken: the ID token failed another check (such as nbf).
	ReasonInvalidToken Reason = "invalid_id_token"
	// ReasonUserInfoMismatch: the userinfo endpoint answered for another subject.
	ReasonUserInfoMismatch Reason = "userinfo_mismatch"
	// ReasonTenantMissing: the claim that must name the tenant is absent.
	ReasonTenantMissing Reason = "tenant_claim_missing"
	// ReasonTenantMismatch: the claim that must name the tenant names another.
	ReasonTenantMismatch Reason = "tenant_mismatch"
	// ReasonBadClaim: a mapped claim holds a value that cannot be used.
	ReasonBadClaim Reason = "bad_claim"
)

// RefusalError is an upstream sign-in refused for a Reason. Detail may name
// claims and values but never holds a token.
type RefusalError struct {
	Reason Reason
	Detail string
	Err    error
}

func (e *RefusalError) Error() string {
	msg := "federation: sign-in refused: " + string(e.Reason)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *RefusalError) Unwrap() error { return e.Err }

// Refuse returns a *RefusalError; detail is formatted like fmt.Sprintf.
func Refuse(reason Reason, err error, detail string, args ...any) *RefusalError {
	return &RefusalError{Reason: reason, Detail: fmt.Sprintf(detail, args...), Err: err}
}
