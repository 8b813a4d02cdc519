package conformance

import (
	"errors"
	"testing"
	"time"

	"github.com/smartauth/smartauth/storage"
)

// tenantData is what populate stores for one tenant. Both tenants of the
// isolation suite use the same ids for everything, so only the tenant id
// tells their records apart.
type tenantData struct {
	tenant  storage.Tenant
	key     storage.SigningKey
	client  storage.Client
	user    storage.User
	patient storage.Patient
	session storage.Session
	code    storage.Token
	refresh storage.Token
	launch  storage.Launch
	audit   []storage.AuditEvent
}

func populate(t *testing.T, s storage.Storage, tenantID string) *tenantData {
	t.Helper()
	ctx := t.Context()
	d := &tenantData{
		tenant:  tenantFixture(tenantID),
		key:     keyFixture(tenantID, "k1", t0()),
		client:  clientFixture(tenantID, "app"),
		user:    userFixture(tenantID, "u1", "Shared@Example.org"),
		patient: patientFixture(tenantID, "p1", "Shared", "Given-"+tenantID, "1970-01-01", "MRN-1"),
		session: sessionFixture(tenantID, "s1", "u1"),
		code:    tokenFixture(tenantID, storage.KindAuthorizeCode, "sig-code", "req-1", "app"),
		refresh: tokenFixture(tenantID, storage.KindRefreshToken, "sig-refresh", "req-1", "app"),
		launch:  launchFixture(tenantID, "l1"),
	}
	must(t, "create tenant "+tenantID, s.CreateTenant(ctx, d.tenant, []storage.SigningKey{d.key}))
	must(t, "create client in "+tenantID, s.CreateClient(ctx, d.client))
	must(t, "create user in "+tenantID, s.CreateUser(ctx, d.user))
	must(t, "upsert patient in "+tenantID, s.UpsertPatients(ctx, tenantID, []storage.Patient{d.patient}))
	must(t, "create session in "+tenantID, s.CreateSession(ctx, d.session))
	must(t, "create code in "+tenantID, s.CreateToken(ctx, d.code))
	must(t, "create refresh token in "+tenantID, s.CreateToken(ctx, d.refresh))
	must(t, "create launch in "+tenantID, s.CreateLaunch(ctx, d.launch))
	must(t, "record jti in "+tenantID, s.RecordAssertionJTI(ctx, tenantID, "app", "j1", t0().Add(time.Hour)))
	d.appendAudit(t, s, "login")
	return d
}

func (d *tenantData) appendAudit(t *testing.T, s storage.Storage, typ string) {
	t.Helper()
	e, err := s.AppendAudit(t.Context(), auditFixture(d.tenant.ID, t0().Add(time.Duration(len(d.audit))*time.Second), typ, "app", "u1"))
	must(t, "append audit event to "+d.tenant.ID, err)
	if want := int64(len(d.audit) + 1); e.Seq != want {
		t.Fatalf("append audit event to %s: got seq %d, want %d", d.tenant.ID, e.Seq, want)
	}
	d.audit = append(d.audit, e)
}

// checkIntact fails unless every record of d reads back exactly as stored.
func (d *tenantData) checkIntact(t *testing.T, s storage.Storage) {
	t.Helper()
	ctx := t.Context()
	id := d.tenant.ID
	tn, err := s.GetTenant(ctx, id)
	must(t, "get tenant "+id, err)
	mustEqual(t, "tenant "+id, tn, d.tenant)
	keys, err := s.ListSigningKeys(ctx, id)
	must(t, "list keys of "+id, err)
	mustEqual(t, "keys of "+id, keys, []storage.SigningKey{d.key})
	c, err := s.GetClient(ctx, id, "app")
	must(t, "get client of "+id, err)
	mustEqual(t, "client of "+id, c, d.client)
	u, err := s.GetUser(ctx, id, "u1")
	must(t, "get user of "+id, err)
	mustEqual(t, "user of "+id, u, d.user)
	u, err = s.GetUserByEmail(ctx, id, "shared@example.org")
	must(t, "get user of "+id+" by email", err)
	mustEqual(t, "user of "+id+" by email", u, d.user)
	p, err := s.GetPatient(ctx, id, "p1")
	must(t, "get patient of "+id, err)
	mustEqual(t, "patient of "+id, p, d.patient)
	ps, err := s.SearchPatients(ctx, id, storage.PatientQuery{Name: "shared", Identifier: "MRN-1"})
	must(t, "search patients of "+id, err)
	mustEqual(t, "patients of "+id, ps, []storage.Patient{d.patient})
	ss, err := s.GetSession(ctx, id, "s1", t0())
	must(t, "get session of "+id, err)
	mustEqual(t, "session of "+id, ss, d.session)
	for _, want := range []storage.Token{d.code, d.refresh} {
		tok, err := s.GetToken(ctx, id, want.Kind, want.Signature)
		must(t, "get token of "+id, err)
		mustEqual(t, "token of "+id, tok, want)
	}
	events, err := s.ListAudit(ctx, id, storage.AuditFilter{})
	must(t, "list audit of "+id, err)
	mustEqual(t, "audit of "+id, events, d.audit)
	if err := storage.VerifyChain(events); err != nil {
		t.Fatalf("verify audit chain of %s: %v", id, err)
	}
}

