package smart

// Grant narrows a request to what may be granted: a requested scope is
// granted, exactly as written, when the scopes the client is allowed
// (its registration) cover it and the scopes the person approved cover it;
// otherwise it is dropped. Only requested scopes are ever returned, each
// once, in request order, and every requested scope lands in exactly one
// of the two lists. Scopes in allowed or approved that do not parse cover
// nothing.
//
// approved is what the person agreed to on the consent page. Where no
// person is asked (client credentials, a pre-approved client), pass
// requested. A nil or empty approved approves nothing, so a consent form
// that lost its fields fails closed rather than granting everything.
func Grant(requested, allowed, approved []string) (granted, dropped []string) {
	may := parseAll(allowed)
	agreed := parseAll(approved)
	seen := make(map[string]bool, len(requested))
	for _, raw := range requested {
		if seen[raw] {
			continue
		}
		seen[raw] = true
		s, err := Parse(raw)
		if err == nil && coveredBy(s, may) && coveredBy(s, agreed) {
			granted = append(granted, raw)
		} else {
			dropped = append(dropped, raw)
		}
	}
	return granted, dropped
}

// Strategy reports whether the scopes in haystack together cover needle. It
// has the signature of fosite's ScopeStrategy and replaces its dot-splitting
// default, so a client registered for "patient/*.rs" may ask for
// "patient/Observation.rs?category=…", and a URL in a query is not read as
// a scope hierarchy.
func Strategy(haystack []string, needle string) bool {
	t, err := Parse(needle)
	if err != nil {
		return false
	}
	return coveredBy(t, parseAll(haystack))
}

// parseAll parses every scope it can and skips the rest, which then cover nothing.
func parseAll(raws []string) []Scope {
	out := make([]Scope, 0, len(raws))
	for _, raw := range raws {
		if s, err := Parse(raw); err == nil {
			out = append(out, s)
		}
	}
	return out
}
