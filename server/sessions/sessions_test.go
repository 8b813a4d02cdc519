package sessions_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/server/sessions"
	"github.com/smartauth/smartauth/storage"
)

// t0 is where every fake clock starts.
var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// clock is a fake clock that tests move by hand.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time          { return c.now }
func (c *clock) Advance(d time.Duration) { c.now = c.now.Add(d) }

// env is one backend with two tenants and a session manager over it.
type env struct {
	t     *testing.T
	db    storage.Storage
	clock *clock
	m     *sessions.Manager
}

// forEachBackend runs fn on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.
func forEachBackend(t *testing.T, fn func(t *testing.T, open func(t testing.TB) storage.Storage)) {
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) { fn(t, b.Open) })
	}
}

func newEnv(t *testing.T, open func(t testing.TB) storage.Storage, cfg sessions.Config) *env {
	t.Helper()
	db := open(t)
	for _, id := range []string{"acme", "other"} {
		if err := db.CreateTenant(t.Context(), storage.Tenant{ID: id, Name: id, CreatedAt: t0}, nil); err != nil {
			t.Fatalf("create tenant %s: %v", id, err)
		}
	}
	c := &clock{now: t0}
	cfg.Store = db
	cfg.MasterKey = bytes.Repeat([]byte{7}, keys.MasterKeySize)
	cfg.Now = c.Now
	if cfg.BaseURL == nil {
		cfg.BaseURL = mustURL(t, "https://auth.example.org")
	}
	m, err := sessions.NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, db: db, clock: c, m: m}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// request is a browser request to a tenant's page carrying cookies.
func request(tenantID string, cookies ...*http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://auth.example.org/t/"+tenantID+"/authorize", nil)
	for _, c := range cookies {
		r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	return r
}

// load reads the session a browser holding cookie presents to a tenant.
func (e *env) load(tenantID string, cookie *http.Cookie) *sessions.Session {
	e.t.Helper()
	var cookies []*http.Cookie
	if cookie != nil {
		cookies = append(cookies, cookie)
	}
	sess, err := e.m.Tenant(tenantID).Get(request(tenantID, cookies...), sessions.CookieName)
	if err != nil {
		e.t.Fatalf("get session: %v", err)
	}
	return sess
}

// save stores sess and returns the cookie the response sets, or nil.
func (e *env) save(tenantID string, sess *sessions.Session) *http.Cookie {
	e.t.Helper()
	w := httptest.NewRecorder()
	if err := e.m.Tenant(tenantID).Save(request(tenantID), w, sess); err != nil {
		e.t.Fatalf("save session: %v", err)
	}
	return onlyCookie(e.t, w)
}

// signIn creates a session for user with one value and returns its cookie.
func (e *env) signIn(tenantID, userID string) (*sessions.Session, *http.Cookie) {
	e.t.Helper()
	sess := e.load(tenantID, nil)
	sess.Values["step"] = "consent"
	sessions.SetUserID(sess, userID)
	c := e.save(tenantID, sess)
	if c == nil {
		e.t.Fatal("saving a new session set no cookie")
	}
	return sess, c
}

// mustBeNew fails unless sess is a new, empty session.
func mustBeNew(t *testing.T, what string, sess *sessions.Session) {
	t.Helper()
	if !sess.IsNew || sess.ID != "" || len(sess.Values) != 0 || sessions.UserID(sess) != "" {
		t.Errorf("%s: got session id %q, new %v, values %v; want a new empty session", what, sess.ID, sess.IsNew, sess.Values)
	}
}

func onlyCookie(t *testing.T, w *httptest.ResponseRecorder) *http.Cookie {
	t.Helper()
	cs := w.Result().Cookies()
	switch len(cs) {
	case 0:
		return nil
	case 1:
		return cs[0]
	}
	t.Fatalf("response sets %d cookies, want at most one", len(cs))
	return nil
}

func TestRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t testing.TB) storage.Storage) {
		e := newEnv(t, open, sessions.Config{})
		fresh := e.load("acme", nil)
		mustBeNew(t, "without a cookie", fresh)

		sess, cookie := e.signIn("acme", "u1")
		secret, err := base64.RawURLEncoding.DecodeString(cookie.Value)
		if err != nil || len(secret) != 32 {
			t.Fatalf("cookie value %q is not 32 base64url bytes", cookie.Value)
		}
		digest := sha256.Sum256(secret)
		if want := base64.RawURLEncoding.EncodeToString(digest[:]); sess.ID != want {
			t.Errorf("session id %q, want the digest of the cookie %q", sess.ID, want)
		}

		got := e.load("acme", cookie)
		if got.IsNew || got.ID != sess.ID || got.Values["step"] != "consent" || sessions.UserID(got) != "u1" {
			t.Fatalf("loaded session id %q, new %v, values %v, user %q; want the saved one", got.ID, got.IsNew, got.Values, sessions.UserID(got))
		}

		got.Values["step"] = "done"
		delete(got.Values, "missing")
		if c := e.save("acme", got); c != nil {
			t.Errorf("saving an existing session set cookie %v; the cookie does not change", c)
		}
		if again := e.load("acme", cookie); again.Values["step"] != "done" {
			t.Errorf("after update: values %v, want step=done", again.Values)
		}
	})
}

