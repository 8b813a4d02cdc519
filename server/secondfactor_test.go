package server_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/oauth2"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

var (
	manualKey     = regexp.MustCompile(`<code id="manual-key">([^<]+)</code>`)
	recoveryCodes = regexp.MustCompile(`<li><code>([^<]+)</code></li>`)
)

// totpCode is what an authenticator app shows for the key at time at.
func totpCode(t *testing.T, key string, at time.Time) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(strings.ReplaceAll(key, " ", ""), at,
		totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// editTenantPolicy changes the authz tenant's policy before any request
// reads it (tenants are cached for a few seconds).
func editTenantPolicy(t *testing.T, srv *servertest.Server, edit func(*storage.TenantPolicy)) {
	t.Helper()
	tn, err := srv.Store.GetTenant(context.Background(), authzTenant)
	if err != nil {
		t.Fatal(err)
	}
	edit(&tn.Policy)
	if err := srv.Store.UpdateTenant(context.Background(), tn); err != nil {
		t.Fatal(err)
	}
}

// passwordSignIn opens a new browser, starts the app's request and signs in
// with the password, returning the browser and the page that follows.
func (e *authzEnv) passwordSignIn(t *testing.T) (*http.Client, authzPage) {
	t.Helper()
	b := authzBrowser(t)
	login := e.get(t, b, e.authURL(oauth2.GenerateVerifier()))
	return b, e.post(t, b, e.iss+"/login", authzLoginForm(login, authzEmail, authzPassword), nil)
}

func TestSecondFactor(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		ctx := context.Background()
		editTenantPolicy(t, srv, func(p *storage.TenantPolicy) { p.MFARequired = true })
		password := func(b *http.Client) authzPage {
			login := e.get(t, b, e.authURL(oauth2.GenerateVerifier()))
			return e.post(t, b, e.iss+"/login", authzLoginForm(login, authzEmail, authzPassword), nil)
		}
		submit := func(b *http.Client, page authzPage, path string, form url.Values) authzPage {
			return e.post(t, b, e.iss+path, stepForm(page, form), nil)
		}

		// The tenant requires a second factor and the user has none: enrollment.
		enroll := password(e.browser)
		m := manualKey.FindStringSubmatch(enroll.body)
		if enroll.status != http.StatusOK || m == nil || !strings.Contains(enroll.body, `src="data:image/png;base64,`) {
			t.Fatalf("sign-in without a second factor: %d, want the enrollment page\n%s", enroll.status, enroll.body)
		}
		key := html.UnescapeString(m[1])
		// Nothing after sign-in is reachable before the second factor.
		if p := e.decide(t, enroll, "allow", authzScopes, nil); p.status != http.StatusBadRequest || p.header.Get("Location") != "" {
			t.Errorf("consent before the second factor: %d Location %q, want 400", p.status, p.header.Get("Location"))
		}
		if p := submit(e.browser, enroll, "/mfa/enroll", url.Values{"code": {"000000"}}); p.status != http.StatusUnauthorized ||
			!strings.Contains(p.body, key) {
			t.Errorf("wrong enrollment code: %d, want the same key again", p.status)
		}
		now := srv.Clock.Now()
		codes := submit(e.browser, enroll, "/mfa/enroll", url.Values{"code": {totpCode(t, key, now)}})
		found := recoveryCodes.FindAllStringSubmatch(codes.body, -1)
		if codes.status != http.StatusOK || len(found) != 10 {
			t.Fatalf("confirmed enrollment: %d with %d recovery codes, want 10\n%s", codes.status, len(found), codes.body)
		}
		e.throughPicker(t, submit(e.browser, codes, "/continue", url.Values{}))

		// Enrolled: the next sign-in asks for a code, once per code.
		b2 := authzBrowser(t)
		ask := password(b2)
		if ask.status != http.StatusOK || !strings.Contains(ask.body, `autocomplete="one-time-code"`) {
			t.Fatalf("sign-in when enrolled: %d, want the code page\n%s", ask.status, ask.body)
		}
		if p := submit(b2, ask, "/mfa", url.Values{"code": {totpCode(t, key, now)}}); p.status != http.StatusUnauthorized {
			t.Errorf("the enrollment code used again: %d, want 401", p.status)
		}
		next := totpCode(t, key, now.Add(30*time.Second))
		picker := submit(b2, ask, "/mfa", url.Values{"code": {next}})
		if picker.status != http.StatusOK || !strings.Contains(picker.body, "Choose a patient") {
			t.Fatalf("right code: %d, want the patient picker\n%s", picker.status, picker.body)
		}
		b3 := authzBrowser(t)
		if p := submit(b3, password(b3), "/mfa", url.Values{"code": {next}}); p.status != http.StatusUnauthorized {
			t.Errorf("a code already used, in another browser: %d, want 401", p.status)
		}

		// A recovery code works once.
		recovery := html.UnescapeString(found[0][1])
		b4 := authzBrowser(t)
		if p := submit(b4, password(b4), "/mfa", url.Values{"recovery_code": {recovery}}); !strings.Contains(p.body, "Choose a patient") {
			t.Errorf("recovery code: %d, want the patient picker", p.status)
		}
		b5 := authzBrowser(t)
		if p := submit(b5, password(b5), "/mfa", url.Values{"recovery_code": {recovery}}); p.status != http.StatusUnauthorized {
			t.Errorf("recovery code used twice: %d, want 401", p.status)
		}

		// Wrong codes are throttled, in the database, for the user.
		b6 := authzBrowser(t)
		ask6 := password(b6)
		var last authzPage
		for range 6 {
			last = submit(b6, ask6, "/mfa", url.Values{"code": {"123456"}})
		}
		if last.status != http.StatusTooManyRequests {
			t.Errorf("after many wrong codes: %d, want 429", last.status)
		}

		events, err := srv.Store.ListAudit(ctx, authzTenant, storage.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		for _, ev := range events {
			count[ev.Type]++
			for _, v := range ev.Details {
				if strings.Contains(v, next) || strings.Contains(v, recovery) {
					t.Errorf("audit event %s carries a code", ev.Type)
				}
			}
		}
		if count["mfa.enroll"] != 1 || count["mfa.success"] != 2 || count["mfa.failure"] < 5 {
			t.Errorf("audit counts %v", count)
		}
		if strings.Contains(srv.Logs(), strings.ReplaceAll(key, " ", "")) || strings.Contains(srv.Logs(), recovery) {
			t.Error("the key or a recovery code reached the log")
		}
	})
}

