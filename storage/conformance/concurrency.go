package conformance

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/smartauth/smartauth/storage"
)

// racers is how many goroutines contend in each race; rounds repeats the
// single-use races, since one round may not interleave as badly as it can.
const (
	racers = 8
	rounds = 5
)

// RunConcurrency checks the guarantees that only show under contention:
// single use, no record of a revoked family left active, nor of one ended
// in bulk with a user, client or consent while refreshing, jti uniqueness, a
// gap-free audit chain per tenant, writers that never fail for being
// concurrent, one winner among updates made from one version, and an
// operator realm never left without an enabled admin.
func RunConcurrency(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, s storage.Storage)
	}{
		{"ConsumeToken", testRaceConsumeToken},
		{"RevokeRequest", testRaceRevokeRequest},
		{"EndGrants", testRaceEndGrants},
		{"ConsumeLaunch", testRaceConsumeLaunch},
		{"SaveConsent", testRaceSaveConsent},
		{"RecordAssertionJTI", testRaceAssertionJTI},
		{"RecordFailure", testRaceRecordFailure},
		{"UseTOTPStep", testRaceUseTOTPStep},
		{"ConsumeRecoveryCode", testRaceConsumeRecoveryCode},
		{"AppendAudit", testRaceAppendAudit},
		{"AppendAudits", testRaceAppendAudits},
		{"MixedWriters", testMixedWriters},
		{"UpdateTenant", testRaceUpdateTenant},
		{"UpdateUser", testRaceUpdateUser},
		{"LastOperator", testRaceLastOperator},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newStore(t)) })
	}
}

// race runs f in n goroutines, released together once all have started, and
// returns their errors by goroutine index.
func race(n int, f func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var ready, done sync.WaitGroup
	ready.Add(n)
	for i := range n {
		done.Go(func() {
			ready.Done()
			<-start
			errs[i] = f(i)
		})
	}
	ready.Wait()
	close(start)
	done.Wait()
	return errs
}

// exactlyOneWinner fails unless exactly one error is nil and all others wrap loser.
func exactlyOneWinner(t *testing.T, what string, errs []error, loser error) {
	t.Helper()
	winners := 0
	for i, err := range errs {
		switch {
		case err == nil:
			winners++
		case !errors.Is(err, loser):
			t.Fatalf("%s: goroutine %d: got error %v, want nil or %v", what, i, err, loser)
		}
	}
	if winners != 1 {
		t.Fatalf("%s: %d of %d goroutines succeeded, want exactly 1", what, winners, len(errs))
	}
}

func testRaceConsumeToken(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	for round := range rounds {
		code := tokenFixture("acme", storage.KindAuthorizeCode, fmt.Sprintf("sig-%d", round), "req", "app")
		must(t, "create code", s.CreateToken(ctx, code))
		errs := race(racers, func(int) error {
			got, err := s.ConsumeToken(ctx, "acme", code.Kind, code.Signature)
			if got.Signature != code.Signature && (err == nil || errors.Is(err, storage.ErrConsumed)) {
				return fmt.Errorf("consume returned record %q, want %q (err %v)", got.Signature, code.Signature, err)
			}
			return err
		})
		exactlyOneWinner(t, fmt.Sprintf("round %d: ConsumeToken", round), errs, storage.ErrConsumed)
	}
}

// testRaceRevokeRequest races the revocation of a grant family against the
// creation of its records, as when reuse of a code is detected while the
// winning redemption stores its tokens: whatever the interleaving, no record
// of the family is left active, while a family nobody revoked keeps its
// records. Many rounds, since few interleavings straddle the revocation.
func testRaceRevokeRequest(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	const revokeRounds = 8 * rounds
	kinds := []storage.TokenKind{storage.KindAccessToken, storage.KindRefreshToken}
	for round := range revokeRounds {
		family, other := fmt.Sprintf("family-%d", round), fmt.Sprintf("other-%d", round)
		errs := race(racers, func(i int) error {
			switch i {
			case 0:
				_, err := s.RevokeRequest(ctx, "acme", family)
				return err
			case 1:
				return s.CreateToken(ctx, tokenFixture("acme", storage.KindAccessToken, other, other, "app"))
			default:
				return s.CreateToken(ctx, tokenFixture("acme", kinds[i%2], fmt.Sprintf("%s-%d", family, i), family, "app"))
			}
		})
		for i, err := range errs {
			must(t, fmt.Sprintf("round %d: goroutine %d", round, i), err)
		}
		for i := 2; i < racers; i++ {
			got, err := s.GetToken(ctx, "acme", kinds[i%2], fmt.Sprintf("%s-%d", family, i))
			must(t, "get token", err)
			if got.Active {
				t.Fatalf("round %d: record %s of the revoked family is active", round, got.Signature)
			}
		}
		got, err := s.GetToken(ctx, "acme", storage.KindAccessToken, other)
		must(t, "get token", err)
		if !got.Active {
			t.Fatalf("round %d: revoking one family deactivated another", round)
		}
	}
}

