// Package smart holds the pure rules of SMART on FHIR authorization: the
// scope grammar of SMART App Launch 1.0 and 2.x (including granular scopes
// that carry FHIR search parameters), which scope covers which, the
// downscoping of a request to what a client may have and a person approved,
// and plain-language descriptions for the consent page.
//
// It does no I/O and imports nothing but the standard library, so it can be
// fuzzed and reused anywhere in the server.
package smart

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLen is the longest scope Parse accepts; granular scopes end up in
// every access token, and a bound keeps a hostile request from making them huge.
const MaxLen = 1024

// ErrInvalid is wrapped by every error Parse returns.
var ErrInvalid = errors.New("invalid scope")

// Kind says which family of scope a Scope is.
type Kind uint8

const (
	// KindOther is a scope outside SMART and OpenID Connect (e.g. "__photo.manage"); it covers only itself.
	KindOther Kind = iota
	// KindResource is a FHIR resource scope such as "patient/Observation.rs".
	KindResource
	// KindLaunch is "launch": the EHR launch context bound to a launch parameter.
	KindLaunch
	// KindLaunchContext is a standalone context request such as "launch/patient".
	KindLaunchContext
	// KindOpenID is "openid".
	KindOpenID
	// KindFHIRUser is "fhirUser".
	KindFHIRUser
	// KindProfile is "profile".
	KindProfile
	// KindOfflineAccess is "offline_access": a refresh token that outlives the session.
	KindOfflineAccess
	// KindOnlineAccess is "online_access": a refresh token bound to the session.
	KindOnlineAccess
)

