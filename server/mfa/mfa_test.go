package mfa_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"image/png"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/smartauth/smartauth/server/mfa"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/postgres"
	"github.com/smartauth/smartauth/storage/postgres/pgtest"
	"github.com/smartauth/smartauth/storage/sqlite"
)

// rawRows returns every row of a table as text, read behind the store's back.
type rawRows func(t *testing.T, table string) string

type backend struct {
	name string
	open func(t *testing.T) (storage.Storage, rawRows)
}

// backends lists SQLite, and PostgreSQL when TEST_DATABASE_URL is set (pgtest skips otherwise).
var backends = []backend{{"sqlite", openSQLite}, {"postgres", openPostgres}}

func openSQLite(t *testing.T) (storage.Storage, rawRows) {
	path := filepath.Join(t.TempDir(), "smartauth.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("migrate sqlite: %v", err)
	}
	return s, func(t *testing.T, table string) string {
		db, err := sql.Open("sqlite", path+"?_pragma=query_only(1)")
		if err != nil {
			t.Fatalf("open %s: %v", path, err)
		}
		defer db.Close()
		rows, err := db.QueryContext(t.Context(), `SELECT * FROM `+table)
		if err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		var out strings.Builder
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatalf("read %s: %v", table, err)
			}
			out.WriteString(rowText(vals) + "\n")
		}
		return out.String()
	}
}

func openPostgres(t *testing.T) (storage.Storage, rawRows) {
	url := pgtest.URL(t)
	s, err := postgres.Open(t.Context(), url)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("migrate postgres: %v", err)
	}
	return s, func(t *testing.T, table string) string {
		conn, err := pgx.Connect(t.Context(), url)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer conn.Close(context.Background())
		rows, err := conn.Query(t.Context(), `SELECT * FROM `+table)
		if err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		defer rows.Close()
		var out strings.Builder
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatalf("read %s: %v", table, err)
			}
			out.WriteString(rowText(vals) + "\n")
		}
		return out.String()
	}
}

// rowText joins a row's values, byte slices as text, so a value stored in
// any column shows up in it.
func rowText(vals []any) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		if b, ok := v.([]byte); ok {
			parts[i] = string(b)
			continue
		}
		parts[i] = fmt.Sprint(v)
	}
	return strings.Join(parts, "|")
}

// clock is a settable clock; tests move it instead of sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// start is ten seconds into a 30-second step, so a step's neighbours are
// exactly 30 seconds away.
var start = time.Date(2031, 5, 6, 7, 8, 10, 0, time.UTC)

var masterKey = bytes.Repeat([]byte{7}, 32)

const tenantID = "acme"

type fixture struct {
	store storage.Storage
	rows  rawRows
	clock *clock
	svc   *mfa.Service
	tn    storage.Tenant
}

func newFixture(t *testing.T, b backend, users ...string) *fixture {
	t.Helper()
	s, rows := b.open(t)
	c := &clock{t: start}
	svc, err := mfa.New(s, masterKey, c.now)
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	tn := storage.Tenant{ID: tenantID, Name: "Acme Clinic", CreatedAt: start}
	if err := s.CreateTenant(t.Context(), tn, nil); err != nil {
		t.Fatalf("create tenant: %v", err)
	}
	for _, id := range users {
		u := storage.User{TenantID: tenantID, ID: id, Email: id + "@acme.example", CreatedAt: start, UpdatedAt: start}
		if err := s.CreateUser(t.Context(), u); err != nil {
			t.Fatalf("create user %s: %v", id, err)
		}
	}
	return &fixture{store: s, rows: rows, clock: c, svc: svc, tn: tn}
}

func (f *fixture) user(t *testing.T, id string) storage.User {
	t.Helper()
	u, err := f.store.GetUser(t.Context(), tenantID, id)
	if err != nil {
		t.Fatalf("get user %s: %v", id, err)
	}
	return u
}

// begin starts an enrollment and returns it with its base32 seed.
func (f *fixture) begin(t *testing.T, userID string) (mfa.Enrollment, string) {
	t.Helper()
	e, err := f.svc.Begin(t.Context(), f.tn, f.user(t, userID))
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	key, err := otp.NewKeyFromURL(e.URL)
	if err != nil {
		t.Fatalf("parse key URI: %v", err)
	}
	return e, key.Secret()
}

