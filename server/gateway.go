package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/ory/fosite"

	"github.com/smartauth/smartauth/gateway"
	"github.com/smartauth/smartauth/gateway/upstream"
	"github.com/smartauth/smartauth/server/oauth"
	"github.com/smartauth/smartauth/storage"
)

// The SMART gateway: {issuer}/fhir is a FHIR base URL that forwards to the
// tenant's upstream FHIR server, enforcing the access token's scopes and
// patient on the way (package gateway). This file validates the token and
// hands the request over.

// GatewayBase is the tenant's gateway FHIR base URL, the audience its
// tokens must carry to be accepted there.
func (s *Server) GatewayBase(tenantID string) string {
	return s.Issuer(tenantID) + "/fhir"
}

// hasGateway reports whether the tenant has a gateway: an upstream is set,
// or the gateway's base is one of its FHIR base URLs, so that its tokens
// can be meant for it. Discovery works at the base of such a gateway even
// before an upstream is set.
func (s *Server) hasGateway(t storage.Tenant) bool {
	return t.Policy.Gateway.UpstreamURL != "" || slices.Contains(t.FHIRBaseURLs, s.GatewayBase(t.ID))
}

// gatewayTenant loads the tenant of a gateway request and its upstream, or
// answers 404 when the tenant has no gateway, and 503 when its gateway has
// no upstream to forward to.
func (s *Server) gatewayTenant(w http.ResponseWriter, r *http.Request) (storage.Tenant, *upstream.Authenticator, bool) {
	t, ok := s.gatewayTenantOnly(w, r)
	if !ok {
		return storage.Tenant{}, nil, false
	}
	up, ok := s.gatewayUpstreamOf(w, r, t)
	return t, up, ok
}

// gatewayUpstreamOf returns the upstream of a tenant's gateway, or answers
// 503 when none is set and 502 when the one set is not usable.
func (s *Server) gatewayUpstreamOf(w http.ResponseWriter, r *http.Request, t storage.Tenant) (*upstream.Authenticator, bool) {
	up, err := s.upstreams.For(t)
	if errors.Is(err, upstream.ErrNotConfigured) {
		gateway.WriteOutcome(w, http.StatusServiceUnavailable, "not-supported",
			"No upstream FHIR server is configured for this gateway: its operator sets one with \"smartauth tenant set-gateway\".")
		return nil, false
	}
	if err != nil {
		s.logger(r).Error("gateway upstream not usable", "tenant", t.ID, "err", err)
		gateway.WriteOutcome(w, http.StatusBadGateway, "exception", "The gateway's FHIR server is misconfigured.")
		return nil, false
	}
	return up, true
}

// gatewayTenantOnly loads the tenant of a gateway request, or answers 404
// when the tenant has no gateway.
func (s *Server) gatewayTenantOnly(w http.ResponseWriter, r *http.Request) (storage.Tenant, bool) {
	t, err := s.tenant(r)
	if err != nil {
		status := s.classify(r, err).status
		msg := "No FHIR server is known at this address."
		if status >= 500 {
			setRetryAfter(w, status)
			msg = "The FHIR gateway cannot answer right now; try again."
		}
		gateway.WriteOutcome(w, status, outcomeCode(status), msg)
		return storage.Tenant{}, false
	}
	if !s.hasGateway(t) {
		gateway.WriteOutcome(w, http.StatusNotFound, "not-found", "This tenant has no FHIR gateway.")
		return storage.Tenant{}, false
	}
	return t, true
}

// outcomeCode is the OperationOutcome issue code for a status of ours.
func outcomeCode(status int) string {
	switch {
	case status == http.StatusNotFound:
		return "not-found"
	case status == http.StatusServiceUnavailable:
		return "transient"
	case status >= 500:
		return "exception"
	}
	return "invalid"
}

