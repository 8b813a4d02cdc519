// Package sessions keeps browser sessions in the database, behind the
// gorilla/sessions Store interface, one store per tenant.
//
// The cookie carries only a random 256-bit secret. The database row is keyed
// by the SHA-256 digest of that secret, so someone who can read the database
// cannot present a live session; the digest, base64url-encoded, is the
// session's ID: a stable handle other records may keep (an online_access
// refresh token's session, say) that is useless as a cookie.
//
// Values are stored as JSON and sealed with AES-256-GCM under a key derived
// from the master key, bound to the tenant and the session ID, so a row moved
// to another tenant or session no longer opens. Only string keys and string
// values are stored: gob would need every type registered process-wide
// before the first read, and general JSON would bring numbers back as
// float64; strings round-trip exactly and make the caller choose a format.
//
// A session ends when it has gone unused for the idle timeout or has lived
// for the absolute timeout, whichever comes first. Each load counts as a use
// and moves the stored expiry, so SweepExpired removes exactly the sessions
// that can no longer be loaded. gorilla/sessions keeps the session id at
// sign-in; call Regenerate there, so an id planted before sign-in is worth
// nothing after it.
package sessions

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	gsessions "github.com/gorilla/sessions"

	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/storage"
)

// Session is gorilla's session, so callers need not import gorilla themselves.
type Session = gsessions.Session

// CookieName is the name to pass to Get for smartauth's one browser session.
const CookieName = "smartauth_session"

// Default time-outs, used when Config leaves them zero.
const (
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultAbsoluteTimeout = 12 * time.Hour
)

// secretBytes is the size of the random cookie value: 256 bits.
const secretBytes = 32

// securePrefix makes browsers accept the cookie only from https and only
// with Secure set. __Host- would be stronger but requires Path=/, and each
// tenant's cookie has its own path.
const securePrefix = "__Secure-"

// ErrEnded means the session was deleted or expired while a request held it,
// for instance because the user was signed out everywhere.
var ErrEnded = errors.New("sessions: session ended")