// enroll begins and confirms an enrollment; it returns the seed and the recovery codes.
func (f *fixture) enroll(t *testing.T, userID string) (string, []string) {
	t.Helper()
	_, seed := f.begin(t, userID)
	codes, err := f.svc.Confirm(t.Context(), tenantID, userID, code(t, seed, f.clock.now()))
	if err != nil {
		t.Fatalf("confirm: %v", err)
	}
	// Later codes in the tests start at the next step, as a person's would.
	f.clock.advance(30 * time.Second)
	return seed, codes
}

var opts = totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// code is what an authenticator app shows at time at.
func code(t *testing.T, seed string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(seed, at, opts)
	if err != nil {
		t.Fatalf("generate code: %v", err)
	}
	return c
}

// wrongCode is six digits that are no code of the seed within a step of at.
func wrongCode(t *testing.T, seed string, at time.Time) string {
	t.Helper()
	taken := map[string]bool{}
	for off := -1; off <= 1; off++ {
		taken[code(t, seed, at.Add(time.Duration(off)*30*time.Second))] = true
	}
	for i := 0; ; i++ {
		c := fmt.Sprintf("%06d", 123456+i*7919)
		if !taken[c] {
			return c
		}
	}
}

func mustIs(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func forBackends(t *testing.T, run func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { run(t, b) })
	}
}

