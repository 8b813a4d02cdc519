package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/smartauth/smartauth/server/ratelimit"
	"github.com/smartauth/smartauth/storage"
)

// Rate limits of the OAuth endpoints anyone may call (token, introspection,
// revocation, registration) and of the EHR launch API: per tenant, the
// requests one source address and one client may make per minute
// (storage.RateLimits), counted by package ratelimit in the database when
// several replicas share it (storage.RequestCounter, PostgreSQL) and in
// memory otherwise (SQLite, which one process serves).
//
// Whose requests count against a client: only those in which the client
// authenticated. The client a request names (in Basic credentials, the
// client_id field or the client assertion) is unproven until the handler
// checks it, and counting every request that names a client would let
// anyone spend that client's allowance, and lock it out, by naming it. So a
// request is counted against its source address always, and against a
// client once the handler has authenticated it (clientAuthStrategy, and
// launchCaller for the launch API's bearer token). Refusing is done before
// the handler, by the client the request names: a client over its limit is
// refused before its credentials are checked, and naming a client costs the
// namer only a refusal, since its requests count against its own address.
// A public client proves nothing but its id, so anyone may spend its
// allowance; the address limit bounds what each address can do to it.
//
// The refusal is 429 Too Many Requests (RFC 6585) with Retry-After, the
// seconds until the window ends, and the OAuth error temporarily_unavailable.
// RFC 6749 has no rate-limit error at the token endpoint;
// temporarily_unavailable is the registered code whose meaning fits ("the
// server is currently unable to handle the request due to a temporary
// overloading"), and this server already answers it at these endpoints
// while the database is unavailable, so clients handle it. slow_down
// (RFC 8628) is for device-code polling only and asks the client to poll
// five seconds slower, and too_many_requests is registered nowhere.

// rateWindow is the length of a rate-limit window: limits are per minute.
const rateWindow = time.Minute

// countTimeout bounds the wait for a request's count.
const countTimeout = 2 * time.Second

// newRateLimiter counts in the store when several processes share it.
func newRateLimiter(store storage.Storage) *ratelimit.Limiter {
	if c, ok := store.(storage.RequestCounter); ok {
		return ratelimit.New(c, rateWindow)
	}
	return ratelimit.New(ratelimit.NewMemory(), rateWindow)
}

// rateLimited applies the tenant's rate limits to an endpoint. It goes
// inside api, whose wellFormed has read the form.
func (s *Server) rateLimited(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		t, err := s.tenant(r)
		if err != nil {
			return h(w, r) // the handler answers an unknown tenant
		}
		clientLimit, addressLimit := t.Policy.RateLimits.Client(), t.Policy.RateLimits.Address()
		if clientLimit == 0 && addressLimit == 0 {
			return h(w, r)
		}
		now := s.now()
		address := addressRateKey(clientIP(r))
		names := []string{address}
		if id := claimedClient(r); id != "" {
			names = append(names, clientRateKey(id))
		}
		if wait, blocked := s.limits.Blocked(t.ID, names, now); blocked {
			return tooManyRequests(w, wait)
		}
		ctx, client := withAuthedClient(r.Context())
		err = h(w, r.WithContext(ctx))
		keys := []ratelimit.Key{{Name: address, Limit: int64(addressLimit)}}
		if client.id != "" {
			keys = append(keys, ratelimit.Key{Name: clientRateKey(client.id), Limit: int64(clientLimit)})
		}
		// The request was served: counting it can no longer fail it. A
		// count that fails (the database is away) is lost, and the limit
		// is not enforced meanwhile, rather than refuse every request.
		// A database that does not answer holds the request no longer than
		// countTimeout.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), countTimeout)
		defer cancel()
		if cerr := s.limits.Count(ctx, t.ID, keys, now); cerr != nil {
			s.logger(r).Warn("rate limit: request not counted", "tenant", t.ID, "err", cerr)
		}
		return err
	}
}

// clientRateLimited records, for rateLimited, the client a handler
// authenticated by other means than clientAuthStrategy, and refuses it if
// it is over its limit.
func (s *Server) clientRateLimited(w http.ResponseWriter, r *http.Request, tenantID, clientID string) error {
	if a, ok := r.Context().Value(authedClientKey).(*authedClient); ok {
		a.id = clientID
	}
	if wait, blocked := s.limits.Blocked(tenantID, []string{clientRateKey(clientID)}, s.now()); blocked {
		return tooManyRequests(w, wait)
	}
	return nil
}

// tooManyRequests is the refusal of a request over a rate limit.
func tooManyRequests(w http.ResponseWriter, wait time.Duration) error {
	secs := int((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return &httpError{status: http.StatusTooManyRequests, code: "temporarily_unavailable",
		description: fmt.Sprintf("Too many requests: the rate limit is reached. Try again in %d seconds.", secs)}
}

// clientRateKey and addressRateKey name the counters of a client and of a
// source address. An IPv6 address counts as its /64, which one host or
// network usually holds whole and can spread its requests over.
func clientRateKey(id string) string { return "client:" + id }

func addressRateKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return "addr:" + ip
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "addr:" + p.String()
	}
	return "addr:" + a.String()
}

// claimedClient is the client a request names, unverified: the id of its
// Basic credentials, its client_id field, or its client assertion's
// subject. It only chooses the counter to check.
func claimedClient(r *http.Request) string {
	if id, _, ok := r.BasicAuth(); ok {
		if dec, err := url.QueryUnescape(id); err == nil {
			return dec
		}
		return id
	}
	if id := r.PostForm.Get("client_id"); id != "" {
		return id
	}
	if a := r.PostForm.Get("client_assertion"); a != "" {
		return assertionSubject(a)
	}
	return ""
}

// assertionSubject reads, without verifying it, the sub (else iss) of a
// JWT client assertion, which RFC 7523 makes the client id.
func assertionSubject(jwt string) string {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 || len(parts[1]) > 16<<10 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Iss any `json:"iss"`
		Sub any `json:"sub"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	if sub, ok := claims.Sub.(string); ok && sub != "" {
		return sub
	}
	iss, _ := claims.Iss.(string)
	return iss
}
