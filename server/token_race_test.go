package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/argon2"
	"golang.org/x/oauth2"

	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// raceEnv is a tenant whose app obtains codes cheaply, so that a test can
// race hundreds of them: its user's password hash is argon2id at minimal
// cost, and the user remembered consent, so each code is one sign-in away.
type raceEnv struct {
	*authzEnv
	email, password string
	// racers posts to the token endpoint with enough idle connections that
	// every racer of a trial is ready at once.
	racers     *http.Client
	introspect func(token string) map[string]any
}

// raceScopes need no patient picker, so a remembered consent gives the code straight after sign-in.
var raceScopes = []string{"openid", "fhirUser", "offline_access"}

func raceSetup(t *testing.T, srv *servertest.Server) *raceEnv {
	t.Helper()
	e := authzSetup(t, srv).as(authzClientID, raceScopes)
	r := &raceEnv{authzEnv: e, email: "racer@clinic.example", password: "racer's own password",
		racers:     &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
		introspect: e.introspector(t)}
	t.Cleanup(r.racers.CloseIdleConnections)
	// A real argon2id hash, at the least cost argon2 allows: the tests are
	// about tokens, not about how slowly passwords verify.
	salt := []byte("racer-salt-16byt")
	key := argon2.IDKey([]byte(r.password), salt, 1, 8, 1, 32)
	hash := fmt.Sprintf("$argon2id$v=%d$m=8,t=1,p=1$%s$%s", argon2.Version,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
	now := srv.Clock.Now()
	if err := srv.Store.CreateUser(context.Background(), storage.User{TenantID: authzTenant, ID: "racer", Email: r.email,
		PasswordHash: hash, Profiles: []storage.Profile{{FHIRUser: "Practitioner/77"}}, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	consent := r.signIn(t, r.authURL(oauth2.GenerateVerifier()))
	authzCallbackParams(t, r.decide(t, consent, "allow", consent.offered(), url.Values{"remember": {"yes"}}))
	return r
}

// signIn opens the authorization URL and signs the racer in.
func (r *raceEnv) signIn(t *testing.T, authURL string) authzPage {
	t.Helper()
	login := r.get(t, r.browser, authURL)
	if login.status != http.StatusOK || login.hidden["csrf_token"] == "" {
		t.Fatalf("sign-in page: %d\n%s", login.status, login.body)
	}
	return r.post(t, r.browser, r.iss+"/login", authzLoginForm(login, r.email, r.password), nil)
}

// code returns a fresh code for verifier: with consent remembered, the
// sign-in answers with the redirect to the app.
func (r *raceEnv) code(t *testing.T, verifier string) string {
	t.Helper()
	code := authzCallbackParams(t, r.signIn(t, r.authURL(verifier))).Get("code")
	if code == "" {
		t.Fatal("no code in the redirect")
	}
	return code
}

// family redeems a fresh code and returns the tokens it gave.
func (r *raceEnv) family(t *testing.T) (access, refresh string) {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	status, body := r.redeem(t, r.code(t, verifier), verifier)
	access, _ = body["access_token"].(string)
	refresh, _ = body["refresh_token"].(string)
	if status != http.StatusOK || access == "" || refresh == "" {
		t.Fatalf("code exchange: %d %v", status, body)
	}
	return access, refresh
}

// race posts form to the token endpoint from n goroutines released together.
func (r *raceEnv) race(t *testing.T, n int, form url.Values) ([]int, []map[string]any) {
	t.Helper()
	statuses, bodies := make([]int, n), make([]map[string]any, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var ready, done sync.WaitGroup
	ready.Add(n)
	for i := range n {
		done.Go(func() {
			ready.Done()
			<-start
			resp, err := r.racers.PostForm(r.iss+"/token", form)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			statuses[i] = resp.StatusCode
			errs[i] = json.NewDecoder(resp.Body).Decode(&bodies[i])
		})
	}
	ready.Wait()
	close(start)
	done.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("racer %d: %v", i, err)
		}
	}
	return statuses, bodies
}

// lastSeq is the sequence number of the tenant's newest audit event.
func (r *raceEnv) lastSeq(t *testing.T) int64 {
	t.Helper()
	events, err := r.srv.Store.ListAudit(context.Background(), authzTenant, storage.AuditFilter{Descending: true, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) == 0 {
		return 0
	}
	return events[0].Seq
}

// raceTrial presents one code or refresh token from several racers at once
// and reports what went wrong, or "" when all is as promised: exactly one
// racer got tokens, the others invalid_grant, the reuse was audited, and the
// winner's tokens are inactive and its refresh token refused.
func (r *raceEnv) raceTrial(t *testing.T, grant string, racers int) string {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	form := url.Values{"client_id": {authzClientID}}
	reuseEvent := "token.code_reuse"
	if grant == "authorization_code" {
		form.Set("grant_type", "authorization_code")
		form.Set("code", r.code(t, verifier))
		form.Set("redirect_uri", authzCallback)
		form.Set("code_verifier", verifier)
	} else {
		_, refresh := r.family(t)
		form.Set("grant_type", "refresh_token")
		form.Set("refresh_token", refresh)
		reuseEvent = "token.refresh_reuse"
	}
	before := r.lastSeq(t)

	statuses, bodies := r.race(t, racers, form)
	var winner map[string]any
	for i, st := range statuses {
		switch {
		case st == http.StatusOK && winner == nil:
			winner = bodies[i]
		case st == http.StatusOK:
			return fmt.Sprintf("more than one racer got tokens: %v", statuses)
		case st != http.StatusBadRequest || bodies[i]["error"] != "invalid_grant":
			return fmt.Sprintf("a losing racer got %d %v, want 400 invalid_grant", st, bodies[i])
		}
	}
	if winner == nil {
		return fmt.Sprintf("no racer got tokens: %v", bodies)
	}

	// Checked before the winner's refresh token is tried below, which is
	// itself a reuse and audited as one.
	reuse, err := r.srv.Store.ListAudit(context.Background(), authzTenant, storage.AuditFilter{Type: reuseEvent, AfterSeq: before})
	if err != nil {
		t.Fatal(err)
	}
	var problems []string
	if len(reuse) == 0 || reuse[0].ClientID != authzClientID {
		problems = append(problems, fmt.Sprintf("reuse not audited as %s: %+v", reuseEvent, reuse))
	}
	access, _ := winner["access_token"].(string)
	refresh, _ := winner["refresh_token"].(string)
	if got := r.introspect(access); got["active"] != false {
		problems = append(problems, "the winner's access token is active")
	}
	if got := r.introspect(refresh); got["active"] != false {
		problems = append(problems, "the winner's refresh token is active")
	}
	if st, body := r.refresh(t, refresh, nil); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
		problems = append(problems, fmt.Sprintf("the winner's refresh token still refreshes: %d %v", st, body["error"]))
	}
	return strings.Join(problems, "; ")
}

// TestRacedReuseRevokesGrant: when several token requests present one
// authorization code, or one refresh token, at the same moment, exactly one
// gets tokens and the others' reuse revokes them at once, whatever the
// interleaving: every trial must end with the family inactive and the
// reuse audited.
func TestRacedReuseRevokesGrant(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		r := raceSetup(t, srv)
		for _, tc := range []struct {
			grant          string
			racers, trials int
		}{
			{"authorization_code", 2, 100},
			{"authorization_code", 8, 50},
			{"refresh_token", 2, 100},
			{"refresh_token", 8, 50},
		} {
			t.Run(fmt.Sprintf("%s/%d", tc.grant, tc.racers), func(t *testing.T) {
				failed := 0
				for trial := range tc.trials {
					if problem := r.raceTrial(t, tc.grant, tc.racers); problem != "" {
						failed++
						if failed <= 3 {
							t.Errorf("trial %d: %s", trial, problem)
						}
					}
				}
				if failed > 0 {
					t.Errorf("%d of %d trials failed", failed, tc.trials)
				}
			})
		}
	})
}

// TestWrongVerifierUsesUpCode: a code presented with a wrong PKCE verifier
// is used up, so whoever holds a stolen code gets one guess, and the code
// presented again, even with the right verifier, is refused as reuse.
func TestWrongVerifierUsesUpCode(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		r := raceSetup(t, srv)
		verifier := oauth2.GenerateVerifier()
		code := r.code(t, verifier)
		before := r.lastSeq(t)
		if st, body := r.redeem(t, code, oauth2.GenerateVerifier()); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("wrong verifier: %d %v, want 400 invalid_grant", st, body)
		}
		if st, body := r.redeem(t, code, verifier); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("the right verifier after a wrong one: %d %v, want 400 invalid_grant", st, body)
		}
		reuse, err := srv.Store.ListAudit(context.Background(), authzTenant, storage.AuditFilter{Type: "token.code_reuse", AfterSeq: before})
		if err != nil || len(reuse) != 1 {
			t.Errorf("code reuse audit: %+v, %v; want one event", reuse, err)
		}
	})
}