// TestSignInFlow: enroll, confirm, sign in, replay refused, throttled after
// five wrong codes, recovery code works once.
func TestSignInFlow(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		f := newFixture(t, b, "alice")
		ctx := t.Context()

		e, seed := f.begin(t, "alice")
		key, err := otp.NewKeyFromURL(e.URL)
		must(t, "parse key URI", err)
		if key.Issuer() != "Acme Clinic" || key.AccountName() != "alice@acme.example" || key.Algorithm() != otp.AlgorithmSHA1 ||
			key.Digits() != otp.DigitsSix || key.Period() != 30 {
			t.Fatalf("key URI %q: issuer %q, account %q, %v, %v digits, %ds", e.URL, key.Issuer(), key.AccountName(), key.Algorithm(), key.Digits(), key.Period())
		}
		if got := strings.ReplaceAll(e.ManualKey, " ", ""); got != seed || len(seed) != 32 {
			t.Fatalf("manual key does not spell the 160-bit seed")
		}
		pngData, ok := strings.CutPrefix(e.QRCode, "data:image/png;base64,")
		if !ok {
			t.Fatalf("QR code is not a PNG data URL: %.40q", e.QRCode)
		}
		raw, err := base64.StdEncoding.DecodeString(pngData)
		must(t, "decode QR code", err)
		_, err = png.Decode(bytes.NewReader(raw))
		must(t, "QR code is a PNG", err)
		for _, s := range []string{fmt.Sprint(e), fmt.Sprintf("%+v", e)} {
			if strings.Contains(s, seed) {
				t.Fatalf("formatting an enrollment shows its seed: %s", s)
			}
		}

		// Pending is not enrolled: nothing is asked, nothing is accepted.
		if mfa.Enrolled(f.user(t, "alice")) {
			t.Fatal("enrolled before confirming")
		}
		mustIs(t, "verify before confirming", f.svc.Verify(ctx, tenantID, "alice", code(t, seed, f.clock.now())), mfa.ErrNotEnrolled)
		_, err = f.svc.UseRecoveryCode(ctx, tenantID, "alice", "0000-0000-0000-0000")
		mustIs(t, "recovery code before confirming", err, mfa.ErrNotEnrolled)

		_, err = f.svc.Confirm(ctx, tenantID, "alice", wrongCode(t, seed, f.clock.now()))
		mustIs(t, "confirm with a wrong code", err, mfa.ErrWrongCode)
		first := code(t, seed, f.clock.now())
		recovery, err := f.svc.Confirm(ctx, tenantID, "alice", first)
		must(t, "confirm", err)
		if !mfa.Enrolled(f.user(t, "alice")) {
			t.Fatal("not enrolled after confirming")
		}
		_, err = f.svc.Confirm(ctx, tenantID, "alice", first)
		mustIs(t, "confirm twice", err, mfa.ErrNoEnrollment)

		// The confirming code is used: it cannot sign in, the next one can, once.
		mustIs(t, "sign in with the confirming code", f.svc.Verify(ctx, tenantID, "alice", first), mfa.ErrReplayed)
		f.clock.advance(30 * time.Second)
		next := code(t, seed, f.clock.now())
		must(t, "sign in", f.svc.Verify(ctx, tenantID, "alice", next))
		mustIs(t, "replay", f.svc.Verify(ctx, tenantID, "alice", next), mfa.ErrReplayed)

		// A right code clears the count, which the replays above added to.
		f.clock.advance(30 * time.Second)
		must(t, "sign in again", f.svc.Verify(ctx, tenantID, "alice", code(t, seed, f.clock.now())))
		// Five wrong codes, then even the right code is refused unchecked.
		f.clock.advance(30 * time.Second)
		for i := range mfa.MaxFailures {
			mustIs(t, fmt.Sprintf("wrong code %d", i+1), f.svc.Verify(ctx, tenantID, "alice", wrongCode(t, seed, f.clock.now())), mfa.ErrWrongCode)
		}
		good := code(t, seed, f.clock.now())
		mustIs(t, "right code while throttled", f.svc.Verify(ctx, tenantID, "alice", good), mfa.ErrThrottled)
		_, err = f.svc.UseRecoveryCode(ctx, tenantID, "alice", recovery[0])
		mustIs(t, "recovery code while throttled", err, mfa.ErrThrottled)
		throttled, err := f.svc.Throttled(ctx, tenantID, "alice")
		must(t, "throttled", err)
		if !throttled {
			t.Fatal("Throttled reports false after five wrong codes")
		}

		// When the window is over, a recovery code works, once.
		f.clock.advance(mfa.ThrottleWindow)
		left, err := f.svc.UseRecoveryCode(ctx, tenantID, "alice", recovery[0])
		must(t, "use a recovery code", err)
		if left != mfa.RecoveryCodeCount-1 {
			t.Fatalf("%d recovery codes left, want %d", left, mfa.RecoveryCodeCount-1)
		}
		_, err = f.svc.UseRecoveryCode(ctx, tenantID, "alice", recovery[0])
		mustIs(t, "use a recovery code again", err, mfa.ErrReplayed)
	})
}

// TestSkew: a code is accepted one step either side of now, not two.
func TestSkew(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		tests := []struct {
			steps int
			want  error
		}{
			{-2, mfa.ErrWrongCode},
			{-1, nil},
			{0, nil},
			{1, nil},
			{2, mfa.ErrWrongCode},
		}
		f := newFixture(t, b)
		for _, tc := range tests {
			userID := fmt.Sprintf("user%+d", tc.steps)
			must(t, "create user", f.store.CreateUser(t.Context(), storage.User{TenantID: tenantID, ID: userID, Email: userID + "@acme.example"}))
			seed, _ := f.enroll(t, userID)
			f.clock.advance(5 * time.Minute) // clear of the confirming step
			at := f.clock.now().Add(time.Duration(tc.steps) * 30 * time.Second)
			err := f.svc.Verify(t.Context(), tenantID, userID, code(t, seed, at))
			if !errors.Is(err, tc.want) {
				t.Errorf("code %+d steps from now: got %v, want %v", tc.steps, err, tc.want)
			}
		}
	})
}

// TestNoEarlierCodeAfterLater: once a code is accepted, no code of that
// step or an earlier one is, even inside the skew window.
func TestNoEarlierCodeAfterLater(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		f := newFixture(t, b, "alice")
		seed, _ := f.enroll(t, "alice")
		now := f.clock.now()
		must(t, "code of the next step", f.svc.Verify(t.Context(), tenantID, "alice", code(t, seed, now.Add(30*time.Second))))
		mustIs(t, "code of the current step", f.svc.Verify(t.Context(), tenantID, "alice", code(t, seed, now)), mfa.ErrReplayed)
	})
}

