package mfa

import (
	"slices"

	"github.com/smartauth/smartauth/storage"
)

// Step is what a sign-in still needs once the first factor is done.
type Step int

// The steps Next decides between.
const (
	// StepNone: no second factor is needed; the sign-in is complete.
	StepNone Step = iota
	// StepVerify: ask for a TOTP code (or a recovery code).
	StepVerify
	// StepEnroll: the tenant requires a second factor the user does not
	// have yet; enroll (Begin, Confirm) before the sign-in completes.
	StepEnroll
)

// upstreamMFA are the RFC 8176 amr values by which an upstream identity
// provider says it already checked more than a password: "mfa" itself, a
// one-time password, or proof of a hardware or software key.
var upstreamMFA = []string{"mfa", "otp", "hwk", "swk"}

// UpstreamMFA reports whether an upstream amr claim shows a second factor.
func UpstreamMFA(amr []string) bool {
	return slices.ContainsFunc(amr, func(v string) bool { return slices.Contains(upstreamMFA, v) })
}

// Next decides what a sign-in needs after its first factor: a second factor
// is needed when the tenant requires one or the user has enrolled, unless
// the upstream identity provider's amr shows it already checked one; a user
// without one under a requiring tenant must enroll. upstreamAMR is nil for a
// local password sign-in.
func Next(policy storage.TenantPolicy, user storage.User, upstreamAMR []string) Step {
	switch {
	case !policy.MFARequired && !Enrolled(user):
		return StepNone
	case UpstreamMFA(upstreamAMR):
		return StepNone
	case Enrolled(user):
		return StepVerify
	default:
		return StepEnroll
	}
}

// Required reports whether a sign-in needs a second factor from smartauth
// (a code, or enrollment first); see Next.
func Required(policy storage.TenantPolicy, user storage.User, upstreamAMR []string) bool {
	return Next(policy, user, upstreamAMR) != StepNone
}
