package main

import (
	"context"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/storage/sqlite"
)

func TestLaunchCreateCommand(t *testing.T) {
	env := newEnv(t)
	env.ok(t, nil, "", "tenant", "create", "--id", "clinic", "--fhir-base-url", "https://fhir.example/r4", "--fhir-base-url", "https://fhir.example/r5")
	var app clientJSON
	env.ok(t, &app, "", "client", "create", "--tenant", "clinic", "--id", "chart", "--name", "Chart", "--type", "public",
		"--redirect-uri", "https://app.example/cb", "--scope", "launch patient/*.rs", "--launch-uri", "https://app.example/launch")
	var ehr clientJSON
	env.ok(t, &ehr, "", "client", "create", "--tenant", "clinic", "--name", "EHR", "--type", "confidential-symmetric",
		"--scope", "system/*.rs", "--grant-type", "client_credentials", "--can-create-launch")
	if app.LaunchURI != "https://app.example/launch" || app.CanCreateLaunch || !ehr.CanCreateLaunch {
		t.Fatalf("launch flags of client create: app %+v, ehr %+v", app, ehr)
	}
	var u userJSON
	env.ok(t, &u, "", "user", "create", "--tenant", "clinic", "--email", "dr@clinic.example", "--profile", "Practitioner/1", "--no-password")

	var res manage.LaunchResult
	env.ok(t, &res, "", "launch", "create", "--tenant", "clinic", "--client", "chart", "--patient", "123", "--encounter", "e-1",
		"--user", "dr@clinic.example", "--intent", "reconcile-medications", "--style-url", "https://ehr.example/style.json",
		"--banner", "false", "--fhir-context", `[{"reference":"DiagnosticReport/7"}]`, "--aud", "https://fhir.example/r5")
	if len(res.Launch) < 43 || res.ExpiresIn != 600 || res.Iss != "https://fhir.example/r5" {
		t.Fatalf("launch create printed %+v", res)
	}
	// The URL is printed as it is, ready to copy into a browser.
	if _, out, _ := env.cli(t, "", "launch", "create", "--tenant", "clinic", "--client", "chart"); !strings.Contains(out, "&launch=") {
		t.Errorf("launch create printed an escaped launch_url:\n%s", out)
	}
	lu, err := url.Parse(res.LaunchURL)
	if err != nil || lu.Query().Get("launch") != res.Launch || lu.Query().Get("iss") != res.Iss {
		t.Fatalf("launch_url %q", res.LaunchURL)
	}

	s, err := sqlite.Open(context.Background(), filepath.Join(env["SMARTAUTH_DATA_DIR"], "smartauth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := s.GetLaunch(context.Background(), "clinic", res.Launch, time.Now())
	if err != nil {
		t.Fatalf("the printed launch value finds no usable launch: %v", err)
	}
	c := l.Context
	if l.ClientID != "chart" || l.UserID != u.ID || c.Patient != "123" || c.Encounter != "e-1" || c.Intent != "reconcile-medications" ||
		c.SmartStyleURL != "https://ehr.example/style.json" || c.NeedPatientBanner == nil || *c.NeedPatientBanner ||
		string(c.FHIRContext) != `[{"reference":"DiagnosticReport/7"}]` {
		t.Fatalf("stored launch %+v", l)
	}

	// With only the app: no banner preference, the first FHIR base URL.
	env.ok(t, &res, "", "launch", "create", "--tenant", "clinic", "--client", "chart")
	if res.Iss != "https://fhir.example/r4" {
		t.Fatalf("default iss %q", res.Iss)
	}

	for _, tc := range []struct {
		code int
		want string
		args []string
	}{
		{2, "--client is required", []string{"--tenant", "clinic"}},
		{2, "--tenant is required", []string{"--client", "chart"}},
		{2, "must be true or false", []string{"--tenant", "clinic", "--client", "chart", "--banner", "maybe"}},
		{1, `no tenant "ghost"`, []string{"--tenant", "ghost", "--client", "chart"}},
		{1, `no client "ghost" in tenant "clinic"`, []string{"--tenant", "clinic", "--client", "ghost"}},
		{1, "FHIR id", []string{"--tenant", "clinic", "--client", "chart", "--patient", "Patient/123"}},
		{1, "fhirContext", []string{"--tenant", "clinic", "--client", "chart", "--fhir-context", `{"reference":"Observation/1"}`}},
		{1, `no user "nobody@clinic.example" in tenant "clinic"`, []string{"--tenant", "clinic", "--client", "chart", "--user", "nobody@clinic.example"}},
		{1, "aud", []string{"--tenant", "clinic", "--client", "chart", "--aud", "https://other.example/r4"}},
	} {
		env.fails(t, tc.code, tc.want, "", append([]string{"launch", "create"}, tc.args...)...)
	}
	env.fails(t, 2, "unknown subcommand", "", "launch", "delete")
}
