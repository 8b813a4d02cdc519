// Package manage holds the administrative operations shared by the CLI, the
// admin UI and the admin API: validated creation and editing of tenants,
// clients, users and identity providers, roster imports, key rotation and
// retirement, and consent revocation, each recorded in the tenant's audit
// trail.
package manage

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/smartauth/smartauth/federation/oidc"
	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/server/netguard"
	"github.com/smartauth/smartauth/server/oauth"
	"github.com/smartauth/smartauth/storage"
)

// ErrInvalid marks input an operator must correct; its message says how.
var ErrInvalid = errors.New("invalid input")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Actor is who performs an operation, for the audit trail.
type Actor struct {
	// ID names the operator, or "cli" for the command line.
	ID       string
	SourceIP string
}

// Service performs administrative operations against one store.
type Service struct {
	store storage.Storage
	keys  *keys.Manager
	now   func() time.Time
	// http reaches upstream identity providers when an operator tests one.
	http *http.Client
}

// New returns a Service; now may be nil. It reaches identity providers
// only at public addresses; WithHTTPClient changes that.
func New(store storage.Storage, km *keys.Manager, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, keys: km, now: now, http: publicIdPClient()}
}

// publicIdPClient reaches identity providers at public addresses only, as a
// tenant's administrator, who names the issuer, must not be able to probe
// the server's own network with a discovery test.
func publicIdPClient() *http.Client {
	return oidc.NewHTTPClient(netguard.Control(false))
}

// WithHTTPClient returns a copy of the Service that reaches upstream
// identity providers through c; nil means a connector client that reaches
// public addresses only.
func (s *Service) WithHTTPClient(c *http.Client) *Service {
	if c == nil {
		c = publicIdPClient()
	}
	cp := *s
	cp.http = c
	return &cp
}

func (s *Service) timestamp() time.Time {
	return s.now().UTC().Truncate(time.Microsecond)
}

// audit records an administrative change; a failure is returned because an
// unrecorded admin change is one compliance cannot see.
func (s *Service) audit(ctx context.Context, tenantID, typ string, who Actor, subject string, details map[string]string) error {
	_, err := s.store.AppendAudit(ctx, storage.AuditEvent{
		TenantID: tenantID,
		Time:     s.timestamp(),
		Type:     typ,
		Outcome:  "success",
		ActorID:  who.ID,
		Subject:  subject,
		SourceIP: who.SourceIP,
		Details:  details,
	})
	if err != nil {
		return fmt.Errorf("record audit event %s: %w", typ, err)
	}
	return nil
}

// MaxRetirement caps the retirement window of a key rotation. The window
// only has to outlive the tokens the old keys signed (minutes to hours, a
// refresh token being opaque); a longer one keeps a key that was rotated
// out, perhaps because it leaked, verifying tokens for that much longer.
const MaxRetirement = 30 * 24 * time.Hour

// RotateKeys adds new active signing keys to a tenant and retires the old
// ones after the retirement window. The window is at most MaxRetirement and
// at least the longest lifetime of a token the old keys signed (see
// retirementFloor): a shorter one would cut off tokens already issued.
func (s *Service) RotateKeys(ctx context.Context, tenantID string, retirement time.Duration, who Actor) ([]storage.SigningKey, error) {
	if retirement < 0 {
		return nil, invalid("retirement window must not be negative")
	}
	if retirement > MaxRetirement {
		return nil, invalid("retirement window %s is longer than the most allowed, %s (30 days)", retirement, MaxRetirement)
	}
	t, err := s.store.GetTenant(ctx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("tenant %q: %w", tenantID, err)
	}
	floor, what, err := s.retirementFloor(ctx, t)
	if err != nil {
		return nil, err
	}
	if retirement < floor {
		return nil, invalid("retirement window %s is shorter than %s, %s: tokens the old keys already signed would stop verifying; keep them published for at least %s",
			retirement, what, floor, floor)
	}
	ks, err := s.keys.Rotate(ctx, tenantID, retirement)
	if err != nil {
		return nil, err
	}
	return ks, s.audit(ctx, tenantID, "admin.keys.rotate", who, "", map[string]string{"retirement": retirement.String()})
}

