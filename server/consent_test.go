package server_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// TestRoleLimitsScopes: the role chosen at sign-in limits what is granted.
// Acting as a patient gives patient/ scopes for that patient only, never
// user/ or system/ ones; acting as a clinician gives user/ scopes and, with
// a picked patient, patient/ ones; system/ is never a person's. The consent
// page offers only what will be granted, and ticking more by hand changes
// nothing.
func TestRoleLimitsScopes(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		base := authzSetup(t, srv)
		ctx := context.Background()
		u, err := srv.Store.GetUser(ctx, authzTenant, base.userID)
		if err != nil {
			t.Fatal(err)
		}
		u.Profiles = append(u.Profiles, storage.Profile{FHIRUser: "Patient/456", Label: "Patient"})
		if err := srv.Store.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		requested := []string{"openid", "fhirUser", "launch/patient", "patient/*.rs", "user/*.rs", "user/Observation.rs", "system/*.rs"}
		e := base.withApp(t, "roles-app", requested, requested)

		for _, tc := range []struct {
			role    string
			granted []string
			refused []string
			reason  string
			patient string
			acting  string
		}{
			{"Patient/456", []string{"openid", "fhirUser", "launch/patient", "patient/*.rs"},
				[]string{"user/*.rs", "user/Observation.rs", "system/*.rs"}, "acting for a patient", "456", "acting as Patient (456)."},
			{"Practitioner/123", []string{"openid", "fhirUser", "launch/patient", "patient/*.rs", "user/*.rs", "user/Observation.rs"},
				[]string{"system/*.rs"}, "only for backend services", authzPatient, "acting as Attending physician (Practitioner/123)."},
		} {
			t.Run(tc.role, func(t *testing.T) {
				verifier := oauth2.GenerateVerifier()
				login := e.get(t, e.browser, e.authURL(verifier))
				role := e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, authzEmail, authzPassword), nil)
				consent := e.throughPicker(t, e.post(t, e.browser, e.iss+"/role", stepForm(role, url.Values{"profile": {tc.role}}), nil))

				// The role is named once, its type not doubled.
				if !strings.Contains(consent.body, tc.acting) || strings.Contains(consent.body, "Patient Patient/") {
					t.Errorf("consent page does not say %q", tc.acting)
				}
				if !strings.Contains(consent.body, "Know the patient you chose: ") || strings.Contains(consent.body, "may be asked") {
					t.Errorf("consent page does not say launch/patient gives the patient chosen")
				}
				offered := consent.offered()
				cut := strings.Index(consent.body, `id="consent-refused"`)
				if cut < 0 {
					t.Fatalf("consent page lists no scope as left out\n%s", consent.body)
				}
				grantedPart, refusedPart := consent.body[:cut], consent.body[cut:]
				if !strings.Contains(refusedPart, tc.reason) {
					t.Errorf("consent page does not say why scopes are left out (%q)\n%s", tc.reason, refusedPart)
				}
				for _, sc := range tc.refused {
					if slices.Contains(offered, sc) || strings.Contains(grantedPart, "<code>"+sc+"</code>") {
						t.Errorf("consent page offers %s", sc)
					}
					if !strings.Contains(refusedPart, "<code>"+sc+"</code>") {
						t.Errorf("consent page does not list %s as left out", sc)
					}
				}
				// Ticking every requested scope by hand grants no more.
				q := authzCallbackParams(t, e.decide(t, consent, "allow", requested, nil))
				tok, err := e.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
				if err != nil {
					t.Fatal(err)
				}
				want := strings.Join(tc.granted, " ")
				if got := tok.Extra("scope"); got != want {
					t.Errorf("token response scope %q, want %q", got, want)
				}
				at, _ := authzVerify(t, e, tok.AccessToken, jose.ES256)
				if at["scope"] != want {
					t.Errorf("access token scope %q, want %q", at["scope"], want)
				}
				if at["patient"] != tc.patient || at["fhirUser"] != e.fhirBase+"/"+tc.role {
					t.Errorf("access token patient %v fhirUser %v, want %s and %s", at["patient"], at["fhirUser"], tc.patient, tc.role)
				}
			})
		}
	})
}

// TestPatientRoleOnlyOwnRecord: someone signed in as a patient cannot use
// an EHR launch made for another patient's record.
func TestPatientRoleOnlyOwnRecord(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	base := authzSetup(t, srv)
	ctx := context.Background()
	u, err := srv.Store.GetUser(ctx, authzTenant, base.userID)
	if err != nil {
		t.Fatal(err)
	}
	u.Profiles = []storage.Profile{{FHIRUser: "Patient/456", Label: "Self"}}
	if err := srv.Store.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	e := base.withApp(t, "portal-app", ehrScopes, []string{"launch", "openid", "fhirUser", "patient/*.rs"})
	launchFor := func(patient string) authzPage {
		launch := createLaunch(t, srv, authzTenant, "portal-app", "", storage.LaunchContext{Patient: patient})
		login := e.get(t, e.browser, e.authURL(oauth2.GenerateVerifier(), oauth2.SetAuthURLParam("launch", launch)))
		return e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, authzEmail, authzPassword), nil)
	}
	// Another patient's record: the app hears access_denied, and no code.
	refusedAtApp(t, "launch for another patient", launchFor(authzPatient), "access_denied")
	if page := launchFor("456"); page.status != http.StatusOK || !strings.Contains(page.body, `action="`+e.iss+`/consent"`) {
		t.Errorf("launch for the patient's own record: %d, want consent\n%s", page.status, page.body)
	}
}
