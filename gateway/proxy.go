// Package gateway is smartauth's SMART gateway: a reverse proxy that puts
// a FHIR server which knows nothing of SMART behind smartauth's access
// tokens. Every request is classified (Classify), decided against the
// token's scopes and patient (Authorize), forwarded with the gateway's own
// upstream credentials, and its response checked resource by resource
// before the app sees it. What cannot be proved allowed is refused or left
// out; nothing the token does not reach leaves the gateway.
//
// The package does no token validation and keeps no settings: the server
// hands it a validated Grant and the tenant's Upstream.
package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/smartauth/smartauth/gateway/compartment"
	"github.com/smartauth/smartauth/server/smart"
)

// DefaultMaxResponseBytes bounds an upstream response the gateway reads to check.
const DefaultMaxResponseBytes = 32 << 20

// Upstream is the FHIR server behind a tenant's gateway.
type Upstream struct {
	// Base is the upstream FHIR base URL.
	Base *url.URL
	// Client sends requests to it; it must not follow redirects.
	Client *http.Client
	// Authorize sets the gateway's credentials on an outgoing request.
	Authorize func(ctx context.Context, req *http.Request) error
	// ForwardToken sends the app's own access token instead.
	ForwardToken bool
	// UserHeader names the header that carries the user's identity.
	UserHeader string
	// ResetCredentials, when set, forgets cached credentials; the gateway
	// calls it and retries once when the upstream refuses them with 401.
	ResetCredentials func()
}

// Request is one request to a tenant's gateway, its token already validated.
type Request struct {
	// Path is the request path below the FHIR base, without its leading slash.
	Path  string
	Grant Grant
	// Token is the app's access token, sent upstream only with ForwardToken.
	Token string
	// Base is the gateway's public FHIR base URL for this tenant.
	Base     string
	Upstream Upstream
}

// Decision is what the gateway decided about one request, for the audit trail.
type Decision struct {
	// Call is the classified request; its Interaction is empty when the
	// request could not be classified.
	Call    Call
	Allowed bool
	// Reason says why a request was refused.
	Reason string
}

// Recorder records a decision durably. It returns at once with a function
// that waits for the record: the gateway waits on it before answering and
// answers 503 rather than release data whose access it could not audit.
type Recorder func(Decision) (wait func() error)

// Gateway checks and forwards requests. It is safe for concurrent use.
type Gateway struct {
	def             *compartment.Definition
	maxRequestBody  int64
	maxResponseBody int64
}

// New returns a Gateway that reads request bodies up to maxRequestBody bytes.
func New(maxRequestBody int64) *Gateway {
	return &Gateway{def: compartment.Patient(), maxRequestBody: maxRequestBody, maxResponseBody: DefaultMaxResponseBytes}
}

// Result is what Serve did, for the request log.
type Result struct {
	Decision Decision
	// Status is the status the app received.
	Status int
	// Err is why an allowed request failed, for the operator's log.
	Err error
}

// Serve handles one request: it refuses it, or forwards it and writes the
// checked response.
func (gw *Gateway) Serve(w http.ResponseWriter, r *http.Request, req Request, record Recorder) Result {
	call, err := Classify(r.Method, req.Path, r.URL.Query())
	var plan Plan
	if err == nil {
		plan, err = Authorize(gw.def, req.Grant, call)
	}
	var body []byte
	if err == nil {
		body, err = gw.checkBody(r, req.Grant, plan)
	}
	if err != nil {
		return gw.refuse(w, call, err, record)
	}
	wait := record(Decision{Call: call, Allowed: true})
	res := Result{Decision: Decision{Call: call, Allowed: true}}

	out, err := gw.forward(r.Context(), r, req, plan, body)
	if err != nil {
		res.Err = err
		// The audit record says the request was allowed; it must still be
		// durable before anything, even an error, is answered.
		if werr := wait(); werr != nil {
			res.Status = writeOutcome(w, http.StatusServiceUnavailable, "transient", "The request could not be audited; try again.")
			return res
		}
		var re *RefusedError
		if errors.As(err, &re) {
			res.Status = writeOutcome(w, re.Status, re.Code, re.Message)
			return res
		}
		res.Status = writeOutcome(w, http.StatusBadGateway, "exception", "The FHIR server could not be reached.")
		return res
	}
	if err := wait(); err != nil {
		res.Status = writeOutcome(w, http.StatusServiceUnavailable, "transient", "The request could not be audited; try again.")
		return res
	}
	res.Status = out.status
	for k, vs := range out.header {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(out.body)))
	w.WriteHeader(out.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(out.body)
	}
	return res
}