func TestCookieAttributes(t *testing.T) {
	cases := []struct {
		name     string
		baseURL  string
		wantName string
		wantPath string
		secure   bool
	}{
		{"http on loopback", "http://127.0.0.1:8080", "smartauth_session", "/t/acme/", false},
		{"https", "https://auth.example.org", "__Secure-smartauth_session", "/t/acme/", true},
		{"https under a path", "https://example.org/auth/", "__Secure-smartauth_session", "/auth/t/acme/", true},
	}
	forEachBackend(t, func(t *testing.T, open func(t testing.TB) storage.Storage) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				e := newEnv(t, open, sessions.Config{BaseURL: mustURL(t, tc.baseURL)})
				_, c := e.signIn("acme", "u1")
				if c.Name != tc.wantName || c.Path != tc.wantPath || c.Secure != tc.secure ||
					!c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Domain != "" ||
					c.MaxAge != 0 || !c.Expires.IsZero() {
					t.Errorf("cookie %q path %q secure %v httponly %v samesite %v domain %q max-age %d expires %v; want %q path %q secure %v, HttpOnly, Lax, host-only, until the browser closes",
						c.Name, c.Path, c.Secure, c.HttpOnly, c.SameSite, c.Domain, c.MaxAge, c.Expires, tc.wantName, tc.wantPath, tc.secure)
				}
				if got := e.load("acme", c); got.IsNew {
					t.Error("the cookie does not load its session back")
				}
			})
		}
	})
}

