package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// upstreamRecorder is an HTTP server standing in for the FHIR server's
// network side: it answers canned FHIR JSON and remembers what reached it.
// The gateway's FHIR semantics are tested against a real FHIR server in
// the server package; these tests are about what the proxy sends and keeps.
type upstreamRecorder struct {
	mu       sync.Mutex
	requests []*http.Request
	answer   func(w http.ResponseWriter, r *http.Request)
}

func (u *upstreamRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.requests = append(u.requests, r.Clone(r.Context()))
	u.mu.Unlock()
	u.answer(w, r)
}

func (u *upstreamRecorder) seen() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.requests...)
}

func startUpstream(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) (*upstreamRecorder, Upstream) {
	t.Helper()
	rec := &upstreamRecorder{answer: answer}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	base, _ := url.Parse(srv.URL + "/fhir")
	return rec, Upstream{
		Base:       base,
		Client:     srv.Client(),
		UserHeader: "X-Smart-User",
		Authorize: func(_ context.Context, r *http.Request) error {
			r.Header.Set("X-Api-Key", "upstream-secret")
			return nil
		},
	}
}

// recordInto collects decisions and answers with err.
func recordInto(ds *[]Decision, err error) Recorder {
	return func(d Decision) func() error {
		*ds = append(*ds, d)
		return func() error { return err }
	}
}

func serve(t *testing.T, gw *Gateway, method, target string, body string, header http.Header, g Grant, up Upstream, rec Recorder) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, "https://auth.example/t/acme/fhir/"+target, strings.NewReader(body))
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	path, _, _ := strings.Cut(target, "?")
	gw.Serve(w, r, Request{Path: path, Grant: g, Token: "app-token", Base: "https://auth.example/t/acme/fhir", Upstream: up}, rec)
	return w
}

func TestServeSendsGatewayCredentialsNotTheAppToken(t *testing.T) {
	rec, up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Header().Set("Set-Cookie", "upstream=1")
		io.WriteString(w, `{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"}}`)
	})
	var ds []Decision
	header := http.Header{"Authorization": {"Bearer app-token"}, "Cookie": {"session=1"}, "X-Smart-User": {"Practitioner/forged"}, "Accept": {"application/xml"}}
	w := serve(t, New(1<<20), "GET", "Observation/o1?_format=xml", "", header, grantOf("p1", "user/Observation.rs"), up, recordInto(&ds, nil))
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	got := rec.seen()
	if len(got) != 1 {
		t.Fatalf("upstream saw %d requests", len(got))
	}
	r := got[0]
	if r.Header.Get("Authorization") != "" || r.Header.Get("Cookie") != "" {
		t.Errorf("the app's token or cookies reached the upstream: %v", r.Header)
	}
	if r.Header.Get("X-Api-Key") != "upstream-secret" || r.Header.Get("X-Smart-User") != "Practitioner/1" {
		t.Errorf("upstream headers = %v, want the gateway's key and the grant's user", r.Header)
	}
	if r.Header.Get("Accept") != "application/fhir+json" || r.URL.Query().Has("_format") {
		t.Errorf("upstream was not asked for JSON: %v %v", r.Header.Get("Accept"), r.URL)
	}
	if w.Header().Get("Set-Cookie") != "" {
		t.Errorf("the upstream's cookie reached the app")
	}
	if len(ds) != 1 || !ds[0].Allowed || ds[0].Call.Interaction != Read {
		t.Errorf("decisions = %+v", ds)
	}

	up.ForwardToken = true
	serve(t, New(1<<20), "GET", "Observation/o1", "", nil, grantOf("p1", "user/Observation.rs"), up, recordInto(&ds, nil))
	if r := rec.seen()[1]; r.Header.Get("Authorization") != "Bearer app-token" || r.Header.Get("X-Api-Key") != "" {
		t.Errorf("forwarding: upstream headers = %v", r.Header)
	}
}

