package conformance

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/smartauth/smartauth/storage"
)

// testTenantVersions: UpdateTenant writes only over the version it names
// and moves it on by one; a stale or unknown version changes nothing.
func testTenantVersions(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	read, err := s.GetTenant(ctx, "acme")
	must(t, "get tenant", err)
	mustEqual(t, "version of a new tenant", read.Version, int64(1))

	first := read
	first.Name = "First edit"
	must(t, "update from the version read", s.UpdateTenant(ctx, first))
	want := first
	want.Version = 2
	got, err := s.GetTenant(ctx, "acme")
	must(t, "get updated tenant", err)
	mustEqual(t, "updated tenant", got, want)

	// A second edit made from the first read would undo the first edit.
	stale := read
	stale.Name = "Stale edit"
	stale.Policy = storage.TenantPolicy{OpaqueAccessTokens: true}
	mustErr(t, "update from a stale version", s.UpdateTenant(ctx, stale), storage.ErrConflict)
	ahead := want
	ahead.Version = 7
	mustErr(t, "update from a version never stored", s.UpdateTenant(ctx, ahead), storage.ErrConflict)
	got, err = s.GetTenant(ctx, "acme")
	must(t, "get tenant after refused updates", err)
	mustEqual(t, "tenant after refused updates", got, want)

	list, err := s.ListTenants(ctx)
	must(t, "list tenants", err)
	mustEqual(t, "listed tenants", list, []storage.Tenant{want})

	ghost := tenantFixture("ghost")
	mustErr(t, "update unknown tenant", s.UpdateTenant(ctx, ghost), storage.ErrNotFound)

	// A new record starts at 1, whatever the caller's struct says.
	other := tenantFixture("other")
	other.Version = 42
	must(t, "create tenant with a version set", s.CreateTenant(ctx, other, nil))
	got, err = s.GetTenant(ctx, "other")
	must(t, "get tenant created with a version set", err)
	mustEqual(t, "version of a tenant created with one set", got.Version, int64(1))
	u := userFixture("other", "u1", "u1@other.example")
	u.Version = 42
	must(t, "create user with a version set", s.CreateUser(ctx, u))
	stored, err := s.GetUser(ctx, "other", "u1")
	must(t, "get user created with a version set", err)
	mustEqual(t, "version of a user created with one set", stored.Version, int64(1))
}

// testUserVersions: UpdateUser writes only over the version it names, and
// the TOTP writes move the version on too, so an edit read before an
// enrollment or reset is refused. A refused disable ends no grant.
func testUserVersions(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	must(t, "create user", s.CreateUser(ctx, userFixture("acme", "u1", "u1@acme.example")))
	tok := tokenFixture("acme", storage.KindRefreshToken, "rt-u1", "req-u1", "app")
	tok.Subject = "u1"
	must(t, "create token", s.CreateToken(ctx, tok))
	get := func(what string) storage.User {
		t.Helper()
		u, err := s.GetUser(ctx, "acme", "u1")
		must(t, what, err)
		return u
	}
	read := get("get user")
	mustEqual(t, "version of a new user", read.Version, int64(1))

	edit := read
	edit.Profiles = []storage.Profile{{FHIRUser: "Practitioner/7", Label: "Ward nurse"}}
	must(t, "update from the version read", s.UpdateUser(ctx, edit))
	want := edit
	want.Version = 2
	mustEqual(t, "updated user", get("get updated user"), want)

	stale := read
	stale.Disabled = true
	stale.Email = "stale@acme.example"
	mustErr(t, "update from a stale version", s.UpdateUser(ctx, stale), storage.ErrConflict)
	mustEqual(t, "user after a refused update", get("get user after a refused update"), want)
	active, err := s.GetToken(ctx, "acme", storage.KindRefreshToken, "rt-u1")
	must(t, "get token", err)
	if !active.Active {
		t.Fatal("a refused disable deactivated the user's grants")
	}
	byEmail, err := s.GetUserByEmail(ctx, "acme", "u1@acme.example")
	must(t, "get user by email", err)
	mustEqual(t, "version by email", byEmail.Version, want.Version)
	list, err := s.ListUsers(ctx, "acme")
	must(t, "list users", err)
	mustEqual(t, "listed users", list, []storage.User{want})

	beforeEnrollment := get("get user before enrollment")
	e := storage.TOTPEnrollment{TenantID: "acme", UserID: "u1", SecretSealed: []byte("sealed"), CreatedAt: t0(), ExpiresAt: t0().Add(10 * time.Minute)}
	must(t, "save enrollment", s.SaveTOTPEnrollment(ctx, e))
	mustEqual(t, "version while enrollment is pending", get("get user while pending").Version, want.Version)
	must(t, "confirm enrollment", s.ConfirmTOTPEnrollment(ctx, "acme", "u1", e.SecretSealed, nil, t0()))
	enrolled := get("get enrolled user")
	mustEqual(t, "version after enrollment", enrolled.Version, want.Version+1)
	beforeEnrollment.Admin = true
	mustErr(t, "update read before the enrollment", s.UpdateUser(ctx, beforeEnrollment), storage.ErrConflict)
	must(t, "reset totp", s.ResetTOTP(ctx, "acme", "u1", t0()))
	mustEqual(t, "version after a reset", get("get reset user").Version, enrolled.Version+1)
	enrolled.Admin = true
	mustErr(t, "update read before the reset", s.UpdateUser(ctx, enrolled), storage.ErrConflict)
	if get("get user after refused updates").Admin {
		t.Fatal("a refused update made the user an admin")
	}

	mustErr(t, "update unknown user", s.UpdateUser(ctx, userFixture("acme", "ghost", "ghost@acme.example")), storage.ErrNotFound)
}

