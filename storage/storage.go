// Package storage declares smartauth's domain types and the Storage contract
// that every backend (storage/sqlite, storage/postgres) implements and that
// storage/conformance proves.
//
// Guarantees every backend gives:
//
//   - Tenancy: every method touching tenant data takes the tenant id, and a
//     record of one tenant is invisible to every other: reading, updating,
//     consuming or deleting it under another tenant's id fails with
//     ErrNotFound and changes nothing.
//   - Atomicity: each method is one transaction. A method that writes several
//     rows (CreateTenant with its keys, RotateSigningKeys, UpsertPatients)
//     writes all of them or none.
//   - Single use: ConsumeToken, ConsumeLaunch, ConsumeRecoveryCode and
//     UseTOTPStep are conditional writes; when several callers race on one
//     record exactly one succeeds and the others get ErrConsumed.
//   - Revoked families: RevokeRequest and CreateToken of the same request
//     are serialised against each other, on any number of replicas, so
//     whatever their interleaving no record of a revoked request is left
//     active: one stored before the revocation is deactivated by it, one
//     stored after is born inactive. This holds while a record of the family
//     is kept, and for at least an hour after the revocation.
//   - Ended grants: DeleteConsent, DeleteClient, DeleteUser and UpdateUser
//     disabling a user end every grant family holding a record of that
//     user, client or pair, as RevokeRequest ends one, consumed and expired
//     records counting too: once they return, no record of those families
//     is active or can be stored active, even one a refresh in flight at
//     that moment stores (it consumed the old refresh token, leaving its
//     family nothing active, and then stores the new pair). A family whose
//     first record is stored while one of them runs counts as begun after.
//   - Versions: a tenant and a user carry a Version, 1 when created and one
//     more with each write to the row. UpdateTenant and UpdateUser write
//     only when the stored version is still the one the caller read, in the
//     same statement or transaction as the write; otherwise they yield
//     ErrConflict and change nothing. Of concurrent updates made from one
//     version, exactly one succeeds.
//   - Operators: in the OperatorRealm, UpdateUser and DeleteUser refuse with
//     ErrLastOperator a change that takes the last enabled admin out, and
//     check and change under one lock, so concurrent demotions, disables
//     and deletions cannot together leave no enabled operator.
//   - Upsert: SaveConsent is one atomic upsert on (tenant, user, client), so
//     concurrent saves never fail for being concurrent and leave one record.
//   - Counting: RecordFailure is one atomic upsert, so concurrent failures
//     on one key, on any number of replicas, are all counted.
//   - Uniqueness: RecordAssertionJTI is backed by a unique key on
//     (tenant, client, jti), so a replay is refused even across replicas.
//   - Audit: AppendAudit and AppendAudits serialise writers per tenant, so
//     the per-tenant hash chain has no gaps or forks under concurrent writers
//     on several replicas.
//   - Time: instants are kept to the microsecond, in UTC.
//   - At rest: a launch value is stored only as its LaunchKey, so reading
//     the database gives no one a launch value to use.
//
// The package imports nothing of smartauth's and knows nothing of HTTP or
// OAuth libraries: secrets arrive here already hashed or encrypted, except
// launch values, which every backend hashes with LaunchKey.
package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

// Sentinel errors; backends wrap them with context, callers test with errors.Is.
var (
	// ErrNotFound means no record with that key exists for that tenant.
	ErrNotFound = errors.New("storage: not found")
	// ErrAlreadyExists means a record with that key already exists.
	ErrAlreadyExists = errors.New("storage: already exists")
	// ErrInvalidInput means a value cannot be stored as given: text that is
	// not UTF-8 or holds a NUL, or a value too large for its column's index.
	ErrInvalidInput = errors.New("storage: invalid input")
	// ErrConsumed means a single-use record was already used or revoked.
	ErrConsumed = errors.New("storage: already consumed")
	// ErrExpired means the record exists but its lifetime is over.
	ErrExpired = errors.New("storage: expired")
	// ErrConflict means the record was changed since the version the caller
	// read, so the update, made from stale data, was not written.
	ErrConflict = errors.New("storage: changed since read")
	// ErrLastOperator means the change would leave the operator realm with
	// no enabled admin, and so nobody to sign in and manage anything.
	ErrLastOperator = errors.New("storage: last enabled operator")
	// ErrUnavailable means the database could not be reached, refused the
	// connection, or stayed busy too long: the same call may succeed later.
	// Whether a write that failed this way took effect is unknown.
	ErrUnavailable = errors.New("storage: database unavailable")
)