// TestThrottling: the limit counts wrong codes in a window, a right code
// clears it, and the window's end lifts it.
func TestThrottling(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		f := newFixture(t, b, "alice", "bob")
		ctx := t.Context()
		seed, _ := f.enroll(t, "alice")
		bobSeed, _ := f.enroll(t, "bob")
		wrong := func(n int) {
			t.Helper()
			for i := range n {
				mustIs(t, fmt.Sprintf("wrong code %d", i+1), f.svc.Verify(ctx, tenantID, "alice", wrongCode(t, seed, f.clock.now())), mfa.ErrWrongCode)
			}
		}
		step := func() { f.clock.advance(30 * time.Second) }

		wrong(mfa.MaxFailures - 1)
		must(t, "right code after four wrong", f.svc.Verify(ctx, tenantID, "alice", code(t, seed, f.clock.now())))
		step()
		wrong(mfa.MaxFailures) // the count started again
		mustIs(t, "sixth attempt", f.svc.Verify(ctx, tenantID, "alice", code(t, seed, f.clock.now())), mfa.ErrThrottled)
		// Another user is not throttled.
		must(t, "bob signs in", f.svc.Verify(ctx, tenantID, "bob", code(t, bobSeed, f.clock.now())))

		f.clock.advance(mfa.ThrottleWindow - 2*time.Minute)
		step()
		mustIs(t, "just before the window ends", f.svc.Verify(ctx, tenantID, "alice", code(t, seed, f.clock.now())), mfa.ErrThrottled)
		f.clock.advance(2 * time.Minute)
		must(t, "after the window", f.svc.Verify(ctx, tenantID, "alice", code(t, seed, f.clock.now())))
		throttled, err := f.svc.Throttled(ctx, tenantID, "alice")
		must(t, "throttled", err)
		if throttled {
			t.Fatal("still throttled after a right code")
		}
	})
}

// TestConcurrentReplay: one code submitted at once, through two services
// (as two replicas would) sharing the database, is accepted exactly once.
func TestConcurrentReplay(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		for round := range 5 {
			f := newFixture(t, b, "alice")
			seed, _ := f.enroll(t, "alice")
			other, err := mfa.New(f.store, masterKey, f.clock.now)
			must(t, "second service", err)
			services := []*mfa.Service{f.svc, other}
			c := code(t, seed, f.clock.now())

			// No more racers than the limit, so none is refused for that.
			const racers = mfa.MaxFailures
			errs := make([]error, racers)
			var ready, done sync.WaitGroup
			ready.Add(racers)
			startLine := make(chan struct{})
			for i := range racers {
				done.Go(func() {
					ready.Done()
					<-startLine
					errs[i] = services[i%2].Verify(t.Context(), tenantID, "alice", c)
				})
			}
			ready.Wait()
			close(startLine)
			done.Wait()
			winners := 0
			for i, err := range errs {
				switch {
				case err == nil:
					winners++
				case !errors.Is(err, mfa.ErrReplayed):
					t.Fatalf("round %d: racer %d: got %v, want nil or ErrReplayed", round, i, err)
				}
			}
			if winners != 1 {
				t.Fatalf("round %d: %d of %d submissions accepted, want exactly 1", round, winners, racers)
			}
		}
	})
}