func TestTimeouts(t *testing.T) {
	type step struct {
		advance time.Duration
		alive   bool
	}
	// everyQuarter uses the session every 25 minutes for n uses.
	everyQuarter := func(n int) []step {
		var steps []step
		for range n {
			steps = append(steps, step{25 * time.Minute, true})
		}
		return steps
	}
	cases := []struct {
		name          string
		idle, absolut time.Duration
		steps         []step
	}{
		{"default idle: each use moves the expiry", 0, 0,
			[]step{{29 * time.Minute, true}, {29 * time.Minute, true}, {30 * time.Minute, false}}},
		{"default absolute: twelve hours however busy", 0, 0,
			append(everyQuarter(28), step{25 * time.Minute, false})},
		{"configured idle", 5 * time.Minute, 0,
			[]step{{4 * time.Minute, true}, {5*time.Minute - time.Microsecond, true}, {5 * time.Minute, false}}},
		{"configured absolute", 0, time.Hour,
			[]step{{25 * time.Minute, true}, {25 * time.Minute, true}, {10*time.Minute - time.Microsecond, true}, {time.Microsecond, false}}},
	}
	forEachBackend(t, func(t *testing.T, open func(t testing.TB) storage.Storage) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				e := newEnv(t, open, sessions.Config{IdleTimeout: tc.idle, AbsoluteTimeout: tc.absolut})
				idle, absolute := tc.idle, tc.absolut
				if idle == 0 {
					idle = sessions.DefaultIdleTimeout
				}
				if absolute == 0 {
					absolute = sessions.DefaultAbsoluteTimeout
				}
				created := e.clock.Now()
				sess, cookie := e.signIn("acme", "u1")
				for i, st := range tc.steps {
					e.clock.Advance(st.advance)
					now := e.clock.Now()
					got := e.load("acme", cookie)
					if !st.alive {
						mustBeNew(t, "after the time-out", got)
						// The stored expiry had already passed, so the sweep takes the row.
						if _, err := e.db.SweepExpired(t.Context(), now); err != nil {
							t.Fatal(err)
						}
						_, err := e.db.GetSession(t.Context(), "acme", sess.ID, created)
						if !errors.Is(err, storage.ErrNotFound) {
							t.Errorf("row after the sweep: %v, want ErrNotFound", err)
						}
						return
					}
					if got.IsNew || got.Values["step"] != "consent" {
						t.Fatalf("use %d at +%v: session ended early", i+1, now.Sub(created))
					}
					row, err := e.db.GetSession(t.Context(), "acme", sess.ID, now)
					if err != nil {
						t.Fatal(err)
					}
					want := now.Add(idle)
					if limit := created.Add(absolute); limit.Before(want) {
						want = limit
					}
					if !row.ExpiresAt.Equal(want) || !row.UpdatedAt.Equal(now) {
						t.Errorf("use %d: stored expiry %v, last use %v; want %v, %v", i+1, row.ExpiresAt, row.UpdatedAt, want, now)
					}
				}
				t.Fatal("the case never expires the session")
			})
		}
	})
}

func TestRegenerate(t *testing.T) {
	cases := []struct {
		name       string
		keepValues bool
	}{
		{"values carried over", true},
		{"values dropped", false},
	}
	forEachBackend(t, func(t *testing.T, open func(t testing.TB) storage.Storage) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				e := newEnv(t, open, sessions.Config{})
				// Before sign-in: an anonymous session holding the pending request.
				before := e.load("acme", nil)
				before.Values["pending"] = "authorize-request-1"
				oldCookie := e.save("acme", before)
				oldID := before.ID

				sess := e.load("acme", oldCookie)
				if !tc.keepValues {
					clear(sess.Values)
				}
				sessions.SetUserID(sess, "u1")
				w := httptest.NewRecorder()
				if err := e.m.Tenant("acme").Regenerate(request("acme", oldCookie), w, sess); err != nil {
					t.Fatal(err)
				}
				newCookie := onlyCookie(t, w)
				if newCookie == nil || newCookie.Value == oldCookie.Value || sess.ID == oldID || sess.ID == "" {
					t.Fatalf("regenerate kept the id: cookie %v, id %q (was %q)", newCookie, sess.ID, oldID)
				}
				if _, err := e.db.GetSession(t.Context(), "acme", oldID, e.clock.Now()); !errors.Is(err, storage.ErrNotFound) {
					t.Errorf("old row: %v, want ErrNotFound", err)
				}
				mustBeNew(t, "the old cookie", e.load("acme", oldCookie))

				got := e.load("acme", newCookie)
				if got.ID != sess.ID || sessions.UserID(got) != "u1" {
					t.Errorf("new session id %q user %q, want %q u1", got.ID, sessions.UserID(got), sess.ID)
				}
				wantPending := ""
				if tc.keepValues {
					wantPending = "authorize-request-1"
				}
				if pending, _ := got.Values["pending"].(string); pending != wantPending {
					t.Errorf("pending value %q, want %q", pending, wantPending)
				}
			})
		}
	})
}

