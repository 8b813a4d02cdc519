package conformance

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/smartauth/smartauth/storage"
)

// RunBasic checks every method of a backend on its own: round trips of each
// entity, the sentinel errors, and the details listed in the package
// documentation. Each subtest gets a fresh store from newStore.
func RunBasic(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, s storage.Storage)
	}{
		{"Ping", testPing},
		{"Tenants", testTenants},
		{"TenantVersions", testTenantVersions},
		{"Clients", testClients},
		{"Users", testUsers},
		{"UserVersions", testUserVersions},
		{"LastOperator", testLastOperator},
		{"UserGrantsEndWithUser", testUserGrantsEndWithUser},
		{"RevokedFamilyStaysRevoked", testRevokedFamilyStaysRevoked},
		{"Patients", testPatients},
		{"PatientsAllOrNone", testPatientsAllOrNone},
		{"PatientsDefaultLimit", testPatientsDefaultLimit},
		{"SigningKeys", testSigningKeys},
		{"RetireSigningKey", testRetireSigningKey},
		{"AddSigningKeys", testAddSigningKeys},
		{"Sessions", testSessions},
		{"Tokens", testTokens},
		{"ListActiveTokens", testListActiveTokens},
		{"Launches", testLaunches},
		{"GetLaunch", testGetLaunch},
		{"Consents", testConsents},
		{"ConsentsEndWithUserAndClient", testConsentsEndWithUserAndClient},
		{"DeleteConsentEndsGrants", testDeleteConsentEndsGrants},
		{"IdentityProviders", testIdentityProviders},
		{"IdentityLinks", testIdentityLinks},
		{"AssertionJTIs", testAssertionJTIs},
		{"FailureCounters", testFailureCounters},
		{"TOTPEnrollment", testTOTPEnrollment},
		{"TOTPSteps", testTOTPSteps},
		{"RecoveryCodes", testRecoveryCodes},
		{"Audit", testAudit},
		{"AuditHostileStrings", testAuditHostileStrings},
		{"AuditBatch", testAuditBatch},
		{"AuditBatchAllOrNone", testAuditBatchAllOrNone},
		{"SweepExpired", testSweepExpired},
		{"NotText", testNotText},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newStore(t)) })
	}
}

func testPing(t *testing.T, s storage.Storage) {
	must(t, "ping", s.Ping(t.Context()))
}

func testTenants(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	acme := tenantFixture("acme")
	key := keyFixture("acme", "acme-k1", t0())
	must(t, "create tenant", s.CreateTenant(ctx, acme, []storage.SigningKey{key}))

	got, err := s.GetTenant(ctx, "acme")
	must(t, "get tenant", err)
	mustEqual(t, "tenant", got, acme)
	keys, err := s.ListSigningKeys(ctx, "acme")
	must(t, "list keys of new tenant", err)
	mustEqual(t, "keys", keys, []storage.SigningKey{key})

	mustErr(t, "create duplicate tenant", s.CreateTenant(ctx, acme, nil), storage.ErrAlreadyExists)
	_, err = s.GetTenant(ctx, "ghost")
	mustErr(t, "get unknown tenant", err, storage.ErrNotFound)

	// A tenant with empty lists and policy, created without keys.
	bare := storage.Tenant{ID: "bare", Name: "Bare", CreatedAt: t0(), Version: 1}
	must(t, "create bare tenant", s.CreateTenant(ctx, bare, nil))
	got, err = s.GetTenant(ctx, "bare")
	must(t, "get bare tenant", err)
	mustEqual(t, "bare tenant", got, bare)

	// CreateTenant is one transaction: a key that cannot be stored (a
	// duplicate kid) leaves no tenant behind.
	half := tenantFixture("half")
	err = s.CreateTenant(ctx, half, []storage.SigningKey{keyFixture("half", "dup", t0()), keyFixture("half", "dup", t0())})
	if err == nil {
		t.Fatal("create tenant with duplicate key ids: got no error")
	}
	_, err = s.GetTenant(ctx, "half")
	mustErr(t, "get tenant whose creation failed", err, storage.ErrNotFound)

	abc := tenantFixture("abc")
	must(t, "create tenant abc", s.CreateTenant(ctx, abc, nil))
	list, err := s.ListTenants(ctx)
	must(t, "list tenants", err)
	mustEqual(t, "tenants", list, []storage.Tenant{abc, acme, bare})

	updated := acme
	updated.Name = "Acme Health"
	updated.FHIRBaseURLs = []string{"https://fhir.acme.example/r4"}
	updated.Policy = storage.TenantPolicy{OpaqueAccessTokens: true, AllowEmailLinking: true, RefreshTokenTTL: storage.Duration(24 * time.Hour)}
	updated.CreatedAt = t0().Add(48 * time.Hour)
	must(t, "update tenant", s.UpdateTenant(ctx, updated))
	got, err = s.GetTenant(ctx, "acme")
	must(t, "get updated tenant", err)
	want := updated
	want.CreatedAt = acme.CreatedAt
	want.Version = acme.Version + 1
	mustEqual(t, "updated tenant", got, want)

	mustErr(t, "update unknown tenant", s.UpdateTenant(ctx, tenantFixture("ghost")), storage.ErrNotFound)
}

func testClients(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	app := clientFixture("acme", "app")
	must(t, "create client", s.CreateClient(ctx, app))
	got, err := s.GetClient(ctx, "acme", "app")
	must(t, "get client", err)
	mustEqual(t, "client", got, app)

	mustErr(t, "create duplicate client", s.CreateClient(ctx, app), storage.ErrAlreadyExists)
	mustErr(t, "create client of unknown tenant", s.CreateClient(ctx, clientFixture("ghost", "app")), storage.ErrNotFound)
	_, err = s.GetClient(ctx, "acme", "nope")
	mustErr(t, "get unknown client", err, storage.ErrNotFound)

	public := storage.Client{TenantID: "acme", ID: "zz-public", Name: "Public", Type: storage.ClientPublic, RedirectURIs: []string{"https://p.example/cb"}, CreatedAt: t0(), UpdatedAt: t0()}
	asym := clientFixture("acme", "aa-asym")
	asym.Type = storage.ClientConfidentialAsymmetric
	asym.SecretHash = nil
	asym.JWKS = nil
	asym.JWKSURL = "https://asym.example/jwks.json"
	for _, c := range []storage.Client{public, asym} {
		must(t, "create client "+c.ID, s.CreateClient(ctx, c))
	}
	list, err := s.ListClients(ctx, "acme")
	must(t, "list clients", err)
	mustEqual(t, "clients", list, []storage.Client{asym, app, public})

	updated := app
	updated.Name = "Renamed"
	updated.Type = storage.ClientConfidentialAsymmetric
	updated.SecretHash = nil
	updated.RedirectURIs = []string{"https://new.example/cb"}
	updated.Scopes = []string{"openid"}
	updated.GrantTypes = []string{"client_credentials"}
	updated.JWKSURL = "https://new.example/jwks"
	updated.JWKS = []byte(`{"keys":[{"kty":"RSA"}]}`)
	updated.LaunchURI = ""
	updated.CanCreateLaunch = false
	updated.AccessTokenTTL = 0
	updated.CreatedAt = t0().Add(time.Hour)
	updated.UpdatedAt = t0().Add(2 * time.Hour)
	must(t, "update client", s.UpdateClient(ctx, updated))
	got, err = s.GetClient(ctx, "acme", "app")
	must(t, "get updated client", err)
	want := updated
	want.CreatedAt = app.CreatedAt
	mustEqual(t, "updated client", got, want)
	mustErr(t, "update unknown client", s.UpdateClient(ctx, clientFixture("acme", "nope")), storage.ErrNotFound)

	// DeleteClient takes the client's grant records along, and only those.
	mine := tokenFixture("acme", storage.KindRefreshToken, "sig-mine", "req-1", "app")
	theirs := tokenFixture("acme", storage.KindRefreshToken, "sig-theirs", "req-2", "zz-public")
	must(t, "create token of app", s.CreateToken(ctx, mine))
	must(t, "create token of other client", s.CreateToken(ctx, theirs))
	must(t, "delete client", s.DeleteClient(ctx, "acme", "app"))
	_, err = s.GetClient(ctx, "acme", "app")
	mustErr(t, "get deleted client", err, storage.ErrNotFound)
	_, err = s.GetToken(ctx, "acme", mine.Kind, mine.Signature)
	mustErr(t, "get token of deleted client", err, storage.ErrNotFound)
	gotToken, err := s.GetToken(ctx, "acme", theirs.Kind, theirs.Signature)
	must(t, "get token of remaining client", err)
	mustEqual(t, "token of remaining client", gotToken, theirs)
	mustErr(t, "delete deleted client", s.DeleteClient(ctx, "acme", "app"), storage.ErrNotFound)
}

