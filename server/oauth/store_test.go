package oauth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/smartauth/smartauth/storage"
	"github.com/smartauth/smartauth/storage/postgres"
	"github.com/smartauth/smartauth/storage/postgres/pgtest"
	"github.com/smartauth/smartauth/storage/sqlite"
)

func testStore() *Store {
	return &Store{tenant: "clinic", now: time.Now, clients: func(_ context.Context, id string) (*Client, error) {
		return &Client{Client: storage.Client{TenantID: "clinic", ID: id}}, nil
	}}
}

func testRequest() (*fosite.AccessRequest, *Session) {
	s := NewSession("clinic")
	s.Subject, s.ClientID = "user-1", "app"
	s.SetExpiresAt(fosite.AccessToken, time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	s.AccessDigest = []byte{1, 2, 3}
	s.SMART.Patient, s.SMART.FHIRUser = "Patient/7", "Practitioner/9"
	s.IDToken.Subject, s.IDToken.Nonce = "user-1", "n-1"
	r := fosite.NewAccessRequest(s)
	r.ID = "req-1"
	r.RequestedAt = time.Date(2030, 1, 2, 2, 4, 5, 0, time.UTC)
	r.Client = &Client{Client: storage.Client{ID: "app"}}
	r.RequestedScope = fosite.Arguments{"openid", "patient/*.rs"}
	r.GrantedScope = fosite.Arguments{"openid", "patient/*.rs"}
	r.GrantedAudience = fosite.Arguments{"https://fhir.example/r4"}
	r.Form.Set("redirect_uri", "https://app.example/cb")
	return r, s
}

// An access token record keeps what introspection, userinfo and revocation
// read, and leaves out the form and the ID token claims.
func TestAccessTokenRecord(t *testing.T) {
	r, s := testRequest()
	data, err := encodeRequest(storage.KindAccessToken, r, s)
	if err != nil {
		t.Fatal(err)
	}
	if s.IDToken == nil || s.IDToken.Subject != "user-1" {
		t.Fatal("encoding changed the caller's session")
	}
	got, err := testStore().decodeRequest(context.Background(), data, NewSession("clinic"))
	if err != nil {
		t.Fatal(err)
	}
	sess := got.GetSession().(*Session)
	if got.ID != "req-1" || !got.RequestedAt.Equal(r.RequestedAt) || got.GetClient().GetID() != "app" ||
		!slices.Equal(got.GrantedScope, r.GrantedScope) || !slices.Equal(got.GrantedAudience, r.GrantedAudience) {
		t.Errorf("request = %+v", got)
	}
	if sess.Subject != "user-1" || !sess.GetExpiresAt(fosite.AccessToken).Equal(s.GetExpiresAt(fosite.AccessToken)) ||
		!slices.Equal(sess.AccessDigest, s.AccessDigest) || sess.SMART.Patient != "Patient/7" || sess.SMART.FHIRUser != "Practitioner/9" || sess.SMART.Tenant != "clinic" {
		t.Errorf("session = %+v", sess)
	}
	if got.Form == nil || len(got.Form) != 0 {
		t.Errorf("form = %v, want empty", got.Form)
	}
	if sess.IDTokenClaims().Subject != "" {
		t.Errorf("access token record carries ID token claims %+v", sess.IDToken)
	}
}

// Codes and refresh tokens issue ID tokens and check the redirect_uri, so
// their records keep both.
func TestRefreshTokenRecord(t *testing.T) {
	r, s := testRequest()
	data, err := encodeRequest(storage.KindRefreshToken, r, s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := testStore().decodeRequest(context.Background(), data, NewSession("clinic"))
	if err != nil {
		t.Fatal(err)
	}
	sess := got.GetSession().(*Session)
	if got.Form.Get("redirect_uri") != "https://app.example/cb" || sess.IDTokenClaims().Subject != "user-1" || sess.IDToken.Nonce != "n-1" {
		t.Errorf("form %v, ID token claims %+v", got.Form, sess.IDToken)
	}
}

// Records written before empty fields were left out still read.
func TestEarlierRecordFormat(t *testing.T) {
	data := []byte(`{"id":"req-1","requested_at":"2030-01-02T02:04:05Z","client_id":"app","requested_scope":["system/*.rs"],` +
		`"granted_scope":["system/*.rs"],"requested_audience":[],"granted_audience":[],"form":{"grant_type":["client_credentials"]},` +
		`"session":{"sub":"app","client_id":"app","exp":{"access_token":"2030-01-02T03:04:05Z"},"auth_time":"0001-01-01T00:00:00Z",` +
		`"at_digest":"AQID","backend":true,"id_token":{"jti":"","iss":"","sub":"","aud":null,"nonce":"","exp":"0001-01-01T00:00:00Z",` +
		`"iat":"0001-01-01T00:00:00Z","rat":"0001-01-01T00:00:00Z","auth_time":"0001-01-01T00:00:00Z","at_hash":"","acr":"","amr":null,` +
		`"c_hash":"","ext":null},"id_headers":{"extra":{}},"smart":{"tenant":"clinic"}}}`)
	got, err := testStore().decodeRequest(context.Background(), data, NewSession("clinic"))
	if err != nil {
		t.Fatal(err)
	}
	sess := got.GetSession().(*Session)
	if got.ID != "req-1" || sess.Subject != "app" || !sess.Backend || !slices.Equal(sess.AccessDigest, []byte{1, 2, 3}) ||
		sess.SMART.Tenant != "clinic" || got.Form.Get("grant_type") != "client_credentials" ||
		!sess.GetExpiresAt(fosite.AccessToken).Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("request %+v, session %+v", got, sess)
	}
}

func TestRecordWithoutSession(t *testing.T) {
	_, err := testStore().decodeRequest(context.Background(), []byte(`{"id":"req-1","client_id":"app","session":null}`), NewSession("clinic"))
	if err == nil {
		t.Error("a record without a session decoded")
	}
}

// storesForTest returns the adapter over a migrated SQLite store, and over
// PostgreSQL too when TEST_DATABASE_URL is set, each with tenant "clinic"
// and its client "app".
func storesForTest(t *testing.T) map[string]*Store {
	t.Helper()
	ctx := context.Background()
	out := map[string]*Store{}
	open := map[string]func() (storage.Storage, func() (int64, error)){
		"sqlite": func() (storage.Storage, func() (int64, error)) {
			s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "smartauth.db"))
			if err != nil {
				t.Fatal(err)
			}
			return s, func() (int64, error) { return s.Migrate(ctx) }
		},
	}
	if os.Getenv("TEST_DATABASE_URL") != "" {
		open["postgres"] = func() (storage.Storage, func() (int64, error)) {
			s, err := postgres.Open(ctx, pgtest.URL(t))
			if err != nil {
				t.Fatal(err)
			}
			return s, func() (int64, error) { return s.Migrate(ctx) }
		}
	}
	for name, o := range open {
		st, migrate := o()
		t.Cleanup(func() { st.Close() })
		if _, err := migrate(); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateTenant(ctx, storage.Tenant{ID: "clinic", Name: "Clinic"}, nil); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateClient(ctx, storage.Client{TenantID: "clinic", ID: "app", Type: storage.ClientPublic}); err != nil {
			t.Fatal(err)
		}
		out[name] = &Store{tenant: "clinic", store: st, now: time.Now, clients: func(ctx context.Context, id string) (*Client, error) {
			c, err := st.GetClient(ctx, "clinic", id)
			if err != nil {
				return nil, mapErr(err)
			}
			return &Client{Client: c}, nil
		}}
	}
	return out
}

