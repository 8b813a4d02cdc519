// Package fhirsearch searches a tenant's FHIR server for patients, for the
// patient picker: FHIR Patient search and read, authorized with a bearer
// token the server grants this one through OAuth 2.0 client_credentials.
//
// Requests go through a client that connects only to public addresses
// (unless the operator allows private networks), follows redirects only
// within the same host, gives up after a few seconds and refuses oversized
// answers. Error texts name the server but never the client secret, the
// token, or what was searched for, so they are safe to log.
package fhirsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/smartauth/smartauth/server/netguard"
	"github.com/smartauth/smartauth/server/roster"
	"github.com/smartauth/smartauth/storage"
)

// Defaults of Options and of searches.
const (
	DefaultTimeout  = 5 * time.Second
	DefaultMaxBytes = 2 << 20
	DefaultLimit    = 50
	// MaxLimit caps PatientQuery.Limit: a picker shows a page, not a registry.
	MaxLimit = 100
)

// tokenEarlyExpiry is how long before its expiry a token is replaced, so a
// request never carries a token that expires on the way.
const tokenEarlyExpiry = 30 * time.Second

// maxRedirects bounds same-host redirects.
const maxRedirects = 3

// ErrNotConfigured means the tenant has no patient search source.
var ErrNotConfigured = errors.New("no FHIR patient search is configured for this tenant")

// fhirID is the FHIR R4 id datatype; anything else cannot name a Patient.
var fhirID = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// fhirDate is the FHIR date datatype (year, year-month or full date).
var fhirDate = regexp.MustCompile(`^[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?$`)

// Options tune Searchers; the zero value gives the defaults.
type Options struct {
	// HTTPClient makes every request, to the token endpoint too; nil means a
	// client built by NewHTTPClient from Timeout and AllowPrivateNetworks.
	HTTPClient *http.Client
	// Timeout bounds each request whatever HTTPClient does; zero means DefaultTimeout.
	Timeout time.Duration
	// MaxBytes caps an answer's body; zero means DefaultMaxBytes.
	MaxBytes int64
	// AllowPrivateNetworks lets the default client reach loopback, private
	// and link-local addresses. Off by default, so that a tenant's setting
	// cannot be used to probe the internal network.
	AllowPrivateNetworks bool
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.HTTPClient == nil {
		o.HTTPClient = NewHTTPClient(o.Timeout, o.AllowPrivateNetworks)
	}
	return o
}

// NewHTTPClient returns the client Options default to: netguard's
// public-address rule, a timeout, and redirects followed only within a host.
func NewHTTPClient(timeout time.Duration, allowPrivate bool) *http.Client {
	return &http.Client{
		Timeout:       timeout,
		Transport:     netguard.Transport(timeout, allowPrivate),
		CheckRedirect: sameHostRedirects,
	}
}

// sameHostRedirects refuses a redirect to another scheme or host: the
// bearer token would follow it there.
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	if req.URL.Scheme != via[0].URL.Scheme || req.URL.Host != via[0].URL.Host {
		return errors.New("refusing a redirect to another host")
	}
	return nil
}

// Searcher searches one tenant's FHIR server for patients. It is safe for
// concurrent use and keeps its token until shortly before it expires.
type Searcher struct {
	tenantID string
	base     string
	client   *http.Client
	timeout  time.Duration
	maxBytes int64
	fetcher  *tokenFetcher

	mu     sync.Mutex
	tokens oauth2.TokenSource
}

// New returns a Searcher for a tenant's source, given the source's client
// secret in the clear (see OpenSecret).
func New(tenantID string, src storage.PatientSearchSource, clientSecret string, opts Options) (*Searcher, error) {
	for what, raw := range map[string]string{"FHIR base URL": src.FHIRBaseURL, "token URL": src.TokenURL} {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("patient search of tenant %q: %s %q is not an absolute http(s) URL", tenantID, what, raw)
		}
	}
	if src.ClientID == "" || clientSecret == "" {
		return nil, fmt.Errorf("patient search of tenant %q: a client id and secret are required", tenantID)
	}
	opts = opts.withDefaults()
	cfg := &clientcredentials.Config{ClientID: src.ClientID, ClientSecret: clientSecret, TokenURL: src.TokenURL, Scopes: strings.Fields(src.Scope)}
	s := &Searcher{
		tenantID: tenantID,
		base:     strings.TrimRight(src.FHIRBaseURL, "/"),
		client:   opts.HTTPClient,
		timeout:  opts.Timeout,
		maxBytes: opts.MaxBytes,
		fetcher:  &tokenFetcher{cfg: cfg, client: opts.HTTPClient, timeout: opts.Timeout},
	}
	s.tokens = s.newTokenSource()
	return s, nil
}