func testUsers(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	alice := userFixture("acme", "u1", "Alice@Example.org")
	must(t, "create user", s.CreateUser(ctx, alice))
	got, err := s.GetUser(ctx, "acme", "u1")
	must(t, "get user", err)
	mustEqual(t, "user", got, alice)

	for _, email := range []string{"Alice@Example.org", "alice@example.org", "ALICE@EXAMPLE.ORG"} {
		got, err = s.GetUserByEmail(ctx, "acme", email)
		must(t, "get user by email "+email, err)
		mustEqual(t, "user by email "+email, got, alice)
	}
	_, err = s.GetUserByEmail(ctx, "acme", "bob@example.org")
	mustErr(t, "get user by unknown email", err, storage.ErrNotFound)

	mustErr(t, "create duplicate user id", s.CreateUser(ctx, userFixture("acme", "u1", "other@example.org")), storage.ErrAlreadyExists)
	mustErr(t, "create user with same email in other case", s.CreateUser(ctx, userFixture("acme", "u9", "aLiCe@example.ORG")), storage.ErrAlreadyExists)
	mustErr(t, "create user of unknown tenant", s.CreateUser(ctx, userFixture("ghost", "u1", "a@example.org")), storage.ErrNotFound)
	_, err = s.GetUser(ctx, "acme", "nope")
	mustErr(t, "get unknown user", err, storage.ErrNotFound)

	bob := userFixture("acme", "u2", "bob@example.org")
	bob.PasswordHash = ""
	bob.TOTPSecret = nil
	bob.Profiles = nil
	bob.Disabled = true
	carol := userFixture("acme", "u3", "Carol@example.org")
	for _, u := range []storage.User{carol, bob} {
		must(t, "create user "+u.ID, s.CreateUser(ctx, u))
	}
	list, err := s.ListUsers(ctx, "acme")
	must(t, "list users", err)
	mustEqual(t, "users", list, []storage.User{alice, bob, carol})

	// Federated-only users may have no email; they do not collide.
	for _, id := range []string{"fed-1", "fed-2"} {
		must(t, "create user without email "+id, s.CreateUser(ctx, userFixture("acme", id, "")))
	}
	_, err = s.GetUserByEmail(ctx, "acme", "")
	mustErr(t, "get user by empty email", err, storage.ErrNotFound)

	updated := alice
	updated.Email = "alice@new.example"
	updated.PasswordHash = "$argon2id$v=19$new"
	updated.Disabled = true
	updated.Admin = true
	updated.TOTPSecret = []byte("new-seed")
	updated.Profiles = []storage.Profile{{FHIRUser: "Patient/9"}}
	updated.CreatedAt = t0().Add(time.Hour)
	updated.UpdatedAt = t0().Add(3 * time.Hour)
	must(t, "update user", s.UpdateUser(ctx, updated))
	want := updated
	want.CreatedAt = alice.CreatedAt
	want.Version = alice.Version + 1
	// The TOTP secret changes only through the TOTP methods, so an edit
	// made from an older read cannot undo an enrollment confirmed since.
	want.TOTPSecret = alice.TOTPSecret
	got, err = s.GetUser(ctx, "acme", "u1")
	must(t, "get updated user", err)
	mustEqual(t, "updated user", got, want)
	got, err = s.GetUserByEmail(ctx, "acme", "ALICE@new.example")
	must(t, "get user by new email", err)
	mustEqual(t, "user by new email", got, want)
	_, err = s.GetUserByEmail(ctx, "acme", "alice@example.org")
	mustErr(t, "get user by old email", err, storage.ErrNotFound)

	collide := want
	collide.Email = "BOB@example.org"
	mustErr(t, "update user to another user's email", s.UpdateUser(ctx, collide), storage.ErrAlreadyExists)
	mustErr(t, "update unknown user", s.UpdateUser(ctx, userFixture("acme", "nope", "nope@example.org")), storage.ErrNotFound)

	// DeleteUser takes the user's sessions along, and only those.
	for _, ss := range []storage.Session{sessionFixture("acme", "s1", "u1"), sessionFixture("acme", "s2", "u1"), sessionFixture("acme", "s3", "u2")} {
		must(t, "create session "+ss.ID, s.CreateSession(ctx, ss))
	}
	must(t, "delete user", s.DeleteUser(ctx, "acme", "u1"))
	_, err = s.GetUser(ctx, "acme", "u1")
	mustErr(t, "get deleted user", err, storage.ErrNotFound)
	for _, id := range []string{"s1", "s2"} {
		_, err = s.GetSession(ctx, "acme", id, t0())
		mustErr(t, "get session of deleted user", err, storage.ErrNotFound)
	}
	_, err = s.GetSession(ctx, "acme", "s3", t0())
	must(t, "get session of remaining user", err)
	mustErr(t, "delete deleted user", s.DeleteUser(ctx, "acme", "u1"), storage.ErrNotFound)
	// The email is free again.
	must(t, "reuse email of deleted user", s.CreateUser(ctx, userFixture("acme", "u4", "alice@new.example")))
}

