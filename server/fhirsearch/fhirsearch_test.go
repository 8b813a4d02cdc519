package fhirsearch_test

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/smartauth/smartauth/server/fhirsearch"
	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/storage"
)

const (
	testClientID = "picker"
	testSecret   = "s3cret-that-must-never-show"
	testScope    = "system/Patient.rs"
)

var patients = []string{
	`{"resourceType":"Patient","id":"p1","name":[{"family":"Smith","given":["Ann"]}],"birthDate":"1970-01-31","gender":"female","identifier":[{"system":"urn:mrn","value":"MRN-1"}]}`,
	`{"resourceType":"Patient","id":"p2","name":[{"family":"Jones","given":["Bob"]}],"birthDate":"1980-02-03","gender":"male","identifier":[{"system":"urn:mrn","value":"MRN-2"}]}`,
	`{"resourceType":"Patient","id":"p3","name":[{"family":"Smithers","given":["Cy"]}],"birthDate":"1980-02-03","identifier":[{"system":"urn:mrn","value":"a|b"}]}`,
}

// fakeFHIR is a token endpoint that checks client credentials and a FHIR
// server that answers only with tokens that endpoint issued.
type fakeFHIR struct {
	t          *testing.T
	token, api *httptest.Server
	tokenHits  atomic.Int64
	apiHits    atomic.Int64

	mu      sync.Mutex
	issued  map[string]bool
	queries []url.Values
	// override, when set, answers every FHIR request after the token check.
	override http.HandlerFunc
	// reject401 makes the FHIR server refuse every token.
	reject401 bool
}

func newFakeFHIR(t *testing.T) *fakeFHIR {
	f := &fakeFHIR{t: t, issued: map[string]bool{}}
	f.token = httptest.NewServer(http.HandlerFunc(f.serveToken))
	f.api = httptest.NewServer(http.HandlerFunc(f.serveAPI))
	t.Cleanup(f.token.Close)
	t.Cleanup(f.api.Close)
	return f
}

func (f *fakeFHIR) source() storage.PatientSearchSource {
	return storage.PatientSearchSource{FHIRBaseURL: f.api.URL + "/r4", TokenURL: f.token.URL + "/token", ClientID: testClientID, Scope: testScope}
}

func (f *fakeFHIR) serveToken(w http.ResponseWriter, r *http.Request) {
	f.tokenHits.Add(1)
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost || r.PostForm.Get("grant_type") != "client_credentials" {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != testClientID || secret != testSecret {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		// A careless server echoing what it got must not put the secret in our errors.
		fmt.Fprintf(w, `{"error":"invalid_client","error_description":"bad secret %s"}`, secret)
		return
	}
	if r.PostForm.Get("scope") != testScope {
		http.Error(w, `{"error":"invalid_scope"}`, http.StatusBadRequest)
		return
	}
	tok := rand.Text()
	f.mu.Lock()
	f.issued[tok] = true
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600}`, tok)
}

func (f *fakeFHIR) serveAPI(w http.ResponseWriter, r *http.Request) {
	f.apiHits.Add(1)
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	valid := ok && f.issued[tok] && !f.reject401
	f.queries = append(f.queries, r.URL.Query())
	override := f.override
	f.mu.Unlock()
	if !valid {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if r.Header.Get("Accept") != "application/fhir+json" {
		http.Error(w, "want Accept: application/fhir+json", http.StatusNotAcceptable)
		return
	}
	if override != nil {
		override(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	if id, ok := strings.CutPrefix(r.URL.Path, "/r4/Patient/"); ok {
		for _, p := range patients {
			if strings.Contains(p, fmt.Sprintf(`"id":%q`, id)) {
				fmt.Fprint(w, p)
				return
			}
		}
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}`)
		return
	}
	if r.URL.Path != "/r4/Patient" {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	var entries []string
	for _, raw := range patients {
		var p struct {
			Name       []struct{ Family string }
			BirthDate  string
			Identifier []struct{ Value string }
		}
		json.Unmarshal([]byte(raw), &p)
		if n := q.Get("name"); n != "" && !strings.HasPrefix(strings.ToLower(p.Name[0].Family), strings.ToLower(n)) {
			continue
		}
		if d := q.Get("birthdate"); d != "" && d != p.BirthDate {
			continue
		}
		if id := q.Get("identifier"); id != "" && strings.ReplaceAll(id, `\|`, "|") != p.Identifier[0].Value {
			continue
		}
		entries = append(entries, `{"fullUrl":"x","resource":`+raw+`,"search":{"mode":"match"}}`)
	}
	fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","total":%d,"entry":[%s]}`, len(entries), strings.Join(entries, ","))
}