// Storage is the whole persistence contract of smartauth.
type Storage interface {
	// Ping reports whether the database answers.
	Ping(ctx context.Context) error
	// Close releases the connections.
	Close() error

	// CreateTenant stores a tenant, at version 1, together with its first
	// signing keys.
	CreateTenant(ctx context.Context, t Tenant, keys []SigningKey) error
	// GetTenant returns one tenant.
	GetTenant(ctx context.Context, tenantID string) (Tenant, error)
	// ListTenants returns every tenant ordered by id.
	ListTenants(ctx context.Context) ([]Tenant, error)
	// UpdateTenant replaces a tenant's name, FHIR base URLs and policy and
	// moves its version on by one, provided the stored version is still
	// t.Version; a tenant changed since yields ErrConflict.
	UpdateTenant(ctx context.Context, t Tenant) error

	// CreateClient registers a client within its tenant.
	CreateClient(ctx context.Context, c Client) error
	// GetClient returns one client of a tenant.
	GetClient(ctx context.Context, tenantID, clientID string) (Client, error)
	// ListClients returns a tenant's clients ordered by id.
	ListClients(ctx context.Context, tenantID string) ([]Client, error)
	// UpdateClient replaces every mutable field of a client.
	UpdateClient(ctx context.Context, c Client) error
	// DeleteClient removes a client, the tokens issued to it and the
	// consents given to it, and ends their grant families as RevokeRequest
	// does, so a refresh in flight stores its new tokens inactive.
	DeleteClient(ctx context.Context, tenantID, clientID string) error

	// CreateUser stores a user with its profiles, at version 1; emails are
	// unique per tenant.
	CreateUser(ctx context.Context, u User) error
	// GetUser returns one user of a tenant.
	GetUser(ctx context.Context, tenantID, userID string) (User, error)
	// GetUserByEmail finds a user by email, compared case-insensitively.
	GetUserByEmail(ctx context.Context, tenantID, email string) (User, error)
	// ListUsers returns a tenant's users ordered by email.
	ListUsers(ctx context.Context, tenantID string) ([]User, error)
	// UpdateUser replaces every mutable field of a user except the TOTP
	// secret, which only the TOTP methods change, and moves its version on
	// by one, provided the stored version is still u.Version; a user
	// changed since yields ErrConflict. Disabling a user also ends every
	// grant family issued to it, as RevokeRequest does, so a refresh in
	// flight stores its new tokens inactive. Taking the last enabled operator
	// out (disabling it or withdrawing its admin right) yields
	// ErrLastOperator.
	UpdateUser(ctx context.Context, u User) error
	// DeleteUser removes a user, its sessions and its consents, and ends
	// every grant family issued to it as RevokeRequest does, so its refresh
	// tokens stop working at once and a refresh in flight stores its new
	// tokens inactive. Deleting the last enabled operator yields
	// ErrLastOperator.
	DeleteUser(ctx context.Context, tenantID, userID string) error

	// UpsertPatients inserts or replaces roster entries, all or none.
	UpsertPatients(ctx context.Context, tenantID string, patients []Patient) error
	// GetPatient returns one roster entry.
	GetPatient(ctx context.Context, tenantID, patientID string) (Patient, error)
	// SearchPatients returns roster entries matching every set field of q.
	SearchPatients(ctx context.Context, tenantID string, q PatientQuery) ([]Patient, error)
	// DeletePatient removes a roster entry.
	DeletePatient(ctx context.Context, tenantID, patientID string) error

	// ListSigningKeys returns every key of a tenant, newest first.
	ListSigningKeys(ctx context.Context, tenantID string) ([]SigningKey, error)
	// RotateSigningKeys marks the tenant's active keys as retiring at
	// retireAt and stores the new keys as active, in one transaction.
	RotateSigningKeys(ctx context.Context, tenantID string, newKeys []SigningKey, retireAt time.Time) error
	// AddSigningKeys stores new active keys beside the tenant's current
	// ones, retiring none, in one transaction.
	AddSigningKeys(ctx context.Context, tenantID string, newKeys []SigningKey) error
	// RetireSigningKey marks one key of a tenant, active or retiring, as
	// retiring at retiresAt, so it signs nothing more and leaves the JWKS
	// then; an unknown kid yields ErrNotFound.
	RetireSigningKey(ctx context.Context, tenantID, kid string, retiresAt time.Time) error

	// CreateSession stores a browser session.
	CreateSession(ctx context.Context, s Session) error
	// GetSession returns a session that has not expired (ErrNotFound otherwise).
	GetSession(ctx context.Context, tenantID, sessionID string, now time.Time) (Session, error)
	// UpdateSession replaces a session's data, user and expiry.
	UpdateSession(ctx context.Context, s Session) error
	// TouchSession records a use of a session that has not expired at
	// usedAt: it sets the update time and expiry and leaves user and data
	// alone, so it cannot undo a concurrent UpdateSession. A session that is
	// gone or expired yields ErrNotFound.
	TouchSession(ctx context.Context, tenantID, sessionID string, usedAt, expiresAt time.Time) error
	// DeleteSession removes one session.
	DeleteSession(ctx context.Context, tenantID, sessionID string) error
	// DeleteUserSessions removes every session of a user.
	DeleteUserSessions(ctx context.Context, tenantID, userID string) error

	// CreateToken stores a grant record (code, access, refresh, PKCE or OIDC
	// request); a record of a revoked request is stored inactive.
	CreateToken(ctx context.Context, t Token) error
	// GetToken returns a grant record whether or not it is still active.
	GetToken(ctx context.Context, tenantID string, kind TokenKind, signature string) (Token, error)
	// ConsumeToken atomically marks an active record inactive and returns it.
	// A record already inactive yields the record and an error wrapping ErrConsumed.
	ConsumeToken(ctx context.Context, tenantID string, kind TokenKind, signature string) (Token, error)
	// RevokeRequest marks every record of one request (a grant family)
	// inactive and returns how many were active. Records created for that
	// request afterwards, while a record of it is kept and for at least an
	// hour, are stored inactive, so a request still writing when the family
	// was revoked cannot leave live tokens behind.
	RevokeRequest(ctx context.Context, tenantID, requestID string) (int64, error)
	// RevokeRequestKind marks the records of one kind in one request inactive.
	RevokeRequestKind(ctx context.Context, tenantID, requestID string, kind TokenKind) (int64, error)
	// DeleteToken removes one grant record.
	DeleteToken(ctx context.Context, tenantID string, kind TokenKind, signature string) error
	// ListActiveTokens returns a tenant's grant records of one kind that are
	// active and expire after now, oldest first (then by signature).
	ListActiveTokens(ctx context.Context, tenantID string, kind TokenKind, now time.Time) ([]Token, error)

	// CreateLaunch stores an EHR launch context under LaunchKey(l.ID); an
	// empty ID is refused.
	CreateLaunch(ctx context.Context, l Launch) error
	// ConsumeLaunch returns a launch context and marks it used, once.
	// Unknown: ErrNotFound; used before: ErrConsumed; past ExpiresAt: ErrExpired.
	ConsumeLaunch(ctx context.Context, tenantID, launchID string, now time.Time) (Launch, error)
	// GetLaunch returns a launch context without using it up, with the same
	// refusals as ConsumeLaunch: unknown: ErrNotFound; used: ErrConsumed
	// (even once expired); at or past ExpiresAt: ErrExpired.
	GetLaunch(ctx context.Context, tenantID, launchID string, now time.Time) (Launch, error)

	// SaveConsent stores what a user agreed to let a client have, replacing
	// the scopes and times of any consent of that user to that client. The
	// tenant, user and client must exist (ErrNotFound otherwise).
	SaveConsent(ctx context.Context, c Consent) error
	// GetConsent returns a user's consent to a client; one that is absent or
	// whose non-zero ExpiresAt is at or before now yields ErrNotFound.
	GetConsent(ctx context.Context, tenantID, userID, clientID string, now time.Time) (Consent, error)
	// ListConsents returns a user's consents, expired ones included, ordered
	// by client id; an empty userID lists every consent of the tenant,
	// ordered by user id, then client id.
	ListConsents(ctx context.Context, tenantID, userID string) ([]Consent, error)
	// DeleteConsent removes a user's consent to a client (ErrNotFound when
	// absent) and ends every grant family of the user with that client as
	// RevokeRequest does, refreshes in flight included, so what the consent
	// let the client have ends with it.
	DeleteConsent(ctx context.Context, tenantID, userID, clientID string) error

	// CreateIdentityProvider stores an upstream identity provider of a
	// tenant; its id is unique per tenant.
	CreateIdentityProvider(ctx context.Context, p IdentityProvider) error
	// GetIdentityProvider returns one identity provider of a tenant.
	GetIdentityProvider(ctx context.Context, tenantID, providerID string) (IdentityProvider, error)
	// ListIdentityProviders returns a tenant's identity providers ordered by id.
	ListIdentityProviders(ctx context.Context, tenantID string) ([]IdentityProvider, error)
	// UpdateIdentityProvider replaces every mutable field of an identity provider.
	UpdateIdentityProvider(ctx context.Context, p IdentityProvider) error
	// DeleteIdentityProvider removes an identity provider and its domain
	// routes; identity links stay, as they name the issuer, not the provider.
	DeleteIdentityProvider(ctx context.Context, tenantID, providerID string) error
	// CreateDomainRoute sends an email domain of a tenant to one of its
	// identity providers; a domain has at most one route per tenant
	// (ErrAlreadyExists), and the provider must exist (ErrNotFound).
	CreateDomainRoute(ctx context.Context, r DomainRoute) error
	// ListDomainRoutes returns a tenant's domain routes ordered by domain.
	ListDomainRoutes(ctx context.Context, tenantID string) ([]DomainRoute, error)
	// DeleteDomainRoute removes the route of one domain.
	DeleteDomainRoute(ctx context.Context, tenantID, domain string) error
	// CreateIdentityLink links an upstream (issuer, subject) to a user of
	// the tenant; the pair is unique per tenant (ErrAlreadyExists), and the
	// user must exist (ErrNotFound). Deleting the user deletes its links.
	CreateIdentityLink(ctx context.Context, l IdentityLink) error
	// GetIdentityLink returns the link of an upstream (issuer, subject).
	GetIdentityLink(ctx context.Context, tenantID, issuer, subject string) (IdentityLink, error)
	// ListIdentityLinks returns a user's links ordered by issuer, then subject.
	ListIdentityLinks(ctx context.Context, tenantID, userID string) ([]IdentityLink, error)
	// DeleteIdentityLink removes the link of an upstream (issuer, subject).
	DeleteIdentityLink(ctx context.Context, tenantID, issuer, subject string) error

	// RecordAssertionJTI remembers a client assertion's jti until expiresAt;
	// a jti already remembered yields ErrAlreadyExists.
	RecordAssertionJTI(ctx context.Context, tenantID, clientID, jti string, expiresAt time.Time) error

	// AppendAudit assigns the next sequence number and chain hash of the
	// tenant and stores the event; it returns the stored event.
	AppendAudit(ctx context.Context, e AuditEvent) (AuditEvent, error)
	// AppendAudits stores several events of one tenant in one transaction,
	// all or none, with consecutive sequence numbers and chained hashes in
	// the order given; it returns the stored events.
	AppendAudits(ctx context.Context, tenantID string, events []AuditEvent) ([]AuditEvent, error)
	// ListAudit returns a tenant's events matching f in sequence order,
	// or newest first when f.Descending.
	ListAudit(ctx context.Context, tenantID string, f AuditFilter) ([]AuditEvent, error)

	// RecordFailure counts one failed sign-in under key (such as
	// "email:…" or "ip:…") and returns the count in the current window. It
	// is one atomic upsert: when the stored window began at or before
	// now-window, a new window begins at now with a count of 1; otherwise the
	// count goes up by one. Concurrent callers on one key lose no failure.
	// The counter expires at its window's start plus window.
	RecordFailure(ctx context.Context, tenantID, key string, now time.Time, window time.Duration) (int64, error)
	// FailureCount returns the failures counted under key in the window that
	// covers now: 0 when there are none or the window began at or before
	// now-window.
	FailureCount(ctx context.Context, tenantID, key string, now time.Time, window time.Duration) (int64, error)
	// ClearFailures forgets the failures counted under key; clearing a key
	// with none is no error.
	ClearFailures(ctx context.Context, tenantID, key string) error

	// SaveTOTPEnrollment stores a user's pending TOTP enrollment, replacing
	// any earlier pending one; the user's confirmed secret is left alone.
	// The user must exist (ErrNotFound otherwise).
	SaveTOTPEnrollment(ctx context.Context, e TOTPEnrollment) error
	// GetTOTPEnrollment returns a user's pending TOTP enrollment; one that is
	// absent or whose ExpiresAt is at or before now yields ErrNotFound.
	GetTOTPEnrollment(ctx context.Context, tenantID, userID string, now time.Time) (TOTPEnrollment, error)
	// ConfirmTOTPEnrollment, in one transaction, makes the pending
	// enrollment whose SecretSealed equals secretSealed the user's
	// TOTPSecret (setting UpdatedAt to now), deletes it, and replaces the
	// user's recovery codes with recoveryHashes. When no such enrollment is
	// pending at now (none, replaced, confirmed or expired) it yields
	// ErrNotFound and changes nothing.
	ConfirmTOTPEnrollment(ctx context.Context, tenantID, userID string, secretSealed []byte, recoveryHashes [][]byte, now time.Time) error
	// ResetTOTP removes a user's TOTP secret (setting UpdatedAt to now),
	// pending enrollment and recovery codes in one transaction; the user
	// must exist (ErrNotFound otherwise).
	ResetTOTP(ctx context.Context, tenantID, userID string, now time.Time) error
	// UseTOTPStep records that a TOTP code of time step step was accepted
	// for a user. Unless step is above every step recorded for that user, it
	// yields ErrConsumed and changes nothing; it is one conditional upsert,
	// so of concurrent callers with one step exactly one succeeds. An
	// unknown user yields ErrNotFound.
	UseTOTPStep(ctx context.Context, tenantID, userID string, step int64) error
	// ReplaceRecoveryCodes replaces all of a user's recovery codes, used or
	// not, with unused codes of the given digests, in one transaction. The
	// user must exist (ErrNotFound otherwise).
	ReplaceRecoveryCodes(ctx context.Context, tenantID, userID string, hashes [][]byte, now time.Time) error
	// ConsumeRecoveryCode marks a user's unused recovery code with that
	// digest used at now, in one conditional update, so of concurrent
	// callers exactly one succeeds. Unknown: ErrNotFound; used: ErrConsumed.
	ConsumeRecoveryCode(ctx context.Context, tenantID, userID string, hash []byte, now time.Time) error
	// CountRecoveryCodes returns how many unused recovery codes a user has.
	CountRecoveryCodes(ctx context.Context, tenantID, userID string) (int, error)

	// SweepExpired deletes expired sessions, grant records, revoked-request
	// markers, launches, assertion jtis, sign-in failure counters, the
	// request counters of ended rate-limit windows (RequestCounter), pending
	// TOTP enrollments and remembered consents (those without expiry stay)
	// and returns how many rows went.
	SweepExpired(ctx context.Context, now time.Time) (int64, error)
}