func testPatients(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	roster := []storage.Patient{
		patientFixture("acme", "p1", "Smith", "John", "1980-01-02", "MRN-1"),
		patientFixture("acme", "p2", "Smithers", "Anna", "1975-03-04", "MRN-2", "SSN-2"),
		patientFixture("acme", "p3", "Jones", "Smitty", "1980-01-02"),
		patientFixture("acme", "p4", "Ångström", "Émile", "2001-09-09", "MRN-4"),
		patientFixture("acme", "p5", "O%Brien", "_nd", "1990", "MRN-%"),
	}
	roster[2].Identifiers = nil
	roster[2].Resource = nil
	must(t, "upsert patients", s.UpsertPatients(ctx, "acme", roster))
	for _, p := range roster {
		got, err := s.GetPatient(ctx, "acme", p.ID)
		must(t, "get patient "+p.ID, err)
		mustEqual(t, "patient "+p.ID, got, p)
	}
	_, err := s.GetPatient(ctx, "acme", "nope")
	mustErr(t, "get unknown patient", err, storage.ErrNotFound)
	mustErr(t, "upsert patients of unknown tenant", s.UpsertPatients(ctx, "ghost", []storage.Patient{patientFixture("ghost", "p1", "A", "B", "2000")}), storage.ErrNotFound)

	searches := []struct {
		name string
		q    storage.PatientQuery
		want []string
	}{
		{"everyone, by family then given", storage.PatientQuery{}, []string{"p3", "p5", "p1", "p2", "p4"}},
		{"family or given prefix", storage.PatientQuery{Name: "smi"}, []string{"p3", "p1", "p2"}},
		{"prefix is case-insensitive", storage.PatientQuery{Name: "SMITH"}, []string{"p1", "p2"}},
		{"whole family name", storage.PatientQuery{Name: "smithers"}, []string{"p2"}},
		{"given name prefix", storage.PatientQuery{Name: "ann"}, []string{"p2"}},
		{"non-ASCII prefix", storage.PatientQuery{Name: "ÅNG"}, []string{"p4"}},
		{"non-ASCII given prefix", storage.PatientQuery{Name: "émi"}, []string{"p4"}},
		{"no prefix match inside a name", storage.PatientQuery{Name: "mith"}, nil},
		{"percent is literal", storage.PatientQuery{Name: "%"}, nil},
		{"percent prefix", storage.PatientQuery{Name: "o%"}, []string{"p5"}},
		{"underscore is literal", storage.PatientQuery{Name: "_"}, []string{"p5"}},
		{"no match", storage.PatientQuery{Name: "zzz"}, nil},
		{"birth date", storage.PatientQuery{BirthDate: "1980-01-02"}, []string{"p3", "p1"}},
		{"birth date is exact", storage.PatientQuery{BirthDate: "1980"}, nil},
		{"identifier", storage.PatientQuery{Identifier: "MRN-2"}, []string{"p2"}},
		{"second identifier", storage.PatientQuery{Identifier: "SSN-2"}, []string{"p2"}},
		{"identifier is exact", storage.PatientQuery{Identifier: "MRN"}, nil},
		{"identifier with percent", storage.PatientQuery{Identifier: "MRN-%"}, []string{"p5"}},
		{"name and birth date", storage.PatientQuery{Name: "smi", BirthDate: "1980-01-02"}, []string{"p3", "p1"}},
		{"name and identifier", storage.PatientQuery{Name: "smi", Identifier: "MRN-1"}, []string{"p1"}},
		{"fields combine with and", storage.PatientQuery{Name: "jones", Identifier: "MRN-1"}, nil},
		{"limit", storage.PatientQuery{Name: "smi", Limit: 2}, []string{"p3", "p1"}},
		{"offset", storage.PatientQuery{Name: "smi", Limit: 2, Offset: 2}, []string{"p2"}},
		{"pages of everyone", storage.PatientQuery{Limit: 2, Offset: 2}, []string{"p1", "p2"}},
		{"offset past the end", storage.PatientQuery{Offset: 5}, nil},
	}
	for _, tc := range searches {
		got, err := s.SearchPatients(ctx, "acme", tc.q)
		must(t, "search "+tc.name, err)
		mustEqual(t, "search "+tc.name, patientIDs(got), tc.want)
	}
	got, err := s.SearchPatients(ctx, "acme", storage.PatientQuery{Identifier: "MRN-4"})
	must(t, "search by identifier", err)
	mustEqual(t, "search result", got, roster[3:4])

	// Replacing a patient replaces its searchable fields too.
	p2 := patientFixture("acme", "p2", "Brown", "Anna", "1975-03-04", "MRN-22")
	p2.UpdatedAt = t0().Add(time.Hour)
	newcomer := storage.Patient{ID: "p6", Family: "Tenantless", UpdatedAt: t0()}
	must(t, "upsert replacement", s.UpsertPatients(ctx, "acme", []storage.Patient{p2, newcomer}))
	gotP2, err := s.GetPatient(ctx, "acme", "p2")
	must(t, "get replaced patient", err)
	mustEqual(t, "replaced patient", gotP2, p2)
	gotP6, err := s.GetPatient(ctx, "acme", "p6")
	must(t, "get patient upserted without tenant id", err)
	newcomer.TenantID = "acme"
	mustEqual(t, "patient upserted without tenant id", gotP6, newcomer)
	for _, tc := range []struct {
		q    storage.PatientQuery
		want []string
	}{
		{storage.PatientQuery{Identifier: "MRN-2"}, nil},
		{storage.PatientQuery{Identifier: "SSN-2"}, nil},
		{storage.PatientQuery{Identifier: "MRN-22"}, []string{"p2"}},
		{storage.PatientQuery{Name: "smithers"}, nil},
		{storage.PatientQuery{Name: "bro"}, []string{"p2"}},
	} {
		got, err := s.SearchPatients(ctx, "acme", tc.q)
		must(t, label("search %+v after replace", tc.q), err)
		mustEqual(t, label("search %+v after replace", tc.q), patientIDs(got), tc.want)
	}

	must(t, "delete patient", s.DeletePatient(ctx, "acme", "p1"))
	_, err = s.GetPatient(ctx, "acme", "p1")
	mustErr(t, "get deleted patient", err, storage.ErrNotFound)
	got, err = s.SearchPatients(ctx, "acme", storage.PatientQuery{Identifier: "MRN-1"})
	must(t, "search deleted patient's identifier", err)
	mustEqual(t, "search deleted patient's identifier", patientIDs(got), nil)
	mustErr(t, "delete deleted patient", s.DeletePatient(ctx, "acme", "p1"), storage.ErrNotFound)
}

func testPatientsAllOrNone(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	mustCreateTenant(t, s, "other")
	original := patientFixture("acme", "p1", "Smith", "John", "1980-01-02", "MRN-1")
	must(t, "upsert original", s.UpsertPatients(ctx, "acme", []storage.Patient{original}))

	changed := patientFixture("acme", "p1", "Changed", "Name", "1999-01-01", "MRN-X")
	fresh := patientFixture("acme", "p2", "Fresh", "Face", "2000-01-01", "MRN-2")
	foreign := patientFixture("other", "p3", "Foreign", "Body", "2000-01-01")
	cases := []struct {
		name  string
		batch []storage.Patient
	}{
		{"empty id last", []storage.Patient{changed, fresh, {TenantID: "acme"}}},
		{"empty id first", []storage.Patient{{}, changed, fresh}},
		{"other tenant's patient", []storage.Patient{changed, fresh, foreign}},
	}
	for _, tc := range cases {
		if err := s.UpsertPatients(ctx, "acme", tc.batch); err == nil {
			t.Fatalf("upsert batch with %s: got no error", tc.name)
		}
		got, err := s.GetPatient(ctx, "acme", "p1")
		must(t, "get p1 after refused batch with "+tc.name, err)
		mustEqual(t, "p1 after refused batch with "+tc.name, got, original)
		_, err = s.GetPatient(ctx, "acme", "p2")
		mustErr(t, "get p2 after refused batch with "+tc.name, err, storage.ErrNotFound)
		_, err = s.GetPatient(ctx, "other", "p3")
		mustErr(t, "get foreign patient after refused batch with "+tc.name, err, storage.ErrNotFound)
		res, err := s.SearchPatients(ctx, "acme", storage.PatientQuery{Identifier: "MRN-X"})
		must(t, "search after refused batch with "+tc.name, err)
		mustEqual(t, "search after refused batch with "+tc.name, patientIDs(res), nil)
	}
	must(t, "upsert empty batch", s.UpsertPatients(ctx, "acme", nil))
}

func testPatientsDefaultLimit(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	var roster []storage.Patient
	for i := range 60 {
		roster = append(roster, patientFixture("acme", label("p%02d", i), "Doe", label("G%02d", i), "2000-01-01"))
	}
	must(t, "upsert 60 patients", s.UpsertPatients(ctx, "acme", roster))
	got, err := s.SearchPatients(ctx, "acme", storage.PatientQuery{Name: "doe"})
	must(t, "search", err)
	if len(got) != 50 {
		t.Fatalf("search with zero limit: got %d patients, want 50", len(got))
	}
	got, err = s.SearchPatients(ctx, "acme", storage.PatientQuery{Name: "doe", Limit: 55})
	must(t, "search with limit 55", err)
	if len(got) != 55 {
		t.Fatalf("search with limit 55: got %d patients, want 55", len(got))
	}
}

