package manage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server/password"
	"github.com/smartauth/smartauth/storage"
)

// signIn gives a user a session, as a sign-in would.
func (fx *opsFixture) signIn(t *testing.T, tenantID, userID string) string {
	t.Helper()
	id := randomID()
	now := fx.clock.Now()
	err := fx.store.CreateSession(t.Context(), storage.Session{TenantID: tenantID, ID: id, UserID: userID, Data: []byte("sealed"),
		CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (fx *opsFixture) hasSession(t *testing.T, tenantID, sessionID string) bool {
	t.Helper()
	_, err := fx.store.GetSession(t.Context(), tenantID, sessionID, fx.clock.Now())
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// update makes a change to a user, as UpdateUser does, keeping only its error.
func (fx *opsFixture) update(ctx context.Context, tenantID, userID string, ch UserChange, who Actor) error {
	_, err := fx.svc.UpdateUser(ctx, tenantID, userID, ch, who)
	return err
}

func TestUserEdits(t *testing.T) {
	const oldPassword, newPassword = "correct horse battery", "staple paper clip tower"
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		fx.tenant(t, "clinic")
		u, err := fx.svc.CreateUser(ctx, UserInput{TenantID: "clinic", Email: "dr@clinic.example", Password: oldPassword,
			Profiles: []storage.Profile{{FHIRUser: "Practitioner/1"}}}, Actor{ID: "setup"})
		if err != nil {
			t.Fatal(err)
		}
		// An enrolled second factor with recovery codes, for the reset to remove.
		now := fx.clock.Now()
		if err := fx.store.SaveTOTPEnrollment(ctx, storage.TOTPEnrollment{TenantID: "clinic", UserID: u.ID, SecretSealed: []byte("sealed-seed"),
			CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if err := fx.store.ConfirmTOTPEnrollment(ctx, "clinic", u.ID, []byte("sealed-seed"), [][]byte{[]byte("code-digest")}, now); err != nil {
			t.Fatal(err)
		}
		who := Actor{ID: "op", SourceIP: "192.0.2.9"}
		get := func(t *testing.T) storage.User {
			t.Helper()
			got, err := fx.store.GetUser(ctx, "clinic", u.ID)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}

		steps := []struct {
			name    string
			op      func(ctx context.Context) error
			event   string
			ends    bool // the user's sessions end
			check   func(t *testing.T)
			details map[string]string
		}{
			{"disable", func(ctx context.Context) error {
				return fx.update(ctx, "clinic", u.ID, UserChange{Disabled: new(true)}, who)
			},
				"admin.user.disable", true, func(t *testing.T) {
					if !get(t).Disabled {
						t.Fatal("the user is not disabled")
					}
				}, nil},
			{"enable", func(ctx context.Context) error {
				return fx.update(ctx, "clinic", u.ID, UserChange{Disabled: new(false)}, who)
			},
				"admin.user.enable", false, func(t *testing.T) {
					if get(t).Disabled {
						t.Fatal("the user is still disabled")
					}
				}, nil},
			{"reset password", func(ctx context.Context) error {
				return fx.update(ctx, "clinic", u.ID, UserChange{Password: new(newPassword)}, who)
			},
				"admin.user.reset_password", true, func(t *testing.T) {
					h := get(t).PasswordHash
					if password.Verify(h, newPassword) != nil || !errors.Is(password.Verify(h, oldPassword), password.ErrMismatch) {
						t.Fatal("the new password does not replace the old one")
					}
				}, nil},
			{"reset second factor", func(ctx context.Context) error { return fx.svc.ResetSecondFactor(ctx, "clinic", u.ID, who) },
				"admin.user.reset_mfa", true, func(t *testing.T) {
					n, err := fx.store.CountRecoveryCodes(ctx, "clinic", u.ID)
					if len(get(t).TOTPSecret) != 0 || n != 0 || err != nil {
						t.Fatalf("TOTP secret or %d recovery codes left (%v)", n, err)
					}
				}, nil},
			{"set profiles", func(ctx context.Context) error {
				return fx.update(ctx, "clinic", u.ID, UserChange{Profiles: &[]storage.Profile{{FHIRUser: " Patient/7 "}, {FHIRUser: "Practitioner/2", Label: "Attending"}}}, who)
			}, "admin.user.set_profiles", false, func(t *testing.T) {
				want := []storage.Profile{{FHIRUser: "Patient/7", Label: "Patient"}, {FHIRUser: "Practitioner/2", Label: "Attending"}}
				if got := get(t).Profiles; !slices.Equal(got, want) {
					t.Fatalf("profiles %v, want %v", got, want)
				}
			}, map[string]string{"profiles": "Patient/7 Practitioner/2"}},
			{"make admin", func(ctx context.Context) error {
				return fx.update(ctx, "clinic", u.ID, UserChange{Admin: new(true)}, who)
			},
				"admin.user.set_admin", false, func(t *testing.T) {
					if !get(t).Admin {
						t.Fatal("the user is not an admin")
					}
				}, map[string]string{"admin": "true"}},
			{"withdraw admin", func(ctx context.Context) error {
				return fx.update(ctx, "clinic", u.ID, UserChange{Admin: new(false)}, who)
			},
				"admin.user.set_admin", true, func(t *testing.T) {
					if get(t).Admin {
						t.Fatal("the user is still an admin")
					}
				}, map[string]string{"admin": "false"}},
			{"delete", func(ctx context.Context) error { return fx.svc.DeleteUser(ctx, "clinic", u.ID, who) },
				"admin.user.delete", true, func(t *testing.T) {
					if _, err := fx.store.GetUser(ctx, "clinic", u.ID); !errors.Is(err, storage.ErrNotFound) {
						t.Fatalf("the deleted user is still there: %v", err)
					}
				}, map[string]string{"email": "dr@clinic.example"}},
		}
		for _, st := range steps {
			session := fx.signIn(t, "clinic", u.ID)
			if err := st.op(ctx); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			st.check(t)
			if ended := !fx.hasSession(t, "clinic", session); ended != st.ends {
				t.Fatalf("%s: sessions ended = %v, want %v", st.name, ended, st.ends)
			}
			e := fx.lastEvent(t, "clinic", st.event, who, u.ID, oldPassword, newPassword, u.PasswordHash, "sealed-seed")
			if len(e.Details) != len(st.details) {
				t.Fatalf("%s: audit details %v, want %v", st.name, e.Details, st.details)
			}
			for k, v := range st.details {
				if e.Details[k] != v {
					t.Fatalf("%s: audit details %v, want %v", st.name, e.Details, st.details)
				}
			}
		}
		// The reset password's hash never reached the trail either.
		for _, e := range fx.events(t, "clinic", "") {
			for k, v := range e.Details {
				if k == "password_hash" || (len(v) > 9 && v[:9] == "$argon2id") {
					t.Fatalf("event %s holds a password hash in %s", e.Type, k)
				}
			}
		}
	})
}

func TestUserEditRefusals(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		fx.tenant(t, "clinic")
		fx.tenant(t, "other")
		u, err := fx.svc.CreateUser(ctx, UserInput{TenantID: "clinic", Email: "dr@clinic.example", Password: "correct horse battery",
			Profiles: []storage.Profile{{FHIRUser: "Practitioner/1"}}}, Actor{ID: "setup"})
		if err != nil {
			t.Fatal(err)
		}
		session := fx.signIn(t, "clinic", u.ID)
		who := Actor{ID: "op"}
		tests := []struct {
			name string
			op   func() error
			want error
			says string
		}{
			{"short password", func() error { return fx.update(ctx, "clinic", u.ID, UserChange{Password: new("short")}, who) }, ErrInvalid, "at least 8"},
			{"bad profile", func() error {
				return fx.update(ctx, "clinic", u.ID, UserChange{Profiles: &[]storage.Profile{{FHIRUser: "Observation/1"}}}, who)
			}, ErrInvalid, "Practitioner/"},
			{"profile twice", func() error {
				return fx.update(ctx, "clinic", u.ID, UserChange{Profiles: &[]storage.Profile{{FHIRUser: "Patient/1"}, {FHIRUser: "Patient/1", Label: "Me"}}}, who)
			}, ErrInvalid, "twice"},
			{"disable unknown", func() error { return fx.update(ctx, "clinic", "ghost", UserChange{Disabled: new(true)}, who) }, storage.ErrNotFound, ""},
			{"reset password of unknown", func() error {
				return fx.update(ctx, "clinic", "ghost", UserChange{Password: new("long enough pw")}, who)
			}, storage.ErrNotFound, ""},
			{"reset second factor of unknown", func() error { return fx.svc.ResetSecondFactor(ctx, "clinic", "ghost", who) }, storage.ErrNotFound, ""},
			{"set profiles of unknown", func() error {
				return fx.update(ctx, "clinic", "ghost", UserChange{Profiles: &[]storage.Profile{}}, who)
			}, storage.ErrNotFound, ""},
			{"set admin of unknown", func() error { return fx.update(ctx, "clinic", "ghost", UserChange{Admin: new(true)}, who) }, storage.ErrNotFound, ""},
			{"delete unknown", func() error { return fx.svc.DeleteUser(ctx, "clinic", "ghost", who) }, storage.ErrNotFound, ""},
			// A user is reached only through its own tenant.
			{"disable through another tenant", func() error { return fx.update(ctx, "other", u.ID, UserChange{Disabled: new(true)}, who) }, storage.ErrNotFound, ""},
			{"reset second factor through another tenant", func() error { return fx.svc.ResetSecondFactor(ctx, "other", u.ID, who) }, storage.ErrNotFound, ""},
			{"delete through another tenant", func() error { return fx.svc.DeleteUser(ctx, "other", u.ID, who) }, storage.ErrNotFound, ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				mustRefuse(t, tc.name, tc.op(), tc.want, tc.says)
			})
		}
		got, err := fx.store.GetUser(ctx, "clinic", u.ID)
		if err != nil || got.Disabled || got.PasswordHash != u.PasswordHash || !slices.Equal(got.Profiles, u.Profiles) || !fx.hasSession(t, "clinic", session) {
			t.Fatalf("refused edits changed the user: %+v, %v", got, err)
		}
		for _, id := range []string{"clinic", "other"} {
			for _, e := range fx.events(t, id, "") {
				if e.Type != "admin.tenant.create" && e.Type != "admin.user.create" {
					t.Fatalf("a refused edit was audited in %s: %+v", id, e)
				}
			}
		}
	})
}

func TestLastOperatorKeepsRights(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		setup := Actor{ID: "setup"}
		ops := map[string]storage.User{}
		for _, email := range []string{"ann@ops.example", "bob@ops.example"} {
			u, err := fx.svc.CreateAdmin(ctx, "", email, "operator password", setup)
			if err != nil {
				t.Fatal(err)
			}
			ops[email] = u
		}
		// A user of the realm without admin rights is no operator to fall back on.
		plain, err := fx.svc.CreateUser(ctx, UserInput{TenantID: storage.OperatorRealm, Email: "carl@ops.example"}, setup)
		if err != nil {
			t.Fatal(err)
		}
		// A tenant may be left without an admin: an operator can always add one.
		fx.tenant(t, "clinic")
		tenantAdmin, err := fx.svc.CreateAdmin(ctx, "clinic", "admin@clinic.example", "tenant admin password", setup)
		if err != nil {
			t.Fatal(err)
		}
		ann, bob := ops["ann@ops.example"].ID, ops["bob@ops.example"].ID
		realm := storage.OperatorRealm
		who := Actor{ID: "op"}
		steps := []struct {
			name    string
			op      func() error
			refused bool
		}{
			{"disable one of two operators", func() error { return fx.update(ctx, realm, bob, UserChange{Disabled: new(true)}, who) }, false},
			{"disable the last enabled operator", func() error { return fx.update(ctx, realm, ann, UserChange{Disabled: new(true)}, who) }, true},
			{"withdraw the last operator's rights", func() error { return fx.update(ctx, realm, ann, UserChange{Admin: new(false)}, who) }, true},
			{"delete the last enabled operator", func() error { return fx.svc.DeleteUser(ctx, realm, ann, who) }, true},
			{"make a realm user an operator", func() error { return fx.update(ctx, realm, plain.ID, UserChange{Admin: new(true)}, who) }, false},
			{"now the first operator may go", func() error { return fx.svc.DeleteUser(ctx, realm, ann, who) }, false},
			{"delete a disabled operator", func() error { return fx.svc.DeleteUser(ctx, realm, bob, who) }, false},
			{"the new last operator stays", func() error { return fx.update(ctx, realm, plain.ID, UserChange{Admin: new(false)}, who) }, true},
			{"disable the only tenant admin", func() error { return fx.update(ctx, "clinic", tenantAdmin.ID, UserChange{Disabled: new(true)}, who) }, false},
			{"delete the only tenant admin", func() error { return fx.svc.DeleteUser(ctx, "clinic", tenantAdmin.ID, who) }, false},
		}
		for _, st := range steps {
			err := st.op()
			if st.refused {
				mustRefuse(t, st.name, err, ErrInvalid, "no enabled operator")
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		last, err := fx.store.GetUser(ctx, realm, plain.ID)
		if err != nil || !last.Admin || last.Disabled {
			t.Fatalf("the last operator %+v, %v", last, err)
		}
	})
}

// TestUserEditVersions: an edit made from a version of the user that is no
// longer current changes nothing, ends no session and is not audited; an
// edit made from the current version, or from none, goes through and moves
// the version on by one.
func TestUserEditVersions(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		fx.tenant(t, "clinic")
		u, err := fx.svc.CreateUser(ctx, UserInput{TenantID: "clinic", Email: "dr@clinic.example", Password: "correct horse battery",
			Profiles: []storage.Profile{{FHIRUser: "Practitioner/1"}}}, Actor{ID: "setup"})
		if err != nil {
			t.Fatal(err)
		}
		if u.Version != 1 {
			t.Fatalf("a new user is at version %d, want 1", u.Version)
		}
		who := Actor{ID: "op"}
		// Another admin changes the user after this admin read it.
		first, err := fx.svc.UpdateUser(ctx, "clinic", u.ID, UserChange{Version: u.Version, Profiles: &[]storage.Profile{{FHIRUser: "Practitioner/2"}}}, who)
		if err != nil {
			t.Fatal(err)
		}
		stored := func(t *testing.T) storage.User {
			t.Helper()
			got, err := fx.store.GetUser(ctx, "clinic", u.ID)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		if got := stored(t); first.Version != 2 || got.Version != first.Version || !slices.Equal(got.Profiles, first.Profiles) {
			t.Fatalf("after one edit: returned %+v, stored %+v", first, got)
		}
		session := fx.signIn(t, "clinic", u.ID)
		before := len(fx.events(t, "clinic", ""))

		for _, tc := range []struct {
			name string
			ch   UserChange
		}{
			{"disable", UserChange{Version: u.Version, Disabled: new(true)}},
			{"make admin", UserChange{Version: u.Version, Admin: new(true)}},
			{"set profiles", UserChange{Version: u.Version, Profiles: &[]storage.Profile{{FHIRUser: "Patient/3"}}}},
			{"reset password", UserChange{Version: u.Version, Password: new("a password set from a stale page")}},
			{"from a version never stored", UserChange{Version: first.Version + 1, Disabled: new(true)}},
		} {
			_, err := fx.svc.UpdateUser(ctx, "clinic", u.ID, tc.ch, who)
			mustRefuse(t, tc.name, err, storage.ErrConflict, "")
		}
		got := stored(t)
		if got.Version != first.Version || got.Disabled || got.Admin || !slices.Equal(got.Profiles, first.Profiles) || got.PasswordHash != first.PasswordHash {
			t.Fatalf("stale edits changed the user: %+v", got)
		}
		if !fx.hasSession(t, "clinic", session) {
			t.Fatal("a stale edit ended the user's session")
		}
		if after := len(fx.events(t, "clinic", "")); after != before {
			t.Fatalf("stale edits were audited: %d events, want %d", after, before)
		}

		// No version means the user as it is now.
		now, err := fx.svc.UpdateUser(ctx, "clinic", u.ID, UserChange{Admin: new(true)}, who)
		if err != nil {
			t.Fatal(err)
		}
		got = stored(t)
		if now.Version != 3 || got.Version != 3 || !got.Admin || !slices.Equal(got.Profiles, first.Profiles) {
			t.Fatalf("an edit of the current user: returned %+v, stored %+v", now, got)
		}
	})
}

