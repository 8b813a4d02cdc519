// Package server is smartauth's HTTP layer: per-tenant routing, discovery,
// and the endpoints of later capabilities. routes.go is the one route table;
// each endpoint family lives in the file named after it.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartauth/smartauth/gateway"
	"github.com/smartauth/smartauth/gateway/upstream"
	"github.com/smartauth/smartauth/server/audit"
	"github.com/smartauth/smartauth/server/clientauth"
	"github.com/smartauth/smartauth/server/fhirsearch"
	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/metrics"
	"github.com/smartauth/smartauth/server/mfa"
	"github.com/smartauth/smartauth/server/oauth"
	"github.com/smartauth/smartauth/server/password"
	"github.com/smartauth/smartauth/server/ratelimit"
	"github.com/smartauth/smartauth/server/sessions"
	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/templates"
)

// DefaultMaxBodyBytes caps request bodies; OAuth forms are far smaller.
const DefaultMaxBodyBytes = 1 << 20

// MaxProtocolBodyBytes caps the bodies of the OAuth protocol endpoints
// (token, introspection, revocation, registration, authorize-post, userinfo,
// the EHR launch API) and of sign-in and sign-out, which anyone may call
// before authenticating. Their largest real requests, a client assertion or
// a subject token with many claims, are a few KiB; reading and decoding a
// megabyte form costs milliseconds of CPU before a single parameter can be
// checked, so anything past this is refused unread.
const MaxProtocolBodyBytes = 64 << 10

// Config is everything the server needs, passed in explicitly.
type Config struct {
	// BaseURL is the public URL the server is reached at; tenant issuers hang off it.
	BaseURL *url.URL
	Store   storage.Storage
	Keys    *keys.Manager
	Logger  *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxBodyBytes caps request bodies; zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MasterKey derives the per-tenant secrets of codes and refresh tokens.
	MasterKey []byte
	// HTTPClient fetches client JWKS URLs; nil means a client with short
	// timeouts that refuses internal addresses and redirects.
	HTTPClient *http.Client
	// AllowPrivateJWKS lets client JWKS URLs resolve to private addresses.
	AllowPrivateJWKS bool
	// AllowPrivateFHIR lets tenants' FHIR servers (the patient search
	// source and the gateway's upstream) resolve to private addresses; kept apart from AllowPrivateJWKS, since an internal
	// FHIR server is common and internal JWKS URLs are not.
	AllowPrivateFHIR bool
	// AllowPrivateIdP lets tenants' identity providers, at sign-in and in
	// the admin's discovery test, resolve to private addresses.
	AllowPrivateIdP bool
	// SessionIdleTimeout and SessionAbsoluteTimeout end browser sessions;
	// zero means the sessions package's defaults.
	SessionIdleTimeout     time.Duration
	SessionAbsoluteTimeout time.Duration
	// ClientCacheTTL and TenantCacheTTL bound how long a client or tenant
	// read from the store is reused; zero means the defaults of the same
	// names. The signing keys' equivalent is set on Keys.
	ClientCacheTTL time.Duration
	TenantCacheTTL time.Duration
	// GatewayRevocationDelay is how long the FHIR gateway trusts a validated
	// access token before asking the store again; zero means
	// gateway.DefaultRevocationDelay.
	GatewayRevocationDelay time.Duration
	// Metrics, when set, counts requests, tokens, refusals and the rest
	// (package metrics); nil records nothing.
	Metrics *metrics.Metrics
}