func testRaceConsumeLaunch(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	for round := range rounds {
		l := launchFixture("acme", fmt.Sprintf("l-%d", round))
		must(t, "create launch", s.CreateLaunch(ctx, l))
		errs := race(racers, func(int) error {
			_, err := s.ConsumeLaunch(ctx, "acme", l.ID, t0())
			return err
		})
		exactlyOneWinner(t, fmt.Sprintf("round %d: ConsumeLaunch", round), errs, storage.ErrConsumed)
	}
}

func testRaceAssertionJTI(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	for round := range rounds {
		jti := fmt.Sprintf("jti-%d", round)
		errs := race(racers, func(int) error {
			return s.RecordAssertionJTI(ctx, "acme", "app", jti, t0().Add(time.Minute))
		})
		exactlyOneWinner(t, fmt.Sprintf("round %d: RecordAssertionJTI", round), errs, storage.ErrAlreadyExists)
	}
}

// testRaceRecordFailure: concurrent failures on one key are all counted,
// each caller sees a distinct count, and the last count is the total.
func testRaceRecordFailure(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	const n = 4 * racers
	now := t0()
	counts := make([]int64, n)
	errs := race(n, func(i int) error {
		var err error
		counts[i], err = s.RecordFailure(ctx, "acme", "ip:192.0.2.7", now.Add(time.Duration(i)*time.Millisecond), time.Hour)
		return err
	})
	seen := map[int64]bool{}
	for i, err := range errs {
		must(t, label("record failure in goroutine %d", i), err)
		if counts[i] < 1 || counts[i] > n || seen[counts[i]] {
			t.Fatalf("goroutine %d: got count %d; counts %v", i, counts[i], counts)
		}
		seen[counts[i]] = true
	}
	got, err := s.FailureCount(ctx, "acme", "ip:192.0.2.7", now.Add(time.Second), time.Hour)
	must(t, "count failures", err)
	mustEqual(t, "count after concurrent failures", got, int64(n))
}

func testRaceAppendAudit(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	mustCreateTenant(t, s, "beta")
	const perWriter = 5
	// Most writers share one tenant; two write to another at the same time,
	// so per-tenant serialisation is seen not to mix the chains.
	tenantOf := func(i int) string {
		if i < racers {
			return "acme"
		}
		return "beta"
	}
	returned := make([][]storage.AuditEvent, racers+2)
	errs := race(racers+2, func(i int) error {
		for j := range perWriter {
			e := auditFixture(tenantOf(i), t0().Add(time.Duration(j)*time.Second), fmt.Sprintf("writer-%d", i), "app", fmt.Sprintf("event-%d", j))
			got, err := s.AppendAudit(ctx, e)
			if err != nil {
				return fmt.Errorf("append event %d: %w", j, err)
			}
			returned[i] = append(returned[i], got)
		}
		return nil
	})
	for i, err := range errs {
		must(t, fmt.Sprintf("writer %d", i), err)
	}

	for _, tc := range []struct {
		tenant string
		want   int
	}{{"acme", racers * perWriter}, {"beta", 2 * perWriter}} {
		trail, err := s.ListAudit(ctx, tc.tenant, storage.AuditFilter{})
		must(t, "list audit of "+tc.tenant, err)
		if len(trail) != tc.want {
			t.Fatalf("audit of %s: got %d events, want %d", tc.tenant, len(trail), tc.want)
		}
		if err := storage.VerifyChain(trail); err != nil {
			t.Fatalf("audit chain of %s: %v", tc.tenant, err)
		}
		// What each writer was told it appended is what the trail holds.
		for i, events := range returned {
			if tenantOf(i) != tc.tenant {
				continue
			}
			for _, e := range events {
				mustEqual(t, fmt.Sprintf("%s event %d as returned to writer %d", tc.tenant, e.Seq, i), trail[e.Seq-1], e)
			}
		}
	}
}