var recoveryPattern = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$`)

// TestRecoveryCodes: ten distinct codes, typed forgivingly, each usable
// once; regenerating replaces them all.
func TestRecoveryCodes(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		f := newFixture(t, b, "alice", "bob")
		ctx := t.Context()
		_, codes := f.enroll(t, "alice")
		f.enroll(t, "bob")
		if len(codes) != mfa.RecoveryCodeCount {
			t.Fatalf("got %d recovery codes, want %d", len(codes), mfa.RecoveryCodeCount)
		}
		seen := map[string]bool{}
		for _, c := range codes {
			if !recoveryPattern.MatchString(c) || seen[c] {
				t.Fatalf("recovery code %q is malformed or repeated", c)
			}
			seen[c] = true
		}
		if s := fmt.Sprint(mfa.RecoveryCodes(codes)); strings.Contains(s, codes[0]) {
			t.Fatalf("formatting recovery codes shows them: %s", s)
		}

		// Typed in lower case, without dashes, with O for 0 and l for 1.
		typed := strings.ToLower(strings.ReplaceAll(codes[1], "-", " "))
		typed = strings.ReplaceAll(strings.ReplaceAll(typed, "0", "o"), "1", "l")
		left, err := f.svc.UseRecoveryCode(ctx, tenantID, "alice", typed)
		must(t, "use a recovery code as typed", err)
		if left != 9 {
			t.Fatalf("%d left, want 9", left)
		}

		tests := []struct {
			name, user, code string
			want             error
		}{
			{"used code", "alice", codes[1], mfa.ErrReplayed},
			{"another user's code", "bob", codes[2], mfa.ErrWrongCode},
			{"not a code", "alice", "hello", mfa.ErrWrongCode},
			{"a TOTP code", "alice", "123456", mfa.ErrWrongCode},
			{"unknown code", "alice", "0000-0000-0000-0000", mfa.ErrWrongCode},
		}
		for _, tc := range tests {
			_, err := f.svc.UseRecoveryCode(ctx, tenantID, tc.user, tc.code)
			mustIs(t, tc.name, err, tc.want)
		}

		fresh, err := f.svc.RegenerateRecoveryCodes(ctx, tenantID, "alice")
		must(t, "regenerate", err)
		left, err = f.svc.RecoveryCodesLeft(ctx, tenantID, "alice")
		must(t, "count", err)
		if left != mfa.RecoveryCodeCount {
			t.Fatalf("%d left after regenerating, want %d", left, mfa.RecoveryCodeCount)
		}
		// Four codes were refused above; a right one clears the count.
		_, err = f.svc.UseRecoveryCode(ctx, tenantID, "alice", fresh[0])
		must(t, "a new code", err)
		_, err = f.svc.UseRecoveryCode(ctx, tenantID, "alice", codes[3])
		mustIs(t, "an old code after regenerating", err, mfa.ErrWrongCode)
	})
}

// TestReenrollment: beginning again leaves the confirmed factor in force
// until the new one is confirmed; an expired enrollment cannot be confirmed.
func TestReenrollment(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		f := newFixture(t, b, "alice")
		ctx := t.Context()
		oldSeed, oldCodes := f.enroll(t, "alice")
		_, newSeed := f.begin(t, "alice")
		must(t, "old factor still works while re-enrolling", f.svc.Verify(ctx, tenantID, "alice", code(t, oldSeed, f.clock.now())))
		f.clock.advance(30 * time.Second)
		_, err := f.svc.Confirm(ctx, tenantID, "alice", code(t, newSeed, f.clock.now()))
		must(t, "confirm the new factor", err)
		f.clock.advance(30 * time.Second)
		mustIs(t, "old factor after re-enrolling", f.svc.Verify(ctx, tenantID, "alice", code(t, oldSeed, f.clock.now())), mfa.ErrWrongCode)
		must(t, "new factor", f.svc.Verify(ctx, tenantID, "alice", code(t, newSeed, f.clock.now())))
		_, err = f.svc.UseRecoveryCode(ctx, tenantID, "alice", oldCodes[0])
		mustIs(t, "old recovery code after re-enrolling", err, mfa.ErrWrongCode)

		_, lateSeed := f.begin(t, "alice")
		f.clock.advance(mfa.EnrollmentTTL)
		_, err = f.svc.Confirm(ctx, tenantID, "alice", code(t, lateSeed, f.clock.now()))
		mustIs(t, "confirm an expired enrollment", err, mfa.ErrNoEnrollment)
		_, err = f.svc.Confirm(ctx, "acme", "nobody", "123456")
		mustIs(t, "confirm without an enrollment", err, mfa.ErrNoEnrollment)

		must(t, "reset", f.svc.Reset(ctx, tenantID, "alice"))
		mustIs(t, "verify after reset", f.svc.Verify(ctx, tenantID, "alice", code(t, newSeed, f.clock.now())), mfa.ErrNotEnrolled)
	})
}

// TestSealedAtRest: the seed is never in the database, pending or
// confirmed, nor are recovery codes; a sealed seed moved to another user
// does not open.
func TestSealedAtRest(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		f := newFixture(t, b, "alice", "bob")
		ctx := t.Context()
		_, seed := f.begin(t, "alice")
		secretBytes, err := base32Decode(seed)
		must(t, "decode seed", err)
		absent := func(when string) {
			t.Helper()
			for _, table := range []string{"users", "totp_enrollments", "recovery_codes", "totp_steps"} {
				text := f.rows(t, table)
				if strings.Contains(text, seed) || bytes.Contains([]byte(text), secretBytes) {
					t.Fatalf("%s: table %s holds the raw seed", when, table)
				}
			}
		}
		absent("pending")
		if !strings.Contains(f.rows(t, "totp_enrollments"), "alice") {
			t.Fatal("no pending enrollment row for alice")
		}
		codes, err := f.svc.Confirm(ctx, tenantID, "alice", code(t, seed, f.clock.now()))
		must(t, "confirm", err)
		absent("confirmed")
		stored := f.rows(t, "recovery_codes")
		for _, c := range codes {
			if strings.Contains(stored, c) || strings.Contains(stored, strings.ReplaceAll(c, "-", "")) {
				t.Fatal("recovery_codes holds a recovery code")
			}
		}

		// Copy alice's sealed seed onto bob: it must not open for bob.
		alice, bob := f.user(t, "alice"), f.user(t, "bob")
		// The storage methods move a sealed value as given, as someone
		// editing the database would.
		must(t, "stage alice's sealed seed for bob", f.store.SaveTOTPEnrollment(ctx, storage.TOTPEnrollment{TenantID: tenantID, UserID: bob.ID,
			SecretSealed: alice.TOTPSecret, CreatedAt: f.clock.now(), ExpiresAt: f.clock.now().Add(time.Hour)}))
		must(t, "copy sealed seed", f.store.ConfirmTOTPEnrollment(ctx, tenantID, bob.ID, alice.TOTPSecret, nil, f.clock.now()))
		f.clock.advance(30 * time.Second)
		err = f.svc.Verify(ctx, tenantID, "bob", code(t, seed, f.clock.now()))
		if err == nil || mfa.Reason(err) != "" {
			t.Fatalf("a seed moved to another user: got %v, want an error that is no code failure", err)
		}
		if strings.Contains(err.Error(), seed) {
			t.Fatal("the error shows the seed")
		}
	})
}

func base32Decode(s string) ([]byte, error) {
	return base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(s)
}

func TestReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{mfa.ErrWrongCode, "wrong_code"},
		{mfa.ErrReplayed, "replayed_code"},
		{mfa.ErrThrottled, "throttled"},
		{mfa.ErrNotEnrolled, "not_enrolled"},
		{mfa.ErrNoEnrollment, "no_pending_enrollment"},
		{fmt.Errorf("wrapped: %w", mfa.ErrReplayed), "replayed_code"},
		{errors.New("database is down"), ""},
		{nil, ""},
	}
	for _, tc := range tests {
		if got := mfa.Reason(tc.err); got != tc.want {
			t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestNext(t *testing.T) {
	enrolled := storage.User{ID: "u", TOTPSecret: []byte("sealed")}
	plain := storage.User{ID: "u"}
	required := storage.TenantPolicy{MFARequired: true}
	optional := storage.TenantPolicy{}
	tests := []struct {
		name   string
		policy storage.TenantPolicy
		user   storage.User
		amr    []string
		want   mfa.Step
	}{
		{"optional, not enrolled", optional, plain, nil, mfa.StepNone},
		{"optional, enrolled", optional, enrolled, nil, mfa.StepVerify},
		{"required, enrolled", required, enrolled, nil, mfa.StepVerify},
		{"required, not enrolled", required, plain, nil, mfa.StepEnroll},
		{"required, upstream mfa", required, plain, []string{"pwd", "mfa"}, mfa.StepNone},
		{"required, upstream otp", required, plain, []string{"otp"}, mfa.StepNone},
		{"required, upstream hardware key", required, plain, []string{"hwk"}, mfa.StepNone},
		{"required, upstream software key", required, enrolled, []string{"swk"}, mfa.StepNone},
		{"enrolled, upstream mfa", optional, enrolled, []string{"mfa"}, mfa.StepNone},
		{"required, upstream password only", required, plain, []string{"pwd"}, mfa.StepEnroll},
		{"enrolled, upstream password only", optional, enrolled, []string{"pwd"}, mfa.StepVerify},
		{"required, empty amr", required, enrolled, []string{}, mfa.StepVerify},
		{"amr values are exact", required, enrolled, []string{"MFA", "mfa2", " otp"}, mfa.StepVerify},
		{"optional, upstream sms", optional, plain, []string{"sms"}, mfa.StepNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := mfa.Next(tc.policy, tc.user, tc.amr); got != tc.want {
				t.Errorf("Next = %v, want %v", got, tc.want)
			}
			if got, want := mfa.Required(tc.policy, tc.user, tc.amr), tc.want != mfa.StepNone; got != want {
				t.Errorf("Required = %v, want %v", got, want)
			}
		})
	}
}

func TestPendingShowsTheSameKey(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		f := newFixture(t, b, "u1", "u2")
		if _, err := f.svc.Pending(t.Context(), f.tn, f.user(t, "u1")); !errors.Is(err, mfa.ErrNoEnrollment) {
			t.Fatalf("pending before Begin: %v, want ErrNoEnrollment", err)
		}
		began, seed := f.begin(t, "u1")
		again, err := f.svc.Pending(t.Context(), f.tn, f.user(t, "u1"))
		if err != nil {
			t.Fatal(err)
		}
		if again.URL != began.URL || again.ManualKey != began.ManualKey || again.QRCode == "" {
			t.Fatalf("pending enrollment shows another key: %q / %q", again.ManualKey, began.ManualKey)
		}
		// The key shown again is the one that confirms.
		if _, err := f.svc.Confirm(t.Context(), tenantID, "u1", code(t, seed, f.clock.now())); err != nil {
			t.Fatalf("confirm with the key shown again: %v", err)
		}
		if _, err := f.svc.Pending(t.Context(), f.tn, f.user(t, "u1")); !errors.Is(err, mfa.ErrNoEnrollment) {
			t.Errorf("pending after confirmation: %v, want ErrNoEnrollment", err)
		}
		// Another user's pending enrollment is theirs alone.
		if _, err := f.svc.Pending(t.Context(), f.tn, f.user(t, "u2")); !errors.Is(err, mfa.ErrNoEnrollment) {
			t.Errorf("pending of a user who never began: %v", err)
		}
	})
}

func TestDailyLimit(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		f := newFixture(t, b, "alice")
		ctx := t.Context()
		seed, _ := f.enroll(t, "alice")
		// Guessing five codes every window, with the user signing in
		// correctly in between, still stops at the daily limit.
		refused := 0
		for refused < mfa.MaxDailyFailures {
			for range mfa.MaxFailures - 1 {
				mustIs(t, "wrong code", f.svc.Verify(ctx, tenantID, "alice", wrongCode(t, seed, f.clock.now())), mfa.ErrWrongCode)
				refused++
			}
			if refused >= mfa.MaxDailyFailures {
				break
			}
			f.clock.advance(30 * time.Second)
			must(t, "the user's own sign-in", f.svc.Verify(ctx, tenantID, "alice", code(t, seed, f.clock.now())))
			f.clock.advance(mfa.ThrottleWindow)
		}
		f.clock.advance(mfa.ThrottleWindow)
		mustIs(t, "a right code after the daily limit", f.svc.Verify(ctx, tenantID, "alice", code(t, seed, f.clock.now())), mfa.ErrThrottled)
		f.clock.advance(mfa.DailyWindow)
		must(t, "a day later", f.svc.Verify(ctx, tenantID, "alice", code(t, seed, f.clock.now())))
	})
}