// operator creates a user of the operator realm.
func operator(t *testing.T, s storage.Storage, id string, admin, disabled bool) {
	t.Helper()
	u := userFixture(storage.OperatorRealm, id, id+"@ops.example")
	u.Admin, u.Disabled = admin, disabled
	must(t, "create operator "+id, s.CreateUser(t.Context(), u))
}

// testLastOperator: the operator realm keeps an enabled admin through
// disables, demotions and deletions; changes that keep one, and every
// change in other tenants, go through.
func testLastOperator(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	realm := storage.OperatorRealm
	must(t, "create operator realm", s.CreateTenant(ctx, storage.Tenant{ID: realm, Name: "Operators", CreatedAt: t0()}, nil))
	mustCreateTenant(t, s, "clinic")
	operator(t, s, "ann", true, false)
	operator(t, s, "bob", true, false)
	operator(t, s, "carl", false, false)
	operator(t, s, "dan", true, true)
	clinicAdmin := userFixture("clinic", "admin", "admin@clinic.example")
	clinicAdmin.Admin = true
	must(t, "create the clinic's admin", s.CreateUser(ctx, clinicAdmin))

	current := func(tenantID, id string) storage.User {
		t.Helper()
		u, err := s.GetUser(ctx, tenantID, id)
		must(t, "get user "+id, err)
		return u
	}
	update := func(tenantID, id string, change func(*storage.User)) func() error {
		return func() error {
			u := current(tenantID, id)
			change(&u)
			return s.UpdateUser(ctx, u)
		}
	}
	disable := func(u *storage.User) { u.Disabled = true }
	demote := func(u *storage.User) { u.Admin = false }
	steps := []struct {
		name string
		op   func() error
		want error
	}{
		{"disable one of two operators", update(realm, "bob", disable), nil},
		{"disable the last enabled operator", update(realm, "ann", disable), storage.ErrLastOperator},
		{"demote the last enabled operator", update(realm, "ann", demote), storage.ErrLastOperator},
		{"disable and demote the last enabled operator", update(realm, "ann", func(u *storage.User) { u.Admin, u.Disabled = false, true }), storage.ErrLastOperator},
		{"delete the last enabled operator", func() error { return s.DeleteUser(ctx, realm, "ann") }, storage.ErrLastOperator},
		{"edit the last operator, who stays one", update(realm, "ann", func(u *storage.User) { u.Email = "ann@new.example" }), nil},
		{"edit a disabled operator", update(realm, "bob", demote), nil},
		{"delete a disabled operator", func() error { return s.DeleteUser(ctx, realm, "dan") }, nil},
		{"make a realm user an operator", update(realm, "carl", func(u *storage.User) { u.Admin = true }), nil},
		{"now the first may go", update(realm, "ann", demote), nil},
		{"and be deleted", func() error { return s.DeleteUser(ctx, realm, "ann") }, nil},
		{"the new last operator stays", func() error { return s.DeleteUser(ctx, realm, "carl") }, storage.ErrLastOperator},
		{"a tenant's only admin may be disabled", update("clinic", "admin", disable), nil},
		{"and deleted", func() error { return s.DeleteUser(ctx, "clinic", "admin") }, nil},
	}
	for _, st := range steps {
		err := st.op()
		if st.want == nil {
			must(t, st.name, err)
			continue
		}
		mustErr(t, st.name, err, st.want)
	}
	last := current(realm, "carl")
	if !last.Admin || last.Disabled {
		t.Fatalf("the last operator is %+v", last)
	}
	if ann, err := s.GetUser(ctx, realm, "ann"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted operator: %+v, %v", ann, err)
	}
}