// ChangeFeed is offered by a backend several processes share, so that each
// can forget what it keeps in memory of a record another one changed.
type ChangeFeed interface {
	// WatchChanges calls fn, on one goroutine, for every change to tenants, clients and signing keys until ctx ends, reconnecting after failures.
	WatchChanges(ctx context.Context, fn func(Change))
}

// PoolStats is how one of a backend's connection pools is used at a moment.
type PoolStats struct {
	// Name tells a backend's pools apart.
	Name string
	// Acquired connections are in use, Idle ones wait in the pool, Open
	// counts both (and any being opened), Max is the pool's limit.
	Acquired, Idle, Open, Max int64
	// Waits counts acquisitions that found no idle connection, and
	// WaitTime is how long they waited in all, since the pool opened.
	Waits    int64
	WaitTime time.Duration
}

// PoolReporter is offered by a backend that keeps connection pools, so the
// server can report their use.
type PoolReporter interface {
	PoolStats() []PoolStats
}

// RequestCounter is offered by a backend several processes share, so that
// rate limits hold across them; a backend only one process uses leaves the
// counting to that process's memory.
type RequestCounter interface {
	// CountRequests adds one to the count of each key of a tenant in the
	// window that began at start and lasts window, in one atomic upsert, and
	// returns the counts after it in the order of keys, which are distinct.
	// Concurrent callers on any number of replicas lose no count. Windows
	// that ended are deleted by SweepExpired.
	CountRequests(ctx context.Context, tenantID string, keys []string, start time.Time, window time.Duration) ([]int64, error)
}