func TestServeRefusalsNeverReachUpstream(t *testing.T) {
	rec, up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) { t.Errorf("upstream reached: %s %s", r.Method, r.URL) })
	var ds []Decision
	g := grantOf("p1", "patient/Observation.rs")
	for _, c := range []struct{ method, target, body string }{
		{"GET", "Condition/c1", ""},
		{"POST", "Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}`},
		{"GET", "Patient/p2", ""},
		{"POST", "", `{"resourceType":"Bundle","type":"transaction"}`},
	} {
		w := serve(t, New(1<<20), c.method, c.target, c.body, nil, g, up, recordInto(&ds, nil))
		if w.Code != http.StatusForbidden {
			t.Errorf("%s %s: status %d, want 403", c.method, c.target, w.Code)
		}
		var oo map[string]any
		if json.Unmarshal(w.Body.Bytes(), &oo) != nil || oo["resourceType"] != "OperationOutcome" {
			t.Errorf("%s %s: body %s is not an OperationOutcome", c.method, c.target, w.Body)
		}
	}
	if len(rec.seen()) != 0 {
		t.Errorf("refused requests reached the upstream")
	}
	for _, d := range ds {
		if d.Allowed || d.Reason == "" {
			t.Errorf("decision %+v: want a refusal with its reason", d)
		}
	}
}

func TestServeWritesMustStayInThePatientsCompartment(t *testing.T) {
	rec, up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		if r.Method == "GET" { // the current version, read before an update
			io.WriteString(w, `{"resourceType":"Observation","id":"o2","meta":{"versionId":"7"},"subject":{"reference":"Patient/p2"}}`)
			return
		}
		w.WriteHeader(201)
		io.WriteString(w, `{"resourceType":"Observation","id":"new","subject":{"reference":"Patient/p1"}}`)
	})
	var ds []Decision
	g := grantOf("p1", "patient/Observation.cu")
	w := serve(t, New(1<<20), "POST", "Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/p2"}}`, nil, g, up, recordInto(&ds, nil))
	if w.Code != http.StatusForbidden {
		t.Errorf("create for another patient: status %d", w.Code)
	}
	w = serve(t, New(1<<20), "POST", "Observation", `{"resourceType":"Condition","subject":{"reference":"Patient/p1"}}`, nil, g, up, recordInto(&ds, nil))
	if w.Code != http.StatusBadRequest {
		t.Errorf("create of another type: status %d", w.Code)
	}
	if n := len(rec.seen()); n != 0 {
		t.Fatalf("refused writes reached the upstream %d times", n)
	}
	w = serve(t, New(1<<20), "POST", "Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}`, nil, g, up, recordInto(&ds, nil))
	if w.Code != 201 {
		t.Errorf("create for the patient: status %d %s", w.Code, w.Body)
	}
	// Updating another patient's resource so it names this patient would
	// take it over: the stored version is checked first, and looks absent.
	w = serve(t, New(1<<20), "PUT", "Observation/o2", `{"resourceType":"Observation","id":"o2","subject":{"reference":"Patient/p1"}}`, nil, g, up, recordInto(&ds, nil))
	if w.Code != http.StatusNotFound {
		t.Errorf("update of another patient's resource: status %d %s", w.Code, w.Body)
	}
	for _, r := range rec.seen() {
		if r.Method == "PUT" {
			t.Errorf("the update reached the upstream")
		}
	}
}