// RunTenantIsolation checks that tenants holding records with the same ids
// never see or change each other's records.
func RunTenantIsolation(t *testing.T, newStore NewStore) {
	s := newStore(t)
	alpha := populate(t, s, "alpha")
	beta := populate(t, s, "beta")
	alpha.appendAudit(t, s, "token")
	mustCreateTenant(t, s, "empty")

	t.Run("ReadsSeeOwnTenant", func(t *testing.T) {
		alpha.checkIntact(t, s)
		beta.checkIntact(t, s)
	})

	t.Run("EmptyTenantSeesNothing", func(t *testing.T) {
		testEmptyTenant(t, s, "empty")
		// Nothing done under the empty tenant reached the others.
		alpha.checkIntact(t, s)
		beta.checkIntact(t, s)
	})

	t.Run("WritesStayInTenant", func(t *testing.T) {
		changeEverything(t, s, alpha)
		beta.checkIntact(t, s)
		// beta's single-use records are still unused.
		ctx := t.Context()
		_, err := s.ConsumeToken(ctx, "beta", beta.code.Kind, beta.code.Signature)
		must(t, "consume beta's code", err)
		_, err = s.ConsumeLaunch(ctx, "beta", "l1", t0())
		must(t, "consume beta's launch", err)
		mustErr(t, "replay beta's jti", s.RecordAssertionJTI(ctx, "beta", "app", "j1", t0().Add(time.Hour)), storage.ErrAlreadyExists)
	})

	t.Run("ConsentsStayInTenant", func(t *testing.T) { testConsentsStayInTenant(t, newStore(t)) })
	t.Run("IdentityProvidersStayInTenant", func(t *testing.T) { testIdentityProvidersStayInTenant(t, newStore(t)) })
	t.Run("TOTPStaysInTenant", func(t *testing.T) { testTOTPStaysInTenant(t, newStore(t)) })

	t.Run("FailureCountersStayInTenant", func(t *testing.T) {
		ctx := t.Context()
		const window = 15 * time.Minute
		key := "email:same@example.org"
		counts := func(what string, want map[string]int64) {
			t.Helper()
			for id, n := range want {
				got, err := s.FailureCount(ctx, id, key, t0(), window)
				must(t, what+" of "+id, err)
				mustEqual(t, what+" of "+id, got, n)
			}
		}
		for i := range 3 {
			got, err := s.RecordFailure(ctx, "alpha", key, t0(), window)
			must(t, "record alpha's failure", err)
			mustEqual(t, "alpha's count", got, int64(i+1))
		}
		got, err := s.RecordFailure(ctx, "beta", key, t0(), window)
		must(t, "record beta's failure", err)
		mustEqual(t, "beta's count", got, int64(1))
		counts("count", map[string]int64{"alpha": 3, "beta": 1, "empty": 0})
		must(t, "clear beta's failures", s.ClearFailures(ctx, "beta", key))
		must(t, "clear empty's failures", s.ClearFailures(ctx, "empty", key))
		counts("count after clearing beta", map[string]int64{"alpha": 3, "beta": 0, "empty": 0})
	})

	t.Run("AuditBatchesStayInTenant", func(t *testing.T) {
		ctx := t.Context()
		// A batch for alpha that names beta in one event is refused whole.
		mixed := []storage.AuditEvent{
			auditFixture("alpha", t0(), "batch", "app", "u1"),
			auditFixture("beta", t0(), "batch", "app", "u1"),
		}
		_, err := s.AppendAudits(ctx, "alpha", mixed)
		if err == nil {
			t.Fatal("append batch for alpha holding an event of beta: got no error")
		}
		// Events without a tenant go to the tenant argument and nowhere else.
		untagged := []storage.AuditEvent{auditFixture("", t0(), "batch", "app", "u1"), auditFixture("", t0(), "batch", "app", "u2")}
		got, err := s.AppendAudits(ctx, "alpha", untagged)
		must(t, "append untagged batch to alpha", err)
		for _, e := range got {
			if e.TenantID != "alpha" {
				t.Fatalf("untagged event appended to alpha: got tenant %q", e.TenantID)
			}
		}
		mustEqual(t, "seqs of alpha's batch", seqs(got), []int64{int64(len(alpha.audit) + 1), int64(len(alpha.audit) + 2)})
		alpha.audit = append(alpha.audit, got...)
		// The earlier subtests consumed beta's single-use records, so only
		// the trails are compared here.
		for _, d := range []*tenantData{alpha, beta} {
			events, err := s.ListAudit(ctx, d.tenant.ID, storage.AuditFilter{})
			must(t, "list audit of "+d.tenant.ID, err)
			mustEqual(t, "audit of "+d.tenant.ID, events, d.audit)
			if err := storage.VerifyChain(events); err != nil {
				t.Fatalf("verify audit chain of %s: %v", d.tenant.ID, err)
			}
		}
		events, err := s.ListAudit(ctx, "empty", storage.AuditFilter{})
		must(t, "list audit of empty", err)
		mustEqual(t, "audit of empty", len(events), 0)
	})
}