// grant names the records of one grant family in TestReuseRevokesGrant.
type grant struct{ requestID, code, refresh string }

// Every way the token endpoint finds out that a code or refresh token was
// used before revokes the whole grant, durably: tokens the winning request
// stores afterwards are born inactive. So do fosite's revocation calls. An
// inactive refresh token read elsewhere (introspection, say) is no reuse.
func TestReuseRevokesGrant(t *testing.T) {
	for backend, st := range storesForTest(t) {
		for i, tc := range []struct {
			name string
			// watched serves the request as the token endpoint does.
			watched bool
			// detect runs after the winner consumed the code and the refresh
			// token, and returns the error the loser gets.
			detect    func(ctx context.Context, s *Store, g grant) error
			wantErr   error
			wantReuse storage.TokenKind
		}{
			{"code read after use", true, func(ctx context.Context, s *Store, g grant) error {
				_, err := s.GetAuthorizeCodeSession(ctx, g.code, NewSession("clinic"))
				return err
			}, fosite.ErrInvalidatedAuthorizeCode, storage.KindAuthorizeCode},
			{"code consume lost", true, func(ctx context.Context, s *Store, g grant) error {
				return s.InvalidateAuthorizeCodeSession(ctx, g.code)
			}, fosite.ErrInvalidatedAuthorizeCode, storage.KindAuthorizeCode},
			{"refresh token read after rotation", true, func(ctx context.Context, s *Store, g grant) error {
				_, err := s.GetRefreshTokenSession(ctx, g.refresh, NewSession("clinic"))
				return err
			}, fosite.ErrInactiveToken, storage.KindRefreshToken},
			{"refresh rotation lost", true, func(ctx context.Context, s *Store, g grant) error {
				return s.RotateRefreshToken(ctx, g.requestID, g.refresh)
			}, fosite.ErrSerializationFailure, storage.KindRefreshToken},
			{"refresh token revoked", false, func(ctx context.Context, s *Store, g grant) error {
				return s.RevokeRefreshToken(ctx, g.requestID)
			}, nil, ""},
			{"access token revoked", false, func(ctx context.Context, s *Store, g grant) error {
				return s.RevokeAccessToken(ctx, g.requestID)
			}, nil, ""},
		} {
			t.Run(backend+"/"+tc.name, func(t *testing.T) {
				ctx, reuse := context.Background(), &Reuse{}
				if tc.watched {
					ctx, reuse = WatchReuse(ctx)
				}
				r, _ := testRequest()
				r.ID = fmt.Sprintf("req-%d", i)
				sig := func(s string) string { return r.ID + "-" + s }
				g := grant{requestID: r.ID, code: sig("code"), refresh: sig("refresh")}
				if err := st.CreateAuthorizeCodeSession(ctx, g.code, r); err != nil {
					t.Fatal(err)
				}
				if err := st.CreateRefreshTokenSession(ctx, g.refresh, "", r); err != nil {
					t.Fatal(err)
				}
				if _, err := st.store.ConsumeToken(ctx, "clinic", storage.KindAuthorizeCode, g.code); err != nil {
					t.Fatal(err)
				}
				if _, err := st.store.ConsumeToken(ctx, "clinic", storage.KindRefreshToken, g.refresh); err != nil {
					t.Fatal(err)
				}
				// The winner's first token is stored before reuse is detected,
				// its second after.
				if err := st.CreateAccessTokenSession(ctx, sig("before"), r); err != nil {
					t.Fatal(err)
				}
				err := tc.detect(ctx, st, g)
				if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Fatalf("got error %v, want %v", err, tc.wantErr)
				}
				if reuse.Kind != tc.wantReuse {
					t.Errorf("reported reuse of %q, want %q", reuse.Kind, tc.wantReuse)
				}
				if err := st.CreateAccessTokenSession(ctx, sig("after"), r); err != nil {
					t.Fatal(err)
				}
				for _, s := range []string{"before", "after"} {
					if _, err := st.GetAccessTokenSession(ctx, sig(s), NewSession("clinic")); !errors.Is(err, fosite.ErrInactiveToken) {
						t.Errorf("access token stored %s the grant was revoked: %v, want inactive", s, err)
					}
				}
			})
		}
		t.Run(backend+"/rotated refresh token read unwatched", func(t *testing.T) {
			ctx := context.Background()
			r, _ := testRequest()
			r.ID = "req-unwatched"
			if err := st.CreateRefreshTokenSession(ctx, "unwatched-refresh", "", r); err != nil {
				t.Fatal(err)
			}
			if _, err := st.store.ConsumeToken(ctx, "clinic", storage.KindRefreshToken, "unwatched-refresh"); err != nil {
				t.Fatal(err)
			}
			if _, err := st.GetRefreshTokenSession(ctx, "unwatched-refresh", NewSession("clinic")); !errors.Is(err, fosite.ErrInactiveToken) {
				t.Fatalf("got %v, want inactive", err)
			}
			if err := st.CreateAccessTokenSession(ctx, "unwatched-access", r); err != nil {
				t.Fatal(err)
			}
			if _, err := st.GetAccessTokenSession(ctx, "unwatched-access", NewSession("clinic")); err != nil {
				t.Errorf("reading a rotated refresh token outside the token endpoint revoked the grant: %v", err)
			}
		})
	}
}

// A redeemed code's PKCE record stays until it expires, so that a redemption
// racing the first one reaches the code's single-use check, where its reuse
// is caught, instead of failing for want of a PKCE record.
func TestPKCERecordOutlivesRedemption(t *testing.T) {
	for backend, st := range storesForTest(t) {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			r, _ := testRequest()
			r.Form.Set("code_challenge", "challenge")
			if err := st.CreatePKCERequestSession(ctx, "pkce-sig", r); err != nil {
				t.Fatal(err)
			}
			if err := st.DeletePKCERequestSession(ctx, "pkce-sig"); err != nil {
				t.Fatal(err)
			}
			got, err := st.GetPKCERequestSession(ctx, "pkce-sig", NewSession("clinic"))
			if err != nil || got.GetRequestForm().Get("code_challenge") != "challenge" {
				t.Fatalf("PKCE record after redemption: %v, %v", got, err)
			}
		})
	}
}