func TestServeFiltersBundles(t *testing.T) {
	_, up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		base := "http://" + r.Host + "/fhir"
		io.WriteString(w, `{"resourceType":"Bundle","type":"searchset","total":3,
			"link":[{"relation":"next","url":"`+base+`/Observation?page=2"}],
			"entry":[
			{"fullUrl":"`+base+`/Observation/a","resource":{"resourceType":"Observation","id":"a","subject":{"reference":"Patient/p1"}}},
			{"fullUrl":"`+base+`/Observation/b","resource":{"resourceType":"Observation","id":"b","subject":{"reference":"Patient/p2"}}},
			{"resource":{"resourceType":"Patient","id":"p2"}},
			{"resource":{"resourceType":"Patient","id":"p1"}},
			{"resource":{"resourceType":"OperationOutcome","issue":[]}}]}`)
	})
	var ds []Decision
	w := serve(t, New(1<<20), "GET", "Observation?_include=Observation:subject", "", nil, grantOf("p1", "patient/Observation.rs", "patient/Patient.r"), up, recordInto(&ds, nil))
	if w.Code != 200 {
		t.Fatalf("status %d %s", w.Code, w.Body)
	}
	var b struct {
		Total *int `json:"total"`
		Link  []struct{ URL string }
		Entry []struct {
			FullURL  string
			Resource struct{ ResourceType, ID string }
		}
	}
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range b.Entry {
		got = append(got, e.Resource.ResourceType+"/"+e.Resource.ID)
	}
	if strings.Join(got, " ") != "Observation/a Patient/p1 OperationOutcome/" {
		t.Errorf("entries = %v, want only the patient's and the outcome", got)
	}
	if b.Total != nil {
		t.Errorf("total %d kept though entries were dropped", *b.Total)
	}
	if len(b.Link) != 1 || !strings.HasPrefix(b.Link[0].URL, "https://auth.example/t/acme/fhir/Observation?") || !strings.HasPrefix(b.Entry[0].FullURL, "https://auth.example/t/acme/fhir/") {
		t.Errorf("links not rewritten to the gateway: %+v %q", b.Link, b.Entry[0].FullURL)
	}
	// The user-level token sees both patients' Observations, but no
	// Patient: it has no scope for them.
	w = serve(t, New(1<<20), "GET", "Observation?_include=Observation:subject", "", nil, grantOf("", "user/Observation.rs"), up, recordInto(&ds, nil))
	if strings.Contains(w.Body.String(), `"Patient"`) || !strings.Contains(w.Body.String(), `"id":"b"`) {
		t.Errorf("user-level bundle = %s", w.Body)
	}
}

func TestServeAnswers503WhenTheAuditFails(t *testing.T) {
	_, up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"}}`)
	})
	var ds []Decision
	w := serve(t, New(1<<20), "GET", "Observation/o1", "", nil, grantOf("p1", "patient/Observation.rs"), up, recordInto(&ds, errors.New("disk full")))
	if w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), `"o1"`) {
		t.Errorf("unaudited read: status %d body %s", w.Code, w.Body)
	}
}

func TestServeHidesOtherPatientsResourcesByID(t *testing.T) {
	_, up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"resourceType":"Observation","id":"o2","subject":{"reference":"Patient/p2"}}`)
	})
	var ds []Decision
	w := serve(t, New(1<<20), "GET", "Observation/o2", "", nil, grantOf("p1", "patient/Observation.rs"), up, recordInto(&ds, nil))
	if w.Code != http.StatusNotFound || strings.Contains(w.Body.String(), "p2") {
		t.Errorf("other patient's observation: status %d body %s", w.Code, w.Body)
	}
}

// TestServeFiltersEverything checks Patient/$everything's Bundle like a
// search's: the real FHIR server of the integration tests has no
// $everything, so what an upstream that has one returns is checked here.
func TestServeFiltersEverything(t *testing.T) {
	_, up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/fhir/Patient/p1/$everything" {
			t.Errorf("upstream asked for %s", r.URL.Path)
		}
		io.WriteString(w, `{"resourceType":"Bundle","type":"searchset","total":4,"entry":[
			{"resource":{"resourceType":"Patient","id":"p1"}},
			{"resource":{"resourceType":"Observation","id":"mine","subject":{"reference":"Patient/p1"}}},
			{"resource":{"resourceType":"Observation","id":"theirs","subject":{"reference":"Patient/p2"}}},
			{"resource":{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/p1"}}}]}`)
	})
	var ds []Decision
	w := serve(t, New(1<<20), "GET", "Patient/p1/$everything", "", nil, grantOf("p1", "patient/Patient.r", "patient/Observation.rs"), up, recordInto(&ds, nil))
	body := w.Body.String()
	if w.Code != 200 || !strings.Contains(body, `"mine"`) || strings.Contains(body, `"theirs"`) || strings.Contains(body, `"Condition"`) || strings.Contains(body, `"total"`) {
		t.Errorf("$everything: %d %s; want the patient and her Observation only, without the upstream's total", w.Code, body)
	}
}

func TestServeHeadHasNoBody(t *testing.T) {
	_, up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			t.Errorf("upstream asked with %s; the gateway needs the body to check it", r.Method)
		}
		io.WriteString(w, `{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"}}`)
	})
	var ds []Decision
	w := serve(t, New(1<<20), "HEAD", "Observation/o1", "", nil, grantOf("p1", "patient/Observation.rs"), up, recordInto(&ds, nil))
	if w.Code != 200 || w.Body.Len() != 0 {
		t.Errorf("HEAD: %d with %d bytes of body", w.Code, w.Body.Len())
	}
}