// refuse answers a request that is not forwarded, once its refusal is audited.
func (gw *Gateway) refuse(w http.ResponseWriter, call Call, err error, record Recorder) Result {
	var re *RefusedError
	if !errors.As(err, &re) {
		re = refuse(http.StatusBadRequest, "invalid", "%s", err.Error())
	}
	d := Decision{Call: call, Reason: re.Message}
	if werr := record(d)(); werr != nil {
		return Result{Decision: d, Status: writeOutcome(w, http.StatusServiceUnavailable, "transient", "The request could not be audited; try again.")}
	}
	if re.Status == http.StatusForbidden {
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope"`)
	}
	return Result{Decision: d, Status: writeOutcome(w, re.Status, re.Code, re.Message)}
}

// checkBody reads the resource a create or update sends and checks it is
// the call's and the grant allows writing it.
func (gw *Gateway) checkBody(r *http.Request, g Grant, plan Plan) ([]byte, error) {
	switch plan.Call.Interaction {
	case Create, Update, Patch:
	default:
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, gw.maxRequestBody+1))
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "invalid", "The request body could not be read.")
	}
	if int64(len(body)) > gw.maxRequestBody {
		return nil, refuse(http.StatusRequestEntityTooLarge, "too-costly", "The request body is larger than %d bytes.", gw.maxRequestBody)
	}
	if plan.Call.Interaction == Patch {
		return body, nil
	}
	if r.Header.Get("If-None-Exist") != "" && plan.Restricted() {
		return nil, refuse(http.StatusForbidden, "forbidden", "Conditional create is not allowed with patient-level or granular scopes: its search could reach other patients' records.")
	}
	var res map[string]any
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, refuse(http.StatusBadRequest, "invalid", "The request body is not a FHIR resource in JSON.")
	}
	if rt, _ := res["resourceType"].(string); rt != plan.Call.Type {
		return nil, refuse(http.StatusBadRequest, "invalid", "The request body is not a %s.", plan.Call.Type)
	}
	if plan.Call.Interaction == Update {
		if id, _ := res["id"].(string); id != plan.Call.ID {
			return nil, refuse(http.StatusBadRequest, "invalid", "The resource's id does not match the id in the URL.")
		}
	}
	if plan.Restricted() && !allowedBy(gw.def, plan.rules, plan.Call.Type, res) {
		return nil, refuse(http.StatusForbidden, "forbidden", "The access token does not allow writing this %s: it must belong to the patient in context and match the granted scopes.", plan.Call.Type)
	}
	return body, nil
}

// response is an upstream response, checked and ready to send.
type response struct {
	status int
	header http.Header
	body   []byte
}

// forwardedRequestHeaders are the headers of the app's request the upstream sees.
var forwardedRequestHeaders = []string{"Content-Type", "If-Match", "If-None-Match", "If-Modified-Since", "If-None-Exist", "Prefer", "X-Request-Id"}

// forwardedResponseHeaders are the headers of the upstream's response the app sees.
var forwardedResponseHeaders = []string{"Content-Type", "ETag", "Last-Modified", "Location", "Content-Location", "Cache-Control", "Expires", "X-Request-Id"}

func (gw *Gateway) forward(ctx context.Context, r *http.Request, req Request, plan Plan, body []byte) (response, error) {
	up := req.Upstream
	header := http.Header{}
	for _, k := range forwardedRequestHeaders {
		if v := r.Header.Values(k); len(v) > 0 {
			header[k] = v
		}
	}
	if plan.NeedsCurrent() {
		version, err := gw.checkCurrent(ctx, req, plan)
		if err != nil {
			return response{}, err
		}
		if version != "" {
			// The write must land on the version that was checked.
			if m := r.Header.Get("If-Match"); m != "" && m != `W/"`+version+`"` {
				return response{}, refuse(http.StatusPreconditionFailed, "conflict", "The resource has changed since the version named in If-Match.")
			}
			header.Set("If-Match", `W/"`+version+`"`)
		}
	}
	target := upstreamURL(up.Base, plan.Call.Path, plan.Query)
	out, err := gw.send(ctx, r.Method, target, header, body, req)
	if err != nil {
		return response{}, err
	}
	return gw.check(out, req, plan)
}

