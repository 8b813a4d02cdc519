package server_test

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// benchServer runs the server over PostgreSQL when TEST_DATABASE_URL is set
// (the production store), otherwise over SQLite.
func benchServer(b *testing.B) (*servertest.Server, string, string) {
	b.Helper()
	open := servertest.OpenSQLite
	if os.Getenv("TEST_DATABASE_URL") != "" {
		open = servertest.OpenPostgres
	}
	srv := servertest.Start(b, open(b))
	srv.Tenant(b, "bench")
	id, secret := backendClient(b, srv, "bench", storage.ClientConfidentialSymmetric, nil)
	return srv, id, secret
}

func benchPost(b *testing.B, client *http.Client, endpoint, body, id, secret string) {
	req, _ := http.NewRequest("POST", endpoint, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	// Drain the body so the connection is reused, as a real client's would be.
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

func BenchmarkClientCredentials(b *testing.B) {
	srv, id, secret := benchServer(b)
	endpoint := tokenEndpoint(srv, "bench")
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}.Encode()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			benchPost(b, client, endpoint, form, id, secret)
		}
	})
}

func BenchmarkIntrospection(b *testing.B) {
	srv, id, secret := benchServer(b)
	_, tok := postForm(b, tokenEndpoint(srv, "bench"), url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}, id, secret)
	body := url.Values{"token": {tok["access_token"].(string)}}.Encode()
	endpoint := srv.Issuer("bench") + "/introspect"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			benchPost(b, client, endpoint, body, id, secret)
		}
	})
}