func testSigningKeys(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	k1 := keyFixture("acme", "k1", t0())
	must(t, "create tenant", s.CreateTenant(ctx, tenantFixture("acme"), []storage.SigningKey{k1}))

	// The caller's status and retirement time of new keys do not matter.
	k2 := keyFixture("acme", "k2", t0().Add(time.Hour))
	k2.Status = ""
	k2.RetiresAt = t0()
	retire1 := t0().Add(25 * time.Hour)
	must(t, "rotate to k2", s.RotateSigningKeys(ctx, "acme", []storage.SigningKey{k2}, retire1))
	k1.Status, k1.RetiresAt = storage.KeyRetiring, retire1
	k2.Status, k2.RetiresAt = storage.KeyActive, time.Time{}
	keys, err := s.ListSigningKeys(ctx, "acme")
	must(t, "list keys after first rotation", err)
	mustEqual(t, "keys after first rotation", keys, []storage.SigningKey{k2, k1})

	// A second rotation retires only what is active now; k1 keeps its time.
	k3 := keyFixture("acme", "k3", t0().Add(2*time.Hour))
	k3b := keyFixture("acme", "k3b", t0().Add(2*time.Hour+time.Microsecond))
	k3b.Alg = "RS384"
	retire2 := t0().Add(26 * time.Hour)
	must(t, "rotate to k3 and k3b", s.RotateSigningKeys(ctx, "acme", []storage.SigningKey{k3, k3b}, retire2))
	k2.Status, k2.RetiresAt = storage.KeyRetiring, retire2
	want := []storage.SigningKey{k3b, k3, k2, k1}
	keys, err = s.ListSigningKeys(ctx, "acme")
	must(t, "list keys after second rotation", err)
	mustEqual(t, "keys after second rotation", keys, want)

	// Failed rotations change nothing.
	if err := s.RotateSigningKeys(ctx, "acme", nil, retire2); err == nil {
		t.Fatal("rotate to no keys: got no error")
	}
	err = s.RotateSigningKeys(ctx, "acme", []storage.SigningKey{keyFixture("acme", "k4", t0().Add(3*time.Hour)), keyFixture("acme", "k1", t0())}, retire2)
	mustErr(t, "rotate to a key id in use", err, storage.ErrAlreadyExists)
	keys, err = s.ListSigningKeys(ctx, "acme")
	must(t, "list keys after failed rotations", err)
	mustEqual(t, "keys after failed rotations", keys, want)

	err = s.RotateSigningKeys(ctx, "ghost", []storage.SigningKey{keyFixture("ghost", "k1", t0())}, retire1)
	mustErr(t, "rotate keys of unknown tenant", err, storage.ErrNotFound)
	keys, err = s.ListSigningKeys(ctx, "ghost")
	must(t, "list keys of unknown tenant", err)
	mustEqual(t, "keys of unknown tenant", keys, nil)
}

func testAddSigningKeys(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	k1 := keyFixture("acme", "k1", t0())
	must(t, "create tenant", s.CreateTenant(ctx, tenantFixture("acme"), []storage.SigningKey{k1}))

	// Adding keeps the keys there are active; the caller's status does not matter.
	k2 := keyFixture("acme", "k2", t0().Add(time.Hour))
	k2.Alg = "PS256"
	k2.Status, k2.RetiresAt = storage.KeyRetiring, t0()
	must(t, "add k2", s.AddSigningKeys(ctx, "acme", []storage.SigningKey{k2}))
	k2.Status, k2.RetiresAt = storage.KeyActive, time.Time{}
	keys, err := s.ListSigningKeys(ctx, "acme")
	must(t, "list keys after adding", err)
	mustEqual(t, "keys after adding", keys, []storage.SigningKey{k2, k1})

	// A failed addition adds nothing, not even the keys before the clash.
	err = s.AddSigningKeys(ctx, "acme", []storage.SigningKey{keyFixture("acme", "k3", t0().Add(2*time.Hour)), keyFixture("acme", "k1", t0())})
	mustErr(t, "add a key id in use", err, storage.ErrAlreadyExists)
	keys, err = s.ListSigningKeys(ctx, "acme")
	must(t, "list keys after failed addition", err)
	mustEqual(t, "keys after failed addition", keys, []storage.SigningKey{k2, k1})

	if err := s.AddSigningKeys(ctx, "acme", []storage.SigningKey{keyFixture("other", "k4", t0())}); err == nil {
		t.Error("add another tenant's key: got no error")
	}

	err = s.AddSigningKeys(ctx, "ghost", []storage.SigningKey{keyFixture("ghost", "k1", t0())})
	mustErr(t, "add keys to unknown tenant", err, storage.ErrNotFound)
}

func testRetireSigningKey(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	k1 := keyFixture("acme", "k1", t0())
	k2 := keyFixture("acme", "k2", t0().Add(time.Microsecond))
	k2.Alg = "RS384"
	must(t, "create tenant", s.CreateTenant(ctx, tenantFixture("acme"), []storage.SigningKey{k1, k2}))
	list := func(what string, want ...storage.SigningKey) {
		t.Helper()
		keys, err := s.ListSigningKeys(ctx, "acme")
		must(t, "list keys "+what, err)
		mustEqual(t, "keys "+what, keys, want)
	}

	// An active key becomes retiring at the time given; the others stay.
	must(t, "retire active k1", s.RetireSigningKey(ctx, "acme", "k1", t0().Add(time.Minute)))
	k1.Status, k1.RetiresAt = storage.KeyRetiring, t0().Add(time.Minute)
	list("after retiring k1", k2, k1)

	// A rotation leaves an already retiring key's time alone.
	k3 := keyFixture("acme", "k3", t0().Add(time.Hour))
	must(t, "rotate to k3", s.RotateSigningKeys(ctx, "acme", []storage.SigningKey{k3}, t0().Add(25*time.Hour)))
	k2.Status, k2.RetiresAt = storage.KeyRetiring, t0().Add(25*time.Hour)
	list("after rotation", k3, k2, k1)

	// A retiring key takes the new time, earlier or later.
	must(t, "retire retiring k2 sooner", s.RetireSigningKey(ctx, "acme", "k2", t0().Add(2*time.Minute)))
	k2.RetiresAt = t0().Add(2 * time.Minute)
	must(t, "retire retiring k1 later", s.RetireSigningKey(ctx, "acme", "k1", t0().Add(3*time.Minute)))
	k1.RetiresAt = t0().Add(3 * time.Minute)
	list("after retiring again", k3, k2, k1)

	// Unknown keys and tenants change nothing.
	mustErr(t, "retire unknown kid", s.RetireSigningKey(ctx, "acme", "k9", t0()), storage.ErrNotFound)
	mustErr(t, "retire key of unknown tenant", s.RetireSigningKey(ctx, "ghost", "k3", t0()), storage.ErrNotFound)
	list("after refused retirements", k3, k2, k1)
}

func testSessions(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	s1 := sessionFixture("acme", "s1", "u1")
	must(t, "create session", s.CreateSession(ctx, s1))
	mustErr(t, "create duplicate session", s.CreateSession(ctx, s1), storage.ErrAlreadyExists)
	mustErr(t, "create session of unknown tenant", s.CreateSession(ctx, sessionFixture("ghost", "s1", "u1")), storage.ErrNotFound)

	expiry := s1.ExpiresAt.Truncate(time.Microsecond)
	visible := []struct {
		name string
		now  time.Time
		ok   bool
	}{
		{"at creation", t0(), true},
		{"a microsecond before expiry", expiry.Add(-time.Microsecond), true},
		{"at expiry", expiry, false},
		{"after expiry", expiry.Add(time.Hour), false},
	}
	for _, tc := range visible {
		got, err := s.GetSession(ctx, "acme", "s1", tc.now)
		if tc.ok {
			must(t, "get session "+tc.name, err)
			mustEqual(t, "session "+tc.name, got, s1)
		} else {
			mustErr(t, "get session "+tc.name, err, storage.ErrNotFound)
		}
	}
	_, err := s.GetSession(ctx, "acme", "nope", t0())
	mustErr(t, "get unknown session", err, storage.ErrNotFound)

	anonymous := sessionFixture("acme", "s-anon", "")
	anonymous.Data = nil
	must(t, "create session without user", s.CreateSession(ctx, anonymous))
	got, err := s.GetSession(ctx, "acme", "s-anon", t0())
	must(t, "get session without user", err)
	mustEqual(t, "session without user", got, anonymous)

	updated := s1
	updated.UserID = "u2"
	updated.Data = []byte("new data")
	updated.CreatedAt = t0().Add(time.Minute)
	updated.UpdatedAt = t0().Add(time.Minute)
	updated.ExpiresAt = t0().Add(2 * time.Hour)
	must(t, "update session", s.UpdateSession(ctx, updated))
	got, err = s.GetSession(ctx, "acme", "s1", t0().Add(90*time.Minute))
	must(t, "get extended session", err)
	want := updated
	want.CreatedAt = s1.CreatedAt
	mustEqual(t, "updated session", got, want)
	mustErr(t, "update unknown session", s.UpdateSession(ctx, sessionFixture("acme", "nope", "u1")), storage.ErrNotFound)

	// TouchSession moves the expiry of a live session and keeps its user and data.
	touched := want
	touched.UpdatedAt = t0().Add(100 * time.Minute)
	touched.ExpiresAt = t0().Add(3 * time.Hour)
	must(t, "touch session", s.TouchSession(ctx, "acme", "s1", touched.UpdatedAt, touched.ExpiresAt))
	got, err = s.GetSession(ctx, "acme", "s1", t0().Add(150*time.Minute))
	must(t, "get touched session", err)
	mustEqual(t, "touched session", got, touched)
	mustErr(t, "touch session at its expiry", s.TouchSession(ctx, "acme", "s1", touched.ExpiresAt, touched.ExpiresAt.Add(time.Hour)), storage.ErrNotFound)
	mustErr(t, "touch unknown session", s.TouchSession(ctx, "acme", "nope", t0(), t0().Add(time.Hour)), storage.ErrNotFound)

	must(t, "delete session", s.DeleteSession(ctx, "acme", "s1"))
	_, err = s.GetSession(ctx, "acme", "s1", t0())
	mustErr(t, "get deleted session", err, storage.ErrNotFound)
	mustErr(t, "delete deleted session", s.DeleteSession(ctx, "acme", "s1"), storage.ErrNotFound)

	for _, ss := range []storage.Session{sessionFixture("acme", "a", "u1"), sessionFixture("acme", "b", "u1"), sessionFixture("acme", "c", "u2")} {
		must(t, "create session "+ss.ID, s.CreateSession(ctx, ss))
	}
	must(t, "delete sessions of u1", s.DeleteUserSessions(ctx, "acme", "u1"))
	for _, id := range []string{"a", "b"} {
		_, err = s.GetSession(ctx, "acme", id, t0())
		mustErr(t, "get session "+id+" of u1", err, storage.ErrNotFound)
	}
	_, err = s.GetSession(ctx, "acme", "c", t0())
	must(t, "get session of u2", err)
	must(t, "delete sessions of a user without any", s.DeleteUserSessions(ctx, "acme", "nobody"))
}