func TestRegenerateRestartsAbsoluteTimeout(t *testing.T) {
	e := newEnv(t, servertest.OpenSQLite, sessions.Config{AbsoluteTimeout: time.Hour})
	sess, cookie := e.signIn("acme", "u1")
	e.clock.Advance(50 * time.Minute)
	sess = e.load("acme", cookie)
	w := httptest.NewRecorder()
	if err := e.m.Tenant("acme").Regenerate(request("acme", cookie), w, sess); err != nil {
		t.Fatal(err)
	}
	cookie = onlyCookie(t, w)
	e.clock.Advance(20 * time.Minute)
	if got := e.load("acme", cookie); got.IsNew {
		t.Error("the regenerated session ended at the old session's absolute time-out")
	}
}

func TestDestroy(t *testing.T) {
	cases := []struct {
		name    string
		destroy func(st *sessions.Store, r *http.Request, w http.ResponseWriter, sess *sessions.Session) error
	}{
		{"Destroy", (*sessions.Store).Destroy},
		{"Save with negative MaxAge", func(st *sessions.Store, r *http.Request, w http.ResponseWriter, sess *sessions.Session) error {
			sess.Options.MaxAge = -1
			return st.Save(r, w, sess)
		}},
	}
	forEachBackend(t, func(t *testing.T, open func(t testing.TB) storage.Storage) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				e := newEnv(t, open, sessions.Config{})
				_, cookie := e.signIn("acme", "u1")
				sess := e.load("acme", cookie)
				id := sess.ID
				w := httptest.NewRecorder()
				if err := tc.destroy(e.m.Tenant("acme"), request("acme", cookie), w, sess); err != nil {
					t.Fatal(err)
				}
				expired := onlyCookie(t, w)
				if expired == nil || expired.Name != cookie.Name || expired.Path != cookie.Path || expired.MaxAge >= 0 || expired.Value != "" {
					t.Errorf("cookie after destroy: %v; want %s emptied with Max-Age=0", expired, cookie.Name)
				}
				if _, err := e.db.GetSession(t.Context(), "acme", id, e.clock.Now()); !errors.Is(err, storage.ErrNotFound) {
					t.Errorf("row after destroy: %v, want ErrNotFound", err)
				}
				mustBeNew(t, "the destroyed session's cookie", e.load("acme", cookie))
				if len(sess.Values) != 0 || sess.ID != "" {
					t.Errorf("destroyed session still holds id %q values %v", sess.ID, sess.Values)
				}
				// Saving the destroyed session again must not bring a session back.
				if c := e.save("acme", sess); c == nil || c.MaxAge >= 0 || sess.ID != "" {
					t.Errorf("save after destroy set cookie %v, id %q; want the cookie expired again", c, sess.ID)
				}
			})
		}
	})
}

func TestTamperedCookie(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t testing.TB) storage.Storage) {
		e := newEnv(t, open, sessions.Config{})
		_, good := e.signIn("acme", "u1")
		flipped := []byte(good.Value)
		if flipped[5] == 'A' {
			flipped[5] = 'B'
		} else {
			flipped[5] = 'A'
		}
		cases := []struct{ name, value string }{
			{"empty", ""},
			{"not base64url", "not base64!"},
			{"too short", base64.RawURLEncoding.EncodeToString(make([]byte, 31))},
			{"too long", good.Value + "AAAA"},
			{"unknown", base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))},
			{"one character changed", string(flipped)},
			{"the session id instead of the secret", e.load("acme", good).ID},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				mustBeNew(t, tc.name, e.load("acme", &http.Cookie{Name: good.Name, Value: tc.value}))
			})
		}
	})
}