// fhirGateway is every FHIR interaction at {issuer}/fhir/.
func (s *Server) fhirGateway(w http.ResponseWriter, r *http.Request) {
	t, up, ok := s.gatewayTenant(w, r)
	if !ok {
		return
	}
	base := s.GatewayBase(t.ID)
	token := fosite.AccessTokenFromRequest(r)
	if token == "" {
		s.metrics.GatewayRequest("unknown", "unauthenticated")
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+base+`"`)
		gateway.WriteOutcome(w, http.StatusUnauthorized, "login", "An access token is required.")
		return
	}
	grant, err := s.gatewayGrant(r.Context(), t, token, base)
	if err != nil {
		if errors.Is(err, storage.ErrUnavailable) {
			s.metrics.GatewayRequest("unknown", "failed")
			setRetryAfter(w, http.StatusServiceUnavailable)
			gateway.WriteOutcome(w, http.StatusServiceUnavailable, "transient", "The access token cannot be checked right now; try again.")
			return
		}
		rfc := fosite.ErrorToRFC6749Error(err)
		s.logRefusal(r, http.StatusUnauthorized, err, "tenant", t.ID, "reason", rfc.ErrorField, "hint", rfc.HintField, "debug", rfc.DebugField)
		s.metrics.GatewayRequest("unknown", "unauthenticated")
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+base+`", error="invalid_token"`)
		gateway.WriteOutcome(w, http.StatusUnauthorized, "login", "The access token is not valid here: it is expired, revoked, or was issued for another FHIR server.")
		return
	}
	req := gateway.Request{
		Path:     r.PathValue("path"),
		Grant:    grant,
		Token:    token,
		Base:     base,
		Upstream: gatewayUpstream(up),
	}
	w.Header().Set("Access-Control-Expose-Headers", "Location, Content-Location, ETag, Last-Modified, WWW-Authenticate")
	res := s.gateway.Serve(w, r, req, s.gatewayRecorder(r, t.ID, grant))
	s.metrics.GatewayRequest(gatewayInteraction(res.Decision), gatewayDecision(res))
	if res.Status >= 500 {
		s.logger(r).Warn("gateway request failed", "tenant", t.ID, "interaction", res.Decision.Call.Interaction, "type", res.Decision.Call.Type, "status", res.Status, "err", res.Err)
	} else if !res.Decision.Allowed {
		s.logger(r).Info("gateway request refused", "tenant", t.ID, "client", grant.ClientID, "interaction", res.Decision.Call.Interaction, "type", res.Decision.Call.Type, "reason", res.Decision.Reason)
	}
}

// gatewayInteraction is the metrics label of a decision's FHIR interaction,
// one of the gateway's fixed set, or "unknown" for a request it could not
// classify.
func gatewayInteraction(d gateway.Decision) string {
	if d.Call.Interaction == "" {
		return "unknown"
	}
	return string(d.Call.Interaction)
}

// gatewayDecision is the metrics label of how the gateway answered.
func gatewayDecision(res gateway.Result) string {
	switch {
	case res.Status >= 500:
		return "failed"
	case !res.Decision.Allowed:
		return "refused"
	}
	return "allowed"
}

// gatewayGrant validates an access token for the gateway: its signature
// with the tenant's keys, issuer, lifetime and audience here, and then
// that its grant record still stands. A validation is trusted for the
// gateway's revocation delay.
func (s *Server) gatewayGrant(ctx context.Context, t storage.Tenant, token, base string) (gateway.Grant, error) {
	if g, ok := s.grants.Get(t.ID, base, token); ok {
		return g, nil
	}
	expires, err := s.oauth.VerifyAccessToken(ctx, t, token, base)
	if err != nil {
		return gateway.Grant{}, err
	}
	p, err := s.oauth.For(t)
	if err != nil {
		return gateway.Grant{}, fmt.Errorf("oauth provider of tenant %q: %w", t.ID, err)
	}
	use, ar, err := p.IntrospectToken(ctx, token, fosite.AccessToken, &oauth.Session{SMART: oauth.Context{Tenant: t.ID}})
	if err != nil {
		return gateway.Grant{}, err
	}
	if use != fosite.AccessToken {
		return gateway.Grant{}, fosite.ErrRequestUnauthorized.WithHint("Only an access token is accepted.")
	}
	sess, _ := ar.GetSession().(*oauth.Session)
	if sess == nil {
		return gateway.Grant{}, fosite.ErrRequestUnauthorized.WithHint("The access token has no session.")
	}
	g := gateway.NewGrant(ar.GetClient().GetID(), sess.Subject, sess.SMART.FHIRUser, sess.SMART.Patient, ar.GetGrantedScopes())
	s.grants.Put(t.ID, base, token, g, expires)
	return g, nil
}