// testRaceUpdateTenant: racers that read one version of a tenant each write
// their own edit; exactly one is stored and the others are refused.
func testRaceUpdateTenant(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	for round := range rounds {
		read, err := s.GetTenant(ctx, "acme")
		must(t, "get tenant", err)
		name := func(i int) string { return fmt.Sprintf("round %d, racer %d", round, i) }
		errs := race(racers, func(i int) error {
			tn := read
			tn.Name = name(i)
			tn.Policy.MFARequired = i%2 == 0
			return s.UpdateTenant(ctx, tn)
		})
		exactlyOneWinner(t, label("round %d", round), errs, storage.ErrConflict)
		got, err := s.GetTenant(ctx, "acme")
		must(t, "get tenant after the race", err)
		for i, err := range errs {
			if err == nil && (got.Name != name(i) || got.Policy.MFARequired != (i%2 == 0)) {
				t.Fatalf("round %d: racer %d won, but the tenant is %+v", round, i, got)
			}
		}
		mustEqual(t, label("version after round %d", round), got.Version, read.Version+1)
	}
}

// testRaceUpdateUser: racers that read one version of a user each write
// their own edit; exactly one is stored, and a losing disable ends no grant.
func testRaceUpdateUser(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	must(t, "create user", s.CreateUser(ctx, userFixture("acme", "u1", "u1@acme.example")))
	for round := range rounds {
		tok := tokenFixture("acme", storage.KindRefreshToken, label("rt-%d", round), label("req-%d", round), "app")
		tok.Subject = "u1"
		must(t, "create token", s.CreateToken(ctx, tok))
		read, err := s.GetUser(ctx, "acme", "u1")
		must(t, "get user", err)
		mark := func(i int) string { return fmt.Sprintf("round %d, racer %d", round, i) }
		errs := race(racers, func(i int) error {
			u := read
			u.Profiles = []storage.Profile{{FHIRUser: "Practitioner/1", Label: mark(i)}}
			// Odd racers disable; the winner alone decides.
			u.Disabled = i%2 == 1
			return s.UpdateUser(ctx, u)
		})
		exactlyOneWinner(t, fmt.Sprintf("round %d", round), errs, storage.ErrConflict)
		got, err := s.GetUser(ctx, "acme", "u1")
		must(t, "get user after the race", err)
		stored, err := s.GetToken(ctx, "acme", storage.KindRefreshToken, tok.Signature)
		must(t, "get token after the race", err)
		for i, err := range errs {
			if err != nil {
				continue
			}
			if got.Profiles[0].Label != mark(i) || got.Disabled != (i%2 == 1) || stored.Active == got.Disabled {
				t.Fatalf("round %d: racer %d won, but the user is %+v and its token active %v", round, i, got, stored.Active)
			}
		}
		mustEqual(t, fmt.Sprintf("version after round %d", round), got.Version, read.Version+1)
	}
}

// testRaceLastOperator: every enabled operator is taken out at once, each
// by a racer of its own (disabling, demoting or deleting it): all but one
// succeed, and exactly one enabled operator remains.
func testRaceLastOperator(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	realm := storage.OperatorRealm
	must(t, "create operator realm", s.CreateTenant(ctx, storage.Tenant{ID: realm, Name: "Operators", CreatedAt: t0()}, nil))
	for round := range rounds {
		// The survivor of the round before races with new operators.
		for i := range racers {
			operator(t, s, fmt.Sprintf("r%d-op%d", round, i), true, false)
		}
		all, err := s.ListUsers(ctx, realm)
		must(t, "list operators", err)
		var targets []storage.User
		for _, u := range all {
			if u.Admin && !u.Disabled {
				targets = append(targets, u)
			}
		}
		errs := race(len(targets), func(i int) error {
			u := targets[i]
			switch i % 3 {
			case 0:
				u.Disabled = true
			case 1:
				u.Admin = false
			default:
				return s.DeleteUser(ctx, realm, u.ID)
			}
			return s.UpdateUser(ctx, u)
		})
		refused := 0
		for i, err := range errs {
			switch {
			case errors.Is(err, storage.ErrLastOperator):
				refused++
			case err != nil:
				t.Fatalf("round %d: racer %d: %v", round, i, err)
			}
		}
		all, err = s.ListUsers(ctx, realm)
		must(t, "list operators after the race", err)
		enabled := 0
		for _, u := range all {
			if u.Admin && !u.Disabled {
				enabled++
			}
		}
		if refused != 1 || enabled != 1 {
			t.Fatalf("round %d: %d of %d changes refused and %d enabled operators left; want 1 and 1", round, refused, len(targets), enabled)
		}
	}
}
