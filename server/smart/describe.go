package smart

import (
	"slices"
	"strings"
)

// Describe says in plain language what granting s lets an app do, for the
// consent page. It errs towards saying more: wildcards mention data added
// later, and unknown scopes are shown as written.
func Describe(s Scope) string {
	switch s.Kind {
	case KindResource:
		return describeResource(s)
	case KindLaunch:
		return "Learn what you had open when you started it (such as the current patient)"
	case KindLaunchContext:
		return describeLaunchContext(s)
	case KindOpenID:
		return "Confirm who you are when you sign in"
	case KindFHIRUser:
		return "Know who you are (your FHIR identity)"
	case KindProfile:
		return "See your name and basic profile"
	case KindOfflineAccess:
		return "Stay signed in: get new tokens while you are away (offline)"
	case KindOnlineAccess:
		return "Keep access while you stay signed in: get new tokens until you sign out (online)"
	}
	return "Other permission: " + s.Raw
}

func describeResource(s Scope) string {
	var verbs []string
	for _, p := range []struct {
		perm Perms
		verb string
	}{
		{PermCreate, "create"}, {PermRead, "read"}, {PermUpdate, "update"},
		{PermDelete, "delete"}, {PermSearch, "search"},
	} {
		if s.Perms&p.perm != 0 {
			verbs = append(verbs, p.verb)
		}
	}
	what := "all kinds of records"
	if s.ResourceType != "*" {
		what = words(s.ResourceType) + " records"
	}
	var whose string
	switch s.Context {
	case "patient":
		whose = "for the current patient"
	case "user":
		whose = "that you can access"
	case "system":
		whose = "across the whole system"
	}
	out := capitalize(join(verbs, ", ", " and ")) + " " + what + " " + whose
	if s.ResourceType == "*" {
		out += ", including kinds added later"
	}
	if len(s.Query) > 0 {
		out += " (only where " + describeQuery(s) + ")"
	}
	return out
}

// describeQuery renders search parameters as "category is laboratory",
// showing the code of a system|code token and "or" for comma lists.
func describeQuery(s Scope) string {
	names := make([]string, 0, len(s.Query))
	for name := range s.Query {
		names = append(names, name)
	}
	slices.Sort(names)
	var parts []string
	for _, name := range names {
		for _, value := range s.Query[name] {
			var alts []string
			for alt := range strings.SplitSeq(value, ",") {
				system, code, found := strings.Cut(alt, "|")
				switch {
				case found && code != "":
					alt = code
				case found:
					alt = system
				}
				alts = append(alts, alt)
			}
			parts = append(parts, name+" is "+join(alts, ", ", " or "))
		}
	}
	return join(parts, ", ", " and ")
}

func describeLaunchContext(s Scope) string {
	var out string
	switch s.ResourceType {
	case "patient":
		out = "Know which patient is selected"
	case "encounter":
		out = "Know which encounter (visit) is selected"
	default:
		out = "Know which " + s.ResourceType + " is selected"
	}
	if s.Role != "" {
		out += " for the role " + s.Role
	}
	return out
}

// words splits a FHIR type name into lower-case words: "AllergyIntolerance"
// becomes "allergy intolerance".
func words(typ string) string {
	var b strings.Builder
	for i := range len(typ) {
		c := typ[i]
		if c >= 'A' && c <= 'Z' {
			if i > 0 {
				b.WriteByte(' ')
			}
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// join lists items English-style: "a", "a and b", "a, b and c".
func join(items []string, sep, last string) string {
	if len(items) <= 1 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], sep) + last + items[len(items)-1]
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