// upstreamURL is the upstream's URL for a path below the FHIR base.
func upstreamURL(base *url.URL, path string, q url.Values) string {
	u := strings.TrimSuffix(base.String(), "/") + "/" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// send makes one upstream request with the gateway's credentials and reads
// the response, base URLs rewritten to the gateway's.
func (gw *Gateway) send(ctx context.Context, method, target string, header http.Header, body []byte, req Request) (response, error) {
	up := req.Upstream
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	if method == http.MethodHead {
		method = http.MethodGet // the body is needed to check it
	}
	// The transport itself, not an http.Client: the gateway follows no
	// redirects and keeps no cookies, and skipping the client's per-request
	// bookkeeping is a measurable share of a proxied read's CPU.
	rt := up.Client.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	if up.Client.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, up.Client.Timeout)
		defer cancel()
	}
	out, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return response{}, fmt.Errorf("gateway: build upstream request: %w", err)
	}
	out.Header = header
	out.Header.Set("Accept", "application/fhir+json")
	if id := identity(req); id != "" && up.UserHeader != "" {
		out.Header.Set(up.UserHeader, id)
	}
	if up.ForwardToken {
		out.Header.Set("Authorization", "Bearer "+req.Token)
	} else if up.Authorize != nil {
		if err := up.Authorize(ctx, out); err != nil {
			return response{}, fmt.Errorf("gateway: authenticate to the upstream: %w", err)
		}
	}
	resp, err := rt.RoundTrip(out)
	if err != nil {
		return response{}, fmt.Errorf("gateway: upstream %s: %w", method, err)
	}
	if resp.StatusCode == http.StatusUnauthorized && !up.ForwardToken && up.ResetCredentials != nil && !retried(ctx) {
		// A token the upstream no longer honours (rotated keys, a restart
		// that forgot it): one fresh try with new credentials.
		resp.Body.Close()
		up.ResetCredentials()
		return gw.send(context.WithValue(ctx, retryKey{}, true), method, target, header, body, req)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized && !up.ForwardToken {
		// The upstream refused the gateway's own credentials: the app's
		// token is fine, and telling it otherwise would send it to sign in again.
		return response{}, refuse(http.StatusBadGateway, "exception", "The FHIR server refused the gateway's credentials.")
	}
	data, err := readBody(resp, gw.maxResponseBody)
	if err != nil {
		return response{}, fmt.Errorf("gateway: read upstream response: %w", err)
	}
	if int64(len(data)) > gw.maxResponseBody {
		return response{}, fmt.Errorf("gateway: upstream response larger than %d bytes", gw.maxResponseBody)
	}
	from := strings.TrimSuffix(up.Base.String(), "/")
	to := strings.TrimSuffix(req.Base, "/")
	h := http.Header{}
	for _, k := range forwardedResponseHeaders {
		for _, v := range resp.Header.Values(k) {
			h.Add(k, rebase(v, from, to))
		}
	}
	if bytes.Contains(data, []byte(from)) {
		data = bytes.ReplaceAll(data, []byte(from), []byte(to))
	}
	return response{status: resp.StatusCode, header: h, body: data}, nil
}