func testTokens(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	code := tokenFixture("acme", storage.KindAuthorizeCode, "sig-code", "req-1", "app")
	must(t, "create code", s.CreateToken(ctx, code))
	got, err := s.GetToken(ctx, "acme", code.Kind, code.Signature)
	must(t, "get code", err)
	mustEqual(t, "code", got, code)
	mustErr(t, "create duplicate code", s.CreateToken(ctx, code), storage.ErrAlreadyExists)
	pkce := tokenFixture("acme", storage.KindPKCE, "sig-code", "req-1", "app")
	must(t, "create record of another kind with the same signature", s.CreateToken(ctx, pkce))
	mustErr(t, "create token of unknown tenant", s.CreateToken(ctx, tokenFixture("ghost", storage.KindAccessToken, "s", "r", "c")), storage.ErrNotFound)
	_, err = s.GetToken(ctx, "acme", storage.KindAccessToken, "sig-code")
	mustErr(t, "get token of the wrong kind", err, storage.ErrNotFound)

	consumed := code
	consumed.Active = false
	got, err = s.ConsumeToken(ctx, "acme", code.Kind, code.Signature)
	must(t, "consume code", err)
	mustEqual(t, "consumed code", got, consumed)
	got, err = s.ConsumeToken(ctx, "acme", code.Kind, code.Signature)
	mustErr(t, "consume code twice", err, storage.ErrConsumed)
	mustEqual(t, "code returned with ErrConsumed", got, consumed)
	got, err = s.GetToken(ctx, "acme", code.Kind, code.Signature)
	must(t, "get consumed code", err)
	mustEqual(t, "stored consumed code", got, consumed)
	got, err = s.GetToken(ctx, "acme", pkce.Kind, pkce.Signature)
	must(t, "get pkce record", err)
	mustEqual(t, "pkce record untouched by consuming the code", got, pkce)
	_, err = s.ConsumeToken(ctx, "acme", storage.KindAuthorizeCode, "nope")
	mustErr(t, "consume unknown code", err, storage.ErrNotFound)

	// One grant family across a refresh, and a second family.
	access := tokenFixture("acme", storage.KindAccessToken, "sig-a1", "req-2", "app")
	refresh := tokenFixture("acme", storage.KindRefreshToken, "sig-r1", "req-2", "app")
	rotated := tokenFixture("acme", storage.KindRefreshToken, "sig-r0", "req-2", "app")
	rotated.Active = false
	otherAccess := tokenFixture("acme", storage.KindAccessToken, "sig-a3", "req-3", "app")
	otherRefresh := tokenFixture("acme", storage.KindRefreshToken, "sig-r3", "req-3", "app")
	for _, tok := range []storage.Token{access, refresh, rotated, otherAccess, otherRefresh} {
		must(t, "create token "+tok.Signature, s.CreateToken(ctx, tok))
	}
	got, err = s.GetToken(ctx, "acme", rotated.Kind, rotated.Signature)
	must(t, "get token created inactive", err)
	mustEqual(t, "token created inactive", got, rotated)

	n, err := s.RevokeRequest(ctx, "acme", "req-2")
	must(t, "revoke request", err)
	if n != 2 {
		t.Fatalf("revoke request: got %d records revoked, want 2 (the active ones)", n)
	}
	n, err = s.RevokeRequest(ctx, "acme", "req-2")
	must(t, "revoke request again", err)
	if n != 0 {
		t.Fatalf("revoke request again: got %d records revoked, want 0", n)
	}
	for _, tok := range []storage.Token{access, refresh} {
		got, err = s.GetToken(ctx, "acme", tok.Kind, tok.Signature)
		must(t, "get revoked "+tok.Signature, err)
		if got.Active {
			t.Fatalf("token %s still active after RevokeRequest", tok.Signature)
		}
	}
	_, err = s.ConsumeToken(ctx, "acme", refresh.Kind, refresh.Signature)
	mustErr(t, "consume revoked refresh token", err, storage.ErrConsumed)

	n, err = s.RevokeRequestKind(ctx, "acme", "req-3", storage.KindAccessToken)
	must(t, "revoke access tokens of request", err)
	if n != 1 {
		t.Fatalf("revoke access tokens of request: got %d, want 1", n)
	}
	got, err = s.GetToken(ctx, "acme", otherAccess.Kind, otherAccess.Signature)
	must(t, "get revoked access token", err)
	if got.Active {
		t.Fatal("access token still active after RevokeRequestKind")
	}
	got, err = s.GetToken(ctx, "acme", otherRefresh.Kind, otherRefresh.Signature)
	must(t, "get refresh token of partly revoked request", err)
	mustEqual(t, "refresh token untouched by revoking access tokens", got, otherRefresh)
	n, err = s.RevokeRequest(ctx, "acme", "no-such-request")
	must(t, "revoke unknown request", err)
	if n != 0 {
		t.Fatalf("revoke unknown request: got %d, want 0", n)
	}

	must(t, "delete token", s.DeleteToken(ctx, "acme", access.Kind, access.Signature))
	_, err = s.GetToken(ctx, "acme", access.Kind, access.Signature)
	mustErr(t, "get deleted token", err, storage.ErrNotFound)
	mustErr(t, "delete deleted token", s.DeleteToken(ctx, "acme", access.Kind, access.Signature), storage.ErrNotFound)
}

