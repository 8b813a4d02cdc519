package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/password"
	"github.com/smartauth/smartauth/storage"
)

// The demo tenant exists so a newcomer can try every flow in a minute. Its
// passwords are public by design; never enable the demo on a real deployment.
const (
	demoTenant        = "demo"
	demoFHIRBase      = "https://fhir.example.org/r4"
	demoClientID      = "demo-app"
	demoClinician     = "clinician@demo.test"
	demoClinicianPass = "demo-clinician"
	demoPatientUser   = "patient@demo.test"
	demoPatientPass   = "demo-patient"
	demoOperator      = "operator@demo.test"
	demoOperatorPass  = "demo-operator"
)

//go:embed testdata/demo-patients.ndjson
var demoPatients []byte

var demoActor = manage.Actor{ID: "demo-seed"}

// demoStep creates one piece of the demo when get reports it missing.
type demoStep struct {
	what   string
	get    func() error
	create func() error
}

type demoInfo struct {
	issuer string
	base   string
	// gateway is the demo tenant's SMART gateway, one of its FHIR base URLs.
	gateway string
	// upstream is the FHIR server behind the gateway, when one was given.
	upstream string
	// operatorEnrolled is true once the demo operator has an authenticator app.
	operatorEnrolled bool
}

// seedDemo ensures the demo tenant, app, users and patients exist. Each piece
// is created only when missing, so a restart keeps whatever was changed and
// a first start that was interrupted is completed by the next. upstream,
// when not empty, is the FHIR server the demo tenant's gateway forwards to.
func seedDemo(ctx context.Context, d *deps, base, upstream string) (*demoInfo, error) {
	issuer := base + "/t/" + demoTenant
	info := &demoInfo{issuer: issuer, base: base, gateway: issuer + "/fhir", upstream: strings.TrimRight(upstream, "/")}
	m, st := d.manage, d.store
	steps := []demoStep{
		{"tenant", func() error { _, err := st.GetTenant(ctx, demoTenant); return err }, func() error {
			_, err := m.CreateTenant(ctx, manage.TenantInput{ID: demoTenant, Name: "Demo Clinic", FHIRBaseURLs: []string{demoFHIRBase, info.gateway}}, demoActor)
			return err
		}},
		// A demo tenant seeded before it had a gateway, or at another
		// address, gets the gateway's base as one of its FHIR base URLs.
		{"gateway FHIR base URL", func() error {
			t, err := st.GetTenant(ctx, demoTenant)
			if err == nil && !slices.Contains(t.FHIRBaseURLs, info.gateway) {
				err = fmt.Errorf("%s is not a FHIR base URL of the demo tenant: %w", info.gateway, storage.ErrNotFound)
			}
			return err
		}, func() error { return addDemoGatewayBase(ctx, d, info.gateway) }},
		{"patients", func() error { _, err := st.GetPatient(ctx, demoTenant, "demo-1"); return err }, func() error {
			_, err := m.ImportPatients(ctx, demoTenant, bytes.NewReader(demoPatients), demoActor)
			return err
		}},
		{"client", func() error { _, err := st.GetClient(ctx, demoTenant, demoClientID); return err }, func() error {
			_, _, err := m.CreateClient(ctx, manage.ClientInput{
				TenantID:     demoTenant,
				ID:           demoClientID,
				Name:         "smartauth demo app",
				Type:         storage.ClientPublic,
				RedirectURIs: []string{base + "/demo-app/"},
				Scopes:       []string{"openid fhirUser launch launch/patient offline_access online_access patient/*.rs user/*.rs"},
				// An EHR launch opens the demo app, which adds iss and launch.
				LaunchURI: base + "/demo-app/?tenant=" + demoTenant,
			}, demoActor)
			return err
		}},
	}
	for _, u := range []manage.UserInput{
		{TenantID: demoTenant, Email: demoClinician, Password: demoClinicianPass,
			Profiles: []storage.Profile{{FHIRUser: "Practitioner/demo-practitioner", Label: "Attending physician"}}},
		{TenantID: demoTenant, Email: demoPatientUser, Password: demoPatientPass,
			Profiles: []storage.Profile{{FHIRUser: "Patient/demo-1", Label: "Patient"}}},
	} {
		steps = append(steps, demoStep{"user " + u.Email, func() error { _, err := st.GetUserByEmail(ctx, demoTenant, u.Email); return err }, func() error {
			_, err := m.CreateUser(ctx, u, demoActor)
			return err
		}})
	}
	steps = append(steps, demoStep{"operator", func() error {
		_, err := st.GetUserByEmail(ctx, storage.OperatorRealm, demoOperator)
		return err
	}, func() error {
		_, err := m.CreateAdmin(ctx, "", demoOperator, demoOperatorPass, demoActor)
		return err
	}})
	if info.upstream != "" {
		steps = append(steps, demoStep{"gateway upstream", func() error {
			t, err := st.GetTenant(ctx, demoTenant)
			if err == nil && (t.Policy.Gateway.UpstreamURL != info.upstream || t.Policy.Gateway.UpstreamAuth != storage.GatewayAuthNone) {
				err = fmt.Errorf("the demo gateway forwards elsewhere: %w", storage.ErrNotFound)
			}
			return err
		}, func() error {
			_, err := m.SetGateway(ctx, demoTenant, manage.GatewayInput{UpstreamURL: info.upstream, UpstreamAuth: storage.GatewayAuthNone}, demoActor)
			return err
		}})
	}
	created := false
	for _, s := range steps {
		err := s.get()
		if err == nil {
			continue
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("look up demo %s: %w", s.what, err)
		}
		if err := s.create(); err != nil {
			return nil, fmt.Errorf("create demo %s: %w", s.what, err)
		}
		created = true
	}
	if created {
		d.log.Info("created the demo tenant", "tenant", demoTenant)
	}
	op, err := st.GetUserByEmail(ctx, storage.OperatorRealm, demoOperator)
	if err != nil {
		return nil, fmt.Errorf("look up demo operator: %w", err)
	}
	info.operatorEnrolled = len(op.TOTPSecret) > 0
	return info, nil
}