// readBody reads a response body of at most max bytes (one more tells it
// was longer), in one allocation when the upstream says how long it is.
func readBody(resp *http.Response, max int64) ([]byte, error) {
	if n := resp.ContentLength; n >= 0 && n <= max {
		buf := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return io.ReadAll(io.LimitReader(resp.Body, max+1))
}

type retryKey struct{}

// retried reports whether ctx belongs to a request already retried with fresh credentials.
func retried(ctx context.Context) bool {
	v, _ := ctx.Value(retryKey{}).(bool)
	return v
}

// rebase rewrites a URL under the upstream's base to the gateway's, so
// that links and locations lead back through the gateway.
func rebase(v, from, to string) string {
	if rest, ok := strings.CutPrefix(v, from); ok {
		return to + rest
	}
	return v
}

// identity is what the upstream is told of who is asking: the user's
// FHIR resource, relative when it is at the gateway's base (which the
// upstream knows by another URL), or else the subject: the user's id, or a
// backend service's client id.
func identity(req Request) string {
	if u := req.Grant.FHIRUser; u != "" {
		if rel, ok := strings.CutPrefix(u, strings.TrimSuffix(req.Base, "/")+"/"); ok {
			return rel
		}
		return u
	}
	return req.Grant.Subject
}

// checkCurrent reads the resource an update or delete would change and
// checks the grant reaches it; it returns the version read, or "" when
// there is none yet (an update that creates).
func (gw *Gateway) checkCurrent(ctx context.Context, req Request, plan Plan) (string, error) {
	target := upstreamURL(req.Upstream.Base, plan.Call.Type+"/"+plan.Call.ID, nil)
	cur, err := gw.send(ctx, http.MethodGet, target, http.Header{}, nil, req)
	if err != nil {
		return "", err
	}
	switch {
	case cur.status == http.StatusNotFound || cur.status == http.StatusGone:
		if plan.Call.Interaction == Delete {
			return "", refuse(http.StatusNotFound, "not-found", "The %s is not known.", plan.Call.Type)
		}
		return "", nil
	case cur.status != http.StatusOK:
		return "", fmt.Errorf("gateway: upstream answered %d to reading %s/%s", cur.status, plan.Call.Type, plan.Call.ID)
	}
	var res map[string]any
	if err := json.Unmarshal(cur.body, &res); err != nil {
		return "", fmt.Errorf("gateway: upstream resource %s/%s is not JSON: %w", plan.Call.Type, plan.Call.ID, err)
	}
	if !allowedBy(gw.def, plan.rules, plan.Call.Type, res) {
		// Not found, as far as this app can know.
		return "", refuse(http.StatusNotFound, "not-found", "The %s is not known.", plan.Call.Type)
	}
	meta, _ := res["meta"].(map[string]any)
	version, _ := meta["versionId"].(string)
	return version, nil
}

// check applies the grant to what the upstream answered: a resource the app
// may not see becomes 404, and a Bundle loses the entries it may not see.
func (gw *Gateway) check(out response, req Request, plan Plan) (response, error) {
	if out.status < 200 || out.status > 299 || len(out.body) == 0 {
		return out, nil
	}
	call := plan.Call
	bundle := call.Interaction == Search || call.Interaction == HistoryType || call.Interaction == HistoryInstance || call.Interaction == Operation
	if !bundle && !plan.Restricted() {
		return out, nil
	}
	if bundle && !plan.Restricted() && !includes(plan.Query) && call.Interaction != Operation {
		// Every entry is of the searched type, which the grant reaches whole.
		return out, nil
	}
	var doc map[string]any
	if err := json.Unmarshal(out.body, &doc); err != nil {
		return response{}, fmt.Errorf("gateway: upstream answered %s on %s with a body that is not JSON", call.Interaction, call.Type)
	}
	rt, _ := doc["resourceType"].(string)
	if !bundle {
		if rt == "OperationOutcome" {
			return out, nil
		}
		if rt != call.Type || !allowedBy(gw.def, plan.rules, rt, doc) {
			if call.Interaction == Read || call.Interaction == VRead {
				return response{}, refuse(http.StatusNotFound, "not-found", "The %s is not known.", call.Type)
			}
			return response{}, fmt.Errorf("gateway: upstream answered %s on %s with a resource outside the grant", call.Interaction, call.Type)
		}
		return out, nil
	}
	if rt != "Bundle" {
		return response{}, fmt.Errorf("gateway: upstream answered %s on %s with a %q, not a Bundle", call.Interaction, call.Type, rt)
	}
	dropped := gw.filterBundle(doc, req.Grant)
	if dropped > 0 || (plan.Restricted() && !plan.exact) {
		// The upstream counted resources the app does not get.
		delete(doc, "total")
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return response{}, fmt.Errorf("gateway: encode filtered bundle: %w", err)
	}
	out.body = body
	return out, nil
}

// includes reports whether a search asks for resources of other types too.
func includes(q url.Values) bool {
	for k := range q {
		if strings.HasPrefix(k, "_include") || strings.HasPrefix(k, "_revinclude") {
			return true
		}
	}
	return false
}

// filterBundle keeps the entries whose resource the grant lets the app
// read, and OperationOutcomes; it returns how many it removed.
func (gw *Gateway) filterBundle(doc map[string]any, g Grant) int {
	entries, _ := doc["entry"].([]any)
	kept := entries[:0]
	for _, e := range entries {
		entry, _ := e.(map[string]any)
		res, _ := entry["resource"].(map[string]any)
		rt, _ := res["resourceType"].(string)
		if rt == "OperationOutcome" || rt != "" && Allowed(gw.def, g, rt, smart.PermRead|smart.PermSearch, res) {
			kept = append(kept, e)
		}
	}
	dropped := len(entries) - len(kept)
	if len(kept) == 0 {
		delete(doc, "entry")
	} else {
		doc["entry"] = kept
	}
	return dropped
}

// writeOutcome answers with a FHIR OperationOutcome and returns the status.
func writeOutcome(w http.ResponseWriter, status int, code, message string) int {
	body, _ := json.Marshal(map[string]any{
		"resourceType": "OperationOutcome",
		"issue": []map[string]any{{
			"severity":    "error",
			"code":        code,
			"diagnostics": message,
		}},
	})
	w.Header().Set("Content-Type", "application/fhir+json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return status
}

// WriteOutcome answers with a FHIR OperationOutcome, for the server's own
// refusals (a missing or invalid token) at the gateway.
func WriteOutcome(w http.ResponseWriter, status int, code, message string) {
	writeOutcome(w, status, code, message)
}