// The tables a Change names.
const (
	ChangedTenants     = "tenants"
	ChangedClients     = "clients"
	ChangedSigningKeys = "signing_keys"
)

// Change is one event of a ChangeFeed: a record changed, the feed lost its
// connection (Err), or it connected again (Resync).
type Change struct {
	// Table is ChangedTenants, ChangedClients or ChangedSigningKeys when a record changed.
	Table string
	// TenantID is the record's tenant, a tenant's own id for a tenant; empty (with ID) stands for every record of Table.
	TenantID string
	// ID is the client id or key id; empty stands for every record of Table in the tenant.
	ID string
	// Resync means the feed has just connected: changes made while it was away went unseen.
	Resync bool
	// Err is why the feed lost its connection; it is reconnecting and sees no changes until its next Resync.
	Err error
}

// Tenant is one clinic or organization; its id is the URL slug.
type Tenant struct {
	ID           string
	Name         string
	FHIRBaseURLs []string
	Policy       TenantPolicy
	CreatedAt    time.Time
	// Version is 1 when the tenant is created and goes up by one with each
	// update; UpdateTenant writes only over the version it names.
	Version int64
}

// TenantPolicy holds a tenant's security and token settings.
type TenantPolicy struct {
	// MFARequired forces a second factor for every local sign-in.
	MFARequired bool `json:"mfa_required,omitempty"`
	// MFAOffered offers a second factor, which they may skip, to users who
	// sign in with a password and have none; MFARequired leaves no choice.
	MFAOffered bool `json:"mfa_offered,omitempty"`
	// AllowEmailLinking lets an upstream identity link to a local user by verified email.
	AllowEmailLinking bool `json:"allow_email_linking,omitempty"`
	// JITProvisioning creates users on their first federated sign-in.
	JITProvisioning bool `json:"jit_provisioning,omitempty"`
	// OpaqueAccessTokens issues opaque access tokens instead of JWTs.
	OpaqueAccessTokens bool `json:"opaque_access_tokens,omitempty"`
	// AccessTokenTTL, RefreshTokenTTL and IDTokenTTL override server defaults when non-zero.
	AccessTokenTTL  Duration `json:"access_token_ttl,omitempty"`
	RefreshTokenTTL Duration `json:"refresh_token_ttl,omitempty"`
	IDTokenTTL      Duration `json:"id_token_ttl,omitempty"`
	// AccessTokenAlg is the JWS algorithm of the tenant's JWT access tokens:
	// RS256, PS256 or ES256; empty means ES256, so tenants stored before the
	// setting existed keep their behaviour.
	AccessTokenAlg string `json:"access_token_alg,omitempty"`
	// PatientSearch, when its FHIRBaseURL is set, is the FHIR server whose
	// Patient search the patient picker offers besides the local roster.
	PatientSearch PatientSearchSource `json:"patient_search,omitzero"`
	// Gateway, when its UpstreamURL is set, is the FHIR server behind the
	// tenant's SMART gateway at {base}/t/{tenant}/fhir.
	Gateway GatewaySettings `json:"gateway,omitzero"`
	// RateLimits caps the requests to the tenant's token, introspection,
	// revocation, registration and EHR launch endpoints.
	RateLimits RateLimits `json:"rate_limits,omitzero"`
}

