package server_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// BenchmarkGatewayRead is a FHIR read through the gateway with a backend
// service's token, against an upstream that answers at once: what it
// measures is the gateway's own work per request (the token check, from
// cache after the first; the decision; the audit event; forwarding).
// `smartauth bench` measures the same over real connections.
func BenchmarkGatewayRead(b *testing.B) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		io.WriteString(w, `{"resourceType":"Observation","id":"o1","status":"final","subject":{"reference":"Patient/p1"}}`)
	}))
	b.Cleanup(upstream.Close)
	srv := servertest.Start(b, servertest.OpenSQLite(b))
	ctx := context.Background()
	base := srv.Issuer("bench") + "/fhir"
	if _, err := srv.Manage.CreateTenant(ctx, manage.TenantInput{ID: "bench", Name: "Bench", FHIRBaseURLs: []string{base}}, testActor); err != nil {
		b.Fatal(err)
	}
	if _, err := srv.Manage.SetGateway(ctx, "bench", manage.GatewayInput{UpstreamURL: upstream.URL + "/fhir"}, testActor); err != nil {
		b.Fatal(err)
	}
	c, secret, err := srv.Manage.CreateClient(ctx, manage.ClientInput{TenantID: "bench", Name: "backend", Type: storage.ClientConfidentialSymmetric,
		Scopes: []string{"system/*.rs"}, GrantTypes: []string{manage.GrantClientCredentials}}, testActor)
	if err != nil {
		b.Fatal(err)
	}
	status, body := postForm(b, srv.Issuer("bench")+"/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}, c.ID, secret)
	token, _ := body["access_token"].(string)
	if status != http.StatusOK || token == "" {
		b.Fatalf("client_credentials: %d %v", status, body)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r, _ := http.NewRequest(http.MethodGet, base+"/Observation/o1", nil)
			r.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(r)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