func (s *Searcher) newTokenSource() oauth2.TokenSource {
	return oauth2.ReuseTokenSourceWithExpiry(nil, s.fetcher, tokenEarlyExpiry)
}

// BaseURL is the FHIR base URL searched, without a trailing slash.
func (s *Searcher) BaseURL() string {
	return s.base
}

// Search runs a FHIR Patient search with the set fields of q (name, birthdate,
// identifier) and returns at most q.Limit patients (DefaultLimit when zero,
// MaxLimit at most) from the first page of results.
func (s *Searcher) Search(ctx context.Context, q storage.PatientQuery) ([]storage.Patient, error) {
	params, limit, err := searchParams(q)
	if err != nil {
		return nil, err
	}
	status, body, err := s.get(ctx, s.base+"/Patient?"+params.Encode())
	if err != nil {
		return nil, fmt.Errorf("patient search at %s: %w", s.base, err)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("patient search at %s: %w", s.base, statusError(status))
	}
	patients, err := parseSearchset(s.tenantID, body)
	if err != nil {
		return nil, fmt.Errorf("patient search at %s: %w", s.base, err)
	}
	if len(patients) > limit {
		patients = patients[:limit]
	}
	return patients, nil
}

// Get reads one Patient by id. A patient the server does not have (404 or
// 410), or an id that is not a FHIR id, gives an error wrapping
// storage.ErrNotFound.
func (s *Searcher) Get(ctx context.Context, id string) (storage.Patient, error) {
	if !fhirID.MatchString(id) {
		return storage.Patient{}, fmt.Errorf("patient id %q is not a FHIR id: %w", id, storage.ErrNotFound)
	}
	status, body, err := s.get(ctx, s.base+"/Patient/"+id)
	if err != nil {
		return storage.Patient{}, fmt.Errorf("read Patient/%s at %s: %w", id, s.base, err)
	}
	switch status {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusGone:
		return storage.Patient{}, fmt.Errorf("read Patient/%s at %s: %w", id, s.base, storage.ErrNotFound)
	default:
		return storage.Patient{}, fmt.Errorf("read Patient/%s at %s: %w", id, s.base, statusError(status))
	}
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return storage.Patient{}, fmt.Errorf("read Patient/%s at %s: the answer is not JSON: %w", id, s.base, err)
	}
	if head.ResourceType != "Patient" {
		return storage.Patient{}, fmt.Errorf("read Patient/%s at %s: the answer is a %q, not a Patient", id, s.base, head.ResourceType)
	}
	res, err := roster.Parse(s.tenantID, bytes.NewReader(body))
	if err != nil {
		return storage.Patient{}, fmt.Errorf("read Patient/%s at %s: %w", id, s.base, err)
	}
	p := res.Patients[0]
	if p.ID != id {
		return storage.Patient{}, fmt.Errorf("read Patient/%s at %s: the server answered with Patient/%s", id, s.base, p.ID)
	}
	return p, nil
}

// searchParams turns q into FHIR search parameters and the result limit.
func searchParams(q storage.PatientQuery) (url.Values, int, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	v := url.Values{}
	if name := strings.TrimSpace(q.Name); name != "" {
		v.Set("name", escape(name))
	}
	if date := strings.TrimSpace(q.BirthDate); date != "" {
		// A date only: FHIR prefixes such as "gt" would widen the match.
		if !fhirDate.MatchString(date) {
			return nil, 0, fmt.Errorf("birth date %q is not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)", date)
		}
		v.Set("birthdate", date)
	}
	if ident := strings.TrimSpace(q.Identifier); ident != "" {
		// A bare token matches the value in any identifier system.
		v.Set("identifier", escape(ident))
	}
	v.Set("_count", strconv.Itoa(limit))
	return v, limit, nil
}