// RateLimits are requests per minute a tenant's OAuth endpoints serve to
// one client and to one source address. Zero means the default (the
// DefaultRateLimit constants), a negative number no limit.
type RateLimits struct {
	ClientPerMinute  int `json:"client_per_minute,omitempty"`
	AddressPerMinute int `json:"address_per_minute,omitempty"`
}

// Default rate limits, per minute, 100 a second: far above what one app or
// EHR backend asks for, so that only floods and runaway clients reach them,
// since a client's limit is shared by every user of a public app, and an
// address's by a whole organisation behind one NAT.
const (
	DefaultClientRateLimit  = 6000
	DefaultAddressRateLimit = 6000
)

// MaxRateLimit is the largest limit per minute a tenant may set.
const MaxRateLimit = 1_000_000

// Client and Address return the limits in force: the default for zero, 0
// (no limit) for a negative number.
func (r RateLimits) Client() int  { return rateLimit(r.ClientPerMinute, DefaultClientRateLimit) }
func (r RateLimits) Address() int { return rateLimit(r.AddressPerMinute, DefaultAddressRateLimit) }

func rateLimit(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

// The ways the gateway authenticates to its upstream FHIR server.
const (
	// GatewayAuthNone sends no credentials, for an upstream reachable only by the gateway.
	GatewayAuthNone = "none"
	// GatewayAuthClientCredentials sends a token bought with the tenant's
	// patient search client (PatientSearchSource), the same OAuth 2.0
	// client_credentials settings.
	GatewayAuthClientCredentials = "client_credentials"
	// GatewayAuthHeader sends one static header, such as an API key.
	GatewayAuthHeader = "header"
	// GatewayAuthForward sends the app's own access token, for an upstream
	// that enforces smartauth's tokens itself.
	GatewayAuthForward = "forward"
)

// DefaultGatewayUserHeader is the header that carries the user's fhirUser
// (or, for backend services, the client id) to the upstream when
// GatewaySettings.UserHeader is empty.
const DefaultGatewayUserHeader = "X-Smart-User"

// GatewaySettings is where the tenant's SMART gateway forwards and how it
// authenticates there. Every field is a string so that TenantPolicy stays comparable.
type GatewaySettings struct {
	// UpstreamURL is the FHIR base URL requests are forwarded to.
	UpstreamURL string `json:"upstream_url"`
	// UpstreamAuth is one of the GatewayAuth constants; empty means GatewayAuthNone.
	UpstreamAuth string `json:"upstream_auth,omitempty"`
	// HeaderName and HeaderValueSealed are the static header of
	// GatewayAuthHeader; the value is sealed under the master key, base64-encoded.
	HeaderName        string `json:"header_name,omitempty"`
	HeaderValueSealed string `json:"header_value_sealed,omitempty"`
	// UserHeader names the header carrying the user's identity; empty means DefaultGatewayUserHeader.
	UserHeader string `json:"user_header,omitempty"`
}

// DefaultAccessTokenAlg is the access-token algorithm of a tenant that set none.
const DefaultAccessTokenAlg = "ES256"

// AccessTokenAlgOrDefault returns AccessTokenAlg, or DefaultAccessTokenAlg when it is empty.
func (p TenantPolicy) AccessTokenAlgOrDefault() string {
	if p.AccessTokenAlg == "" {
		return DefaultAccessTokenAlg
	}
	return p.AccessTokenAlg
}

// PatientSearchSource is a FHIR server searched for patients with a token
// from OAuth 2.0 client_credentials. Every field is a string so that
// TenantPolicy stays comparable.
type PatientSearchSource struct {
	FHIRBaseURL string `json:"fhir_base_url"`
	TokenURL    string `json:"token_url"`
	ClientID    string `json:"client_id"`
	// ClientSecretSealed is the client secret sealed under the master key,
	// base64-encoded; the secret itself is never stored.
	ClientSecretSealed string `json:"client_secret_sealed"`
	// Scope is asked for with the token, such as "system/Patient.rs"; empty asks for none.
	Scope string `json:"scope,omitempty"`
}

// ClientType is how a client authenticates at the token endpoint.
type ClientType string

// The client types of SMART App Launch.
const (
	ClientPublic                 ClientType = "public"
	ClientConfidentialSymmetric  ClientType = "confidential-symmetric"
	ClientConfidentialAsymmetric ClientType = "confidential-asymmetric"
)

// Client is an application registered with a tenant.
type Client struct {
	TenantID string
	ID       string
	Name     string
	Type     ClientType
	// SecretHash is the SHA-256 digest of the client secret; empty unless symmetric.
	SecretHash   []byte
	RedirectURIs []string
	// Scopes are the scopes the client may be granted.
	Scopes     []string
	GrantTypes []string
	// JWKSURL or JWKS (a JSON Web Key Set document) hold an asymmetric client's public keys.
	JWKSURL   string
	JWKS      []byte
	LaunchURI string
	// CanCreateLaunch lets the client create EHR launch contexts.
	CanCreateLaunch bool
	// AccessTokenTTL overrides the tenant's access token lifetime when non-zero.
	AccessTokenTTL time.Duration
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// User is a person who signs in to a tenant.
type User struct {
	TenantID string
	ID       string
	// Email is unique per tenant, case-insensitively.
	Email string
	// PasswordHash is an argon2id hash in PHC string form; empty for federated-only users.
	PasswordHash string
	Disabled     bool
	// Admin lets the user sign in to the admin UI for their tenant; in the
	// operator realm every user is an operator.
	Admin bool
	// TOTPSecret is the encrypted TOTP seed; empty until enrolled.
	TOTPSecret []byte
	Profiles   []Profile
	CreatedAt  time.Time
	UpdatedAt  time.Time
	// Version is 1 when the user is created and goes up by one with each
	// write to the user: UpdateUser, ConfirmTOTPEnrollment and ResetTOTP.
	// UpdateUser writes only over the version it names.
	Version int64
}

// Profile is one FHIR identity a user may act as.
type Profile struct {
	// FHIRUser is a relative reference such as "Practitioner/123".
	FHIRUser string `json:"fhir_user"`
	// Label names the role for the role picker, such as "Attending physician".
	Label string `json:"label,omitempty"`
}

// Patient is one entry of a tenant's patient roster.
type Patient struct {
	TenantID    string
	ID          string
	Family      string
	Given       string
	BirthDate   string // YYYY-MM-DD, or a prefix of it
	Gender      string
	Identifiers []Identifier
	// Resource is the FHIR Patient resource as imported.
	Resource  []byte
	UpdatedAt time.Time
}

// Identifier is a FHIR identifier (an MRN, say).
type Identifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value"`
}

// PatientQuery narrows a roster search; empty fields do not filter.
type PatientQuery struct {
	// Name matches the start of the family or given name, case-insensitively.
	Name string
	// BirthDate matches exactly.
	BirthDate string
	// Identifier matches an identifier value exactly.
	Identifier string
	// Limit caps the result; zero means 50.
	Limit int
	// Offset skips that many matches first, in the result's order, for
	// paging through a search or the whole roster.
	Offset int
}

// KeyStatus is where a signing key is in its life.
type KeyStatus string

// Signing key states: active keys sign; retiring keys are still published.
const (
	KeyActive   KeyStatus = "active"
	KeyRetiring KeyStatus = "retiring"
)

// SigningKey is one of a tenant's token signing keys.
type SigningKey struct {
	TenantID string
	KID      string
	Alg      string
	Status   KeyStatus
	// PublicJWK is the public key as a JSON Web Key document.
	PublicJWK []byte
	// PrivateSealed is the private JWK encrypted under the master key.
	PrivateSealed []byte
	CreatedAt     time.Time
	// RetiresAt is when a retiring key leaves the JWKS; zero while active.
	RetiresAt time.Time
}

// Session is a browser session; Data is encrypted by its owner.
type Session struct {
	TenantID  string
	ID        string
	UserID    string
	Data      []byte
	CreatedAt time.Time
	UpdatedAt time.Time
	ExpiresAt time.Time
}

// TokenKind tells apart the grant records kept by the OAuth layer.
type TokenKind string

// Grant record kinds.
const (
	KindAuthorizeCode TokenKind = "code"
	KindAccessToken   TokenKind = "access"
	KindRefreshToken  TokenKind = "refresh"
	KindPKCE          TokenKind = "pkce"
	KindOpenID        TokenKind = "oidc"
	// KindInitialAccess is an RFC 7591 initial access token, single use.
	KindInitialAccess TokenKind = "initial_access"
)

// OperatorRealm is the tenant id under which operators, their API clients,
// sessions and audit trail live. Its leading underscore is not allowed in a
// tenant slug, so no /t/ URL reaches it and no tenant can be created with it.
const OperatorRealm = "_operators"

// Token is a grant record keyed by the token's signature, never the token itself.
type Token struct {
	TenantID  string
	Kind      TokenKind
	Signature string
	// RequestID groups every record of one grant family across refreshes.
	RequestID string
	ClientID  string
	Subject   string
	// SessionID ties online_access grants to the browser session.
	SessionID string
	Active    bool
	// Data is the serialized OAuth request.
	Data      []byte
	CreatedAt time.Time
	ExpiresAt time.Time
	// Alone says the record is the only one its request will ever have,
	// and nothing can name the request before the record is stored (a
	// client_credentials access token): no revocation of its family can
	// race storing it, so CreateToken may skip serialising the two. It is
	// not stored.
	Alone bool
}

// Launch is an EHR launch context waiting for its app.
type Launch struct {
	TenantID string
	// ID is the raw launch value the app presents. Backends store only
	// LaunchKey(ID) and return the value they were asked for.
	ID       string
	ClientID string
	UserID   string
	// Aud is the FHIR base URL the EHR launched the app against, the iss
	// it was given; authorization must be for that server.
	Aud       string
	Context   LaunchContext
	CreatedAt time.Time
	ExpiresAt time.Time
}

// LaunchContext is the clinical context an EHR hands to an app.
type LaunchContext struct {
	Patient           string `json:"patient,omitempty"`
	Encounter         string `json:"encounter,omitempty"`
	FHIRContext       []byte `json:"fhirContext,omitempty"`
	NeedPatientBanner *bool  `json:"need_patient_banner,omitempty"`
	SmartStyleURL     string `json:"smart_style_url,omitempty"`
	Intent            string `json:"intent,omitempty"`
}

// LaunchKey returns the hex SHA-256 of a raw launch value, the only form in which backends store it.
func LaunchKey(raw string) string {
	// No salt or slow hash is needed: launch values are 256 random bits, so
	// the digest cannot be reversed by guessing.
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:])
}