// addDemoGatewayBase makes gateway one of the demo tenant's FHIR base URLs
// in place of a gateway base of an earlier address (another port), keeping
// the rest of the tenant as it is.
func addDemoGatewayBase(ctx context.Context, d *deps, gateway string) error {
	t, err := d.store.GetTenant(ctx, demoTenant)
	if err != nil {
		return err
	}
	bases := []string{}
	for _, b := range t.FHIRBaseURLs {
		if !strings.HasSuffix(b, "/t/"+demoTenant+"/fhir") {
			bases = append(bases, b)
		}
	}
	p := t.Policy
	_, err = d.manage.UpdateTenant(ctx, manage.TenantUpdate{
		ID: t.ID, Name: t.Name, FHIRBaseURLs: append(bases, gateway),
		MFARequired: p.MFARequired, MFAOffered: p.MFAOffered, AllowEmailLinking: p.AllowEmailLinking,
		JITProvisioning: p.JITProvisioning, OpaqueAccessTokens: p.OpaqueAccessTokens, AccessTokenAlg: p.AccessTokenAlg,
		AccessTokenTTL: time.Duration(p.AccessTokenTTL), RefreshTokenTTL: time.Duration(p.RefreshTokenTTL), IDTokenTTL: time.Duration(p.IDTokenTTL),
		Version: t.Version,
	}, demoActor)
	return err
}

func (i *demoInfo) print(w io.Writer) {
	fmt.Fprintf(w, "\nDemo tenant %q — point a browser at:\n", demoTenant)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  Tenant page\t%s/\n", i.issuer)
	fmt.Fprintf(tw, "  SMART configuration\t%s/.well-known/smart-configuration\n", i.issuer)
	fmt.Fprintf(tw, "  OpenID configuration\t%s/.well-known/openid-configuration\n", i.issuer)
	fmt.Fprintf(tw, "  JWKS\t%s/.well-known/jwks.json\n", i.issuer)
	fmt.Fprintf(tw, "  FHIR base URL (aud)\t%s (fictional)\n", demoFHIRBase)
	if i.upstream != "" {
		fmt.Fprintf(tw, "  FHIR gateway\t%s (forwards to %s)\n", i.gateway, i.upstream)
	} else {
		fmt.Fprintf(tw, "  FHIR gateway\t%s (reads need an upstream: --demo-fhir-upstream)\n", i.gateway)
	}
	fmt.Fprintf(tw, "  Public client\t%s\n", demoClientID)
	fmt.Fprintf(tw, "  Demo SMART app\t%s\n", i.demoAppURL(demoFHIRBase))
	fmt.Fprintf(tw, "  … through the gateway\t%s\n", i.demoAppURL(i.gateway))
	fmt.Fprintf(tw, "  Clinician\t%s / %s\n", demoClinician, demoClinicianPass)
	fmt.Fprintf(tw, "  Patient\t%s / %s\n", demoPatientUser, demoPatientPass)
	fmt.Fprintf(tw, "  Admin pages\t%s/admin/\n", i.base)
	if i.operatorEnrolled {
		fmt.Fprintf(tw, "  Operator\t%s / %s and a code from the authenticator app\n", demoOperator, demoOperatorPass)
	} else {
		fmt.Fprintf(tw, "  Operator\t%s / %s (an authenticator app is set up at first sign-in)\n", demoOperator, demoOperatorPass)
	}
	tw.Flush()
	fmt.Fprintln(w, "An EHR launch of the demo app for a patient (prints the URL to open):")
	fmt.Fprintf(w, "  go run . launch create --tenant %s --client %s --patient demo-1 [--aud %s]\n", demoTenant, demoClientID, i.gateway)
	fmt.Fprintln(w, "These credentials are public, so the demo runs only on loopback. For real use, serve with --demo=false")
	fmt.Fprintln(w, "(SMARTAUTH_DEMO=false) on a database the demo has never seeded.")
}

// refuseReachableDemoOperator refuses to serve beyond loopback while the
// demo operator can still sign in with its published password: whoever
// reached the server first could take the account, and with it every
// tenant, by enrolling their own authenticator. exposed says how the server
// is reachable.
func refuseReachableDemoOperator(ctx context.Context, store storage.Storage, exposed string) error {
	u, err := store.GetUserByEmail(ctx, storage.OperatorRealm, demoOperator)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up the demo operator: %w", err)
	}
	if u.Disabled || u.PasswordHash == "" {
		return nil
	}
	switch err := password.Verify(u.PasswordHash, demoOperatorPass); {
	case errors.Is(err, password.ErrMismatch):
		return nil
	case err != nil:
		return fmt.Errorf("check the demo operator's password: %w", err)
	}
	return fmt.Errorf("the demo operator %s can still sign in with its public password, and this server %s: "+
		"disable that operator on the admin pages while serving on loopback, or set %s=true (--%s)",
		demoOperator, exposed, demoOnNetworkEnv, demoOnNetworkFlag)
}

// demoAppURL opens the demo SMART app (web/demo-app) for a standalone launch
// against the demo tenant, with iss the FHIR server to use.
func (i *demoInfo) demoAppURL(iss string) string {
	return i.base + "/demo-app/?tenant=" + demoTenant + "&iss=" + iss
}