// testEmptyTenant runs every keyed operation on the shared ids under a tenant
// that holds none of them.
func testEmptyTenant(t *testing.T, s storage.Storage, id string) {
	ctx := t.Context()
	notFound := []struct {
		name string
		op   func() error
	}{
		{"GetClient", func() error { _, err := s.GetClient(ctx, id, "app"); return err }},
		{"UpdateClient", func() error { return s.UpdateClient(ctx, clientFixture(id, "app")) }},
		{"DeleteClient", func() error { return s.DeleteClient(ctx, id, "app") }},
		{"RetireSigningKey", func() error { return s.RetireSigningKey(ctx, id, "k1", t0()) }},
		{"GetUser", func() error { _, err := s.GetUser(ctx, id, "u1"); return err }},
		{"GetUserByEmail", func() error { _, err := s.GetUserByEmail(ctx, id, "shared@example.org"); return err }},
		{"UpdateUser", func() error { return s.UpdateUser(ctx, userFixture(id, "u1", "other@example.org")) }},
		{"DeleteUser", func() error { return s.DeleteUser(ctx, id, "u1") }},
		{"GetPatient", func() error { _, err := s.GetPatient(ctx, id, "p1"); return err }},
		{"DeletePatient", func() error { return s.DeletePatient(ctx, id, "p1") }},
		{"GetSession", func() error { _, err := s.GetSession(ctx, id, "s1", t0()); return err }},
		{"UpdateSession", func() error { return s.UpdateSession(ctx, sessionFixture(id, "s1", "u1")) }},
		{"TouchSession", func() error { return s.TouchSession(ctx, id, "s1", t0(), t0().Add(time.Hour)) }},
		{"DeleteSession", func() error { return s.DeleteSession(ctx, id, "s1") }},
		{"GetToken", func() error { _, err := s.GetToken(ctx, id, storage.KindAuthorizeCode, "sig-code"); return err }},
		{"ConsumeToken", func() error {
			_, err := s.ConsumeToken(ctx, id, storage.KindAuthorizeCode, "sig-code")
			return err
		}},
		{"DeleteToken", func() error { return s.DeleteToken(ctx, id, storage.KindRefreshToken, "sig-refresh") }},
		{"ConsumeLaunch", func() error { _, err := s.ConsumeLaunch(ctx, id, "l1", t0()); return err }},
		{"GetLaunch", func() error { _, err := s.GetLaunch(ctx, id, "l1", t0()); return err }},
	}
	for _, tc := range notFound {
		if err := tc.op(); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s under tenant %q: got error %v, want %v", tc.name, id, err, storage.ErrNotFound)
		}
	}

	counts := []struct {
		name string
		op   func() (int64, error)
	}{
		{"RevokeRequest", func() (int64, error) { return s.RevokeRequest(ctx, id, "req-1") }},
		{"RevokeRequestKind", func() (int64, error) { return s.RevokeRequestKind(ctx, id, "req-1", storage.KindRefreshToken) }},
	}
	for _, tc := range counts {
		n, err := tc.op()
		if err != nil || n != 0 {
			t.Errorf("%s under tenant %q: got %d, %v; want 0, nil", tc.name, id, n, err)
		}
	}
	must(t, "DeleteUserSessions", s.DeleteUserSessions(ctx, id, "u1"))

	clients, err := s.ListClients(ctx, id)
	must(t, "ListClients", err)
	users, err := s.ListUsers(ctx, id)
	must(t, "ListUsers", err)
	patients, err := s.SearchPatients(ctx, id, storage.PatientQuery{})
	must(t, "SearchPatients", err)
	byIdentifier, err := s.SearchPatients(ctx, id, storage.PatientQuery{Identifier: "MRN-1"})
	must(t, "SearchPatients by identifier", err)
	events, err := s.ListAudit(ctx, id, storage.AuditFilter{})
	must(t, "ListAudit", err)
	if len(clients)+len(users)+len(patients)+len(byIdentifier)+len(events) != 0 {
		t.Errorf("lists under tenant %q: got %d clients, %d users, %d+%d patients, %d audit events; want none",
			id, len(clients), len(users), len(patients), len(byIdentifier), len(events))
	}
	keys, err := s.ListSigningKeys(ctx, id)
	must(t, "ListSigningKeys", err)
	if len(keys) != 1 || keys[0].KID != id+"-k1" {
		t.Errorf("ListSigningKeys under tenant %q: got %+v, want only its own key", id, keys)
	}
}