// Consent is what a user agreed to let a client have, remembered so that
// the user is not asked again.
type Consent struct {
	TenantID string
	UserID   string
	ClientID string
	// Scopes are the scopes the user granted.
	Scopes    []string
	CreatedAt time.Time
	// ExpiresAt ends the consent; zero means it does not expire.
	ExpiresAt time.Time
}

// TOTPEnrollment is a TOTP secret waiting for its first correct code
// before it becomes the user's.
type TOTPEnrollment struct {
	TenantID string
	UserID   string
	// SecretSealed is the TOTP seed sealed by its owner; the seed itself is never stored.
	SecretSealed []byte
	CreatedAt    time.Time
	ExpiresAt    time.Time
}

// AuditEvent is one row of a tenant's append-only, hash-chained audit trail.
type AuditEvent struct {
	TenantID string
	// Seq is assigned on append: 1, 2, 3… per tenant.
	Seq      int64
	Time     time.Time
	Type     string
	Outcome  string
	ActorID  string
	ClientID string
	Subject  string
	SourceIP string
	Details  map[string]string
	// PrevHash and Hash are assigned on append; see ChainHash.
	PrevHash []byte
	Hash     []byte
}

// AuditFilter narrows ListAudit; empty fields do not filter.
type AuditFilter struct {
	// User matches events whose actor or subject is this id.
	User     string
	Type     string
	ClientID string
	Subject  string
	Since    time.Time
	Until    time.Time
	AfterSeq int64
	// BeforeSeq, when positive, keeps events with a lower sequence number.
	BeforeSeq int64
	// Descending returns the newest events first.
	Descending bool
	// Limit caps the result; zero means 1000.
	Limit int
}

