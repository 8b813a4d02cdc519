package main

import (
	"strings"
	"testing"
)

// TestPlainErrors: every missing or duplicate tenant, client, user,
// operator, identity provider, domain and launch target reads as one plain
// line naming it, on both backends, whatever the database said.
func TestPlainErrors(t *testing.T) {
	onBothBackends(t, func(t *testing.T, env testEnv) {
		const pw = "a long passphrase\n"
		env.ok(t, nil, "", "tenant", "create", "--id", "clinic", "--fhir-base-url", "https://fhir.example/r4")
		env.ok(t, nil, "", "client", "create", "--tenant", "clinic", "--id", "chart", "--name", "Chart", "--type", "public",
			"--redirect-uri", "https://app.example/cb", "--scope", "launch patient/*.rs")
		env.ok(t, nil, pw, "user", "create", "--tenant", "clinic", "--email", "dr@clinic.example", "--profile", "Practitioner/1")
		env.ok(t, nil, pw, "admin", "create", "--email", "ops@example.org")
		env.ok(t, nil, "", "idp", "add", "--tenant", "clinic", "--id", "pool", "--type", "oidc", "--issuer", "https://idp.example",
			"--client-id", "c", "--public", "--domain", "clinic.example")

		const nosuch = `no tenant "nosuch"`
		client := []string{"--name", "X", "--type", "public", "--redirect-uri", "https://x.example/cb", "--scope", "openid"}
		idp := []string{"--type", "oidc", "--client-id", "c", "--public"}
		tests := []struct {
			want  string
			stdin string
			args  []string
		}{
			{`tenant "clinic" already exists`, "", []string{"tenant", "create", "--id", "clinic", "--fhir-base-url", "https://x.example"}},
			{`client "chart" already exists in tenant "clinic"`, "", append([]string{"client", "create", "--tenant", "clinic", "--id", "chart"}, client...)},
			{`user "DR@clinic.example" already exists in tenant "clinic"`, pw, []string{"user", "create", "--tenant", "clinic", "--email", "DR@clinic.example", "--profile", "Practitioner/2"}},
			{`user "dr@clinic.example" already exists in tenant "clinic"`, pw, []string{"admin", "create", "--tenant", "clinic", "--email", "dr@clinic.example"}},
			{`operator "ops@example.org" already exists`, pw, []string{"admin", "create", "--email", "ops@example.org"}},
			{`identity provider "pool" already exists in tenant "clinic"`, "", append([]string{"idp", "add", "--tenant", "clinic", "--id", "pool", "--issuer", "https://other.example"}, idp...)},
			{`domain "Clinic.Example" already exists in tenant "clinic"`, "", append([]string{"idp", "add", "--tenant", "clinic", "--id", "other",
				"--issuer", "https://other.example", "--domain", "staff.example", "--domain", "Clinic.Example"}, idp...)},

			{`no client "ghost" in tenant "clinic"`, "", []string{"client", "delete", "--tenant", "clinic", "--id", "ghost"}},
			{`no client "ghost" in tenant "clinic"`, "", []string{"client", "rotate-secret", "--tenant", "clinic", "--id", "ghost"}},
			{`no outstanding initial access token "ghost" in tenant "clinic"`, "", []string{"client", "revoke-initial-access-token", "--tenant", "clinic", "--ref", "ghost"}},
			{`no identity provider "ghost" in tenant "clinic"`, "", []string{"idp", "delete", "--tenant", "clinic", "--id", "ghost"}},
			{`no client "ghost" in tenant "clinic"`, "", []string{"launch", "create", "--tenant", "clinic", "--client", "ghost"}},
			{`no user "nobody@clinic.example" in tenant "clinic"`, "", []string{"launch", "create", "--tenant", "clinic", "--client", "chart", "--user", "nobody@clinic.example"}},
			{`no user "u-404" in tenant "clinic"`, "", []string{"launch", "create", "--tenant", "clinic", "--client", "chart", "--user", "u-404"}},

			{nosuch, "secret\n", []string{"tenant", "set-patient-search", "--tenant", "nosuch", "--fhir-base-url", "https://fhir.example/r4",
				"--token-url", "https://fhir.example/token", "--client-id", "c"}},
			{nosuch, "", []string{"tenant", "clear-patient-search", "--tenant", "nosuch"}},
			{nosuch, "", []string{"tenant", "set-gateway", "--tenant", "nosuch", "--upstream-url", "https://fhir.example/r4"}},
			{nosuch, "api-key\n", []string{"tenant", "set-gateway", "--tenant", "nosuch", "--upstream-url", "https://fhir.example/r4",
				"--upstream-auth", "header", "--header-name", "X-Api-Key"}},
			{nosuch, "", []string{"tenant", "clear-gateway", "--tenant", "nosuch"}},
			{nosuch, "", []string{"tenant", "set-access-token-alg", "--tenant", "nosuch", "--alg", "RS256"}},
			{nosuch, "", []string{"tenant", "set-rate-limits", "--tenant", "nosuch", "--client-per-minute", "10"}},
			{nosuch, "", append([]string{"client", "create", "--tenant", "nosuch"}, client...)},
			{nosuch, "", []string{"client", "list", "--tenant", "nosuch"}},
			{nosuch, "", []string{"client", "delete", "--tenant", "nosuch", "--id", "chart"}},
			{nosuch, "", []string{"client", "rotate-secret", "--tenant", "nosuch", "--id", "chart"}},
			{nosuch, "", []string{"client", "initial-access-token", "--tenant", "nosuch"}},
			{nosuch, "", []string{"client", "list-initial-access-tokens", "--tenant", "nosuch"}},
			{nosuch, "", []string{"client", "revoke-initial-access-token", "--tenant", "nosuch", "--ref", "r"}},
			{nosuch, pw, []string{"user", "create", "--tenant", "nosuch", "--email", "a@clinic.example", "--profile", "Practitioner/1"}},
			{nosuch, pw, []string{"admin", "create", "--tenant", "nosuch", "--email", "a@clinic.example"}},
			{nosuch, "", []string{"admin", "create-client", "--tenant", "nosuch", "--name", "x"}},
			{nosuch, `{"resourceType":"Patient","id":"p1"}`, []string{"patient", "import", "--tenant", "nosuch"}},
			{nosuch, "", []string{"patient", "list", "--tenant", "nosuch"}},
			{nosuch, "", []string{"keys", "rotate", "--tenant", "nosuch"}},
			{nosuch, "", []string{"keys", "list", "--tenant", "nosuch"}},
			{nosuch, "", []string{"launch", "create", "--tenant", "nosuch", "--client", "chart"}},
			{nosuch, "", append([]string{"idp", "add", "--tenant", "nosuch", "--id", "x", "--issuer", "https://x.example"}, idp...)},
			{nosuch, "", []string{"idp", "list", "--tenant", "nosuch"}},
			{nosuch, "", []string{"idp", "delete", "--tenant", "nosuch", "--id", "pool"}},
		}
		covered := map[string]bool{}
		for _, tc := range tests {
			t.Run(strings.Join(tc.args[:2], " ")+": "+tc.want, func(t *testing.T) {
				code, out, errs := env.cli(t, tc.stdin, tc.args...)
				if want := "smartauth: " + tc.want + "\n"; code != 1 || out != "" || errs != want {
					t.Fatalf("smartauth %s: exit %d, stdout %q, stderr %q; want exit 1 and stderr %q", strings.Join(tc.args, " "), code, out, errs, want)
				}
			})
			if tc.want == nosuch {
				covered[tc.args[0]+" "+tc.args[1]] = true
			}
		}
		// Every subcommand that takes --tenant is in the table above.
		for _, n := range nouns {
			for _, v := range n.verbs {
				_, _, flags := env.cli(t, "", n.name, v.name, "--help")
				if strings.Contains(flags, "  -tenant string") && !covered[n.name+" "+v.name] {
					t.Errorf("%s %s takes --tenant but no case tries a missing tenant", n.name, v.name)
				}
			}
		}

		// The layers and constraints are for whoever debugs, at debug level.
		env["SMARTAUTH_LOG_LEVEL"] = "debug"
		_, _, errs := env.cli(t, "", "tenant", "create", "--id", "clinic", "--fhir-base-url", "https://x.example")
		if !strings.Contains(errs, "storage: already exists") || !strings.HasSuffix(errs, "\nsmartauth: tenant \"clinic\" already exists\n") {
			t.Fatalf("debug output:\n%s", errs)
		}
	})
}