func testLaunches(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	l1 := launchFixture("acme", "l1")
	must(t, "create launch", s.CreateLaunch(ctx, l1))
	mustErr(t, "create duplicate launch", s.CreateLaunch(ctx, l1), storage.ErrAlreadyExists)
	mustErr(t, "create launch of unknown tenant", s.CreateLaunch(ctx, launchFixture("ghost", "l1")), storage.ErrNotFound)
	if err := s.CreateLaunch(ctx, launchFixture("acme", "")); err == nil {
		t.Fatal("create launch with an empty id: got no error")
	}

	got, err := s.ConsumeLaunch(ctx, "acme", "l1", t0())
	must(t, "consume launch", err)
	mustEqual(t, "launch", got, l1)
	_, err = s.ConsumeLaunch(ctx, "acme", "l1", t0())
	mustErr(t, "consume launch twice", err, storage.ErrConsumed)
	_, err = s.ConsumeLaunch(ctx, "acme", "l1", t0().Add(time.Hour))
	mustErr(t, "consume used launch after expiry", err, storage.ErrConsumed)
	_, err = s.ConsumeLaunch(ctx, "acme", "nope", t0())
	mustErr(t, "consume unknown launch", err, storage.ErrNotFound)

	bare := storage.Launch{TenantID: "acme", ID: "l-bare", CreatedAt: t0(), ExpiresAt: t0().Add(time.Minute)}
	must(t, "create launch without context", s.CreateLaunch(ctx, bare))
	got, err = s.ConsumeLaunch(ctx, "acme", "l-bare", t0())
	must(t, "consume launch without context", err)
	mustEqual(t, "launch without context", got, bare)

	l2 := launchFixture("acme", "l2")
	must(t, "create second launch", s.CreateLaunch(ctx, l2))
	_, err = s.ConsumeLaunch(ctx, "acme", "l2", l2.ExpiresAt.Truncate(time.Microsecond))
	mustErr(t, "consume launch at expiry", err, storage.ErrExpired)
	_, err = s.ConsumeLaunch(ctx, "acme", "l2", l2.ExpiresAt.Add(time.Hour))
	mustErr(t, "consume launch after expiry", err, storage.ErrExpired)
	// Refusing an expired launch does not use it up.
	got, err = s.ConsumeLaunch(ctx, "acme", "l2", t0())
	must(t, "consume launch before expiry after refused attempts", err)
	mustEqual(t, "second launch", got, l2)
}

func testAssertionJTIs(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	mustCreateTenant(t, s, "beta")
	exp := t0().Add(5 * time.Minute)
	must(t, "record jti", s.RecordAssertionJTI(ctx, "acme", "app", "j1", exp))
	mustErr(t, "replay jti", s.RecordAssertionJTI(ctx, "acme", "app", "j1", exp), storage.ErrAlreadyExists)
	mustErr(t, "replay jti with a later expiry", s.RecordAssertionJTI(ctx, "acme", "app", "j1", exp.Add(time.Hour)), storage.ErrAlreadyExists)
	must(t, "same jti for another client", s.RecordAssertionJTI(ctx, "acme", "other-app", "j1", exp))
	must(t, "same jti in another tenant", s.RecordAssertionJTI(ctx, "beta", "app", "j1", exp))
	must(t, "another jti", s.RecordAssertionJTI(ctx, "acme", "app", "j2", exp))
	mustErr(t, "record jti of unknown tenant", s.RecordAssertionJTI(ctx, "ghost", "app", "j1", exp), storage.ErrNotFound)
}

func testFailureCounters(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	const window = 15 * time.Minute
	now := t0()
	count := func(what, key string, at time.Time, want int64) {
		t.Helper()
		got, err := s.FailureCount(ctx, "acme", key, at, window)
		must(t, what, err)
		mustEqual(t, what, got, want)
	}
	record := func(what, key string, at time.Time, want int64) {
		t.Helper()
		got, err := s.RecordFailure(ctx, "acme", key, at, window)
		must(t, what, err)
		mustEqual(t, what, got, want)
	}

	count("count of unknown key", "email:a@example.org", now, 0)
	// Counting within one window.
	for i := range 3 {
		record(label("record failure %d", i+1), "email:a@example.org", now.Add(time.Duration(i)*time.Minute), int64(i+1))
	}
	count("count after three failures", "email:a@example.org", now.Add(3*time.Minute), 3)
	count("count of another key", "ip:192.0.2.7", now, 0)
	// The window runs from the first failure: it still holds just before
	// window has passed since, and is over at that instant.
	count("count just before the window ends", "email:a@example.org", now.Add(window-time.Microsecond), 3)
	count("count when the window ends", "email:a@example.org", now.Add(window), 0)
	count("count after the window", "email:a@example.org", now.Add(time.Hour), 0)
	// A failure after the window starts a new one at 1.
	later := now.Add(window)
	record("record failure in a new window", "email:a@example.org", later, 1)
	record("record second failure in the new window", "email:a@example.org", later.Add(time.Minute), 2)
	count("count in the new window", "email:a@example.org", later.Add(2*time.Minute), 2)
	count("count in the new window, seen from before it", "email:a@example.org", later.Add(window-time.Microsecond), 2)
	count("count when the new window ends", "email:a@example.org", later.Add(window), 0)

	// Clearing forgets one key only, and clearing nothing is no error.
	record("record failure of an address", "ip:192.0.2.7", later, 1)
	must(t, "clear failures", s.ClearFailures(ctx, "acme", "email:a@example.org"))
	count("count after clearing", "email:a@example.org", later.Add(time.Minute), 0)
	count("count of the address after clearing the email", "ip:192.0.2.7", later.Add(time.Minute), 1)
	must(t, "clear failures again", s.ClearFailures(ctx, "acme", "email:a@example.org"))
	must(t, "clear failures of unknown tenant", s.ClearFailures(ctx, "ghost", "ip:192.0.2.7"))
	record("record failure after clearing", "email:a@example.org", later.Add(2*time.Minute), 1)

	_, err := s.RecordFailure(ctx, "ghost", "ip:192.0.2.7", now, window)
	mustErr(t, "record failure of unknown tenant", err, storage.ErrNotFound)
	got, err := s.FailureCount(ctx, "ghost", "ip:192.0.2.7", now, window)
	must(t, "count failures of unknown tenant", err)
	mustEqual(t, "count failures of unknown tenant", got, int64(0))
}

func testAudit(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	inputs := []storage.AuditEvent{
		auditFixture("acme", t0(), "login", "app", "u1"),
		auditFixture("acme", t0().Add(time.Minute), "token", "app", "u1"),
		auditFixture("acme", t0().Add(2*time.Minute), "login", "", "u2"),
	}
	inputs[1].Details = nil
	inputs[2].Outcome = "failure"
	// Whatever the caller puts in the assigned fields is ignored.
	inputs[2].Seq, inputs[2].PrevHash, inputs[2].Hash = 99, []byte("forged"), []byte("forged")

	var stored []storage.AuditEvent
	var prev []byte
	for i, in := range inputs {
		got, err := s.AppendAudit(ctx, in)
		must(t, label("append event %d", i+1), err)
		want := in
		want.Seq = int64(i + 1)
		want.PrevHash = prev
		want.Hash = storage.ChainHash(prev, want)
		mustEqual(t, label("appended event %d", i+1), got, want)
		stored = append(stored, got)
		prev = got.Hash
	}
	all, err := s.ListAudit(ctx, "acme", storage.AuditFilter{})
	must(t, "list audit", err)
	mustEqual(t, "audit trail", all, stored)
	if err := storage.VerifyChain(all); err != nil {
		t.Fatalf("verify chain: %v", err)
	}

	filters := []struct {
		name string
		f    storage.AuditFilter
		want []int64
	}{
		{"type", storage.AuditFilter{Type: "login"}, []int64{1, 3}},
		{"client", storage.AuditFilter{ClientID: "app"}, []int64{1, 2}},
		{"subject", storage.AuditFilter{Subject: "u1"}, []int64{1, 2}},
		{"type and subject", storage.AuditFilter{Type: "login", Subject: "u2"}, []int64{3}},
		{"since is inclusive", storage.AuditFilter{Since: t0().Add(time.Minute)}, []int64{2, 3}},
		{"until is exclusive", storage.AuditFilter{Until: t0().Add(2 * time.Minute)}, []int64{1, 2}},
		{"since and until", storage.AuditFilter{Since: t0().Add(time.Second), Until: t0().Add(2 * time.Minute)}, []int64{2}},
		{"after seq", storage.AuditFilter{AfterSeq: 1}, []int64{2, 3}},
		{"limit", storage.AuditFilter{Limit: 2}, []int64{1, 2}},
		{"after seq with limit", storage.AuditFilter{AfterSeq: 1, Limit: 1}, []int64{2}},
		{"user as actor or subject", storage.AuditFilter{User: "u2"}, []int64{3}},
		{"before seq", storage.AuditFilter{BeforeSeq: 3}, []int64{1, 2}},
		{"newest first", storage.AuditFilter{Descending: true}, []int64{3, 2, 1}},
		{"newest first before seq with limit", storage.AuditFilter{Descending: true, BeforeSeq: 3, Limit: 1}, []int64{2}},
		{"no match", storage.AuditFilter{Type: "nope"}, nil},
	}
	for _, tc := range filters {
		got, err := s.ListAudit(ctx, "acme", tc.f)
		must(t, "list audit by "+tc.name, err)
		mustEqual(t, "audit by "+tc.name, seqs(got), tc.want)
	}

	// A zero time is stamped by the store and chained as stamped.
	got, err := s.AppendAudit(ctx, storage.AuditEvent{TenantID: "acme", Type: "untimed"})
	must(t, "append event without time", err)
	if got.Time.IsZero() || got.Seq != 4 {
		t.Fatalf("append event without time: got seq %d at %v, want seq 4 at a non-zero time", got.Seq, got.Time)
	}
	all, err = s.ListAudit(ctx, "acme", storage.AuditFilter{})
	must(t, "list audit", err)
	if err := storage.VerifyChain(all); err != nil {
		t.Fatalf("verify chain with stamped event: %v", err)
	}
	mustEqual(t, "stamped event", all[3], got)

	_, err = s.AppendAudit(ctx, auditFixture("ghost", t0(), "login", "", ""))
	mustErr(t, "append event of unknown tenant", err, storage.ErrNotFound)
	list, err := s.ListAudit(ctx, "ghost", storage.AuditFilter{})
	must(t, "list audit of unknown tenant", err)
	mustEqual(t, "audit of unknown tenant", seqs(list), nil)
}

