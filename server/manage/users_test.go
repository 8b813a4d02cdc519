package manage

import (
	"context"
	"errors"
	"slices"
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
			{"disable", func(ctx context.Context) error { return fx.svc.SetUserDisabled(ctx, "clinic", u.ID, true, who) },
				"admin.user.disable", true, func(t *testing.T) {
					if !get(t).Disabled {
						t.Fatal("the user is not disabled")
					}
				}, nil},
			{"enable", func(ctx context.Context) error { return fx.svc.SetUserDisabled(ctx, "clinic", u.ID, false, who) },
				"admin.user.enable", false, func(t *testing.T) {
					if get(t).Disabled {
						t.Fatal("the user is still disabled")
					}
				}, nil},
			{"reset password", func(ctx context.Context) error { return fx.svc.ResetPassword(ctx, "clinic", u.ID, newPassword, who) },
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
				return fx.svc.SetProfiles(ctx, "clinic", u.ID, []storage.Profile{{FHIRUser: " Patient/7 "}, {FHIRUser: "Practitioner/2", Label: "Attending"}}, who)
			}, "admin.user.set_profiles", false, func(t *testing.T) {
				want := []storage.Profile{{FHIRUser: "Patient/7", Label: "Patient"}, {FHIRUser: "Practitioner/2", Label: "Attending"}}
				if got := get(t).Profiles; !slices.Equal(got, want) {
					t.Fatalf("profiles %v, want %v", got, want)
				}
			}, map[string]string{"profiles": "Patient/7 Practitioner/2"}},
			{"make admin", func(ctx context.Context) error { return fx.svc.SetAdmin(ctx, "clinic", u.ID, true, who) },
				"admin.user.set_admin", false, func(t *testing.T) {
					if !get(t).Admin {
						t.Fatal("the user is not an admin")
					}
				}, map[string]string{"admin": "true"}},
			{"withdraw admin", func(ctx context.Context) error { return fx.svc.SetAdmin(ctx, "clinic", u.ID, false, who) },
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
			{"short password", func() error { return fx.svc.ResetPassword(ctx, "clinic", u.ID, "short", who) }, ErrInvalid, "at least 8"},
			{"bad profile", func() error {
				return fx.svc.SetProfiles(ctx, "clinic", u.ID, []storage.Profile{{FHIRUser: "Observation/1"}}, who)
			}, ErrInvalid, "Practitioner/"},
			{"profile twice", func() error {
				return fx.svc.SetProfiles(ctx, "clinic", u.ID, []storage.Profile{{FHIRUser: "Patient/1"}, {FHIRUser: "Patient/1", Label: "Me"}}, who)
			}, ErrInvalid, "twice"},
			{"disable unknown", func() error { return fx.svc.SetUserDisabled(ctx, "clinic", "ghost", true, who) }, storage.ErrNotFound, ""},
			{"reset password of unknown", func() error { return fx.svc.ResetPassword(ctx, "clinic", "ghost", "long enough pw", who) }, storage.ErrNotFound, ""},
			{"reset second factor of unknown", func() error { return fx.svc.ResetSecondFactor(ctx, "clinic", "ghost", who) }, storage.ErrNotFound, ""},
			{"set profiles of unknown", func() error { return fx.svc.SetProfiles(ctx, "clinic", "ghost", nil, who) }, storage.ErrNotFound, ""},
			{"set admin of unknown", func() error { return fx.svc.SetAdmin(ctx, "clinic", "ghost", true, who) }, storage.ErrNotFound, ""},
			{"delete unknown", func() error { return fx.svc.DeleteUser(ctx, "clinic", "ghost", who) }, storage.ErrNotFound, ""},
			// A user is reached only through its own tenant.
			{"disable through another tenant", func() error { return fx.svc.SetUserDisabled(ctx, "other", u.ID, true, who) }, storage.ErrNotFound, ""},
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
			{"disable one of two operators", func() error { return fx.svc.SetUserDisabled(ctx, realm, bob, true, who) }, false},
			{"disable the last enabled operator", func() error { return fx.svc.SetUserDisabled(ctx, realm, ann, true, who) }, true},
			{"withdraw the last operator's rights", func() error { return fx.svc.SetAdmin(ctx, realm, ann, false, who) }, true},
			{"delete the last enabled operator", func() error { return fx.svc.DeleteUser(ctx, realm, ann, who) }, true},
			{"make a realm user an operator", func() error { return fx.svc.SetAdmin(ctx, realm, plain.ID, true, who) }, false},
			{"now the first operator may go", func() error { return fx.svc.DeleteUser(ctx, realm, ann, who) }, false},
			{"delete a disabled operator", func() error { return fx.svc.DeleteUser(ctx, realm, bob, who) }, false},
			{"the new last operator stays", func() error { return fx.svc.SetAdmin(ctx, realm, plain.ID, false, who) }, true},
			{"disable the only tenant admin", func() error { return fx.svc.SetUserDisabled(ctx, "clinic", tenantAdmin.ID, true, who) }, false},
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