// TestHelpListsCommands: help lists every command and subcommand, and each
// subcommand it lists is one that runs.
func TestHelpListsCommands(t *testing.T) {
	env := newEnv(t)
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		code, out, errs := env.cli(t, "", args...)
		if code != 0 || errs != "" || !strings.HasPrefix(out, "usage: smartauth [command]") {
			t.Fatalf("smartauth %s: exit %d, stderr %q, stdout:\n%s", args[0], code, errs, out)
		}
		for _, n := range nouns {
			for _, v := range n.verbs {
				if !strings.Contains(out, "  "+n.name+" ") || !strings.Contains(out, " "+v.name) {
					t.Errorf("smartauth %s does not list %s %s:\n%s", args[0], n.name, v.name, out)
				}
			}
		}
	}
	for _, n := range nouns {
		for _, args := range [][]string{{n.name, "--help"}, {n.name, "-h"}, {n.name, "help"}, {"help", n.name}} {
			code, out, errs := env.cli(t, "", args...)
			if code != 0 || errs != "" || !strings.HasPrefix(out, "usage: smartauth "+n.name+" SUBCOMMAND") {
				t.Fatalf("smartauth %s: exit %d, stderr %q, stdout:\n%s", strings.Join(args, " "), code, errs, out)
			}
			for _, v := range n.verbs {
				if !strings.Contains(out, "\n  "+v.name+" ") {
					t.Errorf("smartauth %s does not list %s:\n%s", strings.Join(args, " "), v.name, out)
				}
			}
		}
		for _, v := range n.verbs {
			code, out, errs := env.cli(t, "", n.name, v.name, "--help")
			if code != 0 || out != "" || !strings.HasPrefix(errs, "Usage of "+n.name+" "+v.name) {
				t.Errorf("smartauth %s %s --help: exit %d, stdout %q, stderr %q", n.name, v.name, code, out, errs)
			}
		}
	}
	// Flags with no command still go to serve.
	if code, _, errs := env.cli(t, "", "serve", "--help"); code != 0 || !strings.Contains(errs, "-addr") {
		t.Fatalf("serve --help: exit %d, stderr %q", code, errs)
	}
}