func testAuditHostileStrings(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	// Attackers choose some of these values (a login name, say); an audit
	// trail that failed or broke its chain on them would hide the attack.
	hostile := "a\x00b\xff\xfe" + strings.Repeat("é", 3) + "\u2028"
	e := auditFixture("acme", t0(), "login", hostile, hostile)
	e.SourceIP = "\x00"
	e.Details = map[string]string{hostile: hostile, "k": "\x00"}
	got, err := s.AppendAudit(ctx, e)
	must(t, "append event with NUL bytes and invalid UTF-8", err)
	list, err := s.ListAudit(ctx, "acme", storage.AuditFilter{Subject: got.Subject})
	must(t, "list audit by the stored subject", err)
	mustEqual(t, "stored event", list, []storage.AuditEvent{got})
	if err := storage.VerifyChain(list); err != nil {
		t.Fatalf("verify chain: %v", err)
	}
	for _, v := range []string{got.Subject, got.ClientID, got.SourceIP, got.Details["k"]} {
		if strings.ContainsRune(v, 0) || !utf8.ValidString(v) {
			t.Fatalf("stored string %q keeps a NUL byte or invalid UTF-8", v)
		}
	}
}

func testAuditBatch(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	first, err := s.AppendAudit(ctx, auditFixture("acme", t0(), "login", "app", "u1"))
	must(t, "append single event", err)

	batch := []storage.AuditEvent{
		auditFixture("acme", t0().Add(time.Second), "token", "app", "u1"),
		auditFixture("", t0().Add(2*time.Second), "token", "app", "u2"),
		{Type: "untimed"},
		auditFixture("acme", t0().Add(time.Hour), "hostile\x00\xff", "app", "u3"),
	}
	batch[0].Details = nil
	// Whatever the caller puts in the assigned fields is ignored.
	batch[1].Seq, batch[1].PrevHash, batch[1].Hash = 99, []byte("forged"), []byte("forged")
	input := append([]storage.AuditEvent(nil), batch...)
	got, err := s.AppendAudits(ctx, "acme", batch)
	must(t, "append batch", err)
	if !reflect.DeepEqual(batch, input) {
		t.Fatalf("append batch changed the caller's events:\n got: %+v\nwant: %+v", batch, input)
	}
	if len(got) != len(batch) {
		t.Fatalf("append batch: got %d events back, want %d", len(got), len(batch))
	}
	prev := first.Hash
	for i, in := range batch {
		want := in
		want.TenantID = "acme"
		want.Seq = int64(i + 2)
		want.PrevHash = prev
		switch i {
		case 2:
			// A zero time is stamped by the store, as for a single event.
			if got[i].Time.IsZero() {
				t.Fatalf("batch event %d: time not stamped", i+1)
			}
			want.Time = got[i].Time
		case 3:
			want.Type = "hostile\uFFFD\uFFFD"
		}
		want.Hash = storage.ChainHash(prev, want)
		mustEqual(t, label("batch event %d", i+1), got[i], want)
		prev = got[i].Hash
	}

	last, err := s.AppendAudit(ctx, auditFixture("acme", t0(), "logout", "app", "u1"))
	must(t, "append single event after batch", err)
	if last.Seq != 6 || string(last.PrevHash) != string(prev) {
		t.Fatalf("single event after batch: got seq %d, want 6 chained to the batch's last event", last.Seq)
	}
	all, err := s.ListAudit(ctx, "acme", storage.AuditFilter{})
	must(t, "list audit", err)
	mustEqual(t, "audit trail", all, append(append([]storage.AuditEvent{first}, got...), last))
	if err := storage.VerifyChain(all); err != nil {
		t.Fatalf("verify chain: %v", err)
	}

	for _, empty := range [][]storage.AuditEvent{nil, {}} {
		got, err := s.AppendAudits(ctx, "acme", empty)
		must(t, "append empty batch", err)
		mustEqual(t, "events of empty batch", len(got), 0)
	}
	// An empty batch checks nothing, not even the tenant.
	_, err = s.AppendAudits(ctx, "ghost", nil)
	must(t, "append empty batch to unknown tenant", err)
	all, err = s.ListAudit(ctx, "acme", storage.AuditFilter{})
	must(t, "list audit after empty batches", err)
	mustEqual(t, "trail length after empty batches", len(all), 6)
}

func testAuditBatchAllOrNone(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	mustCreateTenant(t, s, "other")
	before, err := s.AppendAudit(ctx, auditFixture("acme", t0(), "login", "app", "u1"))
	must(t, "append first event", err)

	good := auditFixture("acme", t0(), "token", "app", "u1")
	foreign := auditFixture("other", t0(), "token", "app", "u1")
	cases := []struct {
		name   string
		tenant string
		batch  []storage.AuditEvent
		want   error
	}{
		{"other tenant's event last", "acme", []storage.AuditEvent{good, good, foreign}, nil},
		{"other tenant's event first", "acme", []storage.AuditEvent{foreign, good}, nil},
		{"only other tenant's events", "acme", []storage.AuditEvent{foreign}, nil},
		{"unknown tenant", "ghost", []storage.AuditEvent{auditFixture("", t0(), "token", "app", "u1")}, storage.ErrNotFound},
		{"empty tenant", "", []storage.AuditEvent{auditFixture("", t0(), "token", "app", "u1")}, storage.ErrNotFound},
	}
	for _, tc := range cases {
		got, err := s.AppendAudits(ctx, tc.tenant, tc.batch)
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Fatalf("append batch with %s: got %d events and error %v, want error %v", tc.name, len(got), err, tc.want)
		}
		for _, id := range []string{"acme", "other", "ghost", ""} {
			trail, err := s.ListAudit(ctx, id, storage.AuditFilter{})
			must(t, "list audit of "+id+" after refused batch with "+tc.name, err)
			want := []int64(nil)
			if id == "acme" {
				want = []int64{1}
			}
			mustEqual(t, "audit of "+id+" after refused batch with "+tc.name, seqs(trail), want)
		}
	}

	// A refused batch leaves no gap: the next one follows on.
	got, err := s.AppendAudits(ctx, "acme", []storage.AuditEvent{good, good})
	must(t, "append batch after refused ones", err)
	mustEqual(t, "seqs after refused batches", seqs(got), []int64{2, 3})
	all, err := s.ListAudit(ctx, "acme", storage.AuditFilter{})
	must(t, "list audit", err)
	mustEqual(t, "audit trail", all, append([]storage.AuditEvent{before}, got...))
	if err := storage.VerifyChain(all); err != nil {
		t.Fatalf("verify chain: %v", err)
	}
}