// TestUserChangeIsOneUpdate: the changes of one edit are one update, one
// version step and one batch of audit events; when one of them is refused,
// none is made.
func TestUserChangeIsOneUpdate(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		setup, who := Actor{ID: "setup"}, Actor{ID: "op", SourceIP: "192.0.2.5"}
		ann, err := fx.svc.CreateAdmin(ctx, "", "ann@ops.example", "operator password", setup)
		if err != nil {
			t.Fatal(err)
		}
		realm := storage.OperatorRealm
		before := len(fx.events(t, realm, ""))
		for _, tc := range []struct {
			name string
			ch   UserChange
			says string
		}{
			{"profiles with disabling the last operator", UserChange{Profiles: &[]storage.Profile{{FHIRUser: "Practitioner/1"}}, Disabled: new(true)},
				"disabling ann@ops.example would leave no enabled operator"},
			{"a password with demoting the last operator", UserChange{Password: new("a long new password"), Admin: new(false)},
				"withdrawing operator rights from ann@ops.example would leave no enabled operator"},
			{"admin rights with a short password", UserChange{Admin: new(true), Password: new("short")}, "at least 8"},
			{"disabling with a bad profile", UserChange{Disabled: new(true), Profiles: &[]storage.Profile{{FHIRUser: "Observation/1"}}}, "Practitioner/"},
		} {
			_, err := fx.svc.UpdateUser(ctx, realm, ann.ID, tc.ch, who)
			mustRefuse(t, tc.name, err, ErrInvalid, tc.says)
		}
		got, err := fx.store.GetUser(ctx, realm, ann.ID)
		if err != nil || got.Version != ann.Version || len(got.Profiles) != 0 || got.PasswordHash != ann.PasswordHash || !got.Admin || got.Disabled {
			t.Fatalf("refused edits changed the operator: %+v, %v", got, err)
		}
		if after := len(fx.events(t, realm, "")); after != before {
			t.Fatalf("refused edits were audited: %d events, want %d", after, before)
		}

		fx.tenant(t, "clinic")
		u, err := fx.svc.CreateUser(ctx, UserInput{TenantID: "clinic", Email: "dr@clinic.example", Password: "correct horse battery"}, setup)
		if err != nil {
			t.Fatal(err)
		}
		session := fx.signIn(t, "clinic", u.ID)
		const newPassword = "staple paper clip tower"
		done, err := fx.svc.UpdateUser(ctx, "clinic", u.ID, UserChange{Version: u.Version, Profiles: &[]storage.Profile{{FHIRUser: "Practitioner/4"}},
			Admin: new(true), Disabled: new(true), Password: new(newPassword)}, who)
		if err != nil {
			t.Fatal(err)
		}
		got, err = fx.store.GetUser(ctx, "clinic", u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != u.Version+1 || done.Version != got.Version || !got.Admin || !got.Disabled || len(got.Profiles) != 1 ||
			password.Verify(got.PasswordHash, newPassword) != nil {
			t.Fatalf("after one edit of four changes: returned version %d, stored %+v; want every change at version %d", done.Version, got, u.Version+1)
		}
		if fx.hasSession(t, "clinic", session) {
			t.Fatal("disabling the user left its session")
		}
		es := fx.events(t, "clinic", "")
		es = es[len(es)-4:]
		for i, typ := range []string{"admin.user.set_profiles", "admin.user.set_admin", "admin.user.disable", "admin.user.reset_password"} {
			e := es[i]
			if e.Type != typ || e.Subject != u.ID || e.ActorID != who.ID || e.SourceIP != who.SourceIP || (i > 0 && e.Seq != es[i-1].Seq+1) {
				t.Fatalf("event %d of the edit: %+v, want %s", i, e, typ)
			}
		}
	})
}

