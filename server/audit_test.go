package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// TestConcurrentTokensAreAuditedBeforeTheAnswer issues tokens to several
// clients at once: each answer must come only once its audit event is
// stored, and the tenant's trail must stay gap-free and verifiable although
// the events are written in shared transactions.
func TestConcurrentTokensAreAuditedBeforeTheAnswer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *servertest.Server) {
		srv.Tenant(t, "clinic")
		const clients, perClient = 8, 5
		type credentials struct{ id, secret string }
		creds := make([]credentials, clients)
		for i := range creds {
			creds[i].id, creds[i].secret = backendClient(t, srv, "clinic", storage.ClientConfidentialSymmetric, nil)
		}
		form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}.Encode()
		errs := make([]error, clients)
		var wg sync.WaitGroup
		for i, c := range creds {
			wg.Go(func() {
				for j := range perClient {
					req, _ := http.NewRequest("POST", tokenEndpoint(srv, "clinic"), strings.NewReader(form))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.SetBasicAuth(c.id, c.secret)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						errs[i] = err
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						errs[i] = fmt.Errorf("token request %d: status %d", j, resp.StatusCode)
						return
					}
					events, err := srv.Store.ListAudit(context.Background(), "clinic", storage.AuditFilter{Type: "token.issue", ClientID: c.id})
					if err != nil {
						errs[i] = err
						return
					}
					if len(events) != j+1 {
						errs[i] = fmt.Errorf("after token %d: %d token.issue events stored, want %d", j+1, len(events), j+1)
						return
					}
				}
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
		}
		trail, err := srv.Store.ListAudit(context.Background(), "clinic", storage.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if err := storage.VerifyChain(trail); err != nil {
			t.Fatalf("audit chain: %v", err)
		}
		issued, err := srv.Store.ListAudit(context.Background(), "clinic", storage.AuditFilter{Type: "token.issue"})
		if err != nil || len(issued) != clients*perClient {
			t.Fatalf("token.issue events: got %d (%v), want %d", len(issued), err, clients*perClient)
		}
	})
}
