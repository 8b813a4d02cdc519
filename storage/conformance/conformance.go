// Package conformance is the test suite every storage.Storage backend must
// pass. A backend's test calls RunBasic, RunTenantIsolation and
// RunConcurrency with a constructor that returns an empty, migrated store and
// registers its Close with t.Cleanup, and RunAtRest with one that also
// returns a reader of the store's rows.
//
// Beyond the guarantees in the storage package documentation, the suite pins
// down these details of the contract:
//
//   - Instants come back in UTC, truncated to the microsecond; the zero time
//     comes back as the zero time. Empty lists and byte slices may come back
//     nil or empty.
//   - A record expires at its ExpiresAt: GetSession hides it from that instant
//     on, ConsumeLaunch reports ErrExpired, and SweepExpired(now) deletes every
//     row with ExpiresAt <= now. Expiring records need a non-zero ExpiresAt;
//     a consent with a zero one is never swept.
//   - Creating a record for a tenant that does not exist fails with
//     ErrNotFound; creating one whose key exists fails with ErrAlreadyExists.
//   - Update and single-record Delete methods fail with ErrNotFound when the
//     record does not exist; DeleteUserSessions does not.
//   - Create and Update methods keep CreatedAt as first stored.
//   - CreateTenant and CreateUser store version 1, whatever Version says.
//     UpdateTenant and UpdateUser refuse any version but the stored one,
//     older or newer, with ErrConflict; a record that does not exist yields
//     ErrNotFound whatever the version.
//   - Users with an empty email may coexist; GetUserByEmail("") finds no one.
//     ListUsers orders by email case-insensitively.
//   - UpsertPatients refuses, before writing anything, a batch holding a
//     patient with an empty ID or with a TenantID other than the tenant
//     argument; an empty TenantID means the tenant argument. SearchPatients
//     orders by family name, given name, then id, compares names by their
//     lowercase form, and treats % and _ in the query literally.
//   - RotateSigningKeys requires at least one new key and stores each new
//     key as active with a zero RetiresAt, whatever the caller set;
//     AddSigningKeys does the same and retires nothing.
//     ListSigningKeys orders by CreatedAt, newest first.
//   - RetireSigningKey sets the key's RetiresAt to the time given, earlier or
//     later than before, and leaves the tenant's other keys alone.
//   - ConsumeToken returns the record as now stored, so Active is false both
//     on success and with ErrConsumed.
//   - A launch is stored under storage.LaunchKey of its ID, in a text column
//     holding that hex digest, and never with the ID itself; GetLaunch and
//     ConsumeLaunch return the ID they were given. CreateLaunch refuses an
//     empty ID.
//   - ConsumeLaunch and GetLaunch check "used" before "expired": a used
//     launch yields ErrConsumed even once it has expired. GetLaunch never
//     uses a launch up, whatever it answers.
//   - A consent with a zero ExpiresAt never expires; SaveConsent replaces
//     CreatedAt too.
//   - A failure counter's window is half open: it covers failures from its
//     start until just before start+window, so FailureCount at start+window
//     is 0 and RecordFailure then restarts at 1. RecordFailure for a tenant
//     that does not exist fails with ErrNotFound; FailureCount of an unknown
//     key or tenant is 0, and ClearFailures of one is no error.
//   - Text that is not UTF-8 or holds a NUL matches nothing: a lookup by
//     it yields ErrNotFound or ErrInvalidInput, a search or count finds
//     nothing or yields ErrInvalidInput, and a record holding it is stored
//     as given or refused with ErrInvalidInput.
//   - AppendAudit ignores the caller's Seq, PrevHash and Hash, and stamps the
//     current time when Time is zero. It accepts any strings: NUL bytes and
//     invalid UTF-8, which some databases cannot store, become U+FFFD, and the
//     event is chained and returned as stored. ListAudit's Since is inclusive
//     and Until exclusive.
//   - AppendAudits treats each event as AppendAudit does and gives a batch
//     consecutive sequence numbers in the order given, never interleaved with
//     another writer's events. It refuses, before writing anything, a batch
//     holding an event whose TenantID is other than the tenant argument; an
//     empty TenantID means the tenant argument. An empty batch writes nothing
//     and returns no events and no error.
package conformance

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/smartauth/smartauth/storage"
)

// NewStore returns an empty, migrated store that is closed when t ends.
type NewStore = func(t *testing.T) storage.Storage

// t0 is the suite's reference instant. It is neither on a microsecond
// boundary nor in UTC, so every round trip exercises truncation and
// normalisation.
func t0() time.Time {
	return time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.FixedZone("UTC+2", 2*60*60))
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func mustErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func tenantFixture(id string) storage.Tenant {
	return storage.Tenant{
		ID:           id,
		Name:         "Clinic " + id,
		FHIRBaseURLs: []string{"https://fhir.example/" + id + "/r4", "https://fhir.example/" + id + "/r4b"},
		Policy: storage.TenantPolicy{
			MFARequired:     true,
			JITProvisioning: true,
			AccessTokenTTL:  storage.Duration(5 * time.Minute),
			IDTokenTTL:      storage.Duration(90 * time.Second),
			AccessTokenAlg:  "PS256",
		},
		CreatedAt: t0(),
		Version:   1,
	}
}

