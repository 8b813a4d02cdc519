package oauth

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/smartauth/smartauth/storage"
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