// String names the kind for logs and test output.
func (k Kind) String() string {
	switch k {
	case KindOther:
		return "other"
	case KindResource:
		return "resource"
	case KindLaunch:
		return "launch"
	case KindLaunchContext:
		return "launch-context"
	case KindOpenID:
		return "openid"
	case KindFHIRUser:
		return "fhirUser"
	case KindProfile:
		return "profile"
	case KindOfflineAccess:
		return "offline_access"
	case KindOnlineAccess:
		return "online_access"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Perms is a set of SMART v2 interactions: create, read, update, delete, search.
type Perms uint8

// The interactions, in the order the v2 suffix must list them ("cruds").
const (
	PermCreate Perms = 1 << iota
	PermRead
	PermUpdate
	PermDelete
	PermSearch

	// PermAll is what v2 ".cruds" and v1 ".*" grant.
	PermAll = PermCreate | PermRead | PermUpdate | PermDelete | PermSearch
)

// permLetters lists the v2 letters; letter i is the bit 1<<i.
const permLetters = "cruds"

// String renders the set as its v2 suffix, e.g. "rs".
func (p Perms) String() string {
	var b strings.Builder
	for i := range len(permLetters) {
		if p&(1<<i) != 0 {
			b.WriteByte(permLetters[i])
		}
	}
	return b.String()
}

// Scope is one parsed scope token.
type Scope struct {
	// Raw is the scope exactly as written; it is what a token carries, so a
	// v1 request is answered with v1 scopes as the specification asks.
	Raw  string
	Kind Kind
	// Context is "patient", "user" or "system" for a resource scope.
	Context string
	// ResourceType is "*" or a FHIR resource type for a resource scope, and
	// the lower-case type ("patient", "encounter", "diagnosticreport") for a
	// launch context scope.
	ResourceType string
	// Perms is what a resource scope allows; v1 "read" is rs, "write" cud, "*" cruds.
	Perms Perms
	// Version is 1 or 2 for a resource scope (by its suffix), else 0.
	Version int
	// Query holds the decoded search parameters of a granular v2 scope, or nil.
	Query url.Values
	// Role is the decoded role of a launch context scope ("launch/list?role=…"), or "".
	Role string
}

// Parse reads one scope token. Scopes that start like SMART ones
// ("patient/", "user/", "system/", "launch") or look like the fixed names in
// another case must follow the grammar exactly; anything else that is a
// valid OAuth scope token is KindOther, so registrations may carry custom scopes.
func Parse(raw string) (Scope, error) {
	if raw == "" {
		return Scope{}, invalid(raw, "empty")
	}
	if len(raw) > MaxLen {
		return Scope{}, invalid(raw[:32]+"…", fmt.Sprintf("longer than %d bytes", MaxLen))
	}
	for i := range len(raw) {
		if !isScopeChar(raw[i]) {
			return Scope{}, invalid(raw, fmt.Sprintf("character %q is not allowed in a scope (RFC 6749 section 3.3)", raw[i]))
		}
	}
	s := Scope{Raw: raw}
	switch raw {
	case "launch":
		s.Kind = KindLaunch
	case "openid":
		s.Kind = KindOpenID
	case "fhirUser":
		s.Kind = KindFHIRUser
	case "profile":
		s.Kind = KindProfile
	case "offline_access":
		s.Kind = KindOfflineAccess
	case "online_access":
		s.Kind = KindOnlineAccess
	}
	if s.Kind != KindOther {
		return s, nil
	}
	// Scopes are case-sensitive; a look-alike such as "OpenID" is almost
	// surely a mistake, and granting it as a custom scope would hide that.
	switch strings.ToLower(raw) {
	case "launch", "openid", "fhiruser", "profile", "offline_access", "online_access":
		return Scope{}, invalid(raw, "scope names are case-sensitive")
	}
	head, rest, found := strings.Cut(raw, "/")
	if !found {
		return s, nil
	}
	switch head {
	case "patient", "user", "system":
		return parseResource(s, head, rest)
	case "launch":
		return parseLaunchContext(s, rest)
	}
	switch strings.ToLower(head) {
	case "patient", "user", "system", "launch":
		return Scope{}, invalid(raw, fmt.Sprintf("%q must be lower case", head))
	}
	return s, nil
}

// parseResource reads "Type.perms[?query]" after a context and its slash.
func parseResource(s Scope, context, rest string) (Scope, error) {
	// The resource type has no dots, so the first dot ends it; later dots
	// belong to query values (URLs).
	typ, suffix, found := strings.Cut(rest, ".")
	if !found {
		return Scope{}, invalid(s.Raw, "missing '.' and permissions after the resource type")
	}
	if typ != "*" && !isResourceType(typ) {
		return Scope{}, invalid(s.Raw, fmt.Sprintf("%q is not a FHIR resource type or *", typ))
	}
	permStr, query, hasQuery := strings.Cut(suffix, "?")
	s.Kind = KindResource
	s.Context = context
	s.ResourceType = typ
	switch permStr {
	case "read":
		s.Perms, s.Version = PermRead|PermSearch, 1
	case "write":
		s.Perms, s.Version = PermCreate|PermUpdate|PermDelete, 1
	case "*":
		s.Perms, s.Version = PermAll, 1
	default:
		p, err := parsePerms(permStr)
		if err != nil {
			return Scope{}, invalid(s.Raw, err.Error())
		}
		s.Perms, s.Version = p, 2
	}
	if !hasQuery {
		return s, nil
	}
	if s.Version == 1 {
		return Scope{}, invalid(s.Raw, "search parameters need v2 permissions (e.g. .rs), not v1 ."+permStr)
	}
	q, err := parseQuery(query)
	if err != nil {
		return Scope{}, invalid(s.Raw, err.Error())
	}
	s.Query = q
	return s, nil
}

// parsePerms reads a v2 suffix: a non-empty subset of "cruds", in that
// order, each letter once. The specification lets a server refuse anything
// else, and refusing avoids reading ".read" as r+d.
func parsePerms(str string) (Perms, error) {
	if str == "" {
		return 0, errors.New("no permissions after '.'")
	}
	var p Perms
	next := 0
	for i := range len(str) {
		at := strings.IndexByte(permLetters, str[i])
		if at < 0 {
			return 0, fmt.Errorf("permissions %q: expected read, write, * or letters from cruds", str)
		}
		if at < next {
			return 0, fmt.Errorf("permissions %q: letters must appear once each, in the order cruds", str)
		}
		next = at + 1
		p |= 1 << at
	}
	return p, nil
}

// parseQuery reads "param=value&…" with percent-decoding as in a URL query,
// so a scope and the FHIR search it restricts read the same way.
func parseQuery(q string) (url.Values, error) {
	if q == "" {
		return nil, errors.New("empty query after '?'")
	}
	v := url.Values{}
	for part := range strings.SplitSeq(q, "&") {
		rawName, rawValue, found := strings.Cut(part, "=")
		if !found {
			return nil, fmt.Errorf("query part %q is not param=value", part)
		}
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			return nil, fmt.Errorf("query parameter %q: %v", rawName, err)
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return nil, fmt.Errorf("query value %q: %v", rawValue, err)
		}
		if name == "" || value == "" {
			return nil, fmt.Errorf("query part %q has an empty name or value", part)
		}
		if !isPrintable(name) || !isPrintable(value) {
			return nil, fmt.Errorf("query part %q decodes to control characters or invalid UTF-8", part)
		}
		v.Add(name, value)
	}
	return v, nil
}

// parseLaunchContext reads "type[?role=…]" after "launch/".
func parseLaunchContext(s Scope, rest string) (Scope, error) {
	typ, query, hasQuery := strings.Cut(rest, "?")
	if !isLowerWord(typ) {
		return Scope{}, invalid(s.Raw, "a launch context type must be a lower-case resource type, e.g. launch/patient")
	}
	s.Kind = KindLaunchContext
	s.ResourceType = typ
	if !hasQuery {
		return s, nil
	}
	q, err := parseQuery(query)
	if err != nil {
		return Scope{}, invalid(s.Raw, err.Error())
	}
	if len(q) != 1 || len(q["role"]) != 1 {
		return Scope{}, invalid(s.Raw, "a launch context scope takes exactly one role parameter and nothing else")
	}
	s.Role = q.Get("role")
	return s, nil
}

// Canonical renders the scope in one form per meaning: v1 suffixes become
// v2 letters and query parameters are decoded, sorted and minimally
// re-encoded. It is for comparison and display; tokens carry Raw.
func (s Scope) Canonical() string {
	switch s.Kind {
	case KindResource:
		out := s.Context + "/" + s.ResourceType + "." + s.Perms.String()
		if len(s.Query) > 0 {
			out += "?" + canonicalQuery(s.Query)
		}
		return out
	case KindLaunchContext:
		out := "launch/" + s.ResourceType
		if s.Role != "" {
			out += "?role=" + escapeQuery(s.Role)
		}
		return out
	}
	return s.Raw
}

// Granular reports whether a resource scope is restricted by search parameters.
func (s Scope) Granular() bool { return len(s.Query) > 0 }

// Covers reports whether permission s includes everything t asks for; both
// should come from Parse. Resource scopes need the same context, s's type
// "*" or equal to t's, and s's interactions a superset of t's; a
// non-granular s covers any query on t, a granular s only the same query.
// A role-less launch context covers the same type with any role. Every
// other scope covers only itself.
func (s Scope) Covers(t Scope) bool {
	if s.Kind != t.Kind {
		return false
	}
	switch s.Kind {
	case KindResource:
		return sameTarget(s, t) && t.Perms&^s.Perms == 0
	case KindLaunchContext:
		return s.ResourceType == t.ResourceType && (s.Role == "" || s.Role == t.Role)
	case KindOther:
		return s.Raw == t.Raw
	}
	return true // the fixed names: same kind, same scope
}

// sameTarget reports whether resource scope s reaches at least the
// resources t does, ignoring interactions.
func sameTarget(s, t Scope) bool {
	if s.Context != t.Context {
		return false
	}
	if s.ResourceType != "*" && s.ResourceType != t.ResourceType {
		return false
	}
	return len(s.Query) == 0 || canonicalQuery(s.Query) == canonicalQuery(t.Query)
}

// coveredBy reports whether the union of set covers t. Resource scopes add
// up, as the specification's scope equivalence says ("Observation.rs" is
// "Observation.r Observation.s"), so each interaction of t may come from a
// different scope of set.
func coveredBy(t Scope, set []Scope) bool {
	if t.Kind != KindResource {
		return slices.ContainsFunc(set, func(s Scope) bool { return s.Covers(t) })
	}
	var union Perms
	for _, s := range set {
		if s.Kind == KindResource && sameTarget(s, t) {
			union |= s.Perms
		}
	}
	return t.Perms != 0 && t.Perms&^union == 0
}

// canonicalQuery encodes v with names and values sorted and duplicates
// dropped, so equal restrictions compare equal however they were written.
func canonicalQuery(v url.Values) string {
	names := make([]string, 0, len(v))
	for name := range v {
		names = append(names, name)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		values := slices.Clone(v[name])
		slices.Sort(values)
		for _, value := range slices.Compact(values) {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(escapeQuery(name))
			b.WriteByte('=')
			b.WriteString(escapeQuery(value))
		}
	}
	return b.String()
}

// escapeQuery percent-encodes only what would change meaning when parsed
// back, keeping ':', '/' and '|' readable in canonical system|code values.
func escapeQuery(s string) string {
	var b strings.Builder
	for i := range len(s) {
		c := s[i]
		if !isScopeChar(c) || c == '%' || c == '&' || c == '=' || c == '+' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// isScopeChar reports whether c is an NQCHAR, the bytes RFC 6749 allows in a scope token.
func isScopeChar(c byte) bool {
	return c == 0x21 || (c >= 0x23 && c <= 0x5B) || (c >= 0x5D && c <= 0x7E)
}

// isResourceType reports whether s looks like a FHIR resource type name:
// an upper-case ASCII letter followed by ASCII letters.
func isResourceType(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := range len(s) {
		if !isLetter(s[i]) {
			return false
		}
	}
	return true
}

// isLowerWord reports whether s is 1 to 64 lower-case ASCII letters.
func isLowerWord(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := range len(s) {
		if s[i] < 'a' || s[i] > 'z' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

// isPrintable reports whether s is valid UTF-8 without control characters,
// so a decoded value can be shown on the consent page as it is.
func isPrintable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func invalid(raw, why string) error {
	return fmt.Errorf("%w %q: %s", ErrInvalid, raw, why)
}