// RetirementFloor is the shortest retirement window RotateKeys accepts for
// a tenant, and how long RetireKey keeps a key that is not compromised
// published; what names the lifetime it comes from.
func (s *Service) RetirementFloor(ctx context.Context, tenantID string) (floor time.Duration, what string, err error) {
	t, err := s.store.GetTenant(ctx, tenantID)
	if err != nil {
		return 0, "", fmt.Errorf("tenant %q: %w", tenantID, err)
	}
	return s.retirementFloor(ctx, t)
}

// retirementFloor is how long a key must stay published after it last
// signs: the longest lifetime of a token the tenant's keys sign, which is
// the tenant's access token lifetime, a client's own where longer, or the
// ID token lifetime where longer still. what names the setting it comes from.
// A lifetime shortened since tokens were issued is not remembered: the
// floor follows the settings as they are now.
func (s *Service) retirementFloor(ctx context.Context, t storage.Tenant) (floor time.Duration, what string, err error) {
	floor, what = oauth.DefaultAccessTokenTTL, "the access token lifetime"
	if t.Policy.AccessTokenTTL > 0 {
		floor, what = time.Duration(t.Policy.AccessTokenTTL), "the tenant's access token lifetime"
	}
	clients, err := s.store.ListClients(ctx, t.ID)
	if err != nil {
		return 0, "", fmt.Errorf("clients of tenant %q: %w", t.ID, err)
	}
	for _, c := range clients {
		if c.AccessTokenTTL > floor {
			floor, what = c.AccessTokenTTL, fmt.Sprintf("the access token lifetime of client %q", c.ID)
		}
	}
	idTTL := oauth.DefaultIDTokenTTL
	if t.Policy.IDTokenTTL > 0 {
		idTTL = time.Duration(t.Policy.IDTokenTTL)
	}
	if idTTL > floor {
		floor, what = idTTL, "the ID token lifetime"
	}
	return floor, what, nil
}

// RetireKey takes one signing key out of use: it signs nothing more from
// now on. The tenant's last active key of an algorithm is refused, so
// signing never stops: rotate first, then retire the old key.
//
// A key retired in the ordinary way stays published for the retirement
// floor (see retirementFloor), so tokens it signed go on verifying until
// they expire. A compromised key leaves the JWKS at once and every token it
// signed stops verifying: that is the point when it may have leaked, and
// only the operator can say so. Either way a retirement already under way
// is never put later.
//
// The keys.Manager given to New forgets the tenant's keys at once. With
// PostgreSQL, other replicas forget them when the change feed tells them,
// and within keys.ListCacheTTL while the feed is reconnecting; relying
// parties may keep a fetched JWKS for its cache lifetime.
func (s *Service) RetireKey(ctx context.Context, tenantID, kid string, compromised bool, who Actor) error {
	ks, err := s.store.ListSigningKeys(ctx, tenantID)
	if err != nil {
		return fmt.Errorf("signing keys of tenant %q: %w", tenantID, err)
	}
	i := slices.IndexFunc(ks, func(k storage.SigningKey) bool { return k.KID == kid })
	if i < 0 {
		return fmt.Errorf("signing key %q of tenant %q: %w", kid, tenantID, storage.ErrNotFound)
	}
	k := ks[i]
	if k.Status == storage.KeyActive && !slices.ContainsFunc(ks, func(o storage.SigningKey) bool {
		return o.KID != kid && o.Status == storage.KeyActive && o.Alg == k.Alg
	}) {
		return invalid("key %s is the only active %s key of tenant %q: rotate the keys first, then retire it", kid, k.Alg, tenantID)
	}
	retiresAt := s.timestamp()
	if !compromised {
		floor, _, err := s.RetirementFloor(ctx, tenantID)
		if err != nil {
			return err
		}
		retiresAt = retiresAt.Add(floor)
	}
	if k.Status == storage.KeyRetiring && k.RetiresAt.Before(retiresAt) {
		retiresAt = k.RetiresAt
	}
	if err := s.keys.Retire(ctx, tenantID, kid, retiresAt); err != nil {
		return err
	}
	return s.audit(ctx, tenantID, "admin.keys.retire", who, "", map[string]string{"kid": kid, "alg": k.Alg, "was": string(k.Status),
		"compromised": strconv.FormatBool(compromised), "retires_at": retiresAt.Format(time.RFC3339)})
}