// Server serves every tenant's endpoints.
type Server struct {
	base       string
	secure     bool
	store      storage.Storage
	keys       *keys.Manager
	log        *slog.Logger
	now        func() time.Time
	maxBody    int64
	templates  *templates.Set
	oauth      *oauth.Providers
	clientAuth *clientauth.Authenticator
	tenants    *ttlCache[string, storage.Tenant]
	clients    *clientCache
	audits     *audit.Writer
	// manage performs the administrative operations offered over HTTP,
	// such as creating EHR launches.
	manage  *manage.Service
	handler http.Handler
	// masterKey derives the keys that sign login tickets.
	masterKey []byte
	// dummyHash is verified against when no user matches an email, so a
	// failed sign-in takes as long whether or not the email exists.
	dummyHash func() (string, error)
	// passwords bounds concurrent argon2id verifications to the CPUs.
	passwords *password.Limiter
	// sessions keeps browser sessions; online_access grants live as long as theirs.
	sessions *sessions.Manager
	// patientSearch reaches tenants' FHIR servers for the patient picker.
	patientSearch *fhirsearch.Searchers
	// idps keeps the connectors of tenants' upstream identity providers.
	idps connectors
	// mfa checks and enrolls TOTP second factors.
	mfa *mfa.Service
	// chainChecks remembers how far the audit viewer found each trail intact.
	chainChecks chainChecks
	// gateway checks and forwards FHIR requests at {issuer}/fhir (gateway.go).
	gateway *gateway.Gateway
	// grants remembers access tokens the gateway validated, for its revocation delay.
	grants *gateway.Grants
	// upstreams holds the credentials of tenants' gateway upstreams.
	upstreams *upstream.Authenticators
	// capabilities keeps upstreams' CapabilityStatements.
	capabilities *ttlCache[[2]string, map[string]any]
	// draining is set once shutdown begins; /readyz then says not ready.
	draining atomic.Bool
	// metrics counts what the server does; nil counts nothing.
	metrics *metrics.Metrics
	// limits enforces the rate limits of the OAuth endpoints (ratelimit.go).
	limits *ratelimit.Limiter
}

// signInMaxWait is how long a sign-in waits for a password check before
// the person is told to try again.
const signInMaxWait = 5 * time.Second

// New checks cfg, parses the templates and builds the handler.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.BaseURL == nil || !cfg.BaseURL.IsAbs() || cfg.BaseURL.Host == "":
		return nil, errors.New("server: base URL must be absolute")
	case cfg.Store == nil:
		return nil, errors.New("server: no store")
	case cfg.Keys == nil:
		return nil, errors.New("server: no key manager")
	case cfg.Logger == nil:
		return nil, errors.New("server: no logger")
	case len(cfg.MasterKey) != keys.MasterKeySize:
		return nil, errors.New("server: no master key")
	}
	t, err := templates.Load()
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s := &Server{
		base:        strings.TrimRight(cfg.BaseURL.String(), "/"),
		secure:      cfg.BaseURL.Scheme == "https",
		store:       cfg.Store,
		keys:        cfg.Keys,
		log:         cfg.Logger,
		now:         cfg.Now,
		maxBody:     cfg.MaxBodyBytes,
		templates:   t,
		masterKey:   cfg.MasterKey,
		dummyHash:   sync.OnceValues(newDummyHash),
		passwords:   password.NewLimiter(runtime.GOMAXPROCS(0), signInMaxWait),
		chainChecks: chainChecks{heads: map[string]checkedHead{}},
		metrics:     cfg.Metrics,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	s.sessions, err = sessions.NewManager(sessions.Config{Store: cfg.Store, MasterKey: cfg.MasterKey, BaseURL: cfg.BaseURL,
		IdleTimeout: cfg.SessionIdleTimeout, AbsoluteTimeout: cfg.SessionAbsoluteTimeout, Now: s.now})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if s.mfa, err = mfa.New(cfg.Store, cfg.MasterKey, s.now); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.patientSearch = fhirsearch.NewSearchers(cfg.Keys.Sealer(), fhirsearch.Options{AllowPrivateNetworks: cfg.AllowPrivateFHIR})
	s.tenants = newTenantCache(cfg.Store, orDefault(cfg.TenantCacheTTL, TenantCacheTTL), s.now)
	s.audits = audit.NewWriter(cfg.Store, cfg.Logger, audit.Options{ObserveWrite: s.observeAuditWrite()})
	s.clients = newClientCache(cfg.Store, orDefault(cfg.ClientCacheTTL, ClientCacheTTL), s.now)
	s.manage = manage.New(adminStore{clientCache: s.clients, tenants: s.tenants}, cfg.Keys, s.now)
	s.clientAuth = clientauth.New(s.clients, clientauth.Options{HTTPClient: cfg.HTTPClient, Now: s.now, AllowPrivateNetworks: cfg.AllowPrivateJWKS})
	s.oauth = oauth.NewProviders(oauth.Options{
		Store:      s.clients,
		Keys:       cfg.Keys,
		MasterKey:  cfg.MasterKey,
		Issuer:     s.Issuer,
		ClientAuth: s.clientAuthStrategy,
		Now:        s.now,
	})
	// Sign-in and the admin's discovery test reach identity providers alike.
	s.idps = newConnectors(cfg.AllowPrivateIdP)
	s.manage = s.manage.WithHTTPClient(s.idps.client)
	s.gateway = gateway.New(s.maxBody)
	s.grants = gateway.NewGrants(cfg.GatewayRevocationDelay, s.now)
	s.upstreams = upstream.NewAuthenticators(cfg.Keys.Sealer(), upstream.Options{AllowPrivate: cfg.AllowPrivateFHIR})
	s.capabilities = s.newCapabilitiesCache()
	s.registerMetrics()
	s.limits = newRateLimiter(cfg.Store)
	s.handler = s.middleware(s.routes())
	return s, nil
}