// TestLastOperatorRace: operators taken out at the same moment, each by its
// own request, leave exactly one enabled operator.
func TestLastOperatorRace(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		realm := storage.OperatorRealm
		const racers = 4
		for round := range 5 {
			// The survivor of the round before races with the new operators.
			for i := range racers - min(round, 1) {
				if _, err := fx.svc.CreateAdmin(ctx, "", fmt.Sprintf("op%d-%d@ops.example", round, i), "operator password", Actor{ID: "setup"}); err != nil {
					t.Fatal(err)
				}
			}
			var targets []storage.User
			us, err := fx.store.ListUsers(ctx, realm)
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range us {
				if u.Admin && !u.Disabled {
					targets = append(targets, u)
				}
			}
			errs := make([]error, len(targets))
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i, u := range targets {
				wg.Go(func() {
					<-start
					switch i % 3 {
					case 0:
						errs[i] = fx.update(ctx, realm, u.ID, UserChange{Disabled: new(true)}, Actor{ID: "op"})
					case 1:
						errs[i] = fx.update(ctx, realm, u.ID, UserChange{Admin: new(false)}, Actor{ID: "op"})
					default:
						errs[i] = fx.svc.DeleteUser(ctx, realm, u.ID, Actor{ID: "op"})
					}
				})
			}
			close(start)
			wg.Wait()
			refused := 0
			for i, err := range errs {
				switch {
				case errors.Is(err, ErrInvalid) && strings.Contains(err.Error(), "no enabled operator"):
					refused++
				case err != nil:
					t.Fatalf("round %d: change %d: %v", round, i, err)
				}
			}
			us, err = fx.store.ListUsers(ctx, realm)
			if err != nil {
				t.Fatal(err)
			}
			enabled := 0
			for _, u := range us {
				if u.Admin && !u.Disabled {
					enabled++
				}
			}
			if refused != 1 || enabled != 1 {
				t.Fatalf("round %d: %d of %d changes refused, %d enabled operators left; want 1 and 1", round, refused, len(targets), enabled)
			}
		}
	})
}