func (f *fakeFHIR) lastQuery() url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queries[len(f.queries)-1]
}

// searcher returns a Searcher on f that may reach loopback, as httptest listens there.
func (f *fakeFHIR) searcher(t *testing.T, secret string, opts fhirsearch.Options) *fhirsearch.Searcher {
	opts.AllowPrivateNetworks = true
	s, err := fhirsearch.New("t1", f.source(), secret, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// noSecrets fails when err leaks the client secret or an issued token.
func (f *fakeFHIR) noSecrets(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if strings.Contains(err.Error(), testSecret) {
		t.Errorf("error holds the client secret: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for tok := range f.issued {
		if strings.Contains(err.Error(), tok) {
			t.Errorf("error holds a token: %v", err)
		}
	}
}

func ids(ps []storage.Patient) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return strings.Join(out, ",")
}

func TestSearch(t *testing.T) {
	f := newFakeFHIR(t)
	s := f.searcher(t, testSecret, fhirsearch.Options{})
	tests := []struct {
		name      string
		q         storage.PatientQuery
		want      string
		wantQuery url.Values
	}{
		{"name", storage.PatientQuery{Name: " smi "}, "p1,p3", url.Values{"name": {"smi"}, "_count": {"50"}}},
		{"birth date", storage.PatientQuery{BirthDate: "1980-02-03"}, "p2,p3", url.Values{"birthdate": {"1980-02-03"}, "_count": {"50"}}},
		{"identifier", storage.PatientQuery{Identifier: "MRN-2"}, "p2", url.Values{"identifier": {"MRN-2"}, "_count": {"50"}}},
		{"identifier with a FHIR separator is escaped", storage.PatientQuery{Identifier: "a|b"}, "p3", url.Values{"identifier": {`a\|b`}, "_count": {"50"}}},
		{"name and birth date", storage.PatientQuery{Name: "Smith", BirthDate: "1980-02-03"}, "p3", url.Values{"name": {"Smith"}, "birthdate": {"1980-02-03"}, "_count": {"50"}}},
		{"limit", storage.PatientQuery{Limit: 1}, "p1", url.Values{"_count": {"1"}}},
		{"limit capped", storage.PatientQuery{Name: "x", Limit: 5000}, "", url.Values{"name": {"x"}, "_count": {"100"}}},
		{"no match", storage.PatientQuery{Name: "Nobody"}, "", url.Values{"name": {"Nobody"}, "_count": {"50"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Search(t.Context(), tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if ids(got) != tc.want {
				t.Errorf("got %q, want %q", ids(got), tc.want)
			}
			if q := f.lastQuery(); q.Encode() != tc.wantQuery.Encode() {
				t.Errorf("server got query %q, want %q", q.Encode(), tc.wantQuery.Encode())
			}
			for _, p := range got {
				if p.TenantID != "t1" || len(p.Resource) == 0 {
					t.Errorf("patient not parsed as the tenant's: %+v", p)
				}
			}
		})
	}
	if _, err := s.Search(t.Context(), storage.PatientQuery{BirthDate: "ge1980"}); err == nil || !strings.Contains(err.Error(), "not a FHIR date") {
		t.Errorf("a birth date with a search prefix: %v", err)
	}
}

func TestTokenFetchedOnceAndReused(t *testing.T) {
	f := newFakeFHIR(t)
	s := f.searcher(t, testSecret, fhirsearch.Options{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := s.Search(t.Context(), storage.PatientQuery{Name: "Jones"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if _, err := s.Get(t.Context(), "p1"); err != nil {
		t.Fatal(err)
	}
	if n := f.tokenHits.Load(); n != 1 {
		t.Fatalf("token endpoint asked %d times, want once", n)
	}
	if n := f.apiHits.Load(); n != 9 {
		t.Fatalf("FHIR server asked %d times, want 9", n)
	}
}

func TestWrongSecret(t *testing.T) {
	f := newFakeFHIR(t)
	s := f.searcher(t, "not-the-secret", fhirsearch.Options{})
	_, err := s.Search(t.Context(), storage.PatientQuery{Name: "Smith"})
	if err == nil || !strings.Contains(err.Error(), "get a token from "+f.token.URL) || !strings.Contains(err.Error(), "wrong client id or secret") {
		t.Fatalf("want a clear token error, got %v", err)
	}
	if strings.Contains(err.Error(), "not-the-secret") {
		t.Fatalf("error holds the secret: %v", err)
	}
	if f.apiHits.Load() != 0 {
		t.Fatal("the FHIR server was asked without a token")
	}
}

func TestFHIRServerRefusesToken(t *testing.T) {
	f := newFakeFHIR(t)
	f.reject401 = true
	s := f.searcher(t, testSecret, fhirsearch.Options{})
	_, err := s.Search(t.Context(), storage.PatientQuery{Name: "Smith"})
	if err == nil || !strings.Contains(err.Error(), "refused our token (status 401)") {
		t.Fatalf("want a refused-token error, got %v", err)
	}
	f.noSecrets(t, err)
	// One retry with a fresh token, in case the kept one was revoked; no more.
	if f.tokenHits.Load() != 2 || f.apiHits.Load() != 2 {
		t.Fatalf("token asked %d times, FHIR server %d times; want 2 and 2", f.tokenHits.Load(), f.apiHits.Load())
	}

	// Once the server accepts tokens again, the next request recovers.
	f.mu.Lock()
	f.reject401 = false
	f.mu.Unlock()
	if _, err := s.Search(t.Context(), storage.PatientQuery{Name: "Smith"}); err != nil {
		t.Fatal(err)
	}
}

func TestBadAnswers(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"not JSON", 200, `<html>oops</html>`, "not JSON"},
		{"not a bundle", 200, `{"resourceType":"Patient","id":"p1"}`, "not a searchset Bundle"},
		{"another bundle type", 200, `{"resourceType":"Bundle","type":"collection"}`, "not a searchset Bundle"},
		{"malformed patient", 200, `{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient","id":"a/b"}}]}`, "id must be"},
		{"huge", 200, `{"resourceType":"Bundle","type":"searchset","entry":[` + strings.Repeat(`{"resource":{"resourceType":"Observation"}},`, 2000) + `{}]}`, "exceeds 4096 bytes"},
		{"server error", 500, `{}`, "answered status 500"},
		{"forbidden", 403, `{}`, "refused our token (status 403)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeFHIR(t)
			f.override = func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				fmt.Fprint(w, tc.body)
			}
			s := f.searcher(t, testSecret, fhirsearch.Options{MaxBytes: 4096})
			_, err := s.Search(t.Context(), storage.PatientQuery{Name: "Smith"})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "patient search at "+f.api.URL) {
				t.Fatalf("got %v, want an error naming the server and containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "Smith") {
				t.Errorf("error names what was searched for: %v", err)
			}
			f.noSecrets(t, err)
		})
	}
}

func TestGet(t *testing.T) {
	f := newFakeFHIR(t)
	s := f.searcher(t, testSecret, fhirsearch.Options{})
	p, err := s.Get(t.Context(), "p2")
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != "p2" || p.Family != "Jones" || p.Given != "Bob" || p.BirthDate != "1980-02-03" || p.TenantID != "t1" {
		t.Fatalf("got %+v", p)
	}
	for _, id := range []string{"missing", "../p1", "p1/_history", ""} {
		if _, err := s.Get(t.Context(), id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", id, err)
		}
	}
	if n := f.apiHits.Load(); n != 2 {
		t.Errorf("FHIR server asked %d times; an id that is not a FHIR id must not be sent", n)
	}

	f.override = func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusGone) }
	if _, err := s.Get(t.Context(), "p1"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("410: got %v, want ErrNotFound", err)
	}
	// A server answering with another patient than asked for is refused.
	f.override = func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, patients[0]) }
	if _, err := s.Get(t.Context(), "p2"); err == nil || errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "answered with Patient/p1") {
		t.Errorf("mismatched id: %v", err)
	}
}

