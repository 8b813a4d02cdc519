package smart

import "unicode"

// Bounds on one scope parameter, far above any real SMART request (a busy
// app asks for a few dozen scopes in a few hundred bytes). fosite removes
// duplicate scopes in time quadratic in their number, so a parameter past
// these bounds must be refused before it is split.
const (
	// MaxParamLen is the longest scope parameter accepted, in bytes.
	MaxParamLen = 8 << 10
	// MaxScopes is the most scopes one parameter may name.
	MaxScopes = 256
)

// WithinLimits reports whether a scope parameter is at most MaxParamLen bytes naming at most MaxScopes scopes.
func WithinLimits(raw string) bool {
	// The length is checked first, so a parameter of any size costs at
	// most MaxParamLen steps, and nothing is allocated.
	if len(raw) > MaxParamLen {
		return false
	}
	n, inScope := 0, false
	// Split as strings.Fields splits, which counts at least as many scopes
	// as fosite's split on single spaces.
	for _, r := range raw {
		space := unicode.IsSpace(r)
		if !space && !inScope {
			n++
		}
		inScope = !space
	}
	return n <= MaxScopes
}