func testSweepExpired(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	now := t0().Truncate(time.Microsecond)
	past, future := now.Add(-time.Second), now.Add(time.Hour)

	sessions := []storage.Session{sessionFixture("acme", "old", "u"), sessionFixture("acme", "edge", "u"), sessionFixture("acme", "live", "u")}
	sessions[0].ExpiresAt, sessions[1].ExpiresAt, sessions[2].ExpiresAt = past, now, future
	tokens := []storage.Token{tokenFixture("acme", storage.KindAccessToken, "old", "r", "c"), tokenFixture("acme", storage.KindAccessToken, "live", "r", "c")}
	tokens[0].ExpiresAt, tokens[1].ExpiresAt = past, future
	launches := []storage.Launch{launchFixture("acme", "old"), launchFixture("acme", "live")}
	launches[0].ExpiresAt, launches[1].ExpiresAt = past, future
	// A consent needs its user and client; a zero ExpiresAt never expires.
	must(t, "create user", s.CreateUser(ctx, userFixture("acme", "u", "u@acme.example")))
	consents := []storage.Consent{consentFixture("acme", "u", "c-old"), consentFixture("acme", "u", "c-edge"),
		consentFixture("acme", "u", "c-live"), consentFixture("acme", "u", "c-forever")}
	consents[0].ExpiresAt, consents[1].ExpiresAt, consents[2].ExpiresAt, consents[3].ExpiresAt = past, now, future, time.Time{}
	for _, x := range sessions {
		must(t, "create session "+x.ID, s.CreateSession(ctx, x))
	}
	for _, x := range tokens {
		must(t, "create token "+x.Signature, s.CreateToken(ctx, x))
	}
	for _, x := range launches {
		must(t, "create launch "+x.ID, s.CreateLaunch(ctx, x))
	}
	for _, x := range consents {
		must(t, "create client "+x.ClientID, s.CreateClient(ctx, clientFixture("acme", x.ClientID)))
		must(t, "save consent to "+x.ClientID, s.SaveConsent(ctx, x))
	}
	must(t, "record old jti", s.RecordAssertionJTI(ctx, "acme", "c", "old", past))
	must(t, "record live jti", s.RecordAssertionJTI(ctx, "acme", "c", "live", future))
	// A counter expires at its window's start plus the window.
	_, err := s.RecordFailure(ctx, "acme", "old", now.Add(-time.Hour), time.Hour)
	must(t, "record old failure", err)
	_, err = s.RecordFailure(ctx, "acme", "live", now.Add(-time.Hour), time.Hour+time.Second)
	must(t, "record live failure", err)

	n, err := s.SweepExpired(ctx, now)
	must(t, "sweep", err)
	if n != 8 {
		t.Fatalf("sweep: got %d rows removed, want 8 (2 sessions, 1 token, 1 launch, 1 jti, 1 failure counter, 2 consents)", n)
	}
	n, err = s.SweepExpired(ctx, now)
	must(t, "sweep again", err)
	if n != 0 {
		t.Fatalf("sweep again: got %d rows removed, want 0", n)
	}

	// Expired rows are gone: a lookup at an earlier instant would have seen them.
	earlier := past.Add(-time.Hour)
	for _, id := range []string{"old", "edge"} {
		_, err = s.GetSession(ctx, "acme", id, earlier)
		mustErr(t, "get swept session "+id, err, storage.ErrNotFound)
	}
	_, err = s.GetSession(ctx, "acme", "live", earlier)
	must(t, "get live session", err)
	_, err = s.GetToken(ctx, "acme", storage.KindAccessToken, "old")
	mustErr(t, "get swept token", err, storage.ErrNotFound)
	_, err = s.GetToken(ctx, "acme", storage.KindAccessToken, "live")
	must(t, "get live token", err)
	_, err = s.ConsumeLaunch(ctx, "acme", "old", earlier)
	mustErr(t, "consume swept launch", err, storage.ErrNotFound)
	_, err = s.ConsumeLaunch(ctx, "acme", "live", earlier)
	must(t, "consume live launch", err)
	// ListConsents shows expired consents until they are swept.
	left, err := s.ListConsents(ctx, "acme", "u")
	must(t, "list consents after sweep", err)
	mustEqual(t, "consents after sweep", left, []storage.Consent{consents[3], consents[2]})
	must(t, "record swept jti again", s.RecordAssertionJTI(ctx, "acme", "c", "old", future))
	// The swept counter starts afresh even with a window that would still
	// cover it; the live one keeps counting.
	got, err := s.RecordFailure(ctx, "acme", "old", now, 2*time.Hour)
	must(t, "record swept failure again", err)
	mustEqual(t, "count of swept failure key", got, int64(1))
	got, err = s.RecordFailure(ctx, "acme", "live", now, time.Hour+time.Second)
	must(t, "record live failure again", err)
	mustEqual(t, "count of live failure key", got, int64(2))
	mustErr(t, "record live jti again", s.RecordAssertionJTI(ctx, "acme", "c", "live", future), storage.ErrAlreadyExists)
}

// testUserGrantsEndWithUser: disabling or deleting a user deactivates the
// grant records issued to it, and only its own, in its own tenant.
func testUserGrantsEndWithUser(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	mustCreateTenant(t, s, "other")
	for _, tenant := range []string{"acme", "other"} {
		for _, id := range []string{"u1", "u2"} {
			must(t, "create user", s.CreateUser(ctx, userFixture(tenant, id, id+"@"+tenant+".example")))
			tok := tokenFixture(tenant, storage.KindRefreshToken, "rt-"+id, "req-"+id, "app")
			tok.Subject = id
			must(t, "create token", s.CreateToken(ctx, tok))
		}
	}
	active := func(tenant, sig string) bool {
		tok, err := s.GetToken(ctx, tenant, storage.KindRefreshToken, sig)
		must(t, "get token", err)
		return tok.Active
	}

	u1 := userFixture("acme", "u1", "u1@acme.example")
	u1.Disabled = true
	must(t, "disable user", s.UpdateUser(ctx, u1))
	if active("acme", "rt-u1") {
		t.Error("a disabled user's refresh token is still active")
	}
	if !active("acme", "rt-u2") || !active("other", "rt-u1") {
		t.Error("disabling one user deactivated another user's or another tenant's grants")
	}

	u2 := userFixture("acme", "u2", "u2@acme.example")
	must(t, "update an enabled user", s.UpdateUser(ctx, u2))
	if !active("acme", "rt-u2") {
		t.Error("updating an enabled user deactivated its grants")
	}
	must(t, "delete user", s.DeleteUser(ctx, "acme", "u2"))
	if active("acme", "rt-u2") {
		t.Error("a deleted user's refresh token is still active")
	}
	if !active("other", "rt-u2") {
		t.Error("deleting a user deactivated another tenant's grants")
	}
}

// testRevokedFamilyStaysRevoked: a record created for a request after the
// request was revoked is born inactive, even after a sweep long past the
// revocation while a record of the family is still kept; other requests and
// tenants are not touched.
func testRevokedFamilyStaysRevoked(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	mustCreateTenant(t, s, "other")
	must(t, "create token", s.CreateToken(ctx, tokenFixture("acme", storage.KindRefreshToken, "old", "family", "app")))
	n, err := s.RevokeRequest(ctx, "acme", "family")
	must(t, "revoke family", err)
	if n != 1 {
		t.Errorf("revoked %d records, want 1", n)
	}
	// t0 is years ahead; the family's record expires an hour after it.
	_, err = s.SweepExpired(ctx, t0())
	must(t, "sweep", err)
	for _, tc := range []struct {
		tenant, sig, request string
		active               bool
	}{
		{"acme", "late", "family", false},
		{"acme", "unrelated", "another-family", true},
		{"other", "same-id-elsewhere", "family", true},
	} {
		must(t, "create token", s.CreateToken(ctx, tokenFixture(tc.tenant, storage.KindAccessToken, tc.sig, tc.request, "app")))
		got, err := s.GetToken(ctx, tc.tenant, storage.KindAccessToken, tc.sig)
		must(t, "get token", err)
		if got.Active != tc.active {
			t.Errorf("token %s/%s of request %s: active %v, want %v", tc.tenant, tc.sig, tc.request, got.Active, tc.active)
		}
	}
	if _, err := s.RevokeRequest(ctx, "ghost", "family"); err != nil {
		t.Errorf("revoking in an unknown tenant: %v, want no error", err)
	}
}