// testRaceAppendAudits races writers of batches of several sizes against
// writers of single events: each batch must land as one consecutive run of
// the trail, and the trail must stay gap-free and verifiable.
func testRaceAppendAudits(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	mustCreateTenant(t, s, "beta")
	const perWriter = 4
	tenantOf := func(i int) string {
		if i%4 == 3 {
			return "beta"
		}
		return "acme"
	}
	returned := make([][]storage.AuditEvent, racers)
	errs := race(racers, func(i int) error {
		for j := range perWriter {
			e := auditFixture(tenantOf(i), t0(), fmt.Sprintf("writer-%d", i), "app", fmt.Sprintf("event-%d", j))
			if i%2 == 0 {
				got, err := s.AppendAudit(ctx, e)
				if err != nil {
					return fmt.Errorf("append event %d: %w", j, err)
				}
				returned[i] = append(returned[i], got)
				continue
			}
			// Batches of 1 to 4 events, some naming their tenant and some not.
			batch := make([]storage.AuditEvent, 1+(i+j)%4)
			for k := range batch {
				batch[k] = e
				batch[k].Details = map[string]string{"k": fmt.Sprint(k)}
				if k%2 == 1 {
					batch[k].TenantID = ""
				}
			}
			got, err := s.AppendAudits(ctx, tenantOf(i), batch)
			if err != nil {
				return fmt.Errorf("append batch %d: %w", j, err)
			}
			if len(got) != len(batch) {
				return fmt.Errorf("append batch %d: got %d events back, want %d", j, len(got), len(batch))
			}
			for k := range got {
				if got[k].Seq != got[0].Seq+int64(k) {
					return fmt.Errorf("append batch %d: got seqs %v, want consecutive", j, seqs(got))
				}
			}
			returned[i] = append(returned[i], got...)
		}
		return nil
	})
	for i, err := range errs {
		must(t, fmt.Sprintf("writer %d", i), err)
	}

	for _, tenant := range []string{"acme", "beta"} {
		want := 0
		for i := range returned {
			if tenantOf(i) == tenant {
				want += len(returned[i])
			}
		}
		trail, err := s.ListAudit(ctx, tenant, storage.AuditFilter{})
		must(t, "list audit of "+tenant, err)
		if len(trail) != want {
			t.Fatalf("audit of %s: got %d events, want %d", tenant, len(trail), want)
		}
		if err := storage.VerifyChain(trail); err != nil {
			t.Fatalf("audit chain of %s: %v", tenant, err)
		}
		for i, events := range returned {
			if tenantOf(i) != tenant {
				continue
			}
			for _, e := range events {
				mustEqual(t, fmt.Sprintf("%s event %d as returned to writer %d", tenant, e.Seq, i), trail[e.Seq-1], e)
			}
		}
	}
}

// testMixedWriters runs goroutines that each write every kind of record,
// interleaved with reads; no call may fail for contention (for SQLite:
// "database is locked").
func testMixedWriters(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	const iterations = 10
	errs := race(racers, func(i int) error {
		for j := range iterations {
			id := fmt.Sprintf("w%d-%d", i, j)
			steps := []struct {
				name string
				run  func() error
			}{
				{"create user", func() error { return s.CreateUser(ctx, userFixture("acme", id, id+"@example.org")) }},
				{"create session", func() error { return s.CreateSession(ctx, sessionFixture("acme", id, id)) }},
				{"get session", func() error { _, err := s.GetSession(ctx, "acme", id, t0()); return err }},
				{"update session", func() error { return s.UpdateSession(ctx, sessionFixture("acme", id, id)) }},
				{"create token", func() error {
					return s.CreateToken(ctx, tokenFixture("acme", storage.KindAuthorizeCode, id, id, "app"))
				}},
				{"consume token", func() error {
					_, err := s.ConsumeToken(ctx, "acme", storage.KindAuthorizeCode, id)
					return err
				}},
				{"upsert patient", func() error {
					return s.UpsertPatients(ctx, "acme", []storage.Patient{patientFixture("acme", id, "Doe", id, "2000-01-01", id)})
				}},
				{"search patients", func() error {
					_, err := s.SearchPatients(ctx, "acme", storage.PatientQuery{Identifier: id})
					return err
				}},
				{"record jti", func() error { return s.RecordAssertionJTI(ctx, "acme", "app", id, t0().Add(time.Minute)) }},
				{"append audit", func() error { _, err := s.AppendAudit(ctx, auditFixture("acme", t0(), "mixed", "app", id)); return err }},
				{"revoke request", func() error { _, err := s.RevokeRequest(ctx, "acme", id); return err }},
				{"delete user", func() error { return s.DeleteUser(ctx, "acme", id) }},
			}
			for _, st := range steps {
				if err := st.run(); err != nil {
					return fmt.Errorf("iteration %d: %s: %w", j, st.name, err)
				}
			}
		}
		return nil
	})
	for i, err := range errs {
		must(t, fmt.Sprintf("writer %d", i), err)
	}
	trail, err := s.ListAudit(ctx, "acme", storage.AuditFilter{})
	must(t, "list audit", err)
	if len(trail) != racers*iterations {
		t.Fatalf("audit: got %d events, want %d", len(trail), racers*iterations)
	}
	if err := storage.VerifyChain(trail); err != nil {
		t.Fatalf("audit chain: %v", err)
	}
}
