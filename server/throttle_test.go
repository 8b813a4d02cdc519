package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

const throttledMessage = "Too many failed sign-ins. Wait a few minutes and try again."

func TestSignInThrottling(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		ctx := context.Background()
		const otherEmail, otherPassword = "dr.hunt@clinic.example", "another long passphrase"
		if _, err := srv.Manage.CreateUser(ctx, manage.UserInput{TenantID: authzTenant, Email: otherEmail, Password: otherPassword,
			Profiles: []storage.Profile{{FHIRUser: "Practitioner/456"}}}, authzActor); err != nil {
			t.Fatal(err)
		}
		signIn := func(name, email, password string, want int) authzPage {
			t.Helper()
			login := e.get(t, e.browser, e.authURL(oauth2.GenerateVerifier()))
			if login.status != http.StatusOK || login.hidden["csrf_token"] == "" {
				t.Fatalf("%s: sign-in page: %d\n%s", name, login.status, login.body)
			}
			page := e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, email, password), nil)
			if page.status != want {
				t.Fatalf("%s: %d, want %d\n%s", name, page.status, want, page.body)
			}
			switch want {
			case http.StatusOK:
				if page.hidden["ticket"] == "" {
					t.Fatalf("%s: want the consent page\n%s", name, page.body)
				}
			case http.StatusTooManyRequests:
				if page.hidden["ticket"] != "" || page.header.Get("Location") != "" || !strings.Contains(page.body, throttledMessage) ||
					page.hidden["authz"] != login.hidden["authz"] {
					t.Fatalf("%s: want the sign-in page saying to wait, and no consent page\n%s", name, page.body)
				}
			case http.StatusUnauthorized:
				if page.hidden["ticket"] != "" || !strings.Contains(page.body, "The email or password is not right.") {
					t.Fatalf("%s: want the sign-in page saying the sign-in failed\n%s", name, page.body)
				}
			}
			return page
		}
		emailFailures := func(email string) int64 {
			t.Helper()
			n, err := srv.Store.FailureCount(ctx, authzTenant, "email:"+strings.ToLower(email), srv.Clock.Now(), 15*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		throttledEvents := func() int {
			t.Helper()
			events, err := srv.Store.ListAudit(ctx, authzTenant, storage.AuditFilter{Type: "login.failure"})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, ev := range events {
				if ev.Details["reason"] == "throttled" {
					n++
					if ev.Details["email"] == "" || ev.Outcome != "failure" {
						t.Errorf("throttled login.failure event %+v: want the email and outcome failure", ev)
					}
				}
			}
			return n
		}

		// Five wrong passwords, the email spelled in either case, and then
		// even the right password is refused without being checked.
		for i := range 5 {
			email := authzEmail
			if i%2 == 1 {
				email = strings.ToUpper(authzEmail)
			}
			signIn("wrong password", email, "not the password", http.StatusUnauthorized)
		}
		if n := emailFailures(authzEmail); n != 5 {
			t.Fatalf("email failures after five wrong passwords: %d, want 5", n)
		}
		signIn("right password after five failures", authzEmail, authzPassword, http.StatusTooManyRequests)
		signIn("wrong password while throttled", strings.ToUpper(authzEmail), "not the password", http.StatusTooManyRequests)
		if n := throttledEvents(); n != 2 {
			t.Fatalf("%d throttled login.failure events, want 2", n)
		}
		// Refused attempts do not extend the count.
		if n := emailFailures(authzEmail); n != 5 {
			t.Fatalf("email failures after throttled attempts: %d, want 5", n)
		}
		successes, err := srv.Store.ListAudit(ctx, authzTenant, storage.AuditFilter{Type: "login.success"})
		if err != nil {
			t.Fatal(err)
		}
		if len(successes) != 0 {
			t.Fatalf("%d login.success events while throttled, want 0", len(successes))
		}

		// The email limit is the email's own: another person at the same
		// address still signs in.
		signIn("another email from the same address", otherEmail, otherPassword, http.StatusOK)

		// Once the window has passed, the right password works again.
		srv.Clock.Advance(16 * time.Minute)
		signIn("right password after the window", authzEmail, authzPassword, http.StatusOK)

		// A success clears the email's count: four failures before and four
		// after it never add up to the limit.
		for range 4 {
			signIn("wrong password before success", authzEmail, "not the password", http.StatusUnauthorized)
		}
		signIn("right password after four failures", authzEmail, authzPassword, http.StatusOK)
		if n := emailFailures(authzEmail); n != 0 {
			t.Fatalf("email failures after a success: %d, want 0", n)
		}
		for range 4 {
			signIn("wrong password after success", authzEmail, "not the password", http.StatusUnauthorized)
		}
		signIn("right password after a cleared count and four failures", authzEmail, authzPassword, http.StatusOK)
		if n := throttledEvents(); n != 2 {
			t.Fatalf("%d throttled login.failure events at the end, want 2", n)
		}
	})
}

// TestSignInThrottlingByAddress: one address guessing many emails is
// refused once it reaches the address limit, whatever email it names next.
func TestSignInThrottlingByAddress(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		e := authzSetup(t, srv)
		ctx := context.Background()
		for i := range 50 {
			if _, err := srv.Store.RecordFailure(ctx, authzTenant, "ip:127.0.0.1", srv.Clock.Now(), 15*time.Minute); err != nil {
				t.Fatalf("record failure %d: %v", i, err)
			}
		}
		login := e.get(t, e.browser, e.authURL(oauth2.GenerateVerifier()))
		page := e.post(t, e.browser, e.iss+"/login", authzLoginForm(login, authzEmail, authzPassword), nil)
		if page.status != http.StatusTooManyRequests || page.hidden["ticket"] != "" || !strings.Contains(page.body, throttledMessage) {
			t.Fatalf("sign-in from an address with 50 failures: %d, want 429 without consent\n%s", page.status, page.body)
		}
		srv.Clock.Advance(16 * time.Minute)
		e.signIn(t, e.authURL(oauth2.GenerateVerifier()))
	})
}