// observeAuditWrite is the audit writer's hook into the metrics, or nil
// without them.
func (s *Server) observeAuditWrite() func(time.Duration, int, error) {
	if s.metrics == nil {
		return nil
	}
	return func(d time.Duration, _ int, err error) { s.metrics.AuditWritten(d, err != nil) }
}

// registerMetrics hands the metrics what they read at each scrape, and
// gives the caches their counters.
func (s *Server) registerMetrics() {
	if s.metrics == nil {
		return
	}
	s.metrics.AuditQueue(s.audits.Pending)
	if p, ok := s.store.(storage.PoolReporter); ok {
		s.metrics.DBPools(p.PoolStats)
	}
	s.tenants.stats = s.metrics.Cache("tenants")
	s.clients.clients.stats = s.metrics.Cache("clients")
	s.capabilities.stats = s.metrics.Cache("capabilities")
}

// Close waits until the audit events already handed over are stored; call it
// once the HTTP server has stopped and its handlers have returned.
func (s *Server) Close() {
	s.audits.Close()
}

// ServeHTTP serves one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

// Issuer is a tenant's issuer URL: the base URL followed by /t/{tenant}.
// The operator realm, which issues only the tokens of operators' API
// clients, is {base URL}/admin, so its token endpoint is /admin/token.
func (s *Server) Issuer(tenantID string) string {
	if tenantID == storage.OperatorRealm {
		return s.base + "/admin"
	}
	return s.base + "/t/" + tenantID
}

// tenant loads the tenant named in the request path.
func (s *Server) tenant(r *http.Request) (storage.Tenant, error) {
	id := r.PathValue("tenant")
	if !validTenantID(id) {
		return storage.Tenant{}, errNotFound("unknown tenant")
	}
	t, err := s.tenants.get(r.Context(), id)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Tenant{}, errNotFound("unknown tenant")
	}
	if err != nil {
		return storage.Tenant{}, fmt.Errorf("load tenant %q: %w", id, err)
	}
	return t, nil
}

// tenantProvider loads the tenant of the request and its OAuth provider.
func (s *Server) tenantProvider(r *http.Request) (storage.Tenant, *oauth.Provider, error) {
	t, err := s.tenant(r)
	if err != nil {
		return storage.Tenant{}, nil, err
	}
	p, err := s.oauth.For(t)
	if err != nil {
		return storage.Tenant{}, nil, fmt.Errorf("oauth provider of tenant %q: %w", t.ID, err)
	}
	return t, p, nil
}

// validTenantID rejects ids that cannot exist before asking the database.
func validTenantID(id string) bool {
	if id == "" || len(id) > 63 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// WatchChanges keeps the caches of clients, tenants and signing keys in
// step with the changes other replicas and the CLI make, until ctx ends.
// It returns at once if the store offers no storage.ChangeFeed (SQLite,
// whose only writer besides this process is a CLI command, seen within the
// cache TTLs).
func (s *Server) WatchChanges(ctx context.Context) {
	feed, ok := s.store.(storage.ChangeFeed)
	if !ok {
		return
	}
	feed.WatchChanges(ctx, s.forgetChanged)
}

// orDefault is d, or def when d is not positive.
func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Sweep deletes expired records every interval until ctx ends.
func (s *Server) Sweep(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := s.store.SweepExpired(ctx, s.now())
			if err != nil && ctx.Err() == nil {
				s.log.Error("sweep expired records", "err", err)
			} else if n > 0 {
				s.log.Info("swept expired records", "rows", n)
			}
		}
	}
}