// TestDefaultClientRefusesInternalAddresses: like client JWKS URLs, the
// servers are reached only at public addresses unless the operator allows
// private networks, and a redirect to another host is not followed.
func TestDefaultClientRefusesInternalAddresses(t *testing.T) {
	f := newFakeFHIR(t)
	s, err := fhirsearch.New("t1", f.source(), testSecret, fhirsearch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Search(t.Context(), storage.PatientQuery{Name: "Smith"})
	if err == nil || !strings.Contains(err.Error(), "non-public address 127.0.0.1") {
		t.Fatalf("loopback reached by default: %v", err)
	}
	if f.tokenHits.Load() != 0 || f.apiHits.Load() != 0 {
		t.Fatal("a server on loopback was reached")
	}

	var leaked atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Store(true)
	}))
	defer elsewhere.Close()
	f.override = func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.RequestURI(), http.StatusFound)
	}
	s = f.searcher(t, testSecret, fhirsearch.Options{})
	_, err = s.Search(t.Context(), storage.PatientQuery{Name: "Smith"})
	if err == nil || !strings.Contains(err.Error(), "redirect to another host") {
		t.Fatalf("redirect to another host followed: %v", err)
	}
	if leaked.Load() {
		t.Fatal("the other host was asked")
	}

	// A redirect within the host is followed.
	f.override = func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/r4/Patient" {
			http.Redirect(w, r, "/r4/moved?"+r.URL.RawQuery, http.StatusFound)
			return
		}
		fmt.Fprint(w, `{"resourceType":"Bundle","type":"searchset"}`)
	}
	if got, err := s.Search(t.Context(), storage.PatientQuery{Name: "Smith"}); err != nil || len(got) != 0 {
		t.Fatalf("same-host redirect: %v, %v", got, err)
	}
}