func TestForeignTenant(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t testing.TB) storage.Storage) {
		e := newEnv(t, open, sessions.Config{})
		sess, cookie := e.signIn("acme", "u1")
		if want := "/t/acme/"; cookie.Path != want {
			t.Errorf("cookie path %q, want %q so browsers keep it from other tenants", cookie.Path, want)
		}
		mustBeNew(t, "acme's cookie at other", e.load("other", cookie))

		// Even a row copied into the other tenant under the same id does not open there.
		row, err := e.db.GetSession(t.Context(), "acme", sess.ID, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		row.TenantID = "other"
		if err := e.db.CreateSession(t.Context(), row); err != nil {
			t.Fatal(err)
		}
		mustBeNew(t, "acme's row copied to other", e.load("other", cookie))

		// Nor does one session's sealed data moved into another session's row.
		victim, _ := e.signIn("acme", "u1")
		_, attacker := e.signIn("acme", "u1")
		attackerRow, err := e.db.GetSession(t.Context(), "acme", e.load("acme", attacker).ID, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		victimRow, err := e.db.GetSession(t.Context(), "acme", victim.ID, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		attackerRow.Data = victimRow.Data
		if err := e.db.UpdateSession(t.Context(), attackerRow); err != nil {
			t.Fatal(err)
		}
		mustBeNew(t, "another session's data in this row", e.load("acme", attacker))
	})
}

func TestEncryptedAtRest(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t testing.TB) storage.Storage) {
		e := newEnv(t, open, sessions.Config{})
		const marker = "plaintext-marker-7f3a"
		sess := e.load("acme", nil)
		sess.Values["note"] = marker
		sessions.SetUserID(sess, "u1")
		cookie := e.save("acme", sess)

		row, err := e.db.GetSession(t.Context(), "acme", sess.ID, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(row.Data, []byte(marker)) || bytes.Contains(row.Data, []byte("note")) {
			t.Errorf("stored data %q holds the plaintext", row.Data)
		}
		if row.ID == cookie.Value || strings.Contains(string(row.Data), cookie.Value) {
			t.Error("the row holds the cookie's secret")
		}
		if row.UserID != "u1" {
			t.Errorf("row user %q, want u1 so DeleteUserSessions finds it", row.UserID)
		}

		// A row whose user column was changed no longer opens.
		row.UserID = "u2"
		if err := e.db.UpdateSession(t.Context(), row); err != nil {
			t.Fatal(err)
		}
		mustBeNew(t, "row with an edited user", e.load("acme", cookie))
	})
}

func TestDeleteUserSessions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t testing.TB) storage.Storage) {
		e := newEnv(t, open, sessions.Config{})
		_, cookie := e.signIn("acme", "u1")
		_, other := e.signIn("acme", "u2")
		held := e.load("acme", cookie)

		if err := e.db.DeleteUserSessions(t.Context(), "acme", "u1"); err != nil {
			t.Fatal(err)
		}
		mustBeNew(t, "u1's session after DeleteUserSessions", e.load("acme", cookie))
		if got := e.load("acme", other); sessions.UserID(got) != "u2" {
			t.Error("u2's session ended too")
		}
		// A request that loaded the session before must not bring it back.
		held.Values["step"] = "after"
		err := e.m.Tenant("acme").Save(request("acme", cookie), httptest.NewRecorder(), held)
		if !errors.Is(err, sessions.ErrEnded) {
			t.Errorf("save of an ended session: %v, want ErrEnded", err)
		}
		mustBeNew(t, "u1's session after the late save", e.load("acme", cookie))
	})
}

func TestSaveRefusesWhatItCannotStore(t *testing.T) {
	cases := []struct {
		name string
		set  func(v map[any]any)
	}{
		{"number value", func(v map[any]any) { v["n"] = 1 }},
		{"flash list", func(v map[any]any) { v["_flash"] = []any{"hello"} }},
		{"non-string key", func(v map[any]any) { v[42] = "x" }},
	}
	e := newEnv(t, servertest.OpenSQLite, sessions.Config{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sess := e.load("acme", nil)
			tc.set(sess.Values)
			if err := e.m.Tenant("acme").Save(request("acme"), httptest.NewRecorder(), sess); err == nil {
				t.Error("saved; want an error")
			}
		})
	}

	// Clearing Values of a stored session loses its start; Save must not
	// silently restart the absolute time-out.
	_, cookie := e.signIn("acme", "u1")
	sess := e.load("acme", cookie)
	clear(sess.Values)
	if err := e.m.Tenant("acme").Save(request("acme", cookie), httptest.NewRecorder(), sess); err == nil {
		t.Error("saved a session whose Values were cleared; want an error")
	}
}