// gatewayRecorder audits the gateway's decisions. Events are queued and
// written in batches, not waited for one commit each: a FHIR read must not
// cost a database commit of latency. A queued event is retried until it
// is stored, and while the queue is full (the store down or behind) the
// gateway answers 503 instead of releasing data it has not recorded.
func (s *Server) gatewayRecorder(r *http.Request, tenantID string, g gateway.Grant) gateway.Recorder {
	return func(d gateway.Decision) func() error {
		e := storage.AuditEvent{
			TenantID: tenantID,
			Time:     s.now().UTC(),
			Type:     "fhir." + string(d.Call.Interaction),
			Outcome:  "success",
			ActorID:  g.Subject,
			ClientID: g.ClientID,
			SourceIP: clientIP(r),
			Details:  map[string]string{"resource_type": d.Call.Type, "request_id": requestID(r.Context())},
		}
		if d.Call.Interaction == "" {
			e.Type = "fhir.unknown"
		}
		if d.Call.ID != "" {
			e.Subject = d.Call.Type + "/" + d.Call.ID
		}
		if d.Call.Operation != "" {
			e.Details["operation"] = d.Call.Operation
		}
		if g.Patient != "" {
			e.Details["patient"] = "Patient/" + g.Patient
		}
		if !d.Allowed {
			e.Outcome = "failure"
			e.Details["reason"] = d.Reason
		}
		err := s.audits.Enqueue(e)
		if err != nil {
			s.logger(r).Error("gateway audit event not queued", "tenant", tenantID, "type", e.Type, "err", err)
		}
		return func() error { return err }
	}
}

// gatewayMetadata is the CapabilityStatement at {issuer}/fhir/metadata: the
// upstream's, with the SMART security extension of this tenant, so an app
// discovers everything from the FHIR base URL alone.
func (s *Server) gatewayMetadata(w http.ResponseWriter, r *http.Request) {
	t, ok := s.gatewayTenantOnly(w, r)
	if !ok {
		return
	}
	// Without the upstream's statement (or an upstream), the gateway's own
	// minimal one still tells apps where to authorize.
	var doc map[string]any
	if t.Policy.Gateway.UpstreamURL != "" {
		up, ok := s.gatewayUpstreamOf(w, r, t)
		if !ok {
			return
		}
		var err error
		if doc, err = s.capabilities.get(r.Context(), [2]string{t.ID, up.Base().String()}); err != nil {
			s.logger(r).Warn("gateway upstream metadata not available", "tenant", t.ID, "err", err)
		}
	}
	body, err := gateway.CapabilityStatement(doc, s.GatewayBase(t.ID), s.Issuer(t.ID), s.now())
	if err != nil {
		s.logger(r).Error("gateway metadata", "tenant", t.ID, "err", err)
		gateway.WriteOutcome(w, http.StatusBadGateway, "exception", "The FHIR server's capability statement could not be read.")
		return
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(body)
}

// gatewaySMARTConfiguration serves the tenant's SMART configuration at the
// gateway's FHIR base, where apps look for it.
func (s *Server) gatewaySMARTConfiguration(w http.ResponseWriter, r *http.Request) error {
	t, err := s.tenant(r)
	if err != nil {
		return err
	}
	if !s.hasGateway(t) {
		return errNotFound("this tenant has no FHIR gateway")
	}
	return s.smartConfiguration(w, r)
}

// gatewayPreflight answers CORS preflight at the gateway: browser apps send
// their token in Authorization and write FHIR JSON.
func gatewayPreflight(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
	w.Header().Set("Access-Control-Allow-Headers", "Accept, Authorization, Content-Type, If-Match, If-None-Match, If-None-Exist, Prefer")
	w.Header().Set("Access-Control-Expose-Headers", "Location, Content-Location, ETag, Last-Modified")
	w.Header().Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
}

// gatewayUpstream is what the gateway needs of a tenant's upstream.
func gatewayUpstream(up *upstream.Authenticator) gateway.Upstream {
	return gateway.Upstream{
		Base:         up.Base(),
		Client:       up.Client(),
		Authorize:    up.Authorize,
		ForwardToken: up.ForwardsToken(),
		UserHeader:   up.UserHeader(),
		// Only a bought token can be stale; a static header cannot be renewed.
		ResetCredentials: up.ResetToken,
	}
}

// capabilitiesTTL is how long an upstream's CapabilityStatement is reused.
const capabilitiesTTL = 5 * time.Minute

// newCapabilitiesCache keeps upstreams' CapabilityStatements, by tenant and upstream URL.
func (s *Server) newCapabilitiesCache() *ttlCache[[2]string, map[string]any] {
	return newTTLCache(capabilitiesTTL, s.now, func(ctx context.Context, k [2]string) (map[string]any, error) {
		t, err := s.tenants.get(ctx, k[0])
		if err != nil {
			return nil, err
		}
		up, err := s.upstreams.For(t)
		if err != nil {
			return nil, err
		}
		return s.gateway.UpstreamCapabilities(ctx, s.GatewayBase(t.ID), gatewayUpstream(up))
	})
}
