package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// noun is a command that manages one kind of thing through subcommands.
type noun struct {
	name, summary string
	verbs         []verb
}

// verb is a subcommand of a noun.
type verb struct{ name, summary string }

// nouns lists the managing commands and their subcommands, in the order
// help shows them; manageCommand accepts exactly these.
var nouns = []noun{
	{"tenant", "manage tenants", []verb{
		{"create", "create a tenant, its own issuer with its own signing keys"},
		{"list", "list the tenants"},
		{"set-access-token-alg", "sign the tenant's access tokens with RS256, PS256 or ES256; earlier tokens stay valid"},
		{"set-rate-limits", "set the requests a minute one client and one address may make at the OAuth endpoints (0 default, negative none)"},
		{"set-patient-search", "let the patient picker search the tenant's FHIR server (client secret read from stdin)"},
		{"clear-patient-search", "stop searching the tenant's FHIR server"},
		{"set-gateway", "put the tenant's FHIR server behind its SMART gateway (with --upstream-auth header, the header value read from stdin)"},
		{"clear-gateway", "stop forwarding the tenant's gateway to its FHIR server"},
	}},
	{"client", "manage a tenant's OAuth clients", []verb{
		{"create", "register a client; a confidential client's secret is printed once"},
		{"list", "list a tenant's clients, never their secrets"},
		{"delete", "delete a client, its tokens and the consents given to it"},
		{"rotate-secret", "give a confidential client a new secret, printed once"},
		{"initial-access-token", "make a token that registers one client (RFC 7591), printed once"},
		{"list-initial-access-tokens", "list the outstanding initial access tokens, never their values"},
		{"revoke-initial-access-token", "revoke an initial access token by its ref"},
	}},
	{"user", "manage a tenant's users", []verb{
		{"create", "create a local user (password read from stdin)"},
	}},
	{"admin", "manage admin accounts and admin API clients", []verb{
		{"create", "create an operator, or with --tenant a tenant's admin (password read from stdin; TOTP set up at first sign-in)"},
		{"create-client", "create an admin API client (client_credentials, scope admin), an operator's or one tenant's; secret printed once"},
	}},
	{"patient", "manage a tenant's patient roster", []verb{
		{"import", "import FHIR Patient resources: a Bundle, one Patient or NDJSON"},
		{"list", "list the roster, or search it by name, birth date or identifier"},
	}},
	{"keys", "manage a tenant's signing keys", []verb{
		{"rotate", "add new signing keys, retiring the old after a window"},
		{"list", "list the signing keys and their state, never private material"},
	}},
	{"launch", "launch apps as an EHR does", []verb{
		{"create", "create an EHR launch of an app in a clinical context"},
	}},
	{"idp", "manage a tenant's upstream identity providers and email domains", []verb{
		{"add", "add a provider and route email domains to it (client secret read from stdin)"},
		{"list", "list the providers and their domains, never their secrets"},
		{"delete", "delete a provider and its domain routes"},
	}},
}

// findNoun returns the managing command called name.
func findNoun(name string) (noun, bool) {
	for _, n := range nouns {
		if n.name == name {
			return n, true
		}
	}
	return noun{}, false
}

func (n noun) verbNames() []string {
	names := make([]string, 0, len(n.verbs))
	for _, v := range n.verbs {
		names = append(names, v.name)
	}
	return names
}

func (n noun) has(name string) bool {
	for _, v := range n.verbs {
		if v.name == name {
			return true
		}
	}
	return false
}

// printUsage writes the list of commands and their subcommands.
func printUsage(w io.Writer) {
	fmt.Fprint(w, "usage: smartauth [command] [flags]\n\ncommands:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  serve\tserve HTTP (the default)\n")
	fmt.Fprintf(tw, "  migrate\tapply database migrations\n")
	for _, n := range nouns {
		fmt.Fprintf(tw, "  %s\t%s\n", n.name, n.summary)
		for _, line := range wrapWords(n.verbNames(), 60) {
			fmt.Fprintf(tw, "\t  %s\n", line)
		}
	}
	fmt.Fprintf(tw, "  bench\tload-test a server started on loopback and report throughput\n")
	tw.Flush()
	fmt.Fprint(w, "\nRun \"smartauth COMMAND --help\" for a command's subcommands or flags,\n"+
		"and \"smartauth COMMAND SUBCOMMAND --help\" for a subcommand's flags.\n")
}

// printNounUsage writes the subcommands of one managing command.
func printNounUsage(w io.Writer, n noun) {
	fmt.Fprintf(w, "usage: smartauth %s SUBCOMMAND [flags]\n\n%s%s.\n\nsubcommands:\n",
		n.name, strings.ToUpper(n.summary[:1]), n.summary[1:])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, v := range n.verbs {
		fmt.Fprintf(tw, "  %s\t%s\n", v.name, v.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRun \"smartauth %s SUBCOMMAND --help\" for a subcommand's flags.\n", n.name)
}

// wrapWords joins words with ", " into lines of at most width characters.
func wrapWords(words []string, width int) []string {
	var lines []string
	line := ""
	for i, w := range words {
		if i < len(words)-1 {
			w += ","
		}
		switch {
		case line == "":
			line = w
		case len(line)+1+len(w) > width:
			lines = append(lines, line)
			line = w
		default:
			line += " " + w
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