func TestServeRefusesOversizedBodies(t *testing.T) {
	rec, up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	var ds []Decision
	big := `{"resourceType":"Observation","note":[{"text":"` + strings.Repeat("x", 2048) + `"}]}`
	w := serve(t, New(1024), "POST", "Observation", big, nil, grantOf("", "user/Observation.c"), up, recordInto(&ds, nil))
	if w.Code != http.StatusRequestEntityTooLarge || len(rec.seen()) != 0 {
		t.Errorf("oversized create: %d, upstream saw %d requests", w.Code, len(rec.seen()))
	}
	w = serve(t, New(1<<20), "POST", "Observation", `{not json`, nil, grantOf("p1", "patient/Observation.c"), up, recordInto(&ds, nil))
	if w.Code != http.StatusBadRequest {
		t.Errorf("malformed create: %d", w.Code)
	}
}

func TestServeUpstreamDown(t *testing.T) {
	_, up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	up.Base, _ = url.Parse("http://127.0.0.1:1/fhir")
	var ds []Decision
	w := serve(t, New(1<<20), "GET", "Observation/o1", "", nil, grantOf("", "user/Observation.rs"), up, recordInto(&ds, nil))
	if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), "OperationOutcome") {
		t.Errorf("upstream down: %d %s", w.Code, w.Body)
	}
}

func TestServeRetriesOnceWithFreshCredentials(t *testing.T) {
	calls := 0
	_, up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		calls++
		if r.Header.Get("X-Api-Key") != "fresh" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		io.WriteString(w, `{"resourceType":"Observation","id":"o1"}`)
	})
	key := "stale"
	up.Authorize = func(_ context.Context, r *http.Request) error { r.Header.Set("X-Api-Key", key); return nil }
	up.ResetCredentials = func() { key = "fresh" }
	var ds []Decision
	w := serve(t, New(1<<20), "GET", "Observation/o1", "", nil, grantOf("", "user/Observation.rs"), up, recordInto(&ds, nil))
	if w.Code != 200 || calls != 2 {
		t.Errorf("status %d after %d upstream calls, want 200 after 2", w.Code, calls)
	}
	key, calls = "stale", 0
	up.ResetCredentials = func() {}
	w = serve(t, New(1<<20), "GET", "Observation/o1", "", nil, grantOf("", "user/Observation.rs"), up, recordInto(&ds, nil))
	if w.Code != http.StatusBadGateway || calls != 2 || w.Header().Get("WWW-Authenticate") != "" {
		t.Errorf("credentials still refused: status %d after %d calls, want 502 after one retry, never a challenge to the app", w.Code, calls)
	}
}