// changeEverything updates, consumes, revokes and deletes every record of d.
func changeEverything(t *testing.T, s storage.Storage, d *tenantData) {
	ctx := t.Context()
	id := d.tenant.ID

	tn := d.tenant
	tn.Name = "changed"
	must(t, "update tenant "+id, s.UpdateTenant(ctx, tn))
	c := d.client
	c.Name = "changed"
	must(t, "update client of "+id, s.UpdateClient(ctx, c))
	u := d.user
	u.Email = "changed@example.org"
	must(t, "update user of "+id, s.UpdateUser(ctx, u))
	p := d.patient
	p.Family = "Changed"
	must(t, "upsert patient of "+id, s.UpsertPatients(ctx, id, []storage.Patient{p}))
	ss := d.session
	ss.Data = []byte("changed")
	must(t, "update session of "+id, s.UpdateSession(ctx, ss))
	must(t, "rotate keys of "+id, s.RotateSigningKeys(ctx, id, []storage.SigningKey{keyFixture(id, "k2", t0().Add(time.Hour))}, t0().Add(time.Hour)))
	must(t, "retire key of "+id, s.RetireSigningKey(ctx, id, "k1", t0()))
	_, err := s.ConsumeToken(ctx, id, d.code.Kind, d.code.Signature)
	must(t, "consume code of "+id, err)
	n, err := s.RevokeRequest(ctx, id, "req-1")
	must(t, "revoke request of "+id, err)
	if n != 1 {
		t.Fatalf("revoke request of %s: got %d, want 1 (its refresh token)", id, n)
	}
	_, err = s.ConsumeLaunch(ctx, id, "l1", t0())
	must(t, "consume launch of "+id, err)
	must(t, "record jti of "+id, s.RecordAssertionJTI(ctx, id, "app", "j2", t0().Add(time.Hour)))
	d.appendAudit(t, s, "admin")

	must(t, "delete sessions of user of "+id, s.DeleteUserSessions(ctx, id, "u1"))
	must(t, "delete refresh token of "+id, s.DeleteToken(ctx, id, d.refresh.Kind, d.refresh.Signature))
	must(t, "delete patient of "+id, s.DeletePatient(ctx, id, "p1"))
	must(t, "delete user of "+id, s.DeleteUser(ctx, id, "u1"))
	must(t, "delete client of "+id, s.DeleteClient(ctx, id, "app"))

	// The changes took effect where they were aimed.
	_, err = s.GetClient(ctx, id, "app")
	mustErr(t, "get deleted client of "+id, err, storage.ErrNotFound)
	_, err = s.GetSession(ctx, id, "s1", t0())
	mustErr(t, "get deleted session of "+id, err, storage.ErrNotFound)
	events, err := s.ListAudit(ctx, id, storage.AuditFilter{})
	must(t, "list audit of "+id, err)
	mustEqual(t, "audit of "+id, events, d.audit)
	if err := storage.VerifyChain(events); err != nil {
		t.Fatalf("verify audit chain of %s: %v", id, err)
	}
}