func TestSearchers(t *testing.T) {
	f := newFakeFHIR(t)
	sealer, err := keys.NewSealer(make([]byte, keys.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	ss := fhirsearch.NewSearchers(sealer, fhirsearch.Options{AllowPrivateNetworks: true})
	tenant := storage.Tenant{ID: "t1"}
	if _, err := ss.For(tenant); !errors.Is(err, fhirsearch.ErrNotConfigured) {
		t.Fatalf("unconfigured tenant: %v", err)
	}
	src := f.source()
	if src.ClientSecretSealed, err = fhirsearch.SealSecret(sealer, "t1", src, testSecret); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(src.ClientSecretSealed, testSecret) {
		t.Fatal("sealed secret holds the secret")
	}
	tenant.Policy.PatientSearch = src
	a, err := ss.For(tenant)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Search(t.Context(), storage.PatientQuery{Name: "Jones"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := ss.For(tenant); b != a {
		t.Fatal("the same setting gave a new Searcher, so its token is not reused")
	}

	// A sealed secret only opens for the tenant and servers it was sealed for.
	moved := tenant
	moved.Policy.PatientSearch.TokenURL = "https://attacker.example/token"
	if _, err := ss.For(moved); err == nil || !strings.Contains(err.Error(), "open the patient search client secret") {
		t.Fatalf("a secret opened after its token URL changed: %v", err)
	}
	other := tenant
	other.ID = "t2"
	if _, err := ss.For(other); err == nil {
		t.Fatal("a secret opened under another tenant")
	}

	// A changed setting builds a new Searcher.
	rescoped := tenant
	rescoped.Policy.PatientSearch.Scope = "system/Patient.r"
	if c, err := ss.For(rescoped); err != nil || c == a {
		t.Fatalf("changed setting: %v, same searcher %v", err, c == a)
	}
	tenant.Policy.PatientSearch = storage.PatientSearchSource{}
	if _, err := ss.For(tenant); !errors.Is(err, fhirsearch.ErrNotConfigured) {
		t.Fatalf("cleared setting: %v", err)
	}
}