func TestDatabaseErrorIsReturned(t *testing.T) {
	e := newEnv(t, servertest.OpenSQLite, sessions.Config{})
	_, cookie := e.signIn("acme", "u1")
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	sess, err := e.m.Tenant("acme").Get(request("acme", cookie), sessions.CookieName)
	if err == nil {
		t.Fatal("loading with the database closed gave no error")
	}
	if sess == nil || !sess.IsNew || len(sess.Values) != 0 {
		t.Errorf("with the error: session %v, want a new empty one", sess)
	}
}

func TestGetOncePerRequest(t *testing.T) {
	e := newEnv(t, servertest.OpenSQLite, sessions.Config{})
	_, cookie := e.signIn("acme", "u1")
	r := request("acme", cookie)
	st := e.m.Tenant("acme")
	first, err := st.Get(r, sessions.CookieName)
	if err != nil {
		t.Fatal(err)
	}
	second, err := st.Get(r, sessions.CookieName)
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Error("two Gets in one request returned different sessions")
	}
}

func TestNewManagerChecksConfig(t *testing.T) {
	db := servertest.OpenSQLite(t)
	key := bytes.Repeat([]byte{7}, keys.MasterKeySize)
	base := mustURL(t, "https://auth.example.org")
	cases := []struct {
		name string
		cfg  sessions.Config
	}{
		{"no store", sessions.Config{MasterKey: key, BaseURL: base}},
		{"short master key", sessions.Config{Store: db, MasterKey: key[:16], BaseURL: base}},
		{"no base URL", sessions.Config{Store: db, MasterKey: key}},
		{"relative base URL", sessions.Config{Store: db, MasterKey: key, BaseURL: mustURL(t, "/auth")}},
		{"negative idle time-out", sessions.Config{Store: db, MasterKey: key, BaseURL: base, IdleTimeout: -time.Minute}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := sessions.NewManager(tc.cfg); err == nil {
				t.Error("accepted; want an error")
			}
		})
	}
}

// TestAdminSessionsApart shows an admin session and a sign-in session of
// one tenant cannot stand in for each other, even with the cookie renamed.
func TestAdminSessionsApart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t testing.TB) storage.Storage) {
		e := newEnv(t, open, sessions.Config{})
		admin := e.m.Admin("acme", "/admin/t/acme/")
		sess, err := admin.Get(request("acme"), "smartauth_admin")
		if err != nil {
			t.Fatal(err)
		}
		sessions.SetUserID(sess, "u1")
		w := httptest.NewRecorder()
		if err := admin.Save(request("acme"), w, sess); err != nil {
			t.Fatal(err)
		}
		adminCookie := onlyCookie(t, w)
		if adminCookie.Path != "/admin/t/acme/" {
			t.Errorf("admin cookie path %q, want /admin/t/acme/", adminCookie.Path)
		}

		// The admin cookie presented as a sign-in session does not open.
		mustBeNew(t, "admin cookie as sign-in session", e.load("acme", &http.Cookie{Name: "__Secure-" + sessions.CookieName, Value: adminCookie.Value}))

		// A sign-in session presented as an admin session does not open.
		_, signIn := e.signIn("acme", "u1")
		got, err := admin.Get(request("acme", &http.Cookie{Name: adminCookie.Name, Value: signIn.Value}), "smartauth_admin")
		if err != nil {
			t.Fatal(err)
		}
		mustBeNew(t, "sign-in cookie as admin session", got)

		// The admin session itself opens.
		got, err = e.m.Admin("acme", "/admin/t/acme/").Get(request("acme", adminCookie), "smartauth_admin")
		if err != nil || sessions.UserID(got) != "u1" {
			t.Fatalf("admin session: user %q, err %v", sessions.UserID(got), err)
		}
	})
}