func keyFixture(tenantID, kid string, createdAt time.Time) storage.SigningKey {
	return storage.SigningKey{
		TenantID:      tenantID,
		KID:           kid,
		Alg:           "ES384",
		Status:        storage.KeyActive,
		PublicJWK:     []byte(`{"kty":"EC","crv":"P-384","kid":"` + kid + `"}`),
		PrivateSealed: []byte("\x00sealed\xff" + tenantID + "/" + kid),
		CreatedAt:     createdAt,
	}
}

func clientFixture(tenantID, id string) storage.Client {
	return storage.Client{
		TenantID:        tenantID,
		ID:              id,
		Name:            "App " + id + " of " + tenantID,
		Type:            storage.ClientConfidentialSymmetric,
		SecretHash:      []byte("\x01\x02hash-of-" + tenantID + "/" + id),
		RedirectURIs:    []string{"https://app.example/" + tenantID + "/cb", "http://127.0.0.1:8765/cb"},
		Scopes:          []string{"openid", "fhirUser", "launch", "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"},
		GrantTypes:      []string{"authorization_code", "refresh_token"},
		JWKS:            []byte(`{"keys":[]}`),
		LaunchURI:       "https://app.example/launch",
		CanCreateLaunch: true,
		AccessTokenTTL:  10 * time.Minute,
		CreatedAt:       t0(),
		UpdatedAt:       t0().Add(time.Second),
	}
}

func userFixture(tenantID, id, email string) storage.User {
	return storage.User{
		TenantID:     tenantID,
		ID:           id,
		Email:        email,
		PasswordHash: "$argon2id$v=19$m=65536,t=1,p=4$c2FsdA$" + tenantID + id,
		TOTPSecret:   []byte("\x00sealed-totp-" + tenantID),
		Profiles: []storage.Profile{
			{FHIRUser: "Practitioner/" + tenantID + "-1", Label: "Attending physician"},
			{FHIRUser: "Patient/" + tenantID + "-2"},
		},
		CreatedAt: t0(),
		UpdatedAt: t0().Add(time.Minute),
		Version:   1,
	}
}

func patientFixture(tenantID, id, family, given, birthDate string, identifiers ...string) storage.Patient {
	p := storage.Patient{
		TenantID:  tenantID,
		ID:        id,
		Family:    family,
		Given:     given,
		BirthDate: birthDate,
		Gender:    "unknown",
		Resource:  []byte(`{"resourceType":"Patient","id":"` + id + `"}`),
		UpdatedAt: t0(),
	}
	for _, v := range identifiers {
		p.Identifiers = append(p.Identifiers, storage.Identifier{System: "urn:oid:1.2.3." + tenantID, Value: v})
	}
	return p
}

func sessionFixture(tenantID, id, userID string) storage.Session {
	return storage.Session{
		TenantID:  tenantID,
		ID:        id,
		UserID:    userID,
		Data:      []byte("\x00sealed-session-" + tenantID + "/" + id),
		CreatedAt: t0(),
		UpdatedAt: t0(),
		ExpiresAt: t0().Add(time.Hour),
	}
}

func tokenFixture(tenantID string, kind storage.TokenKind, signature, requestID, clientID string) storage.Token {
	return storage.Token{
		TenantID:  tenantID,
		Kind:      kind,
		Signature: signature,
		RequestID: requestID,
		ClientID:  clientID,
		Subject:   "user-of-" + tenantID,
		SessionID: "session-of-" + tenantID,
		Active:    true,
		Data:      []byte(`{"tenant":"` + tenantID + `","kind":"` + string(kind) + `"}`),
		CreatedAt: t0(),
		ExpiresAt: t0().Add(time.Hour),
	}
}

func launchFixture(tenantID, id string) storage.Launch {
	banner := false
	return storage.Launch{
		TenantID: tenantID,
		ID:       id,
		ClientID: "app",
		UserID:   "user-of-" + tenantID,
		Aud:      "https://fhir.example/" + tenantID + "/r4",
		Context: storage.LaunchContext{
			Patient:           "Patient/" + tenantID + "-1",
			Encounter:         "Encounter/" + tenantID + "-2",
			FHIRContext:       []byte(`[{"reference":"Observation/3"}]`),
			NeedPatientBanner: &banner,
			SmartStyleURL:     "https://ehr.example/style.json",
			Intent:            "reconcile-medications",
		},
		CreatedAt: t0(),
		ExpiresAt: t0().Add(5 * time.Minute),
	}
}

func auditFixture(tenantID string, at time.Time, typ, clientID, subject string) storage.AuditEvent {
	return storage.AuditEvent{
		TenantID: tenantID,
		Time:     at,
		Type:     typ,
		Outcome:  "success",
		ActorID:  subject,
		ClientID: clientID,
		Subject:  subject,
		SourceIP: "192.0.2.7",
		Details:  map[string]string{"tenant": tenantID, "note": "é \"quoted\" <b>"},
	}
}

// mustCreateTenant creates a tenant with one active signing key.
func mustCreateTenant(t *testing.T, s storage.Storage, id string) storage.Tenant {
	t.Helper()
	tn := tenantFixture(id)
	must(t, "create tenant "+id, s.CreateTenant(t.Context(), tn, []storage.SigningKey{keyFixture(id, id+"-k1", t0())}))
	return tn
}

// ids lists the ids of patients, for compact comparisons of search results.
func patientIDs(ps []storage.Patient) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}

func seqs(es []storage.AuditEvent) []int64 {
	out := make([]int64, 0, len(es))
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}

func label(format string, args ...any) string { return fmt.Sprintf(format, args...) }