// fhirEscaper escapes the characters FHIR search gives a meaning to (OR,
// composite and system separators), so a value is searched for as typed.
var fhirEscaper = strings.NewReplacer(`\`, `\\`, `,`, `\,`, `$`, `\$`, `|`, `\|`)

func escape(s string) string {
	return fhirEscaper.Replace(s)
}

// parseSearchset reads the Patients of a searchset Bundle; other entries
// (an OperationOutcome, say) are skipped.
func parseSearchset(tenantID string, body []byte) ([]storage.Patient, error) {
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, fmt.Errorf("the answer is not JSON: %w", err)
	}
	if b.ResourceType != "Bundle" || b.Type != "searchset" {
		return nil, fmt.Errorf("the answer is a %q of type %q, not a searchset Bundle", b.ResourceType, b.Type)
	}
	found := false
	for _, e := range b.Entry {
		found = found || e.Resource.ResourceType == "Patient"
	}
	if !found {
		// roster.Parse refuses input without Patients; here it means no match.
		return []storage.Patient{}, nil
	}
	res, err := roster.Parse(tenantID, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	return res.Patients, nil
}

// statusError explains an unexpected status of the FHIR server.
func statusError(status int) error {
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		return fmt.Errorf("the FHIR server refused our token (status %d); check the client's scope there", status)
	}
	return fmt.Errorf("the FHIR server answered status %d", status)
}

// get sends an authorized GET and returns the status and, for 200, the body.
// A 401 is retried once with a new token, in case the server stopped
// accepting the one kept (revoked, or its signing key rotated).
func (s *Searcher) get(ctx context.Context, rawURL string) (int, []byte, error) {
	for attempt := 1; ; attempt++ {
		s.mu.Lock()
		ts := s.tokens
		s.mu.Unlock()
		tok, err := ts.Token()
		if err != nil {
			return 0, nil, err
		}
		status, body, err := s.send(ctx, rawURL, tok.AccessToken)
		if err != nil || status != http.StatusUnauthorized || attempt == 2 {
			return status, body, err
		}
		s.mu.Lock()
		if s.tokens == ts {
			s.tokens = s.newTokenSource()
		}
		s.mu.Unlock()
	}
}

func (s *Searcher) send(ctx context.Context, rawURL, token string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.client.Do(req)
	if err != nil {
		// The client's error quotes the URL, whose query holds what the
		// clinician typed; keep patient details out of error texts and logs.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Drain a little so the connection can be reused.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return resp.StatusCode, nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.maxBytes+1))
	if err != nil {
		return 0, nil, fmt.Errorf("read the answer: %w", err)
	}
	if int64(len(body)) > s.maxBytes {
		return 0, nil, fmt.Errorf("the answer exceeds %d bytes", s.maxBytes)
	}
	return resp.StatusCode, body, nil
}

// tokenFetcher gets a new token each time it is asked; a ReuseTokenSource
// in front of it keeps the token until shortly before it expires.
type tokenFetcher struct {
	cfg     *clientcredentials.Config
	client  *http.Client
	timeout time.Duration
}

// Token asks the token endpoint for a token.
func (f *tokenFetcher) Token() (*oauth2.Token, error) {
	// Not the request's context: a token fetch is shared by every request
	// waiting on the ReuseTokenSource, so it has its own deadline.
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	tok, err := f.cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, f.client))
	if err != nil {
		return nil, fmt.Errorf("get a token from %s: %w", f.cfg.TokenURL, f.explain(err))
	}
	return tok, nil
}

// explain rewrites a token endpoint error; see ExplainTokenError.
func (f *tokenFetcher) explain(err error) error {
	return ExplainTokenError(err, f.cfg.ClientSecret)
}

// ExplainTokenError rewrites an error of golang.org/x/oauth2's token
// request without the response body, which a misbehaving token endpoint
// could fill with what was sent to it, and without secret anywhere.
func ExplainTokenError(err error, secret string) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Err
		}
		return err
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	msg := fmt.Sprintf("status %d", status)
	if re.ErrorCode != "" {
		msg += fmt.Sprintf(", error %q", clean(re.ErrorCode, secret))
	}
	if re.ErrorDescription != "" {
		msg += fmt.Sprintf(": %q", clean(re.ErrorDescription, secret))
	}
	if status == http.StatusUnauthorized || re.ErrorCode == "invalid_client" {
		msg += " (wrong client id or secret?)"
	}
	return errors.New(msg)
}

// clean shortens text from a remote server and removes the secret from it.
func clean(s, secret string) string {
	if secret != "" {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