// TestResetPasswordClearsThrottle: a new password clears the failed
// sign-ins counted against the user's email, whatever case they were typed
// in, so the user can sign in with it at once; other counters stay.
func TestResetPasswordClearsThrottle(t *testing.T) {
	eachOpsStore(t, func(t *testing.T, fx *opsFixture) {
		ctx := t.Context()
		fx.tenant(t, "clinic")
		fx.tenant(t, "other")
		u, err := fx.svc.CreateUser(ctx, UserInput{TenantID: "clinic", Email: "Dr.Who@Clinic.example", Password: "correct horse battery"}, Actor{ID: "setup"})
		if err != nil {
			t.Fatal(err)
		}
		const window = 15 * time.Minute
		counters := []struct {
			tenant, key string
			cleared     bool
		}{
			{"clinic", EmailThrottleKey("dr.who@clinic.EXAMPLE"), true},
			{"clinic", EmailThrottleKey("nurse@clinic.example"), false},
			{"clinic", "ip:192.0.2.1", false},
			{"other", EmailThrottleKey("dr.who@clinic.example"), false},
		}
		for _, c := range counters {
			for range 5 {
				if _, err := fx.store.RecordFailure(ctx, c.tenant, c.key, fx.clock.Now(), window); err != nil {
					t.Fatal(err)
				}
			}
		}
		count := func(t *testing.T, tenant, key string) int64 {
			t.Helper()
			n, err := fx.store.FailureCount(ctx, tenant, key, fx.clock.Now(), window)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		// A refused password clears nothing.
		mustRefuse(t, "short password", fx.svc.ResetPassword(ctx, "clinic", u.ID, "short", Actor{ID: "op"}), ErrInvalid, "")
		if n := count(t, "clinic", counters[0].key); n != 5 {
			t.Fatalf("a refused password left %d failures, want 5", n)
		}
		if err := fx.svc.ResetPassword(ctx, "clinic", u.ID, "staple paper clip tower", Actor{ID: "op"}); err != nil {
			t.Fatal(err)
		}
		for _, c := range counters {
			want := int64(5)
			if c.cleared {
				want = 0
			}
			if n := count(t, c.tenant, c.key); n != want {
				t.Errorf("counter %s of %s: %d failures after the reset, want %d", c.key, c.tenant, n, want)
			}
		}
	})
}