// IdentityProviderType names the kind of an upstream identity provider.
type IdentityProviderType string

// The identity provider types: any OpenID Connect provider, and two presets of it.
const (
	IdentityProviderOIDC    IdentityProviderType = "oidc"
	IdentityProviderCognito IdentityProviderType = "cognito"
	IdentityProviderOkta    IdentityProviderType = "okta"
)

// IdentityProvider is an upstream OpenID Connect provider of a tenant.
type IdentityProvider struct {
	TenantID    string
	ID          string
	Type        IdentityProviderType
	DisplayName string
	Settings    IdentityProviderSettings
	// ClientSecretSealed is the client secret sealed under the master key,
	// bound to the tenant and provider id; the secret itself is never stored.
	ClientSecretSealed []byte
	ClaimMapping       ClaimMapping
	// FederationOnly forbids local passwords for the provider's email domains.
	FederationOnly bool
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// IdentityProviderSettings locate an identity provider and name the client
// registered there; presets keep what the operator typed next to the issuer
// derived from it.
type IdentityProviderSettings struct {
	Issuer   string   `json:"issuer"`
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes,omitempty"`
	// UserInfo asks the userinfo endpoint for claims the ID token lacks.
	UserInfo bool `json:"userinfo,omitempty"`
	// Region, UserPoolID and HostedUIDomain describe a Cognito user pool.
	Region         string `json:"region,omitempty"`
	UserPoolID     string `json:"user_pool_id,omitempty"`
	HostedUIDomain string `json:"hosted_ui_domain,omitempty"`
	// OrgURL and AuthorizationServerID describe an Okta authorization server.
	OrgURL                string `json:"org_url,omitempty"`
	AuthorizationServerID string `json:"authorization_server_id,omitempty"`
}

// ClaimMapping says how an identity provider's ID token claims become a
// person's context at the tenant; empty claim names are not consulted.
type ClaimMapping struct {
	// TenantClaim names a claim that must equal the tenant id, such as "custom:tenant_id".
	TenantClaim string `json:"tenant_claim,omitempty"`
	// PatientClaim names a claim holding a Patient id, such as "custom:patient_id".
	PatientClaim string `json:"patient_claim,omitempty"`
	// FHIRUserClaim names a claim holding a relative reference, such as "Practitioner/7".
	FHIRUserClaim string `json:"fhir_user_claim,omitempty"`
	// GroupsClaim names a claim listing groups, such as "groups" or "cognito:groups".
	GroupsClaim string `json:"groups_claim,omitempty"`
	// GroupRoles maps a group to the role label it gives.
	GroupRoles map[string]string `json:"group_roles,omitempty"`
}

// DomainRoute sends the people of one email domain of a tenant to one of
// its identity providers.
type DomainRoute struct {
	TenantID string
	// Domain is lower case, internationalized names in ASCII (punycode) form.
	Domain     string
	ProviderID string
	// IncludeSubdomains routes the domain's subdomains too.
	IncludeSubdomains bool
	CreatedAt         time.Time
}

// IdentityLink ties an upstream identity, named for ever by its issuer and
// subject, to a user of the tenant.
type IdentityLink struct {
	TenantID  string
	Issuer    string
	Subject   string
	UserID    string
	CreatedAt time.Time
}