// Config is what a Manager needs, passed in explicitly.
type Config struct {
	// Store keeps the session rows.
	Store storage.Storage
	// MasterKey derives the key that seals session values.
	MasterKey []byte
	// BaseURL is the public URL; https makes cookies Secure and __Secure- prefixed.
	BaseURL *url.URL
	// IdleTimeout ends a session unused for this long; zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// AbsoluteTimeout ends a session this long after it began; zero means DefaultAbsoluteTimeout.
	AbsoluteTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Manager holds what every tenant's store shares; make one per server.
type Manager struct {
	store    storage.Storage
	sealer   *keys.Sealer
	basePath string
	secure   bool
	idle     time.Duration
	absolute time.Duration
	now      func() time.Time
}

// NewManager checks cfg and derives the sealing key.
func NewManager(cfg Config) (*Manager, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("sessions: no store")
	case cfg.BaseURL == nil || !cfg.BaseURL.IsAbs() || cfg.BaseURL.Host == "":
		return nil, errors.New("sessions: base URL must be absolute")
	case cfg.IdleTimeout < 0 || cfg.AbsoluteTimeout < 0:
		return nil, errors.New("sessions: time-outs must not be negative")
	case len(cfg.MasterKey) != keys.MasterKeySize:
		// DeriveKey would accept any length; a short key must not start the server.
		return nil, fmt.Errorf("sessions: master key must be %d bytes, got %d", keys.MasterKeySize, len(cfg.MasterKey))
	}
	key, err := keys.DeriveKey(cfg.MasterKey, "sessions")
	if err != nil {
		return nil, fmt.Errorf("sessions: %w", err)
	}
	sealer, err := keys.NewSealer(key)
	if err != nil {
		return nil, fmt.Errorf("sessions: %w", err)
	}
	m := &Manager{
		store:    cfg.Store,
		sealer:   sealer,
		basePath: strings.TrimRight(cfg.BaseURL.Path, "/"),
		secure:   cfg.BaseURL.Scheme == "https",
		idle:     cfg.IdleTimeout,
		absolute: cfg.AbsoluteTimeout,
		now:      cfg.Now,
	}
	if m.idle == 0 {
		m.idle = DefaultIdleTimeout
	}
	if m.absolute == 0 {
		m.absolute = DefaultAbsoluteTimeout
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m, nil
}

// Tenant returns the session store of one tenant; it is cheap, so make one
// per request from the tenant id in the URL.
func (m *Manager) Tenant(tenantID string) *Store {
	return &Store{m: m, tenantID: tenantID, path: m.basePath + "/t/" + tenantID + "/"}
}

// Admin returns the store of admin sessions kept in one tenant (or the
// operator realm), whose cookie is scoped to path under the base path. Its
// rows are sealed for the admin area alone, so a sign-in session's cookie
// of the same tenant never opens as an admin session, nor the reverse.
func (m *Manager) Admin(tenantID, path string) *Store {
	return &Store{m: m, tenantID: tenantID, path: m.basePath + path, purpose: "admin"}
}

// Store is one tenant's session store; it implements gorilla's sessions.Store.
//
// Session.ID is the non-secret handle ("" until a new session is first
// saved). Of Session.Options only MaxAge < 0 is honoured, as with gorilla's
// own stores: Save then destroys the session. The cookie is always HttpOnly,
// SameSite=Lax, scoped to the tenant's path, and lasts until the browser
// closes; the server enforces the time-outs.
type Store struct {
	m        *Manager
	tenantID string
	path     string
	// purpose, when set, is sealed into every row's associated data, so
	// rows of one purpose do not open in a store of another.
	purpose string
}

var _ gsessions.Store = (*Store)(nil)

// Keys of the entries Values carries for this package; unexported types, so
// no caller's key can collide with them.
type (
	userIDKey  struct{}
	createdKey struct{}
)

// payload is what is sealed into a row.
type payload struct {
	UserID string `json:"user,omitempty"`
	// Created is the session's start in Unix microseconds; sealed, so the
	// absolute time-out cannot be stretched by editing the row.
	Created int64             `json:"created"`
	Values  map[string]string `json:"values,omitempty"`
}

// Get returns the request's session of that name, loading it once per
// request; see New.
func (s *Store) Get(r *http.Request, name string) (*Session, error) {
	return gsessions.GetRegistry(r).Get(s, name)
}

// New loads the session named by the request's cookie, or returns a new
// empty one when there is no cookie or it is malformed, unknown, expired or
// another tenant's. Loading counts as a use and moves the idle expiry. A
// database error is returned together with a new empty session.
func (s *Store) New(r *http.Request, name string) (*Session, error) {
	sess := gsessions.NewSession(s, name)
	sess.IsNew = true
	sess.Options = s.options()
	c, err := r.Cookie(s.cookieName(name))
	if err != nil {
		return sess, nil
	}
	secret, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(secret) != secretBytes {
		return sess, nil
	}
	id := handle(secret)
	p, created, err := s.use(r.Context(), id)
	if errors.Is(err, ErrEnded) {
		return sess, nil
	}
	if err != nil {
		return sess, err
	}
	for k, v := range p.Values {
		sess.Values[k] = v
	}
	if p.UserID != "" {
		sess.Values[userIDKey{}] = p.UserID
	}
	sess.Values[createdKey{}] = created
	sess.ID = id
	sess.IsNew = false
	return sess, nil
}

// use loads a live session by its ID and records the use, moving its idle
// expiry; ErrEnded when it is gone, expired, or its row cannot be trusted.
func (s *Store) use(ctx context.Context, id string) (payload, time.Time, error) {
	now := s.now()
	row, err := s.m.store.GetSession(ctx, s.tenantID, id, now)
	if errors.Is(err, storage.ErrNotFound) {
		return payload{}, time.Time{}, ErrEnded
	}
	if err != nil {
		return payload{}, time.Time{}, fmt.Errorf("sessions: load: %w", err)
	}
	p, ok := s.open(row)
	if !ok {
		return payload{}, time.Time{}, ErrEnded
	}
	created := time.UnixMicro(p.Created).UTC()
	// The stored expiry already holds both limits; checking again here also
	// applies time-outs shortened since the row was written.
	if !now.Before(s.expiry(row.UpdatedAt, created)) {
		return payload{}, time.Time{}, ErrEnded
	}
	err = s.m.store.TouchSession(ctx, s.tenantID, id, now, s.expiry(now, created))
	if errors.Is(err, storage.ErrNotFound) {
		return payload{}, time.Time{}, ErrEnded
	}
	if err != nil {
		return payload{}, time.Time{}, fmt.Errorf("sessions: touch: %w", err)
	}
	return p, created, nil
}

// Save stores the session, creating its row and cookie the first time.
// Values must map strings to strings. A session whose Options.MaxAge is
// negative is destroyed instead. A session deleted or expired since it was
// loaded is not brought back: Save returns ErrEnded.
func (s *Store) Save(r *http.Request, w http.ResponseWriter, sess *Session) error {
	if sess.Options != nil && sess.Options.MaxAge < 0 {
		return s.Destroy(r, w, sess)
	}
	now := s.now()
	if sess.ID == "" {
		return s.create(r, w, sess, now)
	}
	created, ok := sess.Values[createdKey{}].(time.Time)
	if !ok {
		// Without it the absolute time-out cannot be kept; this happens when
		// a caller replaced or cleared Values.
		return errors.New("sessions: save: the session's creation time is gone from Values; delete keys one by one, or call Regenerate")
	}
	expires := s.expiry(now, created)
	if !now.Before(expires) {
		return ErrEnded
	}
	row, err := s.seal(sess, sess.ID, created)
	if err != nil {
		return err
	}
	row.UpdatedAt, row.ExpiresAt = now, expires
	err = s.m.store.UpdateSession(r.Context(), row)
	if errors.Is(err, storage.ErrNotFound) {
		return ErrEnded
	}
	if err != nil {
		return fmt.Errorf("sessions: save: %w", err)
	}
	return nil
}

// Regenerate gives the session a new id and cookie and deletes the old row;
// call it at sign-in, after SetUserID, against session fixation. Values are
// carried over; clear(sess.Values) first to drop them. The absolute
// time-out starts again.
func (s *Store) Regenerate(r *http.Request, w http.ResponseWriter, sess *Session) error {
	if sess.ID != "" {
		err := s.m.store.DeleteSession(r.Context(), s.tenantID, sess.ID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("sessions: regenerate: %w", err)
		}
	}
	sess.ID = ""
	if sess.Options == nil {
		sess.Options = s.options()
	}
	sess.Options.MaxAge = 0
	return s.create(r, w, sess, s.now())
}

// Destroy deletes the session's row, empties its values and expires the
// cookie. A later Save of the same Session destroys again rather than
// starting a new session.
func (s *Store) Destroy(r *http.Request, w http.ResponseWriter, sess *Session) error {
	if sess.ID != "" {
		err := s.m.store.DeleteSession(r.Context(), s.tenantID, sess.ID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("sessions: destroy: %w", err)
		}
	}
	clear(sess.Values)
	sess.ID = ""
	if sess.Options == nil {
		sess.Options = s.options()
	}
	sess.Options.MaxAge = -1
	c := s.cookie(sess.Name(), "")
	c.MaxAge = -1
	http.SetCookie(w, c)
	return nil
}

// SetUserID records who signed in; it is stored in the row's user column too,
// so storage.DeleteUserSessions ends the session.
func SetUserID(sess *Session, userID string) {
	if userID == "" {
		delete(sess.Values, userIDKey{})
		return
	}
	sess.Values[userIDKey{}] = userID
}

// UserID returns the signed-in user's id, or "" when nobody has signed in.
func UserID(sess *Session) string {
	id, _ := sess.Values[userIDKey{}].(string)
	return id
}

// create stores sess under a fresh secret and sets its cookie.
func (s *Store) create(r *http.Request, w http.ResponseWriter, sess *Session, now time.Time) error {
	secret := make([]byte, secretBytes)
	if _, err := rand.Read(secret); err != nil {
		return fmt.Errorf("sessions: new id: %w", err)
	}
	id := handle(secret)
	row, err := s.seal(sess, id, now)
	if err != nil {
		return err
	}
	row.CreatedAt, row.UpdatedAt, row.ExpiresAt = now, now, s.expiry(now, now)
	if err := s.m.store.CreateSession(r.Context(), row); err != nil {
		return fmt.Errorf("sessions: create: %w", err)
	}
	sess.ID = id
	sess.Values[createdKey{}] = now
	http.SetCookie(w, s.cookie(sess.Name(), base64.RawURLEncoding.EncodeToString(secret)))
	return nil
}

// seal turns sess into a row for id, its values sealed; times are left to the caller.
func (s *Store) seal(sess *Session, id string, created time.Time) (storage.Session, error) {
	p := payload{Created: created.UnixMicro(), Values: map[string]string{}}
	for k, v := range sess.Values {
		switch k.(type) {
		case userIDKey:
			p.UserID, _ = v.(string)
			continue
		case createdKey:
			continue
		}
		key, ok := k.(string)
		if !ok {
			return storage.Session{}, fmt.Errorf("sessions: save: key %v is a %T; only string keys are stored", k, k)
		}
		val, ok := v.(string)
		if !ok {
			return storage.Session{}, fmt.Errorf("sessions: save: value of %q is a %T; only strings are stored", key, v)
		}
		p.Values[key] = val
	}
	plain, err := json.Marshal(p)
	if err != nil {
		return storage.Session{}, fmt.Errorf("sessions: save: encode: %w", err)
	}
	sealed, err := s.m.sealer.Seal(plain, s.aad(id))
	if err != nil {
		return storage.Session{}, fmt.Errorf("sessions: save: %w", err)
	}
	return storage.Session{TenantID: s.tenantID, ID: id, UserID: p.UserID, Data: sealed}, nil
}

// open unseals a row; false means it cannot be trusted, and the caller
// starts afresh rather than showing an error.
func (s *Store) open(row storage.Session) (payload, bool) {
	plain, err := s.m.sealer.Open(row.Data, s.aad(row.ID))
	if err != nil {
		return payload{}, false
	}
	var p payload
	if err := json.Unmarshal(plain, &p); err != nil {
		return payload{}, false
	}
	// The user column is what DeleteUserSessions matches; a row whose column
	// disagrees with its sealed user was edited.
	if p.UserID != row.UserID {
		return payload{}, false
	}
	return p, true
}

// aad binds a sealed row to its tenant, session and purpose.
func (s *Store) aad(id string) []byte {
	if s.purpose != "" {
		return []byte("smartauth " + s.purpose + " session\x00" + s.tenantID + "\x00" + id)
	}
	return []byte("smartauth session\x00" + s.tenantID + "\x00" + id)
}

// expiry is when a session last used at used and begun at created ends.
func (s *Store) expiry(used, created time.Time) time.Time {
	idle, absolute := used.Add(s.m.idle), created.Add(s.m.absolute)
	if idle.Before(absolute) {
		return idle
	}
	return absolute
}

// now is the clock in UTC, to the microsecond, as storage keeps it.
func (s *Store) now() time.Time {
	return s.m.now().UTC().Truncate(time.Microsecond)
}

func (s *Store) cookieName(name string) string {
	if s.m.secure {
		return securePrefix + name
	}
	return name
}

// cookie is the session cookie with every attribute but its lifetime: it
// lasts until the browser closes, which on a shared clinical workstation is
// the safer default, and the server ends it sooner by its time-outs.
func (s *Store) cookie(name, value string) *http.Cookie {
	return &http.Cookie{
		Name:     s.cookieName(name),
		Value:    value,
		Path:     s.path,
		HttpOnly: true,
		Secure:   s.m.secure,
		// Lax, not Strict: sign-in returns from upstream identity providers
		// as top-level GET navigations, which must carry the cookie.
		SameSite: http.SameSiteLaxMode,
	}
}

// options describes the cookie to callers that read Session.Options.
func (s *Store) options() *gsessions.Options {
	return &gsessions.Options{Path: s.path, HttpOnly: true, Secure: s.m.secure, SameSite: http.SameSiteLaxMode}
}

// handle is the session's non-secret id: base64url(SHA-256(secret)).
func handle(secret []byte) string {
	d := sha256.Sum256(secret)
	return base64.RawURLEncoding.EncodeToString(d[:])
}