func TestSecondFactorOffered(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	e := authzSetup(t, srv)
	editTenantPolicy(t, srv, func(p *storage.TenantPolicy) { p.MFAOffered = true })
	b, offer := e.passwordSignIn(t)
	if offer.status != http.StatusOK || !strings.Contains(offer.body, `value="skip"`) {
		t.Fatalf("password sign-in in a tenant that offers a second factor: %d, want the offer\n%s", offer.status, offer.body)
	}
	// The offer must be answered: its ticket reaches nothing else.
	if p := e.post(t, b, e.iss+"/consent", stepForm(offer, url.Values{"decision": {"allow"}}), nil); p.status != http.StatusBadRequest {
		t.Errorf("consent with the offer's ticket: %d, want 400", p.status)
	}
	if p := e.post(t, b, e.iss+"/mfa/offer", stepForm(offer, url.Values{"decision": {"skip"}}), nil); !strings.Contains(p.body, "Choose a patient") {
		t.Fatalf("skipping the offer: %d, want the patient picker\n%s", p.status, p.body)
	}
	b, offer = e.passwordSignIn(t)
	enroll := e.post(t, b, e.iss+"/mfa/offer", stepForm(offer, url.Values{"decision": {"setup"}}), nil)
	m := manualKey.FindStringSubmatch(enroll.body)
	if m == nil {
		t.Fatalf("taking up the offer: %d, want the enrollment page\n%s", enroll.status, enroll.body)
	}
	codes := e.post(t, b, e.iss+"/mfa/enroll", stepForm(enroll, url.Values{"code": {totpCode(t, html.UnescapeString(m[1]), srv.Clock.Now())}}), nil)
	if len(recoveryCodes.FindAllString(codes.body, -1)) != 10 {
		t.Fatalf("confirming: %d\n%s", codes.status, codes.body)
	}
	// Enrolled now, the next sign-in asks for a code rather than offering.
	if _, next := e.passwordSignIn(t); !strings.Contains(next.body, `autocomplete="one-time-code"`) || strings.Contains(next.body, `value="skip"`) {
		t.Errorf("sign-in after enrolling: %d, want the code page\n%s", next.status, next.body)
	}
}

// TestStaleOfferCannotSkipSecondFactor: an offer page left open (by someone
// who knows the password) stops working once the user sets up a second
// factor elsewhere; it can neither skip it nor replace it.
func TestStaleOfferCannotSkipSecondFactor(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	e := authzSetup(t, srv)
	editTenantPolicy(t, srv, func(p *storage.TenantPolicy) { p.MFAOffered = true })
	attacker, stale := e.passwordSignIn(t)
	owner, offer := e.passwordSignIn(t)
	enroll := e.post(t, owner, e.iss+"/mfa/offer", stepForm(offer, url.Values{"decision": {"setup"}}), nil)
	m := manualKey.FindStringSubmatch(enroll.body)
	if m == nil {
		t.Fatalf("setup: %d\n%s", enroll.status, enroll.body)
	}
	e.post(t, owner, e.iss+"/mfa/enroll", stepForm(enroll, url.Values{"code": {totpCode(t, html.UnescapeString(m[1]), srv.Clock.Now())}}), nil)
	for _, decision := range []string{"skip", "setup"} {
		if p := e.post(t, attacker, e.iss+"/mfa/offer", stepForm(stale, url.Values{"decision": {decision}}), nil); p.status != http.StatusBadRequest {
			t.Errorf("stale offer, %s: %d, want 400\n%s", decision, p.status, p.body)
		}
	}
}

// TestPasswordResetEndsPendingSignIn: a sign-in that passed the password
// step cannot go on once the password is reset.
func TestPasswordResetEndsPendingSignIn(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	e := authzSetup(t, srv)
	editTenantPolicy(t, srv, func(p *storage.TenantPolicy) { p.MFAOffered = true })
	b, offer := e.passwordSignIn(t)
	if err := srv.Manage.ResetPassword(context.Background(), authzTenant, e.userID, "a-new-password-for-the-user", manage.Actor{ID: "test"}); err != nil {
		t.Fatal(err)
	}
	if p := e.post(t, b, e.iss+"/mfa/offer", stepForm(offer, url.Values{"decision": {"skip"}}), nil); p.status != http.StatusBadRequest {
		t.Errorf("going on after a password reset: %d, want 400\n%s", p.status, p.body)
	}
}
